//! Which pages of a linear memory an evaluation may have changed, from the kernel's page tables
//! (`PAGEMAP_SCAN`, Linux 6.7+), so a reused instance is reset by copying back only those.
//!
//! A page of a wasm memory that nobody wrote is either not mapped yet or mapped to the shared
//! page of the module's initial image (or to the zero page), and reading it gives its initial
//! contents. Any write (by the guest or by the host) gives the process its own copy. So every
//! page that is present or swapped out and not a page of a file may differ from its initial
//! contents; swapped-out pages count too (wasmtime's own scan skips them). Pages mapped to the
//! zero page are reported separately: they are unchanged unless the kernel put a page that was
//! written full of zeros there (KSM with `use_zero_pages`, or splitting a huge page), so the
//! caller compares them with what they held initially.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `_IOWR('f', 16, struct pm_scan_arg)` from `linux/fs.h`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

/// Regions reported per ioctl; the scan resumes where it stopped when they run out.
const REGIONS: usize = 32;

/// `struct pm_scan_arg`.
#[repr(C)]
#[derive(Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct Region {
    start: u64,
    end: u64,
    categories: u64,
}

/// Which pages a scan reports.
#[derive(Clone, Copy)]
enum Filter {
    /// Present or swapped out, and not a page of a file: possibly written (zero-page ranges
    /// are reported apart).
    Private,
    /// Present and mapping the zero page or a page of a file.
    Shared,
}

impl Filter {
    fn inverted(self) -> u64 {
        match self {
            Filter::Private => PAGE_IS_FILE,
            Filter::Shared => 0,
        }
    }

    /// Categories that must all be present (after inversion).
    fn mask(self) -> u64 {
        match self {
            Filter::Private => PAGE_IS_FILE,
            Filter::Shared => PAGE_IS_PRESENT,
        }
    }

    /// Categories of which at least one must be present (after inversion).
    fn anyof(self) -> u64 {
        match self {
            Filter::Private => PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            Filter::Shared => PAGE_IS_PFNZERO | PAGE_IS_FILE,
        }
    }

    /// Categories reported back, which also splits ranges where they change.
    fn returned(self) -> u64 {
        match self {
            Filter::Private => PAGE_IS_PFNZERO,
            Filter::Shared => 0,
        }
    }
}

/// This process's `/proc/self/pagemap`, once the kernel has shown it supports the scan.
pub struct PageMap(File, usize);

impl PageMap {
    /// `None` when the kernel lacks `PAGEMAP_SCAN` (or `/proc` is not mounted).
    pub fn open() -> Option<Self> {
        // SAFETY: sysconf reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let map = PageMap(
            File::open("/proc/self/pagemap").ok()?,
            usize::try_from(page).ok().filter(|p| *p > 0)?,
        );
        // An empty range: succeeds only where the ioctl exists.
        map.scan(0, 0, Filter::Private, |_, _, _| {}).ok()?;
        Some(map)
    }

    /// The size of a host page, the unit of every range reported.
    pub fn page_size(&self) -> usize {
        self.1
    }

    /// Calls `written(offset, len, zero_page)` for each range of the `len` bytes at address
    /// `start` whose pages may have been written since they were mapped (offsets relative to
    /// `start`); `zero_page` says the range maps the zero page, so it now reads as zeros. Takes
    /// an address, not a slice, so `written` may change those bytes.
    pub fn written_at(
        &self,
        start: usize,
        len: usize,
        mut written: impl FnMut(usize, usize, bool),
    ) -> io::Result<()> {
        self.scan(
            start as u64,
            (start + len) as u64,
            Filter::Private,
            |at, n, categories| written(at, n, categories & PAGE_IS_PFNZERO != 0),
        )
    }

    /// Unmaps the pages of `region` that map the zero page or a file page. Their contents
    /// stay the same (the next access maps the same page again), but the page tables shrink
    /// back, which keeps later scans of `region` fast after something read all of it.
    pub fn unmap_shared(&self, region: &mut [u8]) -> io::Result<()> {
        let start = region.as_ptr() as u64;
        let mut shared = Vec::new();
        self.scan(
            start,
            start + region.len() as u64,
            Filter::Shared,
            |at, len, _| shared.push((at, len)),
        )?;
        for (at, len) in shared {
            // SAFETY: `at..at + len` lies within `region`, which we borrow mutably, and
            // dropping a page that maps the zero page or a file page leaves its contents as
            // they were: the next access maps that same page again.
            let rc = unsafe {
                libc::madvise(region.as_mut_ptr().add(at).cast(), len, libc::MADV_DONTNEED)
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    fn scan(
        &self,
        start: u64,
        end: u64,
        filter: Filter,
        mut found: impl FnMut(usize, usize, u64),
    ) -> io::Result<()> {
        let mut regions = [Region::default(); REGIONS];
        let mut from = start;
        loop {
            let mut arg = ScanArg {
                size: size_of::<ScanArg>() as u64,
                start: from,
                end,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS as u64,
                category_inverted: filter.inverted(),
                category_mask: filter.mask(),
                category_anyof_mask: filter.anyof(),
                return_mask: filter.returned(),
                ..ScanArg::default()
            };
            // SAFETY: `arg` and `regions` are valid, correctly laid out (`linux/fs.h`) and
            // outlive the call; the kernel only reads page tables for `start..end` and writes
            // at most `vec_len` regions into `regions` and `walk_end` into `arg`.
            let n = unsafe {
                libc::ioctl(
                    self.0.as_raw_fd(),
                    PAGEMAP_SCAN as _,
                    &mut arg as *mut ScanArg,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            for r in regions.iter().take(n as usize) {
                found(
                    (r.start - start) as usize,
                    (r.end - r.start) as usize,
                    r.categories,
                );
            }
            if arg.walk_end >= end || arg.walk_end <= from {
                return Ok(());
            }
            from = arg.walk_end;
        }
    }
}

/// A private anonymous mapping, for tests of page-table behaviour; unmapped when dropped.
#[cfg(test)]
pub(crate) struct Anonymous {
    ptr: *mut libc::c_void,
    len: usize,
}

#[cfg(test)]
impl Anonymous {
    /// `len` bytes, nothing mapped until touched.
    pub(crate) fn new(len: usize) -> Self {
        // SAFETY: a new private anonymous mapping; only this value refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap");
        Anonymous { ptr, len }
    }

    pub(crate) fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, and borrowed through us.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.cast::<u8>(), self.len) }
    }
}

#[cfg(test)]
impl Drop for Anonymous {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped; no borrow of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_written_pages_and_nothing_else() {
        let Some(map) = PageMap::open() else {
            eprintln!("skipped: this kernel has no PAGEMAP_SCAN");
            return;
        };
        let page = map.page_size();
        // A fresh anonymous mapping: nothing present until touched.
        let len = 64 * page;
        let mut anon = Anonymous::new(len);
        let mem = anon.bytes();
        let _ = std::hint::black_box(mem[10 * page]); // read only: maps the zero page
        mem[3 * page + 7] = 1;
        mem[40 * page] = 1;
        mem[41 * page + 4095] = 1;
        let addr = mem.as_ptr() as usize;
        let mut seen = Vec::new();
        let scan = |seen: &mut Vec<_>| {
            seen.clear();
            map.written_at(addr, len, |off, n, zero| {
                seen.push((off / page, n / page, zero))
            })
            .unwrap();
        };
        scan(&mut seen);
        // The page only read maps the zero page: reported apart, as unchanged unless merged.
        assert_eq!(seen, vec![(3, 1, false), (10, 1, true), (40, 2, false)]);
        // Reading everything maps the zero page throughout; unmapping the shared pages keeps
        // every byte and the written pages.
        assert_eq!(mem.iter().map(|b| u32::from(*b)).sum::<u32>(), 3);
        map.unmap_shared(mem).unwrap();
        let mut shared = Vec::new();
        map.scan(
            mem.as_ptr() as u64,
            (mem.as_ptr() as u64) + len as u64,
            Filter::Shared,
            |off, n, _| shared.push((off, n)),
        )
        .unwrap();
        assert_eq!(shared, vec![]);
        scan(&mut seen);
        assert_eq!(seen, vec![(3, 1, false), (40, 2, false)]);
        assert_eq!(mem.iter().map(|b| u32::from(*b)).sum::<u32>(), 3);
    }
}

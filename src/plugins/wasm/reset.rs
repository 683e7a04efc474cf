//! Whether a module's instances can be reused, and how they are returned to their initial state.
//!
//! Instantiating per evaluation costs a few microseconds; a call on a live instance costs
//! nanoseconds. Reuse is safe only if everything an evaluation can change is put back, so a
//! module qualifies only when its state is exactly its linear memory and its mutable globals:
//! - no start function (it would run once, outside any evaluation);
//! - no instruction that changes a table or drops a segment (`table.set`, `table.grow`,
//!   `table.fill`, `table.copy`, `table.init`, `elem.drop`, `data.drop`), so tables and
//!   segments stay as instantiation left them.
//!
//! Memory is restored from a snapshot taken right after instantiation, page by page for the
//! pages the kernel reports as possibly written ([`super::pagemap`]); an instance whose memory
//! grew is dropped instead, since memory cannot shrink. Mutable globals are restored through
//! exports: those the module does not export are exported under reserved names by rewriting
//! its export section, which shifts the code's byte offsets by a known amount, undone when a
//! trap is reported. Other modules get a fresh instance per evaluation, as before.

use std::borrow::Cow;

use wasm_encoder::{ExportKind, ExportSection, Section};
use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};
use wasmtime::{AsContextMut, Global, Memory, Val};

use super::pagemap::PageMap;

/// Prefix of the exports added for mutable globals the module does not export itself.
const GLOBAL_EXPORT: &str = "__lanekeeper_global_";

/// How to reset a reusable module's instances.
#[derive(Debug, Clone, Default)]
pub struct ResetPlan {
    /// Export names of every mutable global.
    pub globals: Vec<String>,
}

/// The module as compiled: the original bytes, or the rewritten ones and how offsets moved.
pub struct Prepared<'a> {
    /// What to compile.
    pub bytes: Cow<'a, [u8]>,
    /// `Ok` when instances can be reused; `Err` says why not.
    pub plan: Result<ResetPlan, String>,
    /// Undoes the rewrite's shift of code offsets.
    pub offsets: OffsetMap,
}

/// Maps a byte offset in the compiled module back to the plugin file.
#[derive(Debug, Clone, Copy, Default)]
pub struct OffsetMap {
    /// Where the export section ends in the plugin file …
    old_end: usize,
    /// … and in the rewritten module; everything after it is the same bytes.
    new_end: usize,
}

impl OffsetMap {
    /// The offset in the original file. (The rewritten section may also be shorter: the
    /// original may have written its numbers with padding.)
    pub fn original(&self, offset: usize) -> usize {
        if offset >= self.new_end {
            offset - self.new_end + self.old_end
        } else {
            offset
        }
    }
}

/// Decides whether `bytes` can be reused and, if it has unexported mutable globals, exports
/// them. Modules that do not parse are passed through untouched for the compiler to report.
pub fn prepare(bytes: &[u8]) -> Prepared<'_> {
    let untouched = |plan| Prepared {
        bytes: Cow::Borrowed(bytes),
        plan,
        offsets: OffsetMap::default(),
    };
    let scan = match scan(bytes) {
        Ok(scan) => scan,
        Err(why) => return untouched(Err(why)),
    };
    if let Some(why) = scan.not_reusable {
        return untouched(Err(why));
    }
    let mut globals = Vec::new();
    let mut added = Vec::new();
    for index in scan.mutable_globals {
        match scan
            .exports
            .iter()
            .find(|e| e.kind == ExternalKind::Global && e.index == index)
        {
            Some(e) => globals.push(e.name.clone()),
            None => {
                let name = format!("{GLOBAL_EXPORT}{index}");
                if scan.exports.iter().any(|e| e.name == name) {
                    return untouched(Err(format!("it already exports `{name}`")));
                }
                globals.push(name.clone());
                added.push((name, index));
            }
        }
    }
    let plan = Ok(ResetPlan { globals });
    if added.is_empty() {
        return untouched(plan);
    }
    let Some(span) = scan.export_span else {
        return untouched(Err("it has no export section".into()));
    };
    let mut section = ExportSection::new();
    for e in &scan.exports {
        section.export(&e.name, kind(e.kind), e.index);
    }
    for (name, index) in &added {
        section.export(name, ExportKind::Global, *index);
    }
    let mut encoded = Vec::new();
    section.append_to(&mut encoded);
    let mut out = Vec::with_capacity(bytes.len() + encoded.len());
    out.extend_from_slice(&bytes[..span.start]);
    out.extend_from_slice(&encoded);
    out.extend_from_slice(&bytes[span.end..]);
    Prepared {
        offsets: OffsetMap {
            old_end: span.end,
            new_end: span.start + encoded.len(),
        },
        bytes: Cow::Owned(out),
        plan,
    }
}

fn kind(k: ExternalKind) -> ExportKind {
    match k {
        ExternalKind::Func => ExportKind::Func,
        // Refused by `scan`: re-encoding it as `Func` would change what it means.
        ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

struct Export {
    name: String,
    kind: ExternalKind,
    index: u32,
}

#[derive(Default)]
struct Scan {
    exports: Vec<Export>,
    /// Global indices (imports counted) of the module's own mutable globals.
    mutable_globals: Vec<u32>,
    /// The whole export section, header included.
    export_span: Option<std::ops::Range<usize>>,
    not_reusable: Option<String>,
}

fn scan(bytes: &[u8]) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let mut imported_globals = 0u32;
    let mut section_start = 8;
    let err = |e: wasmparser::BinaryReaderError| e.to_string();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(err)?;
        let section_end = payload.as_section().map(|(_, range)| range.end);
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let TypeRef::Global(_) = import.map_err(err)?.ty {
                        imported_globals += 1;
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    if global.map_err(err)?.ty.mutable {
                        scan.mutable_globals.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(err)?;
                    if export.kind == ExternalKind::FuncExact {
                        scan.not_reusable = Some("it has an exact-function export".into());
                    }
                    scan.exports.push(Export {
                        name: export.name.to_string(),
                        kind: export.kind,
                        index: export.index,
                    });
                }
                scan.export_span = section_end.map(|end| section_start..end);
            }
            Payload::StartSection { .. } => {
                scan.not_reusable = Some("it has a start function".into());
            }
            Payload::CodeSectionEntry(body) => {
                let mut ops = body.get_operators_reader().map_err(err)?;
                while !ops.eof() {
                    if let Some(what) = changes_tables_or_segments(&ops.read().map_err(err)?) {
                        scan.not_reusable
                            .get_or_insert_with(|| format!("it uses `{what}`"));
                    }
                }
            }
            _ => {}
        }
        if let Some(end) = section_end {
            section_start = end;
        }
    }
    Ok(scan)
}

/// The instructions that change state other than memory and globals.
fn changes_tables_or_segments(op: &Operator<'_>) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::DataDrop { .. } => "data.drop",
        _ => return None,
    })
}

/// Largest memory copied into a snapshot; instances of modules with more get a fresh instance
/// per evaluation rather than keeping a copy of a large memory per instance.
const MAX_SNAPSHOT: usize = 4 << 20;

/// A reusable instance's state right after instantiation.
pub struct Snapshot {
    memory: Vec<u8>,
    /// Per host page of `memory`: whether it held only zeros.
    zero: Vec<bool>,
    page: usize,
    globals: Vec<(Global, Val)>,
}

/// Why an instance cannot be put back.
#[derive(Debug, thiserror::Error)]
pub enum Unresettable {
    /// Its memory grew.
    #[error("its memory grew")]
    Grew,
    /// Its memory is too large to keep a copy of.
    #[error("its memory of {0} bytes is above the {MAX_SNAPSHOT} bytes copied per instance")]
    Large(usize),
    /// The page scan failed.
    #[error("the page scan failed: {0}")]
    Scan(std::io::Error),
    /// A global could not be set back.
    #[error("a global could not be restored: {0}")]
    Global(String),
}

impl Snapshot {
    /// Records `memory` and the plan's globals (just after instantiation). Reading the memory
    /// maps every page; the shared ones are unmapped again so that resets scan only what
    /// evaluations touch.
    pub fn take(
        mut store: impl AsContextMut,
        memory: Memory,
        globals: &[Global],
        pages: &PageMap,
    ) -> Result<Snapshot, Unresettable> {
        let size = memory.data_size(&store);
        if size > MAX_SNAPSHOT {
            return Err(Unresettable::Large(size));
        }
        let data = memory.data_mut(&mut store);
        let snapshot = Snapshot::of(data, pages).map_err(Unresettable::Scan)?;
        let globals = globals
            .iter()
            .map(|g| (*g, g.get(store.as_context_mut())))
            .collect();
        Ok(Snapshot {
            globals,
            ..snapshot
        })
    }

    /// A copy of `data`, with its all-zero pages noted; then its shared pages are unmapped.
    fn of(data: &mut [u8], pages: &PageMap) -> std::io::Result<Snapshot> {
        let page = pages.page_size();
        let snapshot = Snapshot {
            memory: data.to_vec(),
            zero: data
                .chunks(page)
                .map(|p| p.iter().all(|b| *b == 0))
                .collect(),
            page,
            globals: Vec::new(),
        };
        pages.unmap_shared(data)?;
        Ok(snapshot)
    }

    /// Puts `memory` and the globals back as they were when the snapshot was taken.
    pub fn restore(
        &self,
        mut store: impl AsContextMut,
        memory: Memory,
        pages: &PageMap,
    ) -> Result<(), Unresettable> {
        self.restore_memory(memory.data_mut(&mut store), pages)?;
        for (global, value) in &self.globals {
            global
                .set(store.as_context_mut(), *value)
                .map_err(|e| Unresettable::Global(e.to_string()))?;
        }
        Ok(())
    }

    /// Copies back every page the kernel reports as possibly written. A page now mapped to
    /// the zero page reads as zeros: that is its initial contents unless it held something
    /// else then (a page written full of zeros can be merged into the zero page).
    fn restore_memory(&self, data: &mut [u8], pages: &PageMap) -> Result<(), Unresettable> {
        if data.len() != self.memory.len() {
            return Err(Unresettable::Grew);
        }
        let (start, len) = (data.as_ptr() as usize, data.len());
        pages
            .written_at(start, len, |at, n, zero_page| {
                let end = (at + n).min(data.len());
                if !zero_page {
                    data[at..end].copy_from_slice(&self.memory[at..end]);
                    return;
                }
                for p in (at..end).step_by(self.page) {
                    let q = (p + self.page).min(end);
                    if !self.zero[p / self.page] {
                        data[p..q].copy_from_slice(&self.memory[p..q]);
                    }
                }
            })
            .map_err(Unresettable::Scan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the code section's contents start.
    fn code_start(module: &[u8]) -> usize {
        Parser::new(0)
            .parse_all(module)
            .find_map(|p| match p.unwrap() {
                Payload::CodeSectionStart { range, .. } => Some(range.start),
                _ => None,
            })
            .unwrap()
    }

    fn plan(wat: &str) -> Result<ResetPlan, String> {
        let bytes = wat::parse_str(wat).unwrap();
        prepare(&bytes).plan
    }

    /// A page written full of zeros may be merged into the zero page (KSM, huge-page splits);
    /// the reset must still bring back what it held initially.
    #[test]
    fn a_page_merged_into_the_zero_page_is_restored() {
        let Some(pages) = PageMap::open() else {
            eprintln!("skipped: this kernel has no PAGEMAP_SCAN");
            return;
        };
        let page = pages.page_size();
        let len = 16 * page;
        let mut anon = super::super::pagemap::Anonymous::new(len);
        let mem = anon.bytes();
        mem[2 * page..3 * page].fill(0xab);
        let initial = mem.to_vec();
        let snapshot = Snapshot::of(mem, &pages).unwrap();
        // An evaluation writes page 5 and zeroes page 2, which then maps the zero page, as
        // after a merge; page 9 is only read.
        mem[5 * page] = 7;
        // SAFETY: page 2 lies within the mapping; dropping it makes it read as zeros.
        let rc = unsafe {
            libc::madvise(
                mem.as_mut_ptr().add(2 * page).cast(),
                page,
                libc::MADV_DONTNEED,
            )
        };
        assert_eq!(rc, 0);
        assert_eq!(std::hint::black_box(mem[2 * page]), 0);
        assert_eq!(std::hint::black_box(mem[9 * page]), 0);
        snapshot.restore_memory(mem, &pages).unwrap();
        assert!(
            mem == initial.as_slice(),
            "memory differs from its snapshot"
        );
    }

    /// An export section written with padded numbers (valid, and what some linkers emit) is
    /// longer than its re-encoding: the rewrite may shrink it.
    #[test]
    fn offsets_map_back_when_the_rewrite_shrinks_the_export_section() {
        let wat = r#"(module
            (global (mut i32) (i32.const 1))
            (func (export "a") (result i32) unreachable)
            (func (export "b")) (func (export "c")))"#;
        let plain = wat::parse_str(wat).unwrap();
        // Re-encode the export section with every number as a 5-byte LEB.
        let leb5 = |v: u32| {
            let mut out = Vec::new();
            for i in 0..5 {
                let byte = ((v >> (7 * i)) & 0x7f) as u8;
                out.push(if i < 4 { byte | 0x80 } else { byte });
            }
            out
        };
        let mut padded = plain[..8].to_vec();
        let mut at = 8;
        while at < plain.len() {
            let id = plain[at];
            let (size, size_len) = {
                let (mut v, mut n) = (0u32, 0);
                while plain[at + 1 + n] & 0x80 != 0 {
                    v |= u32::from(plain[at + 1 + n] & 0x7f) << (7 * n);
                    n += 1;
                }
                v |= u32::from(plain[at + 1 + n]) << (7 * n);
                (v as usize, n + 1)
            };
            if id == 7 {
                let mut section = leb5(3);
                for (i, name) in ["a", "b", "c"].iter().enumerate() {
                    section.extend(leb5(1));
                    section.extend(name.as_bytes());
                    section.push(0);
                    section.extend(leb5(i as u32));
                }
                padded.push(7);
                padded.extend(leb5(section.len() as u32));
                padded.extend(section);
            } else {
                padded.extend(&plain[at..at + 1 + size_len + size]);
            }
            at += 1 + size_len + size;
        }
        let engine = wasmtime::Engine::default();
        wasmtime::Module::new(&engine, &padded).expect("the padded module is valid");
        let prepared = prepare(&padded);
        assert!(prepared.plan.is_ok());
        assert!(prepared.bytes.len() < padded.len(), "the rewrite shrank");
        assert_eq!(
            prepared.offsets.original(code_start(&prepared.bytes)),
            code_start(&padded)
        );
    }

    #[test]
    fn modules_that_change_tables_or_segments_or_start_are_not_reused() {
        let table = r#"(module (table 1 funcref) (func (export "f") (table.set 0 (i32.const 0) (ref.null func))))"#;
        assert_eq!(plan(table).unwrap_err(), "it uses `table.set`");
        let drop = r#"(module (memory 1) (data "x") (func (export "f") (data.drop 0)))"#;
        assert_eq!(plan(drop).unwrap_err(), "it uses `data.drop`");
        let start = r#"(module (func $s) (start $s))"#;
        assert_eq!(plan(start).unwrap_err(), "it has a start function");
    }

    #[test]
    fn unexported_mutable_globals_are_exported_and_offsets_map_back() {
        let wat = r#"(module
            (global $a (mut i32) (i32.const 1))
            (global $b i32 (i32.const 2))
            (global $c (export "c") (mut i64) (i64.const 3))
            (func (export "f") (result i32) unreachable))"#;
        let original = wat::parse_str(wat).unwrap();
        let prepared = prepare(&original);
        let plan = prepared.plan.as_ref().unwrap();
        assert_eq!(plan.globals, vec!["__lanekeeper_global_0", "c"]);
        let rewritten = &prepared.bytes;
        assert!(rewritten.len() > original.len());
        assert!(code_start(rewritten) > code_start(&original));
        assert_eq!(
            prepared.offsets.original(code_start(rewritten)),
            code_start(&original)
        );
        assert_eq!(
            rewritten[code_start(rewritten)..],
            original[code_start(&original)..]
        );
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, rewritten.as_ref()).unwrap();
        let exports: Vec<&str> = module.exports().map(|e| e.name()).collect();
        assert_eq!(exports, vec!["c", "f", "__lanekeeper_global_0"]);
    }
}

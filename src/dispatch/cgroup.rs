//! A cgroup v2 of its own for each run, where one is delegated to lanekeeper.
//!
//! A process group and the supervisor's descendants miss what leaves both (and a fork racing
//! the kill loop); a cgroup holds every process of the run whatever it does, `cgroup.kill` ends
//! them at once, and `memory.max`/`cpu.max` cap them (a lane's `limits:`). Where no cgroup is
//! delegated, runs fall back to the process group and descendants, and the reason is given
//! once (`placement` for the daemon's start and `validate`; the run log when a lane asked for
//! limits it cannot have).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::RunLimits;
use crate::config::settings::CgroupSetting;
use crate::model::size::format_size;

/// `statfs` magic of a cgroup v2 file system.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// The sub-cgroup runs go in when the daemon sits in a delegated subgroup of its own
/// (systemd `DelegateSubgroup=`).
const RUNS_SUBGROUP: &str = "runs";

/// Where runs' cgroups are made, and what they can be capped by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The directory run cgroups are made in.
    pub dir: PathBuf,
}

/// Why runs get no cgroup of their own.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The operator said so.
    #[error("`cgroup: off` in lanekeeper.yaml")]
    Off,
    /// The kernel lists no cgroup v2 membership.
    #[error("the kernel has no cgroup v2 hierarchy")]
    NoHierarchy,
    /// Nothing can be delegated to a process in the root cgroup.
    #[error(
        "this process is in the root cgroup, so nothing is delegated to it (under systemd, set Delegate=yes in the unit)"
    )]
    RootCgroup,
    /// cgroup v2 is not mounted (a v1 or hybrid machine).
    #[error("no cgroup v2 hierarchy is mounted (this machine uses cgroup v1 for its controllers)")]
    NotMounted,
    /// The process's cgroup is not delegated.
    #[error(
        "{} is not delegated to lanekeeper (under systemd, set Delegate=yes in the unit; or name a delegated directory with `cgroup: PATH`)",
        .0.display()
    )]
    NotDelegated(PathBuf),
    /// `cgroup: PATH` names something else.
    #[error("{} is not a cgroup v2 directory", .0.display())]
    NotCgroup2(PathBuf),
    /// A file of the cgroup cannot be written by this user.
    #[error("{} is not writable by lanekeeper ({source}); delegate it to its user", path.display())]
    NotWritable {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
    /// Something could not be read or made.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Where runs' cgroups would go under `setting`, or why runs get none (fallback to process
/// groups). Reads only; creates nothing.
pub fn placement(setting: &CgroupSetting) -> Result<Base, Unavailable> {
    match setting {
        CgroupSetting::Off => Err(Unavailable::Off),
        CgroupSetting::At(dir) => {
            check_cgroup2(dir)?;
            writable(dir)?;
            Ok(Base { dir: dir.clone() })
        }
        CgroupSetting::Auto => auto(),
    }
}

/// The delegated cgroup this process lives in: the nearest ancestor of its own cgroup that
/// the service manager marked delegated (systemd's `trusted.delegate`/`user.delegate`
/// xattr). If the process sits in a subgroup of it (`DelegateSubgroup=`), runs go in a
/// sibling `runs/` subgroup, where controllers can be enabled; otherwise beside the daemon.
fn auto() -> Result<Base, Unavailable> {
    let own = own_cgroup()?;
    if own == Path::new("/") {
        return Err(Unavailable::RootCgroup);
    }
    let mount = cgroup2_mount().ok_or(Unavailable::NotMounted)?;
    let dir = mount.join(own.strip_prefix("/").unwrap_or(&own));
    let delegated = dir
        .ancestors()
        .take_while(|d| d.starts_with(&mount) && *d != mount)
        .find(|d| is_delegated(d))
        .ok_or_else(|| Unavailable::NotDelegated(dir.clone()))?;
    writable(delegated)?;
    let base = if delegated == dir {
        dir.clone()
    } else {
        delegated.join(RUNS_SUBGROUP)
    };
    Ok(Base { dir: base })
}

/// The process's cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_cgroup() -> Result<PathBuf, Unavailable> {
    let path = PathBuf::from("/proc/self/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|source| Unavailable::Io { path, source })?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(PathBuf::from)
        .ok_or(Unavailable::NoHierarchy)
}

/// Where the cgroup v2 hierarchy is mounted, if it is (its root, not a bind of a subtree).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let point = fields.next()?;
        (fstype == "cgroup2" && root == "/").then(|| PathBuf::from(point))
    })
}

fn is_delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(dir, name).is_some_and(|v| v == b"1"))
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let name = CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated and live across the call; the kernel writes at
    // most `buf.len()` bytes into `buf`.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    usize::try_from(n).ok().map(|n| buf[..n].to_vec())
}

fn check_cgroup2(dir: &Path) -> Result<(), Unavailable> {
    let fs = nix::sys::statfs::statfs(dir).map_err(|e| Unavailable::Io {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    if fs.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
        return Err(Unavailable::NotCgroup2(dir.to_path_buf()));
    }
    Ok(())
}

fn writable(dir: &Path) -> Result<(), Unavailable> {
    use nix::unistd::{AccessFlags, access};
    for path in [dir.to_path_buf(), dir.join("cgroup.procs")] {
        access(&path, AccessFlags::W_OK)
            .map_err(|source| Unavailable::NotWritable { path, source })?;
    }
    Ok(())
}

/// One run's cgroup.
#[derive(Debug)]
pub struct RunCgroup {
    dir: PathBuf,
}

/// A run placed in its cgroup (or not), with what to tell its log.
pub struct Placed {
    /// The cgroup, when the run got one.
    pub cgroup: Option<RunCgroup>,
    /// Lines for the run log: a fallback, a cap that could not be applied.
    pub notes: Vec<String>,
}

/// Makes the run's cgroup under `setting`, applies `limits` and moves `pid` (still at its
/// gate, so before it execs) into it. Anything that fails falls back to the process group and
/// says why; it never keeps the run from starting.
pub fn place(setting: &CgroupSetting, lane: &str, pid: u32, limits: &RunLimits) -> Placed {
    let mut notes = Vec::new();
    let fallback = |why: &dyn std::fmt::Display, mut notes: Vec<String>| {
        // `auto` finding nothing is said once, by the daemon and `validate`; a path asked for
        // or limits that cannot be had are said in every run they concern.
        if matches!(setting, CgroupSetting::At(_)) || limits.any() {
            notes.push(format!(
                "not in a cgroup of its own: {why}; the run is stopped by process group and descendants"
            ));
        }
        if limits.any() {
            notes.push(format!(
                "limits not applied ({}): they need a delegated cgroup v2",
                limits.describe()
            ));
        }
        Placed {
            cgroup: None,
            notes,
        }
    };
    let base = match placement(setting) {
        Ok(base) => base,
        Err(why) => return fallback(&why, notes),
    };
    let wanted: BTreeSet<&str> = [
        limits.memory.map(|_| "memory"),
        limits.cpu_percent.map(|_| "cpu"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let Err(e) = std::fs::create_dir_all(&base.dir) {
        return fallback(&format!("cannot create {}: {e}", base.dir.display()), notes);
    }
    let missing = enable(&base.dir, &wanted);
    let name: String = lane
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = base.dir.join(format!("run-{name}-{pid}"));
    if let Err(e) = std::fs::create_dir(&dir) {
        return fallback(&format!("cannot create {}: {e}", dir.display()), notes);
    }
    let cgroup = RunCgroup { dir };
    if let Some(bytes) = limits.memory {
        cap(
            &cgroup,
            "memory",
            "memory.max",
            &bytes.to_string(),
            &format!("memory {}", format_size(bytes)),
            &missing,
            &mut notes,
        );
    }
    if let Some(pct) = limits.cpu_percent {
        let quota = u64::from(pct) * 1000;
        cap(
            &cgroup,
            "cpu",
            "cpu.max",
            &format!("{quota} 100000"),
            &format!("cpu {pct}%"),
            &missing,
            &mut notes,
        );
    }
    if let Err(e) = std::fs::write(cgroup.dir.join("cgroup.procs"), pid.to_string()) {
        let why = format!("cannot move the command into {}: {e}", cgroup.dir.display());
        cgroup.remove();
        return fallback(&why, notes);
    }
    Placed {
        cgroup: Some(cgroup),
        notes,
    }
}

/// Enables `wanted` controllers for the children of `dir` (and, for a `runs/` subgroup we
/// made, in its parent first). Returns those that could not be, with why.
fn enable(dir: &Path, wanted: &BTreeSet<&str>) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for c in wanted {
        if read_words(&dir.join("cgroup.subtree_control")).contains(*c) {
            continue;
        }
        if !read_words(&dir.join("cgroup.controllers")).contains(*c)
            && let Some(parent) = dir.parent()
        {
            let _ = std::fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
        }
        if !read_words(&dir.join("cgroup.controllers")).contains(*c) {
            missing.push((
                c.to_string(),
                format!(
                    "the {c} controller is not available in {} (it has: {})",
                    dir.display(),
                    words_or_none(&dir.join("cgroup.controllers"))
                ),
            ));
            continue;
        }
        if let Err(e) = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
            missing.push((
                c.to_string(),
                format!(
                    "cannot enable the {c} controller in {}/cgroup.subtree_control ({e}); \
                     a cgroup that holds processes cannot pass controllers on, so point \
                     `cgroup:` at one that holds none",
                    dir.display()
                ),
            ));
        }
    }
    missing
}

fn cap(
    cgroup: &RunCgroup,
    controller: &str,
    file: &str,
    value: &str,
    what: &str,
    missing: &[(String, String)],
    notes: &mut Vec<String>,
) {
    if let Some((_, why)) = missing.iter().find(|(c, _)| c == controller) {
        notes.push(format!("limit {what} not applied: {why}"));
    } else if let Err(e) = std::fs::write(cgroup.dir.join(file), value) {
        notes.push(format!(
            "limit {what} not applied: cannot write {}: {e}",
            cgroup.dir.join(file).display()
        ));
    }
}

fn read_words(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn words_or_none(path: &Path) -> String {
    let words = read_words(path);
    if words.is_empty() {
        "none".into()
    } else {
        words.into_iter().collect::<Vec<_>>().join(" ")
    }
}

impl RunCgroup {
    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// True while any process is in it.
    pub fn populated(&self) -> bool {
        match std::fs::read_to_string(self.dir.join("cgroup.events")) {
            Ok(t) => t.lines().any(|l| l.trim() == "populated 1"),
            Err(_) => !self.pids().is_empty(),
        }
    }

    /// Sends `signal` to every process in it; KILL goes through `cgroup.kill`, which no fork
    /// can race.
    pub fn signal(&self, signal: Signal) {
        if signal == Signal::SIGKILL && std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), signal);
        }
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(cgroup = %self.dir.display(), "Could not remove the run's cgroup: {e}.");
        }
    }
}

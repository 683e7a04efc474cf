//! Runs in cgroups of their own (cgroup v2), the fallback where none is delegated, and lanes'
//! `limits:`.
//!
//! The tests that need a cgroup v2 hierarchy mount one of their own in a temporary directory
//! (root only) and point `cgroup:` at a directory made in it, so they never touch the
//! machine's own cgroups; where mounting is not allowed they say they were skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Home, sh, wait_gone};

/// A cgroup v2 hierarchy mounted for one test, with a directory of the test's own in it.
struct Mounted {
    mnt: tempfile::TempDir,
    base: PathBuf,
}

impl Mounted {
    fn new(name: &str) -> Option<Self> {
        let mnt = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "cgroup2", "none"])
            .arg(mnt.path())
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !mounted {
            eprintln!("skipped: cannot mount a cgroup v2 hierarchy here (needs root)");
            return None;
        }
        let base = mnt
            .path()
            .join(format!("lanekeeper-test-{}-{name}", std::process::id()));
        std::fs::create_dir(&base).expect("test cgroup");
        Some(Self { mnt, base })
    }

    /// The run cgroups left in the test's directory.
    fn runs_left(&self) -> Vec<String> {
        std::fs::read_dir(&self.base)
            .expect("read test cgroup")
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn controllers(&self) -> String {
        std::fs::read_to_string(self.mnt.path().join("cgroup.controllers")).unwrap_or_default()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        for run in self.runs_left() {
            let _ = std::fs::remove_dir(self.base.join(run));
        }
        let _ = std::fs::remove_dir(&self.base);
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.mnt.path())
            .status();
    }
}

fn run_log(home: &Home, lane: &str) -> String {
    let dir = home.path().join("state/runs").join(lane);
    let log = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .next()
        .expect("a run log");
    std::fs::read_to_string(log.path()).expect("read run log")
}

fn cgroup_yaml(dir: &Path) -> String {
    format!("cgroup: {}\n", dir.display())
}

#[test]
fn each_run_lives_in_a_cgroup_of_its_own_and_a_timeout_empties_it() {
    let Some(cg) = Mounted::new("timeout") else {
        return;
    };
    let home = Home::new();
    home.write("lanekeeper.yaml", &cgroup_yaml(&cg.base));
    // A grandchild that leaves the process group and ignores TERM.
    home.lane(
        "job",
        &format!(
            "schedule:\n  every: 1h\ncommand:\n  argv: {}\n  timeout: 1s\n  grace: 1s\n",
            sh("setsid sh -c 'trap \"\" TERM; sed -n \"s/^0:://p\" /proc/self/cgroup > escaped.cg; \
                echo $$$$ > escaped.pid; exec sleep 60' & \
                while [ ! -s escaped.pid ]; do sleep 0.05; done; sleep 60")
        ),
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    let escaped: i64 = std::fs::read_to_string(home.path().join("escaped.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(escaped);
    let in_cgroup = std::fs::read_to_string(home.path().join("escaped.cg")).unwrap();
    let base_name = cg.base.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        in_cgroup
            .trim()
            .starts_with(&format!("/{base_name}/run-job-")),
        "the grandchild ran in {in_cgroup:?}, not in the run's own cgroup under {base_name}"
    );
    assert!(
        cg.runs_left().is_empty(),
        "the run's cgroup was left behind: {:?}",
        cg.runs_left()
    );
    assert_eq!(home.status("job")["last_result"], "failure");
    let log = run_log(&home, "job");
    assert!(!log.contains("not in a cgroup"), "{log}");
}

#[test]
fn a_cap_is_applied_where_its_controller_is_delegated_and_otherwise_the_log_says_why() {
    let Some(cg) = Mounted::new("limits") else {
        return;
    };
    let home = Home::new();
    home.write("lanekeeper.yaml", &cgroup_yaml(&cg.base));
    home.lane(
        "job",
        &format!(
            "schedule:\n  every: 1h\nlimits:\n  memory: 64M\ncommand:\n  argv: {}\n  env: {{ MNT: {} }}\n",
            sh("cat \"$MNT$(sed -n 's/^0:://p' /proc/self/cgroup)/memory.max\" > max.txt 2>&1; true"),
            cg.mnt.path().display()
        ),
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let log = run_log(&home, "job");
    let max = std::fs::read_to_string(home.path().join("max.txt")).unwrap();
    if cg.controllers().split_whitespace().any(|c| c == "memory") {
        assert_eq!(max.trim(), (64u64 << 20).to_string(), "{log}");
    } else {
        // Here the memory controller belongs to a cgroup v1 hierarchy: the run goes on in its
        // cgroup, uncapped, and its log says so and why.
        assert!(
            log.contains("[lanekeeper: limit memory 64 MiB not applied: the memory controller is not available in"),
            "{log}"
        );
        assert!(max.contains("No such file"), "{max}");
    }
    assert!(cg.runs_left().is_empty(), "{:?}", cg.runs_left());
}

#[test]
fn without_a_cgroup_v2_directory_runs_fall_back_and_say_so() {
    let home = Home::new();
    std::fs::create_dir(home.path().join("plain")).unwrap();
    home.write("lanekeeper.yaml", &cgroup_yaml(&home.path().join("plain")));
    home.lane(
        "job",
        "schedule:\n  every: 1h\nlimits: { cpu: 50% }\ncommand:\n  argv: [sh, -c, 'sleep 0.2 & echo ran']\n",
    );
    let out = home.run(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("warning: limits (cpu 50%) will not be applied on this machine:")
            && stderr.contains("plain is not a cgroup v2 directory"),
        "{stderr}"
    );
    assert!(
        stdout.contains("runs: stopped by process group and descendants (no cgroup:"),
        "{stdout}"
    );

    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let log = run_log(&home, "job");
    assert!(log.contains("ran"), "{log}");
    assert!(
        log.contains("[lanekeeper: not in a cgroup of its own:")
            && log.contains("[lanekeeper: limits not applied (cpu 50%)"),
        "{log}"
    );
}

#[test]
fn cgroup_off_says_nothing_in_the_run_log() {
    let home = Home::new();
    home.write("lanekeeper.yaml", "cgroup: off\n");
    home.lane(
        "job",
        "schedule:\n  every: 1h\ncommand:\n  argv: [sh, -c, 'echo ran']\n",
    );
    let out = home.run(&["fire", "job", "--wait"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(run_log(&home, "job"), "ran\n");
    let out = home.run(&["validate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("(no cgroup: `cgroup: off` in lanekeeper.yaml)"),
        "{stdout}"
    );
}

#[test]
fn limits_and_the_cgroup_setting_are_checked_at_their_place() {
    let home = Home::new();
    home.write("lanekeeper.yaml", "cgroup: somewhere\n");
    home.lane(
        "job",
        "schedule:\n  every: 1h\nlimits:\n  memory: lots\n  cpu: 0%\ncommand:\n  argv: [true]\n",
    );
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "lanekeeper.yaml:1:9: cgroup: `somewhere` is not auto, off or an absolute path",
        "job.yaml:4:11: limits.memory: `lots` is not a memory size",
        "job.yaml:5:8: limits.cpu: `0%` is not a share of a CPU from 1% to",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // Good ones pass.
    home.write("lanekeeper.yaml", "cgroup: auto\n");
    home.lane(
        "job",
        "schedule:\n  every: 1h\nlimits: { memory: 2G, cpu: 150% }\ncommand:\n  argv: [true]\n",
    );
    let out = home.run(&["validate"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

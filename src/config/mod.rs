//! Reading a home's configuration files: host settings and lane files, checked for everything
//! that does not need a plugin. [`crate::compile`] binds the lanes' gates to plugins.
//!
//! Every problem is collected with its `path:line:col`, so `validate` reports them all in one
//! pass; a configuration with any problem is never used.

pub mod cron;
pub mod diagnostic;
pub use crate::model::duration;
pub mod env;
pub mod lane;
pub mod program;
pub mod settings;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use duration::DurationSetting;
use jiff::tz::TimeZone;
use serde_saphyr::Location;
use yaml::Node;

pub use diagnostic::{Diagnostic, Diagnostics};
pub(crate) use lane::RawGate;
use lane::RawLane;
pub use lane::{CatchUp, Command, OnError, Retry, RunLimits, Schedule};
pub use settings::Settings;

use crate::home::Home;

pub(crate) struct ParsedLane {
    name: String,
    path: PathBuf,
    raw: RawLane,
    hash: String,
    env: Vec<env::EnvRef>,
}

/// The lane files that parsed, and the name of every lane file, loaded or not.
pub(crate) struct Rules {
    pub parsed: Vec<ParsedLane>,
    /// Every lane known by name, including those whose file fails to load, so a typo in one
    /// lane does not make its peers report "no lane named …" too.
    pub known: BTreeSet<String>,
}

pub(crate) fn read_rules(dir: &Path, diags: &mut Diagnostics) -> Rules {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(Diagnostic::file(
                dir,
                format!("cannot read the rules directory: {e}; create it and add one <lane>.yaml per lane"),
            ));
            return Rules {
                parsed: Vec::new(),
                known: BTreeSet::new(),
            };
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    read_and_parse(files, diags)
}

/// Parses lane files given as `(path, content)` in this order, as [`read_rules`] does for the
/// files of `rules/`; the fuzz targets pass texts here without touching disk.
///
/// Each file is read and parsed on its own, spread over the cores ([`crate::par::map`]), and
/// the results are then taken in order for what spans files (names declared twice), so the
/// lanes and every problem come out as one file after another would give them.
pub(crate) fn parse_rules(
    files: impl IntoIterator<Item = (PathBuf, std::io::Result<Vec<u8>>)>,
    diags: &mut Diagnostics,
) -> Rules {
    let files: Vec<_> = files.into_iter().collect();
    let read = crate::par::map(
        files,
        crate::par::cores(),
        FILES_AT_ONCE,
        |(path, bytes)| read_lane_file(path, bytes),
    );
    merge_lane_files(read, diags)
}

/// Lane files a thread reads and parses at a time when loading.
const FILES_AT_ONCE: usize = 64;

/// [`read_rules`] with the files read on the threads that parse them too: `rules/`'s files in
/// name order, each read and parsed on its own, then merged in that order.
fn read_and_parse(files: Vec<PathBuf>, diags: &mut Diagnostics) -> Rules {
    let read = crate::par::map(files, crate::par::cores(), FILES_AT_ONCE, |path| {
        let bytes = std::fs::read(&path);
        read_lane_file(path, bytes)
    });
    merge_lane_files(read, diags)
}

/// One lane file read on its own: its problems so far (places already mapped back through its
/// `${VAR}`s), and what it came to.
struct LaneFile {
    path: PathBuf,
    diags: Diagnostics,
    outcome: FileOutcome,
}

enum FileOutcome {
    /// Unreadable or not UTF-8: known by its file's stem.
    Unreadable { stem: String },
    /// Not YAML: known by the name a `lane:` line declares (else its stem), if valid.
    Unparsable { name: String },
    /// Its lane name is invalid.
    BadName,
    /// A lane name, and the file read as a lane (`raw`, with the problems of reading it in
    /// `read`, which a duplicate name makes moot).
    Named {
        name: String,
        loc: Location,
        raw: Option<Box<RawLane>>,
        read: Diagnostics,
        hash: String,
        env: Vec<env::EnvRef>,
    },
}

/// Reads one lane file as far as it can be read without the others.
fn read_lane_file(path: PathBuf, bytes: std::io::Result<Vec<u8>>) -> LaneFile {
    let mut diags = Diagnostics::default();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let text = match bytes
        .map_err(|e| Diagnostic::file(&path, format!("cannot read lane file: {e}")))
        .and_then(|bytes| yaml::utf8(&path, bytes))
    {
        Ok(t) => t,
        Err(d) => {
            diags.push(d.for_lane(&stem));
            return LaneFile {
                path,
                diags,
                outcome: FileOutcome::Unreadable { stem },
            };
        }
    };
    let hash = crate::model::fingerprint::content_hash(text.as_bytes());
    let written = text;
    let env::Substituted {
        text,
        shifts,
        refs: env_refs,
    } = env::substitute(&path, &written, &env_var, &mut diags);
    diags.substituted(&path, shifts.clone());
    let Some(tree) = yaml::tree(&path, &text, &mut diags) else {
        // Unparsable: still known by the name it declares, if a line says so.
        let name = declared_name(&written).unwrap_or(stem);
        return LaneFile {
            path,
            diags,
            outcome: FileOutcome::Unparsable { name },
        };
    };
    env::check_keys(&path, &tree, &shifts, &mut diags);
    let declared = tree.value.get("lane");
    let (name, loc, owner_at) = match declared {
        Some((key, value)) => match &value.value {
            Node::Str(s) => (s.clone(), value.referenced, key.referenced),
            _ => (stem, Location::UNKNOWN, key.referenced),
        },
        None => (stem, Location::UNKNOWN, Location::UNKNOWN),
    };
    if !valid_lane_name(&name) {
        diags.push(at(
            &path,
            loc,
            format!("lane name `{name}` must be 1-64 of a-z, 0-9, `-` or `_`, starting with a letter or digit"),
        ));
        return LaneFile {
            path,
            diags,
            outcome: FileOutcome::BadName,
        };
    }
    // Read here even if the name turns out to be taken (then it is dropped): rare, and it
    // keeps the parse on this thread.
    let mut read = Diagnostics::default();
    read.substituted(&path, shifts);
    let raw = yaml::read::<RawLane>(
        &path,
        &text,
        &tree,
        &lane::SCHEMA,
        &format!("lane `{name}`"),
        owner_at,
        &mut read,
    );
    LaneFile {
        path,
        diags,
        outcome: FileOutcome::Named {
            name,
            loc,
            raw: raw.map(Box::new),
            read,
            hash,
            env: env_refs,
        },
    }
}

/// Takes the files read on their own in order: names, duplicates, problems.
fn merge_lane_files(files: Vec<LaneFile>, diags: &mut Diagnostics) -> Rules {
    let mut rules = Rules {
        parsed: Vec::new(),
        known: BTreeSet::new(),
    };
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    for file in files {
        let LaneFile {
            path,
            diags: found,
            outcome,
        } = file;
        let before = diags.len();
        diags.append(found);
        match outcome {
            FileOutcome::Unreadable { stem } => {
                rules.known.insert(stem);
            }
            FileOutcome::Unparsable { name } => {
                diags.attribute(before, &name);
                if valid_lane_name(&name) {
                    rules.known.insert(name);
                }
            }
            FileOutcome::BadName => {}
            FileOutcome::Named {
                name,
                loc,
                raw,
                read,
                hash,
                env,
            } => {
                rules.known.insert(name.clone());
                if let Some(first) = seen.get(&name) {
                    diags.push(at(
                        &path,
                        loc,
                        format!(
                            "duplicate lane name `{name}`: already defined in {}; rename one (set `lane:` or rename the file)",
                            first.display()
                        ),
                    ));
                    diags.attribute(before, &name);
                    continue;
                }
                diags.append(read);
                diags.attribute(before, &name);
                let Some(raw) = raw else { continue };
                if diags.has_errors_since(before) {
                    // An unset variable or a key with `${…}`: the file as read is not the file meant.
                    continue;
                }
                seen.insert(name.clone(), path.clone());
                rules.parsed.push(ParsedLane {
                    name,
                    path,
                    raw: *raw,
                    hash,
                    env,
                });
            }
        }
    }
    rules
}

/// The process environment, read when a file is loaded: the daemon's is the one it started with.
pub(crate) fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Warns about entries of `dir` named like `what` files (by `extensions`) that are not regular
/// files, which loading skips: a dangling symbolic link, a directory, a named pipe (never opened:
/// reading one would block until some writer came) or a device. Without a word, a lane or
/// plugin would just be missing.
/// Warns about configuration that someone other than its owner could change: whoever can write
/// a rules file or a plugin decides what runs, and as whom. sshd refuses keys like this.
pub(crate) fn writable_by_others(home: &Home, diags: &mut Diagnostics) {
    use std::os::unix::fs::PermissionsExt;
    let mut paths = vec![
        home.root().to_path_buf(),
        home.rules_dir(),
        home.plugins_dir(),
        home.settings_file(),
    ];
    for (dir, exts) in [
        (home.rules_dir(), &["yaml", "yml"][..]),
        (home.plugins_dir(), &["rhai", "wasm"][..]),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| exts.contains(&x))
            })
            .collect();
        files.sort();
        paths.extend(files);
    }
    for path in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        // A sticky directory (like /tmp) still lets others add files, so it counts too.
        if mode & 0o022 != 0 {
            let who = match (mode & 0o020 != 0, mode & 0o002 != 0) {
                (true, true) => "its group and everyone",
                (true, false) => "its group",
                _ => "everyone",
            };
            diags.push(
                Diagnostic::file(
                    &path,
                    format!(
                        "writable by {who} (mode {mode:04o}): whoever can change it decides what runs here; `chmod go-w {}`",
                        path.display()
                    ),
                )
                .warning(),
            );
        }
    }
}

pub(crate) fn skipped_entries(
    dir: &Path,
    extensions: &[&str],
    what: &str,
    diags: &mut Diagnostics,
) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut odd: Vec<(PathBuf, String)> = Vec::new();
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        if !path
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| extensions.contains(&x))
        {
            continue;
        }
        // Follows symbolic links, as loading does; stats, never opens.
        let why = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => continue,
            Ok(m) if m.is_dir() => format!(
                "is a directory, not a {what} file; skipped (only files at the top of {} are read)",
                dir.display()
            ),
            Ok(m) if m.file_type().is_fifo() => {
                "is a named pipe (FIFO), not a file; skipped without reading it".to_string()
            }
            Ok(m) if m.file_type().is_socket() => "is a socket, not a file; skipped".to_string(),
            Ok(_) => "is a device, not a file; skipped".to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_else(|_| "?".into());
                format!(
                    "is a symbolic link to {target}, which does not exist; skipped (fix or remove the link)"
                )
            }
            Err(e) => format!("cannot be read ({e}); skipped"),
        };
        odd.push((path, why));
    }
    odd.sort();
    for (path, why) in odd {
        diags.push(Diagnostic::file(&path, why).warning());
    }
}

/// The name a file that is not valid YAML declares on a top-level `lane:` line, if any.
fn declared_name(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let value = l.strip_prefix("lane:")?;
        let value = value.split(" #").next().unwrap_or_default().trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        valid_lane_name(value).then(|| value.to_string())
    })
}

fn valid_lane_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

pub(crate) fn at(path: &Path, loc: Location, message: impl Into<String>) -> Diagnostic {
    if loc == Location::UNKNOWN {
        Diagnostic::file(path, message)
    } else {
        Diagnostic::yaml(path, loc, message)
    }
}

/// A lane file checked for everything but its gates: the spec [`crate::compile`] binds to plugins.
pub(crate) struct LaneSpec {
    pub name: String,
    pub path: PathBuf,
    pub label: String,
    pub schedule: Schedule,
    pub zone: TimeZone,
    /// `schedule.jitter`: the window each lane's fixed delay is drawn from.
    pub jitter: Option<std::time::Duration>,
    pub catch_up: lane::CatchUp,
    pub max_deferral: Option<std::time::Duration>,
    pub recheck: std::time::Duration,
    pub group: Option<String>,
    pub priority: i64,
    pub retry: Option<Retry>,
    pub command: Command,
    /// Its hooks: its own, else `lanekeeper.yaml`'s.
    pub hooks: crate::model::hook::Hooks,
    /// Deferred this long without a break: `on_give_up`.
    pub give_up_after: Option<std::time::Duration>,
    /// The replicas it may run on; empty: any.
    pub hosts: Vec<String>,
    /// The rules file's content hash.
    pub hash: String,
    /// Its preconditions, as references to plugins.
    pub gates: Vec<RawGate>,
    /// Where `cron:` was written, for a cron that never fires.
    cron_at: Option<Location>,
    /// Where its settings were written.
    pub places: lane::Places,
    /// Values its file took from the environment.
    pub env: Vec<env::EnvRef>,
}

/// Checks one parsed lane file's schedule, durations and command. Problems go to `diags`; the
/// caller decides, once the gates are bound too, whether the lane is usable.
pub(crate) fn spec(
    parsed: ParsedLane,
    home: &Home,
    settings: &Settings,
    programs: &Programs,
    diags: &mut Diagnostics,
) -> LaneSpec {
    let ParsedLane {
        name,
        path,
        raw,
        hash,
        env: env_refs,
    } = parsed;
    let p = path.as_path();
    let sched = &raw.schedule.value;
    let zone = match &sched.timezone {
        None => TimeZone::UTC,
        Some(tz) => match jiff::tz::db().get(&tz.value) {
            Ok(z) => z,
            Err(_) => {
                diags.push(at(
                    p,
                    tz.referenced,
                    format!(
                        "unknown time zone `{}`; use an IANA name such as Europe/Berlin or UTC",
                        tz.value
                    ),
                ));
                TimeZone::UTC
            }
        },
    };
    let schedule = match (&sched.every, &sched.cron) {
        (Some(_), Some(c)) => {
            diags.push(at(
                p,
                c.referenced,
                "give either `every:` or `cron:`, not both",
            ));
            Schedule::Disabled
        }
        (None, None) => {
            diags.push(at(
                p,
                raw.schedule.referenced,
                "schedule needs `every:` (e.g. 24h) or `cron:` (e.g. \"0 3 * * *\")",
            ));
            Schedule::Disabled
        }
        (Some(every), None) => match every.value {
            DurationSetting::On(d) => Schedule::Every(d),
            DurationSetting::Off => Schedule::Disabled,
        },
        (None, Some(c)) => match Schedule::from_cron(&c.value) {
            Ok(schedule) => schedule,
            Err(e) => {
                diags.push(at(
                    p,
                    c.referenced,
                    format!("cannot parse cron expression `{}`: {e}; write 5 fields (min hour dom mon dow) or 6 with seconds", c.value),
                ));
                Schedule::Disabled
            }
        },
    };

    let jitter = sched.jitter.as_ref().and_then(|j| match j.value {
        DurationSetting::Off => None,
        DurationSetting::On(_) => settings::positive(p, "schedule.jitter", j, duration::MAX, diags),
    });
    let max_deferral = raw
        .max_deferral
        .as_ref()
        .and_then(|d| settings::positive(p, "max_deferral", d, duration::MAX, diags));
    let recheck = raw
        .recheck
        .as_ref()
        .and_then(|d| settings::positive(p, "recheck", d, duration::MAX_RECHECK, diags))
        .unwrap_or(settings.recheck);
    let retry = raw.retry.as_ref().and_then(|r| {
        let delay = settings::positive(p, "retry.delay", &r.value.delay, duration::MAX, diags)?;
        let window = settings::positive(p, "retry.window", &r.value.window, duration::MAX, diags)?;
        Some(Retry { delay, window })
    });

    let give_up_after = raw
        .give_up_after
        .as_ref()
        .and_then(|d| settings::positive(p, "give_up_after", d, duration::MAX, diags));
    let hosts = lane_hosts(p, raw.hosts.as_ref(), diags);
    let mut hooks = settings.hooks.clone();
    for (event, written) in raw.hooks() {
        if let Some(h) = written {
            *hooks.slot(event) = settings::compile_hook(p, home.root(), event, h, diags);
        }
    }

    let cmd = &raw.command.value;
    let argv: Vec<String> = cmd.argv.value.iter().map(|a| a.value.clone()).collect();
    if argv.first().is_none_or(String::is_empty) {
        diags.push(at(
            p,
            cmd.argv.referenced,
            "`command.argv` needs at least the program, e.g. [sh, jobs/backup.sh]",
        ));
    }
    let env = check_command_strings(p, cmd, diags);
    let timeout = cmd
        .timeout
        .as_ref()
        .and_then(|d| settings::positive(p, "command.timeout", d, duration::MAX, diags));
    let grace = cmd
        .grace
        .as_ref()
        .and_then(|d| settings::positive(p, "command.grace", d, duration::MAX_WAIT, diags))
        .unwrap_or(lane::DEFAULT_GRACE);
    let mut limits = RunLimits::default();
    if let Some(l) = &raw.limits {
        if let Some(m) = &l.memory {
            match settings::parse_size(&m.value) {
                Ok(bytes) => limits.memory = Some(bytes),
                Err(e) => diags.push(at(p, m.referenced, format!("limits.memory: {e}; e.g. 2G"))),
            }
        }
        if let Some(c) = &l.cpu {
            match RunLimits::parse_cpu(&c.value) {
                Ok(pct) => limits.cpu_percent = Some(pct),
                Err(e) => diags.push(at(p, c.referenced, format!("limits.cpu: {e}"))),
            }
        }
    }
    let command = Command {
        argv,
        cwd: home.resolve(Path::new(
            cmd.cwd.as_ref().map_or(".", |c| c.value.as_str()),
        )),
        env,
        timeout,
        grace,
        limits,
    };
    // A NUL is already an error; what it would find is beside the point.
    if let Some(program) = cmd.argv.value.first()
        && !program.value.is_empty()
        && !program.value.contains('\0')
        && !command.cwd.as_os_str().as_encoded_bytes().contains(&0)
        && let Some(problem) = programs.cannot_run(&program.value, &command.cwd, &command.env)
    {
        diags.push(at(p, program.referenced, problem).warning());
    }

    LaneSpec {
        label: raw.label.clone().unwrap_or_else(|| name.clone()),
        name,
        path,
        schedule,
        zone,
        jitter,
        catch_up: sched.catch_up.unwrap_or_default(),
        max_deferral,
        recheck,
        group: raw.group.as_ref().map(|g| g.value.clone()),
        priority: raw.priority.unwrap_or(lane::DEFAULT_PRIORITY),
        retry,
        command,
        hooks,
        give_up_after,
        hosts,
        hash,
        cron_at: sched.cron.as_ref().map(|c| c.referenced),
        places: lane::Places {
            schedule: sched
                .cron
                .as_ref()
                .map(|c| c.referenced)
                .or(sched.every.as_ref().map(|e| e.referenced))
                .unwrap_or(raw.schedule.referenced),
            max_deferral: raw.max_deferral.as_ref().map(|d| d.referenced),
            recheck: raw.recheck.as_ref().map(|d| d.referenced),
            retry_window: raw.retry.as_ref().map(|r| r.value.window.referenced),
            group: raw.group.as_ref().map(|g| g.referenced),
            timeout: cmd.timeout.as_ref().map(|t| t.referenced),
            hosts: raw.hosts.as_ref().map(|h| h.referenced),
        },
        gates: raw.preconditions,
        env: env_refs,
    }
}

/// `hosts:` checked: each a non-empty name, without repeats; an empty list is refused, since
/// it would mean a lane that can run nowhere.
fn lane_hosts(
    p: &Path,
    raw: Option<&serde_saphyr::Spanned<Vec<serde_saphyr::Spanned<String>>>>,
    diags: &mut Diagnostics,
) -> Vec<String> {
    let Some(raw) = raw else {
        return Vec::new();
    };
    if raw.value.is_empty() {
        diags.push(at(
            p,
            raw.referenced,
            "`hosts` is empty, so the lane could run nowhere; name the replicas (their --host) it may run on, or drop `hosts`",
        ));
    }
    let mut hosts: Vec<String> = Vec::new();
    for h in &raw.value {
        let name = h.value.trim();
        if name.is_empty() {
            diags.push(at(
                p,
                h.referenced,
                "`hosts` has an empty name; write each replica's --host name",
            ));
        } else if hosts.iter().any(|k| k == name) {
            diags.push(at(p, h.referenced, format!("`hosts` names `{name}` twice")).warning());
        } else {
            hosts.push(name.to_string());
        }
    }
    hosts
}

/// A well-formed cron that can never fire is an error; the lane is still kept for read-only
/// views (`status` shows NEXT DUE "never"), and the error stops `load`.
pub(crate) fn check_never_fires(spec: &LaneSpec, now: jiff::Timestamp, diags: &mut Diagnostics) {
    if let (Some(at_), Schedule::Cron { expr, .. }) = (spec.cron_at, &spec.schedule)
        && let Some(why) = spec.schedule.why_never_fires(&spec.zone, now)
    {
        diags.push(
            at(
                &spec.path,
                at_,
                format!("cron `{expr}` never fires: {why}; fix it, or write `cron: off` to disable the lane"),
            )
            .for_lane(&spec.name),
        );
    }
}

/// What the OS cannot pass to a program, reported at its place: a NUL byte in an argument, the
/// working directory or the environment, and an environment variable name that is empty or
/// contains `=` (the child would see another variable, or none). Returns the environment.
fn check_command_strings(
    p: &Path,
    cmd: &lane::RawCommand,
    diags: &mut Diagnostics,
) -> BTreeMap<String, String> {
    const NUL: &str = "contains a NUL byte, which cannot be passed to a program; remove it";
    for (i, arg) in cmd.argv.value.iter().enumerate() {
        if arg.value.contains('\0') {
            diags.push(at(p, arg.referenced, format!("`command.argv[{i}]` {NUL}")));
        }
    }
    if let Some(cwd) = cmd.cwd.as_ref().filter(|c| c.value.contains('\0')) {
        diags.push(at(p, cwd.referenced, format!("`command.cwd` {NUL}")));
    }
    let mut env = BTreeMap::new();
    for (name, value) in &cmd.env.0 {
        let problem = if name.value.is_empty() {
            Some("an environment variable name cannot be empty".to_string())
        } else if name.value.contains('=') {
            Some(format!(
                "environment variable name `{}` cannot contain `=`; the name ends at the first `=`",
                name.value
            ))
        } else if name.value.contains('\0') {
            Some(format!("environment variable name {NUL}"))
        } else {
            None
        };
        if let Some(problem) = problem {
            diags.push(at(p, name.referenced, problem));
        }
        if value.value.contains('\0') {
            diags.push(at(
                p,
                value.referenced,
                format!("the value of `{}` {NUL}", name.value.replace('\0', "\\0")),
            ));
        }
        env.insert(name.value.clone(), value.value.clone());
    }
    env
}

/// Why `program` (a lane's `argv[0]`) could not be started. A warning only: the daemon's
/// environment may differ from the one `validate` runs in.
fn cannot_run(program: &str, cwd: &Path, env: &BTreeMap<String, String>) -> Option<String> {
    program::resolve(program, cwd, env)
        .err()
        .map(|why| format!("{why}; runs will fail to start"))
}

/// What [`cannot_run`] found for each program, working directory and `PATH` during one load:
/// thousands of lanes running the same program would each search `PATH` again (two system
/// calls per directory). Kept for one load only, so a reload sees programs installed since.
#[derive(Default)]
pub(crate) struct Programs(std::sync::Mutex<std::collections::HashMap<ProgramKey, Option<String>>>);

/// A program, the working directory it is looked up from, and the lane's own `PATH`.
type ProgramKey = (String, PathBuf, Option<String>);

impl Programs {
    fn cannot_run(
        &self,
        program: &str,
        cwd: &Path,
        env: &BTreeMap<String, String>,
    ) -> Option<String> {
        let key = (
            program.to_string(),
            cwd.to_path_buf(),
            env.get("PATH").cloned(),
        );
        let known = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(found) = known {
            return found;
        }
        let found = cannot_run(program, cwd, env);
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, found.clone());
        found
    }
}

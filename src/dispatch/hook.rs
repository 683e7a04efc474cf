//! Running a hook: a command of the lane's (`on_failure:` …) with the event as JSON on stdin and
//! `LANEKEEPER_*` variables, in a process group of its own, stopped at its timeout (TERM, then
//! KILL). Its output is appended to `state/hooks/<lane>.log`. Whoever fires it claims the
//! firing in the store first ([`crate::state::Store::claim_hook`]), so it never runs twice.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::AsyncWriteExt;

use crate::home::Home;
use crate::model::hook::{HOOK_GRACE, Hook, HookEvent, HookResult};

/// One event a hook is fired for.
#[derive(Debug, Clone)]
pub struct Firing {
    /// The lane.
    pub lane: String,
    /// The event.
    pub event: HookEvent,
    /// What identifies the event (`run:<id>`, `deferral:<start>`, `retries:<streak start>`):
    /// one firing per key.
    pub key: String,
    /// `LANEKEEPER_REASON`: the deferral's or the trigger's reason.
    pub reason: Option<String>,
    /// `LANEKEEPER_RUN_ID`.
    pub run_id: Option<i64>,
    /// `LANEKEEPER_RESULT`: how the run ended.
    pub result: Option<String>,
    /// The decision or run record, given on stdin.
    pub payload: serde_json::Value,
}

impl Firing {
    /// The `LANEKEEPER_*` variables the hook gets, besides the inherited environment.
    pub fn env(&self, home: &Home) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("LANEKEEPER_LANE", self.lane.clone()),
            ("LANEKEEPER_EVENT", self.event.as_str().to_string()),
            ("LANEKEEPER_HOME", home.root().display().to_string()),
            ("LANEKEEPER_HOOK_KEY", self.key.clone()),
        ];
        if let Some(r) = &self.reason {
            env.push(("LANEKEEPER_REASON", r.clone()));
        }
        if let Some(id) = self.run_id {
            env.push(("LANEKEEPER_RUN_ID", id.to_string()));
        }
        if let Some(r) = &self.result {
            env.push(("LANEKEEPER_RESULT", r.clone()));
        }
        env
    }

    /// What goes on stdin: the event, the lane and the record, one JSON object.
    pub fn stdin(&self) -> Vec<u8> {
        let mut body = serde_json::json!({
            "event": self.event.as_str(),
            "lane": self.lane,
            "key": self.key,
        });
        if let (Some(map), serde_json::Value::Object(payload)) =
            (body.as_object_mut(), &self.payload)
        {
            for (k, v) in payload {
                map.insert(k.clone(), v.clone());
            }
        }
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

/// How a hook ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Success, failure, timeout or error.
    pub result: HookResult,
    /// In words: `exit 3`, `timed out after 30s; stopped`, `cannot start sh: …`.
    pub detail: String,
    /// How long it took.
    pub took: Duration,
}

/// Runs `hook` for `firing` in the home, to its end or its timeout.
pub async fn run(home: &Home, hook: &Hook, firing: &Firing) -> Outcome {
    let started = Instant::now();
    let done = |result, detail: String| Outcome {
        result,
        detail,
        took: started.elapsed(),
    };
    let Some((program, args)) = hook.argv.split_first() else {
        return done(HookResult::Error, "the hook has no program".into());
    };
    let log = open_log(home, firing);
    let (out, err) = match &log {
        Some(f) => (
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
            f.try_clone()
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        ),
        None => (Stdio::null(), Stdio::null()),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(home.root())
        .envs(firing.env(home))
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return done(HookResult::Error, format!("cannot start `{program}`: {e}")),
    };
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    // Fed beside the wait, so a hook that never reads stdin cannot hold it up.
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = firing.stdin();
        tokio::spawn(async move {
            let _ = stdin.write_all(&bytes).await;
        });
    }
    let status = match tokio::time::timeout(hook.timeout, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            signal_group(pid, Signal::SIGTERM);
            if tokio::time::timeout(HOOK_GRACE, child.wait())
                .await
                .is_err()
            {
                signal_group(pid, Signal::SIGKILL);
                let _ = child.wait().await;
            }
            // Whatever it left in its group goes too.
            signal_group(pid, Signal::SIGKILL);
            return done(
                HookResult::Timeout,
                format!(
                    "still running after its timeout of {}; stopped (TERM, then KILL)",
                    crate::model::duration::format(hook.timeout)
                ),
            );
        }
    };
    match status {
        Ok(s) if s.success() => done(HookResult::Success, "exit 0".into()),
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            let how = match (s.code(), s.signal()) {
                (Some(c), _) => format!("exit {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "ended".into(),
            };
            done(HookResult::Failure, how)
        }
        Err(e) => done(HookResult::Error, format!("cannot wait for it: {e}")),
    }
}

fn signal_group(pid: Option<i32>, signal: Signal) {
    if let Some(pid) = pid.filter(|p| *p > 0) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// `state/hooks/<lane>.log`, opened to append, with a line saying what fired; `None` (output
/// discarded) if it cannot be opened.
fn open_log(home: &Home, firing: &Firing) -> Option<std::fs::File> {
    use std::io::Write;
    let path = home.hook_log(&firing.lane);
    std::fs::create_dir_all(path.parent()?).ok()?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .ok()?;
    let _ = writeln!(
        f,
        "[lanekeeper: {} hook for {} ({})]",
        firing.event.key(),
        firing.lane,
        firing.key
    );
    Some(f)
}

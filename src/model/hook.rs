//! Hooks: commands a lane (or `lanekeeper.yaml`) names for events the daemon sees, so an
//! operator hears of a failure or a give-up without watching logs (systemd's `OnFailure=`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The events a hook can be attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookEvent {
    /// A run ended in failure (or was interrupted); not a cancelled one.
    Failure,
    /// Retries are used up, or the lane was deferred for `give_up_after` without a break.
    GiveUp,
    /// The starvation guard waived a soft gate and the lane ran.
    ForcedRun,
    /// A deferral episode began (once per episode, not per check).
    Defer,
}

impl HookEvent {
    /// Every event, in the order the docs list them.
    pub const ALL: [HookEvent; 4] = [
        HookEvent::Failure,
        HookEvent::GiveUp,
        HookEvent::ForcedRun,
        HookEvent::Defer,
    ];

    /// The spelling in `LANEKEEPER_EVENT`, the store and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::Failure => "failure",
            HookEvent::GiveUp => "give-up",
            HookEvent::ForcedRun => "forced-run",
            HookEvent::Defer => "defer",
        }
    }

    /// The key that declares it (`on_failure`, …).
    pub fn key(self) -> &'static str {
        match self {
            HookEvent::Failure => "on_failure",
            HookEvent::GiveUp => "on_give_up",
            HookEvent::ForcedRun => "on_forced_run",
            HookEvent::Defer => "on_defer",
        }
    }
}

/// One hook: a program and its arguments, never through a shell, with its own timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// TERM to its process group after this long, KILL [`HOOK_GRACE`] later.
    pub timeout: Duration,
}

/// A lane's hooks, its own or `lanekeeper.yaml`'s defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    /// A run failed.
    pub on_failure: Option<Hook>,
    /// Retries used up, or deferred past `give_up_after`.
    pub on_give_up: Option<Hook>,
    /// The starvation guard forced a run.
    pub on_forced_run: Option<Hook>,
    /// A deferral episode began.
    pub on_defer: Option<Hook>,
}

impl Hooks {
    /// The hook for `event`, if one is declared.
    pub fn get(&self, event: HookEvent) -> Option<&Hook> {
        match event {
            HookEvent::Failure => self.on_failure.as_ref(),
            HookEvent::GiveUp => self.on_give_up.as_ref(),
            HookEvent::ForcedRun => self.on_forced_run.as_ref(),
            HookEvent::Defer => self.on_defer.as_ref(),
        }
    }

    /// The slot for `event`.
    pub fn slot(&mut self, event: HookEvent) -> &mut Option<Hook> {
        match event {
            HookEvent::Failure => &mut self.on_failure,
            HookEvent::GiveUp => &mut self.on_give_up,
            HookEvent::ForcedRun => &mut self.on_forced_run,
            HookEvent::Defer => &mut self.on_defer,
        }
    }

    /// Whether any hook is declared.
    pub fn any(&self) -> bool {
        HookEvent::ALL.iter().any(|e| self.get(*e).is_some())
    }
}

/// How a hook ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookResult {
    /// Exit 0.
    Success,
    /// A non-zero exit or a signal.
    Failure,
    /// Still running at its timeout: stopped.
    Timeout,
    /// It could not be started.
    Error,
}

impl HookResult {
    /// The stored and exported spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HookResult::Success => "success",
            HookResult::Failure => "failure",
            HookResult::Timeout => "timeout",
            HookResult::Error => "error",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(HookResult::Success),
            "failure" => Some(HookResult::Failure),
            "timeout" => Some(HookResult::Timeout),
            "error" => Some(HookResult::Error),
            _ => None,
        }
    }
}

/// A recorded hook firing: one per (lane, event, key), so it never runs twice for one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookFiring {
    /// The lane.
    pub lane: String,
    /// The event.
    pub event: HookEvent,
    /// What identifies the event: `run:<id>`, `deferral:<episode start>`, …
    pub key: String,
    /// When it was started.
    pub at: jiff::Timestamp,
    /// How it ended; `None` while it runs (or if its runner died).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<HookResult>,
    /// The exit, the timeout, or why it could not start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A hook's timeout when none is written.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Between TERM and KILL for a hook past its timeout.
pub const HOOK_GRACE: Duration = Duration::from_secs(5);

//! The coordinator daemon: `lanekeeper run`.
//!
//! One single-threaded event loop. It sleeps until the earliest of: the next time a lane becomes
//! due, a deferred lane's re-check, a retry, a child exiting, a configuration change or a
//! signal. It never polls on a timer otherwise. Each wake-up is one evaluation pass over every
//! lane (one shared host, so probes are shared), run on a blocking thread because plugins block.
//! Then the triggers that the groups allow are dispatched through the same code as `fire`.

mod changelog;
mod hooks;
mod recovery;
mod reload;
mod retries;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::Signal;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use crate::clock::{Clock, earlier, later};
use crate::compile::{self, Config, Lane};
use crate::config::{self, Diagnostics};
use crate::dispatch::lock::{LaneLock, LockError};
use crate::dispatch::{self, DispatchError, RunReport, Start, Stopper, SupervisorLog};
use crate::engine::{self, Decision, Origin, Outcome};
use crate::home::Home;
use crate::metrics::Metrics;
use crate::observe::{LiveObserver, Observer};
use crate::state::{
    Access, LaneStates, LeaderView, Leadership, Location, ReloadStatus, Store, StoreError,
};

/// The longest the loop sleeps without a reason (shared with simulations).
const MAX_SLEEP: Duration = engine::wake::MAX_SLEEP;
/// How long to wait before trying again after a pass failed (e.g. the disk was full).
const PASS_RETRY: Duration = Duration::from_secs(30);
/// How many runs start at once: a pass that triggers hundreds of lanes starts their
/// supervisors a batch at a time, so it never holds hundreds of start-up pipes open together.
const MAX_STARTING: usize = 16;
/// How long the loop waits for another process's write lock before it moves on.
const STORE_WAIT: Duration = Duration::from_secs(1);
/// How soon a pass comes back to record decisions the store refused.
const RECORD_RETRY: Duration = Duration::from_secs(2);
/// The most decisions kept while the store refuses them.
const MAX_PENDING: usize = 100_000;
/// The first wait before trying again to start a run that could not start (e.g. the disk was
/// full); it doubles with each failure in a row, up to [`DISPATCH_RETRY_MAX`].
const DISPATCH_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between attempts to start a run that keeps failing to start.
const DISPATCH_RETRY_MAX: Duration = Duration::from_secs(30);
/// How often old history is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Something that wakes the loop.
#[derive(Debug)]
pub enum Event {
    /// A run this daemon supervises (or adopted) ended.
    RunEnded(String, Option<Result<RunReport, String>>),
    /// Configuration files changed, or SIGHUP.
    Reload(&'static str),
    /// A command changed what the store says about a lane (`pause`, `resume`, `stop`): decide
    /// again now.
    Wake,
    /// A hook ended: its firing's row id, the firing and how it ended.
    HookEnded(i64, dispatch::hook::Firing, dispatch::hook::Outcome),
    /// The leader handed a run to this replica (PostgreSQL's NOTIFY): take it now.
    HandedOff,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Another daemon holds the home.
    #[error(
        "another lanekeeper daemon ({holder}) already serves {home}; stop it first (one daemon per home)"
    )]
    AlreadyRunning {
        /// Who holds it.
        holder: String,
        /// The home.
        home: String,
    },
    /// The configuration is invalid at start (there is no last good one to fall back on).
    #[error("invalid configuration")]
    Config(Diagnostics),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Setting up the loop failed.
    #[error("{0}")]
    Setup(String),
}

/// Why a pass could not decide.
#[derive(Debug, thiserror::Error)]
enum PassError {
    /// The lane states could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The thread deciding the lanes failed.
    #[error("the evaluation thread failed: {0}")]
    Thread(String),
}

/// A pass's decisions, made at `now` on `states`.
struct Decided {
    decisions: Vec<Decision>,
    states: Arc<LaneStates>,
    now: Timestamp,
}

/// What `run --once` did.
#[derive(Debug, Default)]
pub struct OnceReport {
    /// The pass's decisions.
    pub decisions: Vec<Decision>,
    /// Each dispatched run and how it ended.
    pub runs: Vec<(String, Result<RunReport, String>)>,
    /// The configuration's secrets from the environment, to leave out of what is printed.
    pub secrets: Vec<crate::config::env::EnvRef>,
}

/// Runs the daemon until SIGTERM/SIGINT, or one pass with `once`. `listen` overrides the
/// settings' HTTP address; `clock` is the real one except for rehearsals (`run --at`).
pub fn run(
    home: &Home,
    once: bool,
    listen: Option<SocketAddr>,
    clock: Arc<dyn Clock>,
) -> Result<OnceReport, DaemonError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Setup(format!("cannot start the runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async {
        let (mut daemon, events) = Daemon::start(home, once, clock)?;
        if !once && let Some(addr) = listen.or(daemon.config.settings.listen) {
            daemon.serve_http(addr).await?;
        }
        daemon.serve(events).await
    });
    drop(local);
    // A pass cut short by a signal may still be waiting on a probe on a blocking thread;
    // dropping the runtime would wait for it.
    runtime.shutdown_background();
    outcome
}

struct Daemon {
    home: Home,
    config: Arc<Config>,
    /// The configuration as the HTTP endpoint sees it (swapped on reload).
    shared_config: Arc<RwLock<Arc<Config>>>,
    metrics: Arc<Metrics>,
    store: Rc<dyn Store>,
    /// Where the store is, for the HTTP endpoint's own connection.
    location: Location,
    /// The fencing token of the lease this replica holds on a shared store, if it leads.
    token: Option<i64>,
    /// The leader this replica last saw, to log each change once.
    seen_leader: Option<(String, i64)>,
    observer: Arc<dyn Observer>,
    clock: Arc<dyn Clock>,
    /// Runs this daemon started, by lane, with the way to stop them.
    runs: HashMap<String, Stopper>,
    changelog: changelog::Changelog,
    events: UnboundedSender<Event>,
    once: bool,
    stopping: bool,
    last_prune: Option<std::time::Instant>,
    /// Decisions the store would not take yet (locked by another process, disk full): recorded
    /// before the next pass's, so a busy store delays the history, never loses it.
    pending: Vec<Decision>,
    /// Failure streaks whose used-up retries were already reported.
    retries: retries::Retries,
    /// The downtime this daemon's start ended, until its slots are counted at the first pass.
    downtime: Option<crate::model::lane_state::Downtime>,
    /// Lanes whose start failed in the last pass, with the wait before the next attempt: no
    /// event follows a failed start, so the loop must wake for it itself.
    start_backoff: HashMap<String, Duration>,
    /// Hook firings handled (run or found claimed), so a pass does not ask the store again.
    hooks_seen: HashSet<(String, crate::state::HookEvent, String)>,
    /// Each lane's deferral episode in progress, by its start, for when the store could not
    /// record it yet.
    open_deferrals: HashMap<String, Timestamp>,
    /// Hooks still running; `run --once` and shutdown wait for them.
    hooks_running: usize,
    _lock: LaneLock,
}

impl Daemon {
    fn start(
        home: &Home,
        once: bool,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, UnboundedReceiver<Event>), DaemonError> {
        // Absolute paths, so file-change events match whatever the working directory.
        let home = home.rooted_at(
            std::fs::canonicalize(home.root()).unwrap_or_else(|_| home.root().to_path_buf()),
        );
        let config = compile::load(&home).map_err(DaemonError::Config)?;
        let location = Location::of(&home, config.settings.state.as_deref())
            .map_err(|e| DaemonError::Setup(format!("state: {e}")))?;
        // On a shared store, replicas on one machine (differing by --host) may share a home.
        let lock_name = match location.is_shared() {
            true => format!("daemon-{}.lock", file_safe(home.host())),
            false => "daemon.lock".into(),
        };
        let lock = match LaneLock::try_acquire(&home.state_dir().join(lock_name)) {
            Ok(l) => l,
            Err(LockError::Busy { holder }) => {
                return Err(DaemonError::AlreadyRunning {
                    holder: holder.map_or("pid unknown".into(), |p| format!("pid {p}")),
                    home: home.root().display().to_string(),
                });
            }
            Err(e) => return Err(DaemonError::Setup(e.to_string())),
        };
        crate::state::refuse_lost_history(&home, &location)?;
        // The file `pause`, `resume` and `stop` write to wake the loop; it must exist to be
        // watched.
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.wake_file())
        {
            tracing::warn!(file = %home.wake_file().display(), "Cannot create the wake file ({e}); pauses reach the daemon at its next pass.");
        }
        let store: Rc<dyn Store> = Rc::from(location.open(Access::Wait(STORE_WAIT))?);
        let (tx, rx) = unbounded_channel();
        recovery::recover(&home, &store, &clock, &tx, !once)?;
        // The time since a daemon was last seen deciding is the home's downtime: the due rule
        // counts its slots, and `catch_up` says what they owe. On a shared store that is the
        // time without a leader, recorded by whichever replica takes the lease.
        let downtime = match location.is_shared() {
            true => None,
            false => store.daemon_started(clock.now())?,
        };
        tracing::info!(home = %home.root().display(), lanes = config.lanes.len(), pid = std::process::id(), "Daemon started.");
        match dispatch::cgroup::placement(&config.settings.cgroup) {
            Ok(base) => {
                tracing::info!(cgroup = %base.dir.display(), "Each run gets a cgroup of its own.")
            }
            Err(why) => tracing::info!(
                "Runs get no cgroup of their own ({why}); they are stopped by process group and descendants."
            ),
        }
        let config = Arc::new(config);
        Ok((
            Self {
                home,
                shared_config: Arc::new(RwLock::new(Arc::clone(&config))),
                metrics: Arc::new(Metrics::new()),
                config,
                store,
                location,
                token: None,
                seen_leader: None,
                observer: Arc::new(LiveObserver::default()),
                clock,
                runs: HashMap::new(),
                changelog: changelog::Changelog::default(),
                events: tx,
                once,
                stopping: false,
                last_prune: None,
                pending: Vec::new(),
                retries: retries::Retries::default(),
                downtime,
                start_backoff: HashMap::new(),
                hooks_seen: HashSet::new(),
                open_deferrals: HashMap::new(),
                hooks_running: 0,
                _lock: lock,
            },
            rx,
        ))
    }

    async fn serve(
        &mut self,
        mut events: UnboundedReceiver<Event>,
    ) -> Result<OnceReport, DaemonError> {
        let setup = |e: std::io::Error| DaemonError::Setup(format!("cannot watch signals: {e}"));
        let mut term = signal(SignalKind::terminate()).map_err(setup)?;
        let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
        let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
        if !self.once && self.location.is_shared() {
            let events = self.events.clone();
            self.store.watch_hand_offs(
                self.home.host(),
                Box::new(move || events.send(Event::HandedOff).is_ok()),
            );
        }
        let _watch = if self.once {
            None
        } else {
            match reload::watch(&self.home, self.events.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("{e}; hot reload is off, SIGHUP still reloads.");
                    None
                }
            }
        };

        loop {
            // A signal ends a pass still deciding (waiting on probes, say): nothing it decided
            // is recorded or dispatched. Once decided, the pass records and dispatches to the
            // end; a signal meanwhile waits for the next select.
            let passed = if self.lead() {
                let decided = tokio::select! {
                    r = self.decide() => r,
                    Some(()) = term.recv() => return self.shutdown(&mut events, "SIGTERM").await,
                    Some(()) = int.recv() => return self.shutdown(&mut events, "SIGINT").await,
                };
                match decided {
                    Ok(decided) => Ok(self.act(decided).await),
                    Err(e) => Err(e),
                }
            } else {
                // Another replica decides; ask again before its lease could lapse unseen.
                Ok((Vec::new(), later(self.clock.now(), self.max_sleep())))
            };
            // Runs the leader handed to this replica; polled every iteration, which on a
            // shared store comes at least every third of the lease.
            self.take_hand_offs().await;
            let (decisions, wake) = match passed {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(
                        "Evaluation pass failed: {e}; trying again in {}.",
                        config::duration::format(PASS_RETRY)
                    );
                    (Vec::new(), later(self.clock.now(), PASS_RETRY))
                }
            };
            if self.once {
                let runs = self.drain(&mut events, None, true).await;
                return Ok(OnceReport {
                    decisions,
                    runs,
                    secrets: self.config.secrets(),
                });
            }
            let max = self.max_sleep();
            let sleep = wake.duration_since(self.clock.now()).clamp(
                SignedDuration::ZERO,
                SignedDuration::try_from(max).unwrap_or_default(),
            );
            let sleep = Duration::try_from(sleep).unwrap_or(max);
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                Some(event) = events.recv() => self.handle(event).await,
                Some(()) = hup.recv() => self.reload("SIGHUP").await,
                Some(()) = term.recv() => return self.shutdown(&mut events, "SIGTERM").await,
                Some(()) = int.recv() => return self.shutdown(&mut events, "SIGINT").await,
            }
        }
    }

    /// The longest the loop sleeps: on a shared store a third of the lease, so the leader
    /// renews in time and a follower notices a lapsed lease within it.
    fn max_sleep(&self) -> Duration {
        match self.location.is_shared() {
            true => MAX_SLEEP.min(self.config.settings.lease_ttl / 3),
            false => MAX_SLEEP,
        }
    }

    /// Takes or renews the leader's lease; true when this replica may decide and dispatch.
    /// A store that cannot answer is no lease: deciding without one could run a lane twice.
    fn lead(&mut self) -> bool {
        // Every replica announces itself first, leading or not: the leader hands runs of
        // lanes with `hosts:` only to replicas seen within the lease TTL.
        if let Err(e) = self.store.heartbeat(self.home.host()) {
            tracing::warn!("Cannot note this replica alive in the store ({e}); trying again.");
        }
        let asked = self
            .store
            .lead(self.home.host(), self.config.settings.lease_ttl);
        let (leading, view) = match asked {
            Ok(Leadership::Sole) => {
                self.metrics.observe_leadership(true, None);
                return true;
            }
            Ok(Leadership::Leading { lease, now }) => (true, Some(LeaderView { lease, now })),
            Ok(Leadership::Following { lease, now }) => {
                (false, lease.map(|lease| LeaderView { lease, now }))
            }
            Err(e) => {
                if self.token.take().is_some() {
                    tracing::error!(
                        "Cannot renew the leader's lease ({e}); deciding nothing until the store answers."
                    );
                } else {
                    tracing::warn!("Cannot ask the store who leads ({e}); trying again.");
                }
                self.metrics.observe_leadership(false, None);
                return false;
            }
        };
        self.metrics.observe_leadership(leading, view.as_ref());
        let token = view.as_ref().filter(|_| leading).map(|v| v.lease.token);
        if token != self.token {
            match (token, view.as_ref()) {
                (Some(t), _) => tracing::info!(
                    host = self.home.host(),
                    token = t,
                    "Leading: this replica decides and dispatches."
                ),
                (None, _) if self.token.is_some() => tracing::warn!(
                    host = self.home.host(),
                    "No longer leading; deciding nothing."
                ),
                _ => {}
            }
            self.token = token;
            // Every leader write of this connection, and each run started, carries the token.
            // A replica that stops leading keeps its old token, so a stray write is refused.
            if token.is_some() {
                self.store.fence(token);
                // Taking the lease is a daemon starting to decide: the span since the last
                // leader was seen is downtime, whose slots follow each lane's catch_up.
                match self.store.daemon_started(self.clock.now()) {
                    Ok(down) => self.downtime = down,
                    Err(e) => tracing::warn!(
                        "Could not record the time without a leader ({e}); its missed slots are not counted."
                    ),
                }
            }
        }
        if !leading {
            let seen = view
                .filter(LeaderView::live)
                .map(|v| (v.lease.host, v.lease.token));
            if seen != self.seen_leader {
                match &seen {
                    Some((host, token)) => {
                        tracing::info!(leader = %host, token, "Following: another replica leads.")
                    }
                    None => tracing::info!("Following: no replica leads yet; asking again."),
                }
                self.seen_leader = seen;
            }
        } else {
            self.seen_leader = None;
        }
        leading
    }

    /// The store refused a leader write by fencing: the lease moved on while this replica
    /// was not looking (stopped, partitioned). Nothing more is decided or started until it
    /// leads again.
    fn fenced(&mut self, e: &StoreError) {
        tracing::error!("{e}; dispatching nothing, dropping this pass's decisions.");
        self.metrics.observe_fenced();
        self.token = None;
        self.pending.clear();
    }

    /// Starts the HTTP endpoint.
    async fn serve_http(&self, addr: SocketAddr) -> Result<(), DaemonError> {
        let store = self.location.open(Access::Create)?;
        let state = Arc::new(crate::web::WebState {
            metrics: Arc::clone(&self.metrics),
            config: Arc::clone(&self.shared_config),
            store: std::sync::Mutex::new(store),
            clock: Arc::clone(&self.clock),
            simulations: self.home.simulations_dir(),
        });
        let bound = crate::web::serve(addr, state)
            .await
            .map_err(|e| DaemonError::Setup(format!("cannot listen on {addr}: {e}")))?;
        tracing::info!(addr = %bound, "HTTP endpoint listening (/, /status, /metrics, /simulation).");
        Ok(())
    }

    fn ended(&mut self, lane: &str, report: Option<&Result<RunReport, String>>) {
        self.runs.remove(lane);
        if let Some(Ok(r)) = report {
            self.metrics.observe_run(lane, r);
            if matches!(
                r.result,
                crate::state::RunResult::Failure | crate::state::RunResult::Interrupted
            ) {
                self.failed_run(lane, r.run_id, Some(r));
            }
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::RunEnded(lane, report) => self.ended(&lane, report.as_ref()),
            Event::Reload(why) => self.reload(why).await,
            Event::Wake => tracing::debug!("Woken by a command; deciding again."),
            Event::HandedOff => tracing::debug!("Woken by a hand-off to this replica."),
            Event::HookEnded(id, firing, outcome) => self.hook_ended(id, &firing, &outcome),
        }
    }

    /// Lane states as recorded, dead runs pruned, every configured lane present.
    fn states(&self) -> Result<LaneStates, StoreError> {
        let mut states = dispatch::process::live_states(&*self.store, &self.config.lanes)?;
        dispatch::process::note_alive_hosts(
            &mut states,
            &*self.store,
            self.home.host(),
            self.config.settings.lease_ttl,
        )?;
        Ok(states)
    }

    /// One evaluation pass: decide, record changes, dispatch. Returns the decisions and when
    /// the loop should wake next.
    /// The first half of a pass: every lane decided, on a blocking thread (plugins block).
    async fn decide(&mut self) -> Result<Decided, PassError> {
        let now = self.clock.now();
        // A pause whose `until` passed ends by itself; its end is recorded here.
        match self.store.settle_expired_pauses(now) {
            Ok(0) => {}
            Ok(n) => tracing::info!(pauses = n, "Pauses ended at their `until`."),
            Err(e) => tracing::warn!("Could not record the end of expired pauses: {e}."),
        }
        let states = Arc::new(self.states()?);
        let (config, observer, st) = (
            Arc::clone(&self.config),
            Arc::clone(&self.observer),
            Arc::clone(&states),
        );
        let started = std::time::Instant::now();
        let decisions =
            tokio::task::spawn_blocking(move || engine::pass_all(&config, st, now, observer, None))
                .await
                .map_err(|e| PassError::Thread(e.to_string()))?;
        self.metrics.observe_pass_time(started.elapsed());
        Ok(Decided {
            decisions,
            states,
            now,
        })
    }

    /// The second half: record the decisions, dispatch the triggers. Returns the decisions
    /// and when the loop should wake next.
    async fn act(&mut self, decided: Decided) -> (Vec<Decision>, Timestamp) {
        let Decided {
            decisions,
            states,
            now,
        } = decided;

        // Every evaluation is recorded; the store coalesces repeats into episodes. The log
        // gets only the changes.
        self.changelog.log_changes(&decisions);
        self.metrics.observe_pass(&decisions);
        self.note_exhausted_retries(&states, now);
        self.note_missed_slots(&states);
        if let Err(e) = self.store.daemon_seen(now) {
            tracing::warn!(
                "Could not record this pass's time ({e}); a restart may count slots decided now as missed."
            );
        }
        let origin = if self.once {
            Origin::RunOnce
        } else {
            Origin::Daemon
        };
        if !self.record(&decisions, origin) {
            return (Vec::new(), later(now, self.max_sleep()));
        }
        self.pass_hooks(&decisions, &states, now);
        self.prune(now);
        if !self.stopping {
            let triggers: Vec<&Decision> = decisions
                .iter()
                .filter(|d| d.outcome == Outcome::Trigger)
                .collect();
            let failed_before = std::mem::take(&mut self.start_backoff);
            self.dispatch(&triggers, &failed_before).await;
        }
        let mut wake = self.next_wake(&decisions, &states, now);
        if !self.pending.is_empty() {
            wake = wake.min(later(now, RECORD_RETRY));
        }
        // What a rehearsal (`run --once --at`) needs to take the next step as the loop would.
        tracing::debug!(at = %wake, "Next pass, unless an event comes first.");
        (decisions, wake)
    }

    /// Records a pass's decisions after any the store refused before; what it refuses now is
    /// kept for the next pass (up to [`MAX_PENDING`], oldest dropped first, and said so).
    /// False when the store refused them by fencing: this replica no longer leads, and the
    /// pass must start nothing.
    fn record(&mut self, decisions: &[Decision], origin: Origin) -> bool {
        if !self.pending.is_empty() {
            match self.store.record_decisions(&self.pending, origin) {
                Ok(()) => {
                    tracing::info!(
                        decisions = self.pending.len(),
                        "Recorded the decisions kept from earlier passes."
                    );
                    self.pending.clear();
                }
                Err(e) => return self.keep(decisions, &e),
            }
        }
        match self.store.record_decisions(decisions, origin) {
            Ok(()) => true,
            Err(e) => self.keep(decisions, &e),
        }
    }

    fn keep(&mut self, decisions: &[Decision], e: &StoreError) -> bool {
        if matches!(e, StoreError::Fenced { .. }) {
            self.fenced(e);
            return false;
        }
        self.pending.extend_from_slice(decisions);
        let over = self.pending.len().saturating_sub(MAX_PENDING);
        if over > 0 {
            self.pending.drain(..over);
            tracing::error!(
                dropped = over,
                "The store has refused decisions for too long; dropped the oldest."
            );
        }
        tracing::error!(
            pending = self.pending.len(),
            "Could not record decisions ({e}); keeping them to record with the next pass."
        );
        true
    }

    /// Logs and counts, once per start, the slots each lane missed while no daemon ran.
    fn note_missed_slots(&mut self, states: &LaneStates) {
        let Some(down) = self.downtime.take() else {
            return;
        };
        for lane in &self.config.lanes {
            let last = states.get(&lane.name).and_then(|s| s.last_run_at);
            let missed = engine::schedule::missed_slots(
                &engine::schedule::Timing::of(lane),
                last,
                Some(down),
            );
            if missed > 0 {
                // Counted before it is logged: the log line means /metrics has it.
                self.metrics.observe_missed_slots(&lane.name, missed);
                tracing::info!(
                    lane = %lane.name,
                    missed,
                    down_from = %down.from,
                    down_to = %down.to,
                    catch_up = lane.catch_up.as_str(),
                    "Slots missed while the daemon was down."
                );
            }
        }
    }

    /// Logs and counts, once per failure streak, each lane whose retries are used up.
    fn note_exhausted_retries(&mut self, states: &LaneStates, now: Timestamp) {
        for e in self
            .retries
            .newly_exhausted(&self.config.lanes, states, now)
        {
            tracing::warn!(
                lane = %e.lane,
                failing_since = %e.failing_since,
                window = %config::duration::format(e.window),
                "Retries exhausted: the retry window is used up; the lane waits for its normal schedule."
            );
            self.metrics.observe_retries_exhausted(&e.lane);
            self.retries_given_up(&e.lane, e.failing_since);
        }
    }

    /// Starts a run for each trigger: every supervisor at once, then each start awaited, so
    /// one slow start does not hold the others back and the next pass finds them all recorded.
    async fn dispatch(
        &mut self,
        triggers: &[&Decision],
        failed_before: &HashMap<String, Duration>,
    ) {
        let token = self.token;
        for (i, chunk) in triggers.chunks(MAX_STARTING).enumerate() {
            // On a shared store the lease is renewed before each further chunk, as starts can
            // outlast a third of the TTL. A start refused by fencing clears the token, and a
            // lease that lapsed meanwhile comes back with another: either way this replica
            // stopped leading while deciding, and the rest of the pass is not started. It
            // must never start with no token (an unfenced start records a run whoever leads:
            // a second run of a lane the new leader ran) nor with a token newer than its
            // decisions.
            if self.location.is_shared()
                && (self.token.is_none() || (i > 0 && (!self.lead() || self.token != token)))
            {
                tracing::warn!(
                    triggers = triggers.len(),
                    "No longer leading under the lease this pass was decided with: the rest of its runs are not started."
                );
                break;
            }
            self.dispatch_some(chunk, failed_before).await;
        }
    }

    async fn dispatch_some(
        &mut self,
        triggers: &[&Decision],
        failed_before: &HashMap<String, Duration>,
    ) {
        let mut starting = Vec::new();
        for decision in triggers {
            let Some(lane) = self.config.lane(&decision.lane).cloned() else {
                continue;
            };
            let source = decision.source.map_or("periodic-sweep", |s| s.as_str());
            if !lane.hosts.is_empty() && !lane.hosts.iter().any(|h| h == self.home.host()) {
                self.hand_off(&lane, source, decision.at);
                continue;
            }
            let mut spec = dispatch::RunSpec::new(
                &lane,
                &self.config.settings,
                source,
                &*self.clock,
                &self.location,
            );
            spec.fence = self.token;
            spec.host = Some(self.home.host().to_string());
            let home = self.home.clone();
            let task = tokio::task::spawn_local(async move {
                dispatch::start(&home, &spec, SupervisorLog::Inherit).await
            });
            let forced = (decision.source == Some(engine::TriggerSource::StarvationGuard))
                .then(|| (*decision).clone());
            starting.push((lane, source, task, forced));
        }
        for (lane, source, task, forced) in starting {
            let started = task.await.unwrap_or_else(|e| {
                Err(DispatchError::Supervisor {
                    lane: lane.name.clone(),
                    message: format!("the start was lost: {e}"),
                })
            });
            if let (Some(d), Ok(Start::Running(run))) = (&forced, &started) {
                self.forced_run(d, run.run_id);
            }
            self.started(lane, source, started, failed_before);
        }
    }

    /// The leader's side of `hosts:`: the run goes to the first of the lane's hosts that is
    /// alive, as a hand-off row written fenced; that replica starts it (see
    /// [`Self::take_hand_offs`]).
    fn hand_off(&mut self, lane: &Lane, source: &str, decided_at: Timestamp) {
        let alive = match self.store.alive_hosts(self.config.settings.lease_ttl) {
            Ok(a) => a.unwrap_or_else(|| vec![self.home.host().to_string()]),
            Err(e) => {
                tracing::error!(lane = %lane.name, "Not handed off: cannot read the replicas alive ({e}).");
                return;
            }
        };
        let Some(host) = engine::eligible_host(lane, &alive) else {
            tracing::warn!(lane = %lane.name, hosts = %lane.hosts.join(", "), "Not handed off: none of the lane's hosts is alive any more; the next pass defers it.");
            return;
        };
        let hand = crate::state::HandOff {
            lane: lane.name.clone(),
            host: host.to_string(),
            token: self.token,
            source: source.to_string(),
            decided_at,
            age: Duration::ZERO,
        };
        match self.store.hand_off(&hand) {
            Ok(true) => {
                tracing::info!(lane = %lane.name, to = %hand.host, source, "Handed the run to the replica that may run it.")
            }
            Ok(false) => {
                tracing::debug!(lane = %lane.name, to = %hand.host, "A hand-off of the lane is still waiting.")
            }
            Err(e @ StoreError::Fenced { .. }) => self.fenced(&e),
            Err(e) => {
                tracing::error!(lane = %lane.name, to = %hand.host, "Could not hand the run off: {e}.")
            }
        }
    }

    /// The executing side of `hosts:`: starts, through this replica's own supervisor, each run
    /// the leader handed to it, then removes the hand-off. The run's claim carries the
    /// leader's token, so a hand-off from a deposed leader starts nothing; one decided before
    /// the lane's last recorded start (the leader had not seen that run), or waiting longer
    /// than the lease (this replica was down, and the decision is old), is dropped unrun.
    /// This replica decides nothing here: a dropped hand-off is decided again by the leader.
    async fn take_hand_offs(&mut self) {
        if self.stopping || self.once || !self.location.is_shared() {
            return;
        }
        let host = self.home.host().to_string();
        let hands = match self.store.hand_offs(&host) {
            Ok(h) if h.is_empty() => return,
            Ok(h) => h,
            Err(e) => {
                tracing::warn!("Cannot read the runs handed to this replica ({e}); trying again.");
                return;
            }
        };
        let states = match self.store.lane_states() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    "Cannot read the lane states for the handed runs ({e}); trying again."
                );
                return;
            }
        };
        for hand in hands {
            let stale = hand.age > self.config.settings.lease_ttl
                || states
                    .get(&hand.lane)
                    .and_then(|s| s.last_run_at)
                    .is_some_and(|t| t >= hand.decided_at);
            match self.config.lane(&hand.lane).cloned() {
                None => {
                    tracing::warn!(lane = %hand.lane, "Dropped a handed run: the lane is not configured on this replica.")
                }
                Some(lane) if !lane.hosts.contains(&host) => {
                    tracing::warn!(lane = %hand.lane, hosts = %lane.hosts.join(", "), "Dropped a handed run: this replica's configuration does not list it in the lane's hosts.")
                }
                Some(_) if stale || self.runs.contains_key(&hand.lane) => {
                    tracing::info!(lane = %hand.lane, "Dropped a handed run: the lane ran since it was decided, or it waited longer than the lease (the leader decides again).")
                }
                Some(lane) => self.start_handed(lane, &hand).await,
            }
            if let Err(e) = self.store.drop_hand_off(&hand.lane, &host) {
                tracing::warn!(lane = %hand.lane, "Could not remove the hand-off ({e}); the next start is refused as stale.");
            }
        }
    }

    async fn start_handed(&mut self, lane: Lane, hand: &crate::state::HandOff) {
        let mut spec = dispatch::RunSpec::new(
            &lane,
            &self.config.settings,
            &hand.source,
            &*self.clock,
            &self.location,
        );
        spec.fence = hand.token;
        spec.host = Some(self.home.host().to_string());
        tracing::info!(lane = %lane.name, source = %hand.source, "Starting a run the leader handed to this replica.");
        let started = dispatch::start(&self.home, &spec, SupervisorLog::Inherit).await;
        if let Err(DispatchError::Fenced { detail, .. }) = &started {
            // The leader's token, not this replica's: its lease moved on.
            tracing::warn!(lane = %lane.name, "Not started: the leader that handed it over no longer leads ({detail}).");
            return;
        }
        self.started(lane, &hand.source, started, &HashMap::new());
    }

    fn started(
        &mut self,
        lane: Lane,
        source: &str,
        started: Result<Start, DispatchError>,
        failed_before: &HashMap<String, Duration>,
    ) {
        match started {
            Ok(Start::Running(run)) => {
                tracing::info!(lane = %lane.name, pid = run.pid, supervisor = run.supervisor(), source, log = %run.log_path.display(), "Run started.");
                self.runs.insert(lane.name.clone(), run.stopper());
                let (store, events) = (Rc::clone(&self.store), self.events.clone());
                tokio::task::spawn_local(async move {
                    let report = run.wait(&*store).await.map_err(|e| e.to_string());
                    match &report {
                        Ok(r) => {
                            tracing::info!(lane = %lane.name, pid = r.pid.unwrap_or(0), result = r.result.as_str(), exit = %r.exit.map(|e| e.to_string()).unwrap_or_else(|| "unknown".into()), duration = %config::duration::format(r.duration), "Run finished.")
                        }
                        Err(e) => tracing::error!(lane = %lane.name, "{e}"),
                    }
                    let _ = events.send(Event::RunEnded(lane.name.clone(), Some(report)));
                });
            }
            Ok(Start::Failed(report)) => {
                tracing::error!(lane = %lane.name, "Run failed to start: {}.", report.spawn_error.as_deref().unwrap_or("unknown"));
                let _ = self
                    .events
                    .send(Event::RunEnded(lane.name.clone(), Some(Ok(report))));
            }
            Err(DispatchError::Busy { holder, .. }) => {
                tracing::info!(lane = %lane.name, holder = %holder, "Not started: the lane is already running elsewhere.");
            }
            Err(DispatchError::Paused { detail, .. }) => {
                tracing::info!(lane = %lane.name, pause = %detail, "Not started: the lane was paused after the pass decided.");
            }
            Err(DispatchError::Fenced { detail, .. }) => {
                tracing::error!(lane = %lane.name, "Not started, {detail}.");
                self.metrics.observe_fenced();
                self.token = None;
            }
            Err(e) => {
                let wait = failed_before
                    .get(&lane.name)
                    .map_or(DISPATCH_RETRY, |w| (*w * 2).min(DISPATCH_RETRY_MAX));
                tracing::error!(lane = %lane.name, "Could not start the run: {e}; trying again in {}.", config::duration::format(wait));
                self.start_backoff.insert(lane.name.clone(), wait);
            }
        }
    }

    /// Drops history older than the retention, at most once an hour.
    fn prune(&mut self, now: Timestamp) {
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(std::time::Instant::now());
        let cutoff = earlier(now, self.config.settings.history_retention);
        match self.store.prune_history(cutoff) {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "Pruned history older than the retention."),
            Err(e) => tracing::error!("Could not prune history: {e}."),
        }
    }

    /// The earliest moment any decision could change without an event.
    fn next_wake(&self, decisions: &[Decision], states: &LaneStates, now: Timestamp) -> Timestamp {
        let mut wake = later(now, MAX_SLEEP);
        for wait in self.start_backoff.values() {
            wake = wake.min(later(now, *wait));
        }
        if let Some(t) = engine::wake::next_wake(decisions, &self.config.lanes, states, now) {
            wake = wake.min(t);
        }
        wake
    }

    async fn reload(&mut self, trigger: &str) {
        let home = self.home.clone();
        let loaded = tokio::task::spawn_blocking(move || compile::load(&home))
            .await
            .map_err(|e| format!("the configuration could not be loaded: {e}"))
            .and_then(|r| r.map_err(|diags| diags.to_string().trim_end().to_string()));
        let status = ReloadStatus {
            at: self.clock.now(),
            ok: loaded.is_ok(),
            trigger: trigger.into(),
            error: loaded.as_ref().err().cloned(),
        };
        // Stored before it is logged, so whoever reads the log finds it in `status` too; and
        // counted once for every outcome, so no branch can forget it.
        if let Err(e) = self.store.record_reload(&status) {
            tracing::error!("Could not record the reload outcome: {e}.");
        }
        self.metrics.observe_reload(status.ok);
        match loaded {
            Ok(config) => {
                self.config = Arc::new(config);
                *self
                    .shared_config
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::clone(&self.config);
                tracing::info!(trigger, lanes = self.config.lanes.len(), "Reload applied.");
            }
            Err(problems) => {
                for line in problems.lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(
                    trigger,
                    problems = problems.lines().count(),
                    "Reload rejected; keeping the last good configuration."
                );
            }
        }
    }

    /// Waits for this daemon's runs to end (all of them, or until `deadline`), and for its
    /// hooks too with `hooks`.
    async fn drain(
        &mut self,
        events: &mut UnboundedReceiver<Event>,
        deadline: Option<tokio::time::Instant>,
        hooks: bool,
    ) -> Vec<(String, Result<RunReport, String>)> {
        let mut ended = Vec::new();
        while !self.runs.is_empty() || (hooks && self.hooks_running > 0) {
            let event = match deadline {
                Some(at) => tokio::select! {
                    e = events.recv() => e,
                    _ = tokio::time::sleep_until(at) => break,
                },
                None => events.recv().await,
            };
            match event {
                Some(Event::RunEnded(lane, report)) => {
                    self.ended(&lane, report.as_ref());
                    if let Some(r) = report {
                        ended.push((lane, r));
                    }
                }
                Some(Event::HookEnded(id, firing, outcome)) => {
                    self.hook_ended(id, &firing, &outcome)
                }
                Some(Event::Reload(_) | Event::Wake | Event::HandedOff) => {}
                None => break,
            }
        }
        ended
    }

    async fn shutdown(
        &mut self,
        events: &mut UnboundedReceiver<Event>,
        why: &str,
    ) -> Result<OnceReport, DaemonError> {
        self.stopping = true;
        // No pass decides from here on: a downtime starts now.
        if let Err(e) = self.store.daemon_seen(self.clock.now()) {
            tracing::warn!("Could not record the shutdown's time ({e}).");
        }
        let timeout = self.config.settings.shutdown_timeout;
        tracing::info!(signal = why, running = self.runs.len(), timeout = %config::duration::format(timeout), "Shutting down: no new runs; waiting for running children.");
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let mut runs = self.drain(events, deadline, true).await;
        if !self.runs.is_empty() {
            tracing::warn!(
                running = self.runs.len(),
                "Shutdown timeout over; stopping the remaining runs (TERM, then KILL after their grace)."
            );
            for stop in self.runs.values() {
                stop.stop(Signal::SIGTERM);
            }
            // Hooks still running are not waited for again: they end with the daemon.
            runs.extend(self.drain(events, None, false).await);
        }
        // Another replica takes over at once instead of after the lease lapses.
        if self.token.take().is_some() {
            match self.store.resign(self.home.host()) {
                Ok(()) => tracing::info!("Gave up the leader's lease."),
                Err(e) => tracing::warn!(
                    "Could not give up the leader's lease ({e}); another replica takes over when it lapses."
                ),
            }
        }
        tracing::info!("Daemon stopped.");
        Ok(OnceReport {
            decisions: Vec::new(),
            runs,
            secrets: Vec::new(),
        })
    }
}

/// `host` as a file name: anything but letters, digits, `.`, `-` and `_` becomes `_`.
fn file_safe(host: &str) -> String {
    host.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .collect()
}

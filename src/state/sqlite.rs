//! The embedded store: SQLite in WAL mode.
//!
//! WAL lets `status` in one process read a consistent snapshot while `fire` in another writes.
//! Every write is one transaction with `synchronous = FULL`, so a killed process leaves either
//! the old or the new state, never a torn one. The schema is versioned through `user_version`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use crate::model::decision::{Origin, Outcome, holds};
use crate::model::hook::{HookEvent, HookFiring, HookResult};

use super::stored::{
    DOWNTIME_KEY, EPISODE_COLUMNS, HORIZON_KEY, RELOAD_KEY, RUN_COLUMNS, SEEN_KEY, decision_body,
    ends_streak, ts,
};
use super::{
    Coverage, Decision, ENDED_EXPIRED, ENDED_REPLACED, Episode, EpisodeSummary, ExitInfo,
    LaneState, LaneStates, Pause, PauseRecord, ReloadStatus, RunEnd, RunRecord, RunResult,
    RunStart, RunningRun, StatesAt, StopRequest, Store, StoreError,
};

/// Schema migrations, applied in order; `user_version` counts how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: lanes, runs and the decision history.
    "CREATE TABLE lanes (
        lane            TEXT PRIMARY KEY,
        last_run_at     INTEGER,
        last_success_at INTEGER,
        last_result     TEXT,
        last_exit_code  INTEGER,
        last_signal     INTEGER,
        deferral_since  INTEGER,
        deferral_reason TEXT,
        failure_since   INTEGER
    );
    CREATE TABLE runs (
        id         INTEGER PRIMARY KEY,
        lane       TEXT NOT NULL,
        source     TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        result     TEXT,
        exit_code  INTEGER,
        signal     INTEGER,
        pid        INTEGER,
        pid_start  INTEGER,
        log_path   TEXT
    );
    CREATE INDEX runs_by_lane ON runs(lane, started_at);
    CREATE INDEX runs_open ON runs(lane) WHERE result IS NULL;
    CREATE TABLE decisions (
        id      INTEGER PRIMARY KEY,
        lane    TEXT NOT NULL,
        at      INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        reason  TEXT,
        gate    TEXT,
        body    TEXT NOT NULL
    );
    CREATE INDEX decisions_by_lane ON decisions(lane, at);",
    // 2: when the last run ended (retry delays count from it), and daemon facts such as the
    // outcome of the last configuration reload.
    "ALTER TABLE lanes ADD COLUMN last_ended_at INTEGER;
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    // 3: the decision history becomes episodes: identical consecutive deferrals of a lane
    // coalesce into one row keeping the first and the latest evaluation; triggers stay single.
    "CREATE TABLE episodes (
        id         INTEGER PRIMARY KEY,
        lane       TEXT NOT NULL,
        outcome    TEXT NOT NULL,
        reason     TEXT,
        gate       TEXT,
        first_at   INTEGER NOT NULL,
        last_at    INTEGER NOT NULL,
        count      INTEGER NOT NULL DEFAULT 1,
        first_body TEXT NOT NULL,
        last_body  TEXT,
        config     TEXT
    );
    CREATE INDEX episodes_by_lane ON episodes(lane, first_at);
    CREATE INDEX episodes_by_time ON episodes(last_at);
    INSERT INTO episodes(lane, outcome, reason, gate, first_at, last_at, count, first_body)
        SELECT lane, outcome, reason, gate, at, at, 1, body FROM decisions ORDER BY at, id;
    DROP TABLE decisions;",
    // 4: who recorded each episode (a `check` trigger dispatched nothing), and the lane states
    // at the pruning horizon, so past states can be rebuilt exactly after old runs are gone.
    "ALTER TABLE episodes ADD COLUMN origin TEXT;
    CREATE TABLE horizon_states (lane TEXT PRIMARY KEY, state TEXT NOT NULL);",
    // 5: every run has a supervisor of its own (pid and start time), which holds the lane's
    // lock and records the outcome even when whoever started the run is gone.
    "ALTER TABLE runs ADD COLUMN shim_pid INTEGER;
    ALTER TABLE runs ADD COLUMN shim_start INTEGER;",
    // 6: operators' pauses with their notes (`lanekeeper pause`); a row ends when resumed,
    // replaced, or at its `until`, and stays as history.
    "CREATE TABLE pauses (
        id        INTEGER PRIMARY KEY,
        lane      TEXT NOT NULL,
        note      TEXT NOT NULL,
        paused_by TEXT NOT NULL,
        at        INTEGER NOT NULL,
        until_at  INTEGER,
        ended_at  INTEGER,
        ended_by  TEXT
    );
    CREATE INDEX pauses_by_lane ON pauses(lane, at);
    CREATE INDEX pauses_open ON pauses(lane) WHERE ended_at IS NULL;",
    // 7: who asked a run to stop (`lanekeeper stop`) and with what grace; such a run is
    // recorded as `cancelled`.
    "ALTER TABLE runs ADD COLUMN stopped_by TEXT;
    ALTER TABLE runs ADD COLUMN stop_grace_ms INTEGER;",
    // 8: hook firings, one per (lane, event, key), claimed before the hook starts, so a
    // restart never runs a hook twice for one event.
    "CREATE TABLE hook_firings (
        id       INTEGER PRIMARY KEY,
        lane     TEXT NOT NULL,
        event    TEXT NOT NULL,
        key      TEXT NOT NULL,
        at       INTEGER NOT NULL,
        result   TEXT,
        detail   TEXT,
        ended_at INTEGER,
        UNIQUE (lane, event, key)
    );
    CREATE INDEX hook_firings_by_lane ON hook_firings(lane, at);",
];

fn set_meta(tx: &rusqlite::Transaction<'_>, key: &str, value: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// The last recorded downtime; with `at`, only one that had ended by then.
fn downtime(
    tx: &rusqlite::Transaction<'_>,
    at: Option<Timestamp>,
) -> rusqlite::Result<Option<crate::model::lane_state::Downtime>> {
    Ok(meta(tx, DOWNTIME_KEY)?.and_then(|text| super::stored::downtime(&text, at)))
}

/// A SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn =
            Connection::open(path).map_err(|source| StoreError::sqlite(path, "open", source))?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.err("set busy timeout", e))?;
        store.enable_wal()?;
        store
            .conn
            .execute_batch("PRAGMA synchronous = FULL;")
            .map_err(|e| store.err("set synchronous", e))?;
        store.migrate()?;
        Ok(store)
    }

    /// Opens an existing database only to read it (`status`, `explain`), creating nothing. One
    /// written by an older lanekeeper is opened by [`open`](Self::open) instead, to migrate it.
    pub fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|source| StoreError::sqlite(path, "open read-only", source))?;
        let store = Self {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| store.err("set busy timeout", e))?;
        let supported = MIGRATIONS.len() as i64;
        let version: i64 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| store.err("read schema version", e))?;
        if version < supported {
            drop(store);
            return Self::open(path);
        }
        if version > supported {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported,
            });
        }
        Ok(store)
    }

    /// An empty database in memory, for a command that must not create one on disk: every lane
    /// reads as never run, and whatever is written is dropped with it.
    pub fn in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory()
            .map_err(|source| StoreError::sqlite(&path, "open", source))?;
        let store = Self { conn, path };
        store.migrate()?;
        Ok(store)
    }

    fn err(&self, op: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, op, source)
    }

    /// Switches a new database to WAL (the mode persists in the file). SQLite answers "locked"
    /// at once, without the busy handler, while another process makes the same switch, so
    /// this retries for up to the busy timeout.
    fn enable_wal(&self) -> Result<(), StoreError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let mode: rusqlite::Result<String> =
                self.conn
                    .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0));
            match mode {
                Ok(m) if m.eq_ignore_ascii_case("wal") => return Ok(()),
                Ok(m) => {
                    return Err(self.err(
                        "enable WAL",
                        rusqlite::Error::InvalidParameterName(format!("journal mode stayed `{m}`")),
                    ));
                }
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(self.err("enable WAL", e)),
            }
        }
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let supported = MIGRATIONS.len() as i64;
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| self.err("read schema version", e))?;
        if version > supported {
            return Err(StoreError::TooNew {
                path: self.path.display().to_string(),
                found: version,
                supported,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            // IMMEDIATE takes the write lock first, so two processes never migrate at once.
            let tx = rusqlite::Transaction::new_unchecked(
                &self.conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(|e| self.err("begin migration", e))?;
            let current: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| self.err("read schema version", e))?;
            if current > i as i64 {
                continue;
            }
            tx.execute_batch(sql)
                .map_err(|e| self.err("migrate schema", e))?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
                .map_err(|e| self.err("record schema version", e))?;
            tx.commit().map_err(|e| self.err("commit migration", e))?;
        }
        Ok(())
    }

    /// How long a write waits for another process's write lock before it fails. The daemon
    /// waits briefly and keeps what it could not write for its next pass, so its loop never
    /// stalls on someone else's transaction.
    pub fn set_busy_timeout(&self, wait: Duration) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(wait)
            .map_err(|e| self.err("set busy timeout", e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Immediate,
        )
        .map_err(|e| self.err(op, e))?;
        let out = f(&tx).map_err(|e| self.err(op, e))?;
        tx.commit().map_err(|e| self.err(op, e))?;
        Ok(out)
    }
}

/// Whether an error is about one row's content (a value of the wrong type, or a body that does
/// not decode) rather than about the database.
fn is_row_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::Utf8Error(..)
    )
}

/// Reads one row of history.
type ReadRow<T> = fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>;

impl SqliteStore {
    /// `read` applied to `row`; a row whose content cannot be read is logged and skipped
    /// (`None`), so one damaged row of history does not take `status` or `explain` down with
    /// it. Rows of history have their id first and their lane second.
    fn readable<T>(
        &self,
        what: &str,
        row: &rusqlite::Row<'_>,
        read: ReadRow<T>,
    ) -> rusqlite::Result<Option<T>> {
        match read(row) {
            Ok(v) => Ok(Some(v)),
            Err(e) if is_row_damage(&e) => {
                let id = row.get::<_, i64>(0).map_or("?".into(), |i| i.to_string());
                let lane = row.get::<_, String>(1).unwrap_or_default();
                tracing::warn!(
                    "State database {}: {what} {id} of lane `{lane}` cannot be read ({e}); skipped.",
                    self.path.display()
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The first readable row of `sql`.
    fn first_readable<T>(
        &self,
        op: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
        what: &str,
        read: ReadRow<T>,
    ) -> Result<Option<T>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(op, e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(op, e))?;
        while let Some(row) = rows.next().map_err(|e| self.err(op, e))? {
            if let Some(v) = self
                .readable(what, row, read)
                .map_err(|e| self.err(op, e))?
            {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// Every readable row of `sql`.
    fn all_readable<T>(
        &self,
        op: &'static str,
        sql: &str,
        params: impl rusqlite::Params,
        what: &str,
        read: ReadRow<T>,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(op, e))?;
        let mut rows = stmt.query(params).map_err(|e| self.err(op, e))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(|e| self.err(op, e))? {
            out.extend(
                self.readable(what, row, read)
                    .map_err(|e| self.err(op, e))?,
            );
        }
        Ok(out)
    }
}

const ENSURE_LANE: &str = "INSERT INTO lanes(lane) VALUES (?1) ON CONFLICT(lane) DO NOTHING";

impl Store for SqliteStore {
    fn lane_states(&self) -> Result<LaneStates, StoreError> {
        // One read transaction, so lanes and runs come from the same snapshot.
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Deferred,
        )
        .map_err(|e| self.err("read lane states", e))?;
        let mut states = LaneStates::new();
        {
            let mut stmt = tx
                .prepare(
                    "SELECT lane, last_run_at, last_success_at, last_result, last_exit_code,
                            last_signal, deferral_since, deferral_reason, failure_since,
                            last_ended_at FROM lanes",
                )
                .map_err(|e| self.err("read lane states", e))?;
            let rows = stmt
                .query_map([], |r| {
                    let code: Option<i32> = r.get(4)?;
                    let signal: Option<i32> = r.get(5)?;
                    let result: Option<String> = r.get(3)?;
                    Ok((
                        r.get::<_, String>(0)?,
                        LaneState {
                            last_run_at: ts(r.get(1)?),
                            last_success_at: ts(r.get(2)?),
                            last_result: result.as_deref().and_then(RunResult::parse),
                            last_exit: code.map(ExitInfo::Code).or(signal.map(ExitInfo::Signal)),
                            running: None,
                            deferral_since: ts(r.get(6)?),
                            deferral_reason: r.get(7)?,
                            failure_since: ts(r.get(8)?),
                            last_ended_at: ts(r.get(9)?),
                            pause: None,
                            downtime: None,
                            alive_hosts: None,
                            starting: false,
                        },
                    ))
                })
                .map_err(|e| self.err("read lane states", e))?;
            for row in rows {
                let (lane, state) = row.map_err(|e| self.err("read lane states", e))?;
                states.insert(lane, state);
            }
            let mut stmt = tx
                .prepare(
                    "SELECT lane, id, pid, pid_start, started_at, shim_pid, shim_start FROM runs
                     WHERE result IS NULL AND pid IS NOT NULL ORDER BY started_at",
                )
                .map_err(|e| self.err("read running runs", e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                    ))
                })
                .map_err(|e| self.err("read running runs", e))?;
            for row in rows {
                let (lane, run_id, pid, pid_start, started, shim_pid, shim_start) =
                    row.map_err(|e| self.err("read running runs", e))?;
                let (Ok(pid), Some(started_at)) = (u32::try_from(pid), ts(Some(started))) else {
                    continue;
                };
                let supervisor = match (shim_pid, shim_start) {
                    (Some(p), Some(s)) => u32::try_from(p).ok().zip(u64::try_from(s).ok()),
                    _ => None,
                };
                states.entry(lane).or_default().running = Some(RunningRun {
                    run_id,
                    pid,
                    pid_start: pid_start as u64,
                    started_at,
                    supervisor,
                });
            }
            for (lane, pause) in open_pauses(&tx, None).map_err(|e| self.err("read pauses", e))? {
                states.entry(lane).or_default().pause = Some(pause);
            }
            let down = downtime(&tx, None).map_err(|e| self.err("read the last downtime", e))?;
            for state in states.values_mut() {
                state.downtime = down;
            }
        }
        tx.finish().map_err(|e| self.err("read lane states", e))?;
        Ok(states)
    }

    fn begin_run(&self, run: &RunStart<'_>) -> Result<i64, StoreError> {
        let recorded = self.write("record run start", |tx| {
            if run.honour_pause
                && let Some((_, pause)) = open_pauses(tx, Some(run.lane))?
                    .into_iter()
                    .rev()
                    .find(|(_, p)| p.in_force(run.at))
            {
                return Ok(Err(pause));
            }
            tx.execute(ENSURE_LANE, params![run.lane])?;
            tx.execute(
                "INSERT INTO runs(lane, source, started_at, pid, pid_start, log_path, shim_pid, shim_start)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run.lane,
                    run.source,
                    run.at.as_millisecond(),
                    run.process.map(|p| p.0),
                    run.process.map(|p| p.1 as i64),
                    run.log_path,
                    run.supervisor.map(|p| p.0),
                    run.supervisor.map(|p| p.1 as i64)
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE lanes SET last_run_at = ?2 WHERE lane = ?1",
                params![run.lane, run.at.as_millisecond()],
            )?;
            Ok(Ok(id))
        })?;
        recorded.map_err(|pause| StoreError::Paused {
            lane: run.lane.to_string(),
            pause: Box::new(pause),
        })
    }

    fn finish_run(&self, run_id: i64, end: &RunEnd) -> Result<(), StoreError> {
        let (code, signal) = split_exit(end.exit);
        let updated = self.write("record run end", |tx| {
            let row: Option<(String, Option<String>)> = tx
                .query_row(
                    "SELECT lane, stopped_by FROM runs WHERE id = ?1 AND result IS NULL",
                    params![run_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((lane, stopped_by)) = row else {
                return Ok(false);
            };
            // A run an operator stopped is cancelled however it ended, unless it got to
            // succeed first; whoever records its end (its supervisor, the daemon's adoption,
            // the next start finding it gone) need not know.
            let mut end = end.clone();
            if stopped_by.is_some() && end.result != RunResult::Success {
                end.result = RunResult::Cancelled;
            }
            tx.execute(
                "UPDATE runs SET ended_at = ?2, result = ?3, exit_code = ?4, signal = ?5 WHERE id = ?1",
                params![run_id, end.at.as_millisecond(), end.result.as_str(), code, signal],
            )?;
            update_last_result(tx, &lane, end.at, end.result, code, signal)?;
            Ok(true)
        })?;
        if updated {
            Ok(())
        } else {
            Err(StoreError::NotRunning(run_id))
        }
    }

    fn record_external(
        &self,
        lane: &str,
        at: Timestamp,
        result: RunResult,
    ) -> Result<(), StoreError> {
        let ms = at.as_millisecond();
        self.write("record external run", |tx| {
            tx.execute(ENSURE_LANE, params![lane])?;
            tx.execute(
                "INSERT INTO runs(lane, source, started_at, ended_at, result) VALUES (?1, 'record', ?2, ?2, ?3)",
                params![lane, ms, result.as_str()],
            )?;
            tx.execute(
                "UPDATE lanes SET last_run_at = MAX(COALESCE(last_run_at, ?2), ?2) WHERE lane = ?1",
                params![lane, ms],
            )?;
            update_last_result(tx, lane, at, result, None, None)
        })
    }

    fn record_decisions(&self, decisions: &[Decision], origin: Origin) -> Result<(), StoreError> {
        // One transaction for the pass, one savepoint per decision: a decision that cannot be
        // stored (too big for SQLite, say) is stored in short, saying so, and never takes the
        // pass's other decisions down with it.
        self.write("record decisions", |tx| {
            for d in decisions {
                tx.execute_batch("SAVEPOINT decision")?;
                if let Err(e) = record_decision(tx, d, origin, None) {
                    tx.execute_batch("ROLLBACK TO decision")?;
                    let why = e.to_string();
                    tracing::warn!(lane = %d.lane, "Recording a decision without its chain: {why}.");
                    if let Err(again) = record_decision(tx, d, origin, Some(&why)) {
                        tx.execute_batch("ROLLBACK TO decision")?;
                        tracing::error!(lane = %d.lane, "Could not record a decision: {why}; nor in short: {again}.");
                    }
                }
                tx.execute_batch("RELEASE decision")?;
            }
            Ok(())
        })
    }

    fn daemon_started(
        &self,
        now: Timestamp,
    ) -> Result<Option<crate::model::lane_state::Downtime>, StoreError> {
        self.write("record the daemon's start", |tx| {
            let seen = ts(meta(tx, SEEN_KEY)?.and_then(|v| v.parse().ok()));
            let down = seen
                .filter(|s| *s < now)
                .map(|from| crate::model::lane_state::Downtime { from, to: now });
            if let Some(d) = down {
                let text = format!("{}..{}", d.from.as_millisecond(), d.to.as_millisecond());
                set_meta(tx, DOWNTIME_KEY, &text)?;
            }
            set_meta(tx, SEEN_KEY, &now.as_millisecond().to_string())?;
            Ok(down)
        })
    }

    fn daemon_seen(&self, now: Timestamp) -> Result<(), StoreError> {
        self.write("record the daemon's pass", |tx| {
            set_meta(tx, SEEN_KEY, &now.as_millisecond().to_string())
        })
    }

    fn lane_states_at(&self, at: Timestamp) -> Result<StatesAt, StoreError> {
        let tx = rusqlite::Transaction::new_unchecked(
            &self.conn,
            rusqlite::TransactionBehavior::Deferred,
        )
        .map_err(|e| self.err("read past lane states", e))?;
        let out = states_at(&tx, at).map_err(|e| self.err("read past lane states", e))?;
        tx.finish()
            .map_err(|e| self.err("read past lane states", e))?;
        Ok(out)
    }

    fn run_started_between(
        &self,
        lane: &str,
        from: Timestamp,
        until: Option<Timestamp>,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.first_readable(
            "read runs",
            &format!(
                "{RUN_COLUMNS} WHERE lane = ?1 AND started_at >= ?2 AND started_at < ?3
                 ORDER BY started_at, id"
            ),
            params![
                lane,
                from.as_millisecond(),
                until.map_or(i64::MAX, |t| t.as_millisecond())
            ],
            "run",
            run_row,
        )
    }

    fn next_episode_at(
        &self,
        lane: &str,
        after: Timestamp,
    ) -> Result<Option<Timestamp>, StoreError> {
        let next: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(first_at) FROM episodes WHERE lane = ?1 AND first_at > ?2",
                params![lane, after.as_millisecond()],
                |r| r.get(0),
            )
            .map_err(|e| self.err("read decision history", e))?;
        Ok(ts(next))
    }

    fn episode_at(&self, lane: &str, at: Timestamp) -> Result<Option<Episode>, StoreError> {
        self.first_readable(
            "read decision history",
            &format!("{EPISODE_COLUMNS} WHERE lane = ?1 AND first_at <= ?2 ORDER BY first_at DESC, id DESC"),
            params![lane, at.as_millisecond()],
            "episode",
            episode_row,
        )
    }

    fn episodes_since(&self, since: Timestamp) -> Result<Vec<Episode>, StoreError> {
        self.all_readable(
            "read decision history",
            &format!("{EPISODE_COLUMNS} WHERE last_at >= ?1 ORDER BY first_at, id"),
            params![since.as_millisecond()],
            "episode",
            episode_row,
        )
    }

    fn runs_since(&self, since: Timestamp) -> Result<Vec<RunRecord>, StoreError> {
        self.all_readable(
            "read runs",
            &format!("{RUN_COLUMNS} WHERE COALESCE(ended_at, started_at) >= ?1 OR ended_at IS NULL ORDER BY started_at, id"),
            params![since.as_millisecond()],
            "run",
            run_row,
        )
    }

    fn prune_history(&self, before: Timestamp) -> Result<usize, StoreError> {
        let cutoff = before.as_millisecond();
        self.write("prune history", |tx| {
            let horizon: Option<i64> = meta(tx, HORIZON_KEY)?.and_then(|v| v.parse().ok());
            if horizon.is_some_and(|h| h >= cutoff) {
                return Ok(0);
            }
            // Keep the states at the cutoff, so that what-ifs after it stay exact once the
            // runs and decisions that made them are gone.
            let kept = states_at(tx, before)?;
            tx.execute("DELETE FROM horizon_states", [])?;
            for (lane, state) in &kept.states {
                let json = serde_json::to_string(state)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                tx.execute(
                    "INSERT INTO horizon_states(lane, state) VALUES (?1, ?2)",
                    params![lane, json],
                )?;
            }
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![HORIZON_KEY, cutoff.to_string()],
            )?;
            // The latest episode and run of each lane are kept whatever their age: they are
            // still "in force".
            let episodes = tx.execute(
                "DELETE FROM episodes WHERE last_at < ?1
                 AND id NOT IN (SELECT MAX(id) FROM episodes GROUP BY lane)",
                params![cutoff],
            )?;
            let runs = tx.execute(
                "DELETE FROM runs WHERE ended_at IS NOT NULL AND ended_at < ?1
                 AND id NOT IN (SELECT MAX(id) FROM runs GROUP BY lane)",
                params![cutoff],
            )?;
            let pauses = tx.execute(
                "DELETE FROM pauses WHERE ended_at IS NOT NULL AND ended_at < ?1",
                params![cutoff],
            )?;
            // The latest firing of each lane and event stays, so the event still in force
            // (the run kept above, an open deferral) is never fired again.
            let hooks = tx.execute(
                "DELETE FROM hook_firings WHERE at < ?1
                 AND id NOT IN (SELECT MAX(id) FROM hook_firings GROUP BY lane, event)",
                params![cutoff],
            )?;
            Ok(episodes + runs + pauses + hooks)
        })
    }

    fn record_reload(&self, reload: &ReloadStatus) -> Result<(), StoreError> {
        let json = serde_json::to_string(reload).map_err(|e| {
            self.err(
                "record the reload",
                rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            )
        })?;
        self.write("record the reload", |tx| {
            tx.execute(
                "INSERT INTO meta(key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![RELOAD_KEY, json],
            )?;
            Ok(())
        })
    }

    fn last_reload(&self) -> Result<Option<ReloadStatus>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                params![RELOAD_KEY],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("read the last reload", e))?;
        // An unreadable record is no reload to report, not a failure of `status`.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    fn recent_runs(&self, lane: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        self.all_readable(
            "read runs",
            &format!("{RUN_COLUMNS} WHERE lane = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2"),
            params![lane, i64::try_from(limit).unwrap_or(i64::MAX)],
            "run",
            run_row,
        )
    }

    fn request_stop(
        &self,
        run_id: i64,
        by: &str,
        grace: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let grace_ms = grace.map(|g| i64::try_from(g.as_millis()).unwrap_or(i64::MAX));
        self.write("record the stop request", |tx| {
            Ok(tx.execute(
                "UPDATE runs SET stopped_by = ?2, stop_grace_ms = ?3 WHERE id = ?1 AND result IS NULL",
                params![run_id, by, grace_ms],
            )? > 0)
        })
    }

    fn withdraw_stop(&self, run_id: i64) -> Result<(), StoreError> {
        self.write("withdraw the stop request", |tx| {
            tx.execute(
                "UPDATE runs SET stopped_by = NULL, stop_grace_ms = NULL WHERE id = ?1 AND result IS NULL",
                params![run_id],
            )?;
            Ok(())
        })
    }

    fn stop_request(&self, run_id: i64) -> Result<Option<StopRequest>, StoreError> {
        let row: Option<(Option<String>, Option<i64>)> = self
            .conn
            .query_row(
                "SELECT stopped_by, stop_grace_ms FROM runs WHERE id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err("read the stop request", e))?;
        Ok(row.and_then(|(by, grace)| {
            by.map(|by| StopRequest {
                by,
                grace: grace
                    .and_then(|g| u64::try_from(g).ok())
                    .map(Duration::from_millis),
            })
        }))
    }

    fn pause(&self, lane: &str, pause: &Pause) -> Result<Option<Pause>, StoreError> {
        self.write("record the pause", |tx| {
            let replaced = open_pauses(tx, Some(lane))?
                .into_iter()
                .map(|(_, p)| p)
                .rfind(|p| p.in_force(pause.at));
            end_open_pauses(tx, lane, pause.at)?;
            tx.execute(
                "INSERT INTO pauses(lane, note, paused_by, at, until_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    lane,
                    pause.note,
                    pause.by,
                    pause.at.as_millisecond(),
                    pause.until.map(|u| u.as_millisecond())
                ],
            )?;
            Ok(replaced)
        })
    }

    fn resume(&self, lane: &str, at: Timestamp, by: &str) -> Result<Option<Pause>, StoreError> {
        self.write("record the resume", |tx| {
            let open = open_pauses(tx, Some(lane))?;
            let resumed = open
                .iter()
                .map(|(_, p)| p)
                .rfind(|p| p.in_force(at))
                .cloned();
            end_open_pauses(tx, lane, at)?;
            if resumed.is_some() {
                tx.execute(
                    "UPDATE pauses SET ended_by = ?3 WHERE lane = ?1 AND ended_at = ?2
                     AND ended_by = ?4",
                    params![lane, at.as_millisecond(), by, ENDED_REPLACED],
                )?;
            }
            Ok(resumed)
        })
    }

    fn settle_expired_pauses(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.write("record the end of pauses", |tx| {
            tx.execute(
                "UPDATE pauses SET ended_at = until_at, ended_by = ?2
                 WHERE ended_at IS NULL AND until_at IS NOT NULL AND until_at <= ?1",
                params![now.as_millisecond(), ENDED_EXPIRED],
            )
        })
    }

    fn pauses_since(
        &self,
        lane: Option<&str>,
        since: Timestamp,
    ) -> Result<Vec<PauseRecord>, StoreError> {
        self.all_readable(
            "read pauses",
            "SELECT id, lane, note, paused_by, at, until_at, ended_at, ended_by FROM pauses
             WHERE (?1 IS NULL OR lane = ?1)
               AND COALESCE(ended_at, until_at, 9223372036854775807) >= ?2
             ORDER BY at, id",
            params![lane, since.as_millisecond()],
            "pause",
            pause_row,
        )
    }

    fn claim_hook(
        &self,
        lane: &str,
        event: HookEvent,
        key: &str,
        at: Timestamp,
    ) -> Result<Option<i64>, StoreError> {
        self.write("claim a hook firing", |tx| {
            let n = tx.execute(
                "INSERT INTO hook_firings(lane, event, key, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(lane, event, key) DO NOTHING",
                params![lane, event.as_str(), key, at.as_millisecond()],
            )?;
            Ok((n > 0).then(|| tx.last_insert_rowid()))
        })
    }

    fn finish_hook(
        &self,
        id: i64,
        result: HookResult,
        detail: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.write("record a hook's end", |tx| {
            tx.execute(
                "UPDATE hook_firings SET result = ?2, detail = ?3, ended_at = ?4 WHERE id = ?1",
                params![id, result.as_str(), detail, at.as_millisecond()],
            )?;
            Ok(())
        })
    }

    fn last_hook(&self, lane: &str) -> Result<Option<HookFiring>, StoreError> {
        self.first_readable(
            "read hook firings",
            "SELECT id, lane, event, key, at, result, detail FROM hook_firings
             WHERE lane = ?1 ORDER BY at DESC, id DESC",
            params![lane],
            "hook firing",
            hook_row,
        )
    }
}

fn hook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HookFiring> {
    let event: String = r.get(2)?;
    let event = HookEvent::ALL
        .into_iter()
        .find(|e| e.as_str() == event)
        .ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                2,
                rusqlite::types::Type::Text,
                format!("unknown hook event `{event}`").into(),
            )
        })?;
    let result: Option<String> = r.get(5)?;
    Ok(HookFiring {
        lane: r.get(1)?,
        event,
        key: r.get(3)?,
        at: ts(r.get(4)?).unwrap_or(Timestamp::UNIX_EPOCH),
        result: result.as_deref().and_then(HookResult::parse),
        detail: r.get(6)?,
    })
}

fn pause_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PauseRecord> {
    Ok(PauseRecord {
        id: r.get(0)?,
        lane: r.get(1)?,
        pause: Pause {
            note: r.get(2)?,
            by: r.get(3)?,
            at: ts(r.get(4)?).unwrap_or(Timestamp::UNIX_EPOCH),
            until: ts(r.get(5)?),
        },
        ended_at: ts(r.get(6)?),
        ended_by: r.get(7)?,
    })
}

/// The pauses not yet ended (of `lane`, or of every lane), oldest first, by lane.
fn open_pauses(
    tx: &rusqlite::Transaction<'_>,
    lane: Option<&str>,
) -> rusqlite::Result<Vec<(String, Pause)>> {
    let mut stmt = tx.prepare(
        "SELECT id, lane, note, paused_by, at, until_at, ended_at, ended_by FROM pauses
         WHERE ended_at IS NULL AND (?1 IS NULL OR lane = ?1) ORDER BY at, id",
    )?;
    let rows = stmt.query_map(params![lane], pause_row)?;
    rows.map(|r| r.map(|p| (p.lane, p.pause))).collect()
}

/// Ends every open pause of `lane` at `at`: an expired one at its `until`, the others as
/// `replaced` (a resume then says who).
fn end_open_pauses(
    tx: &rusqlite::Transaction<'_>,
    lane: &str,
    at: Timestamp,
) -> rusqlite::Result<()> {
    let ms = at.as_millisecond();
    tx.execute(
        "UPDATE pauses SET ended_at = until_at, ended_by = ?3
         WHERE lane = ?1 AND ended_at IS NULL AND until_at IS NOT NULL AND until_at <= ?2",
        params![lane, ms, ENDED_EXPIRED],
    )?;
    tx.execute(
        "UPDATE pauses SET ended_at = ?2, ended_by = ?3 WHERE lane = ?1 AND ended_at IS NULL",
        params![lane, ms, ENDED_REPLACED],
    )?;
    Ok(())
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRecord> {
    let code: Option<i32> = r.get(6)?;
    let signal: Option<i32> = r.get(7)?;
    let result: Option<String> = r.get(5)?;
    let pid: Option<i64> = r.get(8)?;
    Ok(RunRecord {
        id: r.get(0)?,
        lane: r.get(1)?,
        source: r.get(2)?,
        started_at: ts(r.get(3)?).unwrap_or(Timestamp::UNIX_EPOCH),
        ended_at: ts(r.get(4)?),
        result: result.as_deref().and_then(RunResult::parse),
        exit: code.map(ExitInfo::Code).or(signal.map(ExitInfo::Signal)),
        pid: pid.and_then(|p| u32::try_from(p).ok()),
        pid_start: r
            .get::<_, Option<i64>>(10)?
            .and_then(|p| u64::try_from(p).ok()),
        log_path: r.get(9)?,
        stopped_by: r.get(11)?,
    })
}

fn meta(tx: &rusqlite::Transaction<'_>, key: &str) -> rusqlite::Result<Option<String>> {
    tx.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
        r.get(0)
    })
    .optional()
}

/// The lane states at `at`, rebuilt: the horizon's states (if history was pruned before `at`),
/// then the runs recorded since, then each lane's deferral streak from its episodes.
fn states_at(tx: &rusqlite::Transaction<'_>, at: Timestamp) -> rusqlite::Result<StatesAt> {
    let ms = at.as_millisecond();
    let horizon = ts(meta(tx, HORIZON_KEY)?.and_then(|v| v.parse().ok()));
    let mut base = LaneStates::new();
    if horizon.is_some_and(|h| h <= at) {
        let mut stmt = tx.prepare("SELECT lane, state FROM horizon_states")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (lane, json) = row?;
            // An unreadable snapshot row only costs that lane its pre-horizon state.
            if let Ok(state) = serde_json::from_str::<LaneState>(&json) {
                base.insert(lane, state);
            }
        }
    }
    let runs: Vec<RunRecord> = {
        let mut stmt = tx.prepare(&format!("{RUN_COLUMNS} WHERE started_at < ?1"))?;
        stmt.query_map(params![ms], run_row)?
            .collect::<rusqlite::Result<_>>()?
    };
    let used_horizon = horizon.filter(|h| *h <= at);
    let mut states = super::replay(base, used_horizon, &runs, at);
    for state in states.values_mut() {
        state.deferral_since = None;
        state.deferral_reason = None;
    }
    // The streak: consecutive held episodes before `at` (a `check` trigger does not end it).
    let lanes: Vec<String> = {
        let mut stmt = tx.prepare("SELECT DISTINCT lane FROM episodes WHERE first_at < ?1")?;
        stmt.query_map(params![ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut stmt = tx.prepare(
        "SELECT outcome, reason, gate, first_at, origin FROM episodes
         WHERE lane = ?1 AND first_at < ?2 ORDER BY first_at DESC, id DESC",
    )?;
    for lane in lanes {
        let mut rows = stmt.query(params![lane, ms])?;
        let (mut since, mut reason, mut broken) = (None, None, false);
        while let Some(r) = rows.next()? {
            let outcome: String = r.get(0)?;
            let gate: Option<String> = r.get(2)?;
            let origin: Option<String> = r.get(4)?;
            let held = outcome == Outcome::Deferred.as_str() && holds(gate.as_deref());
            if held {
                since = ts(Some(r.get(3)?));
                if reason.is_none() {
                    reason = Some(r.get::<_, Option<String>>(1)?);
                }
            } else if outcome == Outcome::Trigger.as_str()
                && origin.as_deref() == Some(Origin::Check.as_str())
            {
                continue;
            } else {
                broken = true;
                break;
            }
        }
        let state = states.entry(lane.clone()).or_default();
        if !broken && let Some(h) = used_horizon {
            // The walk reached the pruned past: the streak may have started before it.
            let kept: Option<Option<i64>> = tx
                .query_row(
                    "SELECT state FROM horizon_states WHERE lane = ?1",
                    params![lane],
                    |r| r.get::<_, String>(0),
                )
                .optional()?
                .map(|json| {
                    serde_json::from_str::<LaneState>(&json)
                        .ok()
                        .and_then(|s| s.deferral_since)
                        .map(|t| t.as_millisecond())
                });
            if let Some(Some(kept)) = kept
                && since.is_none_or(|s: Timestamp| kept < s.as_millisecond())
                && kept <= h.as_millisecond()
            {
                since = ts(Some(kept));
            }
        }
        if since.is_some() {
            state.deferral_since = since;
            state.deferral_reason = reason.flatten();
        }
    }
    // The pause in force then: begun at or before `at`, not ended by then.
    let mut stmt = tx.prepare(
        "SELECT id, lane, note, paused_by, at, until_at, ended_at, ended_by FROM pauses
         WHERE at <= ?1 AND (ended_at IS NULL OR ended_at > ?1) ORDER BY at, id",
    )?;
    for row in stmt.query_map(params![ms], pause_row)? {
        let p = row?;
        if p.pause.in_force(at) {
            states.entry(p.lane).or_default().pause = Some(p.pause);
        }
    }
    let down = downtime(tx, Some(at))?;
    for state in states.values_mut() {
        state.downtime = down;
    }
    let first_record: Option<i64> = tx.query_row(
        "SELECT MIN(t) FROM (SELECT MIN(started_at) AS t FROM runs
                             UNION ALL SELECT MIN(first_at) FROM episodes)",
        [],
        |r| r.get(0),
    )?;
    Ok(StatesAt {
        states,
        coverage: Coverage {
            first_record: ts(first_record),
            horizon,
        },
    })
}

fn episode_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Episode> {
    let decode = |i: usize, text: Option<String>| -> rusqlite::Result<Option<Decision>> {
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })
        })
        .transpose()
    };
    let first = decode(8, r.get(8)?)?.ok_or(rusqlite::Error::InvalidColumnType(
        8,
        "first_body".into(),
        rusqlite::types::Type::Null,
    ))?;
    Ok(Episode {
        id: r.get(0)?,
        summary: EpisodeSummary {
            lane: r.get(1)?,
            outcome: r.get(2)?,
            reason: r.get(3)?,
            gate: r.get(4)?,
            first_at: ts(r.get(5)?).unwrap_or(Timestamp::UNIX_EPOCH),
            last_at: ts(r.get(6)?).unwrap_or(Timestamp::UNIX_EPOCH),
            count: r.get(7)?,
        },
        first,
        last: decode(9, r.get(9)?)?,
    })
}

fn split_exit(exit: Option<ExitInfo>) -> (Option<i32>, Option<i32>) {
    match exit {
        Some(ExitInfo::Code(c)) => (Some(c), None),
        Some(ExitInfo::Signal(s)) => (None, Some(s)),
        None => (None, None),
    }
}

/// Updates a lane's last result after a run ended at `at`: by time, not by insertion, so a
/// run recorded late (`record --at` in the past) never hides a later one.
fn update_last_result(
    tx: &rusqlite::Transaction<'_>,
    lane: &str,
    at: Timestamp,
    result: RunResult,
    code: Option<i32>,
    signal: Option<i32>,
) -> rusqlite::Result<()> {
    let ms = at.as_millisecond();
    tx.execute(
        "UPDATE lanes SET last_result = ?2, last_exit_code = ?3, last_signal = ?4
             WHERE lane = ?1 AND COALESCE(last_ended_at, ?5) <= ?5",
        params![lane, result.as_str(), code, signal, ms],
    )?;
    tx.execute(
        "UPDATE lanes SET last_ended_at = MAX(COALESCE(last_ended_at, ?2), ?2) WHERE lane = ?1",
        params![lane, ms],
    )?;
    if result == RunResult::Success {
        tx.execute(
            "UPDATE lanes SET last_success_at = MAX(COALESCE(last_success_at, ?2), ?2) WHERE lane = ?1",
            params![lane, ms],
        )?;
    }
    // The failure streak starts at the first failure after the last success. An adopted run
    // whose exit code could not be known neither starts nor ends one.
    if result != RunResult::Unknown {
        tx.execute(
            "UPDATE lanes SET failure_since = (
                 SELECT MIN(r.ended_at) FROM runs r
                 WHERE r.lane = ?1 AND r.result IN ('failure', 'interrupted')
                   AND r.ended_at > COALESCE(lanes.last_success_at, -9223372036854775808))
             WHERE lane = ?1",
            params![lane],
        )?;
    }
    Ok(())
}

/// Records one decision into the episode history and the lane's deferral streak. With
/// `short`, the reason it could not be stored whole, it is stored without its chain, its
/// detail cut and saying so.
fn record_decision(
    tx: &rusqlite::Transaction<'_>,
    d: &Decision,
    origin: Origin,
    short: Option<&str>,
) -> rusqlite::Result<()> {
    let body = decision_body(d, origin, short)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let at = d.at.as_millisecond();
    // A configuration change starts a new episode, so each keeps one set of hashes.
    let config = d.hashes.as_ref().map(|h| {
        h.iter()
            .map(|(f, v)| format!("{f}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    });
    type Latest = (
        i64,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
    );
    let latest: Option<Latest> = tx
        .query_row(
            "SELECT id, outcome, reason, gate, last_at, config FROM episodes WHERE lane = ?1
             ORDER BY first_at DESC, id DESC LIMIT 1",
            params![d.lane],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .optional()?;
    let continues = latest
        .as_ref()
        .and_then(|(id, outcome, reason, gate, last_at, cfg)| {
            let same = outcome == d.outcome.as_str()
                && reason.as_deref() == d.reason.as_deref()
                && gate.as_deref() == d.gate.as_deref()
                && *cfg == config;
            (same && d.outcome != Outcome::Trigger && at >= *last_at).then_some(*id)
        });
    match continues {
        Some(id) => tx.execute(
            "UPDATE episodes SET last_at = ?2, count = count + 1, last_body = ?3 WHERE id = ?1",
            params![id, at, body],
        )?,
        None => tx.execute(
            "INSERT INTO episodes(lane, outcome, reason, gate, first_at, last_at, first_body, config, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8)",
            params![d.lane, d.outcome.as_str(), d.reason, d.gate, at, body, config, origin.as_str()],
        )?,
    };
    tx.execute(ENSURE_LANE, params![d.lane])?;
    if d.is_held() {
        tx.execute(
            "UPDATE lanes SET deferral_since = COALESCE(deferral_since, ?2), deferral_reason = ?3
             WHERE lane = ?1",
            params![d.lane, at, d.reason],
        )?;
    } else if ends_streak(d.outcome, origin) {
        tx.execute(
            "UPDATE lanes SET deferral_since = NULL, deferral_reason = NULL WHERE lane = ?1",
            params![d.lane],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decision::{Decision, Origin, Outcome};

    fn decision(lane: &str, at: &str, outcome: Outcome, reason: &str) -> Decision {
        Decision {
            lane: lane.into(),
            at: at.parse().expect("time"),
            outcome,
            source: None,
            reason: Some(reason.into()),
            gate: Some("g".into()),
            detail: None,
            chain: Vec::new(),
            hashes: None,
            origin: None,
        }
    }

    #[test]
    fn a_decision_too_big_to_store_does_not_lose_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db")).expect("open");
        // SQLite's own length limit, lowered so that one decision passes it.
        store
            .conn
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, 20_000)
            .expect("limit");
        let mut big = decision("big", "2026-01-01T00:00:00Z", Outcome::Deferred, "x");
        big.detail = Some("y".repeat(50_000));
        big.chain = vec![crate::model::decision::ChainEntry::builtin(
            "g",
            crate::model::decision::GateVerdict::Defer,
            Some("x"),
            "z".repeat(50_000),
        )];
        store
            .record_decisions(
                &[
                    decision("a", "2026-01-01T00:00:00Z", Outcome::Deferred, "x"),
                    big,
                    decision("c", "2026-01-01T00:00:00Z", Outcome::Deferred, "x"),
                ],
                Origin::Daemon,
            )
            .expect("the others are recorded");
        let all = store.episodes_since(Timestamp::UNIX_EPOCH).expect("read");
        let lanes: Vec<&str> = all.iter().map(|e| e.summary.lane.as_str()).collect();
        assert_eq!(lanes, ["a", "big", "c"]);
        let at = "2026-01-01T00:00:00Z".parse().expect("t");
        let stored = store.episode_at("big", at).expect("q").expect("big");
        assert_eq!(stored.summary.reason.as_deref(), Some("x"));
        let detail = stored.first.detail.expect("detail");
        assert!(detail.len() < 20_000, "{} bytes", detail.len());
        assert!(detail.contains("stored without its chain"), "{detail}");
        assert!(stored.first.chain.is_empty());
        let body: String = store
            .conn
            .query_row(
                "SELECT first_body FROM episodes WHERE lane = 'big'",
                [],
                |r| r.get(0),
            )
            .expect("body");
        assert!(body.contains("\"truncated\":"), "{body}");
        let held: Option<i64> = store
            .conn
            .query_row(
                "SELECT deferral_since FROM lanes WHERE lane = 'big'",
                [],
                |r| r.get(0),
            )
            .expect("lane");
        assert!(held.is_some(), "the deferral streak is kept too");
    }

    #[test]
    fn pauses_replace_resume_expire_and_refuse_a_start_in_the_same_transaction() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db")).expect("open");
        let t = |s: &str| -> Timestamp { s.parse().expect("t") };
        let pause = |note: &str, at: &str, until: Option<&str>| Pause {
            note: note.into(),
            by: "alice".into(),
            at: t(at),
            until: until.map(t),
        };
        let first = pause("one", "2026-01-01T00:00:00Z", None);
        assert_eq!(store.pause("a", &first).expect("pause"), None);
        let second = pause("two", "2026-01-01T01:00:00Z", Some("2026-01-01T02:00:00Z"));
        assert_eq!(store.pause("a", &second).expect("pause"), Some(first));
        let states = store.lane_states().expect("states");
        assert_eq!(states["a"].pause.as_ref(), Some(&second));
        let start = |at: &str, honour_pause| RunStart {
            lane: "a",
            source: "periodic-sweep",
            at: t(at),
            process: None,
            supervisor: None,
            log_path: None,
            honour_pause,
        };
        assert!(matches!(
            store.begin_run(&start("2026-01-01T01:30:00Z", true)),
            Err(StoreError::Paused { .. })
        ));
        assert!(
            store.lane_states().expect("states")["a"]
                .last_run_at
                .is_none()
        );
        let forced = store
            .begin_run(&start("2026-01-01T01:31:00Z", false))
            .expect("fire --force");
        // A stop turns whatever end into `cancelled`, unless it succeeded first.
        assert!(store.request_stop(forced, "bob", None).expect("stop"));
        store
            .finish_run(
                forced,
                &RunEnd {
                    at: t("2026-01-01T01:32:00Z"),
                    result: RunResult::Failure,
                    exit: Some(ExitInfo::Signal(9)),
                },
            )
            .expect("end");
        let state = &store.lane_states().expect("states")["a"];
        assert_eq!(state.last_result, Some(RunResult::Cancelled));
        assert_eq!(state.failure_since, None, "a cancelled run is no failure");
        assert!(!store.request_stop(forced, "bob", None).expect("ended"));
        // After its `until` the pause no longer refuses; its end is recorded as expired.
        assert!(
            store
                .begin_run(&start("2026-01-01T02:00:00Z", true))
                .is_ok()
        );
        assert_eq!(
            store
                .settle_expired_pauses(t("2026-01-01T02:00:00Z"))
                .expect("settle"),
            1
        );
        let all = store
            .pauses_since(Some("a"), Timestamp::UNIX_EPOCH)
            .expect("pauses");
        let ends: Vec<_> = all.iter().map(|p| p.ended_by.as_deref()).collect();
        assert_eq!(ends, [Some(ENDED_REPLACED), Some(ENDED_EXPIRED)]);
        // A resume says who.
        store
            .pause("a", &pause("three", "2026-01-02T00:00:00Z", None))
            .expect("pause");
        let resumed = store
            .resume("a", t("2026-01-02T01:00:00Z"), "carol")
            .expect("resume");
        assert_eq!(resumed.map(|p| p.note), Some("three".into()));
        let last = store
            .pauses_since(Some("a"), Timestamp::UNIX_EPOCH)
            .expect("pauses")
            .pop()
            .expect("one");
        assert_eq!(last.ended_by.as_deref(), Some("carol"));
        assert_eq!(
            store
                .resume("a", t("2026-01-02T02:00:00Z"), "carol")
                .expect("resume"),
            None
        );
        // What-ifs in the past see the pause in force then.
        let then = store
            .lane_states_at(t("2026-01-02T00:30:00Z"))
            .expect("past");
        assert_eq!(
            then.states["a"].pause.as_ref().map(|p| p.note.as_str()),
            Some("three")
        );
        let after = store
            .lane_states_at(t("2026-01-02T01:30:00Z"))
            .expect("past");
        assert!(after.states["a"].pause.is_none());
    }

    #[test]
    fn deferrals_coalesce_triggers_do_not_and_pruning_keeps_the_latest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db")).expect("open");
        let d = |at, o, r| decision("a", at, o, r);
        store
            .record_decisions(
                &[
                    d("2026-01-01T00:00:00Z", Outcome::Deferred, "x"),
                    d("2026-01-01T00:00:30Z", Outcome::Deferred, "x"),
                    d("2026-01-01T00:01:00Z", Outcome::Deferred, "x"),
                    d("2026-01-01T00:01:30Z", Outcome::Deferred, "y"),
                    d("2026-01-01T00:02:00Z", Outcome::Trigger, "t"),
                    d("2026-01-01T00:02:30Z", Outcome::Trigger, "t"),
                ],
                Origin::Daemon,
            )
            .expect("record");
        let all = store.episodes_since(Timestamp::UNIX_EPOCH).expect("read");
        let counts: Vec<i64> = all.iter().map(|e| e.summary.count).collect();
        assert_eq!(counts, [3, 1, 1, 1]);
        let x = store
            .episode_at("a", "2026-01-01T00:00:45Z".parse().expect("t"))
            .expect("q")
            .expect("some");
        assert_eq!(x.summary.reason.as_deref(), Some("x"));
        assert_eq!(
            x.at("2026-01-01T00:00:45Z".parse().expect("t")).at,
            x.first.at
        );
        assert_eq!(
            x.at("2026-01-01T00:01:10Z".parse().expect("t")).at,
            x.last.as_ref().expect("last").at
        );

        let removed = store
            .prune_history("2026-01-01T00:02:10Z".parse().expect("t"))
            .expect("prune");
        assert_eq!(
            removed, 3,
            "everything older goes except the lane's latest episode"
        );
        assert_eq!(
            store
                .episodes_since(Timestamp::UNIX_EPOCH)
                .expect("read")
                .len(),
            1
        );
    }
}

//! Chaos on a shared store: three replicas of one home on a throwaway PostgreSQL, `lease_ttl:
//! 2s`, killed with SIGKILL and restarted at random (a seeded xorshift; set
//! `LANEKEEPER_CHAOS_SEED` to replay a run), while 60 cron lanes fall due every 5 s. At the end
//! what the commands wrote is counted against the lanes' slots: every slot is run exactly once.
//!
//! **Slots.** Lane `l{i}` has the cron `{i mod 5},{i mod 5 + 5},… * * * * *` (UTC): a slot every
//! 5 s, the lanes spread over the five seconds. By the due rule (docs/DESIGN.md §4) a run
//! started at `t` after the lane's previous run started at `p` is owed by, and runs, exactly the
//! slots in `(p, t]` (`catch_up: once`, the default: slots missed while no replica led are owed
//! one run together, so a run may carry several). A lane's first run is due because nothing is
//! recorded and carries no slot.
//!
//! **Due slots** are the slots of each lane after its first run's start and no later than the
//! end of the chaos (when the last replica is restarted). Each is owed one run, by the first run
//! started at or after it, whoever leads.
//!
//! **Runs** are what the commands wrote (`lane pid host`, one line per execution), joined on the
//! pid with the runs the store recorded (`runs.pid` is the command's pid, `started_at` the start
//! the due rule reads).
//!
//! - A **double** is an execution for no owed slot: a run whose `(p, t]` holds no slot (two runs
//!   for one slot), a line that matches no recorded run (started without being recorded), or a
//!   recorded run that executed twice.
//! - A **loss** is a due slot no execution covers: no run started at or after it (the lanes are
//!   given up to 30 s after the chaos to run again), or its run was recorded but its command
//!   never executed.
//!
//! Slots that shared a run ("coalesced": the leader was gone or late) are counted and printed,
//! not asserted: catch-up makes them legitimate, and how many there are depends on timing.
//!
//! Nothing is asserted on time: waits are bounded and pace the chaos only.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::harness::sh;
use crate::pg_harness::Postgres;
use crate::replicas::{Replica, eventually, leader, replica, shared_home};

/// A tiny xorshift64: the chaos is replayable from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

const LANES: i64 = 60;
const PERIOD_MS: i64 = 5_000;
const CHAOS: Duration = Duration::from_secs(55);
const HOSTS: [&str; 3] = ["a", "b", "c"];

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The lane's slot offset in its period.
fn offset(lane: &str) -> i64 {
    lane.trim_start_matches('l').parse::<i64>().unwrap_or(0) % 5 * 1_000
}

/// How many slots of the lane lie in `(from, to]`.
fn slots_in(lane: &str, from: i64, to: i64) -> i64 {
    let off = offset(lane);
    (to - off).div_euclid(PERIOD_MS) - (from - off).div_euclid(PERIOD_MS)
}

/// The lane's slots in `(from, to]`.
fn slots(lane: &str, from: i64, to: i64) -> Vec<i64> {
    let off = offset(lane);
    let first = (from - off).div_euclid(PERIOD_MS) + 1;
    let last = (to - off).div_euclid(PERIOD_MS);
    (first..=last).map(|k| k * PERIOD_MS + off).collect()
}

#[test]
fn replicas_killed_at_random_run_every_due_slot_exactly_once() {
    let Some(pg) = Postgres::start() else { return };
    let seed = std::env::var("LANEKEEPER_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15_u64);
    eprintln!("chaos seed {seed} (LANEKEEPER_CHAOS_SEED replays it)");
    let mut rng = XorShift(seed.max(1));

    let home = shared_home(&pg, "lease_ttl: 2s\n");
    let ran = home.path().join("ran");
    for i in 0..LANES {
        let seconds: Vec<String> = (0..12).map(|k| (i % 5 + 5 * k).to_string()).collect();
        home.lane(
            &format!("l{i}"),
            &format!(
                "schedule: {{ cron: \"{} * * * * *\", timezone: UTC }}\ncommand: {{ argv: {} }}\n",
                seconds.join(","),
                sh(&format!(
                    "echo \"$LANEKEEPER_LANE $$$$ $LANEKEEPER_HOST\" >> {}",
                    ran.display()
                ))
            ),
        );
    }
    let mut replicas: Vec<Option<Replica>> =
        HOSTS.iter().map(|h| Some(replica(&home, h))).collect();
    eventually("a leader", Duration::from_secs(30), || {
        leader(&home).is_some()
    });

    // The chaos: every 0.5–2.5 s, kill -9 a replica (the leader half the time) unless two are
    // already dead, and bring each dead replica back with an even chance.
    let start = Instant::now();
    let (mut kills, mut leader_kills, mut restarts) = (0, 0, 0);
    let mut timeline = Vec::new();
    while start.elapsed() < CHAOS {
        std::thread::sleep(Duration::from_millis(rng.range(500, 2_500)));
        for (i, r) in replicas.iter_mut().enumerate() {
            if r.is_none() && rng.range(0, 2) == 0 {
                *r = Some(replica(&home, HOSTS[i]));
                restarts += 1;
                timeline.push(format!("{} restarted {}", now_ms(), HOSTS[i]));
            }
        }
        let alive: Vec<usize> = (0..HOSTS.len())
            .filter(|&i| replicas[i].is_some())
            .collect();
        if alive.len() < 2 {
            continue;
        }
        let lead = leader(&home).map(|(h, _)| h);
        let victim = match lead
            .as_deref()
            .and_then(|h| HOSTS.iter().position(|x| *x == h))
        {
            Some(l) if alive.contains(&l) && rng.range(0, 2) == 0 => {
                leader_kills += 1;
                l
            }
            _ => alive[rng.range(0, alive.len() as u64) as usize],
        };
        if let Some(mut r) = replicas[victim].take() {
            let _ = r.child.kill();
            let _ = r.child.wait();
            kills += 1;
            timeline.push(format!(
                "{} killed {} (leader: {lead:?})",
                now_ms(),
                HOSTS[victim]
            ));
        }
    }
    for (i, r) in replicas.iter_mut().enumerate() {
        if r.is_none() {
            *r = Some(replica(&home, HOSTS[i]));
            restarts += 1;
        }
    }
    let end = now_ms();
    eprintln!("chaos: {kills} kills ({leader_kills} of the leader), {restarts} restarts");

    // Every lane runs again after the chaos, or the slots it owes are lost (counted below).
    let mut client = pg.client();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(30) {
        let behind: i64 = client
            .query_one(
                "SELECT count(*) FROM lanes WHERE last_run_at IS NULL OR last_run_at < $1",
                &[&end],
            )
            .map(|r| r.get(0))
            .unwrap_or(LANES);
        let known: i64 = client
            .query_one("SELECT count(*) FROM lanes", &[])
            .map(|r| r.get(0))
            .unwrap_or(0);
        if behind == 0 && known == LANES {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: Vec<String> = replicas
        .iter()
        .flatten()
        .map(|r| format!("== {}\n{}", r.host, r.log()))
        .collect();
    drop(replicas);
    // The runs in flight end (their supervisors outlive the replicas) and are recorded.
    eventually("the runs in flight to end", Duration::from_secs(30), || {
        pg.client()
            .query_one("SELECT count(*) FROM runs WHERE ended_at IS NULL", &[])
            .is_ok_and(|r| r.get::<_, i64>(0) == 0)
    });

    // What the store recorded: lane → [(start, pid, result)], by start.
    let mut recorded: BTreeMap<String, Vec<(i64, i64, String)>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT lane, started_at, COALESCE(pid, -1), COALESCE(result, '') FROM runs ORDER BY started_at, id",
            &[],
        )
        .expect("runs")
    {
        recorded
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2), row.get(3)));
    }
    // What executed: (lane, pid) → times.
    let mut executed: HashMap<(String, i64), usize> = HashMap::new();
    let mut on_host: HashMap<(String, i64), String> = HashMap::new();
    let text = std::fs::read_to_string(&ran).unwrap_or_default();
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(lane), Some(pid)) = (f.next(), f.next().and_then(|p| p.parse().ok())) else {
            panic!("a line the command did not write: {line:?}");
        };
        *executed.entry((lane.to_string(), pid)).or_default() += 1;
        on_host.insert((lane.to_string(), pid), f.next().unwrap_or("?").to_string());
    }

    let (mut due, mut doubles, mut losses, mut coalesced) = (0, 0, 0, 0);
    let mut problems = Vec::new();
    let mut matched = 0;
    for i in 0..LANES {
        let lane = format!("l{i}");
        let runs = recorded.get(&lane).map(Vec::as_slice).unwrap_or_default();
        let Some(&(first, ..)) = runs.first() else {
            problems.push(format!("{lane} never ran"));
            continue;
        };
        for (k, &(start, pid, ref result)) in runs.iter().enumerate() {
            let times = executed.get(&(lane.clone(), pid)).copied().unwrap_or(0);
            matched += times.min(1);
            let owed = if k == 0 {
                0
            } else {
                slots_in(&lane, runs[k - 1].0, start)
            };
            if k > 0 && owed == 0 {
                doubles += 1;
                let host = |pid: i64| {
                    on_host
                        .get(&(lane.clone(), pid))
                        .cloned()
                        .unwrap_or_default()
                };
                problems.push(format!(
                    "double: {lane} ran at {start} ({result}) on {} with no slot since its run at {} on {}",
                    host(pid),
                    runs[k - 1].0,
                    host(runs[k - 1].1)
                ));
            }
            if times > 1 {
                doubles += times - 1;
                problems.push(format!(
                    "double: {lane}'s run at {start} executed {times} times"
                ));
            }
            if times == 0 {
                // Its slots were taken by a run that never executed.
                let lost = owed.max(i64::from(k == 0));
                losses += lost;
                problems.push(format!(
                    "loss: {lane}'s run at {start} ({result}, pid {pid}) was recorded but never executed ({lost} slots)"
                ));
            }
            coalesced += (owed - 1).max(0);
        }
        let last = runs.last().map_or(first, |r| r.0);
        let lane_due = slots(&lane, first, end);
        due += lane_due.len();
        let uncovered = lane_due.iter().filter(|&&s| s > last).count();
        if uncovered > 0 {
            losses += i64::try_from(uncovered).unwrap_or(i64::MAX);
            problems.push(format!(
                "loss: {lane} has {uncovered} due slots after its last run at {last}"
            ));
        }
    }
    let lines = text.lines().count();
    let strays = lines
        - executed
            .iter()
            .filter(|((lane, pid), _)| {
                recorded
                    .get(lane)
                    .is_some_and(|r| r.iter().any(|(_, p, _)| p == pid))
            })
            .map(|(_, n)| n)
            .sum::<usize>();
    if strays > 0 {
        doubles += strays;
        problems.push(format!("double: {strays} executions match no recorded run"));
    }
    let gap_rows: Vec<String> = client
        .query(
            "SELECT (extract(epoch FROM from_at) * 1000)::bigint, (extract(epoch FROM to_at) * 1000)::bigint, old_holder, new_holder, token FROM leader_gaps ORDER BY id",
            &[],
        )
        .expect("gaps")
        .iter()
        .map(|r| {
            format!(
                "no leader {} to {}: {} then {} (token {})",
                r.get::<_, i64>(0),
                r.get::<_, i64>(1),
                r.get::<_, String>(2),
                r.get::<_, String>(3),
                r.get::<_, i64>(4)
            )
        })
        .collect();
    let gaps = gap_rows.len();
    timeline.extend(gap_rows);
    eprintln!(
        "chaos: {due} due slots, {lines} executions ({matched} matched to recorded runs), \
         {doubles} doubles, {losses} losses, {coalesced} slots coalesced into a shared run, \
         {gaps} leaderless spans"
    );
    assert!(
        problems.is_empty(),
        "seed {seed}:\n{}\n{}\nthe replicas' logs (errors and warnings):\n{}",
        problems.join("\n"),
        timeline.join("\n"),
        logs.iter()
            .flat_map(|l| l.lines())
            .filter(|l| {
                [
                    "==",
                    "ERROR",
                    "WARN",
                    "Leading",
                    "Following",
                    "No longer",
                    "Starting",
                ]
                .iter()
                .any(|w| l.contains(w))
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!((doubles, losses), (0, 0));
    assert!(due >= 500, "only {due} due slots");
}

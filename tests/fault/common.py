"""Shared pieces of the fault-injection scripts: a scratch home whose jobs write a journal of
their own starts and ends, and the checks that count double and unrecorded runs from it.

The journal is written by the commands themselves, not by lanekeeper, so the counts do not
trust what is being tested. Every line is `start|end LANE PID NANOS`, appended with O_APPEND.
"""

import os
import signal
import sqlite3
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def binary():
    """The lanekeeper binary to test: LANEKEEPER_BIN, else target/release, else target/debug."""
    explicit = os.environ.get("LANEKEEPER_BIN")
    if explicit:
        return explicit
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, "lanekeeper")
        if os.path.exists(path):
            return path
    raise SystemExit("build lanekeeper first: cargo build --release")


JOB = (
    'echo "start $LANEKEEPER_LANE $$ $(date +%s%N)" >> "$LANEKEEPER_HOME/journal"; '
    "sleep {secs}; "
    'echo "end $LANEKEEPER_LANE $$ $(date +%s%N)" >> "$LANEKEEPER_HOME/journal"'
)


def make_home(lanes, every="1s", secs="0.3", extra=""):
    """A scratch home with `lanes` journaling lanes, due every `every`, each running `secs`."""
    home = tempfile.mkdtemp(prefix="lanekeeper-fault-")
    os.makedirs(os.path.join(home, "rules"))
    os.makedirs(os.path.join(home, "plugins"))
    for lane in lanes:
        with open(os.path.join(home, "rules", f"{lane}.yaml"), "w") as f:
            f.write(
                f"schedule:\n  every: {every}\n{extra}command:\n"
                f"  argv: [sh, -c, {JOB.format(secs=secs)!r}]\n"
                "  timeout: 30s\n  grace: 1s\n"
            )
    return home


def lanekeeper(home, *args, **kw):
    return subprocess.Popen(
        [binary(), "--home", home, *args],
        stdin=subprocess.DEVNULL,
        stdout=kw.pop("stdout", subprocess.DEVNULL),
        stderr=kw.pop("stderr", subprocess.DEVNULL),
        start_new_session=True,
        **kw,
    )


def kill9(proc):
    try:
        os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def supervisors_alive(home):
    """Whether any run of the home is still held by a live supervisor (its lock file's pid)."""
    locks = os.path.join(home, "state", "locks")
    if not os.path.isdir(locks):
        return False
    for name in os.listdir(locks):
        try:
            pid = int(open(os.path.join(locks, name)).read().strip() or 0)
        except (OSError, ValueError):
            continue
        if pid and os.path.exists(f"/proc/{pid}") and "Z" not in state_of(pid):
            try:
                # A lock held is a run going on; the file may keep a dead holder's pid.
                import fcntl

                with open(os.path.join(locks, name), "r+") as f:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
    return False


def state_of(pid):
    try:
        stat = open(f"/proc/{pid}/stat").read()
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def settle(home, timeout=120):
    """Waits until no run is going on, then lets one `run --once` settle what crashed."""
    deadline = time.time() + timeout
    while supervisors_alive(home) and time.time() < deadline:
        time.sleep(0.2)
    # Orphaned commands (their supervisor was killed) finish within their job time.
    time.sleep(1.0)
    subprocess.run([binary(), "--home", home, "run", "--once"], capture_output=True)


def journal(home):
    """Runs as the commands saw them: {(lane, pid): [start, end or None]}."""
    runs = {}
    path = os.path.join(home, "journal")
    if not os.path.exists(path):
        return runs
    for line in open(path):
        parts = line.split()
        if len(parts) != 4:
            continue
        kind, lane, pid, ns = parts[0], parts[1], int(parts[2]), int(parts[3])
        entry = runs.setdefault((lane, pid), [None, None])
        entry[0 if kind == "start" else 1] = ns
    return runs


def doubles(runs):
    """Pairs of runs of one lane whose journaled lives overlap."""
    by_lane = {}
    for (lane, pid), (start, end) in runs.items():
        if start is not None:
            by_lane.setdefault(lane, []).append((start, end or float("inf"), pid))
    found = []
    for lane, spans in by_lane.items():
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                found.append((lane, a, b))
    return found


def recorded_pids(home):
    db = sqlite3.connect(os.path.join(home, "state", "lanekeeper.db"))
    rows = db.execute("SELECT lane, pid, result FROM runs WHERE pid IS NOT NULL").fetchall()
    integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    return {(lane, pid): result for lane, pid, result in rows}, integrity


def report(name, home, runs, started_at):
    recorded, integrity = recorded_pids(home)
    unrecorded = [k for k, (s, _) in runs.items() if s is not None and k not in recorded]
    open_runs = [k for k, r in recorded.items() if r is None]
    dbl = doubles(runs)
    print(f"{name}: {len(runs)} runs journaled by the commands, {len(recorded)} recorded")
    print(f"  double runs (overlapping runs of one lane): {len(dbl)}")
    print(f"  unrecorded runs (journaled, not in the store): {len(unrecorded)}")
    print(f"  runs still open in the store after settling: {len(open_runs)}")
    print(f"  integrity_check: {integrity}")
    print(f"  wall time: {time.time() - started_at:.0f} s; home {home}")
    for d in dbl[:5]:
        print("  double:", d)
    for u in unrecorded[:5]:
        print("  unrecorded:", u)
    return not dbl and not unrecorded and not open_runs and integrity == "ok"

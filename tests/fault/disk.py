#!/usr/bin/env python3
"""A full disk and a read-only state directory under a running daemon (needs root: it mounts a
small tmpfs as the home's `state/`, and runs lanekeeper as `nobody`, for whom file modes hold).

1. The daemon runs an `every: 1s` lane; `state/` is then filled to the last byte.
2. What the daemon logs and what `status` says must name the disk; the daemon stays up.
3. Space comes back: runs resume by themselves, with no signal.
4. The same with `state/` made read-only (chmod a-w on it and its files), then writable again.
5. The store passes `PRAGMA integrity_check`, and the jobs' own journal shows no double and no
   unrecorded run.

    cargo build --release && sudo python3 tests/fault/disk.py
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def runs_in_journal(home):
    return sum(1 for (_, _), (s, _) in common.journal(home).items() if s is not None)


def wait_for_more_runs(home, than, within):
    deadline = time.time() + within
    while time.time() < deadline:
        if runs_in_journal(home) > than:
            return time.time()
        time.sleep(0.2)
    return None


def fill(path):
    """Writes until the filesystem is full; returns the filler's path."""
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


AS = ["runuser", "-u", "nobody", "--"]


def chown_tree(path, uid, gid):
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in files:
            os.chown(os.path.join(root, name), uid, gid)


def chmod_tree(path, writable):
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o755 if writable else 0o555)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644 if writable else 0o444)


def main():
    if os.geteuid() != 0:
        raise SystemExit("needs root to mount a tmpfs (skipped)")
    home = common.make_home(["tick"], every="1s", secs="0.1")
    state = os.path.join(home, "state")
    os.makedirs(state)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", state], check=True)
    import pwd

    nobody = pwd.getpwnam("nobody")
    chown_tree(home, nobody.pw_uid, nobody.pw_gid)
    log_path = os.path.join(home, "daemon.log")
    log = open(log_path, "w")
    env = dict(os.environ, LANEKEEPER_LOG="info")
    daemon = subprocess.Popen(
        AS + [common.binary(), "--home", home, "run"],
        stderr=log,
        stdout=subprocess.DEVNULL,
        env=env,
    )
    started = time.time()
    ok = True
    try:
        if wait_for_more_runs(home, 2, 30) is None:
            raise SystemExit("the lane never ran")

        # A full disk.
        filler = fill(state)
        time.sleep(4)
        before = runs_in_journal(home)
        status = subprocess.run(
            AS + [common.binary(), "--home", home, "status"], capture_output=True, text=True
        )
        text = open(log_path).read()
        said_disk = "disk" in text.lower() or "full" in text.lower()
        print(f"full disk: daemon alive={daemon.poll() is None}; the log names the disk={said_disk}")
        print(f"  status exit {status.returncode}: {(status.stderr or status.stdout).strip()[:200]}")
        ok &= daemon.poll() is None and said_disk
        os.remove(filler)
        resumed = wait_for_more_runs(home, before, 60)
        if resumed is None:
            print("  runs did NOT resume")
            ok = False
        else:
            print(f"  runs resumed without a signal ({runs_in_journal(home) - before} more)")

        # A read-only state directory.
        chmod_tree(state, writable=False)
        time.sleep(4)
        before = runs_in_journal(home)
        text = open(log_path).read()
        said = "permission" in text.lower() or "read-only" in text.lower() or "readonly" in text.lower()
        print(f"read-only: daemon alive={daemon.poll() is None}; the log says why={said}")
        ok &= daemon.poll() is None and said
        chmod_tree(state, writable=True)
        if wait_for_more_runs(home, before, 60) is None:
            print("  runs did NOT resume after remount rw")
            ok = False
        else:
            print("  writable again: runs resumed without a signal")
    finally:
        daemon.terminate()
        daemon.wait()
        log.close()
    daemon.wait()
    common.settle(home)
    ok &= common.report("disk", home, common.journal(home), started)
    text = open(log_path).read()
    shown = set()
    for line in text.splitlines():
        low = line.lower()
        for key in ("disk", "permission", "read-only", "readonly"):
            if key in low and key not in shown and "error" in low:
                shown.add(key)
                print("  log:", line[:260])
    subprocess.run(["umount", state])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

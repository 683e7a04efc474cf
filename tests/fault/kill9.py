#!/usr/bin/env python3
"""200 `kill -9`s of the daemon and of `fire`, at random moments, some while another process
holds the database's write lock (so the kill lands while a store write waits or runs).

Counts, from the journal the jobs write themselves: runs of one lane that overlapped (double
runs), and runs that started but are not in the store (unrecorded runs). Then checks that the
store opens and passes `PRAGMA integrity_check`. Exit 0 when all are zero and ok.

    cargo build --release && python3 tests/fault/kill9.py [KILLS]
"""

import os
import random
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KILLS = int(sys.argv[1]) if len(sys.argv) > 1 else 200
LANES = ["alpha", "beta", "gamma"]


def hold_write_lock(home, seconds):
    """Another process holding SQLite's write lock for a while."""
    try:
        db = sqlite3.connect(os.path.join(home, "state", "lanekeeper.db"), timeout=30)
        db.execute("BEGIN IMMEDIATE")
        time.sleep(seconds)
        db.execute("COMMIT")
        db.close()
    except sqlite3.Error:
        pass


def main():
    random.seed(int(os.environ.get("SEED", "9")))
    home = common.make_home(LANES, every="1s", secs="0.4")
    started = time.time()
    common.lanekeeper(home, "record", LANES[0], "--outcome", "success").wait()
    daemon_kills = fire_kills = 0
    for i in range(KILLS):
        if random.random() < 0.3:
            threading.Thread(
                target=hold_write_lock, args=(home, random.uniform(0.05, 1.5)), daemon=True
            ).start()
        if i % 2 == 0:
            proc = common.lanekeeper(home, "run")
            daemon_kills += 1
        else:
            proc = common.lanekeeper(home, "fire", random.choice(LANES), "--wait")
            fire_kills += 1
        time.sleep(random.uniform(0.0, 1.2))
        common.kill9(proc)
    common.settle(home)
    print(f"kill -9: {daemon_kills} daemons and {fire_kills} fires")
    ok = common.report("kill9", home, common.journal(home), started)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

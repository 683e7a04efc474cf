#!/usr/bin/env python3
"""1,000 randomised races on one home: `fire`, `fire --wait`, `run --once`, a daemon and a
second daemon, started together in random mixes and some killed at random moments.

Counts double dispatches (overlapping runs of one lane) and unrecorded runs from the journal the
jobs write themselves. Exit 0 when both are zero and the store passes its integrity check.

    cargo build --release && python3 tests/fault/races.py [RACES]
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

RACES = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
LANES = ["one", "two"]


def contender(home):
    lane = random.choice(LANES)
    return random.choice(
        [
            ("fire", lane),
            ("fire", lane, "--wait"),
            ("run", "--once"),
            ("run",),
            ("run",),
        ]
    )


def main():
    random.seed(int(os.environ.get("SEED", "11")))
    home = common.make_home(LANES, every="1s", secs="0.2")
    started = time.time()
    refused_daemons = 0
    for _ in range(RACES):
        procs = []
        for _ in range(random.randint(2, 4)):
            args = contender(home)
            procs.append((args, common.lanekeeper(home, *args, stderr=-1)))
            time.sleep(random.uniform(0.0, 0.02))
        time.sleep(random.uniform(0.05, 0.4))
        for args, proc in procs:
            if args == ("run",) or random.random() < 0.2:
                common.kill9(proc)
            else:
                proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if "another lanekeeper daemon" in err:
                refused_daemons += 1
            proc.stderr and proc.stderr.close()
    common.settle(home)
    print(f"races: {RACES}; second daemons refused: {refused_daemons}")
    ok = common.report("races", home, common.journal(home), started)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

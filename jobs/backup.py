#!/usr/bin/env python3
"""backup lane: archive lanekeeper's state database into state/backups/.

Uses SQLite's online backup API, so the copy is consistent even while lanekeeper writes
(copying the file with WAL pages in flight would not be). Keeps the newest KEEP archives.
"""
import gzip
import os
import shutil
import sqlite3
import sys
import time

KEEP = int(os.environ.get("BACKUP_KEEP", "7"))

home = os.environ.get("LANEKEEPER_HOME", ".")
src = os.path.join(home, "state", "lanekeeper.db")
dest_dir = os.path.join(home, "state", "backups")
os.makedirs(dest_dir, exist_ok=True)

if not os.path.exists(src):
    print(f"backup: no database at {src} yet; nothing to archive", file=sys.stderr)
    sys.exit(1)

stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
tmp = os.path.join(dest_dir, f".lanekeeper-{stamp}.db.partial")
final = os.path.join(dest_dir, f"lanekeeper-{stamp}.db.gz")

print(f"backup: archiving {src}")
source = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
copy = sqlite3.connect(tmp)
with copy:
    source.backup(copy)
copy.close()
source.close()
with open(tmp, "rb") as fin, gzip.open(final + ".partial", "wb") as fout:
    shutil.copyfileobj(fin, fout)
os.replace(final + ".partial", final)
os.remove(tmp)
print(f"backup: wrote {final} ({os.path.getsize(final)} bytes)")

archives = sorted(f for f in os.listdir(dest_dir) if f.startswith("lanekeeper-") and f.endswith(".db.gz"))
for old in archives[:-KEEP]:
    os.remove(os.path.join(dest_dir, old))
    print(f"backup: pruned {old}")

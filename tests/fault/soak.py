#!/usr/bin/env python3
"""Soak: 1,000 lanes re-decided every second for 30 minutes (by default), with plugins that
randomly loop, throw, allocate, log heavily or probe a slow endpoint, and a probe server that
flaps between fast, slow, refusing and hanging.

Samples the daemon's RSS and open file descriptors every 5 s and its pass times from
`/metrics`, then writes `soak.csv` and `soak.png` (RSS and fds over time) beside itself, or into
SOAK_OUT. Passes: RSS and fds flat (last tenth against the first tenth after warm-up), and no
pass longer than `limits.gate_timeout` plus one second.

    cargo build --release && python3 tests/fault/soak.py [MINUTES]
"""

import http.server
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
LANES = int(os.environ.get("SOAK_LANES", "1000"))
OUT = os.environ.get("SOAK_OUT", os.path.dirname(os.path.abspath(__file__)))
GATE_TIMEOUT_S = 2.0
FLAP_EVERY = 20  # seconds per mode


class Flapping(http.server.BaseHTTPRequestHandler):
    """Fast, slow (3 s), or hanging (never answers), by the clock."""

    def do_GET(self):  # noqa: N802
        mode = int(time.time() // FLAP_EVERY) % 4
        if mode == 1:
            time.sleep(3)
        elif mode == 2:
            time.sleep(3600)
        body = b"ok"
        self.send_response(200 if mode != 3 else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


# Most lanes wait on something ordinary, so each pass decides them all again.
CALM = """
fn evaluate(ctx) {
    #{ defer: "waiting", detail: `second ${(ctx.now_ms / 1000) % 60} is not the one` }
}
"""

# Picks a misbehaviour from the second and the lane, so each lane does each now and then.
CHAOS = """
fn params() { #{ url: "url" } }

fn evaluate(ctx) {
    let pick = ((ctx.now_ms / 1000) + ctx.lane.len()) % 8;
    if pick == 0 { loop { } }
    if pick == 1 { throw "chaos: thrown"; }
    if pick == 2 { let a = []; loop { a.push("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); } }
    if pick == 3 { loop { log("chaos: a long line to flood the evidence, again and again"); } }
    if pick == 4 || pick == 5 {
        let r = http_get(ctx.params.url, 10000);
        if !r.ok { return #{ defer: "provider-unreachable", detail: `${r.error}` }; }
        return ();
    }
    #{ defer: "waiting", detail: "chaos at rest" }
}
"""


def make_home(url):
    home = common.make_home([], every="1h")
    with open(os.path.join(home, "plugins", "calm.rhai"), "w") as f:
        f.write(CALM)
    with open(os.path.join(home, "plugins", "chaos.rhai"), "w") as f:
        f.write(CHAOS)
    with open(os.path.join(home, "lanekeeper.yaml"), "w") as f:
        f.write(
            "limits:\n"
            f"  gate_timeout: {int(GATE_TIMEOUT_S * 1000)}ms\n"
            "  rhai: { deadline: 100ms, max_operations: 200000 }\n"
            "history: { retention: 1h }\n"
            "run_logs: { keep: 3 }\n"
        )
    chaos = LANES // 10
    runners = LANES // 50
    for i in range(LANES):
        name = f"lane-{i:04d}"
        if i < chaos:
            pre = f"preconditions:\n  - use: chaos\n    with: {{ url: {url!r} }}\n"
            every = "1h"
        elif i < chaos + runners:
            pre = ""
            every = "2m"
        else:
            pre = "preconditions:\n  - use: calm\n"
            every = "1h"
        with open(os.path.join(home, "rules", f"{name}.yaml"), "w") as f:
            f.write(
                f"schedule:\n  every: {every}\nrecheck: 1s\n{pre}"
                "command:\n  argv: [\"true\"]\n  timeout: 30s\n"
            )
    return home


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(text, name):
    """Sum of all samples of `name` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def main():
    server = Server(("127.0.0.1", 0), Flapping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    home = make_home(url)
    log_path = os.path.join(home, "daemon.log")
    log = open(log_path, "w")
    env = dict(os.environ, LANEKEEPER_LOG="warn")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = subprocess.Popen(
        [common.binary(), "--home", home, "run", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    samples = []
    start = time.time()
    end = start + MINUTES * 60
    worst_pass = 0.0
    passes = 0
    try:
        while time.time() < end and daemon.poll() is None:
            time.sleep(5)
            t = time.time() - start
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            except OSError as e:
                text = ""
                print(f"{t:6.0f}s /metrics failed: {e}")
            worst_pass = max(worst_pass, metric(text, "lanekeeper_pass_max_seconds"))
            passes = metric(text, "lanekeeper_pass_duration_seconds_count")
            samples.append((t, rss_kib(daemon.pid), fds(daemon.pid), passes))
            print(f"{t:6.0f}s rss {samples[-1][1] / 1024:7.1f} MiB  fds {samples[-1][2]:4d}  passes {passes:.0f}  worst pass {worst_pass:.2f}s", flush=True)
    finally:
        alive = daemon.poll() is None
        daemon.terminate()
        daemon.wait()
        log.close()
    with open(os.path.join(OUT, "soak.csv"), "w") as f:
        f.write("seconds,rss_kib,fds,passes\n")
        for s in samples:
            f.write(",".join(str(x) for x in s) + "\n")
    plot(samples)
    warm = [s for s in samples if s[0] >= 60] or samples
    tenth = max(1, len(warm) // 10)
    first = sum(s[1] for s in warm[:tenth]) / tenth
    last = sum(s[1] for s in warm[-tenth:]) / tenth
    fds_first = sum(s[2] for s in warm[:tenth]) / tenth
    fds_last = sum(s[2] for s in warm[-tenth:]) / tenth
    growth = (last - first) / first if first else 0
    print(f"soak: {LANES} lanes, {MINUTES:.0f} min, {passes:.0f} passes, daemon alive to the end: {alive}")
    print(f"  RSS after warm-up: first tenth {first / 1024:.1f} MiB, last tenth {last / 1024:.1f} MiB ({growth:+.1%})")
    print(f"  open fds: first tenth {fds_first:.0f}, last tenth {fds_last:.0f}")
    print(f"  longest pass: {worst_pass:.2f} s (gate timeout {GATE_TIMEOUT_S:.1f} s)")
    ok = alive and growth < 0.10 and fds_last <= fds_first + 5 and worst_pass <= GATE_TIMEOUT_S + 1.0
    sys.exit(0 if ok else 1)


def plot(samples):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no soak.png (pip install matplotlib)")
        return
    t = [s[0] / 60 for s in samples]
    fig, ax1 = plt.subplots(figsize=(9, 4))
    ax1.plot(t, [s[1] / 1024 for s in samples], color="tab:blue", label="RSS (MiB)")
    ax1.set_xlabel("minutes")
    ax1.set_ylabel("daemon RSS (MiB)", color="tab:blue")
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(t, [s[2] for s in samples], color="tab:orange", label="open fds")
    ax2.set_ylabel("open file descriptors", color="tab:orange")
    ax2.set_ylim(bottom=0)
    ax1.set_title(f"lanekeeper soak: {LANES} lanes, re-decided every second, chaos plugins, flapping probe")
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "soak.png"), dpi=110)


if __name__ == "__main__":
    main()

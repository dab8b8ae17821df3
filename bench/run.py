#!/usr/bin/env python3
"""The benchmark driver of tether (issue 9). Started by `bench/run.sh`, which builds and
installs everything first; needs only the Python standard library.

    bench/run.sh                 full run: 3 repetitions x 4 servers, writes bench/results/<date>.{json,md}
    bench/run.sh --smoke         tether only, small sizes, correctness only; ends with `N passed, N failed`

Method (issue 9): each server runs on core 0 and the load generator on core 1 (`taskset`);
servers run single-threaded. The headline figures are messages per server-CPU-second
(utime+stime from /proc/PID/stat over the measured window), wall-clock rates beside them.
Each window also records the generator's own CPU (a window where it used >= 95 % of its core
is labelled generator-bound), steal time and the foreign load on both cores (a window is
labelled noisy when steal > 5 % or foreign load on the server's core > 15 %). Servers are
interleaved (tether, socketioxide, node, python in each repetition); figures are medians of
the repetitions with min-max.

Scenarios:
  S1a  echo, 1 client, one message in flight: latency p50/p99/p99.9 (us)
  S1b  echo, 100 clients, one message in flight each: echoes per server-CPU-s
  S2   broadcast to 1k/5k/10k receivers (the set grows), one round at a time: deliveries per
       server-CPU-s, first-to-last latency per round, drops (must be 0)
  S3   the same 10k connections held idle until each was pinged (pingInterval 25 s): RSS per
       connection (VmRSS delta over the baseline before the first connection), idle CPU per
       heartbeat; then memory after everyone left
  floor  the echo and broadcast scenarios against a raw WebSocket server on tokio-tungstenite
       (`rawws`, no Socket.IO decoding; a broadcast is one `write` per receiver straight
       from the reading task): what framing, syscalls and loopback cost on this machine
  S4   echo through tether's C ABI (`tether-cabi`: bench/peers/c/echo_server.c, built and
       set as TETHER_BENCH_CABI_CMD by run.sh) and through its Python binding (set
       TETHER_BENCH_PY_CMD to a command `... PORT` printing `listening on
       http://127.0.0.1:PORT`); they join the rotation with the echo scenarios, and the S4
       targets are checked.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)

SERVER_CORE = 0
GEN_CORE = 1

# Targets of issue 9.
TARGET_S1B_PER_CPU = 100_000
TARGET_S1B_VS_SIO = 1.5
TARGET_S1A_P50_US = 30.0
TARGET_S2_PER_CPU = 200_000
TARGET_S2_VS_SIO = 2.0
TARGET_S3_BYTES = 4096
TARGET_S4_CABI_MAX_LOSS = 0.05
TARGET_S4_PY_VS_PYTHON = 10.0


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- servers ------------------------------------------------------------------------------


def server_commands(args):
    venv_py = os.path.join(BENCH, ".venv", "bin", "python")
    servers = {
        "tether": [os.environ.get("TETHER_BENCH_SERVER", ""), "0", "1"],
        "socketioxide": [os.path.join(BENCH, "target", "release", "bench-socketioxide"), "0", "1"],
        "node": ["node", os.path.join(BENCH, "peers", "node", "server.js"), "0"],
        "python": [venv_py, os.path.join(BENCH, "peers", "python", "server.py"), "0"],
        # The floor of the echo scenarios: raw WebSocket echo on tokio-tungstenite, no
        # Socket.IO decoding (S1 only).
        "rawws": [os.path.join(BENCH, "target", "release", "bench-rawws"), "0", "1"],
    }
    # S4 hook: tether through the C ABI and through Python, once those bindings exist.
    if os.environ.get("TETHER_BENCH_CABI_CMD"):
        servers["tether-cabi"] = shlex.split(os.environ["TETHER_BENCH_CABI_CMD"]) + ["0"]
    if os.environ.get("TETHER_BENCH_PY_CMD"):
        servers["tether-python"] = shlex.split(os.environ["TETHER_BENCH_PY_CMD"]) + ["0"]
    elif os.environ.get("TETHER_BENCH_PY"):
        # The Python binding's peer (bench/peers/tether_py), with the interpreter run.sh
        # built the package for.
        servers["tether-python"] = [os.environ["TETHER_BENCH_PY"],
                                    os.path.join(BENCH, "peers", "tether_py", "echo_server.py"), "0"]
    chosen = args.servers.split(",") if args.servers else list(servers)
    out = {}
    for name in chosen:
        if name not in servers:
            sys.exit(f"unknown server {name}; known: {', '.join(servers)}")
        out[name] = servers[name]
    return out


class Server:
    def __init__(self, name, cmd, nice):
        self.name = name
        prefix = ["taskset", "-c", str(SERVER_CORE)]
        if nice:
            prefix = ["nice", "-n", str(nice)] + prefix
        self.err = open(os.path.join(BENCH, "target", f"server-{name}.log"), "w")
        self.proc = subprocess.Popen(
            prefix + cmd,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
            start_new_session=True,
        )
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening on http://"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                break
        if self.port is None:
            self.stop()
            raise RuntimeError(f"{name} did not start: see {self.err.name}")
        # `nice` and `taskset` exec the server: the pid is the server's own.
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()


def loadgen(args, server, cmd, label, timeout):
    argv = [
        "taskset", "-c", str(GEN_CORE), os.environ["TETHER_BENCH_LOADGEN"], *cmd,
        "--addr", f"127.0.0.1:{server.port}", "--pid", str(server.pid),
        "--server-core", str(SERVER_CORE), "--gen-core", str(GEN_CORE),
        "--label", json.dumps(label),
    ]
    if args.nice:
        argv = ["nice", "-n", str(args.nice)] + argv
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"scenario": cmd[0], "ok": False, "problems": [f"loadgen timed out after {timeout}s"], "label": label}]
    for line in p.stderr.splitlines():
        log(f"    {line}")
    out = []
    for line in p.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            log(f"    (not json) {line}")
    if not out:
        out.append({"scenario": cmd[0], "ok": False, "problems": [f"loadgen exited {p.returncode} with no result"], "label": label})
    return out


# ---- runs ---------------------------------------------------------------------------------


def full_plan(quick):
    s1 = ["--warmup", "0.3", "--duration", "2"]
    plan = [
        ("S1a", ["echo", "--clients", "1", "--window", "1", *s1], 60),
        ("S1b", ["echo", "--clients", "100", "--window", "1", *s1], 60),
    ]
    if quick:
        plan.append(("S3+S2", ["fanout", "--conns", "1000", "--hold", "1", "--sizes", "1000",
                               "--warmup-rounds", "1", "--duration", "1", "--min-rounds", "2"], 120))
    else:
        plan.append(("S3+S2", ["fanout", "--conns", "10000", "--hold", "auto",
                               "--sizes", "1000,5000,10000", "--warmup-rounds", "1",
                               "--duration", "1", "--min-rounds", "2"], 300))
    return plan


def smoke_plan():
    return [
        ("S1a", ["echo", "--clients", "1", "--warmup", "0.1", "--duration", "0.5"], 30),
        ("S1b", ["echo", "--clients", "10", "--warmup", "0.1", "--duration", "0.5"], 30),
        ("S3+S2", ["fanout", "--conns", "200", "--hold", "1", "--sizes", "50",
                   "--warmup-rounds", "1", "--duration", "0.5", "--min-rounds", "5"], 60),
    ]


def tag(result, step):
    """Which scenario a loadgen result belongs to."""
    sc = result.get("scenario")
    if sc == "echo":
        return step
    if sc == "idle":
        return "S3"
    if sc == "bcast":
        return f"S2-{result.get('receivers')}"
    if sc == "leave":
        return "S3-leave"
    return step


def run_all(args, servers, plan, reps):
    results = []
    t0 = time.time()
    for rep in range(1, reps + 1):
        for name, cmd in servers.items():
            t = time.time()
            try:
                srv = Server(name, cmd, args.nice)
            except RuntimeError as e:
                log(f"!! {e}")
                results.append({"server": name, "rep": rep, "tag": "start", "ok": False, "problems": [str(e)]})
                continue
            try:
                for step, lg, timeout in plan:
                    if name.startswith("tether-") and not step.startswith("S1"):
                        continue  # S4 servers: the echo scenarios only
                    if name == "rawws" and step.startswith("S3"):
                        # The floor has no heartbeat: its broadcasts only, no S3 hold, and
                        # only at the largest size (the run stays within 10 minutes).
                        lg = list(lg)
                        if "--hold" in lg:
                            lg[lg.index("--hold") + 1] = "1"
                        if "--sizes" in lg:
                            i = lg.index("--sizes") + 1
                            lg[i] = lg[i].split(",")[-1]
                    label = {"server": name, "rep": rep, "step": step}
                    for r in loadgen(args, srv, lg, label, timeout):
                        r["server"], r["rep"], r["tag"] = name, rep, tag(r, step)
                        if name == "rawws" and r["tag"] == "S3":
                            continue
                        results.append(r)
                        log(f"  rep {rep} {name:13} {r['tag']:9} {'ok' if r.get('ok') else 'FAIL'} {brief(r)}")
            finally:
                srv.stop()
            log(f"== rep {rep} {name}: {time.time() - t:.0f}s (total {time.time() - t0:.0f}s)")
    return results, time.time() - t0


def brief(r):
    if r.get("problems"):
        return "; ".join(r["problems"][:3])
    sc = r.get("scenario")
    if sc == "echo":
        return f"{r['echoes_per_server_cpu_s'] or 0:,.0f}/cpu-s {r['echoes_per_s']:,.0f}/s p50 {r['lat_us']['p50']}us"
    if sc == "bcast":
        return f"{r['deliveries_per_server_cpu_s'] or 0:,.0f}/cpu-s {r['deliveries_per_s']:,.0f}/s"
    if sc == "idle":
        return f"{(r['bytes_per_conn'] or 0) / 1000:.1f} KB/conn, idle {100 * (r['idle_server_core_share'] or 0):.2f}% core"
    if sc == "leave":
        return f"retained {r.get('rss_retained_kib')} KiB"
    return ""


# ---- summary ------------------------------------------------------------------------------


def flags(r):
    cpu = r.get("cpu") or {}
    f = []
    if (cpu.get("gen_core_share") or 0) >= 0.95:
        f.append("generator-bound")
    if (cpu.get("steal_share") or 0) > 0.05 or (cpu.get("foreign_share_server_core") or 0) > 0.15:
        f.append("noisy")
    return f


def get(r, path):
    v = r
    for k in path.split("."):
        if not isinstance(v, dict):
            return None
        v = v.get(k)
    return v


METRICS = {
    # tag: [(key, path, unit, higher_is_better)]
    "S1a": [("p50_us", "lat_us.p50", "us", False), ("p99_us", "lat_us.p99", "us", False),
            ("p999_us", "lat_us.p999", "us", False), ("echoes_per_s", "echoes_per_s", "/s", True),
            ("echoes_per_cpu_s", "echoes_per_server_cpu_s", "/cpu-s", True)],
    "S1b": [("echoes_per_cpu_s", "echoes_per_server_cpu_s", "/cpu-s", True),
            ("echoes_per_s", "echoes_per_s", "/s", True), ("p50_us", "lat_us.p50", "us", False),
            ("server_core_share", "cpu.server_core_share", "", True),
            ("sys_share", "cpu.server_sys_share_of_cpu", "", False)],
    "S3": [("bytes_per_conn", "bytes_per_conn", "B", False),
           ("bytes_per_conn_connected", "bytes_per_conn_connected", "B", False),
           ("idle_core_share", "idle_server_core_share", "", False),
           ("idle_core_share_steady", "idle_core_share_steady", "", False),
           ("idle_cpu_us_per_ping", "idle_cpu_us_per_ping", "us", False),
           ("connect_cpu_us_per_conn", "connect_server_cpu_us_per_conn", "us", False),
           ("connect_s", "connect_s", "s", False)],
    "S3-leave": [("retained_kib", "rss_retained_kib", "KiB", False),
                 ("retained_share", "retained_share_of_growth", "", False)],
}
for n in (1000, 5000, 10000):
    METRICS[f"S2-{n}"] = [
        ("deliveries_per_cpu_s", "deliveries_per_server_cpu_s", "/cpu-s", True),
        ("deliveries_per_s", "deliveries_per_s", "/s", True),
        ("first_to_last_us", "first_to_last_us.p50", "us", False),
        ("send_to_last_us", "send_to_last_us.p50", "us", False),
        ("drops", "drops", "", False),
        ("sys_share", "cpu.server_sys_share_of_cpu", "", False),
    ]


def stats(values):
    vals = [v for v in values if isinstance(v, (int, float))]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def summarize(results, servers):
    summary = {}
    for name in servers:
        summary[name] = {}
        for tg, metrics in METRICS.items():
            rs = [r for r in results if r.get("server") == name and r.get("tag") == tg]
            if not rs:
                continue
            entry = {"ok": all(r.get("ok") for r in rs), "flags": sorted({f for r in rs for f in flags(r)})}
            for key, path, _, _ in metrics:
                entry[key] = stats([get(r, path) for r in rs])
            if tg.startswith("S2"):
                entry["drops_total"] = sum(r.get("drops") or 0 for r in rs)
            summary[name][tg] = entry
    return summary


def med(summary, server, tg, key):
    return (((summary.get(server) or {}).get(tg) or {}).get(key) or {}).get("median")


def targets(summary):
    out = []

    def add(name, value, goal, met, note=""):
        out.append({"target": name, "value": value, "goal": goal, "met": met, "note": note})

    t = "tether"
    v = med(summary, t, "S1b", "echoes_per_cpu_s")
    s = med(summary, "socketioxide", "S1b", "echoes_per_cpu_s")
    if v is not None:
        add("S1b echoes per server-CPU-s", v, TARGET_S1B_PER_CPU, v >= TARGET_S1B_PER_CPU,
            f"{100 * (v / TARGET_S1B_PER_CPU - 1):+.0f} %")
        if s:
            add("S1b vs socketioxide", v / s, TARGET_S1B_VS_SIO, v / s >= TARGET_S1B_VS_SIO)
    v = med(summary, t, "S1a", "p50_us")
    if v is not None:
        add("S1a p50 latency (us)", v, TARGET_S1A_P50_US, v <= TARGET_S1A_P50_US,
            f"{100 * (v / TARGET_S1A_P50_US - 1):+.0f} %")
    v = med(summary, t, "S2-10000", "deliveries_per_cpu_s")
    s = med(summary, "socketioxide", "S2-10000", "deliveries_per_cpu_s")
    if v is not None:
        add("S2 10k deliveries per server-CPU-s", v, TARGET_S2_PER_CPU, v >= TARGET_S2_PER_CPU,
            f"{100 * (v / TARGET_S2_PER_CPU - 1):+.0f} %")
        if s:
            add("S2 10k vs socketioxide", v / s, TARGET_S2_VS_SIO, v / s >= TARGET_S2_VS_SIO)
        drops = sum(((summary[t].get(f"S2-{n}") or {}).get("drops_total") or 0) for n in (1000, 5000, 10000))
        add("S2 drops", drops, 0, drops == 0)
    v = med(summary, t, "S3", "bytes_per_conn")
    if v is not None:
        add("S3 bytes per idle connection", v, TARGET_S3_BYTES, v <= TARGET_S3_BYTES,
            f"{100 * (v / TARGET_S3_BYTES - 1):+.0f} %")
    c = med(summary, "tether-cabi", "S1b", "echoes_per_cpu_s")
    r = med(summary, t, "S1b", "echoes_per_cpu_s")
    if c is not None and r:
        add("S4 C ABI vs Rust handler (S1b)", c / r, 1 - TARGET_S4_CABI_MAX_LOSS, c / r >= 1 - TARGET_S4_CABI_MAX_LOSS)
    else:
        add("S4 C ABI vs Rust handler", None, 1 - TARGET_S4_CABI_MAX_LOSS, None, "TODO: no C ABI bench server yet")
    p = med(summary, "tether-python", "S1b", "echoes_per_cpu_s")
    q = med(summary, "python", "S1b", "echoes_per_cpu_s")
    if p is not None and q:
        add("S4 Python binding vs python-socketio (S1b)", p / q, TARGET_S4_PY_VS_PYTHON, p / q >= TARGET_S4_PY_VS_PYTHON)
    else:
        add("S4 Python binding vs python-socketio", None, TARGET_S4_PY_VS_PYTHON, None, "not in this run (bench/run.sh builds bindings/python; see bench/peers/tether_py)")
    return out


# ---- markdown -----------------------------------------------------------------------------


def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "B":
        return f"{v / 1000:.1f} KB"
    if unit == "KiB":
        return f"{v / 1024:.1f} MiB"
    if unit == "":
        if isinstance(v, float) and v < 1:
            return f"{100 * v:.1f} %"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}".rstrip("0").rstrip(".")
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "us":
        return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"
    return f"{v:,.0f}"


def cell(entry, key, unit):
    st = (entry or {}).get(key)
    if not st:
        return "-"
    if st["n"] > 1 and st["min"] != st["max"]:
        return f"{fmt(st['median'], unit)} ({fmt(st['min'], unit)}–{fmt(st['max'], unit)})"
    return fmt(st["median"], unit)


ROWS = [
    ("S1a echo 1 client: p50 latency (µs)", "S1a", "p50_us", "us", False),
    ("S1a p99 (µs)", "S1a", "p99_us", "us", False),
    ("S1a p99.9 (µs)", "S1a", "p999_us", "us", False),
    ("S1b echo 100 clients: echoes / server-CPU-s", "S1b", "echoes_per_cpu_s", "/", True),
    ("S1b echoes / s (wall)", "S1b", "echoes_per_s", "/", True),
    ("S1b kernel share of the server's CPU", "S1b", "sys_share", "", False),
    ("S2 1k receivers: deliveries / server-CPU-s", "S2-1000", "deliveries_per_cpu_s", "/", True),
    ("S2 1k deliveries / s (wall)", "S2-1000", "deliveries_per_s", "/", True),
    ("S2 1k first→last per round (µs)", "S2-1000", "first_to_last_us", "us", False),
    ("S2 5k receivers: deliveries / server-CPU-s", "S2-5000", "deliveries_per_cpu_s", "/", True),
    ("S2 5k deliveries / s (wall)", "S2-5000", "deliveries_per_s", "/", True),
    ("S2 5k first→last per round (µs)", "S2-5000", "first_to_last_us", "us", False),
    ("S2 10k receivers: deliveries / server-CPU-s", "S2-10000", "deliveries_per_cpu_s", "/", True),
    ("S2 10k deliveries / s (wall)", "S2-10000", "deliveries_per_s", "/", True),
    ("S2 10k first→last per round (µs)", "S2-10000", "first_to_last_us", "us", False),
    ("S2 10k kernel share of the server's CPU", "S2-10000", "sys_share", "", False),
    ("S3 idle connections: RSS per connection", "S3", "bytes_per_conn", "B", False),
    ("S3 idle CPU: µs per heartbeat (hold window CPU / pings)", "S3", "idle_cpu_us_per_ping", "us", False),
    ("S3 idle CPU at steady state (share of a core)", "S3", "idle_core_share_steady", "", False),
    ("S3 connect: server CPU µs per connection", "S3", "connect_cpu_us_per_conn", "us", False),
    ("S3 after all left: RSS above baseline", "S3-leave", "retained_kib", "KiB", False),
]


def markdown(doc):
    servers = doc["servers"]
    s = doc["summary"]
    lines = [f"# tether benchmarks, {doc['date']}", ""]
    m = doc["machine"]
    lines.append(f"{m['cpus']} cores ({m['cpu_model']}), kernel {m['kernel']}; server on core {SERVER_CORE}, "
                 f"load generator on core {GEN_CORE}; single-threaded servers; {doc['reps']} repetitions, "
                 f"interleaved; medians (min–max). Total {doc['elapsed_s']:.0f} s.")
    lines.append("")
    lines.append("Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()) + ".")
    lines.append("")
    head = "| scenario | " + " | ".join(servers) + " |"
    lines += [head, "|" + "---|" * (len(servers) + 1)]
    for title, tg, key, unit, _ in ROWS:
        if not any((s.get(n) or {}).get(tg) for n in servers):
            continue
        lines.append(f"| {title} | " + " | ".join(cell((s.get(n) or {}).get(tg), key, unit) for n in servers) + " |")
    drops = {n: sum(((s.get(n) or {}).get(f"S2-{k}") or {}).get("drops_total") or 0 for k in (1000, 5000, 10000)) for n in servers}
    has_s2 = {n: any((s.get(n) or {}).get(f"S2-{k}") for k in (1000, 5000, 10000)) for n in servers}
    lines.append("| S2 drops (all rounds) | " + " | ".join(str(drops[n]) if has_s2[n] else "-" for n in servers) + " |")
    lines.append("")
    # Ratios.
    others = [n for n in servers if n != "tether" and not n.startswith("tether-") and n != "rawws"]
    if "tether" in servers and others:
        lines += ["## tether vs the others (medians; > 1 = tether ahead)", ""]
        lines += ["| scenario | " + " | ".join(f"vs {o}" for o in others) + " |", "|" + "---|" * (len(others) + 1)]
        for title, tg, key, unit, higher in ROWS:
            if key in ("echoes_per_s", "deliveries_per_s", "idle_core_share", "sys_share") or tg == "S3-leave":
                continue
            t = med(s, "tether", tg, key)
            if t is None:
                continue
            row = []
            for o in others:
                v = med(s, o, tg, key)
                if v is None or not t or not v:
                    row.append("-")
                else:
                    row.append(f"{(t / v) if higher else (v / t):.2f}×")
            lines.append(f"| {title} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Targets (issue 9)", "", "| target | tether | goal | met |", "|---|---|---|---|"]
    for t in doc["targets"]:
        val = t["value"]
        shown = "-" if val is None else (f"{val:.2f}" if isinstance(val, float) and val < 100 else f"{val:,.0f}")
        met = {True: "yes", False: "**no**", None: "todo"}[t["met"]]
        goal = t["goal"]
        lines.append(f"| {t['target']} | {shown} {t['note']} | {goal:,} | {met} |")
    lines.append("")
    noisy = [f"{r['server']} rep {r['rep']} {r['tag']}" for r in doc["runs"] if "noisy" in flags(r)]
    genb = [f"{r['server']} rep {r['rep']} {r['tag']}" for r in doc["runs"] if "generator-bound" in flags(r)]
    fails = [f"{r['server']} rep {r['rep']} {r['tag']}: {'; '.join(r.get('problems') or [])}" for r in doc["runs"] if not r.get("ok")]
    lines += ["## Noise and validity", ""]
    lines.append(f"- Mean steal over measured windows: {100 * doc['noise']['steal_mean']:.1f} %; mean foreign load on the "
                 f"server core: {100 * doc['noise']['foreign_server_mean']:.1f} %, on the generator core: "
                 f"{100 * doc['noise']['foreign_gen_mean']:.1f} % (other processes, and softirq work of the loopback traffic).")
    lines.append(f"- Noisy windows (steal > 5 % or foreign load on the server core > 15 %): {len(noisy)} of {doc['noise']['windows']}"
                 + (f" ({', '.join(noisy[:12])}{', …' if len(noisy) > 12 else ''})" if noisy else "") + ".")
    lines.append(f"- Generator-bound windows (loadgen ≥ 95 % of its core): {len(genb)}"
                 + (f" ({', '.join(genb[:12])})" if genb else "") + ".")
    lines.append(f"- Correctness failures: {len(fails)}" + ("" if not fails else ":") )
    for f in fails[:20]:
        lines.append(f"  - {f}")
    lines.append("")
    lines.append("Per-CPU-second figures stay comparable under foreign load (they count the server's own CPU "
                 "time); wall-clock rates and latencies do not. `rawws` is the floor of the echo and broadcast "
                 "scenarios: a raw WebSocket server on tokio-tungstenite without Socket.IO (a broadcast is one `write` "
                 "per receiver, straight from the reading task). S4: `tether-cabi` is bench/peers/c/echo_server.c "
                 "through the C ABI (built by run.sh); `tether-python` is bench/peers/tether_py/echo_server.py on the "
                 "release-built Python binding (TETHER_BENCH_PY_CMD overrides it).")
    return "\n".join(lines) + "\n"


# ---- main ---------------------------------------------------------------------------------


def versions():
    v = {}
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        v["tether"] = rev + ("+dirty" if dirty else "")
    except OSError:
        pass
    try:
        lock = open(os.path.join(BENCH, "Cargo.lock")).read().split("[[package]]")
        for pkg in lock:
            if 'name = "socketioxide"' in pkg:
                v["socketioxide"] = pkg.split('version = "')[1].split('"')[0]
    except OSError:
        pass
    try:
        v["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        v["socket.io"] = json.load(open(os.path.join(BENCH, "peers", "node", "node_modules", "socket.io", "package.json")))["version"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        py = os.path.join(BENCH, ".venv", "bin", "python")
        v["python-socketio"] = subprocess.run(
            [py, "-c", "import importlib.metadata as m, sys; print(m.version('python-socketio'), 'on aiohttp', m.version('aiohttp'), '+ uvloop', m.version('uvloop'), '/ Python', sys.version.split()[0])"],
            capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return v


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release()}


def noise(results):
    ws = [r["cpu"] for r in results if isinstance(r.get("cpu"), dict) and r["cpu"].get("wall_s")]
    mean = lambda k: statistics.mean([w.get(k) or 0 for w in ws]) if ws else 0.0
    return {"windows": len(ws), "steal_mean": mean("steal_share"),
            "foreign_server_mean": mean("foreign_share_server_core"), "foreign_gen_mean": mean("foreign_share_gen_core")}


def smoke(args):
    servers = {"tether": [os.environ["TETHER_BENCH_SERVER"], "0", "1"]}
    results, elapsed = run_all(args, servers, smoke_plan(), 1)
    checks = [
        ("server starts", lambda r: r["tag"] == "start"),
        ("S1a echo, 1 client: connected, every echo matched", lambda r: r["tag"] == "S1a"),
        ("S1b echo, 10 clients: connected, every echo matched", lambda r: r["tag"] == "S1b"),
        ("S3 200 idle connections: all connected and kept", lambda r: r["tag"] == "S3"),
        ("S2 broadcast to 50: every delivery, no drop", lambda r: r["tag"].startswith("S2")),
        ("leave: server still measurable", lambda r: r["tag"] == "S3-leave"),
    ]
    passed = failed = 0
    for title, pred in checks:
        rs = [r for r in results if pred(r)]
        if title == "server starts":
            ok = not rs  # a start failure is recorded as a result
        else:
            ok = bool(rs) and all(r.get("ok") for r in rs)
        print(f"{'ok  ' if ok else 'FAIL'} {title}" + ("" if ok else f": {'; '.join(p for r in rs for p in (r.get('problems') or [])) or 'no result'}"))
        passed += ok
        failed += not ok
    print(f"smoke run took {elapsed:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tether only, small sizes, correctness only")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--servers", help="comma-separated subset (default: all)")
    ap.add_argument("--quick", action="store_true", help="1k connections and no heartbeat wait (trying the harness)")
    ap.add_argument("--nice", type=int, default=0, help="run server and generator with this niceness (e.g. -10, as root)")
    ap.add_argument("--out", default=os.path.join(BENCH, "results"), help="results folder")
    ap.add_argument("--report", metavar="JSON", help="only rewrite the markdown of an earlier run's JSON")
    args = ap.parse_args()
    if args.report:
        doc = json.load(open(args.report))
        doc["targets"] = targets(doc["summary"])
        md = markdown(doc)
        with open(args.report[: -len(".json")] + ".md", "w") as f:
            f.write(md)
        print(md)
        return 0
    os.makedirs(os.path.join(BENCH, "target"), exist_ok=True)
    if args.smoke:
        return smoke(args)
    servers = server_commands(args)
    plan = full_plan(args.quick)
    log(f"servers: {', '.join(servers)}; {args.reps} repetitions")
    results, elapsed = run_all(args, servers, plan, args.reps)
    now = datetime.datetime.now()
    summary = summarize(results, servers)
    doc = {
        "date": now.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "versions": versions(),
        "reps": args.reps,
        "quick": args.quick,
        "nice": args.nice,
        "servers": list(servers),
        "elapsed_s": elapsed,
        "noise": noise(results),
        "summary": summary,
        "targets": targets(summary),
        "runs": results,
    }
    os.makedirs(args.out, exist_ok=True)
    base = os.path.join(args.out, now.strftime("%Y-%m-%d") + ("-quick" if args.quick else ""))
    path, n = base, 1
    while os.path.exists(path + ".json"):
        n += 1
        path = f"{base}-{n}"
    with open(path + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(path + ".md", "w") as f:
        f.write(md)
    print(md)
    log(f"wrote {path}.json and {path}.md ({elapsed:.0f}s)")
    bad = [r for r in results if not r.get("ok")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

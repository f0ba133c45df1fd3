#!/usr/bin/env python3
"""GripProxy vs Pushpin benchmark driver (see bench/README.md).

Starts both servers side by side on private loopback ports, measures each in turn
with the C load generator (loadgen.c, compiled by bench/run), writes
bench/results/<date>.md and prints a summary table of ratios GripProxy / Pushpin.

Python standard library only.
"""
from __future__ import annotations

import argparse
import array
import datetime
import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
PER_GEN_MAX = 4000  # connections per generator process (fd limit 20,000; ephemeral ports per source address)
MAX_CONNECTIONS = 19000  # every server process has the same 20,000 open-file hard limit


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- /proc


def read_stat(pid: int):
    """(comm, ppid, cpu seconds) or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1 : s.rindex(")")]
    fields = s[s.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime = int(fields[11]), int(fields[12])
    return comm, ppid, (utime + stime) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine (all cores) spent busy, from /proc/stat: user, nice, system, irq,
    softirq. Steal (time the hypervisor gave to someone else) is left out; see machine_steal_s."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


def machine_steal_s() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    return v[7] / CLK_TCK


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = read_stat(int(name))
        if st:
            children.setdefault(st[1], []).append(int(name))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def proc_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        return os.path.basename(argv0) or (read_stat(pid) or ("?",))[0]
    except OSError:
        return "?"


# --------------------------------------------------------------------------- servers


def port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR: TIME_WAIT leftovers from an earlier run do not count, a listener does
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def wait_listening(port: int, timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Server:
    def __init__(self, name: str, argv: list[str], client_port: int, publish_port: int, workdir: str, env=None):
        self.name, self.argv = name, argv
        self.client_port, self.publish_port = client_port, publish_port
        self.workdir = workdir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.known_pids: set[int] = set()
        self.stop_info = ""

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        out = open(os.path.join(self.workdir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=raise_nofile, env=self.env,
        )
        if not (wait_listening(self.client_port, 30) and wait_listening(self.publish_port, 30)):
            self.stop()
            raise RuntimeError(f"{self.name} did not start listening; see {self.workdir}/server.log")
        time.sleep(1.0)  # let every service of Pushpin finish starting
        self.known_pids.update(self.pids())

    def pids(self) -> list[int]:
        if not self.proc or self.proc.poll() is not None:
            return []
        return descendants(self.proc.pid)

    def alive(self) -> bool:
        return bool(self.proc and self.proc.poll() is None)

    def snapshot(self) -> dict[int, dict]:
        """Per process: name, rss_kb, cpu_s."""
        snap = {}
        for pid in self.pids():
            st = read_stat(pid)
            if st:
                snap[pid] = {"name": proc_name(pid), "rss_kb": rss_kb(pid), "cpu_s": st[2]}
        self.known_pids.update(snap)
        return snap

    def stop(self) -> None:
        if not self.proc:
            return
        if self.proc.poll() is None:
            self.known_pids.update(self.pids())
            t0 = time.time()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
                self.stop_info = f"exited {time.time() - t0:.2f} s after SIGTERM, status {self.proc.returncode}"
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.stop_info = "still running 15 s after SIGTERM: killed"
        else:
            self.stop_info = f"had already exited, status {self.proc.returncode}"
        # Pushpin's services are our grandchildren: make sure none outlived the runner.
        for pid in sorted(self.known_pids - {self.proc.pid}):
            st = read_stat(pid)
            # only our own orphans: a service name, re-parented (ppid 1) or still under our runner
            if st and st[0] in ("condure", "zurl", "pushpin-proxy", "pushpin-handler") and st[1] in (1, self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def total(snap: dict, key: str) -> float:
    return sum(p[key] for p in snap.values())


# --------------------------------------------------------------------------- generator


class AddressPool:
    """Hands out source addresses 127.0.0.2, .3, ... so that no two generator processes
    share an address during a run (each gets its own ~28,000 ephemeral ports)."""

    def __init__(self):
        self.n = 0

    def next(self) -> str:
        self.n += 1
        k = self.n + 1  # start at 127.0.0.2
        return f"127.0.{k // 250}.{k % 250 + 2}" if k >= 250 else f"127.0.0.{k}"


class Holders:
    """A group of `loadgen hold` processes holding `count` streams on one path."""

    def __init__(self, loadgen: str, target_port: int, count: int, path: str, pool: AddressPool,
                 workdir: str, tag: str, max_pending_total: int = 64):
        ngen = max(1, math.ceil(count / PER_GEN_MAX))
        per = [count // ngen + (1 if i < count % ngen else 0) for i in range(ngen)]
        self.procs: list[subprocess.Popen] = []
        self.srcs = []
        self.count = count
        pending = max(8, max_pending_total // ngen)
        for i, n in enumerate(per):
            src = pool.next()
            self.srcs.append(src)
            errf = open(os.path.join(workdir, f"loadgen-{tag}-{i}.err"), "wb")
            p = subprocess.Popen(
                [loadgen, "hold", "--target", f"127.0.0.1:{target_port}", "--src", src, "--count", str(n),
                 "--path", path, "--max-pending", str(pending), "--ready-timeout", "180",
                 "--lat-file", os.path.join(workdir, f"lat-{tag}-{i}"), "--max-seconds", "1800"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf, text=True, bufsize=1,
                preexec_fn=raise_nofile,
            )
            self.procs.append(p)

    def wait_ready(self) -> dict:
        agg = {"ok": 0, "failed": 0, "retried": 0, "ms": 0.0, "cpu_s": 0.0}
        for p in self.procs:
            line = p.stdout.readline()
            if not line.startswith("READY "):
                raise RuntimeError(f"load generator did not get ready: {line!r}")
            r = json.loads(line[6:])
            for k in ("ok", "failed", "retried", "cpu_s"):
                agg[k] += r[k]
            agg["ms"] = max(agg["ms"], r["ms"])
        return agg

    def cmd(self, line: str) -> None:
        for p in self.procs:
            p.stdin.write(line + "\n")
            p.stdin.flush()

    def reset(self, track: int = 0) -> None:
        self.cmd(f"RESET {track}")
        for p in self.procs:
            if p.stdout.readline().strip() != "OK":
                raise RuntimeError("load generator did not acknowledge RESET")

    def wait(self, n: int, timeout_ms: int, idle_ms: int) -> dict:
        """Sends WAIT to every process, merges their reports and latencies."""
        self.cmd(f"WAIT {n} {timeout_ms} {idle_ms}")
        reps = []
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("load generator exited")
            reps.append(json.loads(line))
        lats = array.array("d")
        for r in reps:
            try:
                with open(r["lat_file"], "rb") as f:
                    lats.frombytes(f.read())
                os.unlink(r["lat_file"])
            except OSError:
                pass
        m = {k: sum(r[k] for r in reps) for k in (
            "live", "complete", "deliveries", "missing", "lost_tracked", "dups", "disorder",
            "order_mismatch", "closed_by_server", "foreign_lines", "cpu_s")}
        firsts = [r["first_ns"] for r in reps if r["first_ns"]]
        lasts = [r["last_ns"] for r in reps if r["last_ns"]]
        m["first_ns"] = min(firsts) if firsts else 0
        m["last_ns"] = max(lasts) if lasts else 0
        m["gen_cpu"] = [r["cpu_s"] for r in reps]
        # order_mismatch is per process (each compares with its own first connection); good enough
        # as a flag, and exact when one process holds all subscribers (the throughput test).
        m["lat"] = sorted(lats)
        return m

    def quit(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write("QUIT\n")
                p.stdin.flush()
                p.stdin.close()
            except OSError:
                pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cpu_now(self) -> float:
        t = 0.0
        for p in self.procs:
            st = read_stat(p.pid)
            if st:
                t += st[2]
        return t


def publish(loadgen: str, port: int, channel: str, count: int, concurrency: int, first_seq: int,
            src: str, pad: int = 0) -> dict:
    out = subprocess.run(
        [loadgen, "pub", "--target", f"127.0.0.1:{port}", "--src", src, "--channel", channel,
         "--count", str(count), "--concurrency", str(concurrency), "--first-seq", str(first_seq),
         "--pad", str(pad), "--max-seconds", "600"],
        capture_output=True, text=True, timeout=660,
    )
    if out.stderr.strip():
        log("publisher: " + out.stderr.strip().replace("\n", " | ")[:300])
    return json.loads(out.stdout.strip().splitlines()[-1])


def pctl(sorted_vals, p: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(round(p * (len(sorted_vals) - 1))))]


def median(xs):
    xs = sorted(x for x in xs if x == x)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


# --------------------------------------------------------------------------- measurements


def settle_rss(server: Server, seconds: float = 2.0, samples: int = 3) -> dict:
    time.sleep(seconds)
    snap = {}
    for _ in range(samples):
        snap = server.snapshot()
        time.sleep(0.5)
    return snap


def measure(server: Server, args, loadgen: str, pool: AddressPool, workdir: str) -> dict:
    res: dict = {"name": server.name}
    N = args.connections
    pp = server.publish_port

    # warm-up: a few holds and one publish, so first-use allocations are not counted per connection
    log(f"{server.name}: warm-up")
    w = Holders(loadgen, server.client_port, 50, "/stream?channel=warmup", pool, workdir, f"{server.name}-warm")
    r = w.wait_ready()
    w.reset(0)
    publish(loadgen, pp, "warmup", 3, 1, 0, pool.next())
    wr = w.wait(3, 10000, 5000)
    w.quit()
    res["warmup"] = {"ready": r, "complete": wr["complete"], "live": wr["live"]}
    if wr["complete"] != 50:
        log(f"{server.name}: WARNING warm-up: only {wr['complete']}/50 streams got all 3 messages")

    # (a) memory per idle held connection
    before = settle_rss(server, 1.5)
    log(f"{server.name}: opening {N} stream holds")
    t0 = time.time()
    cpu0 = total(server.snapshot(), "cpu_s")
    H = Holders(loadgen, server.client_port, N, "/stream?channel=fan", pool, workdir, f"{server.name}-fan")
    ready = H.wait_ready()
    open_s = time.time() - t0
    cpu_open = total(server.snapshot(), "cpu_s") - cpu0
    after = settle_rss(server, 2.0)
    held = ready["ok"]
    # idle cost of the held streams: server CPU over a quiet window
    i0, it0 = total(server.snapshot(), "cpu_s"), time.time()
    time.sleep(args.idle_seconds)
    idle_cpu_pct = 100 * (total(server.snapshot(), "cpu_s") - i0) / (time.time() - it0)
    per_proc = {}
    for pid, p in after.items():
        b = before.get(pid, {"rss_kb": 0})
        per_proc[p["name"]] = {"before_kb": b["rss_kb"], "after_kb": p["rss_kb"], "delta_kb": p["rss_kb"] - b["rss_kb"]}
    delta = total(after, "rss_kb") - total(before, "rss_kb")
    res["memory"] = {
        "held": held, "failed": ready["failed"], "retried_opens": ready["retried"],
        "open_s": open_s, "opens_per_s": held / open_s if open_s else 0, "server_cpu_open_s": cpu_open,
        "rss_before_kb": total(before, "rss_kb"), "rss_after_kb": total(after, "rss_kb"),
        "kb_per_conn": delta / held if held else float("nan"), "per_process": per_proc,
        "dominant": max(per_proc.items(), key=lambda kv: kv[1]["delta_kb"])[0] if per_proc else "",
        "idle_cpu_pct": idle_cpu_pct,
    }
    log(f"{server.name}: {held} held ({ready['failed']} failed, {ready['retried']} re-opened) in {open_s:.1f} s; "
        f"{res['memory']['kb_per_conn']:.2f} KB/conn")

    # (b) fan-out latency on N held connections
    H.reset(0)
    rounds = []
    time.sleep(1.0)
    for i in range(args.rounds):
        s0 = server.snapshot()
        g0 = H.cpu_now()
        b0, st0 = machine_busy_s(), machine_steal_s()
        w0 = time.time()
        pub = publish(loadgen, pp, "fan", 1, 1, i, pool.next(), args.pad)
        m = H.wait(1, max(30000, N * 4), 10000)
        wall = time.time() - w0
        s1 = server.snapshot()
        g1 = H.cpu_now()
        b1, st1 = machine_busy_s(), machine_steal_s()
        this = m["lat"]  # RESET after every round: counters and latencies are this round's
        rounds.append({
            "live": m["live"], "complete": m["complete"], "missing": m["missing"],
            "closed_by_server": m["closed_by_server"], "disorder": m["disorder"],
            "p50_ms": pctl(this, 0.5) / 1000, "p99_ms": pctl(this, 0.99) / 1000, "max_ms": (this[-1] if this else float("nan")) / 1000,
            "total_ms": (m["last_ns"] - pub["first_send_ns"]) / 1e6 if m["last_ns"] else float("nan"),
            "publish_rtt_ms": pub["rtt_us_p50"] / 1000, "publish_ok": pub["ok"],
            "server_cpu_s": total(s1, "cpu_s") - total(s0, "cpu_s"),
            "gen_cpu_s": g1 - g0, "pub_cpu_s": pub["cpu_s"], "machine_busy_s": b1 - b0, "steal_s": st1 - st0, "wall_s": wall,
        })
        H.reset(0)
        rounds[-1]["deliveries"] = len(this)
        time.sleep(args.pause)
        log(f"{server.name}: fan-out round {i + 1}: {rounds[-1]['complete']}/{rounds[-1]['live']} got it, "
            f"p50 {rounds[-1]['p50_ms']:.1f} ms, max {rounds[-1]['max_ms']:.1f} ms")
    res["fanout"] = {"connections": held, "rounds": rounds}
    c0 = total(server.snapshot(), "cpu_s")
    H.quit()
    closed = settle_rss(server, 3.0)
    res["memory"]["rss_after_close_kb"] = total(closed, "rss_kb")
    res["memory"]["server_cpu_close_s"] = total(closed, "cpu_s") - c0

    # (c) publish throughput and latency with a few subscribers
    S = args.subscribers
    T = Holders(loadgen, server.client_port, S, "/stream?channel=tp", pool, workdir, f"{server.name}-tp")
    T.wait_ready()
    time.sleep(1.0)
    tp = {}
    for mode, count, conc in (("sequential", args.seq_messages, 1), ("concurrent", args.conc_messages, args.concurrency)):
        T.reset(count)
        s0 = server.snapshot()
        g0 = T.cpu_now()
        b0, st0 = machine_busy_s(), machine_steal_s()
        w0 = time.time()
        pub = publish(loadgen, pp, "tp", count, conc, 0, pool.next(), args.pad)
        m = T.wait(count, 120000, 10000)
        wall = time.time() - w0
        s1 = server.snapshot()
        g1 = T.cpu_now()
        b1, st1 = machine_busy_s(), machine_steal_s()
        span_pub = (pub["last_ack_ns"] - pub["first_send_ns"]) / 1e9
        span_del = (m["last_ns"] - pub["first_send_ns"]) / 1e9 if m["last_ns"] else float("nan")
        expected = count * m["live"]
        tp[mode] = {
            "messages": count, "concurrency": conc, "subscribers": m["live"],
            "publish_ok": pub["ok"], "publish_non200": pub["non200"], "publish_errors": pub["errors"],
            "publishes_per_s": pub["ok"] / span_pub if span_pub > 0 else float("nan"),
            "deliveries": m["deliveries"], "expected_deliveries": expected,
            "deliveries_per_s": m["deliveries"] / span_del if span_del > 0 else float("nan"),
            "lost": m["lost_tracked"], "dups": m["dups"], "disorder": m["disorder"],
            "order_mismatch": m["order_mismatch"], "closed_by_server": m["closed_by_server"],
            "publish_rtt_p50_ms": pub["rtt_us_p50"] / 1000, "publish_rtt_p99_ms": pub["rtt_us_p99"] / 1000,
            "lat_p50_ms": pctl(m["lat"], 0.5) / 1000, "lat_p99_ms": pctl(m["lat"], 0.99) / 1000,
            "lat_max_ms": (m["lat"][-1] if m["lat"] else float("nan")) / 1000,
            "server_cpu_s": total(s1, "cpu_s") - total(s0, "cpu_s"),
            "gen_cpu_s": g1 - g0, "pub_cpu_s": pub["cpu_s"], "machine_busy_s": b1 - b0, "steal_s": st1 - st0, "wall_s": wall,
        }
        log(f"{server.name}: {mode}: {tp[mode]['publishes_per_s']:.0f} publishes/s, "
            f"{tp[mode]['deliveries_per_s']:.0f} deliveries/s, lost {tp[mode]['lost']}, "
            f"disorder {tp[mode]['disorder']}")
        time.sleep(args.pause)
    T.quit()
    res["throughput"] = tp
    res["per_process_cpu_total_s"] = {p["name"]: p["cpu_s"] for p in server.snapshot().values()}
    return res


# --------------------------------------------------------------------------- report


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def ratio(a, b):
    try:
        if b == 0 or a != a or b != b:
            return float("nan")
        return a / b
    except TypeError:
        return float("nan")


def summary_rows(R: dict) -> list[tuple]:
    """(metric, gp, pp, better) with better = 'lower' or 'higher'."""
    g, p = R.get("gripproxy"), R.get("pushpin")
    rows = []

    def add(label, fn, better, nd=1):
        gv = fn(g) if g else float("nan")
        pv = fn(p) if p else float("nan")
        rows.append((label, gv, pv, better, nd))

    def fan(r, k):
        return median([x[k] for x in r["fanout"]["rounds"]])

    def cpu_per_delivery_fan(r):
        rs = r["fanout"]["rounds"]
        d = sum(x["deliveries"] for x in rs)
        return sum(x["server_cpu_s"] for x in rs) / d * 1e6 if d else float("nan")

    add("memory per held stream (KB)", lambda r: r["memory"]["kb_per_conn"], "lower", 2)
    add("stream opens per second", lambda r: r["memory"]["opens_per_s"], "higher", 0)
    add("server CPU per stream open (us)", lambda r: r["memory"]["server_cpu_open_s"] / r["memory"]["held"] * 1e6
        if r["memory"]["held"] else float("nan"), "lower", 0)
    add("idle CPU with the streams held (% of a core)", lambda r: r["memory"]["idle_cpu_pct"], "lower", 1)
    add("server CPU to close all streams (s)", lambda r: r["memory"]["server_cpu_close_s"], "lower", 2)
    add("fan-out p50 (ms)", lambda r: fan(r, "p50_ms"), "lower", 1)
    add("fan-out p99 (ms)", lambda r: fan(r, "p99_ms"), "lower", 1)
    add("fan-out total, publish to last delivery (ms)", lambda r: fan(r, "total_ms"), "lower", 1)
    add("fan-out server CPU per delivery (us)", cpu_per_delivery_fan, "lower", 1)
    for mode in ("sequential", "concurrent"):
        add(f"{mode} publishes per second", lambda r, m=mode: r["throughput"][m]["publishes_per_s"], "higher", 0)
        add(f"{mode} deliveries per second", lambda r, m=mode: r["throughput"][m]["deliveries_per_s"], "higher", 0)
        add(f"{mode} end-to-end latency p50 (ms)", lambda r, m=mode: r["throughput"][m]["lat_p50_ms"], "lower", 2)
        add(f"{mode} end-to-end latency p99 (ms)", lambda r, m=mode: r["throughput"][m]["lat_p99_ms"], "lower", 2)
        add(f"{mode} server CPU per delivery (us)",
            lambda r, m=mode: (r["throughput"][m]["server_cpu_s"] / r["throughput"][m]["deliveries"] * 1e6
                               if r["throughput"][m]["deliveries"] else float("nan")), "lower", 1)
        add(f"{mode} lost deliveries", lambda r, m=mode: r["throughput"][m]["expected_deliveries"] - r["throughput"][m]["deliveries"]
            + r["throughput"][m]["dups"], "lower", 0)
    return rows


def table(rows) -> str:
    out = ["| metric | GripProxy | Pushpin | GripProxy / Pushpin | better when |", "|---|---:|---:|---:|---|"]
    for label, gv, pv, better, nd in rows:
        out.append(f"| {label} | {fmt(gv, nd)} | {fmt(pv, nd)} | {fmt(ratio(gv, pv), 2)} | {better} |")
    return "\n".join(out)


def checks(R: dict, args) -> list[str]:
    """Anomalies worth a human's attention."""
    notes = []
    for name, r in R.items():
        m = r["memory"]
        if not r.get("server_alive_after", True):
            notes.append(f"{name}: the server process exited during the run.")
        lf = r.get("log_findings", {})
        if lf.get("count"):
            notes.append(f"{name}: {lf['count']} warning/error lines in its logs, e.g. "
                         + " | ".join(f"`{x}`" for x in lf["examples"][:3]))
        if m["failed"]:
            notes.append(f"{name}: {m['failed']} of {args.connections} stream holds could not be opened.")
        if m["retried_opens"]:
            notes.append(f"{name}: {m['retried_opens']} stream opens were refused or failed and were retried "
                         "(Pushpin answers 500 'Accept service unavailable.' to bursts).")
        for i, x in enumerate(r["fanout"]["rounds"]):
            if x["complete"] != x["live"] or x["missing"] or x["closed_by_server"]:
                notes.append(f"{name}: fan-out round {i + 1}: {x['live'] - x['complete']} of {x['live']} connections "
                             f"missed the message; {x['closed_by_server']} closed by the server.")
            if x["publish_ok"] != 1:
                notes.append(f"{name}: fan-out round {i + 1}: the publish was not answered 200.")
        for mode, t in r["throughput"].items():
            missing = t["expected_deliveries"] - t["deliveries"]
            if t["publish_ok"] != t["messages"]:
                notes.append(f"{name}: {mode}: {t['messages'] - t['publish_ok']} publishes not answered 200 "
                             f"({t['publish_non200']} non-200, {t['publish_errors']} connection errors).")
            if missing or t["lost"] or t["dups"]:
                notes.append(f"{name}: {mode}: {t['lost']} deliveries lost, {t['dups']} duplicated "
                             f"(of {t['expected_deliveries']}: {t['messages']} messages x {t['subscribers']} subscribers).")
            if mode == "sequential" and t["disorder"]:
                notes.append(f"{name}: sequential: {t['disorder']} deliveries out of publish order.")
            if t["order_mismatch"]:
                notes.append(f"{name}: {mode}: {t['order_mismatch']} subscribers saw a different order than the first subscriber.")
            if t["closed_by_server"]:
                notes.append(f"{name}: {mode}: {t['closed_by_server']} subscribers were closed by the server.")
    return notes


def log_findings(workdir: str, limit: int = 12) -> dict:
    """Warnings and errors in a server's logs: count, and the first few distinct lines (timestamps cut)."""
    import re
    count, seen = 0, []
    paths = [os.path.join(workdir, "server.log")]
    logdir = os.path.join(workdir, "log")
    if os.path.isdir(logdir):
        paths += [os.path.join(logdir, f) for f in sorted(os.listdir(logdir))]
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    low = line.lower()
                    if not any(w in low for w in ("error", "warn", "fatal", "crash", "[err]")):
                        continue
                    count += 1
                    key = re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.+]+", "", line.strip())
                    key = os.path.basename(path) + ": " + key[:200]
                    if key not in seen and len(seen) < limit:
                        seen.append(key)
        except OSError:
            pass
    return {"count": count, "examples": seen}


def cpu_split(label: str, gen: float, pub: float, server: float, machine: float, wall: float, steal: float) -> dict:
    other = max(0.0, machine - gen - pub - server)
    return {"phase": label, "gen": gen, "pub": pub, "server": server, "other": other, "wall": wall, "steal": steal,
            "busy_pct": 100 * machine / (wall * NCPU) if wall else float("nan"),
            "gen_pct_of_core": 100 * gen / wall if wall else float("nan")}


def generator_rows(R: dict) -> list[dict]:
    rows = []
    for name, r in R.items():
        rs = r["fanout"]["rounds"]
        rows.append(cpu_split(f"{name} fan-out", sum(x["gen_cpu_s"] for x in rs), sum(x["pub_cpu_s"] for x in rs),
                              sum(x["server_cpu_s"] for x in rs), sum(x["machine_busy_s"] for x in rs),
                              sum(x["wall_s"] for x in rs), sum(x["steal_s"] for x in rs)))
        for mode, t in r["throughput"].items():
            rows.append(cpu_split(f"{name} {mode}", t["gen_cpu_s"], t["pub_cpu_s"], t["server_cpu_s"],
                                  t["machine_busy_s"], t["wall_s"], t["steal_s"]))
    return rows


def generator_table(R: dict) -> str:
    out = ["| phase | wall (s) | server CPU (s) | subscriber generator CPU (s) | publisher CPU (s) | other processes CPU (s) | hypervisor steal (s) | machine busy | generator, % of one core |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for x in generator_rows(R):
        out.append(f"| {x['phase']} | {x['wall']:.2f} | {x['server']:.2f} | {x['gen']:.2f} | {x['pub']:.2f} | {x['other']:.2f} | "
                   f"{x['steal']:.2f} | {x['busy_pct']:.0f}% | {x['gen_pct_of_core']:.0f}% |")
    return "\n".join(out)


def write_report(path: str, R: dict, meta: dict, args) -> str:
    L = []
    L.append(f"# GripProxy vs Pushpin benchmark, {meta['date']}")
    L.append("")
    if meta["build"] != "release" and "gripproxy" in R:
        L.append(f"> **WARNING: the GripProxy binary is a {meta['build'].upper()} build. Its numbers are meaningless "
                 "for performance; only the method and the loss checks count.**")
        L.append("")
    L.append("## Setup")
    L.append("")
    for k in ("gripproxy_bin", "gripproxy_bin_mtime", "build", "gripproxy_version", "repo_commit", "pushpin_version", "pushpin_message_rate",
              "kernel", "cpus", "loadavg_1min_at_start", "connections", "quick", "command"):
        L.append(f"- {k}: `{meta[k]}`")
    L.append("")
    L.append("## Summary")
    L.append("")
    L.append(table(summary_rows(R)))
    L.append("")
    notes = checks(R, args)
    L.append("## Errors, losses and anomalies")
    L.append("")
    L.extend([f"- {n}" for n in notes] or ["- none"])
    L.append("")
    L.append("## Is the generator the bottleneck?")
    L.append("")
    L.append("CPU seconds per phase (utime+stime; \"other processes\" is the machine's busy time from /proc/stat "
             "(user+nice+system+irq+softirq) minus the server, generator and publisher: anything else running on the "
             f"{NCPU} cores, plus interrupt work not charged to a process; \"hypervisor steal\" is time the virtual CPUs "
             "were runnable but not run). The generator is not the bottleneck while it stays well under 100% of one core "
             "and the machine is not saturated; a large \"other\" or steal means something else was competing.")
    L.append("")
    L.append(generator_table(R))
    L.append("")
    for name, r in R.items():
        m = r["memory"]
        L.append(f"## {name}")
        L.append("")
        L.append(f"- shutdown: {r.get('stop', '?')}")
        L.append(f"- warning/error lines in its logs: {r.get('log_findings', {}).get('count', 0)}")
        L.extend(f"  - `{x}`" for x in r.get("log_findings", {}).get("examples", []))
        L.append("")
        L.append(f"### (a) memory, {m['held']:,} idle held streams")
        L.append("")
        L.append(f"- opened in {m['open_s']:.1f} s ({m['opens_per_s']:.0f}/s; {m['retried_opens']} opens retried, "
                 f"{m['failed']} failed); server CPU while opening {m['server_cpu_open_s']:.2f} s")
        L.append(f"- RSS before {m['rss_before_kb']:,} KB, with the streams held {m['rss_after_kb']:,} KB, "
                 f"3 s after closing them {m['rss_after_close_kb']:,} KB")
        L.append(f"- server CPU while the streams sat idle: {m['idle_cpu_pct']:.1f}% of one core "
                 f"(over {args.idle_seconds:.0f} s); to close them all: {m['server_cpu_close_s']:.2f} s "
                 "(measured over the 4.5 s after the generators closed them)")
        L.append(f"- **{m['kb_per_conn']:.2f} KB per held stream**; the largest share: {m['dominant']}")
        L.append("")
        L.append("| process | RSS before (KB) | RSS held (KB) | delta (KB) | KB per stream |")
        L.append("|---|---:|---:|---:|---:|")
        for pn, v in sorted(m["per_process"].items(), key=lambda kv: -kv[1]["delta_kb"]):
            L.append(f"| {pn} | {v['before_kb']:,} | {v['after_kb']:,} | {v['delta_kb']:,} | "
                     f"{v['delta_kb'] / m['held'] if m['held'] else float('nan'):.2f} |")
        L.append("")
        L.append(f"### (b) fan-out to {r['fanout']['connections']:,} streams, one message per round")
        L.append("")
        L.append("| round | got it | p50 (ms) | p99 (ms) | max (ms) | publish to last delivery (ms) | publish RTT (ms) | server CPU (s) | generator CPU (s) |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for i, x in enumerate(r["fanout"]["rounds"]):
            L.append(f"| {i + 1} | {x['complete']:,}/{x['live']:,} | {x['p50_ms']:.1f} | {x['p99_ms']:.1f} | {x['max_ms']:.1f} | "
                     f"{x['total_ms']:.1f} | {x['publish_rtt_ms']:.1f} | {x['server_cpu_s']:.2f} | {x['gen_cpu_s']:.2f} |")
        L.append("")
        L.append("### (c) publish throughput and end-to-end latency")
        L.append("")
        L.append("| mode | messages x subscribers | publishes/s | deliveries/s | lost | dups | out of publish order | order differs between subscribers | e2e p50 / p99 / max (ms) | publish RTT p50 / p99 (ms) | server CPU (s) |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|")
        for mode, t in r["throughput"].items():
            L.append(f"| {mode} (x{t['concurrency']}) | {t['messages']:,} x {t['subscribers']} | {t['publishes_per_s']:,.0f} | "
                     f"{t['deliveries_per_s']:,.0f} | {t['lost']:,} | {t['dups']:,} | "
                     f"{(format(t['disorder'], ',') if mode == 'sequential' else 'n/a')} | {t['order_mismatch']:,} | "
                     f"{t['lat_p50_ms']:.2f} / {t['lat_p99_ms']:.2f} / {t['lat_max_ms']:.1f} | "
                     f"{t['publish_rtt_p50_ms']:.2f} / {t['publish_rtt_p99_ms']:.2f} | {t['server_cpu_s']:.2f} |")
        L.append("")
        L.append("Out of publish order counts deliveries whose seq was not above the previous one on that connection; it is "
                 "meaningful only for sequential publishing (concurrent publishes have no defined order). Order differs "
                 "counts subscribers whose sequence differs from the first subscriber's (among those that got every message).")
        L.append("")
        L.append("(d) CPU: server CPU columns above are utime+stime from /proc/PID/stat summed over the server's processes "
                 f"(10 ms resolution). Totals since start per process: "
                 + ", ".join(f"{k} {v:.2f} s" for k, v in r["per_process_cpu_total_s"].items()))
        L.append("")
    L.append("## Raw results")
    L.append("")
    L.append("```json")
    L.append(json.dumps({"meta": meta, "results": R}, indent=1, default=str))
    L.append("```")
    text = "\n".join(L) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


# --------------------------------------------------------------------------- main


def snapshot_binary(src: str, dst: str) -> None:
    """Copies the binary once it has stopped changing, so that a rebuild during the run cannot break it."""
    import shutil
    for _ in range(90):
        a = os.stat(src)
        time.sleep(2)
        b = os.stat(src)
        if (a.st_mtime, a.st_size) == (b.st_mtime, b.st_size):
            shutil.copy2(src, dst)
            c = os.stat(src)
            if (c.st_mtime, c.st_size) == (b.st_mtime, b.st_size):
                return
        log(f"{src} is being rewritten (a build is running); waiting for it to settle")
    raise RuntimeError(f"{src} kept changing for 3 minutes")


def git_commit() -> str:
    try:
        c = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        return c + (" (working tree modified)" if dirty else "")
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description="GripProxy vs Pushpin benchmark (bench/README.md)")
    ap.add_argument("--connections", type=int, help=f"held streams for (a) and (b) (default 5000, --quick 2000; max {MAX_CONNECTIONS})")
    ap.add_argument("--quick", action="store_true", help="fewer connections, rounds and messages (about 2 minutes)")
    ap.add_argument("--rounds", type=int, help="fan-out rounds (default 5, --quick 3)")
    ap.add_argument("--subscribers", type=int, default=10, help="subscribers in the throughput test (default 10)")
    ap.add_argument("--seq-messages", type=int, help="sequential publishes (default 3000, --quick 500)")
    ap.add_argument("--conc-messages", type=int, help="concurrent publishes (default 20000, --quick 3000)")
    ap.add_argument("--concurrency", type=int, default=32, help="publishes in flight in the concurrent test (default 32)")
    ap.add_argument("--pad", type=int, default=0, help="extra bytes in each message (default 0: ~30-byte messages)")
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="quiet window for the idle CPU of held streams (default 3)")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between rounds")
    ap.add_argument("--base-port", type=int, default=17101, help="first of the ports used (odd; default 17101)")
    ap.add_argument("--targets", default="gripproxy,pushpin", help="comma list (default gripproxy,pushpin)")
    ap.add_argument("--pushpin-message-rate", default="",
                    help="Pushpin [handler] message_rate; default unset (unlimited). 2500 is the shipped value and caps fan-out at 2,500 deliveries/s")
    ap.add_argument("--out", help="report path (default bench/results/<date>.md)")
    ap.add_argument("--max-minutes", type=float, default=40, help="hard limit for the whole run")
    ap.add_argument("--loadgen", default=os.path.join(HERE, ".run", "loadgen"))
    args = ap.parse_args()

    args.connections = args.connections or (2000 if args.quick else 5000)
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.seq_messages = args.seq_messages or (500 if args.quick else 3000)
    args.conc_messages = args.conc_messages or (3000 if args.quick else 20000)
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        ap.error(f"--connections must be 1..{MAX_CONNECTIONS} (servers and generators have a 20,000 open-file hard limit)")
    if args.base_port % 2 == 0:
        ap.error("--base-port must be odd")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]

    # GripProxy binary
    gp_bin = os.environ.get("GRIPPROXY_BIN")
    if not gp_bin:
        rel = os.path.join(REPO, ".build", "release", "gripproxy")
        dbg = os.path.join(REPO, ".build", "debug", "gripproxy")
        gp_bin = rel if os.access(rel, os.X_OK) else dbg
    gp_real = os.path.realpath(gp_bin)
    build = "release" if "/release/" in gp_real else "debug" if "/debug/" in gp_real else "unknown (GRIPPROXY_BIN)"
    if "gripproxy" in targets:
        if not os.access(gp_bin, os.X_OK):
            log(f"GripProxy binary not found: {gp_bin} (swift build -c release, or set GRIPPROXY_BIN)")
            return 3
        if build != "release":
            bar = "!" * 78
            log(bar)
            log(f"WARNING: {gp_bin} is a {build} build. Its performance numbers are MEANINGLESS.")
            log("Build with `swift build -c release` (or set GRIPPROXY_BIN) for numbers that count.")
            log(bar)

    ports = {"gp_client": args.base_port, "gp_publish": args.base_port + 2,
             "pp_client": args.base_port + 10, "pp_publish": args.base_port + 12,
             "pp_pull": args.base_port + 14, "pp_sub": args.base_port + 16, "pp_cmd": args.base_port + 18}
    taken = [f"{k}={p}" for k, p in ports.items() if not port_free(p)]
    if taken:
        log("refusing to start: port(s) already in use: " + ", ".join(taken) + " (use --base-port)")
        return 4

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    workdir = os.path.join(HERE, ".run", stamp)
    os.makedirs(workdir, exist_ok=True)
    out_path = args.out or os.path.join(HERE, "results", f"{stamp}.md")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)

    servers: dict[str, Server] = {}
    gp_mtime = "?"
    if "gripproxy" in targets:
        os.makedirs(os.path.join(workdir, "bin"), exist_ok=True)
        gp_copy = os.path.join(workdir, "bin", "gripproxy")
        snapshot_binary(gp_bin, gp_copy)
        gp_mtime = datetime.datetime.fromtimestamp(os.stat(gp_copy).st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        gp_bin_run = gp_copy
    else:
        gp_bin_run = gp_bin
    gp_version = "?"
    try:
        gp_version = subprocess.run([gp_bin_run, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    pp_version = "?"
    try:
        pp_version = subprocess.run(["pushpin", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    if "gripproxy" in targets:
        servers["gripproxy"] = Server(
            "gripproxy",
            [gp_bin_run, "--port", f"127.0.0.1:{ports['gp_client']}", "--publish-port", f"127.0.0.1:{ports['gp_publish']}",
             "--route", "* test", "--loglevel", "1"],
            ports["gp_client"], ports["gp_publish"], os.path.join(workdir, "gripproxy"))
    if "pushpin" in targets:
        env = dict(os.environ, PUSHPIN_MESSAGE_RATE=str(args.pushpin_message_rate), PUSHPIN_LOG_LEVEL="1",
                   TMPDIR="/tmp")
        servers["pushpin"] = Server(
            "pushpin",
            [os.path.join(HERE, "targets", "pushpin.sh"), os.path.join(workdir, "pushpin"),
             str(ports["pp_client"]), str(ports["pp_publish"]), str(ports["pp_pull"]), str(ports["pp_sub"]), str(ports["pp_cmd"])],
            ports["pp_client"], ports["pp_publish"], os.path.join(workdir, "pushpin"), env=env)

    def on_alarm(signum, frame):
        raise TimeoutError(f"--max-minutes {args.max_minutes} reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.max_minutes * 60))
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))

    meta = {
        "date": stamp, "gripproxy_bin": gp_bin, "gripproxy_bin_mtime": gp_mtime, "build": build,
        "gripproxy_version": gp_version,
        "repo_commit": git_commit(), "pushpin_version": pp_version,
        "pushpin_message_rate": args.pushpin_message_rate or "unset (unlimited)",
        "kernel": os.uname().release, "cpus": NCPU, "connections": args.connections, "quick": args.quick,
        "command": " ".join(["bench/run"] + [a for i, a in enumerate(sys.argv[1:], 1)
                                              if a != "--loadgen" and sys.argv[i - 1] != "--loadgen"]),
    }
    load1 = float(open("/proc/loadavg").read().split()[0])
    meta["loadavg_1min_at_start"] = load1
    if load1 > 0.5:
        log(f"WARNING: load average is {load1:.2f} before the run: something else is using the CPUs, numbers will be noisy")
    R: dict = {}
    pool = AddressPool()
    try:
        for s in servers.values():
            log(f"starting {s.name} (client {s.client_port}, publish {s.publish_port})")
            s.start()
        for name, s in servers.items():
            R[name] = measure(s, args, args.loadgen, pool, workdir)
            R[name]["server_alive_after"] = s.alive()
            if not s.alive():
                log(f"WARNING: {name} exited during the run; see {s.workdir}/server.log")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        signal.alarm(0)
        for s in servers.values():
            s.stop()
        if gp_bin_run != gp_bin:
            try:
                os.unlink(gp_bin_run)
            except OSError:
                pass
    for name, s in servers.items():
        if name in R:
            R[name]["log_findings"] = log_findings(s.workdir)
            R[name]["stop"] = s.stop_info

    text = write_report(out_path, R, meta, args)
    print()
    if build != "release" and "gripproxy" in targets:
        print(f"WARNING: GripProxy binary is a {build} build: the ratios below are meaningless for performance.")
    print(f"GripProxy ({build}) vs Pushpin {pp_version}, {args.connections:,} held streams, "
          f"Pushpin message_rate {meta['pushpin_message_rate']}")
    print(table(summary_rows(R)))
    gr = generator_rows(R)
    if gr:
        worst = max(gr, key=lambda x: x["gen_pct_of_core"])
        other = sum(x["other"] for x in gr)
        steal = sum(x["steal"] for x in gr)
        mach = sum(x["wall"] for x in gr) * NCPU
        print(f"Load generator: at most {worst['gen_pct_of_core']:.0f}% of one core ({worst['phase']}); "
              f"other processes used {other:.1f} CPU-s and hypervisor steal {steal:.1f} s "
              f"of {mach:.1f} CPU-s available during the measured phases.")
    notes = checks(R, args)
    print()
    print("Errors, losses and anomalies:" if notes else "Errors, losses and anomalies: none")
    for n in notes:
        print(f"- {n}")
    print()
    print(f"report: {os.path.relpath(out_path, REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

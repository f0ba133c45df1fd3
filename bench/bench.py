#!/usr/bin/env python3
"""GripProxy beside Pushpin and beside the floor (a bare SwiftNIO server): the benchmark driver.

See bench/README.md. Starts each target on its own private loopback ports, one run at a time, measures it
with the C load generator (loadgen.c, compiled by bench/run), and writes bench/results/<date>/report.md
(ratios to Pushpin and to the floor), results.json and PNG charts. Prints a progress line on stderr and the
summary on stdout.

Python standard library only (matplotlib, when present, draws the charts).
"""
from __future__ import annotations

import argparse
import array
import datetime
import json
import math
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
PER_GEN_MAX = 4000  # clients per generator process (fd limit 20,000; ephemeral ports per source address)
MAX_CONNECTIONS = 19000  # every server process has the same 20,000 open-file hard limit
TARGETS = ("gripproxy", "pushpin", "pushpin-default", "floor")
MODES = ("stream", "ws", "longpoll")
FORMATS = {"stream": "stream", "ws": "ws", "longpoll": "response"}
T0 = time.time()


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
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_times() -> tuple[float, float, float]:
    """(busy, steal, total) CPU seconds of the whole machine from /proc/stat; busy = user, nice, system,
    irq, softirq."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK, v[7] / CLK_TCK, sum(v[:8]) / CLK_TCK


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
        if name.isdigit():
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


def busy_pct(seconds: float = 1.0) -> float:
    """How busy the machine was over `seconds`, in % of all its cores."""
    b0, _, t0 = machine_times()
    time.sleep(seconds)
    b1, _, t1 = machine_times()
    return 100 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0


def wait_machine_quiet(max_wait: float, limit_pct: float = 15.0) -> float:
    """Waits (bounded) until the machine is quiet; returns the last busy % seen."""
    end = time.time() + max_wait
    pct = busy_pct(1.0)
    while pct > limit_pct and time.time() < end:
        log(f"machine busy ({pct:.0f}% of {NCPU} cores, other programs): waiting for it to be quiet")
        time.sleep(2.0)
        pct = busy_pct(1.0)
    return pct


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
    """One target under test, plus (ws mode on gripproxy and Pushpin) the WebSocket-over-HTTP backend."""

    def __init__(self, name: str, argv: list[str], client_port: int, publish_port: int, workdir: str,
                 env=None, backend: list[str] | None = None, backend_port: int = 0):
        self.name, self.argv = name, argv
        self.client_port, self.publish_port = client_port, publish_port
        self.workdir, self.env = workdir, env
        self.backend_argv, self.backend_port = backend, backend_port
        self.proc: subprocess.Popen | None = None
        self.backend: subprocess.Popen | None = None
        self.known_pids: set[int] = set()
        self.stop_info = ""

    def start(self) -> None:
        os.makedirs(self.workdir, exist_ok=True)
        if self.backend_argv:
            self.backend = subprocess.Popen(
                self.backend_argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                stderr=open(os.path.join(self.workdir, "backend.log"), "wb"), start_new_session=True,
                preexec_fn=raise_nofile)
            if not wait_listening(self.backend_port, 15):
                self.stop()
                raise RuntimeError(f"the ws backend did not start; see {self.workdir}/backend.log")
        out = open(os.path.join(self.workdir, "server.log"), "wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=raise_nofile, env=self.env)
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
        """Per server process: name, rss_kb, cpu_s (the backend is not included)."""
        snap = {}
        for pid in self.pids():
            st = read_stat(pid)
            if st:
                snap[pid] = {"name": proc_name(pid), "rss_kb": rss_kb(pid), "cpu_s": st[2]}
        self.known_pids.update(snap)
        return snap

    def cpu(self) -> float:
        return sum(p["cpu_s"] for p in self.snapshot().values())

    def backend_cpu(self) -> float:
        if self.backend and self.backend.poll() is None:
            st = read_stat(self.backend.pid)
            return st[2] if st else 0.0
        return 0.0

    def backend_close_events(self) -> int | None:
        """CLOSE + DISCONNECT events the ws backend has received so far (it writes its counts on SIGUSR1)."""
        path = os.path.join(self.workdir, "backend-stats.json")
        if not (self.backend and self.backend.poll() is None and "--stats" in self.backend_argv):
            return None
        try:
            before = os.stat(path).st_mtime_ns
        except OSError:
            before = 0
        self.backend.send_signal(signal.SIGUSR1)
        for _ in range(50):
            time.sleep(0.05)
            try:
                if os.stat(path).st_mtime_ns != before:
                    time.sleep(0.05)
                    with open(path) as f:
                        st = json.load(f)
                    return st.get("CLOSE", 0) + st.get("DISCONNECT", 0)
            except (OSError, ValueError):
                continue
        return None

    def stop(self) -> None:
        if self.proc:
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
                if st and st[0] in ("condure", "zurl", "pushpin-proxy", "pushpin-handler") and st[1] in (1, self.proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
        if self.backend and self.backend.poll() is None:
            self.backend.send_signal(signal.SIGTERM)
            try:
                self.backend.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.backend.kill()
                self.backend.wait()


class PhaseProfile:
    """`BENCH_PERF_PHASE=fanout|burst|close|storm` (and `BENCH_PERF_OUT`, default /tmp/bench-<phase>.perf.data): records the
    server's main process with `perf record -g` during that phase only, to see where its time goes."""

    def __init__(self, phase: str, server: "Server"):
        self.proc = None
        if os.environ.get("BENCH_PERF_PHASE") != phase or not server.proc or not shutil.which("perf"):
            return
        out = os.environ.get("BENCH_PERF_OUT", f"/tmp/bench-{phase}.perf.data")
        self.proc = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "499", "-p", str(server.proc.pid), "-o", out],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait()


def total(snap: dict, key: str) -> float:
    return sum(p[key] for p in snap.values())


# --------------------------------------------------------------------------- generator


class AddressPool:
    """Hands out source addresses 127.0.0.2, .3, ... so that no two generator processes share an address
    during a run (each gets its own ~28,000 ephemeral ports)."""

    def __init__(self):
        self.n = 0

    def next(self) -> str:
        self.n += 1
        k = self.n + 1
        return f"127.{(k // 250) // 250 % 250}.{(k // 250) % 250}.{k % 250 + 2}"


def client_path(mode: str, channel: str) -> str:
    return {"stream": "/stream?channel=", "ws": "/ws?channel=", "longpoll": "/response?channel="}[mode] + channel


class Holders:
    """A group of `loadgen hold` processes holding `count` clients of one mode."""

    def __init__(self, loadgen: str, port: int, count: int, mode: str, channel: str, pool: AddressPool,
                 workdir: str, tag: str, max_pending_total: int = 64, spread: int = 0, retries: int = 5,
                 retry_delay_ms: int = 0, ready_timeout: int = 180):
        ngen = max(1, math.ceil(count / PER_GEN_MAX))
        self.per = [count // ngen + (1 if i < count % ngen else 0) for i in range(ngen)]
        self.bases, self.procs, self.count = [], [], count
        pending = max(8, max_pending_total // ngen)
        base = 0
        for i, n in enumerate(self.per):
            argv = [loadgen, "hold", "--target", f"127.0.0.1:{port}", "--src", pool.next(), "--count", str(n),
                    "--mode", mode, "--path", client_path(mode, channel), "--max-pending", str(pending),
                    "--retries", str(retries), "--retry-delay-ms", str(retry_delay_ms),
                    "--ready-timeout", str(ready_timeout), "--lat-file", os.path.join(workdir, f"lat-{tag}-{i}"),
                    "--max-seconds", "3600"]
            if spread:
                argv += ["--spread", str(spread), "--index-base", str(base)]
            self.bases.append(base)
            base += n
            errf = open(os.path.join(workdir, f"loadgen-{tag}-{i}.err"), "wb")
            self.procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf,
                                               text=True, bufsize=1, preexec_fn=raise_nofile))

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

    def send(self, lines: list[str]) -> None:
        for p, line in zip(self.procs, lines):
            p.stdin.write(line + "\n")
            p.stdin.flush()

    def reset(self, track: int = 0) -> None:
        self.send([f"RESET {track}"] * len(self.procs))
        for p in self.procs:
            if p.stdout.readline().strip() != "OK":
                raise RuntimeError("load generator did not acknowledge RESET")

    def wait(self, n: int, timeout_ms: int, idle_ms: int, totals: list[int] | None = None) -> dict:
        """WAIT (every client has n messages) or, with totals, WAITT (each process got its total); merges
        the reports and the latencies."""
        if totals is None:
            self.send([f"WAIT {n} {timeout_ms} {idle_ms}"] * len(self.procs))
        else:
            self.send([f"WAITT {t} {timeout_ms} {idle_ms}" for t in totals])
        return merge_reports(self.read_reports())

    def read_reports(self) -> list[dict]:
        """One JSON report line from each generator process (the answers to a WAIT or WAITT)."""
        reps = []
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("load generator exited")
            reps.append(json.loads(line))
        return reps

    def quit(self, wait: bool = True) -> None:
        for p in self.procs:
            try:
                p.stdin.write("QUIT\n")
                p.stdin.flush()
                p.stdin.close()
            except OSError:
                pass
        if wait:
            self.join()

    def join(self) -> None:
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cpu_now(self) -> float:
        return sum(st[2] for st in (read_stat(p.pid) for p in self.procs) if st)


def merge_reports(reps: list[dict]) -> dict:
    """Generator processes' WAIT reports as one: counts summed, first/last delivery times, every latency
    (read from each report's lat_file, which is then removed) sorted."""
    lats = array.array("d")
    for r in reps:
        try:
            with open(r["lat_file"], "rb") as f:
                lats.frombytes(f.read())
            os.unlink(r["lat_file"])
        except OSError:
            pass
    m = {k: sum(r[k] for r in reps) for k in (
        "live", "complete", "deliveries", "missing", "lost_tracked", "dups", "disorder", "order_mismatch",
        "closed_by_server", "foreign_lines", "lp_reissues", "lp_errors", "lp_reconnects", "lp_timeouts", "cpu_s")}
    firsts = [r["first_ns"] for r in reps if r["first_ns"]]
    lasts = [r["last_ns"] for r in reps if r["last_ns"]]
    m["first_ns"] = min(firsts) if firsts else 0
    m["last_ns"] = max(lasts) if lasts else 0
    m["lat"] = sorted(lats)
    return m


def publish(loadgen: str, port: int, channel: str, count: int, concurrency: int, first_seq: int, src: str,
            mode: str, pad: int = 0, interval_ms: int = 0, channels: int = 0, seed: int = 1) -> dict:
    argv = [loadgen, "pub", "--target", f"127.0.0.1:{port}", "--src", src, "--channel", channel,
            "--count", str(count), "--concurrency", str(concurrency), "--first-seq", str(first_seq),
            "--pad", str(pad), "--formats", FORMATS[mode], "--interval-ms", str(interval_ms), "--max-seconds", "600"]
    if channels:
        argv += ["--channels", str(channels), "--seed", str(seed)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=660)
    if out.stderr.strip():
        log("publisher: " + out.stderr.strip().replace("\n", " | ")[:300])
    return json.loads(out.stdout.strip().splitlines()[-1])


def pctl(sorted_vals, p: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(round(p * (len(sorted_vals) - 1))))]


def median(xs):
    xs = sorted(x for x in xs if isinstance(x, (int, float)) and x == x)
    if not xs:
        return float("nan")
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else (xs[m - 1] + xs[m]) / 2


class Meter:
    """CPU of the server, the subscriber generators, the backend and the machine over one phase."""

    def __init__(self, server: Server, holders: Holders):
        self.server, self.holders = server, holders
        self.s0, self.g0, self.k0 = server.cpu(), holders.cpu_now(), server.backend_cpu()
        self.b0, self.st0, _ = machine_times()
        self.w0 = time.time()

    def done(self, pub_cpu: float = 0.0) -> dict:
        b1, st1, _ = machine_times()
        return {"server_cpu_s": self.server.cpu() - self.s0, "gen_cpu_s": self.holders.cpu_now() - self.g0,
                "backend_cpu_s": self.server.backend_cpu() - self.k0, "pub_cpu_s": pub_cpu,
                "machine_busy_s": b1 - self.b0, "steal_s": st1 - self.st0, "wall_s": time.time() - self.w0}


def settle_rss(server: Server, seconds: float = 2.0, samples: int = 3) -> dict:
    time.sleep(seconds)
    snap = {}
    for _ in range(samples):
        snap = server.snapshot()
        time.sleep(0.5)
    return snap


def wait_quiet(server: Server, t0: float, c0: float, max_s: float = 60.0, window: float = 0.5,
               threshold: float = 0.1) -> tuple[float, float]:
    """Samples the server's CPU every 100 ms from t0 until a `window` with under `threshold` of one core.
    Returns (seconds from t0 to the start of that window, CPU seconds used until then); nan if never."""
    samples = [(t0, c0)]
    while time.time() - t0 < max_s:
        time.sleep(0.1)
        now, c = time.time(), server.cpu()
        samples.append((now, c))
        start = [s for s in samples if s[0] <= now - window]
        if start and c - start[-1][1] <= threshold * window:
            return max(0.0, start[-1][0] - t0), start[-1][1] - c0
    return float("nan"), server.cpu() - c0


def delivery_stats(m: dict, pub: dict, expected: int) -> dict:
    span = (m["last_ns"] - pub["first_send_ns"]) / 1e9 if m["last_ns"] and pub["first_send_ns"] else float("nan")
    unique = m["deliveries"] - m["dups"]
    return {
        "live": m["live"], "complete": m["complete"], "deliveries": m["deliveries"], "expected": expected,
        "lost": max(0, expected - unique), "dups": m["dups"], "disorder": m["disorder"],
        "closed_by_server": m["closed_by_server"], "lp_errors": m["lp_errors"], "lp_reconnects": m["lp_reconnects"],
        "p50_ms": pctl(m["lat"], 0.5) / 1000, "p99_ms": pctl(m["lat"], 0.99) / 1000,
        "max_ms": (m["lat"][-1] if m["lat"] else float("nan")) / 1000,
        "publish_ok": pub["ok"], "publishes": pub["sent"], "publish_connects": pub.get("connects", 0),
        "publish_rtt_p50_ms": pub["rtt_us_p50"] / 1000, "publish_rtt_p99_ms": pub["rtt_us_p99"] / 1000,
        "publishes_per_s": pub["ok"] / ((pub["last_ack_ns"] - pub["first_send_ns"]) / 1e9)
        if pub["last_ack_ns"] > pub["first_send_ns"] else float("nan"),
        "deliveries_per_s": m["deliveries"] / span if span and span > 0 else float("nan"),
        "span_s": span,
    }


# --------------------------------------------------------------------------- one run


def warm_up(server: Server, mode: str, ctx) -> dict:
    w = Holders(ctx.loadgen, server.client_port, 50, mode, "warmup", ctx.pool, ctx.workdir, f"{ctx.tag}-warm")
    r = w.wait_ready()
    time.sleep(0.5)
    w.reset(0)
    publish(ctx.loadgen, server.publish_port, "warmup", 3, 1, 0, ctx.pool.next(), mode, interval_ms=300)
    wr = w.wait(3, 10000, 5000)
    w.quit()
    if wr["complete"] != 50:
        log(f"{ctx.tag}: WARNING warm-up: only {wr['complete']}/50 clients got all 3 messages")
    return {"ready": r, "complete": wr["complete"], "live": wr["live"]}


def run_connections(server: Server, mode: str, N: int, ctx) -> dict:
    """Open N clients (memory), fan-out, burst, all close at once, all reconnect at once."""
    a = ctx.args
    res: dict = {"target": server.name, "mode": mode, "N": N}
    res["warmup"] = warm_up(server, mode, ctx)
    pp, lg = server.publish_port, ctx.loadgen

    # memory per idle client
    before = settle_rss(server, 1.5)
    ctx.progress(f"opening {N:,} clients")
    t0, c0, k0 = time.time(), server.cpu(), server.backend_cpu()
    H = Holders(lg, server.client_port, N, mode, "fan", ctx.pool, ctx.workdir, f"{ctx.tag}-fan")
    ready = H.wait_ready()
    open_s, cpu_open, backend_open = time.time() - t0, server.cpu() - c0, server.backend_cpu() - k0
    after = settle_rss(server, 2.0)
    held = ready["ok"]
    i0, it0 = server.cpu(), time.time()
    time.sleep(a.idle_seconds)
    idle_pct = 100 * (server.cpu() - i0) / (time.time() - it0)
    per_proc = {}
    for pid, p in after.items():
        b = before.get(pid, {"rss_kb": 0})
        per_proc[p["name"]] = {"before_kb": b["rss_kb"], "after_kb": p["rss_kb"], "delta_kb": p["rss_kb"] - b["rss_kb"]}
    delta = total(after, "rss_kb") - total(before, "rss_kb")
    res["open"] = {
        "held": held, "failed": ready["failed"], "retried": ready["retried"], "open_s": open_s,
        "opens_per_s": held / open_s if open_s else 0, "server_cpu_open_s": cpu_open, "backend_cpu_open_s": backend_open,
        "rss_before_kb": total(before, "rss_kb"), "rss_held_kb": total(after, "rss_kb"),
        "kb_per_conn": delta / held if held else float("nan"), "per_process": per_proc, "idle_cpu_pct": idle_pct,
    }
    ctx.progress(f"{held:,} held ({ready['failed']} failed, {ready['retried']} re-opened) in {open_s:.1f} s, "
                 f"{res['open']['kb_per_conn']:.2f} KB each")

    # fan-out: M messages at one per interval, every client tracks every seq
    M = a.fanout_messages
    H.reset(M)
    time.sleep(0.5)
    mt = Meter(server, H)
    profile = PhaseProfile("fanout", server)
    pub = publish(lg, pp, "fan", M, 1, 0, ctx.pool.next(), mode, a.pad, interval_ms=int(a.fanout_interval * 1000))
    m = H.wait(M, int(1000 * (30 + N / 500)), 10000)
    profile.stop()
    fan = delivery_stats(m, pub, M * held) | mt.done(pub["cpu_s"])
    fan["cpu_per_delivery_us"] = fan["server_cpu_s"] / m["deliveries"] * 1e6 if m["deliveries"] else float("nan")
    res["fanout"] = fan
    ctx.progress(f"fan-out {M} msgs: p50 {fan['p50_ms']:.1f} ms, p99 {fan['p99_ms']:.1f} ms, "
                 f"{fan['cpu_per_delivery_us']:.1f} us CPU/delivery, lost {fan['lost']}")
    time.sleep(1.0)

    # burst: B messages as fast as one publisher can post them
    B = a.burst
    H.reset(B)
    time.sleep(0.3)
    mt = Meter(server, H)
    profile = PhaseProfile("burst", server)
    pub = publish(lg, pp, "fan", B, 1, 0, ctx.pool.next(), mode, a.pad)
    m = H.wait(B, int(1000 * (30 + N / 200)), 10000)
    profile.stop()
    burst = delivery_stats(m, pub, B * held) | mt.done(pub["cpu_s"])
    burst["cpu_per_delivery_us"] = burst["server_cpu_s"] / m["deliveries"] * 1e6 if m["deliveries"] else float("nan")
    res["burst"] = burst
    ctx.progress(f"burst {B} msgs: {burst['deliveries_per_s']:,.0f} deliveries/s, "
                 f"{burst['publishes_per_s']:,.0f} publishes/s, lost {burst['lost']}")
    time.sleep(1.0)

    # all clients close at once
    ends0 = server.backend_close_events()
    profile = PhaseProfile("close", server)
    t0, c0, k0 = time.time(), server.cpu(), server.backend_cpu()
    H.quit(wait=False)
    quiet_s, quiet_cpu = wait_quiet(server, t0, c0, a.quiet_max)
    profile.stop()
    H.join()
    closed = settle_rss(server, 3.0)
    res["close"] = {"quiet_s": quiet_s, "server_cpu_s": quiet_cpu, "backend_cpu_s": server.backend_cpu() - k0,
                    "rss_after_close_kb": total(closed, "rss_kb"),
                    "rss_after_close_vs_held": total(closed, "rss_kb") / total(after, "rss_kb") if total(after, "rss_kb") else float("nan")}
    ends1 = server.backend_close_events()
    ends = "" if ends0 is None or ends1 is None else f", {ends1 - ends0:,} CLOSE/DISCONNECT events reached the backend"
    if ends0 is not None and ends1 is not None:
        res["close"]["backend_close_events"] = ends1 - ends0
    ctx.progress(f"closed: quiet after {quiet_s:.2f} s, RSS {total(after, 'rss_kb') / 1024:.0f} MB held -> "
                 f"{total(closed, 'rss_kb') / 1024:.0f} MB after close{ends}")

    # all clients reconnect at once
    profile = PhaseProfile("storm", server)
    t0, c0, k0 = time.time(), server.cpu(), server.backend_cpu()
    R = Holders(lg, server.client_port, N, mode, "fan", ctx.pool, ctx.workdir, f"{ctx.tag}-storm",
                max_pending_total=N, retries=250, retry_delay_ms=500, ready_timeout=int(a.storm_timeout))
    r = R.wait_ready()
    profile.stop()
    storm = {"back": r["ok"], "failed": r["failed"], "retried": r["retried"], "all_back_s": r["ms"] / 1000,
             "wall_s": time.time() - t0, "server_cpu_s": server.cpu() - c0, "backend_cpu_s": server.backend_cpu() - k0}
    time.sleep(2.0)
    R.reset(1)
    pub = publish(lg, pp, "fan", 1, 1, 0, ctx.pool.next(), mode)
    m = R.wait(1, 30000, 10000)
    storm["subscribed_after"] = m["complete"]
    storm["live_after"] = m["live"]
    R.quit()
    res["storm"] = storm
    ctx.progress(f"reconnect storm: {r['ok']:,}/{N:,} back in {storm['all_back_s']:.2f} s "
                 f"({r['retried']} re-opened, {r['failed']} failed), {m['complete']:,} got the next message")
    res["rss_end_kb"] = total(server.snapshot(), "rss_kb")
    return res


def run_throughput(server: Server, mode: str, ctx) -> dict:
    """Many small publishes: one channel with S subscribers, then K channels with S subscribers each."""
    a = ctx.args
    res: dict = {"target": server.name, "mode": mode}
    res["warmup"] = warm_up(server, mode, ctx)
    pp, lg, S = server.publish_port, ctx.loadgen, a.subscribers
    out = {}

    T = Holders(lg, server.client_port, S, mode, "tp", ctx.pool, ctx.workdir, f"{ctx.tag}-tp")
    T.wait_ready()
    time.sleep(1.0)
    for phase, count, conc in (("1ch-sequential", a.seq_messages, 1), ("1ch-concurrent", a.conc_messages, a.concurrency)):
        T.reset(count)
        mt = Meter(server, T)
        pub = publish(lg, pp, "tp", count, conc, 0, ctx.pool.next(), mode, a.pad)
        m = T.wait(count, 120000, 10000)
        x = delivery_stats(m, pub, count * m["live"]) | mt.done(pub["cpu_s"])
        x.update(messages=count, concurrency=conc, subscribers=m["live"], order_mismatch=m["order_mismatch"],
                 publish_non200=pub["non200"], publish_errors=pub["errors"])
        x["cpu_per_delivery_us"] = x["server_cpu_s"] / m["deliveries"] * 1e6 if m["deliveries"] else float("nan")
        out[phase] = x
        ctx.progress(f"{phase}: {x['publishes_per_s']:,.0f} publishes/s, {x['deliveries_per_s']:,.0f} deliveries/s, "
                     f"lost {x['lost']}")
        time.sleep(a.pause)
    T.quit()

    K = a.channels
    if K:
        ctx.progress(f"opening {K * S:,} clients on {K:,} channels")
        C = Holders(lg, server.client_port, K * S, mode, "mc", ctx.pool, ctx.workdir, f"{ctx.tag}-mc", spread=K)
        rc = C.wait_ready()
        time.sleep(2.0)
        for phase, count, conc, seed in (("many-sequential", a.mc_seq_messages, 1, 11),
                                         ("many-concurrent", a.mc_conc_messages, a.concurrency, 12)):
            C.reset(count)
            mt = Meter(server, C)
            pub = publish(lg, pp, "mc", count, conc, 0, ctx.pool.next(), mode, a.pad, channels=K, seed=seed)
            per_ch = pub.get("per_channel", [0] * K)
            totals = [sum(per_ch[(b + i) % K] for i in range(n)) for b, n in zip(C.bases, C.per)]
            m = C.wait(0, 180000, 10000, totals=totals)
            x = delivery_stats(m, pub, sum(totals)) | mt.done(pub["cpu_s"])
            x.update(messages=count, concurrency=conc, subscribers=m["live"], channels=K, opened=rc["ok"],
                     publish_non200=pub["non200"], publish_errors=pub["errors"], order_mismatch=0)
            x["cpu_per_delivery_us"] = x["server_cpu_s"] / m["deliveries"] * 1e6 if m["deliveries"] else float("nan")
            out[phase] = x
            ctx.progress(f"{phase} ({K:,} channels x {S}): {x['publishes_per_s']:,.0f} publishes/s, "
                         f"{x['deliveries_per_s']:,.0f} deliveries/s, lost {x['lost']}")
            time.sleep(a.pause)
        C.quit()
    res["phases"] = out
    return res


# --------------------------------------------------------------------------- report


def fmt(x, nd=1):
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "n/a"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{nd}f}"


def ratio(a, b):
    try:
        if not b or a != a or b != b:
            return float("nan")
        return a / b
    except TypeError:
        return float("nan")


def get(d, path):
    for k in path.split("."):
        if not isinstance(d, dict) or k not in d:
            return float("nan")
        d = d[k]
    return d


# (label, key path, better, decimals)
CONN_FIGURES = [
    ("RSS per connection (KB)", "open.kb_per_conn", "lower", 2),
    ("opens per second", "open.opens_per_s", "higher", 0),
    ("idle CPU with all held (% of a core)", "open.idle_cpu_pct", "lower", 1),
    ("fan-out p50 (ms)", "fanout.p50_ms", "lower", 1),
    ("fan-out p99 (ms)", "fanout.p99_ms", "lower", 1),
    ("fan-out CPU per delivery (us)", "fanout.cpu_per_delivery_us", "lower", 1),
    ("fan-out lost", "fanout.lost", "lower", 0),
    ("burst deliveries/s", "burst.deliveries_per_s", "higher", 0),
    ("burst publishes/s", "burst.publishes_per_s", "higher", 0),
    ("burst p99 (ms)", "burst.p99_ms", "lower", 1),
    ("burst CPU per delivery (us)", "burst.cpu_per_delivery_us", "lower", 1),
    ("burst lost", "burst.lost", "lower", 0),
    ("mass close: quiet after (s)", "close.quiet_s", "lower", 2),
    ("mass close: server CPU (s)", "close.server_cpu_s", "lower", 2),
    ("mass close: CLOSE/DISCONNECT events at the backend", "close.backend_close_events", "higher", 0),
    ("RSS held (MB)", "open.rss_held_kb", "lower", 1),
    ("RSS after close (MB)", "close.rss_after_close_kb", "lower", 1),
    ("reconnect storm: all back (s)", "storm.all_back_s", "lower", 2),
    ("reconnect storm: not back", "storm.not_back", "lower", 0),
]
TP_FIGURES = [
    ("publishes/s", "publishes_per_s", "higher", 0),
    ("deliveries/s", "deliveries_per_s", "higher", 0),
    ("end-to-end p50 (ms)", "p50_ms", "lower", 2),
    ("end-to-end p99 (ms)", "p99_ms", "lower", 2),
    ("CPU per delivery (us)", "cpu_per_delivery_us", "lower", 1),
    ("lost", "lost", "lower", 0),
]
MB_KEYS = {"open.rss_held_kb", "close.rss_after_close_kb"}


def conn_value(runs: list[dict], key: str):
    vals = []
    for r in runs:
        if key == "storm.not_back":
            vals.append(r["N"] - get(r, "storm.back"))
        else:
            v = get(r, key)
            vals.append(v / 1024 if key in MB_KEYS and v == v else v)
    return median(vals)


def ratio_columns(targets: list[str]) -> list[tuple[str, str]]:
    cols = []
    if "gripproxy" in targets and "pushpin" in targets:
        cols.append(("gripproxy", "pushpin"))
    if "gripproxy" in targets and "floor" in targets:
        cols.append(("gripproxy", "floor"))
    if "pushpin" in targets and "floor" in targets:
        cols.append(("pushpin", "floor"))
    elif "pushpin-default" in targets and "floor" in targets:
        cols.append(("pushpin-default", "floor"))
    return cols


def summary_tables(conn: list[dict], tp: list[dict], targets: list[str], modes: list[str], Ns: list[int]) -> dict[str, str]:
    """mode -> markdown table (medians over repeats)."""
    rc = ratio_columns(targets)
    out = {}
    for mode in modes:
        cols = list(targets) + [f"{a} / {b}" for a, b in rc]
        L = ["| figure | N | " + " | ".join(cols) + " | better |", "|---|---:|" + "---:|" * len(cols) + "---|"]
        for label, key, better, nd in CONN_FIGURES:
            for N in Ns:
                vals = {t: conn_value([r for r in conn if r["target"] == t and r["mode"] == mode and r["N"] == N], key)
                        for t in targets}
                if all(v != v for v in vals.values()):
                    continue
                cells = [fmt(vals[t], nd) for t in targets] + [fmt(ratio(vals[a], vals[b]), 2) for a, b in rc]
                L.append(f"| {label} | {N:,} | " + " | ".join(cells) + f" | {better} |")
        for phase in ("1ch-sequential", "1ch-concurrent", "many-sequential", "many-concurrent"):
            for label, key, better, nd in TP_FIGURES:
                vals = {t: median([get(r, f"phases.{phase}.{key}") for r in tp if r["target"] == t and r["mode"] == mode])
                        for t in targets}
                if all(v != v for v in vals.values()):
                    continue
                cells = [fmt(vals[t], nd) for t in targets] + [fmt(ratio(vals[a], vals[b]), 2) for a, b in rc]
                L.append(f"| {phase}: {label} | | " + " | ".join(cells) + f" | {better} |")
        out[mode] = "\n".join(L)
    return out


def checks(conn: list[dict], tp: list[dict]) -> list[str]:
    notes = []
    for r in conn:
        tag = f"{r['target']} {r['mode']} N={r['N']:,} (repeat {r.get('repeat', 1)})"
        if r.get("error"):
            notes.append(f"{tag}: the run failed: {r['error']}")
            continue
        if not r.get("server_alive_after", True):
            notes.append(f"{tag}: the server exited during the run.")
        if r.get("log_findings", {}).get("count"):
            lf = r["log_findings"]
            notes.append(f"{tag}: {lf['count']} warning/error lines in its logs, e.g. " + " | ".join(f"`{x}`" for x in lf["examples"][:2]))
        o = r.get("open", {})
        if o.get("failed"):
            notes.append(f"{tag}: {o['failed']} of {r['N']} clients could not be opened.")
        if o.get("retried"):
            notes.append(f"{tag}: {o['retried']} opens were refused or failed and were retried.")
        for ph in ("fanout", "burst"):
            x = r.get(ph)
            if not x:
                continue
            if x["lost"] or x["dups"] or x["closed_by_server"]:
                why = " (long-poll: a message published while a client re-issues its request is missed by design)" if r["mode"] == "longpoll" else ""
                notes.append(f"{tag}: {ph}: {x['lost']:,} of {x['expected']:,} deliveries lost, {x['dups']} duplicated, "
                             f"{x['closed_by_server']} clients closed by the server{why}.")
            if x["publish_ok"] != x["publishes"]:
                notes.append(f"{tag}: {ph}: {x['publishes'] - x['publish_ok']} publishes not answered 200.")
        c = r.get("close", {})
        if c and c["quiet_s"] != c["quiet_s"]:
            notes.append(f"{tag}: the server did not go quiet within the limit after the mass close.")
        s = r.get("storm", {})
        if s and (s["failed"] or s["subscribed_after"] != s["live_after"] or s["back"] != r["N"]):
            notes.append(f"{tag}: reconnect storm: {s['back']:,}/{r['N']:,} back ({s['failed']} failed, {s['retried']} re-opens); "
                         f"{s['subscribed_after']:,} of {s['live_after']:,} got the next message.")
    for r in tp:
        tag = f"{r['target']} {r['mode']} (repeat {r.get('repeat', 1)})"
        if r.get("error"):
            notes.append(f"{tag}: the throughput run failed: {r['error']}")
            continue
        for ph, x in r.get("phases", {}).items():
            if x["publish_ok"] != x["messages"]:
                notes.append(f"{tag}: {ph}: {x['messages'] - x['publish_ok']} publishes not answered 200 "
                             f"({x['publish_non200']} non-200, {x['publish_errors']} errors).")
            if x["lost"] or x["dups"]:
                why = " (long-poll: missed while re-issuing, by design)" if r["mode"] == "longpoll" else ""
                notes.append(f"{tag}: {ph}: {x['lost']:,} of {x['expected']:,} deliveries lost, {x['dups']} duplicated{why}.")
            if "sequential" in ph and x["disorder"] and r["mode"] != "longpoll":
                notes.append(f"{tag}: {ph}: {x['disorder']} deliveries out of publish order.")
            if x.get("order_mismatch"):
                why = (" (the floor dispatches each publish from the loop it arrived on: concurrent publishes are not "
                       "ordered across loops)") if r["target"] == "floor" else ""
                notes.append(f"{tag}: {ph}: {x['order_mismatch']} subscribers saw a different order than the first{why}.")
    return notes


def cpu_rows(conn: list[dict], tp: list[dict]) -> list[dict]:
    """Per target and mode: the phase where the generator used the most CPU, and other/steal totals."""
    rows: dict[tuple, dict] = {}
    for r in conn + tp:
        phases = [(f"{p} N={r['N']:,}", r[p]) for p in ("fanout", "burst") if p in r] if "N" in r else list(r.get("phases", {}).items())
        key = (r["target"], r["mode"])
        row = rows.setdefault(key, {"target": r["target"], "mode": r["mode"], "gen_pct": 0.0, "phase": "", "wall": 0.0,
                                    "server": 0.0, "gen": 0.0, "pub": 0.0, "backend": 0.0, "other": 0.0, "steal": 0.0})
        for name, x in phases:
            if not x.get("wall_s"):
                continue
            pct = 100 * x["gen_cpu_s"] / x["wall_s"]
            if pct > row["gen_pct"]:
                row["gen_pct"], row["phase"] = pct, name
            row["wall"] += x["wall_s"]
            row["server"] += x["server_cpu_s"]
            row["gen"] += x["gen_cpu_s"]
            row["pub"] += x["pub_cpu_s"]
            row["backend"] += x["backend_cpu_s"]
            row["other"] += max(0.0, x["machine_busy_s"] - x["server_cpu_s"] - x["gen_cpu_s"] - x["pub_cpu_s"] - x["backend_cpu_s"])
            row["steal"] += x["steal_s"]
    return list(rows.values())


def charts(outdir: str, conn: list[dict], tp: list[dict], targets: list[str], modes: list[str], Ns: list[int]) -> list[str]:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no charts (bench/run installs it with pip)")
        return []
    files = []
    colors = {"gripproxy": "tab:blue", "pushpin": "tab:red", "pushpin-default": "tab:orange", "floor": "tab:green"}

    def by_n(title, key, fname, ylabel, logy=False):
        fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            for t in targets:
                xs, ys = [], []
                for N in Ns:
                    v = conn_value([r for r in conn if r["target"] == t and r["mode"] == mode and r["N"] == N], key)
                    if v == v:
                        xs.append(N)
                        ys.append(v)
                if xs:
                    ax.plot(xs, ys, marker="o", label=t, color=colors.get(t))
            ax.set_title(f"{mode}")
            ax.set_xlabel("connections (N)")
            ax.set_ylabel(ylabel)
            if logy:
                ax.set_yscale("log")
            else:
                ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, fname), dpi=90)
        plt.close(fig)
        files.append(fname)

    by_n("RSS per connection (KB), lower is better", "open.kb_per_conn", "rss_per_connection.png", "KB")
    by_n("Fan-out p99 latency (ms), lower is better", "fanout.p99_ms", "fanout_p99.png", "ms", logy=True)
    by_n("Burst deliveries per second, higher is better", "burst.deliveries_per_s", "deliveries_per_s.png", "deliveries/s")
    if tp:
        phases = ["1ch-sequential", "1ch-concurrent", "many-sequential", "many-concurrent"]
        fig, axes = plt.subplots(1, len(modes), figsize=(5 * len(modes), 4), squeeze=False)
        for ax, mode in zip(axes[0], modes):
            width = 0.8 / max(1, len(targets))
            for i, t in enumerate(targets):
                ys = [median([get(r, f"phases.{p}.publishes_per_s") for r in tp if r["target"] == t and r["mode"] == mode]) for p in phases]
                ax.bar([k + i * width for k in range(len(phases))], [y if y == y else 0 for y in ys], width, label=t, color=colors.get(t))
            ax.set_xticks([k + 0.4 - width / 2 for k in range(len(phases))])
            ax.set_xticklabels(phases, fontsize=7)
            ax.set_title(mode)
            ax.set_ylabel("publishes/s")
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Many small publishes: publishes per second, higher is better")
        fig.tight_layout()
        fig.savefig(os.path.join(outdir, "publishes_per_s.png"), dpi=90)
        plt.close(fig)
        files.append("publishes_per_s.png")
    return files


def log_findings(workdir: str, limit: int = 6) -> dict:
    """Warnings and errors in a server's logs: count, and the first few distinct lines (timestamps cut)."""
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
                    key = os.path.basename(path) + ": " + re.sub(r"\d{4}-\d\d-\d\d[T ][\d:.+]+", "", line.strip())[:200]
                    if key not in seen and len(seen) < limit:
                        seen.append(key)
        except OSError:
            pass
    return {"count": count, "examples": seen}


def write_report(outdir: str, conn, tp, meta, targets, modes, Ns, chart_files) -> tuple[str, dict]:
    L = [f"# GripProxy beside Pushpin and the floor, {meta['date']}", ""]
    if meta["build"] != "release" and "gripproxy" in targets:
        L += [f"> **WARNING: the GripProxy binary is a {meta['build'].upper()} build. Its numbers are meaningless for "
              "performance; only the method and the loss checks count.**", ""]
    if meta.get("interrupted"):
        L += [f"> **The run stopped early: {meta['interrupted']}. The tables hold what was measured.**", ""]
    if meta["loadavg_1min_at_start"] > 0.5 or meta.get("busy_runs"):
        L += [f"> Machine not quiet: load average {meta['loadavg_1min_at_start']:.2f} at start; "
              f"{meta.get('busy_runs', 0)} runs started while other programs used more than 15% of the machine. "
              "Absolute numbers are noisy; ratios less so.", ""]
    L += ["## Setup", ""]
    for k in ("targets", "modes", "connections", "repeat", "gripproxy_bin", "gripproxy_bin_mtime", "build", "gripproxy_version",
              "floor_bin", "repo_commit", "pushpin_version", "kernel", "cpus", "loadavg_1min_at_start", "quick", "command", "minutes"):
        L.append(f"- {k}: `{meta.get(k)}`")
    L += ["", "Targets: `gripproxy` (route `* test`, ws mode `* localhost:BACKEND,over_http`), `pushpin` (Pushpin 1.36, "
          "`message_rate` unset: unlimited), `pushpin-default` (the shipped `message_rate=2500`), `floor` (bench/floor, "
          "bare SwiftNIO, no GRIP, no backend). Every figure is the median over the repeats. Ratios: under 1 favours "
          "the left-hand target when lower is better, over 1 when higher is better.", ""]
    tables = summary_tables(conn, tp, targets, modes, Ns)
    for mode in modes:
        L += [f"## Summary: {mode}", "", tables[mode], ""]
    if chart_files:
        L += ["## Charts", ""] + [f"![{f}]({f})" for f in chart_files] + [""]
    notes = checks(conn, tp)
    L += ["## Errors, losses and anomalies", ""] + ([f"- {n}" for n in notes] or ["- none"]) + [""]
    L += ["## Is the generator the bottleneck?", "",
          "CPU seconds summed over the fan-out, burst and publish phases (utime+stime). \"other\" is the machine's busy "
          "time (/proc/stat user+nice+system+irq+softirq) minus the server, generators, publisher and backend: other "
          "programs plus interrupt work charged to no process. Steal is time the virtual CPUs wanted and did not get.", "",
          "| target | mode | wall (s) | server | subscriber generators | publisher | ws backend | other | steal | generator at most (% of a core) |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for x in cpu_rows(conn, tp):
        L.append(f"| {x['target']} | {x['mode']} | {x['wall']:.1f} | {x['server']:.1f} | {x['gen']:.1f} | {x['pub']:.1f} | "
                 f"{x['backend']:.1f} | {x['other']:.1f} | {x['steal']:.1f} | {x['gen_pct']:.0f}% ({x['phase']}) |")
    L += ["", "## Runs", ""]
    L.append("| target | mode | N | repeat | held | opened in (s) | KB/conn | largest RSS share | fan-out p50/p99 (ms) | fan-out got/expected | "
             "burst deliveries/s | burst got/expected | quiet after close (s) | RSS held / after close (MB) | storm back (s) | storm got next msg |")
    L.append("|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---|---:|---|---:|---|")
    for r in conn:
        if r.get("error"):
            L.append(f"| {r['target']} | {r['mode']} | {r['N']:,} | {r.get('repeat')} | failed: {r['error'][:80]} |" + " |" * 11)
            continue
        o, f_, b, c, s = r["open"], r["fanout"], r["burst"], r["close"], r["storm"]
        dom = max(o["per_process"].items(), key=lambda kv: kv[1]["delta_kb"])[0] if o["per_process"] else ""
        L.append(f"| {r['target']} | {r['mode']} | {r['N']:,} | {r.get('repeat')} | {o['held']:,} | {o['open_s']:.1f} | "
                 f"{o['kb_per_conn']:.2f} | {dom} | {f_['p50_ms']:.1f} / {f_['p99_ms']:.1f} | "
                 f"{f_['deliveries'] - f_['dups']:,}/{f_['expected']:,} | {fmt(b['deliveries_per_s'], 0)} | "
                 f"{b['deliveries'] - b['dups']:,}/{b['expected']:,} | {fmt(c['quiet_s'], 2)} | "
                 f"{o['rss_held_kb'] / 1024:.0f} / {c['rss_after_close_kb'] / 1024:.0f} | {s['all_back_s']:.2f} | "
                 f"{s['subscribed_after']:,}/{s['live_after']:,} |")
    L += ["", "| target | mode | repeat | phase | messages x subscribers | publishes/s | deliveries/s | lost | dups | e2e p50 / p99 (ms) | publish RTT p50 / p99 (ms) | publish connections | server CPU (s) |",
          "|---|---|---:|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for r in tp:
        if r.get("error"):
            L.append(f"| {r['target']} | {r['mode']} | {r.get('repeat')} | failed: {r['error'][:80]} |" + " |" * 9)
            continue
        for ph, x in r["phases"].items():
            subs = f"{x['messages']:,} x {x['subscribers']:,}" + (f" on {x['channels']:,} channels" if x.get("channels") else "")
            L.append(f"| {r['target']} | {r['mode']} | {r.get('repeat')} | {ph} (x{x['concurrency']}) | {subs} | "
                     f"{fmt(x['publishes_per_s'], 0)} | {fmt(x['deliveries_per_s'], 0)} | {x['lost']:,} | {x['dups']:,} | "
                     f"{x['p50_ms']:.2f} / {x['p99_ms']:.2f} | {x['publish_rtt_p50_ms']:.2f} / {x['publish_rtt_p99_ms']:.2f} | "
                     f"{x['publish_connects']:,} | {x['server_cpu_s']:.2f} |")
    L += ["", "Per-process RSS, warnings in the logs and every raw number are in `results.json` beside this report.", ""]
    with open(os.path.join(outdir, "report.md"), "w") as f:
        f.write("\n".join(L) + "\n")
    return "\n".join(L), tables


# --------------------------------------------------------------------------- main


def snapshot_binary(src: str, dst: str) -> None:
    """Copies the binary once it has stopped changing, so that a rebuild during the run cannot break it."""
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


class Ctx:
    def __init__(self, args, loadgen, pool, total_runs):
        self.args, self.loadgen, self.pool = args, loadgen, pool
        self.workdir, self.tag = "", ""
        self.total_runs, self.done_runs, self.run_started = total_runs, 0, time.time()
        self.label = ""

    def progress(self, msg: str) -> None:
        el = time.time() - T0
        eta = ""
        if self.done_runs:
            eta = f", ~{(el / self.done_runs) * (self.total_runs - self.done_runs) / 60:.0f} min left"
        log(f"[{self.done_runs + 1}/{self.total_runs}{eta}] {self.label}: {msg}")


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description="GripProxy beside Pushpin and the floor (bench/README.md)")
    ap.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS)} (default all)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of stream, ws, longpoll (default all)")
    ap.add_argument("--connections", help=f"comma list of N (default 1000,5000,19000; --quick 1000; max {MAX_CONNECTIONS})")
    ap.add_argument("--repeat", type=int, default=1, help="runs of everything; the tables give the median (default 1)")
    ap.add_argument("--quick", action="store_true", help="smaller phases (a few minutes per target and mode)")
    ap.add_argument("--phases", default="connections,throughput", help="connections (open, fan-out, burst, close, "
                    "reconnect), throughput (many small publishes); default both")
    ap.add_argument("--fanout-messages", type=int, help="fan-out messages (default 20, --quick 5)")
    ap.add_argument("--fanout-interval", type=float, default=1.0, help="seconds between fan-out messages (default 1)")
    ap.add_argument("--burst", type=int, help="burst messages (default 100, --quick 30)")
    ap.add_argument("--subscribers", type=int, default=10, help="subscribers per channel in the throughput phases (default 10)")
    ap.add_argument("--seq-messages", type=int, help="sequential publishes to one channel (default 3000, --quick 300)")
    ap.add_argument("--conc-messages", type=int, help="concurrent publishes to one channel (default 20000, --quick 2000)")
    ap.add_argument("--channels", type=int, help="channels in the many-channels phase (default 1900, --quick 190; 0 skips it)")
    ap.add_argument("--mc-seq-messages", type=int, help="sequential publishes to random channels (default 3000, --quick 300)")
    ap.add_argument("--mc-conc-messages", type=int, help="concurrent publishes to random channels (default 20000, --quick 2000)")
    ap.add_argument("--concurrency", type=int, default=32, help="publishes in flight in the concurrent phases (default 32)")
    ap.add_argument("--pad", type=int, default=0, help="extra bytes in each message (default 0: ~30-byte messages)")
    ap.add_argument("--idle-seconds", type=float, default=3.0, help="quiet window for the idle CPU of held clients (default 3)")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between throughput phases")
    ap.add_argument("--quiet-max", type=float, default=60.0, help="longest wait for the server to go quiet after the mass close (s)")
    ap.add_argument("--storm-timeout", type=float, default=120.0, help="longest wait for the reconnect storm (s)")
    ap.add_argument("--quiet-wait", type=float, default=60.0, help="longest wait for a busy machine to go quiet before each run (s)")
    ap.add_argument("--base-port", type=int, default=17101, help="first of the ports used (odd; default 17101)")
    ap.add_argument("--out", help="report folder (default bench/results/<date>)")
    ap.add_argument("--max-minutes", type=float, help="hard limit for the whole run (default 300, --quick 60)")
    ap.add_argument("--loadgen", default=os.path.join(HERE, ".run", "loadgen"))
    ap.add_argument("--floor-bin", default=os.path.join(HERE, "floor", ".build", "release", "floor"))
    args = ap.parse_args()

    q = args.quick
    Ns = [int(x) for x in (args.connections or ("1000" if q else "1000,5000,19000")).split(",") if x.strip()]
    args.fanout_messages = args.fanout_messages or (5 if q else 20)
    args.burst = args.burst or (30 if q else 100)
    args.seq_messages = args.seq_messages or (300 if q else 3000)
    args.conc_messages = args.conc_messages or (2000 if q else 20000)
    args.channels = (190 if q else 1900) if args.channels is None else args.channels
    args.mc_seq_messages = args.mc_seq_messages or (300 if q else 3000)
    args.mc_conc_messages = args.mc_conc_messages or (2000 if q else 20000)
    args.max_minutes = args.max_minutes or (60 if q else 300)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if bad := [t for t in targets if t not in TARGETS]:
        ap.error(f"unknown target(s) {bad}; known: {', '.join(TARGETS)}")
    if bad := [m for m in modes if m not in MODES]:
        ap.error(f"unknown mode(s) {bad}; known: {', '.join(MODES)}")
    if any(not 1 <= n <= MAX_CONNECTIONS for n in Ns):
        ap.error(f"--connections must be 1..{MAX_CONNECTIONS} (servers and generators have a 20,000 open-file hard limit)")
    if args.channels * args.subscribers > MAX_CONNECTIONS:
        ap.error(f"--channels x --subscribers must be at most {MAX_CONNECTIONS}")
    if args.base_port % 2 == 0:
        ap.error("--base-port must be odd")
    if not 1 <= args.repeat <= 9:
        ap.error("--repeat must be 1..9")

    # binaries
    gp_bin = os.environ.get("GRIPPROXY_BIN")
    if not gp_bin:
        # .build-release is the scratch path the README's release build uses beside the debug .build
        candidates = [os.path.join(REPO, d, "release", "gripproxy") for d in (".build-release", ".build")]
        gp_bin = next((c for c in candidates if os.access(c, os.X_OK)), os.path.join(REPO, ".build", "debug", "gripproxy"))
    gp_real = os.path.realpath(gp_bin)
    build = "release" if "/release/" in gp_real else "debug" if "/debug/" in gp_real else "unknown (GRIPPROXY_BIN)"
    if "gripproxy" in targets:
        if not os.access(gp_bin, os.X_OK):
            log(f"GripProxy binary not found: {gp_bin} (swift build -c release, set GRIPPROXY_BIN, or leave gripproxy out of --targets)")
            return 3
        if build != "release":
            log("!" * 78)
            log(f"WARNING: {gp_bin} is a {build} build. Its performance numbers are MEANINGLESS.")
            log("!" * 78)
    if "floor" in targets and not os.access(args.floor_bin, os.X_OK):
        log(f"floor binary not found: {args.floor_bin} (cd bench/floor && swift build -c release; bench/run does it)")
        return 3

    # ports: a block of 20 per target, all odd
    ports = {}
    for k, t in enumerate(TARGETS):
        b = args.base_port + 20 * k
        ports[t] = {"client": b, "publish": b + 2, "zmq": (b + 4, b + 6, b + 8), "backend": b + 10}
    needed = []
    for t in targets:
        p = ports[t]
        needed += [(f"{t} client", p["client"]), (f"{t} publish", p["publish"])]
        if t.startswith("pushpin"):
            needed += [(f"{t} zmq", z) for z in p["zmq"]]
        if "ws" in modes and t != "floor":
            needed.append((f"{t} ws backend", p["backend"]))
    taken = [f"{n}={p}" for n, p in needed if not port_free(p)]
    if taken:
        log("refusing to start: port(s) already in use: " + ", ".join(taken) + " (use --base-port)")
        return 4

    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    runroot = os.path.join(HERE, ".run", stamp)
    os.makedirs(runroot, exist_ok=True)
    outdir = args.out or os.path.join(HERE, "results", stamp)
    os.makedirs(outdir, exist_ok=True)

    gp_mtime, gp_version, gp_run = "?", "?", gp_bin
    if "gripproxy" in targets:
        os.makedirs(os.path.join(runroot, "bin"), exist_ok=True)
        gp_run = os.path.join(runroot, "bin", "gripproxy")
        snapshot_binary(gp_bin, gp_run)
        gp_mtime = datetime.datetime.fromtimestamp(os.stat(gp_run).st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        try:
            gp_version = subprocess.run([gp_run, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    pp_version = "?"
    try:
        pp_version = subprocess.run(["pushpin", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass

    def make_server(t: str, mode: str, workdir: str) -> Server:
        p = ports[t]
        backend = None
        if mode == "ws" and t != "floor":
            backend = [sys.executable, os.path.join(HERE, "ws_backend.py"), "--port", str(p["backend"]),
                       "--stats", os.path.join(workdir, "backend-stats.json"), "--max-seconds", str(int(args.max_minutes * 60))]
        route = f"* localhost:{p['backend']},over_http" if backend else "* test"
        if t == "gripproxy":
            argv = [gp_run, "--port", f"127.0.0.1:{p['client']}", "--publish-port", f"127.0.0.1:{p['publish']}",
                    "--route", route, "--loglevel", "1"]
            return Server(t, argv, p["client"], p["publish"], workdir, backend=backend, backend_port=p["backend"])
        if t == "floor":
            argv = [args.floor_bin, "--port", f"127.0.0.1:{p['client']}", "--publish-port", f"127.0.0.1:{p['publish']}"]
            return Server(t, argv, p["client"], p["publish"], workdir)
        env = dict(os.environ, PUSHPIN_MESSAGE_RATE="2500" if t == "pushpin-default" else "", PUSHPIN_LOG_LEVEL="1",
                   PUSHPIN_ROUTE=route, TMPDIR="/tmp")
        argv = [os.path.join(HERE, "targets", "pushpin.sh"), os.path.join(workdir, "pushpin"), str(p["client"]),
                str(p["publish"]), *map(str, p["zmq"])]
        return Server(t, argv, p["client"], p["publish"], workdir, env=env, backend=backend, backend_port=p["backend"])

    def on_alarm(signum, frame):
        raise TimeoutError(f"--max-minutes {args.max_minutes:g} reached")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.max_minutes * 60))
    signal.signal(signal.SIGTERM, lambda s, f: (_ for _ in ()).throw(KeyboardInterrupt()))

    load1 = float(open("/proc/loadavg").read().split()[0])
    meta = {
        "date": stamp, "targets": ",".join(targets), "modes": ",".join(modes), "connections": ",".join(map(str, Ns)),
        "repeat": args.repeat, "gripproxy_bin": gp_bin if "gripproxy" in targets else "-", "gripproxy_bin_mtime": gp_mtime,
        "build": build if "gripproxy" in targets else "-", "gripproxy_version": gp_version,
        "floor_bin": os.path.relpath(args.floor_bin, REPO), "repo_commit": git_commit(), "pushpin_version": pp_version,
        "kernel": os.uname().release, "cpus": NCPU, "loadavg_1min_at_start": load1, "quick": q,
        "command": " ".join(["bench/run"] + [a for i, a in enumerate(sys.argv[1:], 1)
                                              if a not in ("--loadgen", "--floor-bin")
                                              and sys.argv[i - 1] not in ("--loadgen", "--floor-bin")]),
        "busy_runs": 0,
    }
    if load1 > 0.5:
        log(f"load average is {load1:.2f}: waiting (at most {args.quiet_wait:.0f} s) for the machine to be quiet")
    pct = wait_machine_quiet(args.quiet_wait)
    if pct > 15:
        log(f"WARNING: the machine is still {pct:.0f}% busy with other programs: numbers will be noisy")

    plan = []
    for rep in range(1, args.repeat + 1):
        for mode in modes:
            if "connections" in phases:
                for N in Ns:
                    for t in targets:
                        plan.append(("conn", rep, mode, N, t))
            if "throughput" in phases:
                for t in targets:
                    plan.append(("tp", rep, mode, 0, t))
    ctx = Ctx(args, args.loadgen, AddressPool(), len(plan))
    conn_results, tp_results = [], []
    try:
        for kind, rep, mode, N, t in plan:
            workdir = os.path.join(runroot, f"{t}-{mode}-{'tp' if kind == 'tp' else N}-r{rep}")
            ctx.workdir, ctx.tag = workdir, f"{t}-{mode}"
            ctx.label = f"{t} {mode} " + ("throughput" if kind == "tp" else f"N={N:,}") + (f" (repeat {rep})" if args.repeat > 1 else "")
            os.makedirs(workdir, exist_ok=True)
            busy = wait_machine_quiet(min(args.quiet_wait, 30))
            if busy > 15:
                meta["busy_runs"] += 1
            s = make_server(t, mode, workdir)
            ctx.progress(f"starting (machine {busy:.0f}% busy before)")
            r: dict = {"target": t, "mode": mode, "repeat": rep, "machine_busy_before_pct": busy}
            if kind == "conn":
                r["N"] = N
            try:
                s.start()
                r.update(run_connections(s, mode, N, ctx) if kind == "conn" else run_throughput(s, mode, ctx))
                r["server_alive_after"] = s.alive()
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
                r["error"] = str(e)
                log(f"{ctx.label}: FAILED: {e}")
            finally:
                s.stop()
                r["stop"] = s.stop_info
                r["log_findings"] = log_findings(workdir)
                try:
                    with open(os.path.join(workdir, "backend-stats.json")) as f:
                        r["backend_stats"] = json.load(f)
                except OSError:
                    pass
            (conn_results if kind == "conn" else tp_results).append(r)
            ctx.done_runs += 1
    except (KeyboardInterrupt, TimeoutError) as e:
        meta["interrupted"] = str(e) or "interrupted"
        log(f"stopping early: {meta['interrupted']}")
    finally:
        signal.alarm(0)
        if gp_run != gp_bin:
            try:
                os.unlink(gp_run)
            except OSError:
                pass

    meta["minutes"] = round((time.time() - T0) / 60, 1)
    ok_conn = [r for r in conn_results if not r.get("error")]
    ok_tp = [r for r in tp_results if not r.get("error")]
    chart_files = charts(outdir, ok_conn, ok_tp, targets, modes, Ns)
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump({"meta": meta, "connections": conn_results, "throughput": tp_results}, f, indent=1, default=str)
    _, tables = write_report(outdir, ok_conn + [r for r in conn_results if r.get("error")], ok_tp + [r for r in tp_results if r.get("error")],
                             meta, targets, modes, Ns, chart_files)
    print()
    if build != "release" and "gripproxy" in targets:
        print(f"WARNING: GripProxy binary is a {build} build: its numbers are meaningless for performance.")
    print(f"{', '.join(targets)}; modes {', '.join(modes)}; N = {', '.join(f'{n:,}' for n in Ns)}; "
          f"median of {args.repeat}; {meta['minutes']} min")
    for mode in modes:
        print(f"\n{mode}:\n{tables[mode]}")
    notes = checks(conn_results, tp_results)
    print("\nErrors, losses and anomalies:" if notes else "\nErrors, losses and anomalies: none")
    for n in notes:
        print(f"- {n}")
    print(f"\nreport: {os.path.relpath(os.path.join(outdir, 'report.md'), REPO)}")
    return 130 if meta.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())

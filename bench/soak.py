#!/usr/bin/env python3
"""GripProxy soak test (issue 12 item 6): many mixed clients with churn, slow readers and slowloris clients,
steady publishes and bursts, for minutes; fails on any loss to well-behaved clients, RSS drift, leaked file
descriptors, error lines in the log, or a dead gateway.

    bench/soak [--minutes 10] [--connections 15000] [--base-port 17501] ...   (bench/soak --help)

bench/soak compiles loadgen.c and installs matplotlib when missing, then runs this file. What it does and
checks: bench/README.md, section "Soak". Writes bench/results/<date>-soak/ (report.md, samples.json,
soak.png) and prints a summary; exit status 0 only when every check passed (1 when one failed, 2 when the
run could not start).

`soak.py sse-backend --port P` is the soak's own small GRIP backend for Server-Sent Events (used by the
driver itself).

Python standard library only (matplotlib, when present, draws the chart).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import bench  # noqa: E402  (Server, AddressPool, /proc readers, port checks)
import ws_backend  # noqa: E402  (read_request)

PER_GEN_MAX = 4000  # clients per generator process: the open-file hard limit is 20,000 and cannot be raised
MODES = ("stream", "sse", "ws", "longpoll")
# share of the stable population per mode
MIX = {"stream": 0.35, "sse": 0.20, "ws": 0.25, "longpoll": 0.20}
CHANNEL = {"stream": "soak-a", "ws": "soak-a", "sse": "soak-sse", "longpoll": "soak-lp"}
PATH = {"stream": "/stream?channel=", "sse": "/sse?channel=", "ws": "/ws?channel=", "longpoll": "/response?channel="}
CHURN_SLICES = 8  # the churning clients are 8 generator processes, one replaced every 60/8 s
POOL_IDLE_S = 60  # GripProxy's backend pool closes idle connections after 60 s (BackendClient.swift)


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the SSE backend


async def sse_serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: dict) -> None:
    """GET /sse?channel=X -> 200 text/event-stream, Grip-Hold: stream, Grip-Channel: X, body one event
    "data: [stream opened]". Anything else: 404. HTTP/1.1 keep-alive."""
    try:
        while True:
            request = await ws_backend.read_request(reader)
            if request is None:
                return
            target, headers, _ = request
            stats["requests"] += 1
            split = urllib.parse.urlsplit(target)
            if split.path.rstrip("/") == "/sse":
                channel = urllib.parse.parse_qs(split.query).get("channel", ["test"])[0]
                body = b"event: open\ndata: [stream opened]\n\n"
                extra = ["Content-Type: text/event-stream", "Cache-Control: no-cache", "Grip-Hold: stream",
                         f"Grip-Channel: {channel}"]
                status = "200 OK"
                stats["holds"] += 1
            else:
                body, extra, status = b"no such resource\n", ["Content-Type: text/plain"], "404 Not Found"
                stats["not_found"] += 1
            close = headers.get("connection", "").lower() == "close"
            resp = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}"] + extra + (["Connection: close"] if close else [])
            writer.write(("\r\n".join(resp) + "\r\n\r\n").encode() + body)
            await writer.drain()
            if close:
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def sse_backend_main(port: int, stats_path: str | None, max_seconds: float) -> int:
    stats = {"requests": 0, "holds": 0, "not_found": 0}
    server = await asyncio.start_server(lambda r, w: sse_serve(r, w, stats), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    if stats_path:
        with open(stats_path, "w") as f:
            json.dump(stats, f)
    return 0


# --------------------------------------------------------------------------- generator processes


class Gen:
    """One `loadgen hold` process: commands on stdin, one line per answer on stdout (read with timeouts)."""

    def __init__(self, argv: list[str], errpath: str, role: str, mode: str, count: int):
        self.role, self.mode, self.count = role, mode, count
        self.born = time.time()
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(errpath, "wb"),
                                  bufsize=0, preexec_fn=bench.raise_nofile)
        self.fd = self.p.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.ready: dict | None = None
        self.last: dict = {}  # the last STATS answer

    def readline(self, timeout: float) -> str | None:
        end = time.time() + timeout
        while b"\n" not in self.buf:
            left = end - time.time()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except BlockingIOError:
                    continue
                if not chunk:
                    return None
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def answer(self, timeout: float, want: str = "{") -> str | None:
        """The next line starting with `want`; a READY line met on the way is kept."""
        end = time.time() + timeout
        while True:
            line = self.readline(max(0.0, end - time.time()))
            if line is None:
                return None
            if line.startswith("READY "):
                self.ready = json.loads(line[6:])
                if want == "READY":
                    return line
                continue
            if line.startswith(want):
                return line

    def wait_ready(self, timeout: float) -> dict | None:
        if self.ready is None:
            self.answer(timeout, "READY")
        return self.ready

    def send(self, line: str) -> bool:
        try:
            self.p.stdin.write((line + "\n").encode())
            return True
        except OSError:
            return False

    def stats(self, timeout: float = 10.0) -> dict | None:
        if self.p.poll() is not None or not self.send("STATS"):
            return None
        line = self.answer(timeout)
        if line is None:
            return None
        self.last = json.loads(line)
        return self.last

    def quit(self) -> None:
        self.send("QUIT")
        try:
            self.p.stdin.close()
        except OSError:
            pass

    def join(self, timeout: float = 30.0) -> None:
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()

    def cpu(self) -> float:
        st = bench.read_stat(self.p.pid)
        return st[2] if st else 0.0


def hold_argv(loadgen: str, port: int, src: str, count: int, mode: str, channel: str, pending: int,
              max_seconds: int, ready_timeout: int, lat_file: str, retries: int = 5, retry_delay_ms: int = 200) -> list[str]:
    return [loadgen, "hold", "--target", f"127.0.0.1:{port}", "--src", src, "--count", str(count), "--mode", mode,
            "--path", PATH[mode] + channel, "--max-pending", str(pending), "--retries", str(retries),
            "--retry-delay-ms", str(retry_delay_ms), "--ready-timeout", str(ready_timeout),
            "--lat-file", lat_file, "--max-seconds", str(max_seconds)]


def pub_argv(loadgen: str, port: int, src: str, channel: str, formats: str, count: int, first_seq: int,
             interval_ms: int = 0, concurrency: int = 1, pad: int = 0, max_seconds: int = 600) -> list[str]:
    return [loadgen, "pub", "--target", f"127.0.0.1:{port}", "--src", src, "--channel", channel, "--count", str(count),
            "--concurrency", str(concurrency), "--first-seq", str(first_seq), "--pad", str(pad), "--formats", formats,
            "--interval-ms", str(interval_ms), "--max-seconds", str(max_seconds)]


class Pub:
    """One `loadgen pub` process running in the background."""

    def __init__(self, argv: list[str], workdir: str, name: str, kind: str, channel: str, count: int):
        self.name, self.kind, self.channel, self.count = name, kind, channel, count
        self.out_path = os.path.join(workdir, f"pub-{name}.out")
        self.err_path = os.path.join(workdir, f"pub-{name}.err")
        self.started = time.time()
        self.p = subprocess.Popen(argv, stdout=open(self.out_path, "wb"), stderr=open(self.err_path, "wb"),
                                  stdin=subprocess.DEVNULL)
        self.result: dict | None = None

    def done(self) -> bool:
        return self.p.poll() is not None

    def finish(self, timeout: float) -> dict:
        try:
            self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        try:
            with open(self.out_path) as f:
                self.result = json.loads(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            self.result = {"sent": 0, "ok": 0, "non200": 0, "errors": self.count, "missing_output": True}
        self.result["exit"] = self.p.returncode
        return self.result


# --------------------------------------------------------------------------- slow readers and slowloris


class Misbehavers:
    """Slow readers and slowloris clients, one thread each (they do one small thing a second).

    Slow reader: a stream client of `soak-slow` (padded messages, 10 a second) and `soak-a` with a 4 KB
    SO_RCVBUF that reads 256 bytes a second for `stall` seconds, then reads as fast as it can for up to 10 s:
    an end of stream then means GripProxy closed it (streams never end otherwise: the test target's stream
    hold has no timeout). Reconnects 2 s later.
    Slowloris: writes a 110-byte request head one byte a second and counts what it gets: 408 within
    client_head_timeout (10 s) expected. Reconnects 1 s later."""

    def __init__(self, port: int, src: str, slow: int, loris: int, stall: float, stop: threading.Event):
        self.port, self.src, self.stop = port, src, stop
        self.stall = stall
        self.lock = threading.Lock()
        self.slow = {"clients": slow, "connects": 0, "connect_errors": 0, "cut": 0, "cut_bytes": [],
                     "not_cut": 0, "reset": 0, "bad_answer": 0, "interrupted": 0}
        self.loris = {"clients": loris, "attempts": 0, "connect_errors": 0, "answered_408": 0, "t408": [],
                      "other_answer": 0, "other_answers": {}, "closed_without_answer": 0, "not_cut": 0,
                      "interrupted": 0}
        self.threads = [threading.Thread(target=self.slow_reader, args=(i,), daemon=True) for i in range(slow)]
        self.threads += [threading.Thread(target=self.slowloris, args=(i,), daemon=True) for i in range(loris)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=15)

    def connect(self, rcvbuf: int = 0) -> socket.socket | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            s.bind((self.src, 0))
            s.settimeout(5)
            s.connect(("127.0.0.1", self.port))
            return s
        except OSError:
            s.close()
            return None

    def slow_reader(self, i: int) -> None:
        rnd = random.Random(i)
        self.stop.wait(rnd.uniform(0, 10))  # spread them out
        req = (f"GET /stream?channel=soak-slow&channel=soak-a HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
               "User-Agent: soak-slow-reader\r\n\r\n").encode()
        while not self.stop.is_set():
            s = self.connect(rcvbuf=4096)
            if s is None:
                with self.lock:
                    self.slow["connect_errors"] += 1
                self.stop.wait(2)
                continue
            with self.lock:
                self.slow["connects"] += 1
            outcome, got = "interrupted", 0
            try:
                s.sendall(req)
                s.settimeout(0)
                stall_end = time.time() + self.stall * rnd.uniform(0.8, 1.2)
                first = b""
                while time.time() < stall_end and not self.stop.is_set() and outcome == "interrupted":
                    if self.stop.wait(1.0):
                        break
                    try:
                        d = s.recv(256)
                    except BlockingIOError:
                        continue
                    if not d:
                        outcome = "cut"  # the kernel buffers drained during the stall (seldom)
                        break
                    if len(first) < 12:
                        first += d
                    got += len(d)
                if outcome == "interrupted" and not self.stop.is_set():
                    if not first.startswith(b"HTTP/1.1 200"):
                        outcome = "bad_answer"
                    else:
                        # drain as fast as possible: the end of the stream comes after what was queued
                        s.settimeout(2.0)
                        drain_end = time.time() + 10
                        outcome = "not_cut"
                        while time.time() < drain_end and not self.stop.is_set():
                            try:
                                d = s.recv(1 << 20)
                            except socket.timeout:
                                break  # nothing more: the connection is still open
                            if not d:
                                outcome = "cut"
                                break
                            got += len(d)
                        if self.stop.is_set() and outcome == "not_cut":
                            outcome = "interrupted"
            except (ConnectionResetError, BrokenPipeError):
                outcome = "reset"
            except OSError:
                outcome = "reset"
            finally:
                s.close()
            with self.lock:
                self.slow[outcome] += 1
                if outcome == "cut":
                    self.slow["cut_bytes"].append(got)
            self.stop.wait(2)

    def slowloris(self, i: int) -> None:
        rnd = random.Random(1000 + i)
        self.stop.wait(rnd.uniform(0, 10))
        head = (f"GET /stream?channel=soak-loris HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"User-Agent: soak-slowloris\r\nX-Pad: {'a' * 40}\r\n\r\n").encode()
        while not self.stop.is_set():
            s = self.connect()
            if s is None:
                with self.lock:
                    self.loris["connect_errors"] += 1
                self.stop.wait(2)
                continue
            with self.lock:
                self.loris["attempts"] += 1
            t0, answer, outcome = time.time(), b"", None
            try:
                s.settimeout(0)
                for k in range(len(head)):
                    if self.stop.is_set():
                        outcome = "interrupted"
                        break
                    try:
                        s.send(head[k:k + 1])
                    except (BlockingIOError, OSError):
                        pass  # the answer (or the reset) is read below
                    r, _, _ = select.select([s], [], [], 1.0)
                    if r:
                        try:
                            d = s.recv(4096)
                        except OSError:
                            d = b""
                        answer += d
                        if not d or b"\r\n\r\n" in answer:
                            break
                else:
                    outcome = "not_cut"  # the whole head went out a byte a second and nothing came
            except OSError:
                pass
            finally:
                s.close()
            elapsed = time.time() - t0
            with self.lock:
                if outcome == "interrupted":
                    self.loris["interrupted"] += 1
                elif outcome == "not_cut":
                    self.loris["not_cut"] += 1
                elif answer.startswith(b"HTTP/1.1 408") or answer.startswith(b"HTTP/1.0 408"):
                    self.loris["answered_408"] += 1
                    self.loris["t408"].append(round(elapsed, 2))
                elif answer:
                    self.loris["other_answer"] += 1
                    key = answer[:40].decode(errors="replace").split("\r\n")[0]
                    self.loris["other_answers"][key] = self.loris["other_answers"].get(key, 0) + 1
                else:
                    self.loris["closed_without_answer"] += 1
            self.stop.wait(1)

    def snapshot(self) -> dict:
        with self.lock:
            return {"slow": json.loads(json.dumps(self.slow)), "loris": json.loads(json.dumps(self.loris))}


# --------------------------------------------------------------------------- /proc and metrics


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def fd_breakdown(pid: int, ports: dict) -> dict:
    """The process's descriptors by kind: listeners, client connections (local port = the client port),
    publish connections, metrics connections, backend connections (remote port = a backend's), other sockets,
    other descriptors."""
    inodes, other = set(), 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
            else:
                other += 1
    except OSError:
        return {}
    kinds = {"listeners": 0, "client": 0, "publish": 0, "metrics": 0, "backend": 0, "other_sockets": 0,
             "non_sockets": other}
    found = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    inode = parts[9]
                    if inode not in inodes or inode in found:
                        continue
                    found.add(inode)
                    lport = int(parts[1].rsplit(":", 1)[1], 16)
                    rport = int(parts[2].rsplit(":", 1)[1], 16)
                    if parts[3] == "0A":
                        kinds["listeners"] += 1
                    elif lport == ports["client"]:
                        kinds["client"] += 1
                    elif lport == ports["publish"]:
                        kinds["publish"] += 1
                    elif lport == ports["metrics"]:
                        kinds["metrics"] += 1
                    elif rport in (ports["ws_backend"], ports["sse_backend"]):
                        kinds["backend"] += 1
                    else:
                        kinds["other_sockets"] += 1
        except OSError:
            pass
    kinds["other_sockets"] += len(inodes - found)  # unix sockets, eventfd-like sockets
    kinds["total"] = len(inodes) + other
    kinds["without_backend"] = kinds["total"] - kinds["backend"]
    return kinds


def scrape(port: int) -> dict:
    """The gateway's Prometheus counters and gauges (name -> value, labels summed)."""
    out: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as r:
            text = r.read().decode(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)", line)
        if m:
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                pass
    return out


def vm_status(pid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k = line.split(":")[0]
                if k in ("VmRSS", "RssAnon", "VmHWM", "Threads"):
                    out[k] = int(line.split()[1])
    except OSError:
        pass
    return out


def log_levels(path: str) -> dict:
    """Counts by level, the error/critical lines (all, up to 200 kept) and the warnings grouped by message."""
    counts: dict[str, int] = {}
    errors: list[str] = []
    warnings: dict[str, int] = {}
    warning_examples: dict[str, str] = {}
    level_re = re.compile(r"^\S+ (trace|debug|info|notice|warning|error|critical) ")
    try:
        with open(path, errors="replace") as f:
            for line in f:
                m = level_re.match(line)
                if not m:
                    counts["unparsed"] = counts.get("unparsed", 0) + 1
                    if "fatal" in line.lower() or "error" in line.lower():
                        errors.append(line.rstrip()) if len(errors) < 200 else None
                        counts["unparsed_error"] = counts.get("unparsed_error", 0) + 1
                    continue
                lvl = m.group(1)
                counts[lvl] = counts.get(lvl, 0) + 1
                if lvl in ("error", "critical"):
                    if len(errors) < 200:
                        errors.append(line.rstrip())
                elif lvl == "warning":
                    msg = line.split("] ", 1)[-1].strip()
                    key = re.sub(r"\d+", "N", msg)[:120]
                    warnings[key] = warnings.get(key, 0) + 1
                    warning_examples.setdefault(key, line.rstrip()[:300])
    except OSError:
        pass
    return {"counts": counts, "error_lines": errors, "warnings": warnings, "warning_examples": warning_examples}


# --------------------------------------------------------------------------- the run


def plan(args) -> dict:
    N = args.connections
    slow = args.slow_readers if args.slow_readers >= 0 else max(4, min(30, N // 500))
    loris = args.slowloris if args.slowloris >= 0 else max(4, min(30, N // 500))
    churn = int(round(N * args.churn_pct / 100.0))
    stable = N - slow - loris - churn
    if stable < len(MODES) * 10:
        raise SystemExit("soak: --connections too small for the mix")
    per_mode = {m: int(stable * MIX[m]) for m in MODES}
    per_mode["stream"] += stable - sum(per_mode.values())
    D = int(round(args.minutes * 60))
    # subscribers per channel (the churning slices are stream, sse, ws, longpoll, twice)
    cs = max(1, churn // CHURN_SLICES) if churn else 0
    subs = {"soak-a": per_mode["stream"] + per_mode["ws"] + 4 * cs + slow, "soak-sse": per_mode["sse"] + 2 * cs,
            "soak-lp": per_mode["longpoll"] + 2 * cs}
    # The steady rate and the burst size: as asked, or the defaults (5/s, 200), lowered when they would offer
    # more than --steady-budget deliveries/s or --burst-budget deliveries per burst: a soak looks for drift and
    # loss at a load the machine can carry, not for what an overload does (bench/README.md, Soak).
    lp_rate = args.lp_rate
    if args.rate > 0:
        rate, rate_why = args.rate, "as asked"
    else:
        fits = (args.steady_budget - lp_rate * subs["soak-lp"]) / (subs["soak-a"] + subs["soak-sse"])
        rate = max(0.2, min(5.0, round(fits, 2)))
        rate_why = "default" if rate == 5.0 else f"5/s lowered to fit --steady-budget {args.steady_budget:,} deliveries/s"
    if args.burst >= 0:
        burst, burst_why = args.burst, "as asked"
    else:
        burst = max(10, min(200, int(args.burst_budget / (subs["soak-a"] + subs["soak-sse"]))))
        burst_why = "default" if burst == 200 else f"200 lowered to fit --burst-budget {args.burst_budget:,} deliveries"
    interval_ms = int(round(1000 / rate))
    bursts = [t for t in range(args.burst_first, D - 10, args.burst_every)] if burst > 0 else []
    steady_a = int(D * 1000 / interval_ms)
    # Long-polls: publishes at lp_rate, but none from 1 s before a burst to --lp-quiet s after it. A long-poll
    # has no subscription while it re-polls (no prev-id), and a burst keeps the event loops busy for seconds, so a
    # message published then finds many long-polls between two polls: the long-poll race, not a loss (README).
    lp_ms = int(round(1000 / lp_rate))
    lp_times = [i * lp_ms / 1000 for i in range(int(D * 1000 // lp_ms))]
    lp_times = [x for x in lp_times if not any(b - 1 <= x < b + args.lp_quiet for b in bursts)]
    lp_segments = []  # (start s, count, first seq)
    for i, x in enumerate(lp_times):
        if lp_segments and abs(lp_segments[-1][0] + lp_segments[-1][1] * lp_ms / 1000 - x) < 1e-6:
            lp_segments[-1][1] += 1
        else:
            lp_segments.append([x, 1, i])
    steady_lp = len(lp_times)
    return {
        "lp_interval_ms": lp_ms, "lp_segments": lp_segments, "lp_quiet_s": args.lp_quiet,
        "subscribers": subs, "rate": 1000 / interval_ms, "rate_why": rate_why, "interval_ms": interval_ms,
        "lp_rate": lp_rate, "burst_why": burst_why,
        "offered_steady_deliveries_per_s": round(1000 / interval_ms * (subs["soak-a"] + subs["soak-sse"])
                                                 + lp_rate * subs["soak-lp"]),
        "offered_burst_deliveries": burst * (subs["soak-a"] + subs["soak-sse"]),
        "N": N, "duration_s": D, "stable": per_mode, "stable_total": stable, "churn": churn,
        "churn_slice": max(1, churn // CHURN_SLICES) if churn else 0, "slow_readers": slow, "slowloris": loris,
        "bursts_at_s": bursts, "burst": burst,
        "steady": {"soak-a": steady_a, "soak-sse": steady_a, "soak-lp": steady_lp},
        # seqs tracked per channel: steady 0..S-1, then each burst's B seqs
        "tracked": {"soak-a": steady_a + len(bursts) * burst, "soak-sse": steady_a + len(bursts) * burst,
                    "soak-lp": steady_lp},
    }


class Soak:
    def __init__(self, args):
        self.args = args
        self.plan = plan(args)
        b = args.base_port
        self.ports = {"client": b, "publish": b + 2, "ws_backend": b + 10, "sse_backend": b + 12, "metrics": b + 14}
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        self.stamp = stamp
        self.workdir = os.path.join(HERE, ".run", f"soak-{stamp}")
        self.outdir = args.out or os.path.join(HERE, "results", f"{stamp}-soak")
        self.pool = bench.AddressPool()
        self.samples: list[dict] = []
        self.events: list[dict] = []
        self.stable: list[Gen] = []
        self.churn: list[Gen] = []
        self.churn_done = {"slices": 0, "opened": 0, "failed": 0, "retried": 0, "deliveries": 0,
                           "closed_by_server": 0, "by_mode": {m: 0 for m in MODES}}
        self.pubs: list[Pub] = []
        self.server: bench.Server | None = None
        self.backends: list[subprocess.Popen] = []
        self.stop = threading.Event()
        self.mis: Misbehavers | None = None
        self.problems: list[str] = []  # things that stopped the run early
        self.t0 = 0.0
        self.deliv_prev: dict[int, int] = {}
        self.deliv_total = 0
        self.retired: list[Gen] = []
        self.aborted = False
        self.final: dict = {}
        self.pubres: dict = {}
        self.mis_final: dict = {}
        self.fd_end: dict = {}
        self.fd_back_s = None
        self.rss_end = 0
        self.settle: list = []
        self.settle_s = 0
        self.alive_at_end = False
        self.stop_info = ""
        self.exit_status = None
        self.backend_stats: dict = {}
        self.gen_errors: dict = {}

    # ---------------------------------------------------------------- start and stop

    def binary(self) -> str:
        b = os.environ.get("GRIPPROXY_BIN") or os.path.join(REPO, ".build-release", "x86_64-unknown-linux-gnu",
                                                             "release", "gripproxy")
        if not os.path.exists(b):
            for alt in (os.path.join(REPO, ".build", "release", "gripproxy"),):
                if os.path.exists(alt):
                    b = alt
        if not os.path.exists(b):
            raise SystemExit(f"soak: no GripProxy binary at {b} (set GRIPPROXY_BIN)")
        return b

    def start(self) -> None:
        a = self.args
        for name, port in self.ports.items():
            if not bench.port_free(port):
                raise SystemExit(f"soak: port {port} ({name}) is taken; choose another --base-port")
        src_bin = self.binary()
        os.makedirs(self.workdir, exist_ok=True)
        # a copy, so that a rebuild during the run cannot change what runs
        self.bin = os.path.join(self.workdir, "gripproxy")
        shutil.copy2(src_bin, self.bin)
        self.bin_info = {"path": src_bin, "mtime": datetime.datetime.fromtimestamp(os.stat(src_bin).st_mtime).isoformat(
            timespec="seconds"), "size": os.stat(src_bin).st_size}
        if "debug" in src_bin:
            log("WARNING: a debug build: the soak's CPU figures mean little")
        wsb = subprocess.Popen([sys.executable, os.path.join(HERE, "ws_backend.py"), "--port", str(self.ports["ws_backend"]),
                                "--stats", os.path.join(self.workdir, "ws-backend-stats.json"),
                                "--max-seconds", str(self.plan["duration_s"] + 1800)],
                               stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                               stderr=open(os.path.join(self.workdir, "ws-backend.log"), "wb"),
                               start_new_session=True, preexec_fn=bench.raise_nofile)
        sseb = subprocess.Popen([sys.executable, os.path.abspath(__file__), "sse-backend", "--port",
                                 str(self.ports["sse_backend"]), "--stats", os.path.join(self.workdir, "sse-backend-stats.json"),
                                 "--max-seconds", str(self.plan["duration_s"] + 1800)],
                                stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.workdir, "sse-backend.log"), "wb"),
                                start_new_session=True, preexec_fn=bench.raise_nofile)
        self.backends = [wsb, sseb]
        for port in (self.ports["ws_backend"], self.ports["sse_backend"]):
            if not bench.wait_listening(port, 15):
                self.stop_all()
                raise SystemExit(f"soak: a backend did not start; see {self.workdir}/*-backend.log")
        argv = [self.bin, "--port", f"127.0.0.1:{self.ports['client']}", "--publish-port",
                f"127.0.0.1:{self.ports['publish']}", "--prometheus-port", f"127.0.0.1:{self.ports['metrics']}",
                "--loglevel", str(a.loglevel),
                "--route", f"*,path_beg=/ws localhost:{self.ports['ws_backend']},over_http",
                "--route", f"*,path_beg=/sse localhost:{self.ports['sse_backend']}",
                "--route", "* test"]
        self.argv = argv
        self.server = bench.Server("gripproxy", argv, self.ports["client"], self.ports["publish"], self.workdir)
        self.server.start()
        self.pid = self.server.proc.pid
        log(f"gripproxy pid {self.pid} on 127.0.0.1:{self.ports['client']} (publish {self.ports['publish']}, "
            f"metrics {self.ports['metrics']}); log {self.workdir}/server.log")

    def stop_all(self) -> None:
        self.stop.set()
        for g in self.stable + self.churn:
            if g.p.poll() is None:
                g.quit()
        for g in self.stable + self.churn:
            g.join(10)
        for p in self.pubs:
            if p.p.poll() is None:
                p.p.kill()
                p.p.wait()
        if self.server and self.server.alive():
            self.server.stop()
        self.stop_backends()

    # ---------------------------------------------------------------- pieces

    def stop_backends(self) -> None:
        """SIGTERM each backend process still running (they write their counters on exit); kill after 10 s."""
        for b in self.backends:
            if b.poll() is None:
                b.send_signal(signal.SIGTERM)
                try:
                    b.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    b.kill()
                    b.wait()

    def new_gen(self, role: str, mode: str, count: int, channel: str, pending: int, ready_timeout: int,
                lifetime: int, tag: str) -> Gen:
        argv = hold_argv(self.args.loadgen, self.ports["client"], self.pool.next(), count, mode, channel, pending,
                         lifetime, ready_timeout, os.path.join(self.workdir, f"lat-{tag}"))
        return Gen(argv, os.path.join(self.workdir, f"loadgen-{tag}.err"), role, mode, count)

    def publish_now(self, name: str, channel: str, formats: str, count: int, first_seq: int, conc: int = 1,
                    interval_ms: int = 0, pad: int = 0, kind: str = "burst", max_seconds: int = 600) -> Pub:
        p = Pub(pub_argv(self.args.loadgen, self.ports["publish"], self.pool.next(), channel, formats, count, first_seq,
                         interval_ms, conc, pad, max_seconds), self.workdir, name, kind, channel, count)
        self.pubs.append(p)
        return p

    def warm_up(self) -> dict:
        """A few clients of every kind get 3 messages each and leave: the whole path works before the soak."""
        res = {}
        gens = {}
        for m in MODES:
            gens[m] = self.new_gen("warmup", m, 10, "warm-" + m, 10, 30, 120, f"warm-{m}")
        for m, g in gens.items():
            r = g.wait_ready(40)
            if not r or r["ok"] != 10:
                res[m] = {"ready": r}
                continue
            g.send("RESET 3")
            g.answer(10, "OK")
        time.sleep(0.5)
        fmt = {"stream": "stream", "sse": "sse", "ws": "ws", "longpoll": "response"}
        pubs = [self.publish_now(f"warm-{m}", "warm-" + m, fmt[m], 3, 0, interval_ms=300, kind="warmup") for m in MODES]
        for p in pubs:
            p.finish(30)
        for m, g in gens.items():
            if m in res:
                continue
            g.send("WAIT 3 10000 5000")
            line = g.answer(20)
            rep = json.loads(line) if line else {}
            try:
                os.unlink(rep.get("lat_file", ""))
            except OSError:
                pass
            res[m] = {"ready": g.ready, "complete": rep.get("complete"), "live": rep.get("live"),
                      "lost": rep.get("lost_tracked")}
        for g in gens.values():
            g.quit()
        for g in gens.values():
            g.join()
        return res

    def sample(self, phase: str) -> dict:
        t = time.time() - self.t0
        vs = vm_status(self.pid)
        st = bench.read_stat(self.pid)
        met = scrape(self.ports["metrics"])
        gens = {"stable": {}, "churn": {}}
        lat_p99 = lat_p50 = 0.0
        lat_n = 0
        delivered = 0
        for g in self.stable + self.churn:
            if g.p.poll() is not None:
                continue
            s = g.stats(5.0)
            if not s:
                continue
            key = id(g)
            prev = self.deliv_prev.get(key, 0)
            delivered += max(0, s["deliveries"] - prev)
            self.deliv_prev[key] = s["deliveries"]
            grp = gens[g.role].setdefault(g.mode, {"live": 0, "connected": 0, "closed_by_server": 0, "deliveries": 0,
                                                   "lat_n": 0, "p99_ms": None})
            grp["live"] += s["live"]
            grp["connected"] += s["connected"]
            grp["closed_by_server"] += s["closed_by_server"]
            grp["deliveries"] += s["deliveries"]
            if s["lat_n"]:
                grp["lat_n"] += s["lat_n"]
                grp["p99_ms"] = max(grp["p99_ms"] or 0.0, round(s["lat_us_p99"] / 1000, 2))
                lat_n += s["lat_n"]
                lat_p99 = max(lat_p99, s["lat_us_p99"])
                lat_p50 = max(lat_p50, s["lat_us_p50"])
        self.deliv_total += delivered
        busy, _, tot = bench.machine_times()
        t_fd = time.time()
        kinds = fd_breakdown(self.pid, self.ports)
        t_fd = time.time() - t_fd
        smp = {
            "t": round(t, 2), "phase": phase, "alive": self.server.alive(),
            "rss_kb": vs.get("VmRSS", 0), "rss_anon_kb": vs.get("RssAnon", 0), "hwm_kb": vs.get("VmHWM", 0),
            "threads": vs.get("Threads", 0), "fds": fd_count(self.pid), "cpu_s": st[2] if st else None,
            "fd_kinds": kinds, "fd_scan_s": round(t_fd, 3),
            "connections": int(met["connection_connected"]) if "connection_connected" in met else None,
            "message_sent": met.get("message_sent"),
            "message_received": met.get("message_received"), "slow_client_closed": met.get("slow_client_closed"),
            "client_head_timeout": met.get("client_head_timeout"), "requests": met.get("request_received"),
            "client_deliveries": self.deliv_total, "client_deliveries_window": delivered,
            "lat_p99_ms": round(lat_p99 / 1000, 2) if lat_n else None, "lat_p50_ms": round(lat_p50 / 1000, 2) if lat_n else None,
            "lat_n": lat_n, "gens": gens, "machine_busy_s": busy, "machine_total_s": tot,
        }
        if self.samples:
            prev = self.samples[-1]
            dt = smp["t"] - prev["t"]
            if dt > 0:
                smp["client_deliveries_per_s"] = round(delivered / dt, 1)
                if smp["message_sent"] is not None and prev.get("message_sent") is not None:
                    smp["server_deliveries_per_s"] = round((smp["message_sent"] - prev["message_sent"]) / dt, 1)
                if smp["cpu_s"] is not None and prev.get("cpu_s") is not None:
                    smp["cpu_pct"] = round(100 * (smp["cpu_s"] - prev["cpu_s"]) / dt, 1)
                if tot > prev["machine_total_s"]:
                    smp["machine_busy_pct"] = round(100 * (busy - prev["machine_busy_s"]) / (tot - prev["machine_total_s"]), 1)
        self.samples.append(smp)
        return smp

    def event(self, what: str, **kw) -> None:
        e = {"t": round(time.time() - self.t0, 2) if self.t0 else 0.0, "what": what} | kw
        self.events.append(e)

    def retire_slice(self, g: Gen) -> None:
        s = g.stats(5.0)
        if s:
            prev = self.deliv_prev.pop(id(g), 0)
            self.deliv_total += max(0, s["deliveries"] - prev)
            self.churn_done["deliveries"] += s["deliveries"]
            self.churn_done["closed_by_server"] += s["closed_by_server"]
        g.quit()
        self.retired.append(g)

    def churn_slice(self, i: int, lifetime: float) -> Gen:
        m = MODES[i % len(MODES)]
        self.churn_done["slices"] += 1
        return self.new_gen("churn", m, self.plan["churn_slice"], CHANNEL[m], 32, 30,
                            int(lifetime + 300), f"churn-{self.churn_done['slices']}-{m}")

    # ---------------------------------------------------------------- the run itself

    def run(self) -> int:
        a, P = self.args, self.plan
        D = P["duration_s"]
        log(f"plan: {P['N']:,} connections for {D} s: stable {P['stable']} ({P['stable_total']:,}), churn "
            f"{P['churn']:,} ({CHURN_SLICES} slices of {P['churn_slice']}, one replaced every {60 / CHURN_SLICES:.1f} s), "
            f"{P['slow_readers']} slow readers, {P['slowloris']} slowloris; steady {P['rate']:.2f}/s ({P['rate_why']}; "
            f"long-poll {P['lp_rate']:g}/s), bursts of {P['burst']} ({P['burst_why']}) at {P['bursts_at_s']} s; offered "
            f"{P['offered_steady_deliveries_per_s']:,} deliveries/s steady, {P['offered_burst_deliveries']:,} per burst")
        self.start()
        self.load_start = os.getloadavg()
        time.sleep(1.0)
        self.fd_base = fd_breakdown(self.pid, self.ports)
        self.rss_base = vm_status(self.pid).get("VmRSS", 0)
        log(f"baseline before any client: {self.fd_base['total']} fds {self.fd_base}, RSS {self.rss_base / 1024:.1f} MB")

        self.warm = self.warm_up()
        log(f"warm-up: {self.warm}")
        bad = [m for m, r in self.warm.items() if r.get("complete") != 10]
        if bad:
            self.problems.append(f"warm-up failed for {bad}: {self.warm}")
            log(f"ERROR: warm-up failed for {bad}; stopping")
            return self.finish(aborted=True)

        # the stable population
        t_open = time.time()
        for m in MODES:
            n = P["stable"][m]
            ngen = max(1, -(-n // PER_GEN_MAX))
            for k in range(ngen):
                cnt = n // ngen + (1 if k < n % ngen else 0)
                self.stable.append(self.new_gen("stable", m, cnt, CHANNEL[m], 64, 240, D + 900, f"stable-{m}-{k}"))
        self.stable_ready = {"ok": 0, "failed": 0, "retried": 0}
        for g in self.stable:
            r = g.wait_ready(300)
            if not r:
                self.problems.append(f"a stable {g.mode} generator did not get ready")
                return self.finish(aborted=True)
            for k in ("ok", "failed", "retried"):
                self.stable_ready[k] += r[k]
        self.open_s = time.time() - t_open
        log(f"stable clients: {self.stable_ready['ok']:,} ready, {self.stable_ready['failed']} failed, "
            f"{self.stable_ready['retried']} re-opened, in {self.open_s:.1f} s")
        if self.stable_ready["failed"]:
            self.problems.append(f"{self.stable_ready['failed']} stable clients could not connect")
        for g in self.stable:
            g.send(f"RESET {P['tracked'][CHANNEL[g.mode]]}")
        for g in self.stable:
            if g.answer(30, "OK") is None:
                self.problems.append("a stable generator did not acknowledge RESET")
                return self.finish(aborted=True)
        time.sleep(1.0)

        # go
        self.t0 = time.time()
        self.sample("start")
        log(f"t=0: RSS {self.samples[-1]['rss_kb'] / 1024:.1f} MB, {self.samples[-1]['fds']} fds, "
            f"{self.samples[-1]['connections']} connections")
        steady_ms = P["interval_ms"]
        self.steady = [
            self.publish_now("steady-a", "soak-a", "stream,ws", P["steady"]["soak-a"], 0, interval_ms=steady_ms,
                             kind="steady", max_seconds=D + 300),
            self.publish_now("steady-sse", "soak-sse", "sse", P["steady"]["soak-sse"], 0, interval_ms=steady_ms,
                             kind="steady", max_seconds=D + 300),
        ]
        lp_left = list(P["lp_segments"])
        if P["slow_readers"]:
            self.slow_pub = self.publish_now("slow", "soak-slow", "stream", int(D * 10), 0, interval_ms=100,
                                             pad=a.slow_pad, kind="slow", max_seconds=D + 300)
        self.mis = Misbehavers(self.ports["client"], self.pool.next(), P["slow_readers"], P["slowloris"],
                               a.slow_stall, self.stop)
        self.mis.start()
        period = 60.0 / CHURN_SLICES
        churn_due = []
        if P["churn"]:
            for i in range(CHURN_SLICES):
                self.churn.append(self.churn_slice(i, (i + 1) * period))
                churn_due.append((i + 1) * period)
        bursts_left = list(P["bursts_at_s"])
        self.burst_pubs: list[Pub] = []
        next_sample = a.sample_every
        while True:
            t = time.time() - self.t0
            if t >= D:
                break
            if not self.server.alive():
                self.problems.append(f"gripproxy exited at t={t:.0f} s (status {self.server.proc.returncode})")
                log(f"ERROR: gripproxy exited at t={t:.0f} s")
                break
            # churn: replace the slices whose minute is up
            for i, due in enumerate(churn_due):
                if t >= due:
                    old = self.churn[i]
                    self.retire_slice(old)
                    self.churn[i] = self.churn_slice(i, 60)
                    churn_due[i] = due + 60
            # bursts
            while bursts_left and t >= bursts_left[0]:
                k = len(P["bursts_at_s"]) - len(bursts_left)
                first = P["steady"]["soak-a"] + k * P["burst"]
                self.burst_pubs.append(self.publish_now(f"burst{k}-a", "soak-a", "stream,ws", P["burst"], first,
                                                        conc=a.burst_concurrency))
                self.burst_pubs.append(self.publish_now(f"burst{k}-sse", "soak-sse", "sse", P["burst"], first,
                                                        conc=a.burst_concurrency))
                self.event("burst", k=k, first_seq=first)
                log(f"t={t:.0f} s: burst {k}: {P['burst']} publishes to soak-a and to soak-sse")
                bursts_left.pop(0)
            # long-poll publishes, one process per stretch between bursts
            while lp_left and t >= lp_left[0][0]:
                start, count, first = lp_left.pop(0)
                self.steady.append(self.publish_now(f"lp-{first}", "soak-lp", "response", count, first,
                                                    interval_ms=P["lp_interval_ms"], kind="steady",
                                                    max_seconds=int(count * P["lp_interval_ms"] / 1000) + 120))
            # harvest retired churn slices and their READY lines
            for g in list(self.retired):
                if g.p.poll() is not None:
                    self.retired.remove(g)
                    r = g.ready or {}
                    self.churn_done["opened"] += r.get("ok", 0)
                    self.churn_done["failed"] += r.get("failed", 0)
                    self.churn_done["retried"] += r.get("retried", 0)
                    self.churn_done["by_mode"][g.mode] += r.get("ok", 0)
            if t >= next_sample:
                s = self.sample("run")
                next_sample += a.sample_every
                mis = self.mis.snapshot()
                log(f"t={s['t']:.0f} s: RSS {s['rss_kb'] / 1024:.1f} MB, {s['fds']} fds, {s['connections']} conns, "
                    f"{s.get('client_deliveries_per_s', 0):,.0f} deliveries/s (server {s.get('server_deliveries_per_s', 0):,.0f}), "
                    f"p99 {s['lat_p99_ms']} ms, gripproxy CPU {s.get('cpu_pct', 0)}%, machine {s.get('machine_busy_pct', 0)}%, "
                    f"slow cut {mis['slow']['cut']}, 408s {mis['loris']['answered_408']}")
            time.sleep(0.2)
        return self.finish()

    def finish(self, aborted: bool = False) -> int:
        a, P = self.args, self.plan
        if self.server and not self.server.alive():
            aborted = True  # the gateway is gone: no final count, publishers and generators stop at once
        self.aborted = aborted
        t_end = time.time()
        # publishers: the steady ones end by themselves
        pubres = {}
        for p in self.pubs:
            left = 120 if p.kind in ("steady", "burst") and not aborted else 1
            pubres[p.name] = p.finish(left) | {"kind": p.kind, "channel": p.channel, "count": p.count}
        self.pubres = pubres
        # churn, slow readers, slowloris stop
        self.stop.set()
        for g in self.churn:
            if g.p.poll() is None:
                self.retire_slice(g)
        for g in getattr(self, "retired", []):
            g.join(30)
            r = g.ready or {}
            self.churn_done["opened"] += r.get("ok", 0)
            self.churn_done["failed"] += r.get("failed", 0)
            self.churn_done["retried"] += r.get("retried", 0)
            self.churn_done["by_mode"][g.mode] += r.get("ok", 0)
        if self.mis:
            self.mis.join()
        self.mis_final = self.mis.snapshot() if self.mis else {}
        # did every stable client get every publish?
        self.final: dict = {}
        if not aborted and self.stable:
            for g in self.stable:
                g.send(f"WAIT {P['tracked'][CHANNEL[g.mode]]} {int(a.final_wait * 1000)} 20000")
            for g in self.stable:
                line = g.answer(a.final_wait + 60)
                rep = json.loads(line) if line else {"error": "no answer"}
                try:
                    os.unlink(rep.get("lat_file", ""))
                except OSError:
                    pass
                f = self.final.setdefault(g.mode, {"clients": 0, "live": 0, "complete": 0, "lost_tracked": 0, "dups": 0,
                                                   "closed_by_server": 0, "deliveries": 0, "lp_errors": 0,
                                                   "lp_timeouts": 0, "lp_reconnects": 0, "foreign_lines": 0,
                                                   "expected_each": P["tracked"][CHANNEL[g.mode]], "no_answer": 0})
                f["clients"] += g.ready["ok"] if g.ready else 0
                if "error" in rep:
                    f["no_answer"] += 1
                    continue
                for k in ("live", "complete", "lost_tracked", "dups", "closed_by_server", "lp_errors", "lp_timeouts",
                          "lp_reconnects", "foreign_lines"):
                    f[k] += rep.get(k, 0)
                f["deliveries"] += rep.get("deliveries", 0)
        if self.t0:
            self.sample("end")
        # everyone leaves
        t_quit = time.time()
        for g in self.stable:
            g.quit()
        for g in self.stable:
            g.join(30)
        self.settle = []
        back_s = None
        settle = a.settle if a.settle >= 0 else (POOL_IDLE_S + 15 if P["duration_s"] >= 300 else 10)
        self.settle_s = settle
        if self.server and self.server.alive():
            end = time.time() + settle
            while True:
                fb = fd_breakdown(self.pid, self.ports)
                rs = vm_status(self.pid).get("VmRSS", 0)
                self.settle.append({"t": round(time.time() - t_quit, 1), "fds": fb, "rss_kb": rs})
                if fb.get("total", 1 << 30) <= self.fd_base["total"] + a.fd_tolerance and back_s is None:
                    back_s = time.time() - t_quit
                if back_s is not None or time.time() > end:
                    break
                time.sleep(1.0)
        self.fd_back_s = back_s
        self.fd_end = self.settle[-1]["fds"] if self.settle else {}
        self.rss_end = self.settle[-1]["rss_kb"] if self.settle else 0
        if self.t0 and self.server and self.server.alive():
            self.sample("after")
        # stop the gateway
        self.alive_at_end = bool(self.server and self.server.alive())
        if self.server:
            self.server.stop()
        self.stop_info = self.server.stop_info if self.server else ""
        self.exit_status = self.server.proc.returncode if self.server and self.server.proc else None
        try:
            os.unlink(self.bin)  # the copy (100 MB) was only for the run
        except (OSError, AttributeError):
            pass
        self.stop_backends()
        self.backend_stats = {}
        for name in ("ws-backend-stats.json", "sse-backend-stats.json"):
            try:
                with open(os.path.join(self.workdir, name)) as f:
                    self.backend_stats[name.split("-stats")[0]] = json.load(f)
            except (OSError, ValueError):
                pass
        self.loginfo = log_levels(os.path.join(self.workdir, "server.log"))
        self.gen_errors = {}
        for fn in sorted(os.listdir(self.workdir)):
            if fn.endswith(".err"):
                try:
                    with open(os.path.join(self.workdir, fn), errors="replace") as f:
                        txt = f.read().strip()
                except OSError:
                    txt = ""
                if txt:
                    self.gen_errors[fn] = txt.splitlines()[:6]
        self.wall_s = time.time() - (self.t0 or t_end)
        return self.report()

    # ---------------------------------------------------------------- verdict and report

    def checks(self) -> list[dict]:
        a, P = self.args, self.plan
        out = []

        def check(name, ok, detail):
            out.append({"check": name, "ok": bool(ok), "detail": detail})

        check("the run completed", not self.aborted and not self.problems,
              "; ".join(self.problems) or "yes")
        # loss to well-behaved clients
        fin = self.final
        lost = sum(f["lost_tracked"] for f in fin.values())
        dups = sum(f["dups"] for f in fin.values())
        closed = sum(f["closed_by_server"] for f in fin.values())
        noans = sum(f["no_answer"] for f in fin.values())
        stable_opened = self.stable_ready["ok"] if hasattr(self, "stable_ready") else 0
        live = sum(f["live"] for f in fin.values())
        nofin = "no final count: the run did not complete"
        check("0 deliveries lost to well-behaved clients", fin and lost == 0 and noans == 0,
              f"{lost:,} lost over {stable_opened:,} stable clients "
              f"({', '.join(m + ' ' + format(f['lost_tracked'], ',') for m, f in fin.items())})" if fin else nofin)
        check("no duplicates to well-behaved clients", fin and dups == 0, f"{dups:,}" if fin else nofin)
        check("no well-behaved client closed by gripproxy", fin and closed == 0 and live == stable_opened,
              f"{closed:,} closed; {live:,} of {stable_opened:,} live at the end" if fin else nofin)
        lperr = fin.get("longpoll", {}).get("lp_errors", 0)
        check("long-polls: no non-200 answer", lperr == 0, f"{lperr:,}")
        check("every stable client connected", getattr(self, "stable_ready", {}).get("failed", 1) == 0,
              f"{getattr(self, 'stable_ready', {}).get('failed', 'n/a')} failed")
        pub_bad = {n: r for n, r in self.pubres.items() if r.get("kind") in ("steady", "burst")
                   and (r.get("ok", 0) != r.get("count") or r.get("non200") or r.get("errors"))}
        check("every publish accepted (200)", not pub_bad,
              "all" if not pub_bad else "; ".join(f"{n}: ok {r.get('ok')}/{r.get('count')}, non-200 {r.get('non200')}, "
                                                  f"errors {r.get('errors')}" for n, r in pub_bad.items()))
        # RSS
        rs = self.rss_summary()
        if rs:
            check(f"RSS flat within {a.rss_tolerance:.0%} after warm-up", rs["spread"] <= a.rss_tolerance,
                  f"{rs['min_mb']:.1f}-{rs['max_mb']:.1f} MB over {rs['n']} samples from t={rs['from_s']:.0f} s: "
                  f"max/min - 1 = {rs['spread']:.1%}; first minute median {rs['first_med_mb']:.1f} MB, "
                  f"last minute median {rs['last_med_mb']:.1f} MB, slope {rs['slope_mb_per_min']:+.2f} MB/min")
        else:
            check(f"RSS flat within {a.rss_tolerance:.0%} after warm-up", False, "no samples")
        # fds
        fe, fb = self.fd_end, self.fd_base
        if fe:
            ok = fe["total"] <= fb["total"] + a.fd_tolerance and fe.get("client", 0) == 0
            pool_note = ""
            if not ok and fe["without_backend"] <= fb["without_backend"] + a.fd_tolerance and fe.get("client", 0) == 0:
                pool_note = (f"; only backend pool connections are left ({fe['backend']}), which the pool closes after "
                             f"{POOL_IDLE_S} s idle: the settle ({self.settle_s} s) was shorter than that")
                ok = self.settle_s < POOL_IDLE_S + 5
            check("file descriptors back to baseline", ok,
                  f"baseline {fb['total']} (before any client), end {fe['total']} "
                  f"({'back after ' + format(self.fd_back_s, '.1f') + ' s' if self.fd_back_s is not None else 'not back within ' + str(self.settle_s) + ' s'}; "
                  f"client sockets {fe.get('client')}, backend {fe.get('backend')}, listeners {fe.get('listeners')}, "
                  f"other sockets {fe.get('other_sockets')}, non-sockets {fe.get('non_sockets')}; tolerance "
                  f"{a.fd_tolerance}){pool_note}")
        else:
            check("file descriptors back to baseline", False, "gripproxy was not running at the end")
        check("gripproxy alive to the end, clean exit on SIGTERM",
              self.alive_at_end and self.exit_status == 0, f"{self.stop_info}")
        errs = self.loginfo["counts"].get("error", 0) + self.loginfo["counts"].get("critical", 0) + \
            self.loginfo["counts"].get("unparsed_error", 0)
        check("no error lines in gripproxy's log", errs == 0, f"{errs} (levels: {self.loginfo['counts']})")
        return out

    def rss_summary(self) -> dict | None:
        D = self.plan["duration_s"]
        warm = self.args.warmup_frac * D
        xs = [(s["t"], s["rss_kb"] / 1024) for s in self.samples if s["phase"] in ("run", "end") and s["t"] >= warm
              and s["rss_kb"]]
        if len(xs) < 2:
            return None
        vals = [v for _, v in xs]
        lo, hi = min(vals), max(vals)
        first = sorted(v for t, v in xs if t < warm + 60)
        last = sorted(v for t, v in xs if t >= xs[-1][0] - 60)
        n = len(xs)
        mt = sum(t for t, _ in xs) / n
        mv = sum(vals) / n
        var = sum((t - mt) ** 2 for t, _ in xs)
        slope = sum((t - mt) * (v - mv) for t, v in xs) / var * 60 if var else 0.0
        return {"n": n, "from_s": warm, "min_mb": lo, "max_mb": hi, "spread": hi / lo - 1 if lo else float("inf"),
                "first_med_mb": first[len(first) // 2] if first else float("nan"),
                "last_med_mb": last[len(last) // 2] if last else float("nan"), "slope_mb_per_min": slope,
                "at_t0_mb": self.samples[0]["rss_kb"] / 1024, "baseline_mb": self.rss_base / 1024,
                "after_close_mb": self.rss_end / 1024 if self.rss_end else float("nan")}

    def chart(self) -> str | None:
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log("matplotlib is not installed: no chart (bench/soak installs it with pip)")
            return None
        S = [s for s in self.samples if s["phase"] in ("start", "run", "end", "after")]
        if len(S) < 2:
            return None
        ts = [s["t"] / 60 for s in S]
        fig, ax = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
        warm = self.args.warmup_frac * self.plan["duration_s"] / 60
        ax[0].plot(ts, [s["rss_kb"] / 1024 for s in S], color="tab:blue", label="RSS")
        rs = self.rss_summary()
        if rs:
            ax[0].axhspan(rs["min_mb"], rs["min_mb"] * (1 + self.args.rss_tolerance), color="tab:green", alpha=0.1,
                          label=f"min after warm-up +{self.args.rss_tolerance:.0%}")
        ax[0].set_ylabel("gripproxy RSS (MB)")
        ax[0].set_ylim(bottom=0)
        pts = [(t, s["connections"]) for t, s in zip(ts, S) if s["connections"] is not None]
        ax[1].plot([p[0] for p in pts], [p[1] for p in pts], color="tab:orange", label="connections (gauge)")
        ax[1].plot(ts, [s["fds"] for s in S], color="tab:gray", linestyle="--", label="file descriptors")
        ax[1].set_ylabel("count")
        ax[2].plot(ts[1:], [s.get("client_deliveries_per_s", 0) for s in S[1:]], color="tab:red", label="received by clients")
        pts = [(t, s["server_deliveries_per_s"]) for t, s in zip(ts, S) if s.get("server_deliveries_per_s") is not None]
        ax[2].plot([p[0] for p in pts], [p[1] for p in pts], color="tab:purple", alpha=0.6,
                   linestyle="--", label="sent (gripproxy's message_sent)")
        ax[2].set_ylabel("deliveries/s")
        ax[2].set_xlabel("minutes")
        for x in ax:
            x.axvspan(0, warm, color="gray", alpha=0.08)
            for b in self.plan["bursts_at_s"]:
                x.axvline(b / 60, color="gray", alpha=0.3, linewidth=0.8)
            x.legend(loc="best", fontsize=8)
            x.grid(alpha=0.3)
        fig.suptitle(f"GripProxy soak: {self.plan['N']:,} connections, {self.plan['duration_s'] / 60:g} min "
                     f"(shaded: warm-up; lines: bursts)")
        fig.tight_layout()
        path = os.path.join(self.outdir, "soak.png")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return path

    def report(self) -> int:
        a, P = self.args, self.plan
        os.makedirs(self.outdir, exist_ok=True)
        checks = self.checks()
        passed = all(c["ok"] for c in checks)
        png = self.chart()
        rs = self.rss_summary()
        run = [s for s in self.samples if s["phase"] == "run" and "client_deliveries_per_s" in s]
        dps = [s["client_deliveries_per_s"] for s in run]
        sdps = [s.get("server_deliveries_per_s") or 0 for s in run]
        p99s = [s["lat_p99_ms"] for s in run if s["lat_p99_ms"] is not None]
        cpu = [s.get("cpu_pct", 0) for s in run]
        busy = [s.get("machine_busy_pct", 0) for s in run]
        conns = [s["connections"] for s in run if s["connections"] is not None]
        mis = self.mis_final
        slow, loris = mis.get("slow", {}), mis.get("loris", {})
        first, last = (self.samples[0], self.samples[-1]) if self.samples else ({}, {})
        met_delta = {k: (last.get(k) or 0) - (first.get(k) or 0) for k in
                     ("slow_client_closed", "client_head_timeout", "message_sent", "message_received", "requests")}
        figures = {
            "lost_to_well_behaved": sum(f["lost_tracked"] for f in self.final.values()),
            "stable_clients": getattr(self, "stable_ready", {}).get("ok", 0),
            "deliveries_per_s_mean": sum(dps) / len(dps) if dps else None,
            "deliveries_per_s_peak": max(dps) if dps else None,
            "server_deliveries_per_s_peak": max(sdps) if sdps else None,
            "client_deliveries_total": self.deliv_total,
            "rss": rs, "fd_baseline": self.fd_base if hasattr(self, "fd_base") else None, "fd_end": self.fd_end,
            "fd_back_s": self.fd_back_s, "error_lines": len(self.loginfo["error_lines"]),
            "p99_ms_max_window": max(p99s) if p99s else None,
            "p99_ms_median_window": sorted(p99s)[len(p99s) // 2] if p99s else None,
            "gripproxy_cpu_pct_mean": sum(cpu) / len(cpu) if cpu else None,
            "machine_busy_pct_mean": sum(busy) / len(busy) if busy else None,
            "connections_min": min(conns) if conns else None, "connections_max": max(conns) if conns else None,
            "metrics_delta": met_delta,
        }
        data = {"args": vars(a), "plan": P, "ports": self.ports, "binary": getattr(self, "bin_info", {}),
                "argv": getattr(self, "argv", []), "load_at_start": getattr(self, "load_start", None),
                "checks": checks, "passed": passed, "figures": figures, "warm_up": getattr(self, "warm", {}),
                "stable_ready": getattr(self, "stable_ready", {}), "open_s": getattr(self, "open_s", None),
                "final": self.final, "churn": self.churn_done, "misbehavers": mis, "publishers": self.pubres,
                "backend_stats": self.backend_stats, "log": self.loginfo, "generator_stderr": self.gen_errors,
                "settle": self.settle, "events": self.events, "samples": self.samples, "workdir": self.workdir,
                "stop_info": self.stop_info, "exit_status": self.exit_status}
        with open(os.path.join(self.outdir, "samples.json"), "w") as f:
            json.dump(data, f, indent=1, default=str)

        def fm(x, nd=1):
            if x is None or (isinstance(x, float) and x != x):
                return "n/a"
            return f"{x:,}" if isinstance(x, int) else f"{x:,.{nd}f}"

        L = [f"# GripProxy soak, {self.stamp}", "",
             f"**{'PASSED' if passed else 'FAILED'}**: {P['N']:,} connections for {P['duration_s'] / 60:g} min "
             f"(`{self.command()}`), binary `{getattr(self, 'bin_info', {}).get('path')}` "
             f"(built {getattr(self, 'bin_info', {}).get('mtime')}), load average at start "
             f"{', '.join(f'{x:.2f}' for x in getattr(self, 'load_start', ()) )} on {os.cpu_count()} cores.", "",
             "## Checks", "", "| check | result | detail |", "|---|---|---|"]
        for c in checks:
            L.append(f"| {c['check']} | {'ok' if c['ok'] else '**FAILED**'} | {c['detail']} |")
        L += ["", "## Population", "",
              "| clients | how many | what they do |", "|---|---:|---|"]
        for m in MODES:
            what = {"stream": "`GET /stream?channel=soak-a` (test target), every line counted",
                    "sse": "`GET /sse?channel=soak-sse` with `Accept: text/event-stream` through the soak's SSE backend "
                           "(`Grip-Hold: stream`, `Content-Type: text/event-stream`); every `data:` event counted",
                    "ws": "WebSocket-over-HTTP `/ws?channel=soak-a` through `ws_backend.py`; every text message counted",
                    "longpoll": f"`GET /response?channel=soak-lp` (test target), re-polled at once on the same connection"}[m]
            L.append(f"| stable {m} | {P['stable'][m]:,} | {what}; loss tracked per seq |")
        L.append(f"| churning | {P['churn']:,} | {CHURN_SLICES} generator processes (stream, sse, ws, longpoll twice) of "
                 f"{P['churn_slice']}; each minute every one is closed and replaced ({a.churn_pct:g}% of the connections "
                 f"per minute); deliveries counted, no loss check |")
        L.append(f"| slow readers | {P['slow_readers']} | stream on `soak-slow` ({a.slow_pad:,}-byte messages, 10/s) and "
                 f"`soak-a`, 4 KB receive buffer, read 256 B/s for ~{a.slow_stall:g} s, then drain: expected to be cut "
                 f"at `client_write_buffer_max` |")
        L.append(f"| slowloris | {P['slowloris']} | a 110-byte request head, one byte a second: expected 408 at "
                 f"`client_head_timeout` (10 s) |")
        L += ["", f"Publishes: {P['rate']:.2f}/s ({P['rate_why']}) to `soak-a` (http-stream + ws-message) and to "
              f"`soak-sse` (an SSE event), {P['lp_rate']:g}/s to `soak-lp` (http-response; none from 1 s before a burst "
              f"to {P['lp_quiet_s']:g} s after it: {P['steady']['soak-lp']:,} in all), and bursts of {P['burst']} "
              f"({P['burst_why']}; {a.burst_concurrency} in flight) to `soak-a` and `soak-sse` at t = "
              f"{', '.join(str(b) for b in P['bursts_at_s']) or 'none'} s: {P['offered_steady_deliveries_per_s']:,} "
              f"deliveries/s steady, {P['offered_burst_deliveries']:,} per burst. Long-polls get no bursts, and no "
              "publish while a burst is being delivered: without a prev-id a message published while a client "
              "re-polls has nobody to go to, and a burst delays the re-polls by seconds.", "",
              "## Figures", "",
              "| figure | value |", "|---|---:|",
              f"| stable clients opened | {fm(figures['stable_clients'])} in {fm(getattr(self, 'open_s', None))} s |",
              f"| deliveries lost to well-behaved clients | {fm(figures['lost_to_well_behaved'])} |"]
        for m, f in self.final.items():
            L.append(f"| {m}: clients live / complete at the end | {f['live']:,} / {f['complete']:,} "
                     f"(expected {f['expected_each']:,} each; lost {f['lost_tracked']:,}, dups {f['dups']:,}, closed "
                     f"{f['closed_by_server']:,}{', 55 s timeouts ' + format(f['lp_timeouts'], ',') + ', reconnects ' + format(f['lp_reconnects'], ',') if m == 'longpoll' else ''}) |")
        if rs:
            L += [f"| RSS: baseline / at t=0 / after warm-up min-max / after close (MB) | {rs['baseline_mb']:.1f} / "
                  f"{rs['at_t0_mb']:.1f} / {rs['min_mb']:.1f}-{rs['max_mb']:.1f} / {fm(rs['after_close_mb'])} |",
                  f"| RSS spread after warm-up (max/min - 1), slope | {rs['spread']:.1%}, {rs['slope_mb_per_min']:+.2f} MB/min |"]
        fb, fe = figures["fd_baseline"] or {}, figures["fd_end"] or {}
        L += [f"| file descriptors: baseline / end | {fb.get('total')} / {fe.get('total')} "
              f"(back after {fm(self.fd_back_s)} s) |",
              f"| connections (gauge) min-max during the run | {fm(figures['connections_min'])}-{fm(figures['connections_max'])} |",
              f"| deliveries/s received, mean / peak 5 s window | {fm(figures['deliveries_per_s_mean'], 0)} / "
              f"{fm(figures['deliveries_per_s_peak'], 0)} |",
              f"| deliveries received by clients, total | {fm(self.deliv_total)} |",
              f"| gripproxy message_sent / message_received over the run | {fm(met_delta['message_sent'], 0)} / "
              f"{fm(met_delta['message_received'], 0)} |",
              f"| latency p99 per 5 s window: median / worst (ms; highest generator's) | "
              f"{fm(figures['p99_ms_median_window'])} / {fm(figures['p99_ms_max_window'])} |",
              f"| gripproxy CPU mean (% of one core), machine busy mean (% of all) | {fm(figures['gripproxy_cpu_pct_mean'])} / "
              f"{fm(figures['machine_busy_pct_mean'])} |",
              f"| churn: slices / clients opened / failed / closed by server | {self.churn_done['slices']} / "
              f"{self.churn_done['opened']:,} / {self.churn_done['failed']} / {self.churn_done['closed_by_server']} |",
              f"| slow readers: connects / cut by gripproxy / not cut / reset / bad answer / stopped by the end | "
              f"{slow.get('connects')} / {slow.get('cut')} / {slow.get('not_cut')} / {slow.get('reset')} / "
              f"{slow.get('bad_answer')} / {slow.get('interrupted')} (gripproxy's slow_client_closed: "
              f"{fm(met_delta['slow_client_closed'], 0)}; bytes received before the end: "
              f"{self._range([b / 1e6 for b in slow.get('cut_bytes', [])])} MB) |",
              f"| slowloris: attempts / 408 / other answer / closed without answer / not cut / stopped by the end | "
              f"{loris.get('attempts')} / {loris.get('answered_408')} / {loris.get('other_answer')} / "
              f"{loris.get('closed_without_answer')} / {loris.get('not_cut')} / {loris.get('interrupted')} (408 after "
              f"{self._range(loris.get('t408', []))} s; gripproxy's client_head_timeout: "
              f"{fm(met_delta['client_head_timeout'], 0)}) |",
              f"| metrics scrapes that failed (3 s timeout) | {sum(1 for s in self.samples if s['connections'] is None)} "
              f"of {len(self.samples)} |",
              f"| log lines by level | {', '.join(f'{k} {v:,}' for k, v in sorted(self.loginfo['counts'].items()))} |",
              f"| gripproxy stop | {self.stop_info} |"]
        L += ["", "Latency (publisher's send to the client's read, per 5 s window, the highest of the mode's generator "
              "processes):", "", "| stable clients | p99 median window (ms) | p99 worst window (ms) |", "|---|---:|---:|"]
        for m in MODES:
            ws_ = sorted(s["gens"]["stable"][m]["p99_ms"] for s in run
                         if m in s["gens"]["stable"] and s["gens"]["stable"][m]["p99_ms"] is not None)
            if ws_:
                L.append(f"| {m} | {ws_[len(ws_) // 2]:,.1f} | {ws_[-1]:,.1f} |")
        if png:
            L += ["", "## RSS, connections and deliveries/s", "", "![soak](soak.png)"]
        L += ["", "## Error lines in gripproxy's log", ""]
        if self.loginfo["error_lines"]:
            L += ["```"] + self.loginfo["error_lines"][:100] + ["```"]
        else:
            L.append("None.")
        L += ["", "## Warnings in gripproxy's log (grouped)", ""]
        if self.loginfo["warnings"]:
            L += ["| count | message |", "|---:|---|"]
            for k, v in sorted(self.loginfo["warnings"].items(), key=lambda kv: -kv[1])[:30]:
                L.append(f"| {v:,} | `{k}` |")
        else:
            L.append("None.")
        if self.gen_errors:
            L += ["", "## Generator stderr (first lines per process)", ""]
            for fn, lines in list(self.gen_errors.items())[:20]:
                L.append(f"- `{fn}`: " + " / ".join(x[:160] for x in lines[:3]))
        L += ["", "## Samples", "", "| t (s) | RSS (MB) | fds | conns | deliveries/s | p99 (ms) | gripproxy CPU % | machine % |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        step = max(1, len(self.samples) // 40)
        for i, s in enumerate(self.samples):
            if i % step and s["phase"] == "run":
                continue
            L.append(f"| {s['t']:.0f} {s['phase'] if s['phase'] != 'run' else ''} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | "
                     f"{fm(s['connections'], 0)} | {fm(s.get('client_deliveries_per_s'), 0)} | {fm(s['lat_p99_ms'])} | "
                     f"{fm(s.get('cpu_pct'))} | {fm(s.get('machine_busy_pct'))} |")
        L += ["", f"Raw: `samples.json` (every sample, check, publisher result and log count). Logs of this run: "
              f"`{os.path.relpath(self.workdir, REPO)}/` (git-ignored)."]
        with open(os.path.join(self.outdir, "report.md"), "w") as f:
            f.write("\n".join(L) + "\n")
        # summary
        print(f"\nGripProxy soak {self.stamp}: {'PASSED' if passed else 'FAILED'} ({P['N']:,} connections, "
              f"{P['duration_s'] / 60:g} min)")
        for c in checks:
            print(f"  [{'ok' if c['ok'] else 'FAILED'}] {c['check']}: {c['detail']}")
        print(f"  deliveries/s mean {fm(figures['deliveries_per_s_mean'], 0)}, peak {fm(figures['deliveries_per_s_peak'], 0)}; "
              f"p99 per window median {fm(figures['p99_ms_median_window'])} ms, worst {fm(figures['p99_ms_max_window'])} ms")
        print(f"  churn {self.churn_done['opened']:,} clients opened; slow readers cut {slow.get('cut')} "
              f"(server count {fm(met_delta['slow_client_closed'], 0)}); slowloris 408 {loris.get('answered_408')}/"
              f"{loris.get('attempts')}")
        print(f"  report: {os.path.relpath(self.outdir, os.getcwd())}/report.md")
        return 0 if passed else 1

    @staticmethod
    def command() -> str:
        argv, out, skip = sys.argv[1:], [], False
        for x in argv:
            if skip:
                skip = False
                continue
            if x == "--loadgen":
                skip = True
                continue
            if not x.startswith("--loadgen="):
                out.append(x)
        return " ".join(["bench/soak"] + out)

    @staticmethod
    def _range(xs):
        if not xs:
            return "n/a"
        xs = sorted(xs)
        return f"{xs[0]:.1f}-{xs[-1]:.1f} (median {xs[len(xs) // 2]:.1f})"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "sse-backend":
        ap = argparse.ArgumentParser(prog="soak.py sse-backend")
        ap.add_argument("cmd")
        ap.add_argument("--port", type=int, required=True)
        ap.add_argument("--stats")
        ap.add_argument("--max-seconds", type=float, default=7200)
        x = ap.parse_args()
        return asyncio.run(sse_backend_main(x.port, x.stats, x.max_seconds))
    ap = argparse.ArgumentParser(description="GripProxy soak test (bench/README.md, Soak)")
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--connections", type=int, default=15000)
    ap.add_argument("--base-port", type=int, default=17501,
                    help="client port; publish +2, ws backend +10, SSE backend +12, metrics +14 (all must be free)")
    ap.add_argument("--loadgen", default=os.path.join(HERE, ".run", "loadgen"))
    ap.add_argument("--loglevel", type=int, default=2)
    ap.add_argument("--rate", type=float, default=-1,
                    help="steady publishes per second to soak-a and to soak-sse (default 5, lowered to fit --steady-budget)")
    ap.add_argument("--lp-rate", type=float, default=0.2,
                    help="steady publishes per second to soak-lp (default one every 5 s; README: Soak)")
    ap.add_argument("--lp-quiet", type=float, default=20.0,
                    help="no long-poll publish from 1 s before a burst to this many seconds after it (README: Soak)")
    ap.add_argument("--burst", type=int, default=-1,
                    help="publishes per burst to soak-a and to soak-sse (default 200, lowered to fit --burst-budget)")
    ap.add_argument("--steady-budget", type=int, default=20000, help="steady deliveries/s at most (default rate)")
    ap.add_argument("--burst-budget", type=int, default=600000, help="deliveries per burst at most (default burst)")
    ap.add_argument("--burst-every", type=int, default=60)
    ap.add_argument("--burst-first", type=int, default=30)
    ap.add_argument("--burst-concurrency", type=int, default=4)
    ap.add_argument("--churn-pct", type=float, default=5.0, help="%% of the connections closed and reopened each minute")
    ap.add_argument("--slow-readers", type=int, default=-1, help="default N/500, 4..30")
    ap.add_argument("--slowloris", type=int, default=-1, help="default N/500, 4..30")
    ap.add_argument("--slow-pad", type=int, default=16000, help="bytes of padding of each soak-slow message")
    ap.add_argument("--slow-stall", type=float, default=40.0, help="seconds a slow reader reads 256 B/s")
    ap.add_argument("--sample-every", type=float, default=5.0)
    ap.add_argument("--warmup-frac", type=float, default=0.2, help="share of the run before RSS must be flat")
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--fd-tolerance", type=int, default=2)
    ap.add_argument("--settle", type=float, default=-1,
                    help="seconds to wait, after the last client left, for the fds to be back (default 75 for runs of "
                         "5 min or more, which covers the backend pool's 60 s idle timeout; 10 otherwise)")
    ap.add_argument("--final-wait", type=float, default=120, help="seconds the stable clients may take for the last messages")
    ap.add_argument("--out", help="report folder (default bench/results/<date>-soak)")
    args = ap.parse_args()
    if not (os.path.exists(args.loadgen) and os.access(args.loadgen, os.X_OK)):
        print(f"soak: no load generator at {args.loadgen} (bench/soak compiles it)", file=sys.stderr)
        return 2
    bench.raise_nofile()
    s = Soak(args)
    try:
        return s.run()
    except SystemExit as e:
        print(str(e), file=sys.stderr)
        s.stop_all()
        return 2
    except BaseException:
        s.stop_all()
        raise


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The latency the Redis backplane adds to one delivery (issue 11: at most 2 ms p50).

    bench/backplane_hop.py [--messages N] [--rounds R] [--gripproxy BIN]

Starts its own redis-server and three gripproxy instances on free loopback ports: A without a backplane, B and
C joined over Redis. One stream is held on channel `hop`; N items are published one at a time over a kept-alive
publish connection, each timed from the POST until its content reaches the stream. Three paths: local (A to A),
through Redis on the same instance (B to B), and through Redis to another instance (publish to B, held on C).
Prints p50/p99 per path and per round; standard library only; stops everything it started by PID.
"""
import argparse, http.client, json, os, signal, socket, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port % 2 == 1:
            return port


def wait_listening(port: int, seconds: float = 10) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def measure(client_port: int, publish_port: int, n: int) -> list[float]:
    s = socket.create_connection(("127.0.0.1", client_port))
    s.sendall(b"GET /stream?channel=hop HTTP/1.1\r\nHost: bench\r\n\r\n")
    buf = b""
    while b"[stream opened]" not in buf:
        buf += s.recv(4096)
    time.sleep(1.5)  # past the first-subscription re-check and the Redis SUBSCRIBE
    pub = http.client.HTTPConnection("127.0.0.1", publish_port)
    out = []
    for i in range(n):
        want = f"m{i}\n".encode()
        body = json.dumps({"items": [{"channel": "hop", "formats": {"http-stream": {"content": want.decode()}}}]})
        t0 = time.perf_counter()
        pub.request("POST", "/publish/", body, {"Content-Type": "application/json"})
        r = pub.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"publish answered {r.status}")
        buf = b""
        while want not in buf:
            buf += s.recv(4096)
        out.append((time.perf_counter() - t0) * 1000)
    s.close()
    pub.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--gripproxy", default=os.environ.get("GRIPPROXY_BIN", os.path.join(
        HERE, "..", ".build", "release", "gripproxy")))
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gp-hop-")
    procs = []
    try:
        rport = free_port()
        procs.append(subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_listening(rport)
        ports = {}
        for name, backplane in (("A", False), ("B", True), ("C", True)):
            cp, pp = free_port(), free_port()
            argv = [a.gripproxy, "--port", f"127.0.0.1:{cp}", "--publish-port", f"127.0.0.1:{pp}",
                    "--route", "* test", "--loglevel", "1"]
            if backplane:
                argv += ["--backplane", f"redis://127.0.0.1:{rport}"]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                          stderr=open(os.path.join(work, f"{name}.log"), "wb")))
            wait_listening(cp)
            wait_listening(pp)
            ports[name] = (cp, pp)
        time.sleep(0.5)
        print(f"load average {os.getloadavg()[0]:.2f}; {a.messages} messages per path; logs in {work}")
        paths = [("local (A to A)", "A", "A"), ("Redis, same instance (B to B)", "B", "B"),
                 ("Redis, other instance (B to C)", "B", "C")]
        for rnd in range(1, a.rounds + 1):
            for label, publish_on, held_on in paths:
                lat = sorted(measure(ports[held_on][0], ports[publish_on][1], a.messages))
                print(f"round {rnd}: {label:32} p50 {statistics.median(lat):.3f} ms  "
                      f"p99 {lat[int(len(lat) * 0.99) - 1]:.3f} ms")
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    sys.exit(main())

"""Slow and hostile clients (issue 12 item 3): the request-head deadline
(`client_head_timeout`), the idle timeout (`client_idle_timeout`) and the cap
per source address (`client_maxconn_per_address`). Pushpin 1.36 has none of
these keys, so every case is beyond_reference. Each case runs a second
instance with short limits, and checks both that the limit acts and that
everyone else is still served while it does."""

import base64
import os
import socket
import struct
import threading
import time

import httpx
import pytest

from harness.backend import Resp, grip_hold
from harness.client import Publisher, RawConn, StreamCollector, ensure_stream_subscribed, raw_request, wait_until
from harness.extra import aux_routes
from harness.ws import echo_handler, events_of

pytestmark = pytest.mark.beyond_reference


def connect(port, source="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_until_closed(s, limit):
    """Everything the server sends until it closes (b"" when it sent nothing);
    raises when it is still open after `limit` seconds."""
    data = b""
    deadline = time.monotonic() + limit
    while True:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except socket.timeout:
            raise AssertionError("still open after %.0f s; got %r" % (limit, data))
        except ConnectionResetError:
            return data
        if not d:
            return data
        data += d


def still_open(s, wait):
    """True when the server neither sent anything nor closed within `wait` s."""
    s.settimeout(wait)
    try:
        s.recv(1)
        return False
    except socket.timeout:
        return True
    except ConnectionResetError:
        return False


def metrics(port):
    out = {}
    for line in httpx.get("http://127.0.0.1:%d/metrics" % port, timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.strip()] = float(value)
    return out


def limited(env, aux, tag, **keys):
    conf = {"gripproxy": {k: str(v) for k, v in keys.items()},
            "proxy": {"prometheus_port": "127.0.0.1:%d" % env.ports.spare}}
    return aux(tag, aux_routes(env, "*,path_beg=/ws/ 127.0.0.1:%d,over_http" % env.ports.backend), conf)


class Dribbler(threading.Thread):
    """A slowloris client: a request line, then one header byte every
    `interval` s, never the blank line; keeps what the server sends."""

    def __init__(self, port, interval=0.25):
        super().__init__(daemon=True)
        self.sock = connect(port)
        self.interval = interval
        self.received = b""
        self.closed_at = None
        self.stop = False

    def run(self):
        self.sock.sendall(b"GET /slow HTTP/1.1\r\nHost: example.test\r\n")
        header = b"X-Slow: " + b"a" * 400
        for i in range(len(header)):
            if self.stop:
                return
            try:
                self.sock.sendall(header[i:i + 1])
            except OSError:
                break
            self.sock.settimeout(self.interval)
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            if not d:
                break
            self.received += d
        self.closed_at = time.monotonic()
        try:
            self.received += read_until_closed(self.sock, 5)
        except (AssertionError, OSError):
            pass


def test_slowloris_head_gets_408_while_others_are_served(env, backend, prefix, uid, aux):
    target = limited(env, aux, "head", client_head_timeout=2, client_idle_timeout=60)
    backend.on(prefix + "ok", Resp(200, body=b"served\n"))
    ch = "slow-" + uid
    backend.on(prefix + "st", grip_hold("stream", ch, body="start\n"))
    started = time.monotonic()
    slow = [Dribbler(target.port) for _ in range(40)]
    for d in slow:
        d.start()
    stream = StreamCollector(target.port, prefix + "st")
    publisher = Publisher(target.publish_base)
    try:
        # While 40 heads are being dribbled, a request and a held stream are served.
        with httpx.Client(timeout=5) as c:
            r = c.get(target.url(prefix + "ok"))
        assert r.status_code == 200 and r.text == "served\n"
        assert stream.wait_for("start\n", 5)
        offset = ensure_stream_subscribed(stream, publisher, ch)
        publisher.stream(ch, "during\n")
        assert stream.wait_for("during\n", 5, start=offset)
        # Every slow head is answered 408 and closed, none before its deadline.
        assert wait_until(lambda: all(d.closed_at for d in slow), 15), \
            "not all slow heads were closed: %d open" % sum(1 for d in slow if not d.closed_at)
        for d in slow:
            assert d.received.startswith(b"HTTP/1.1 408 "), d.received[:80]
            assert b"Connection: close" in d.received
            assert d.closed_at - started >= 1.9
        # The stream held all along still gets what is published.
        publisher.stream(ch, "after\n")
        assert stream.wait_for("after\n", 5, start=offset)
        assert metrics(env.ports.spare).get("client_head_timeout", 0) >= 40
    finally:
        for d in slow:
            d.stop = True
        stream.close()
        publisher.close()


def test_a_head_sent_whole_is_not_timed(env, backend, prefix, aux):
    """Heads that arrive at once, and a body that takes longer than the head
    timeout, are not cut: the deadline is for the head only."""
    target = limited(env, aux, "whole", client_head_timeout=1, client_idle_timeout=60)
    backend.on(prefix + "body", lambda req: Resp(200, body=b"got %d\n" % len(req.body)))
    s = connect(target.port)
    try:
        s.sendall(b"POST %sbody HTTP/1.1\r\nHost: example.test\r\nContent-Length: 10\r\n\r\n" % prefix.encode())
        for i in range(10):
            time.sleep(0.25)
            s.sendall(b"x")
        s.settimeout(10)
        data = b""
        while b"got 10\n" not in data:
            d = s.recv(65536)
            assert d, "closed: %r" % data
            data += d
        assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        s.close()


def test_idle_connections_are_closed(env, backend, prefix, aux):
    target = limited(env, aux, "idle", client_idle_timeout=2, client_head_timeout=10)
    backend.on(prefix + "ok", Resp(200, body=b"served\n"))
    never = connect(target.port)
    kept = connect(target.port)
    try:
        # A kept-alive connection that got its answer, then goes quiet.
        kept.sendall(raw_request("GET", prefix + "ok"))
        kept.settimeout(5)
        first = b""
        while b"served\n" not in first:
            d = kept.recv(65536)
            assert d
            first += d
        assert still_open(never, 1.0)
        # Closed without a word, a connection that never sent anything and one between requests.
        assert read_until_closed(never, 6) == b""
        assert read_until_closed(kept, 6) == b""
        assert metrics(env.ports.spare).get("client_idle_closed", 0) >= 2
        # A connection that keeps making requests is not idle.
        busy = connect(target.port)
        try:
            for _ in range(4):
                busy.sendall(raw_request("GET", prefix + "ok"))
                got = b""
                busy.settimeout(5)
                while b"served\n" not in got:
                    d = busy.recv(65536)
                    assert d, "the busy connection was closed"
                    got += d
                time.sleep(0.8)
        finally:
            busy.close()
    finally:
        never.close()
        kept.close()


def test_long_poll_held_past_the_idle_timeout_is_not_idle(env, backend, prefix, uid, aux):
    """A held request is an exchange in progress, however long it waits."""
    target = limited(env, aux, "held", client_idle_timeout=1, client_head_timeout=1)
    ch = "held-" + uid
    backend.on(prefix + "lp", grip_hold("response", ch, body="timeout\n", timeout=4))
    s = connect(target.port)
    try:
        s.sendall(raw_request("GET", prefix + "lp"))
        started = time.monotonic()
        data = b""
        s.settimeout(10)
        while b"timeout\n" not in data:
            d = s.recv(65536)
            assert d, "closed while held: %r" % data
            data += d
        assert data.startswith(b"HTTP/1.1 200 ")
        assert time.monotonic() - started >= 3.5
    finally:
        s.close()


def test_connections_per_address_are_capped(env, backend, prefix, aux):
    target = limited(env, aux, "peraddr", client_maxconn_per_address=3, client_idle_timeout=60)
    backend.on(prefix + "ok", Resp(200, body=b"served\n"))
    held = [connect(target.port) for _ in range(3)]
    try:
        for s in held:
            assert still_open(s, 0.2)
        refused = connect(target.port)
        answer = read_until_closed(refused, 5)
        refused.close()
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        # Another address is not affected.
        other = connect(target.port, source="127.0.0.2")
        other.sendall(raw_request("GET", prefix + "ok"))
        assert b"served\n" in read_until_closed_or(other, b"served\n")
        other.close()
        # A closed connection frees its place.
        held.pop().close()
        def admitted():
            s = connect(target.port)
            try:
                s.sendall(raw_request("GET", prefix + "ok"))
                return b"served\n" in read_until_closed_or(s, b"served\n")
            finally:
                s.close()
        assert wait_until(admitted, 5, interval=0.2)
        assert metrics(env.ports.spare).get("connection_refused_per_address", 0) >= 1
    finally:
        for s in held:
            s.close()


def test_request_received_counts_every_request_and_handshake(env, backend, uid, aux):
    """`request_received` counts each request of a kept-alive connection and each
    WebSocket handshake. It is kept per event loop and added to the metric by the
    loop's 100 ms sweep, so it is read until it settles."""
    target = limited(env, aux, "counted")
    base = "/ws/%s/" % uid
    backend.on(base + "plain", Resp(200, body=b"served\n"))
    backend.on(base + "ws", echo_handler())
    time.sleep(0.3)
    before = metrics(env.ports.spare).get("request_received", 0)
    conn = RawConn(target.port)
    try:
        for _ in range(5):
            conn.send(raw_request("GET", base + "plain"))
            r = conn.read_response()
            assert (r.status, r.body) == (200, b"served\n")
    finally:
        conn.close()
    ws = ws_open_raw(target.port, base + "ws")
    try:
        assert wait_until(lambda: metrics(env.ports.spare).get("request_received", 0) >= before + 6, 5, interval=0.1)
        time.sleep(0.3)
        assert metrics(env.ports.spare).get("request_received", 0) == before + 6
    finally:
        ws.close()


def read_until_closed_or(s, marker, limit=5.0):
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = s.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not d:
            break
        data += d
    return data


def ws_frame(conn, timeout=10):
    """The server's next (unmasked) frame from a RawConn, as (opcode, payload);
    TimeoutError leaves the partial frame in the buffer."""
    h = conn.read_exact(2, timeout)
    op, n = h[0] & 0x0F, h[1] & 0x7F
    extra = 2 if n == 126 else 8 if n == 127 else 0
    try:
        if extra:
            n = int.from_bytes(conn.read_exact(extra, timeout), "big")
        return op, (conn.read_exact(n, timeout) if n else b"")
    except TimeoutError:
        raise AssertionError("a frame stopped in the middle")


def test_ws_client_that_stops_reading_gets_close_1008(env, backend, uid, aux):
    """decisions D8 for WebSockets: past client_write_buffer_max the proxy queues
    a 1008 close behind what the client has not read and writes nothing more; a
    client that reads again (within the grace) gets every message queued before
    it, in order, then the 1008."""
    target = limited(env, aux, "wsslow", client_write_buffer_max=262144)
    ch = "wsslow-" + uid
    path = "/ws/%s/" % uid
    backend.on(path, echo_handler(subscribe=ch))
    publisher = Publisher(target.publish_base)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", target.port))
    conn = RawConn.__new__(RawConn)
    conn.sock, conn.buf, conn.closed_by_peer = sock, b"", False
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        conn.send(("GET %s HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
        assert conn.read_head()[1] == 101
        # Subscribed once a probe arrives.
        deadline = time.monotonic() + 10
        n = 0
        while True:
            assert time.monotonic() < deadline, "never subscribed"
            n += 1
            publisher.items({"channel": ch, "formats": {"ws-message": {"content": "probe %d" % n}}})
            try:
                op, payload = ws_frame(conn, 0.3)
            except TimeoutError:
                continue
            if payload.startswith(b"probe"):
                break
        while True:  # drain the other probes
            try:
                ws_frame(conn, 0.5)
            except TimeoutError:
                break
        # Stop reading; publish far more than the bound plus kernel buffers.
        pad = "x" * 100000
        for i in range(80):
            publisher.items({"channel": ch, "formats": {"ws-message": {"content": "%03d %s" % (i, pad)}}})
        time.sleep(0.5)
        got = []
        close_code = None
        while True:
            op, payload = ws_frame(conn)
            if op == 0x8:
                close_code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                break
            if op == 0x1 and not payload.startswith(b"probe"):
                got.append(int(payload[:3]))
        assert close_code == 1008, close_code
        assert got == list(range(len(got))), "messages before the close are not a gap-free prefix"
        assert 0 < len(got) < 80
        assert conn.peer_closed(5)
    finally:
        sock.close()
        publisher.close()


def ws_open_raw(port, path):
    """A WebSocket handshake on a raw socket (so the test decides whether pings
    are answered); returns the RawConn after the 101."""
    conn = RawConn(port)
    key = base64.b64encode(os.urandom(16)).decode()
    conn.send(("GET %s HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    assert conn.read_head()[1] == 101
    return conn


def ws_send(conn, opcode, payload):
    mask = os.urandom(4)
    assert len(payload) < 126
    conn.send(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


@pytest.mark.parametrize("kind", ["over_http", "passthrough"])
def test_ws_ping_liveness_drops_a_silent_client_and_keeps_one_that_answers(env, backend, ws_backend, uid, aux, kind):
    """websocket_ping_interval: every interval each WebSocket client gets a
    ping; one that sends nothing in the interval after a ping is dropped (and
    counted), one that answers stays, and the answers to these pings never
    reach the backend."""
    routes = aux_routes(env, "*,path_beg=/ws/ 127.0.0.1:%d,over_http" % env.ports.backend,
                        "*,path_beg=/wspass/ 127.0.0.1:%d" % env.ports.ws_backend)
    target = aux("ping", routes, {"gripproxy": {"websocket_ping_interval": "1"},
                                  "proxy": {"prometheus_port": "127.0.0.1:%d" % env.ports.spare}})
    if kind == "over_http":
        base = "/ws/%s/" % uid
        backend.on(base, echo_handler())
    else:
        base = "/wspass/%s/" % uid

        def echo(ws):
            try:
                for m in ws:
                    ws.send(m)
            except Exception:
                pass
        ws_backend.on(base, echo)
    silent = ws_open_raw(target.port, base + "silent")
    live = ws_open_raw(target.port, base + "live")
    try:
        silent_pings = []

        def watch_silent():
            while True:
                try:
                    op, payload = ws_frame(silent, 6)
                except Exception:
                    return
                if op == 0x9:
                    silent_pings.append(payload)
        watcher = threading.Thread(target=watch_silent, daemon=True)
        watcher.start()
        answered = 0
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            try:
                op, payload = ws_frame(live, 0.2)
            except TimeoutError:
                continue
            assert op == 0x9, (op, payload)
            ws_send(live, 0xA, payload)
            answered += 1
        assert answered >= 3, "the answering client got %d pings in 4.5 s at a 1 s interval" % answered
        watcher.join(5)
        assert silent_pings and all(p == silent_pings[0] for p in silent_pings)
        assert silent.peer_closed(1), "the silent client was not dropped"
        # The answering client is still served.
        ws_send(live, 0x1, b"still here")
        op, payload = ws_frame(live, 5)
        while op == 0x9:
            ws_send(live, 0xA, payload)
            op, payload = ws_frame(live, 5)
        assert (op, payload) == (0x1, b"still here")
        assert metrics(env.ports.spare).get("websocket_ping_timeout", 0) >= 1
        if kind == "over_http":
            events = [e for r in backend.requests(base + "live") for e in events_of(r)]
            assert all(t != "PONG" for t, _ in events), events
            silent_events = [e[0] for r in backend.requests(base + "silent") for e in events_of(r)]
            assert "DISCONNECT" in silent_events, silent_events
    finally:
        silent.close()
        live.close()

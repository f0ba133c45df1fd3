"""Client-side helpers: raw HTTP/1.x over sockets, stream collectors, long-polls,
publishing, and bounded waiting."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import httpx


def wait_until(cond: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --------------------------------------------------------------------------------
# raw HTTP


@dataclass
class RawResponse:
    version: str
    status: int
    reason: str
    headers: list
    body: bytes
    chunked: bool = False
    chunks: list = field(default_factory=list)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has_header(self, name):
        return self.header(name) is not None


class RawConn:
    """One TCP connection to a server, for byte-exact requests and responses."""

    def __init__(self, port: int, timeout: float = 10.0, host: str = "127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.closed_by_peer = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, timeout: Optional[float] = None) -> bool:
        if timeout is not None:
            self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed_by_peer = True
            return False
        self.buf += data
        return True

    def read_until(self, marker: bytes, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for %r; have %r" % (marker, self.buf[:500]))
            if not self._fill(left):
                raise ConnectionError("closed while waiting for %r; have %r" % (marker, self.buf[:500]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n: int, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out reading %d bytes" % n)
            if not self._fill(left):
                raise ConnectionError("closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("connection not closed in time")
            if not self._fill(left):
                break
        out, self.buf = self.buf, b""
        return out

    def peer_closed(self, timeout: float = 3.0) -> bool:
        """True when the peer closes (EOF or reset) within timeout without sending anything more."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            try:
                if not self._fill(left):
                    return True
            except socket.timeout:
                return False
            except OSError:
                return True

    def read_head(self, timeout: float = 10.0):
        head = self.read_until(b"\r\n\r\n", timeout).decode("latin-1")
        lines = head.split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code, _, reason = rest.partition(" ")
        headers = []
        for line in lines[1:]:
            if not line:
                continue
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        return version, int(code), reason, headers

    def read_chunk(self, timeout: float = 10.0) -> bytes:
        """One chunk's data of a chunked body; b'' for the last chunk (trailers consumed)."""
        line = self.read_until(b"\r\n", timeout)
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            self.read_until(b"\r\n", timeout)  # no trailers expected
            return b""
        data = self.read_exact(size, timeout)
        if self.read_exact(2, timeout) != b"\r\n":
            raise ValueError("bad chunk terminator")
        return data

    def read_response(self, timeout: float = 10.0, head_request: bool = False) -> RawResponse:
        version, status, reason, headers = self.read_head(timeout)
        r = RawResponse(version, status, reason, headers, b"")
        te = (r.header("Transfer-Encoding") or "").lower()
        if head_request or status in (204, 304) or 100 <= status < 200:
            return r
        if "chunked" in te:
            r.chunked = True
            while True:
                c = self.read_chunk(timeout)
                if not c:
                    break
                r.chunks.append(c)
            r.body = b"".join(r.chunks)
        elif r.header("Content-Length") is not None:
            r.body = self.read_exact(int(r.header("Content-Length")), timeout)
        else:
            r.body = self.read_to_close(timeout)
        return r


def raw_request(method: str, path: str, host: str = "example.test", headers=(), body: bytes = b"",
                version: str = "HTTP/1.1") -> bytes:
    lines = ["%s %s %s" % (method, path, version), "Host: %s" % host]
    names = {k.lower() for k, _ in headers}
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --------------------------------------------------------------------------------
# streams


class StreamCollector:
    """GET a held stream over a raw socket and collect its body in a thread."""

    def __init__(self, port: int, path: str, headers=(), version: str = "HTTP/1.1",
                 host: str = "example.test", head_timeout: float = 10.0):
        self.conn = RawConn(port, timeout=head_timeout)
        self.conn.send(raw_request("GET", path, host=host, headers=headers, version=version))
        self.version, self.status, self.reason, self.headers = self.conn.read_head(head_timeout)
        self.chunked = "chunked" in (self.header("Transfer-Encoding") or "").lower()
        self.data = bytearray()
        self.events = []  # (monotonic time, bytes)
        self.ended = False  # final chunk seen (chunked) or close (unframed)
        self.closed = False  # connection closed by peer
        self.error = None
        self._lock = threading.Condition()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def _add(self, b: bytes):
        with self._lock:
            self.data += b
            self.events.append((time.monotonic(), b))
            self._lock.notify_all()

    def _run(self):
        c = self.conn
        try:
            if self.chunked:
                while not self._stop:
                    try:
                        d = c.read_chunk(timeout=3600)
                    except socket.timeout:
                        continue
                    if not d:
                        with self._lock:
                            self.ended = True
                            self._lock.notify_all()
                        break
                    self._add(d)
            else:
                if c.buf:
                    b, c.buf = c.buf, b""
                    self._add(b)
                while not self._stop:
                    try:
                        c.sock.settimeout(3600)
                        d = c.sock.recv(65536)
                    except socket.timeout:
                        continue
                    if not d:
                        with self._lock:
                            self.ended = True
                            self.closed = True
                            self._lock.notify_all()
                        break
                    self._add(d)
        except Exception as e:  # closed under us, or a framing error
            with self._lock:
                if not self._stop:
                    self.error = e
                    self.closed = True
                self._lock.notify_all()

    def text(self) -> str:
        with self._lock:
            return bytes(self.data).decode("utf-8", "replace")

    def body(self) -> bytes:
        with self._lock:
            return bytes(self.data)

    def wait_for(self, needle, timeout: float = 5.0, start: int = 0) -> bool:
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.monotonic() + timeout
        with self._lock:
            while needle not in bytes(self.data[start:]):
                left = deadline - time.monotonic()
                if left <= 0 or self.ended or self.error:
                    return needle in bytes(self.data[start:])
                self._lock.wait(left)
            return True

    def wait_len(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.data) < n:
                left = deadline - time.monotonic()
                if left <= 0 or self.ended or self.error:
                    return len(self.data) >= n
                self._lock.wait(left)
            return True

    def wait_end(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not (self.ended or self.error):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
            return True

    def close(self):
        self._stop = True
        self.conn.close()


# --------------------------------------------------------------------------------
# long-polls


class Background:
    """Run a blocking call in a thread; .result(timeout) returns or re-raises."""

    def __init__(self, fn, *args, **kw):
        self._done = threading.Event()
        self._res = None
        self._exc = None
        self.started = time.monotonic()
        self.finished = None

        def run():
            try:
                self._res = fn(*args, **kw)
            except BaseException as e:
                self._exc = e
            finally:
                self.finished = time.monotonic()
                self._done.set()

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()

    def done(self) -> bool:
        return self._done.is_set()

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def result(self, timeout: float = 10.0):
        if not self._done.wait(timeout):
            raise TimeoutError("background call still running after %.1fs" % timeout)
        if self._exc:
            raise self._exc
        return self._res


def long_poll(url: str, headers=None, method: str = "GET", timeout: float = 20.0, **kw) -> Background:
    """Start an httpx request in a thread."""
    def go():
        with httpx.Client(timeout=timeout) as c:
            return c.request(method, url, headers=headers, **kw)
    return Background(go)


def raw_long_poll(port: int, path: str, headers=(), timeout: float = 20.0) -> Background:
    def go():
        c = RawConn(port, timeout=timeout)
        try:
            c.send(raw_request("GET", path, headers=headers))
            return c.read_response(timeout)
        finally:
            c.close()
    return Background(go)


# --------------------------------------------------------------------------------
# publishing


class Publisher:
    """Raw POSTs to the publish port."""

    def __init__(self, base: str):
        self.base = base
        self.client = httpx.Client(timeout=10)

    def post(self, body, path: str = "/publish/", headers=None) -> httpx.Response:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.client.post(self.base + path, content=body, headers=h)

    def items(self, *items) -> httpx.Response:
        r = self.post({"items": list(items)})
        assert r.status_code == 200, (r.status_code, r.text)
        return r

    def stream(self, channel: str, content: str, **extra):
        item = {"channel": channel, "formats": {"http-stream": {"content": content}}}
        item.update(extra)
        return self.items(item)

    def response(self, channel: str, body: str, **fmt):
        f = {"body": body}
        f.update(fmt)
        return self.items({"channel": channel, "formats": {"http-response": f}})

    def close(self):
        self.client.close()


def publish_until(done: Callable[[], bool], publish: Callable[[], None], timeout: float = 10.0,
                  interval: float = 0.4) -> int:
    """Publish repeatedly until done() is true: a hold may not be subscribed yet
    when the backend has answered, and Pushpin loses publishes during its
    first-subscription re-check. Returns the number of publishes made."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        publish()
        n += 1
        if wait_until(done, interval):
            return n
        if time.monotonic() >= deadline:
            raise AssertionError("not delivered after %d publishes in %.0fs" % (n, timeout))


def ensure_stream_subscribed(stream: StreamCollector, publisher: Publisher, channel: str,
                             timeout: float = 10.0, sse: bool = False) -> int:
    """Publish numbered probe chunks until the stream shows one, then wait for the
    last one published; returns the body offset after the probes."""
    tag = "probe-%s-" % secrets.token_hex(4)
    n = [0]

    def pub():
        n[0] += 1
        publisher.stream(channel, fmt % (tag, n[0]))

    fmt = "event: probe\ndata: %s%d\n\n" if sse else "%s%d\n"
    publish_until(lambda: tag.encode() in stream.body(), pub, timeout=timeout, interval=0.3)
    last = (fmt % (tag, n[0])).encode()
    assert stream.wait_for(last, 5.0), "last probe not delivered: %r" % stream.body()
    body = stream.body()
    return body.index(last) + len(last)


def wait_recheck(backend, prefix: str, n_holds: int = 1, timeout: float = 5.0, total: Optional[int] = None):
    """Wait until a fresh channel's first-subscription re-check (about 1 s after
    its first subscriber, grip-http.md 5.6) has re-sent the n held requests to
    the backend, plus a margin, so that a single publish afterwards reaches
    every hold. Returns the requests seen.

    The backend must have seen `total` requests under prefix by then (default
    2 * n_holds: each hold's first request and its re-send); fewer is an
    AssertionError, never a silent timeout."""
    want = 2 * n_holds if total is None else total
    got = backend.wait_requests(prefix, want, timeout)
    assert len(got) >= want, (
        "first-subscription re-check not seen: %d of %d requests under %s reached the backend in %.1fs: %s"
        % (len(got), want, prefix, timeout, [(r.method, r.target) for r in got]))
    time.sleep(0.6)
    return got


class SSEReader:
    """An httpx-sse EventSource read in a thread; events are collected in order."""

    def __init__(self, url: str, headers=None, timeout: float = 10.0):
        from httpx_sse import connect_sse
        self.events = []
        self.response = None
        self.error = None
        self.ended = False
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._client = httpx.Client(timeout=httpx.Timeout(timeout, read=None))

        def run():
            try:
                with connect_sse(self._client, "GET", url, headers=dict(headers or {})) as es:
                    self.response = es.response
                    self._ready.set()
                    for ev in es.iter_sse():
                        with self._cond:
                            self.events.append(ev)
                            self._cond.notify_all()
                with self._cond:
                    self.ended = True
                    self._cond.notify_all()
            except Exception as e:
                with self._cond:
                    self.error = e
                    self._cond.notify_all()
            finally:
                self._ready.set()

        self._t = threading.Thread(target=run, daemon=True)
        self._t.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("no SSE response head")
        if self.response is None:
            raise self.error or RuntimeError("SSE connection failed")

    def real_events(self):
        with self._cond:
            return [e for e in self.events if e.event != "probe"]

    def wait(self, pred, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0 or self.error or self.ended:
                    return pred(self)
                self._cond.wait(left)
            return True

    def subscribe(self, publisher: Publisher, channel: str, timeout: float = 10.0):
        """Publish probe events until one arrives (the stream is then subscribed)."""
        tag = "p%s" % secrets.token_hex(3)
        n = [0]

        def pub():
            n[0] += 1
            publisher.stream(channel, "event: probe\ndata: %s-%d\n\n" % (tag, n[0]))

        def seen():
            with self._cond:
                return any(e.event == "probe" and e.data.startswith(tag) for e in self.events)
        publish_until(seen, pub, timeout=timeout, interval=0.3)
        last = "%s-%d" % (tag, n[0])
        assert self.wait(lambda s: any(e.data == last for e in s.events), 5)

    def close(self):
        self._client.close()

"""A programmable test origin (backend) on loopback.

Each test registers handlers for its own path prefix:

    backend.on("/t-1234/", lambda req: Resp(200, body=b"hi"))

A handler gets a `Req` and returns a `Resp` (or a `Resp` can be registered as
is). Every request received is recorded with its headers and body, and its
`Grip-Sig` is checked with gripcontrol's `validate_sig` against the key the
proxy was given; tests look at `backend.requests(prefix)`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Optional, Union

from gripcontrol import validate_sig


@dataclass
class Req:
    method: str
    target: str  # path plus query, as received
    version: str
    headers: list  # [(name, value)] in order, names as received
    body: bytes
    sig_valid: bool
    time: float
    seq: int = 0
    peer: tuple = ()  # the proxy's (address, port) for the connection this request came on

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> Optional[str]:
        """First value of a header (case-insensitive), or None."""
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name: str) -> list:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def has_header(self, name: str) -> bool:
        return self.header(name) is not None


@dataclass
class Resp:
    status: int = 200
    reason: Optional[str] = None
    headers: Iterable = ()  # [(name, value)] or dict
    body: bytes = b""
    # send the body chunked: items are bytes (one chunk each) or floats (sleep)
    chunks: Optional[list] = None
    # body delimited by closing the connection (no Content-Length, no chunking)
    close_delimited: bool = False
    # do not add Content-Length (headers given are sent as they are)
    no_length: bool = False
    delay: float = 0.0  # seconds before the response head
    raw: Optional[bytes] = None  # write these bytes verbatim, then close
    drop: bool = False  # close the connection without answering

    def header_list(self) -> list:
        if isinstance(self.headers, dict):
            return list(self.headers.items())
        return list(self.headers)


Handler = Union[Resp, Callable[[Req], Resp]]


def grip_hold(mode: str, channels, body: Union[bytes, str] = b"", headers=(), status=200,
              timeout=None, keep_alive=None, extra=()) -> Resp:
    """Hold via GRIP headers. `channels` is a str (used as Grip-Channel value) or a list."""
    if isinstance(body, str):
        body = body.encode()
    hs = list(headers.items()) if isinstance(headers, dict) else list(headers)
    hs.append(("Grip-Hold", mode))
    if isinstance(channels, str):
        hs.append(("Grip-Channel", channels))
    else:
        hs.append(("Grip-Channel", ", ".join(channels)))
    if timeout is not None:
        hs.append(("Grip-Timeout", str(timeout)))
    if keep_alive is not None:
        hs.append(("Grip-Keep-Alive", keep_alive))
    hs.extend(extra)
    return Resp(status, headers=hs, body=body)


def instruct(obj) -> Resp:
    """An `application/grip-instruct` answer; obj is a dict or a JSON string."""
    body = obj if isinstance(obj, (str, bytes)) else json.dumps(obj)
    if isinstance(body, str):
        body = body.encode()
    return Resp(200, headers=[("Content-Type", "application/grip-instruct")], body=body)


class Backend:
    def __init__(self, port: int, sig_key: str):
        self.port = port
        self.sig_key = sig_key
        self._handlers: dict = {}
        self._requests: list = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._seq = 0
        backend = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "conformance-backend"

            def log_message(self, fmt, *args):  # quiet
                pass

            def handle_one_request(self):
                try:
                    super().handle_one_request()
                except (ConnectionError, socket.timeout, OSError):
                    self.close_connection = True

            def _do(self):
                backend._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _do

            def __getattr__(self, name):
                # any other method (e.g. PROPFIND)
                if name.startswith("do_"):
                    return self._do
                raise AttributeError(name)

        class _Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True  # SO_REUSEADDR; never two listeners on Linux
            request_queue_size = 512

        self._server = _Server(("127.0.0.1", port), _H)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="backend")

    # -- lifecycle -------------------------------------------------------------
    def start(self):
        self._thread.start()
        self.on("/__ready", Resp(200, headers=[("Content-Type", "text/plain")], body=b"ready\n"))
        # A GRIP answer (a next link) takes the path a plain proxied answer does not:
        # Pushpin's proxy hands it to its handler over ZeroMQ, which may still be
        # connecting after /__ready already answers ("Accept service unavailable").
        self.on("/__ready-accept", Resp(200, headers=[("Content-Type", "text/plain"),
                                                      ("Grip-Link", "</__ready>; rel=next")],
                                        body=b"accept\n"))

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # -- registry --------------------------------------------------------------
    def on(self, prefix: str, handler: Handler):
        with self._lock:
            self._handlers[prefix] = handler

    def off(self, prefix: str):
        with self._lock:
            self._handlers.pop(prefix, None)

    def requests(self, prefix: str = "") -> list:
        with self._lock:
            return [r for r in self._requests if r.target.startswith(prefix)]

    def wait_requests(self, prefix: str, n: int, timeout: float = 5.0) -> list:
        """Wait until at least n requests under prefix were received; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self._requests if r.target.startswith(prefix)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return got
                self._cond.wait(left)

    # -- serving ---------------------------------------------------------------
    def _find(self, target: str):
        with self._lock:
            best = None
            for prefix, h in self._handlers.items():
                if target.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                    best = (prefix, h)
        return best[1] if best else None

    def _serve(self, h: BaseHTTPRequestHandler):
        headers = list(h.headers.items())
        body = b""
        te = (h.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = h.rfile.readline()
                if not line:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers
                    while True:
                        t = h.rfile.readline()
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                parts.append(h.rfile.read(size))
                h.rfile.readline()
            body = b"".join(parts)
        else:
            n = int(h.headers.get("Content-Length") or 0)
            if n:
                body = h.rfile.read(n)
        token = h.headers.get("Grip-Sig")
        sig_valid = bool(token) and validate_sig(token, self.sig_key)
        with self._cond:
            self._seq += 1
            req = Req(h.command, h.path, h.request_version, headers, body, sig_valid,
                      time.monotonic(), self._seq, tuple(h.client_address))
            self._requests.append(req)
            self._cond.notify_all()

        handler = self._find(h.path)
        if handler is None:
            resp = Resp(404, headers=[("Content-Type", "text/plain")],
                        body=b"no handler registered\n")
        elif isinstance(handler, Resp):
            resp = handler
        else:
            try:
                resp = handler(req)
            except Exception as e:  # a test bug: make it visible
                resp = Resp(599, headers=[("Content-Type", "text/plain")],
                            body=("handler raised %r\n" % (e,)).encode())
        self._write(h, req, resp)

    def _write(self, h: BaseHTTPRequestHandler, req: Req, resp: Resp):
        w = h.wfile
        if resp.delay:
            time.sleep(resp.delay)
        if resp.drop:
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if resp.raw is not None:
            w.write(resp.raw)
            w.flush()
            h.close_connection = True
            return
        reason = resp.reason
        if reason is None:
            try:
                reason = HTTPStatus(resp.status).phrase
            except ValueError:
                reason = "Unknown"
        lines = ["HTTP/1.1 %d %s" % (resp.status, reason)]
        hs = resp.header_list()
        names = {k.lower() for k, _ in hs}
        for k, v in hs:
            lines.append("%s: %s" % (k, v))
        no_body = req.method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
        if resp.chunks is not None:
            lines.append("Transfer-Encoding: chunked")
        elif resp.close_delimited:
            lines.append("Connection: close")
            h.close_connection = True
        elif not resp.no_length and "content-length" not in names and not (
                resp.status in (204, 304) or 100 <= resp.status < 200):
            lines.append("Content-Length: %d" % len(resp.body))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            if resp.chunks is not None:
                w.write(head)
                w.flush()
                for c in resp.chunks:
                    if isinstance(c, (int, float)):
                        time.sleep(c)
                        continue
                    if not c:
                        continue
                    w.write(b"%x\r\n%s\r\n" % (len(c), c))
                    w.flush()
                w.write(b"0\r\n\r\n")
                w.flush()
            else:
                w.write(head + (b"" if no_body else resp.body))
                w.flush()
        except (ConnectionError, OSError):
            h.close_connection = True
            return
        if resp.close_delimited:
            try:
                h.connection.shutdown(socket.SHUT_WR)
            except OSError:
                pass

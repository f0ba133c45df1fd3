"""WebSocket helpers: a Lambda-style WebSocket-over-HTTP handler built on
gripcontrol 4's WebSocketContext (what faas-grip does; decisions C4), a
pass-through WebSocket backend, and client-side helpers."""

from __future__ import annotations

import secrets
import struct
import threading
import time

from gripcontrol import (WebSocketContext, WebSocketEvent, decode_websocket_events,
                         encode_websocket_events)
from websockets.sync.client import connect as _ws_connect

from harness.backend import Resp

WS_EVENTS = "application/websocket-events"


def ws_connect(env, path, **kw):
    """websockets client with compression and automatic pings off (decisions C3)."""
    kw.setdefault("compression", None)
    kw.setdefault("ping_interval", None)
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return _ws_connect("ws://127.0.0.1:%d%s" % (env.port, path), **kw)


def request_meta(req) -> dict:
    return {k[5:].lower(): v for k, v in req.headers if k.lower().startswith("meta-")}


def context_from_request(req) -> WebSocketContext:
    return WebSocketContext(req.header("Connection-Id"), request_meta(req),
                            decode_websocket_events(req.body))


def context_to_response(ctx: WebSocketContext, headers=(), grip=True) -> Resp:
    """faas-grip's lambda_websocket_to_response, on gripcontrol 4."""
    events = []
    if ctx.accepted:
        events.append(WebSocketEvent("OPEN"))
    events.extend(ctx.out_events)
    if ctx.closed:
        events.append(WebSocketEvent("CLOSE", struct.pack(">H", ctx.out_close_code or 0)))
    hs = [("Content-Type", WS_EVENTS)]
    if ctx.accepted and grip:
        hs.append(("Sec-WebSocket-Extensions", "grip"))
    for k, v in ctx.meta.items():
        if ctx.orig_meta.get(k) != v:
            hs.append(("Set-Meta-" + k, v))
    for k in ctx.orig_meta:
        if k not in ctx.meta:
            hs.append(("Set-Meta-" + k, ""))
    hs.extend(headers)
    return Resp(200, headers=hs, body=encode_websocket_events(events))


def lambda_handler(fn, grip=True):
    """Backend handler: fn(ctx, req) is called for every WebSocket-over-HTTP
    request, stateless like a Lambda function; it may return extra headers."""
    def h(req):
        ctx = context_from_request(req)
        extra = fn(ctx, req) or ()
        return context_to_response(ctx, headers=extra, grip=grip)
    return h


def echo_handler(subscribe=None, grip=True):
    """Accept, optionally subscribe, echo every TEXT/BINARY message with the m: prefix."""
    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            if subscribe:
                ctx.subscribe(subscribe)
        while ctx.can_recv():
            m = ctx.recv()
            if m is None:
                # echo the client's CLOSE (code and reason) as it came
                ev = ctx.in_events[ctx.read_index - 1]
                ctx.out_events.append(WebSocketEvent("CLOSE", ev.content))
                break
            if isinstance(m, bytes):
                ctx.send_binary(m)
            else:
                ctx.send(m)
    return lambda_handler(fn, grip=grip)


def events_of(req):
    return [(e.type, e.content) for e in decode_websocket_events(req.body)]


def ws_recv(ws, timeout=5.0):
    return ws.recv(timeout=timeout)


def ws_subscribed(ws, pub, channel, timeout=10.0):
    """Publish ws-message probes until the client gets one; drain the rest."""
    tag = "probe-%s-" % secrets.token_hex(3)
    n = 0
    deadline = time.monotonic() + timeout
    while True:
        n += 1
        pub.items({"channel": channel, "formats": {"ws-message": {"content": "%s%d" % (tag, n)}}})
        try:
            m = ws.recv(timeout=0.3)
        except TimeoutError:
            if time.monotonic() > deadline:
                raise AssertionError("WebSocket never got a published probe")
            continue
        if isinstance(m, str) and m.startswith(tag):
            break
        raise AssertionError("unexpected message while probing: %r" % (m,))
    last = "%s%d" % (tag, n)
    while m != last:
        m = ws.recv(timeout=5)
        assert isinstance(m, str) and m.startswith(tag), m


class PassThroughBackend:
    """A real WebSocket server for pass-through routes (no over_http). Its
    behaviour per path is set by the test: handlers[path_prefix](ws)."""

    def __init__(self, port: int):
        from websockets.sync.server import serve
        self.handlers = {}
        self.requests = []
        self._lock = threading.Lock()

        def handler(ws):
            req = ws.request
            with self._lock:
                best = None
                for p, h in self.handlers.items():
                    if req.path.startswith(p) and (best is None or len(p) > len(best[0])):
                        best = (p, h)
            if best is None:
                ws.close(4404, "no handler")
                return
            best[1](ws)

        def process_response(conn, request, response):
            # Recorded before the 101 goes out, so a test that saw its handshake finish finds the request here
            # (the handler runs in a thread after the handshake, too late for such a test).
            with self._lock:
                self.requests.append(request)
            # accept the grip extension on paths containing /grip/
            if "/grip/" in request.path and "grip" in (request.headers.get("Sec-WebSocket-Extensions") or ""):
                response.headers["Sec-WebSocket-Extensions"] = "grip"
            return None

        self._server = serve(handler, "127.0.0.1", port, compression=None, ping_interval=None,
                             process_response=process_response)
        self._t = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._t.start()

    def stop(self):
        self._server.shutdown()

    def on(self, prefix, handler):
        with self._lock:
            self.handlers[prefix] = handler

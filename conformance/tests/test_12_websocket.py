"""WebSockets: WebSocket-over-HTTP (route /ws/, over_http), the grip
extension and control messages, publishing ws-message, pass-through
(route /wspass/). All marked `websocket` (issue 3)."""

import base64
import re
import struct
import time

import httpx
import pytest
from gripcontrol import WebSocketMessageFormat
from pubcontrol import Item
from websockets.exceptions import ConnectionClosed, InvalidStatus

from harness.backend import Resp
from harness.client import wait_until
from harness.ws import (WS_EVENTS, echo_handler, events_of, lambda_handler, ws_connect,
                        ws_subscribed)

pytestmark = pytest.mark.websocket

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wspath(uid):
    return "/ws/%s/" % uid


def ev_resp(body: bytes, headers=()):
    return Resp(200, headers=[("Content-Type", WS_EVENTS)] + list(headers), body=body)


def test_ws_open_accepted_and_text_echoed(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid) + "chat?room=5") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"


def test_ws_open_request_to_backend(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid) + "chat?room=5", additional_headers={"Cookie": "sid=abc"},
                    origin="http://app.example") as ws:
        pass
    req = backend.requests(wspath(uid))[0]
    assert req.method == "POST"
    assert req.target == wspath(uid) + "chat?room=5"
    assert req.header("Content-Type") == WS_EVENTS
    assert WS_EVENTS in (req.header("Accept") or "")
    assert UUID.match(req.header("Connection-Id") or ""), req.header("Connection-Id")
    assert req.sig_valid
    assert "grip" in (req.header("Sec-WebSocket-Extensions") or "")
    assert req.header("Cookie") == "sid=abc"
    assert req.header("Origin") == "http://app.example"
    assert req.header("Upgrade") is None
    assert events_of(req)[0] == ("OPEN", None)


def test_ws_connection_id_stable_and_unique(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid) + "a") as a, ws_connect(env, wspath(uid) + "b") as b:
        for ws in (a, b):
            ws.send("1")
            assert ws.recv(timeout=5) == "1"
            ws.send("2")
            assert ws.recv(timeout=5) == "2"
    ids = {}
    for r in backend.requests(wspath(uid)):
        ids.setdefault(r.path, set()).add(r.header("Connection-Id"))
    assert len(ids[wspath(uid) + "a"]) == 1 and len(ids[wspath(uid) + "b"]) == 1
    assert ids[wspath(uid) + "a"] != ids[wspath(uid) + "b"]


def test_ws_rejected_handshake_relays_backend_answer(env, backend, uid):
    backend.on(wspath(uid), Resp(403, headers=[("Content-Type", "text/plain"), ("X-Why", "policy")],
                                 body=b"go away\n"))
    with pytest.raises(InvalidStatus) as e:
        with ws_connect(env, wspath(uid)):
            pass
    r = e.value.response
    assert r.status_code == 403
    assert r.headers.get("X-Why") == "policy"
    assert r.body == b"go away\n"


def test_ws_handshake_answer_without_open_is_502(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"TEXT 4\r\nm:hi\r\n", [("Sec-WebSocket-Extensions", "grip")]))
    with pytest.raises(InvalidStatus) as e:
        with ws_connect(env, wspath(uid)):
            pass
    assert e.value.response.status_code == 502


def test_ws_binary_both_ways(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    data = bytes(range(256))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(data)
        assert ws.recv(timeout=5) == data
    reqs = backend.requests(wspath(uid))
    assert ("BINARY", data) in [e for r in reqs for e in events_of(r)]


def test_ws_text_event_content_to_backend(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("h\u00e9llo")
        assert ws.recv(timeout=5) == "h\u00e9llo"
    evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
    assert ("TEXT", "h\u00e9llo".encode()) in evs


def test_ws_fragmented_client_message_reassembled(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(["frag-", "ment-", "ed"])
        assert ws.recv(timeout=5) == "frag-ment-ed"


def test_ws_handshake_events_after_open_applied(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nTEXT a\r\nm:welcome!\r\n",
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == "welcome!"


def test_ws_backend_protocol_header_reaches_client(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\n", [("Sec-WebSocket-Extensions", "grip"),
                                                 ("Sec-WebSocket-Protocol", "chat")]))
    with ws_connect(env, wspath(uid), subprotocols=["chat", "other"]) as ws:
        assert ws.subprotocol == "chat"


def test_ws_unprefixed_backend_message_dropped_with_grip(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nTEXT 7\r\ndropped\r\nTEXT 6\r\nm:kept\r\n",
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == "kept"


def test_ws_without_grip_extension_messages_verbatim(env, backend, uid):
    body = b'OPEN\r\nTEXT 2d\r\nc:{"type":"subscribe","channel":"x-verbatim"}\r\nTEXT 5\r\nplain\r\n'
    backend.on(wspath(uid), ev_resp(body))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == 'c:{"type":"subscribe","channel":"x-verbatim"}'
        assert ws.recv(timeout=5) == "plain"


def test_ws_custom_message_prefix(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nTEXT 8\r\n>>custom\r\nTEXT 6\r\nm:drop\r\n",
                                    [("Sec-WebSocket-Extensions", 'grip; message-prefix=">>"')]))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == "custom"
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1)


def test_ws_subscribe_and_receive_publish(env, backend, uid, pub, grip_pub):
    ch = "ws-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        grip_pub.publish(ch, Item(WebSocketMessageFormat("published text")), blocking=True)
        assert ws.recv(timeout=5) == "published text"
        grip_pub.publish(ch, Item(WebSocketMessageFormat(b"\x00\x01bin", binary=True)), blocking=True)
        assert ws.recv(timeout=5) == b"\x00\x01bin"


def test_ws_publish_order_preserved(env, backend, uid, pub):
    ch = "ws-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        pub.items(*[{"channel": ch, "formats": {"ws-message": {"content": "m%02d" % i}}} for i in range(30)])
        got = [ws.recv(timeout=5) for _ in range(30)]
        assert got == ["m%02d" % i for i in range(30)]


def test_ws_published_messages_not_prefixed(env, backend, uid, pub):
    ch = "ws-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "m:as is"}}})
        assert ws.recv(timeout=5) == "m:as is"


def test_ws_unsubscribe_stops_delivery(env, backend, uid, pub):
    ch = "ws-" + uid

    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            ctx.subscribe(ch)
        while ctx.can_recv():
            m = ctx.recv()
            if m == "leave":
                ctx.unsubscribe(ch)
                ctx.send("left")
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        ws.send("leave")
        assert ws.recv(timeout=5) == "left"
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "after leaving"}}})
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.5)


def test_ws_subscribe_from_later_message(env, backend, uid, pub):
    ch = "ws-" + uid

    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
        while ctx.can_recv():
            m = ctx.recv()
            if m == "join":
                ctx.subscribe(ch)
                ctx.send("joined")
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("join")
        assert ws.recv(timeout=5) == "joined"
        ws_subscribed(ws, pub, ch)


def test_ws_set_meta_returned_as_meta_header(env, backend, uid):
    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            ctx.meta["user"] = "alice"
        while ctx.can_recv():
            m = ctx.recv()
            if m is not None:
                ctx.send("user=%s" % ctx.meta.get("user"))
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("who")
        assert ws.recv(timeout=5) == "user=alice"
    assert backend.requests(wspath(uid))[0].header("Meta-User") is None
    assert backend.requests(wspath(uid))[1].header("Meta-User") == "alice"


def test_ws_client_meta_headers_not_forwarded(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid), additional_headers={"Meta-User": "mallory",
                                                          "Grip-Sig": "forged"}) as ws:
        pass
    req = backend.requests(wspath(uid))[0]
    assert req.header("Meta-User") is None
    assert req.sig_valid


def test_ws_client_close_sent_to_backend_and_echoed(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        ws.close(4001, "client done")
        assert ws.close_code == 4001
        evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
        closes = [c for t, c in evs if t == "CLOSE"]
        assert closes and closes[0][:2] == struct.pack(">H", 4001)
        assert closes[0][2:] == b"client done"


def test_ws_backend_close_event_closes_client(env, backend, uid):
    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
        while ctx.can_recv():
            if ctx.recv() == "bye":
                ctx.close(4002)
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("bye")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 4002


def test_ws_backend_close_with_reason(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nCLOSE 9\r\n" + struct.pack(">H", 4003) + b"goodbye\r\n",
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (4003, "goodbye")


def test_ws_publish_close_action(env, backend, uid, pub):
    ch = "ws-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        pub.items({"channel": ch, "formats": {"ws-message": {"action": "close", "code": 4005, "reason": "room closed"}}})
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (4005, "room closed")


def test_ws_publish_close_without_code_is_1000(env, backend, uid, pub):
    ch = "ws-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        pub.items({"channel": ch, "formats": {"ws-message": {"action": "close"}}})
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1000


def test_ws_detach_keeps_publishes_flowing(env, backend, uid, pub):
    ch = "ws-" + uid

    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            ctx.subscribe(ch)
            ctx.detach()
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, ch)
        n = len(backend.requests(wspath(uid)))
        ws.send("ignored after detach")
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "still flowing"}}})
        assert ws.recv(timeout=5) == "still flowing"
        time.sleep(0.5)
        evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
        assert ("TEXT", b"ignored after detach") not in evs
        assert ("CLOSE", None) in evs


def test_ws_keep_alive_control_message(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b'OPEN\r\nTEXT 32\r\nc:{"type":"keep-alive","content":"ka","timeout":1}\r\n',
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=4) == "ka"
        assert ws.recv(timeout=4) == "ka"


def test_ws_send_delayed_control_message(env, backend, uid):
    msg = b'c:{"type":"send-delayed","message-type":"text","content":"later","timeout":1}'
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nTEXT %x\r\n%s\r\n" % (len(msg), msg),
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        t0 = time.monotonic()
        assert ws.recv(timeout=4) == "later"
        assert time.monotonic() - t0 >= 0.5


def test_ws_invalid_control_message_ignored(env, backend, uid):
    backend.on(wspath(uid), ev_resp(b"OPEN\r\nTEXT 9\r\nc:{broken\r\nTEXT 4\r\nm:ok\r\n",
                                    [("Sec-WebSocket-Extensions", "grip")]))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == "ok"


def test_ws_client_ping_becomes_ping_event(env, backend, uid):
    backend.on(wspath(uid), echo_handler())  # WebSocketContext answers PING with PONG
    with ws_connect(env, wspath(uid)) as ws:
        pong = ws.ping(b"p1")
        assert pong.wait(5), "no pong"
    evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
    assert ("PING", b"p1") in evs


def test_ws_client_vanishing_sends_disconnect(env, backend, uid):
    import socket
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
        sock = ws.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
        assert wait_until(lambda: any(("DISCONNECT", None) in events_of(r)
                                      for r in backend.requests(wspath(uid))), 5)


def test_ws_client_leaving_while_open_is_out_sends_disconnect(env, backend, uid):
    """The client sends its handshake and closes before the backend answers
    OPEN: once the backend accepts, it hears DISCONNECT for that connection
    (nothing is left half-open), and the next WebSocket is served as usual."""
    import socket

    def fn(ctx, req):
        if ctx.is_opening():
            time.sleep(1.0)  # the client is gone before this answer
            ctx.accept()
    backend.on(wspath(uid) + "slow", lambda_handler(fn))
    backend.on(wspath(uid) + "next", echo_handler())
    backend.on(wspath(uid) + "warm", Resp(200, body=b"warm\n", delay=0.3))
    # Two overlapping calls leave two kept-alive backend connections (idle for 1 s): with OPEN out on one, a
    # request sent after the client left would go out at once on the other, where the backend would see it.
    import threading
    warm = [threading.Thread(target=lambda: httpx.get(env.url(wspath(uid) + "warm"), timeout=5)) for _ in range(2)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=5)
    sock.sendall(("GET %sslow HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % wspath(uid)).encode())
    assert wait_until(lambda: backend.requests(wspath(uid) + "slow"), 5), "OPEN never reached the backend"
    sock.close()
    reqs = lambda: backend.requests(wspath(uid) + "slow")  # noqa: E731
    assert wait_until(lambda: any(("DISCONNECT", None) in events_of(r) for r in reqs()), 8), \
        [events_of(r) for r in reqs()]
    ids = {dict((k.lower(), v) for k, v in r.headers).get("connection-id") for r in reqs()}
    assert len(ids) == 1, "OPEN and DISCONNECT name different connections: %r" % ids
    with ws_connect(env, wspath(uid) + "next") as ws:
        ws.send("still serving")
        assert ws.recv(timeout=5) == "still serving"


def test_ws_large_message_to_backend(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    data = "y" * 50000
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(data)
        evs = []
        assert wait_until(lambda: ("TEXT", data.encode()) in
                          [e for r in backend.requests(wspath(uid)) for e in events_of(r)], 5)


def test_ws_messages_while_request_in_flight_batched(env, backend, uid):
    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            return
        time.sleep(0.5)  # slow: the next messages queue up meanwhile
        while ctx.can_recv():
            m = ctx.recv()
            if m is not None:
                ctx.send(m)
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        for i in range(5):
            ws.send("b%d" % i)
        got = [ws.recv(timeout=5) for _ in range(5)]
    assert got == ["b%d" % i for i in range(5)]
    reqs = backend.requests(wspath(uid))
    assert len(reqs) < 6, "messages sent while a request was in flight were not batched"


def test_ws_events_content_type_from_http_client_forbidden(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    r = httpx.post(env.url(wspath(uid)), content=b"OPEN\r\n", headers={"Content-Type": WS_EVENTS}, timeout=10)
    assert r.status_code == 403
    assert r.text == "Client not allowed to send WebSocket events directly.\n"


def test_ws_plain_http_on_over_http_route_proxied(env, backend, uid):
    backend.on(wspath(uid), Resp(200, headers=[("Content-Type", "text/plain")], body=b"plain http\n"))
    r = httpx.get(env.url(wspath(uid)), timeout=10)
    assert (r.status_code, r.text) == (200, "plain http\n")


# -- pass-through ---------------------------------------------------------------


def test_ws_passthrough_echo(env, ws_backend, uid):
    def echo(ws):
        for m in ws:
            ws.send(m)
    ws_backend.on("/wspass/%s/" % uid, echo)
    with ws_connect(env, "/wspass/%s/echo" % uid) as ws:
        ws.send("through")
        assert ws.recv(timeout=5) == "through"
        ws.send(b"\x01\x02")
        assert ws.recv(timeout=5) == b"\x01\x02"


def test_ws_passthrough_handshake_carries_grip_sig(env, ws_backend, uid):
    from gripcontrol import validate_sig
    from harness.target import SIG_KEY

    def idle(ws):
        for _ in ws:
            pass
    ws_backend.on("/wspass/%s/" % uid, idle)
    with ws_connect(env, "/wspass/%s/x" % uid) as ws:
        pass
    req = [r for r in ws_backend.requests if r.path.startswith("/wspass/%s/" % uid)][0]
    assert validate_sig(req.headers["Grip-Sig"], SIG_KEY)
    assert "grip" in req.headers.get("Sec-WebSocket-Extensions", "")


def test_ws_passthrough_backend_close_code_relayed(env, ws_backend, uid):
    def closer(ws):
        ws.recv()
        ws.close(4010, "backend says bye")
    ws_backend.on("/wspass/%s/" % uid, closer)
    with ws_connect(env, "/wspass/%s/x" % uid) as ws:
        ws.send("hi")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (4010, "backend says bye")


def test_ws_passthrough_grip_subscribe_and_publish(env, ws_backend, uid, pub):
    ch = "wsp-" + uid

    def grip(ws):
        ws.send('c:{"type":"subscribe","channel":"%s"}' % ch)
        ws.send("m:subscribed")
        for _ in ws:
            pass
    ws_backend.on("/wspass/grip/%s/" % uid, grip)
    with ws_connect(env, "/wspass/grip/%s/x" % uid) as ws:
        assert ws.recv(timeout=5) == "subscribed"
        ws_subscribed(ws, pub, ch)
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "to pass-through"}}})
        assert ws.recv(timeout=5) == "to pass-through"

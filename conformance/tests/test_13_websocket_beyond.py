"""WebSocket behaviours where GripProxy deliberately improves on Pushpin 1.36
(reference-behaviour.md, last section; decisions W1-W5). Marked both
`websocket` and `beyond_reference`."""

import base64
import os
import struct

import pytest
from websockets.exceptions import ConnectionClosed

from harness.backend import Resp
from harness.client import RawConn, wait_until
from harness.ws import WS_EVENTS, echo_handler, events_of, lambda_handler, ws_connect

pytestmark = [pytest.mark.websocket, pytest.mark.beyond_reference]


def wspath(uid):
    return "/ws/%s/" % uid


def raw_ws(env, path):
    c = RawConn(env.port)
    key = base64.b64encode(os.urandom(16)).decode()
    c.send(("GET %s HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    version, status, reason, headers = c.read_head()
    assert status == 101, (status, reason)
    return c


def frame(opcode, payload, mask=True, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([b0, (0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_close_code(c, timeout=5):
    """Read frames until a close frame; return its code (None without one)."""
    while True:
        h = c.read_exact(2, timeout)
        op, n = h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", c.read_exact(2, timeout))[0]
        elif n == 127:
            n = struct.unpack(">Q", c.read_exact(8, timeout))[0]
        payload = c.read_exact(n, timeout) if n else b""
        if op == 0x8:
            return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None


def test_ws_large_backend_message_arrives_whole(env, backend, uid):
    big = "z" * 100000

    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
        while ctx.can_recv():
            if ctx.recv() == "big please":
                ctx.send(big)
    backend.on(wspath(uid), lambda_handler(fn))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("big please")
        assert ws.recv(timeout=10) == big


def test_ws_large_client_message_accepted(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    data = os.urandom(500000)
    with ws_connect(env, wspath(uid), max_size=2 ** 21) as ws:
        ws.send(data)
        assert ws.recv(timeout=10) == data


def test_ws_client_message_over_limit_closed_1009(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(b"x" * (1048576 + 1000))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert ws.close_code == 1009


def test_ws_events_content_type_with_charset_accepted(env, backend, uid):
    backend.on(wspath(uid), Resp(200, headers=[("Content-Type", WS_EVENTS + "; charset=utf-8"),
                                               ("Sec-WebSocket-Extensions", "grip")],
                                 body=b"OPEN\r\nTEXT 4\r\nm:hi\r\n"))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=5) == "hi"


def test_ws_refused_answer_after_handshake_closes_1011(env, backend, uid):
    def h(req):
        if events_of(req)[0][0] == "OPEN":
            return Resp(200, headers=[("Content-Type", WS_EVENTS), ("Sec-WebSocket-Extensions", "grip")],
                        body=b"OPEN\r\n")
        return Resp(500, headers=[("Content-Type", "text/plain")], body=b"backend broke\n")
    backend.on(wspath(uid), h)
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1011


def test_ws_unmasked_client_frame_closed_1002(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    c = raw_ws(env, wspath(uid))
    try:
        c.send(frame(0x1, b"unmasked", mask=False))
        assert read_close_code(c) == 1002
    finally:
        c.close()


def test_ws_invalid_utf8_text_closed_1007(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    c = raw_ws(env, wspath(uid))
    try:
        c.send(frame(0x1, b"\xff\xfe bad"))
        assert read_close_code(c) == 1007
    finally:
        c.close()


def test_ws_keep_alive_content_bin_sent_binary(env, backend, uid):
    msg = b'c:{"type":"keep-alive","content-bin":"AAEC","timeout":1}'
    backend.on(wspath(uid), Resp(200, headers=[("Content-Type", WS_EVENTS), ("Sec-WebSocket-Extensions", "grip")],
                                 body=b"OPEN\r\nTEXT %x\r\n%s\r\n" % (len(msg), msg)))
    with ws_connect(env, wspath(uid)) as ws:
        assert ws.recv(timeout=4) == b"\x00\x01\x02"


def test_ws_require_sub_evaluated(env, backend, uid, pub):
    from harness.ws import ws_subscribed
    a, b = "a-" + uid, "b-" + uid
    sub_a = b'c:{"type":"subscribe","channel":"%s","filters":["require-sub"]}' % a.encode()
    sub_b = b'c:{"type":"subscribe","channel":"%s"}' % b.encode()
    backend.on(wspath(uid), Resp(200, headers=[("Content-Type", WS_EVENTS), ("Sec-WebSocket-Extensions", "grip")],
                                 body=b"OPEN\r\nTEXT %x\r\n%s\r\nTEXT %x\r\n%s\r\n" % (len(sub_a), sub_a, len(sub_b), sub_b)))
    with ws_connect(env, wspath(uid)) as ws:
        ws_subscribed(ws, pub, b)
        ws_subscribed(ws, pub, a)
        pub.items({"channel": a, "meta": {"require_sub": "nope-" + uid}, "formats": {"ws-message": {"content": "dropped"}}},
                  {"channel": a, "meta": {"require_sub": b}, "formats": {"ws-message": {"content": "required ok"}}})
        assert ws.recv(timeout=5) == "required ok"


def test_ws_malformed_handshake_answer_is_502(env, backend, uid):
    """decisions W2: content shorter than its declared length is rejected; at
    the handshake that is a 502 (websocket-over-http.md 1.4)."""
    from websockets.exceptions import InvalidStatus
    backend.on(wspath(uid), Resp(200, headers=[("Content-Type", WS_EVENTS), ("Sec-WebSocket-Extensions", "grip")],
                                 body=b"OPEN\r\nTEXT 40\r\nm:short\r\n"))
    with pytest.raises(InvalidStatus) as e:
        with ws_connect(env, wspath(uid)):
            pass
    assert e.value.response.status_code == 502

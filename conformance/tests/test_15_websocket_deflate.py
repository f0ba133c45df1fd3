"""permessage-deflate (RFC 7692) between clients and GripProxy (decisions W9;
C3: the only tests whose `websockets` clients offer compression). Pushpin 1.36
never negotiates it (websocket-over-http.md 1), so these are all
`beyond_reference`."""

import base64
import os
import struct
import zlib

import pytest

from harness.extra import raw_ws_handshake, read_ws_frame, ws_all_subscribed, ws_frame
from harness.ws import echo_handler, events_of, ws_connect, ws_subscribed

pytestmark = [pytest.mark.websocket, pytest.mark.beyond_reference]


def wspath(uid):
    return "/ws/%s/" % uid


def ext_params(value: str) -> dict:
    """`permessage-deflate; a; b=9` -> {"a": None, "b": "9"} (first offer only)."""
    first = value.split(",")[0]
    parts = [p.strip() for p in first.split(";")]
    assert parts[0] == "permessage-deflate", value
    out = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        out[k.strip()] = v.strip().strip('"') or None
    return out


def inflate(payload: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff") + d.flush()


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


BIG_TEXT = "".join('{"seq":%d,"note":"published to every subscriber","pad":"%s"}\n'
                   % (i, "abcdefgh" * (i % 7)) for i in range(60))


def test_deflate_negotiated_without_context_takeover(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid), compression="deflate") as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        params = ext_params(ext)
        assert "server_no_context_takeover" in params, ext
        assert "client_no_context_takeover" in params, ext
        ws.send("negotiated")
        assert ws.recv(timeout=5) == "negotiated"


def test_deflate_not_offered_to_over_http_backend(env, backend, uid):
    """The client's permessage-deflate offer is between client and proxy: the
    backend sees only the grip extension."""
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid), compression="deflate") as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    req = backend.requests(wspath(uid))[0]
    assert "permessage-deflate" not in (req.header("Sec-WebSocket-Extensions") or "")


def test_deflate_text_and_binary_both_ways(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    text = "compressible text " * 200 + "\u00e9\u4e2d"
    data = os.urandom(3000) + b"\x00" * 3000
    with ws_connect(env, wspath(uid), compression="deflate") as ws:
        ws.send(text)
        assert ws.recv(timeout=5) == text
        ws.send(data)
        assert ws.recv(timeout=5) == data
        ws.send("tiny")
        assert ws.recv(timeout=5) == "tiny"
    evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
    assert ("TEXT", text.encode()) in evs, "the backend did not get the inflated text"
    assert ("BINARY", data) in evs, "the backend did not get the inflated binary message"


def test_deflate_published_message_to_mixed_clients(env, backend, uid, pub):
    ch = "wsd-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid) + "a", compression="deflate") as a, \
            ws_connect(env, wspath(uid) + "b", compression="deflate") as b, \
            ws_connect(env, wspath(uid) + "plain") as plain:
        assert "permessage-deflate" in (a.response.headers.get("Sec-WebSocket-Extensions") or "")
        assert "permessage-deflate" not in (plain.response.headers.get("Sec-WebSocket-Extensions") or "")
        clients = [a, b, plain]
        ws_all_subscribed(clients, pub, ch)
        blob = os.urandom(500) + b"z" * 500
        pub.items({"channel": ch, "formats": {"ws-message": {"content": BIG_TEXT}}},
                  {"channel": ch, "formats": {"ws-message": {"content-bin": base64.b64encode(blob).decode()}}},
                  {"channel": ch, "formats": {"ws-message": {"content": "small one"}}})
        for ws in clients:
            assert ws.recv(timeout=5) == BIG_TEXT
            assert ws.recv(timeout=5) == blob
            assert ws.recv(timeout=5) == "small one"


def test_deflate_small_published_message(env, backend, uid, pub):
    ch = "wsd-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    with ws_connect(env, wspath(uid), compression="deflate") as ws:
        ws_subscribed(ws, pub, ch)
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "under 64 bytes"}}})
        assert ws.recv(timeout=5) == "under 64 bytes"


def test_deflate_large_messages_compressed_small_ones_not(env, backend, uid, pub):
    """W9: a message of 64 bytes or more goes out with RSV1 and raw deflate
    data; a smaller one with RSV1 clear."""
    ch = "wsd-" + uid
    backend.on(wspath(uid), echo_handler(subscribe=ch))
    c, status, headers = raw_ws_handshake(env.port, wspath(uid), "permessage-deflate")
    try:
        assert status == 101
        ext = " ".join(v for k, v in headers if k.lower() == "sec-websocket-extensions")
        assert "permessage-deflate" in ext, headers
        # subscribed? publish probes until one frame arrives, then a marker
        n = 0
        got = None
        while got is None:
            n += 1
            assert n < 40, "never subscribed"
            pub.items({"channel": ch, "formats": {"ws-message": {"content": "p%d" % n}}})
            try:
                got = read_ws_frame(c, timeout=0.3)
            except TimeoutError:
                pass
        pub.items({"channel": ch, "formats": {"ws-message": {"content": "marker"}}})
        while True:
            fin, rsv1, op, payload = read_ws_frame(c)
            assert not rsv1, "a message under 64 bytes was compressed"
            if payload == b"marker":
                break
        pub.items({"channel": ch, "formats": {"ws-message": {"content": BIG_TEXT}}})
        frames = [read_ws_frame(c)]
        while not frames[-1][0]:
            frames.append(read_ws_frame(c))
        assert frames[0][1], "a %d-byte message went out uncompressed" % len(BIG_TEXT)
        assert frames[0][2] == 0x1
        assert inflate(b"".join(f[3] for f in frames)) == BIG_TEXT.encode()
    finally:
        c.close()


def test_deflate_compressed_client_frame_inflated(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    c, status, headers = raw_ws_handshake(env.port, wspath(uid), "permessage-deflate")
    try:
        assert status == 101
        text = ("raw deflated client message " * 20).encode()
        c.send(ws_frame(0x1, deflate(text), rsv1=True))
        frames = [read_ws_frame(c)]
        while not frames[-1][0]:
            frames.append(read_ws_frame(c))
        payload = b"".join(f[3] for f in frames)
        assert (inflate(payload) if frames[0][1] else payload) == text
    finally:
        c.close()
    evs = [e for r in backend.requests(wspath(uid)) for e in events_of(r)]
    assert ("TEXT", text) in evs


def test_rsv1_without_negotiated_deflate_closed_1002(env, backend, uid, healthy):
    backend.on(wspath(uid), echo_handler())
    c, status, headers = raw_ws_handshake(env.port, wspath(uid))
    try:
        assert status == 101
        assert not any(k.lower() == "sec-websocket-extensions" for k, v in headers), headers
        c.send(ws_frame(0x1, deflate(b"not negotiated " * 10), rsv1=True))
        while True:
            fin, rsv1, op, payload = read_ws_frame(c)
            if op == 0x8:
                assert struct.unpack(">H", payload[:2])[0] == 1002
                break
    finally:
        c.close()
    healthy()


def test_deflate_client_and_plain_client_on_same_route(env, backend, uid):
    """A deflate connection does not change what another connection gets."""
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid), compression="deflate") as d, ws_connect(env, wspath(uid)) as p:
        for ws in (d, p, d, p):
            ws.send(BIG_TEXT)
            assert ws.recv(timeout=5) == BIG_TEXT

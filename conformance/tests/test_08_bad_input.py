"""Bad input from clients, backends and publishers. Every test ends by checking
that the proxy still serves a normal request (`healthy()`)."""

import json
import socket
import time

import pytest

from harness.backend import Resp, grip_hold, instruct
from harness.client import (RawConn, StreamCollector, ensure_stream_subscribed, long_poll,
                            publish_until, raw_long_poll, raw_request, wait_recheck)
from harness.target import BACKEND_TIMEOUT

ERR = "Error while proxying to origin.\n"


def get(env, path, **kw):
    import httpx
    with httpx.Client(timeout=15) as c:
        return c.get(env.url(path), **kw)


def test_malformed_publish_400_then_next_publish_delivered(env, backend, prefix, uid, pub, healthy):
    ch = "bad-" + uid
    backend.on(prefix, grip_hold("stream", ch))
    s = StreamCollector(env.port, prefix)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        r = pub.post(b'{"items": [{"channel": "%s", "formats": {"http-stream": {"content": ' % ch.encode())
        assert (r.status_code, r.text) == (400, "Body is not valid JSON.\n")
        r = pub.post({"items": [{"channel": ch}]})
        assert (r.status_code, r.text) == (400, "Invalid format: no formats specified\n")
        pub.stream(ch, "still delivered\n")
        assert s.wait_for("still delivered\n", 5, start=off)
        assert s.body()[off:] == b"still delivered\n"
    finally:
        s.close()
    healthy()


def test_backend_closes_without_answer_502(env, backend, prefix, healthy):
    backend.on(prefix, Resp(drop=True))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_backend_garbage_answer_502(env, backend, prefix, healthy):
    backend.on(prefix, Resp(raw=b"this is not http at all\r\n\r\n"))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_invalid_grip_hold_value_502(env, backend, prefix, uid, healthy):
    backend.on(prefix, Resp(200, headers=[("Grip-Hold", "forever"), ("Grip-Channel", "c-" + uid)], body=b"x"))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


@pytest.mark.parametrize("value", ["abc", "-5"])
def test_invalid_grip_timeout_502(env, backend, prefix, uid, healthy, value):
    backend.on(prefix, grip_hold("response", "c-" + uid, timeout=value, body="x"))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


@pytest.mark.parametrize("ka", ["ka; timeout=-1", "ka; timeout=soon", "ka; format=morse", "ka; mode=sometimes"])
def test_invalid_keep_alive_502(env, backend, prefix, uid, healthy, ka):
    backend.on(prefix, grip_hold("stream", "c-" + uid, keep_alive=ka, body="x"))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_invalid_grip_status_502(env, backend, prefix, uid, healthy):
    backend.on(prefix, Resp(200, headers=[("Grip-Status", "1000 Too Big")], body=b"x"))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_invalid_instruct_json_502(env, backend, prefix, healthy):
    backend.on(prefix, instruct(b'{"hold": {"mode": "response", "channels": '))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_instruct_channels_wrong_type_502(env, backend, prefix, healthy):
    backend.on(prefix, instruct({"hold": {"mode": "response", "channels": "not-a-list"}}))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_instruct_with_non_200_status_502(env, backend, prefix, uid, healthy):
    backend.on(prefix, Resp(201, headers=[("Content-Type", "application/grip-instruct")],
                            body=json.dumps({"hold": {"mode": "response", "channels": [{"name": "c-" + uid}]}}).encode()))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_instruct_body_over_100k_502(env, backend, prefix, uid, healthy):
    body = json.dumps({"hold": {"mode": "response", "channels": [{"name": "c-" + uid}], "timeout": 5},
                       "response": {"body": "x" * 120000}})
    backend.on(prefix, instruct(body))
    r = get(env, prefix)
    assert (r.status_code, r.text) == (502, ERR)
    healthy()


def test_request_body_over_100k_with_grip_answer_400(env, backend, prefix, uid, healthy):
    import httpx
    backend.on(prefix, grip_hold("response", "c-" + uid, body="x", timeout=5))
    with httpx.Client(timeout=15) as c:
        r = c.post(env.url(prefix), content=b"b" * 150000)
    assert (r.status_code, r.text) == (400, "Request too large to accept GRIP instruct.\n")
    assert len(backend.requests(prefix)[0].body) == 150000
    healthy()


def test_client_vanishes_mid_longpoll(env, backend, prefix, uid, pub, healthy):
    ch = "bad-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    gone = RawConn(env.port)
    gone.send(raw_request("GET", prefix + "gone"))
    stays = raw_long_poll(env.port, prefix + "stays")
    backend.wait_requests(prefix, 2, 5)
    gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    gone.close()  # RST
    # Both holds' first requests, then at least the re-check's re-send of the one that stayed.
    wait_recheck(backend, prefix, total=3)
    publish_until(stays.done, lambda: pub.response(ch, "for the one who stayed\n"))
    assert stays.result().body == b"for the one who stayed\n"
    healthy()


def test_client_vanishes_mid_stream(env, backend, prefix, uid, pub, healthy):
    ch = "bad-" + uid
    backend.on(prefix, grip_hold("stream", ch))
    gone = StreamCollector(env.port, prefix + "gone")
    stays = StreamCollector(env.port, prefix + "stays")
    try:
        ensure_stream_subscribed(gone, pub, ch)
        off = ensure_stream_subscribed(stays, pub, ch)
        gone.close()
        for i in range(20):
            pub.stream(ch, "item %d\n" % i)
        assert stays.wait_for("item 19\n", 5, start=off)
    finally:
        stays.close()
    healthy()


def test_client_closes_half_sent_request(env, backend, prefix, healthy):
    c = RawConn(env.port)
    c.send(b"GET " + prefix.encode() + b" HTTP/1.1\r\nHost: x\r\nX-Partial: ")
    time.sleep(0.2)
    c.close()
    c = RawConn(env.port)
    c.send(raw_request("POST", prefix, headers=[("Content-Length", "1000")]) + b"only part of the body")
    time.sleep(0.2)
    c.close()
    healthy()


def test_garbage_request_line_does_not_disturb_others(env, backend, prefix, uid, pub, healthy):
    ch = "bad-" + uid
    backend.on(prefix, grip_hold("stream", ch))
    s = StreamCollector(env.port, prefix)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
                     b"NOT HTTP\r\n\r\n", b"GET\r\n\r\n", b"\r\n\r\n\r\n"):
            c = RawConn(env.port, timeout=3)
            c.send(junk)
            try:
                c.read_to_close(timeout=3)
            except (TimeoutError, OSError):
                pass
            c.close()
        pub.stream(ch, "unaffected\n")
        assert s.wait_for("unaffected\n", 5, start=off)
    finally:
        s.close()
    healthy()


def test_oversize_request_head_does_not_disturb_others(env, backend, prefix, healthy):
    backend.on(prefix, Resp(200, body=b"ok"))
    c = RawConn(env.port, timeout=5)
    try:
        c.send(raw_request("GET", prefix, headers=[("X-Big", "a" * 20000)]))
        try:
            data = c.read_to_close(timeout=5)
        except (TimeoutError, OSError):
            data = b""
    finally:
        c.close()
    assert not data.startswith(b"HTTP/1.1 200"), "a 20 kB header was accepted past client_buffer_size"
    healthy()


@pytest.mark.beyond_reference
@pytest.mark.parametrize("line", [b"NOT HTTP\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                                  b"GET /\x01path HTTP/1.1\r\nHost: x\r\n\r\n",
                                  b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n"])
def test_malformed_request_answered_400(env, healthy, line):
    """decisions C6: GripProxy answers 400 to a malformed request (Pushpin closes)."""
    c = RawConn(env.port, timeout=5)
    c.send(line)
    r = c.read_response(timeout=5)
    c.close()
    assert r.status in (400, 505) if b"HTTP/9.9" in line else r.status == 400
    healthy()


@pytest.mark.beyond_reference
def test_oversize_request_head_431(env, backend, prefix, healthy):
    """decisions C6: a request head over client_buffer_size (8,192) gets 431."""
    backend.on(prefix, Resp(200, body=b"ok"))
    c = RawConn(env.port, timeout=5)
    c.send(raw_request("GET", prefix, headers=[("X-Big", "a" * 10000)]))
    r = c.read_response(timeout=5)
    c.close()
    assert r.status == 431
    healthy()


@pytest.mark.beyond_reference
def test_backend_too_slow_504(env, backend, prefix, healthy):
    """decisions D2: no response head within backend_timeout (3 s here) -> 504."""
    backend.on(prefix, Resp(200, body=b"too late", delay=2 * BACKEND_TIMEOUT))
    t0 = time.monotonic()
    r = get(env, prefix)
    took = time.monotonic() - t0
    assert (r.status_code, r.text) == (504, "Timeout while proxying to origin.\n")
    assert BACKEND_TIMEOUT - 0.5 <= took <= 2 * BACKEND_TIMEOUT - 0.5
    healthy()


@pytest.mark.beyond_reference
def test_backend_timeout_after_head_ends_body(env, backend, prefix, healthy):
    """decisions D2: once the response has started, a backend that then stays
    silent for longer than backend_timeout is not a 504: the client keeps the
    200 and the bytes already sent, and the body just ends (about
    backend_timeout after the last byte), before the backend's late rest."""
    pause = 2 * BACKEND_TIMEOUT
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")],
                            chunks=[b"started\n", pause, b"finished\n"]))
    c = RawConn(env.port, timeout=pause + 10)
    try:
        c.send(raw_request("GET", prefix))
        _, status, _, headers = c.read_head(timeout=BACKEND_TIMEOUT + 5)
        assert status == 200
        chunked = "chunked" in dict((k.lower(), v.lower()) for k, v in headers).get("transfer-encoding", "")
        body = b""
        started = None
        try:
            while True:  # until the body ends: last chunk (chunked) or the connection closed
                d = c.read_chunk(timeout=pause + 10) if chunked else c.read_to_close(timeout=pause + 10)
                if d and started is None:
                    started = time.monotonic()
                body += d
                if not chunked or not d:
                    break
        except ConnectionError:  # closed mid-body: a truncated chunked body also ends it
            body += c.buf
        ended = time.monotonic()
    finally:
        c.close()
    assert body == b"started\n", "the body did not end at the timeout: %r" % body
    assert started is not None
    took = ended - started
    assert BACKEND_TIMEOUT - 0.5 <= took <= pause - 1, "ended %.1fs after the first byte" % took
    healthy()


def test_many_concurrent_clients_abort_during_backend_wait(env, backend, prefix, healthy):
    backend.on(prefix, Resp(200, body=b"late", delay=1.0))
    conns = []
    for i in range(20):
        c = RawConn(env.port)
        c.send(raw_request("GET", prefix + str(i)))
        conns.append(c)
    time.sleep(0.2)
    for c in conns:
        c.close()
    time.sleep(1.2)
    healthy()


def test_publish_garbage_bytes_then_valid(env, pub, healthy):
    c = RawConn(env.ports.publish, timeout=3)
    c.send(b"\x00\x01\x02 garbage \r\n\r\n")
    try:
        c.read_to_close(timeout=3)
    except (TimeoutError, OSError):
        pass
    c.close()
    assert pub.post({"items": []}).status_code == 200
    healthy()

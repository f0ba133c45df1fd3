"""Stream holds: initial body, appended items in order, keep-alives, close,
next links (grip-http.md 6-7)."""

import base64
import json
import time

import httpx
import pytest
from gripcontrol import HttpStreamFormat, create_hold_stream
from gripcontrol.response import Response

from harness.backend import Resp, grip_hold, instruct
from harness.client import (RawConn, StreamCollector, ensure_stream_subscribed, raw_request,
                            wait_until)


def open_stream(env, backend, path, resp, **kw):
    backend.on(path, resp)
    return StreamCollector(env.port, path, **kw)


def test_stream_headers_and_initial_body_sent_at_once(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="start\n",
                                                    headers=[("Content-Type", "text/plain"), ("X-S", "1")]))
    try:
        assert s.status == 200
        assert s.header("Content-Type") == "text/plain" and s.header("X-S") == "1"
        assert s.chunked and s.header("Content-Length") is None
        assert not any(k.lower().startswith("grip-") for k, _ in s.headers)
        assert s.wait_for("start\n", 3)
    finally:
        s.close()


def test_stream_receives_three_publishes_in_order(env, backend, prefix, uid, grip_pub, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch, body="start\n"))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        for word in ("one", "two", "three"):
            grip_pub.publish_http_stream(ch, HttpStreamFormat(word + "\n"), blocking=True)
        assert s.wait_for("three\n", 5, start=off)
        assert s.body()[off:] == b"one\ntwo\nthree\n"
        assert s.body().startswith(b"start\n")
    finally:
        s.close()


def test_stream_each_item_written_as_sent(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, "no newline at end")
        pub.stream(ch, "\r\nline two\r\n")
        assert s.wait_for("line two\r\n", 5, start=off)
        assert s.body()[off:] == b"no newline at end\r\nline two\r\n"
    finally:
        s.close()


def test_stream_keep_alive_sent(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="start\n",
                                                    keep_alive="ka\\n; format=cstring; timeout=1"))
    try:
        assert s.wait_for("start\nka\nka\n", 6), s.body()
    finally:
        s.close()


def test_stream_keep_alive_raw_format(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="[",
                                                    keep_alive="  ping  ; timeout=1"))
    try:
        assert s.wait_for("[pingping", 6), s.body()
    finally:
        s.close()


def test_stream_keep_alive_base64_format(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold(
        "stream", "s-" + uid, keep_alive="%s; format=base64; timeout=1" % base64.b64encode(b":\n\n").decode()))
    try:
        assert s.wait_for(":\n\n:\n\n", 6), s.body()
    finally:
        s.close()


def test_stream_keep_alive_cstring_escapes(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold(
        "stream", "s-" + uid, body="|", keep_alive=r"a\\b\x41\r\n; format=cstring; timeout=1"))
    try:
        assert s.wait_for(b"|a\\bA\r\n", 6), s.body()
    finally:
        s.close()


def test_stream_keep_alive_zero_timeout_becomes_one(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="<",
                                                    keep_alive="k; timeout=0"))
    try:
        assert s.wait_for("<kk", 4), s.body()
        time.sleep(3)
        n = s.body().count(b"k")
        # one keep-alive per 1 s minus a random 0-1 s: a few per second, not a flood
        assert 3 <= n <= 60, n
    finally:
        s.close()


def test_stream_keep_alive_timing(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="<",
                                                    keep_alive="k; timeout=2"))
    try:
        t0 = s.events[0][0] if s.wait_for("<", 3) else time.monotonic()
        assert s.wait_for("<k", 5)
        t_ka = [t for t, b in s.events if b"k" in b][0]
        assert 0.5 <= t_ka - t0 <= 3.0, t_ka - t0  # timeout minus a random 0-1 s
    finally:
        s.close()


def test_stream_keep_alive_idle_mode_deferred_by_publishes(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch, keep_alive="KA; timeout=2; mode=idle"))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        start = len(s.body())
        t_end = time.monotonic() + 3.5
        while time.monotonic() < t_end:
            pub.stream(ch, ".")
            time.sleep(0.3)
        during = s.body()[start:]
        assert b"KA" not in during, "keep-alive sent although items kept the stream busy: %r" % during
        assert s.wait_for("KA", 4, start=len(during) + start)
    finally:
        s.close()


def test_stream_keep_alive_interval_mode_ignores_traffic(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch, keep_alive="KA; timeout=2; mode=interval"))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        start = len(s.body())
        t_end = time.monotonic() + 4.5
        while time.monotonic() < t_end:
            pub.stream(ch, ".")
            time.sleep(0.3)
        assert b"KA" in s.body()[start:], "interval keep-alive not sent during traffic"
    finally:
        s.close()


def test_stream_close_action_ends_stream(env, backend, prefix, uid, pub, grip_pub):
    ch = "s-" + uid
    backend.on(prefix + "after", Resp(200, headers=[("Content-Type", "text/plain")], body=b"next request\n"))
    s = open_stream(env, backend, prefix + "stream", grip_hold("stream", ch, body="start\n"))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, "last words\n")
        grip_pub.publish_http_stream(ch, HttpStreamFormat(close=True), blocking=True)
        assert s.wait_end(5), "stream not ended by action close"
        assert s.body()[off:] == b"last words\n"
        assert s.error is None
        # HTTP/1.1: the connection stays usable
        s._stop = True
        s.conn.send(raw_request("GET", prefix + "after"))
        r = s.conn.read_response()
        assert r.body == b"next request\n"
    finally:
        s.close()


def test_stream_close_action_closes_http10_connection(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch, body="start\n"), version="HTTP/1.0")
    try:
        assert not s.chunked and s.header("Content-Length") is None
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, "unframed\n")
        pub.items({"channel": ch, "formats": {"http-stream": {"action": "close"}}})
        assert s.wait_end(5)
        assert s.closed
        assert s.body() [off:] == b"unframed\n"
    finally:
        s.close()


def test_stream_json_instruct(env, backend, prefix, uid, pub, grip_pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, instruct(create_hold_stream(
        ch, Response(code=200, headers={"Content-Type": "text/plain", "X-J": "j"}, body="opened\n"))))
    try:
        assert s.header("X-J") == "j" and s.header("Content-Type") == "text/plain"
        assert s.wait_for("opened\n", 3)
        off = ensure_stream_subscribed(s, pub, ch)
        grip_pub.publish_http_stream(ch, "from gripcontrol\n", blocking=True)
        assert s.wait_for("from gripcontrol\n", 5, start=off)
    finally:
        s.close()


def test_stream_json_keep_alive(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, instruct({
        "hold": {"mode": "stream", "channels": [{"name": "s-" + uid}],
                 "keep-alive": {"content": "JKA\n", "timeout": 1}},
        "response": {"body": "begin\n"}}))
    try:
        assert s.wait_for("begin\nJKA\nJKA\n", 6), s.body()
    finally:
        s.close()


def test_stream_json_keep_alive_content_bin(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, instruct({
        "hold": {"mode": "stream", "channels": [{"name": "s-" + uid}],
                 "keep-alive": {"content-bin": base64.b64encode(b"\x00KA").decode(), "timeout": 1}}}))
    try:
        assert s.wait_for(b"\x00KA", 4), s.body()
    finally:
        s.close()


def test_stream_content_bin(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    data = bytes(range(256)) * 4
    s = open_stream(env, backend, prefix, grip_hold("stream", ch))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items({"channel": ch, "formats": {"http-stream": {"content-bin": base64.b64encode(data).decode()}}})
        assert s.wait_len(off + len(data), 5)
        assert s.body()[off:] == data
    finally:
        s.close()


def test_stream_large_item_delivered_whole(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    data = ("0123456789abcdef" * 12800)[:200000]
    s = open_stream(env, backend, prefix, grip_hold("stream", ch))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, data)
        assert s.wait_len(off + len(data), 5)
        assert s.body()[off:].decode() == data
    finally:
        s.close()


def test_stream_burst_order_preserved(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        # 50 items in one publish request, then 50 single-item requests
        pub.items(*[{"channel": ch, "formats": {"http-stream": {"content": "%03d\n" % i}}} for i in range(50)])
        for i in range(50, 100):
            pub.stream(ch, "%03d\n" % i)
        expected = "".join("%03d\n" % i for i in range(100)).encode()
        assert s.wait_len(off + len(expected), 10)
        assert s.body()[off:] == expected
    finally:
        s.close()


def test_stream_multi_channel(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", [a, b]))
    try:
        ensure_stream_subscribed(s, pub, a)
        off = ensure_stream_subscribed(s, pub, b)
        pub.stream(a, "A1\n")
        pub.stream(b, "B1\n")
        pub.stream(a, "A2\n")
        assert s.wait_for("A2\n", 5, start=off)
        assert s.body()[off:] == b"A1\nB1\nA2\n"
    finally:
        s.close()


def test_stream_response_format_ignored(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.response(ch, "RESPONSE-ONLY\n")
        pub.stream(ch, "stream-format\n")
        assert s.wait_for("stream-format\n", 5, start=off)
        assert b"RESPONSE-ONLY" not in s.body()
    finally:
        s.close()


def test_stream_one_publish_reaches_many_streams(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    backend.on(prefix, grip_hold("stream", ch))
    streams = [StreamCollector(env.port, prefix + str(i)) for i in range(20)]
    try:
        for s in streams:
            ensure_stream_subscribed(s, pub, ch)
        # probes for one stream also reach the others, maybe later: sync on a marker
        pub.stream(ch, "sync-%s\n" % uid)
        marker = ("sync-%s\n" % uid).encode()
        for s in streams:
            assert s.wait_for(marker, 5)
        offs = [s.body().index(marker) + len(marker) for s in streams]
        pub.stream(ch, "to everyone\n")
        for s, off in zip(streams, offs):
            assert s.wait_for("to everyone\n", 5, start=off)
            assert s.body()[off:] == b"to everyone\n"
    finally:
        for s in streams:
            s.close()


def test_stream_grip_status(env, backend, prefix, uid):
    s = open_stream(env, backend, prefix, grip_hold("stream", "s-" + uid, body="x",
                                                    extra=[("Grip-Status", "201 Stream Made")]))
    try:
        assert (s.status, s.reason) == (201, "Stream Made")
    finally:
        s.close()


def test_stream_grip_timeout_ignored(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    s = open_stream(env, backend, prefix, grip_hold("stream", ch, body="x", timeout=5))
    try:
        time.sleep(6.5)
        assert not s.ended and s.error is None
        ensure_stream_subscribed(s, pub, ch)
    finally:
        s.close()


def test_stream_read_with_httpx(env, backend, prefix, uid, pub):
    ch = "s-" + uid
    backend.on(prefix, grip_hold("stream", ch, body="hello\n", headers=[("Content-Type", "text/plain")]))
    got = []
    with httpx.Client(timeout=10) as c:
        with c.stream("GET", env.url(prefix)) as r:
            assert r.status_code == 200
            it = r.iter_lines()
            got.append(next(it))
            n = 0
            # not necessarily subscribed yet: publish until a line arrives
            import threading
            stop = threading.Event()

            def pump():
                nonlocal n
                while not stop.is_set() and n < 30:
                    n += 1
                    pub.stream(ch, "line %d\n" % n)
                    stop.wait(0.3)
            t = threading.Thread(target=pump, daemon=True)
            t.start()
            got.append(next(it))
            stop.set()
            t.join()
    assert got[0] == "hello"
    assert got[1].startswith("line ")


def test_next_link_paging_without_hold(env, backend, prefix, uid):
    def h(req):
        q = req.query
        if q == "":
            return Resp(200, headers=[("Content-Type", "text/plain"),
                                      ("Grip-Link", "<%spage?p=2>; rel=next" % prefix)], body=b"part 1\n")
        if q == "p=2":
            return Resp(200, headers=[("Grip-Link", "<%spage?p=3>; rel=next" % prefix)], body=b"part 2\n")
        return Resp(200, headers=[("Content-Type", "text/plain")], body=b"part 3\n")
    backend.on(prefix, h)
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix + "page", headers=[("Cookie", "secret=1")]))
    r = c.read_response(timeout=10)
    c.close()
    assert r.status == 200
    assert r.body == b"part 1\npart 2\npart 3\n"
    assert r.header("Content-Type") == "text/plain"
    reqs = backend.requests(prefix)
    assert [q.query for q in reqs] == ["", "p=2", "p=3"]
    for link_req in reqs[1:]:
        assert link_req.method == "GET"
        assert link_req.sig_valid
        assert link_req.header("Cookie") is None  # next links carry no client headers


def test_next_link_relative_uri_resolved(env, backend, prefix, uid):
    def h(req):
        if req.path.endswith("/start"):
            return Resp(200, headers=[("Grip-Link", "<more?x=1>; rel=next")], body=b"a")
        return Resp(200, body=b"b")
    backend.on(prefix, h)
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix + "dir/start"))
    r = c.read_response(timeout=10)
    c.close()
    assert r.body == b"ab"
    assert backend.requests(prefix)[-1].target == prefix + "dir/more?x=1"


def test_stream_next_link_fetched_after_first_subscription(env, backend, prefix, uid, pub):
    ch = "s-" + uid

    def h(req):
        if req.path.endswith("/next"):
            return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", ch),
                                      ("Grip-Link", "<%snext>; rel=next" % prefix)], body=b"from link\n")
        return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", ch),
                                  ("Grip-Link", "<%snext>; rel=next" % prefix),
                                  ("Content-Type", "text/plain")], body=b"initial\n")
    backend.on(prefix, h)
    s = StreamCollector(env.port, prefix + "stream")
    try:
        assert s.wait_for("initial\nfrom link\n", 5), s.body()
        link = [r for r in backend.requests(prefix) if r.path.endswith("/next")][0]
        assert link.sig_valid and link.method == "GET"
        off = ensure_stream_subscribed(s, pub, ch)
    finally:
        s.close()


def test_stream_hint_fetches_next_link(env, backend, prefix, uid, pub):
    ch = "s-" + uid

    def h(req):
        body = b"hinted\n" if req.path.endswith("/next") else b"initial\n"
        return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", ch),
                                  ("Grip-Link", "<%snext>; rel=next" % prefix)], body=body)
    backend.on(prefix, h)
    s = StreamCollector(env.port, prefix + "stream")
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        time.sleep(0.5)
        n_links = len([r for r in backend.requests(prefix) if r.path.endswith("/next")])
        start = len(s.body())
        pub.items({"channel": ch, "formats": {"http-stream": {"action": "hint"}}})
        assert s.wait_for("hinted\n", 5, start=start)
        assert len([r for r in backend.requests(prefix) if r.path.endswith("/next")]) == n_links + 1
    finally:
        s.close()


def test_stream_next_link_without_hold_ends_response(env, backend, prefix, uid, pub):
    ch = "s-" + uid

    def h(req):
        if req.path.endswith("/next"):
            return Resp(200, body=b"the end\n")
        return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", ch),
                                  ("Grip-Link", "<%snext>; rel=next" % prefix)], body=b"initial\n")
    backend.on(prefix, h)
    s = StreamCollector(env.port, prefix + "stream")
    try:
        # the first-subscription link fetch gets a plain answer: the response ends
        assert s.wait_end(6), s.body()
        assert s.body() == b"initial\nthe end\n"
    finally:
        s.close()

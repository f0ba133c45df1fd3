"""A misbehaving backend never takes the proxy down (issue 12 item 4). Cases
not already in test_08 (closes without answering, garbage, too slow, invalid
GRIP headers and instructions): refused, cut off mid-body, a 100 MB response
(streamed, never held), a huge `Grip-*` header, a hold on 10,000 channels, and
a WebSocket-over-HTTP answer with malformed events. Each gets its documented
status or close code, and every case ends by checking that the proxy still
serves a normal request and a publish (`healthy()`)."""

import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from harness.backend import Resp, grip_hold
from harness.client import RawConn, Publisher, StreamCollector, ensure_stream_subscribed, raw_request
from harness.extra import aux_routes
from harness.ws import WS_EVENTS, events_of, ws_connect

ERR = "Error while proxying to origin.\n"


def test_backend_refuses_connection_502(env, aux, healthy):
    target = aux("refused", aux_routes(env, "refused.test 127.0.0.1:%d" % env.ports.dead))
    with httpx.Client(timeout=15) as c:
        r = c.get(target.url("/anything"), headers={"Host": "refused.test"})
        assert (r.status_code, r.text) == (502, ERR)
        # The same instance still serves a route whose backend is up.
        r = c.get(target.url("/healthy-after-refused"))
        assert r.status_code in (200, 404)
    healthy()


def test_backend_cut_off_mid_body_ends_the_response(env, backend, prefix, healthy):
    """Content-Length promises 100,000 bytes; 10 come, then the backend closes.
    The client gets a 502 (nothing relayed yet) or the head and a short body,
    then the connection closes: never a complete-looking response, never a hang
    (Pushpin may leave it open until its own timeout; see below)."""
    backend.on(prefix, Resp(raw=b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n"
                               + b"0123456789"))
    c = RawConn(env.port)
    try:
        c.send(raw_request("GET", prefix))
        version, status, reason, headers = c.read_head(10)
        if status == 502:
            length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
            assert c.read_exact(length, 10) == ERR.encode()
        else:
            assert status == 200, (status, reason)
            try:
                body = c.read_to_close(10)
            except TimeoutError:
                # Pushpin 1.36 may hold the client connection open until its own timeout (about 60 s on
                # this machine): never completed, but no prompt end either. GripProxy ends it at once.
                assert env.name == "pushpin", "the connection was not closed within 10 s of the cut"
                body = c.buf
            assert len(body) < 100000, "a cut-off body was completed"
    finally:
        c.close()
    healthy()


def rss_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


@pytest.mark.beyond_reference
def test_100mb_response_is_streamed_not_held(env, aux, backend, prefix, healthy):
    """The proxy's peak memory stays far below the body's size."""
    target = aux("big", aux_routes(env))
    block = bytes(range(256)) * 4096  # 1 MiB
    backend.on(prefix + "big", Resp(200, headers=[("Content-Type", "application/octet-stream")], chunks=[block] * 100))
    before = rss_kb(target.proc.pid, "VmRSS")
    total = 0
    with httpx.Client(timeout=60) as c:
        with c.stream("GET", target.url(prefix + "big")) as r:
            assert r.status_code == 200
            for chunk in r.iter_raw():
                total += len(chunk)
    assert total == 100 * len(block)
    peak = rss_kb(target.proc.pid, "VmHWM")
    assert peak - before < 40 * 1024, "peak RSS grew by %d KiB while relaying 100 MiB" % (peak - before)
    healthy()


def test_huge_grip_channel_header_502(env, backend, prefix, healthy):
    backend.on(prefix, Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", "x" * 200000)], body=b"x"))
    with httpx.Client(timeout=15) as c:
        r = c.get(env.url(prefix))
    assert r.status_code == 502, (r.status_code, r.text[:200])
    healthy()


def test_hold_on_10000_channels_keeps_the_first_20(env, backend, prefix, uid, pub, healthy):
    """grip-http.md, Grip-Channel: past connection_subscription_max (20) the
    first 20 are kept."""
    first, last = "first-" + uid, "last-" + uid
    names = [first] + ["m%d" % i for i in range(9998)] + [last]
    backend.on(prefix, grip_hold("stream", ", ".join(names), body="start\n"))
    s = StreamCollector(env.port, prefix)
    try:
        assert s.status == 200, s.status
        off = ensure_stream_subscribed(s, pub, first)
        pub.stream(last, "not-subscribed\n")
        pub.stream(first, "subscribed\n")
        assert s.wait_for("subscribed\n", 5, start=off)
        assert b"not-subscribed" not in s.body()
    finally:
        s.close()
    healthy()


@pytest.mark.websocket
@pytest.mark.beyond_reference
def test_ws_malformed_events_answer_closes_1011(env, backend, uid, healthy):
    """decisions W2: content shorter than its declared length is rejected, the
    connection ends with 1011, and the proxy goes on serving."""
    path = "/ws/%s/" % uid

    def h(req):
        if events_of(req)[0][0] == "OPEN":
            return Resp(200, headers=[("Content-Type", WS_EVENTS), ("Sec-WebSocket-Extensions", "grip")],
                        body=b"OPEN\r\n")
        return Resp(200, headers=[("Content-Type", WS_EVENTS)], body=b"TEXT 5\r\nhel")
    backend.on(path, h)
    with ws_connect(env, path) as ws:
        ws.send("trigger")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code == 1011, ws.close_code
    healthy()

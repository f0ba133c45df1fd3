"""Response holds (long-poll): completion by a publish, timeout, the held
response's headers, many holders, JSON instruct (grip-http.md 3-5, 8)."""

import base64
import json
import time

import pytest
from gripcontrol import HttpResponseFormat, create_hold_response
from gripcontrol.response import Response

from harness.backend import Resp, grip_hold, instruct
from harness.client import (RawConn, long_poll, publish_until, raw_long_poll, raw_request,
                            wait_recheck)


def test_longpoll_completed_by_publish(env, backend, prefix, uid, grip_pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="nothing yet\n",
                                 headers=[("Content-Type", "text/plain")], timeout=20))
    lp = long_poll(env.url(prefix))
    publish_until(lp.done, lambda: grip_pub.publish_http_response(
        ch, HttpResponseFormat(body="news!\n"), blocking=True))
    r = lp.result()
    assert r.status_code == 200
    assert r.text == "news!\n"
    assert lp.elapsed() < 10


def test_longpoll_timeout_returns_backend_response(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body='{"items": []}\n', status=200, timeout=5,
                                 headers=[("Content-Type", "application/json"), ("X-Held", "yes"),
                                          ("Cache-Control", "no-store")]))
    lp = raw_long_poll(env.port, prefix)
    r = lp.result(15)
    assert r.status == 200 and r.reason == "OK"
    assert r.body == b'{"items": []}\n'
    assert r.header("Content-Type") == "application/json"
    assert r.header("X-Held") == "yes"
    assert r.header("Cache-Control") == "no-store"
    assert not any(k.lower().startswith("grip-") for k, _ in r.headers)
    # 5 s, restarted once by the first-subscription re-check (about 1 s)
    assert 4.5 <= lp.elapsed() <= 9.5, lp.elapsed()


def test_longpoll_timeout_below_minimum_becomes_5s(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="timed out\n", timeout=1,
                                 headers=[("Content-Type", "text/plain")]))
    lp = long_poll(env.url(prefix))
    r = lp.result(15)
    assert r.text == "timed out\n"
    assert lp.elapsed() >= 4.5, "Grip-Timeout below 5 must behave as 5 (took %.1fs)" % lp.elapsed()


def test_longpoll_publish_keeps_held_headers(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="no news\n", timeout=20,
                                 headers=[("Content-Type", "text/plain"), ("Cache-Control", "no-store"),
                                          ("X-Origin", "held")]))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "code": 201, "headers": {"Content-Type": "application/json"}, "body": '{"n":1}\n'}}}))
    r = lp.result()
    assert (r.status, r.reason) == (201, "Created")
    assert r.header("Cache-Control") == "no-store"
    assert r.header("X-Origin") == "held"
    assert r.header_all("Content-Type") == ["application/json"]
    assert r.body == b'{"n":1}\n'
    assert r.header("Content-Length") == "8"


def test_longpoll_publish_sets_code_reason_and_headers(env, backend, prefix, uid, grip_pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: grip_pub.publish_http_response(ch, HttpResponseFormat(
        code=409, reason="Custom Reason", headers={"X-Item": "17"}, body="conflict\n"), blocking=True))
    r = lp.result()
    assert (r.status, r.reason) == (409, "Custom Reason")
    assert r.header("X-Item") == "17"
    assert r.body == b"conflict\n"


def test_longpoll_publish_code_as_string(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "code": "202", "body": "accepted\n"}}}))
    r = lp.result()
    assert (r.status, r.reason, r.body) == (202, "Accepted", b"accepted\n")


def test_longpoll_publish_header_list_form(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "headers": [["Content-Type", "application/json"], ["X-Order", "17"]], "body": "{}"}}}))
    r = lp.result()
    assert r.header("X-Order") == "17" and r.header("Content-Type") == "application/json"


def test_longpoll_body_bin(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    data = bytes(range(256))
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "body-bin": base64.b64encode(data).decode()}}}))
    assert lp.result().body == data


def test_longpoll_item_grip_headers_ignored(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "headers": {"Grip-Hold": "stream", "X-Ok": "1"}, "body": "done\n"}}}))
    r = lp.result()
    assert r.body == b"done\n" and r.header("X-Ok") == "1"
    assert r.header("Grip-Hold") is None


def test_longpoll_stream_format_does_not_complete_it(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    wait_recheck(backend, prefix)
    pub.items({"channel": ch, "formats": {"http-stream": {"content": "stream only\n"}}})
    time.sleep(1.0)
    assert not lp.done(), "an http-stream item completed a response hold"
    publish_until(lp.done, lambda: pub.response(ch, "response format\n"))
    assert lp.result().body == b"response format\n"


def test_longpoll_multi_channel(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    backend.on(prefix, grip_hold("response", [a, b], body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.response(b, "from b\n"))
    assert lp.result().body == b"from b\n"


def test_longpoll_grip_channel_header_repeated(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    backend.on(prefix, Resp(200, headers=[("Grip-Hold", "response"), ("Grip-Channel", a),
                                          ("Grip-Channel", b), ("Grip-Timeout", "20")], body=b"x"))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.response(b, "second header\n"))
    assert lp.result().body == b"second header\n"


def test_100_longpolls_completed_by_one_publish(env, backend, prefix, uid, pub):
    ch = "many-" + uid
    n = 100
    backend.on(prefix, grip_hold("response", ch, body="timeout\n", timeout=30,
                                 headers=[("Content-Type", "text/plain")]))
    conns = []
    try:
        # One hold subscribes the channel first and has its first-subscription re-check, so the 100 below
        # join an already subscribed channel and are not re-sent all at once (grip-http 5.6): under CI load
        # Pushpin sometimes answers one of 100 simultaneous re-sends with a 502.
        first = RawConn(env.port, timeout=20)
        first.send(raw_request("GET", prefix + "first"))
        conns.append(first)
        wait_recheck(backend, prefix + "first")
        for i in range(n):
            c = RawConn(env.port, timeout=20)
            c.send(raw_request("GET", prefix + str(i)))
            conns.append(c)
        assert len(backend.wait_requests(prefix, n + 2, 10)) >= n + 2
        time.sleep(1.0)  # the backend has answered every hold; let the proxy register them
        pub.response(ch, "one for all\n")
        bodies = [c.read_response(timeout=10).body for c in conns]
    finally:
        for c in conns:
            c.close()
    assert bodies == [b"one for all\n"] * (n + 1)


def test_longpoll_connection_reusable_after_completion(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix + "hold", grip_hold("response", ch, body="x", timeout=20))
    backend.on(prefix + "plain", Resp(200, headers=[("Content-Type", "text/plain")], body=b"plain\n"))
    c = RawConn(env.port, timeout=20)
    c.send(raw_request("GET", prefix + "hold"))
    wait_recheck(backend, prefix + "hold")
    pub.response(ch, "first\n")
    r1 = c.read_response()
    c.send(raw_request("GET", prefix + "plain"))
    r2 = c.read_response()
    c.close()
    assert (r1.body, r2.body) == (b"first\n", b"plain\n")


def test_longpoll_first_subscription_recheck_resends_request(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = long_poll(env.url(prefix + "item?since=7"), headers={"X-Client": "c1", "Cookie": "s=1"})
    reqs = backend.wait_requests(prefix, 2, 4)
    assert len(reqs) >= 2, "no re-check of the new channel's hold"
    first, again = reqs[0], reqs[1]
    assert again.target == first.target == prefix + "item?since=7"
    assert again.header("X-Client") == "c1" and again.header("Cookie") == "s=1"
    assert again.sig_valid
    assert 0.5 <= again.time - first.time <= 3.0
    lp_done = lp.done()
    assert not lp_done


def test_longpoll_recheck_plain_answer_delivered(env, backend, prefix, uid):
    ch = "lp-" + uid
    seen = []

    def h(req):
        seen.append(req)
        if len(seen) == 1:
            return grip_hold("response", ch, body="x", timeout=20)
        return Resp(200, headers=[("Content-Type", "text/plain")], body=b"fresh from re-check\n")
    backend.on(prefix, h)
    lp = long_poll(env.url(prefix))
    r = lp.result(8)
    assert r.text == "fresh from re-check\n"
    assert 0.5 <= lp.elapsed() <= 4


def test_longpoll_grip_status_applies_to_timeout_response(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="gone\n", timeout=5,
                                 extra=[("Grip-Status", "404 Not Here")]))
    r = raw_long_poll(env.port, prefix).result(15)
    assert (r.status, r.reason, r.body) == (404, "Not Here", b"gone\n")


def test_longpoll_expose_headers_whitelist(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20,
                                 headers=[("X-Keep", "1"), ("X-Drop", "2"), ("Content-Type", "text/plain")],
                                 extra=[("Grip-Expose-Headers", "X-Keep")]))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.response(ch, "exposed\n"))
    r = lp.result()
    assert r.body == b"exposed\n"
    assert r.header("X-Keep") == "1"
    assert r.header("X-Drop") is None


def test_longpoll_json_instruct_completed_by_publish(env, backend, prefix, uid, grip_pub):
    ch = "lp-" + uid
    backend.on(prefix, instruct(create_hold_response(
        ch, Response(code=200, headers={"Content-Type": "text/plain", "X-Inst": "1"}, body="empty\n"),
        timeout=20)))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: grip_pub.publish_http_response(ch, "via gripcontrol\n", blocking=True))
    r = lp.result()
    assert r.body == b"via gripcontrol\n"
    assert r.header("X-Inst") == "1"


def test_longpoll_json_instruct_timeout_response(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, instruct({"hold": {"mode": "response", "channels": [{"name": ch}], "timeout": 5},
                                 "response": {"code": 202, "headers": {"X-State": "running"},
                                              "body": "still running\n"}}))
    r = raw_long_poll(env.port, prefix).result(15)
    assert (r.status, r.reason) == (202, "Accepted")
    assert r.header("X-State") == "running"
    assert r.body == b"still running\n"
    assert r.header("Content-Type") is None  # the instruct's own type is not kept


def test_longpoll_json_instruct_without_response_member(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, instruct({"hold": {"mode": "response", "channels": [{"name": ch}], "timeout": "5"}}))
    r = raw_long_poll(env.port, prefix).result(15)
    assert (r.status, r.reason, r.body) == (200, "OK", b"")
    assert r.header("Content-Type") is None


def test_longpoll_json_instruct_body_bin(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, instruct({"hold": {"mode": "response", "channels": [{"name": ch}], "timeout": 5},
                                 "response": {"body-bin": base64.b64encode(b"\x00\x01bin").decode()}}))
    r = raw_long_poll(env.port, prefix).result(15)
    assert r.body == b"\x00\x01bin"


def test_longpoll_hint_resends_request(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    state = {"hinted": False}

    def h(req):
        if state["hinted"]:
            return Resp(200, headers=[("Content-Type", "text/plain")], body=b"after hint\n")
        return grip_hold("response", ch, body="x", timeout=20)
    backend.on(prefix, h)
    lp = raw_long_poll(env.port, prefix)
    before = len(wait_recheck(backend, prefix))
    state["hinted"] = True
    pub.items({"channel": ch, "formats": {"http-response": {"action": "hint"}}})
    r = lp.result(5)
    assert r.body == b"after hint\n"
    assert len(backend.requests(prefix)) == before + 1


def test_longpoll_close_action_ignored(env, backend, prefix, uid, pub):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    wait_recheck(backend, prefix)
    pub.items({"channel": ch, "formats": {"http-response": {"action": "close"}}})
    time.sleep(1.0)
    assert not lp.done()
    publish_until(lp.done, lambda: pub.response(ch, "still held\n"))
    assert lp.result().body == b"still held\n"


def test_longpoll_post_request_resent_with_body(env, backend, prefix, uid):
    ch = "lp-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = long_poll(env.url(prefix), method="POST", content=b"form=data",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    reqs = backend.wait_requests(prefix, 2, 4)
    assert len(reqs) >= 2
    assert reqs[1].method == "POST" and reqs[1].body == b"form=data"
    assert not lp.done()

"""GRIP instructions without holds, header syntax details, the JSON instruct
body (grip-http.md 2-4)."""

import pytest

from harness.backend import Resp, grip_hold, instruct
from harness.client import (RawConn, StreamCollector, ensure_stream_subscribed, publish_until,
                            raw_long_poll, raw_request)


def fetch(env, path, method="GET"):
    c = RawConn(env.port)
    c.send(raw_request(method, path))
    r = c.read_response(timeout=10)
    c.close()
    return r


def test_grip_status_rewrites_response_without_hold(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Grip-Status", "404 Missing Thing"), ("X-App", "1"),
                                          ("Content-Type", "text/plain")], body=b"not found\n"))
    r = fetch(env, prefix)
    assert (r.status, r.reason, r.body) == (404, "Missing Thing", b"not found\n")
    assert r.header("X-App") == "1" and r.header("Grip-Status") is None


def test_grip_status_without_reason_uses_standard_phrase(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Grip-Status", "403")], body=b"no\n"))
    r = fetch(env, prefix)
    assert (r.status, r.reason) == (403, "Forbidden")


def test_grip_status_304_without_body(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Grip-Status", "304"), ("ETag", '"v1"')], body=b""))
    r = fetch(env, prefix)
    assert r.status == 304 and r.header("ETag") == '"v1"'


def test_unknown_grip_header_removed_from_response(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Grip-Foo", "bar"), ("X-Keep", "yes"),
                                          ("Content-Type", "text/plain")], body=b"plain body\n"))
    r = fetch(env, prefix)
    assert (r.status, r.body) == (200, b"plain body\n")
    assert r.header("Grip-Foo") is None and r.header("X-Keep") == "yes"


def test_grip_channel_without_hold_answers_at_once(env, backend, prefix, uid):
    backend.on(prefix, Resp(200, headers=[("Grip-Channel", "c-" + uid), ("Content-Type", "text/plain")],
                            body=b"immediate\n"))
    r = fetch(env, prefix)
    assert (r.status, r.body) == (200, b"immediate\n")
    assert r.header("Grip-Channel") is None


def test_instruct_without_hold_replaces_response(env, backend, prefix):
    backend.on(prefix, instruct({"response": {"code": 203, "headers": {"X-From": "instruct"},
                                              "body": "instructed body\n"}}))
    r = fetch(env, prefix)
    assert (r.status, r.body) == (203, b"instructed body\n")
    assert r.header("X-From") == "instruct"
    assert r.header("Content-Type") is None


def test_instruct_numeric_strings_accepted(env, backend, prefix, uid):
    backend.on(prefix, instruct({"hold": {"mode": "response", "channels": [{"name": "c-" + uid}],
                                          "timeout": "5"},
                                 "response": {"code": "202", "body": "string numbers\n"}}))
    r = raw_long_poll(env.port, prefix).result(15)
    assert (r.status, r.body) == (202, b"string numbers\n")


def test_instruct_unknown_members_ignored(env, backend, prefix):
    backend.on(prefix, instruct({"response": {"body": "ok\n", "future": 1}, "something-new": {"x": 1}}))
    r = fetch(env, prefix)
    assert (r.status, r.body) == (200, b"ok\n")


def test_instruct_headers_list_form(env, backend, prefix):
    backend.on(prefix, instruct({"response": {"headers": [["X-A", "1"], ["X-B", "2"]], "body": "l\n"}}))
    r = fetch(env, prefix)
    assert r.header("X-A") == "1" and r.header("X-B") == "2"


def test_instruct_hold_default_mode_is_response(env, backend, prefix, uid, pub):
    ch = "c-" + uid
    backend.on(prefix, instruct({"hold": {"channels": [{"name": ch}], "timeout": 20}}))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.response(ch, "default mode\n"))
    assert lp.result().body == b"default mode\n"


def test_instruct_code_wins_over_grip_status(env, backend, prefix):
    r0 = instruct({"response": {"code": 200, "body": "x\n"}})
    backend.on(prefix, Resp(200, headers=list(r0.headers) + [("Grip-Status", "201 Made")], body=r0.body))
    r = fetch(env, prefix)
    assert (r.status, r.reason, r.body) == (200, "OK", b"x\n")


def test_grip_status_applies_to_instruct_without_code(env, backend, prefix):
    r0 = instruct({"response": {"body": "y\n"}})
    backend.on(prefix, Resp(200, headers=list(r0.headers) + [("Grip-Status", "201 Made")], body=r0.body))
    r = fetch(env, prefix)
    assert (r.status, r.reason, r.body) == (201, "Made", b"y\n")


def test_lower_case_grip_header_names(env, backend, prefix, uid, pub):
    ch = "c-" + uid
    backend.on(prefix, Resp(200, headers=[("grip-hold", "response"), ("grip-channel", ch),
                                          ("grip-timeout", "20")], body=b"x"))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.response(ch, "lower case ok\n"))
    assert lp.result().body == b"lower case ok\n"


def test_grip_channel_params_and_spaces(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    backend.on(prefix, Resp(200, headers=[("Grip-Hold", "stream"),
                                          ("Grip-Channel", '%s ;filter=skip-self ,  %s; x="quoted, value"' % (a, b))],
                            body=b""))
    s = StreamCollector(env.port, prefix)
    try:
        ensure_stream_subscribed(s, pub, a)
        off = ensure_stream_subscribed(s, pub, b)
        pub.stream(a, "a\n")
        pub.stream(b, "b\n")
        assert s.wait_for("a\nb\n", 5, start=off)
    finally:
        s.close()


def test_subscription_limit_keeps_first_20_channels(env, backend, prefix, uid, pub):
    chans = ["c%02d-%s" % (i, uid) for i in range(22)]
    backend.on(prefix, grip_hold("stream", chans))
    s = StreamCollector(env.port, prefix)
    try:
        off = ensure_stream_subscribed(s, pub, chans[19])
        pub.stream(chans[20], "twenty-first\n")
        pub.stream(chans[21], "twenty-second\n")
        pub.stream(chans[0], "first\n")
        assert s.wait_for("first\n", 5, start=off)
        assert s.body()[off:] == b"first\n"
    finally:
        s.close()


def test_grip_expose_headers_applies_to_timeout_response(env, backend, prefix, uid):
    backend.on(prefix, grip_hold("response", "c-" + uid, body="t\n", timeout=5,
                                 headers=[("X-Keep", "1"), ("X-Drop", "2")],
                                 extra=[("Grip-Expose-Headers", "x-keep")]))
    r = raw_long_poll(env.port, prefix).result(15)
    assert r.body == b"t\n"
    assert r.header("X-Keep") == "1" and r.header("X-Drop") is None


def test_stream_hold_status_and_headers_from_backend(env, backend, prefix, uid):
    backend.on(prefix, Resp(202, reason="Streaming", headers=[("Grip-Hold", "stream"),
                                                               ("Grip-Channel", "c-" + uid),
                                                               ("X-Stream", "yes")], body=b"go\n"))
    s = StreamCollector(env.port, prefix)
    try:
        assert (s.status, s.reason) == (202, "Streaming")
        assert s.header("X-Stream") == "yes"
        assert s.wait_for("go\n", 3)
    finally:
        s.close()


def test_response_hold_on_post_request(env, backend, prefix, uid, pub):
    ch = "c-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    import httpx
    from harness.client import long_poll
    lp = long_poll(env.url(prefix), method="POST", content=b'{"q": 1}',
                   headers={"Content-Type": "application/json"})
    publish_until(lp.done, lambda: pub.response(ch, "post answered\n"))
    assert lp.result().text == "post answered\n"

"""Server-Sent Events through GRIP stream holds, read with an SSE client
library (httpx-sse) and byte by byte (sse-and-streaming.md)."""

import time

from gripcontrol import HttpStreamFormat

from harness.backend import Resp, grip_hold, instruct
from harness.client import SSEReader, StreamCollector, ensure_stream_subscribed

SSE_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]


def sse_hold(ch, body="", **kw):
    return grip_hold("stream", ch, body=body, headers=SSE_HEADERS, **kw)


def test_sse_events_received_by_sse_client(env, backend, prefix, uid, pub, grip_pub):
    ch = "sse-" + uid
    backend.on(prefix, sse_hold(ch))
    r = SSEReader(env.url(prefix))
    try:
        r.subscribe(pub, ch)
        grip_pub.publish_http_stream(ch, "id: 41\nevent: message\ndata: {\"text\":\"hi\"}\n\n", blocking=True)
        grip_pub.publish_http_stream(ch, HttpStreamFormat("id: 42\nevent: update\ndata: second\n\n"),
                                     blocking=True)
        assert r.wait(lambda s: len(s.real_events()) >= 2, 5)
        evs = r.real_events()
        assert [(e.id, e.event, e.data) for e in evs] == [("41", "message", '{"text":"hi"}'),
                                                         ("42", "update", "second")]
    finally:
        r.close()


def test_sse_response_headers_relayed(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid, extra=[]))
    s = StreamCollector(env.port, prefix, headers=[("Accept", "text/event-stream")])
    try:
        assert s.status == 200
        assert s.header("Content-Type") == "text/event-stream"
        assert s.header("Cache-Control") == "no-cache"
        assert s.header("Content-Length") is None
    finally:
        s.close()


def test_sse_initial_body_events(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid, body="event: open\ndata:\n\nid: 7\ndata: backlog\n\n"))
    r = SSEReader(env.url(prefix))
    try:
        assert r.wait(lambda s: len(s.events) >= 2, 5)
        assert [(e.event, e.data) for e in r.events[:2]] == [("open", ""), ("message", "backlog")]
        assert r.events[1].id == "7"
    finally:
        r.close()


def test_sse_multiline_data(env, backend, prefix, uid, pub):
    ch = "sse-" + uid
    backend.on(prefix, sse_hold(ch))
    r = SSEReader(env.url(prefix))
    try:
        r.subscribe(pub, ch)
        pub.stream(ch, "data: line one\ndata: line two\ndata: line three\n\n")
        assert r.wait(lambda s: len(s.real_events()) >= 1, 5)
        assert r.real_events()[0].data == "line one\nline two\nline three"
    finally:
        r.close()


def test_sse_utf8_content_byte_exact(env, backend, prefix, uid, pub):
    ch = "sse-" + uid
    backend.on(prefix, sse_hold(ch))
    s = StreamCollector(env.port, prefix)
    try:
        off = ensure_stream_subscribed(s, pub, ch, sse=True)
        text = "data: h\u00e9llo \u2603 \U0001F600\n\n"
        pub.stream(ch, text)
        assert s.wait_len(off + len(text.encode()), 5)
        assert s.body()[off:] == text.encode()
    finally:
        s.close()


def test_sse_keep_alive_comment(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid, body="event: open\ndata:\n\n",
                                keep_alive=":\\n\\n; format=cstring; timeout=1"))
    s = StreamCollector(env.port, prefix)
    try:
        assert s.wait_for("event: open\ndata:\n\n:\n\n:\n\n", 6), s.body()
    finally:
        s.close()


def test_sse_keep_alive_named_event(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid,
                                keep_alive="event: keep-alive\\ndata:\\n\\n; format=cstring; timeout=1"))
    r = SSEReader(env.url(prefix))
    try:
        assert r.wait(lambda s: len(s.events) >= 2, 6)
        assert all(e.event == "keep-alive" for e in r.events)
    finally:
        r.close()


def test_sse_last_event_id_forwarded(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid))
    r = SSEReader(env.url(prefix), headers={"Last-Event-ID": "41"})
    try:
        req = backend.requests(prefix)[0]
        assert req.header("Last-Event-ID") == "41"
        assert req.header("Accept") == "text/event-stream"
    finally:
        r.close()


def test_sse_close_action_ends_event_stream(env, backend, prefix, uid, pub, grip_pub):
    ch = "sse-" + uid
    backend.on(prefix, sse_hold(ch))
    r = SSEReader(env.url(prefix))
    try:
        r.subscribe(pub, ch)
        pub.stream(ch, "data: bye\n\n")
        grip_pub.publish_http_stream(ch, HttpStreamFormat(close=True), blocking=True)
        assert r.wait(lambda s: s.ended, 5), "SSE stream did not end"
        assert r.error is None
        assert [e.data for e in r.real_events()] == ["bye"]
    finally:
        r.close()


def test_sse_comment_padding_passed_through(env, backend, prefix, uid):
    padding = ":" + " " * 2048 + "\n\n"
    backend.on(prefix, sse_hold("sse-" + uid, body=padding + "event: open\ndata: x\n\n"))
    s = StreamCollector(env.port, prefix)
    try:
        assert s.wait_for("event: open\ndata: x\n\n", 5)
        assert s.body().startswith(padding.encode())
    finally:
        s.close()


def test_sse_retry_field_passed_through(env, backend, prefix, uid):
    backend.on(prefix, sse_hold("sse-" + uid, body="retry: 2500\ndata: r\n\n"))
    r = SSEReader(env.url(prefix))
    try:
        assert r.wait(lambda s: len(s.events) >= 1, 5)
        assert r.events[0].retry == 2500
    finally:
        r.close()


def test_sse_no_content_reconnect_answer(env, backend, prefix, uid, http):
    backend.on(prefix, Resp(204))
    r = http.get(env.url(prefix), headers={"Accept": "text/event-stream", "Last-Event-ID": "99"})
    assert r.status_code == 204 and r.content == b""


def test_sse_json_instruct_stream(env, backend, prefix, uid, pub):
    ch = "sse-" + uid
    backend.on(prefix, instruct({"hold": {"mode": "stream", "channels": [{"name": ch}],
                                          "keep-alive": {"content": ":\n\n", "timeout": 20}},
                                 "response": {"headers": {"Content-Type": "text/event-stream"},
                                              "body": "event: open\ndata:\n\n"}}))
    r = SSEReader(env.url(prefix))
    try:
        assert r.response.headers["content-type"] == "text/event-stream"
        r.subscribe(pub, ch)
        pub.stream(ch, "event: message\ndata: json-held\n\n")
        assert r.wait(lambda s: any(e.data == "json-held" for e in s.events), 5)
        assert r.events[0].event == "open"
    finally:
        r.close()


def test_sse_events_from_two_publishers_in_order(env, backend, prefix, uid, pub, grip_pub):
    ch = "sse-" + uid
    backend.on(prefix, sse_hold(ch))
    r = SSEReader(env.url(prefix))
    try:
        r.subscribe(pub, ch)
        for i in range(10):
            if i % 2:
                pub.stream(ch, "id: %d\ndata: raw %d\n\n" % (i, i))
            else:
                grip_pub.publish_http_stream(ch, "id: %d\ndata: lib %d\n\n" % (i, i), blocking=True)
        assert r.wait(lambda s: len(s.real_events()) >= 10, 5)
        assert [e.id for e in r.real_events()] == [str(i) for i in range(10)]
    finally:
        r.close()

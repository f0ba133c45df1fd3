"""The publish port: endpoints, item schema, formats, exact error texts
(publish-api.md)."""

import contextlib
import json
import secrets

import httpx
import pytest
from gripcontrol import GripPubControl, HttpResponseFormat, HttpStreamFormat
from pubcontrol import Item

from harness.backend import grip_hold
from harness.client import (Publisher, RawConn, StreamCollector, ensure_stream_subscribed, publish_until,
                            raw_long_poll, raw_request, wait_until)


def open_stream(env, backend, prefix, ch, body=""):
    backend.on(prefix, grip_hold("stream", ch, body=body))
    return StreamCollector(env.port, prefix)


class Watch:
    """A held stream on its own channel, already subscribed. `received()` tells
    what reached it since the last call: it publishes a unique marker last and
    waits for it, so everything published before it has arrived by then."""

    def __init__(self, stream, offset, pub, channel):
        self.stream, self.offset, self.pub, self.channel = stream, offset, pub, channel

    def item(self, content):
        return {"channel": self.channel, "formats": {"http-stream": {"content": content}}}

    def received(self) -> bytes:
        marker = ("marker-%s\n" % secrets.token_hex(4)).encode()
        self.pub.stream(self.channel, marker.decode())
        assert self.stream.wait_for(marker, 5, start=self.offset), \
            "marker not delivered; the stream has %r" % self.stream.body()[self.offset:]
        got = self.stream.body()[self.offset:]
        end = got.index(marker)
        self.offset += end + len(marker)
        return got[:end]


@contextlib.contextmanager
def watching(env, backend, pub, prefix, ch):
    s = open_stream(env, backend, prefix, ch)
    try:
        yield Watch(s, ensure_stream_subscribed(s, pub, ch), pub, ch)
    finally:
        s.close()


def test_publish_root_answers_api_banner(env, http):
    r = http.get(env.publish_base + "/")
    assert r.status_code == 200
    assert r.text == "Pushpin API\n"


def test_publish_success_answer(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("x\n")]})
        assert r.status_code == 200
        assert r.text == "Published\n"
        assert r.headers["content-type"].startswith("text/plain")
        assert w.received() == b"x\n"


def test_publish_path_without_trailing_slash(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("no slash\n")]}, path="/publish")
        assert (r.status_code, r.text) == (200, "Published\n")
        assert w.received() == b"no slash\n"


def test_publish_empty_items_accepted(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": []})
        assert (r.status_code, r.text) == (200, "Published\n")
        assert w.received() == b""


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_publish_other_method_405(env, http, method):
    r = http.request(method, env.publish_base + "/publish/")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.text == "Method not allowed: %s.\n" % method


def test_publish_unknown_path_404(env, http):
    r = http.post(env.publish_base + "/nope/", content=b"{}")
    assert (r.status_code, r.text) == (404, "Not Found\n")


def test_publish_query_string_404(env, http):
    r = http.post(env.publish_base + "/publish/?x=1", content=b'{"items":[]}')
    assert (r.status_code, r.text) == (404, "Not Found\n")


def test_publish_accept_json_answer(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("json answer\n")]}, headers={"Accept": "application/json"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/json")
        assert r.text == '{"message":"Published"}\n'
        assert w.received() == b"json answer\n"


def test_publish_accept_last_listed_type_wins(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("text answer\n")]}, headers={"Accept": "application/json, text/plain"})
        assert (r.status_code, r.text) == (200, "Published\n")
        assert w.received() == b"text answer\n"


def test_publish_accept_unsupported_406(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("refused answer\n")]}, headers={"Accept": "image/png"})
        assert r.status_code == 406
        assert r.text == "Not Acceptable. Supported formats are text/plain and application/json.\n"
        assert w.received() == b""


def test_publish_body_too_large_400(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post(json.dumps({"items": [w.item("x" * 1000001)]}))
        assert (r.status_code, r.text) == (400, "Request body too large.\n")
        assert w.received() == b""


def raw_publish(env, head_lines, body=b""):
    """A publish over a raw connection: the request line, `head_lines`, then `body` as is."""
    c = RawConn(env.ports.publish)
    try:
        c.send(b"\r\n".join([b"POST /publish/ HTTP/1.1", b"Host: 127.0.0.1"] + head_lines) + b"\r\n\r\n" + body)
        return c.read_response()
    finally:
        c.close()


def test_publish_chunked_body_411(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        body = json.dumps({"items": [w.item("chunked\n")]}).encode()
        r = raw_publish(env, [b"Transfer-Encoding: chunked"], b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert (r.status, r.body) == (411, b"Request requires Content-Length.\n")
        assert w.received() == b""


def test_publish_missing_content_length_411(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        body = json.dumps({"items": [w.item("no length\n")]}).encode()
        r = raw_publish(env, [b"Connection: close"], body)
        assert (r.status, r.body) == (411, b"Request requires Content-Length.\n")
        assert w.received() == b""


def test_publish_http10_request(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        body = json.dumps({"items": [w.item("over HTTP/1.0\n")]}).encode()
        c = RawConn(env.ports.publish)
        c.send(raw_request("POST", "/publish/", host="127.0.0.1", body=body, version="HTTP/1.0"))
        r = c.read_response()
        c.close()
        assert (r.status, r.body) == (200, b"Published\n")
        assert w.received() == b"over HTTP/1.0\n"


def test_publish_expect_100_continue(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        body = json.dumps({"items": [w.item("after 100\n")]}).encode()
        c = RawConn(env.ports.publish)
        c.send(raw_request("POST", "/publish/", host="127.0.0.1",
                           headers=[("Expect", "100-continue"), ("Content-Length", str(len(body)))]))
        assert c.read_until(b"\r\n\r\n", 5).startswith(b"HTTP/1.1 100")
        c.send(body)
        r = c.read_response()
        c.close()
        assert (r.status, r.body) == (200, b"Published\n")
        assert w.received() == b"after 100\n"


def test_recover_endpoint(env, http):
    r = http.post(env.publish_base + "/recover", content=b"")
    assert (r.status_code, r.text) == (200, "Updated\n")


def test_recover_other_method_405(env, http):
    r = http.get(env.publish_base + "/recover")
    assert (r.status_code, r.headers["allow"], r.text) == (405, "POST", "Method not allowed: GET.\n")


# -- malformed publish bodies: exact texts (publish-api.md 3) -----------------------

S = {"http-stream": {"content": "x"}}
BAD = [
    ("not_json", b"{not json", "Body is not valid JSON."),
    ("not_object", [1, 2], "Invalid format."),
    ("no_items", {"item": []}, "Invalid format: object does not contain 'items'"),
    ("items_not_array", {"items": {}}, "Invalid format: object contains 'items' with wrong type"),
    ("item_not_object", {"items": ["x"]}, "Invalid format: publish item object is not an object"),
    ("missing_channel", {"items": [{"formats": S}]},
     "Invalid format: publish item object does not contain 'channel'"),
    ("channel_wrong_type", {"items": [{"channel": 5, "formats": S}]},
     "Invalid format: publish item object contains 'channel' with wrong type"),
    ("id_wrong_type", {"items": [{"channel": "c", "id": 5, "formats": S}]},
     "Invalid format: publish item object contains 'id' with wrong type"),
    ("prev_id_wrong_type", {"items": [{"channel": "c", "prev-id": [], "formats": S}]},
     "Invalid format: publish item object contains 'prev-id' with wrong type"),
    ("no_seq_wrong_type", {"items": [{"channel": "c", "no-seq": "yes", "formats": S}]},
     "Invalid format: publish item object contains 'no-seq' with wrong type"),
    ("size_wrong_type", {"items": [{"channel": "c", "size": [], "formats": S}]},
     "Invalid format: publish item object contains 'size' with wrong type"),
    ("size_negative", {"items": [{"channel": "c", "size": -1, "formats": S}]},
     "Invalid format: publish item object contains 'size' with invalid value"),
    ("no_formats", {"items": [{"channel": "c"}]}, "Invalid format: no formats specified"),
    ("empty_formats", {"items": [{"channel": "c", "formats": {}}]}, "Invalid format: no formats specified"),
    ("formats_wrong_type", {"items": [{"channel": "c", "formats": []}]},
     "Invalid format: publish item object contains 'formats' with wrong type"),
    ("format_not_object", {"items": [{"channel": "c", "formats": {"http-stream": "x"}}]},
     "Invalid format: 'http-stream' is not an object"),
    ("meta_value_wrong_type", {"items": [{"channel": "c", "meta": {"sender": 1}, "formats": S}]},
     "Invalid format: 'meta' contains 'sender' with wrong type"),
    ("unknown_action", {"items": [{"channel": "c", "formats": {"http-stream": {"action": "explode"}}}]},
     "Invalid format: "),
    ("response_without_body", {"items": [{"channel": "c", "formats": {"http-response": {"code": 200}}}]},
     "Invalid format: 'http-response' does not contain 'body', 'body-bin', or 'body-patch'"),
    ("code_wrong_type", {"items": [{"channel": "c", "formats": {"http-response": {"code": [], "body": ""}}}]},
     "Invalid format: 'http-response' contains 'code' with wrong type"),
    ("code_out_of_range", {"items": [{"channel": "c", "formats": {"http-response": {"code": 1000, "body": ""}}}]},
     "Invalid format: 'http-response' contains 'code' with invalid value"),
    ("headers_wrong_type", {"items": [{"channel": "c", "formats": {"http-response": {"headers": "X: y", "body": ""}}}]},
     "Invalid format: 'http-response' contains 'headers' with wrong type"),
    ("header_list_wrong_length", {"items": [{"channel": "c", "formats": {"http-response": {
        "headers": [["X-A"]], "body": ""}}}]},
     "Invalid format: headers contains list with wrong number of elements"),
    ("header_object_value_wrong_type", {"items": [{"channel": "c", "formats": {"http-response": {
        "headers": {"X-A": 1}, "body": ""}}}]},
     "Invalid format: headers contains 'X-A' with wrong type"),
    ("stream_without_content", {"items": [{"channel": "c", "formats": {"http-stream": {}}}]},
     "Invalid format: 'http-stream' does not contain 'content' or 'content-bin'"),
    ("stream_content_wrong_type", {"items": [{"channel": "c", "formats": {"http-stream": {"content": 5}}}]},
     "Invalid format: 'http-stream' contains 'content' with wrong type"),
    ("ws_message_without_content", {"items": [{"channel": "c", "formats": {"ws-message": {}}}]},
     "Invalid format: 'ws-message' does not contain 'content' or 'content-bin'"),
    ("ws_message_unknown_type", {"items": [{"channel": "c", "formats": {"ws-message": {
        "type": "smoke", "content": "x"}}}]},
     "Invalid format: 'ws-message' contains 'type' with unknown value"),
]


@pytest.fixture(scope="module")
def bad_watch(env):
    """One held stream per worker for the malformed bodies below: each sends its
    body with channel "c" renamed to this stream's channel."""
    ch = "malformed-%s" % secrets.token_hex(4)
    p = Publisher(env.publish_base)
    try:
        with watching(env, env.backend, p, "/%s/" % ch, ch) as w:
            yield w
    finally:
        p.close()


@pytest.mark.parametrize("body,text", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_publish_exact_400_text(env, pub, bad_watch, body, text):
    if not isinstance(body, bytes):
        body = json.dumps(body).replace('"channel": "c"', '"channel": "%s"' % bad_watch.channel)
    r = pub.post(body)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == text + "\n"
    # nothing of the rejected request reached the subscriber, and the endpoint keeps working
    assert bad_watch.received() == b""


def test_invalid_item_rejects_whole_request(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        r = pub.post({"items": [{"channel": ch, "formats": {"http-stream": {"content": "valid\n"}}},
                                {"channel": ch, "formats": {"http-stream": {}}}]})
        assert r.status_code == 400
        pub.stream(ch, "marker\n")
        assert s.wait_for("marker\n", 5, start=off)
        assert s.body()[off:] == b"marker\n"
    finally:
        s.close()


def test_several_items_in_one_request_delivered_in_order(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    sa = open_stream(env, backend, prefix + "a", a)
    sb = open_stream(env, backend, prefix + "b", b)
    try:
        oa = ensure_stream_subscribed(sa, pub, a)
        ob = ensure_stream_subscribed(sb, pub, b)
        pub.items({"channel": a, "formats": {"http-stream": {"content": "a1\n"}}},
                  {"channel": b, "formats": {"http-stream": {"content": "b1\n"}}},
                  {"channel": a, "formats": {"http-stream": {"content": "a2\n"}}})
        assert sa.wait_for("a2\n", 5, start=oa) and sb.wait_for("b1\n", 5, start=ob)
        assert sa.body()[oa:] == b"a1\na2\n"
        assert sb.body()[ob:] == b"b1\n"
    finally:
        sa.close()
        sb.close()


def test_legacy_item_level_formats(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items({"channel": ch, "http-stream": {"content": "legacy form\n"}})
        assert s.wait_for("legacy form\n", 5, start=off)
    finally:
        s.close()


def test_formats_member_wins_over_legacy_keys(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items({"channel": ch, "formats": {"http-stream": {"content": "from formats\n"}},
                   "http-stream": {"content": "from legacy\n"}})
        assert s.wait_for("from formats\n", 5, start=off)
        pub.stream(ch, "end\n")
        assert s.wait_for("end\n", 5, start=off)
        assert b"from legacy" not in s.body()
    finally:
        s.close()


def test_unknown_format_only_item_accepted(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [{"channel": w.channel, "formats": {"carrier-pigeon": {"x": 1}}}]})
        assert (r.status_code, r.text) == (200, "Published\n")
        assert w.received() == b""


def test_bad_base64_is_not_an_error(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [{"channel": w.channel, "formats": {"http-stream": {"content-bin": "!!not base64!!"}}}]})
        assert r.status_code == 200
        # invalid characters are skipped (Qt fromBase64, as Pushpin): "notbase64", the odd last 6 bits dropped
        assert w.received() == b"\x9e\x8b[j\xc7\xba"


def test_all_three_formats_in_one_item(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix + "s", ch)
    backend.on(prefix + "lp", grip_hold("response", ch, body="x", timeout=20))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        lp = raw_long_poll(env.port, prefix + "lp")
        backend.wait_requests(prefix + "lp", 1, 5)
        item = {"channel": ch, "formats": {"http-response": {"body": "as response\n"},
                                           "http-stream": {"content": "as stream\n"},
                                           "ws-message": {"content": "as ws"}}}
        publish_until(lp.done, lambda: pub.items(item))
        assert lp.result().body == b"as response\n"
        assert s.wait_for("as stream\n", 5, start=off)
        assert b"as ws" not in s.body() and b"as response" not in s.body()
    finally:
        s.close()


def test_grippubcontrol_publishes_stream_and_response(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix + "s", ch)
    backend.on(prefix + "lp", grip_hold("response", ch, body="x", timeout=20))
    gp = GripPubControl({"control_uri": env.publish_base})
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        lp = raw_long_poll(env.port, prefix + "lp")
        item = Item([HttpResponseFormat(body="lib response\n"), HttpStreamFormat("lib stream\n")])
        publish_until(lp.done, lambda: gp.publish(ch, item, blocking=True))
        assert lp.result().body == b"lib response\n"
        assert s.wait_for("lib stream\n", 5, start=off)
    finally:
        gp.close()
        s.close()


def test_grippubcontrol_non_blocking_publish(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    gp = GripPubControl({"control_uri": env.publish_base})
    results = []
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        for i in range(5):
            gp.publish_http_stream(ch, "async %d\n" % i, callback=lambda ok, msg: results.append((ok, msg)))
        gp.wait_all_sent()
        assert s.wait_for("async 4\n", 5, start=off)
        assert s.body()[off:] == b"".join(b"async %d\n" % i for i in range(5))
        assert [ok for ok, _ in results] == [True] * 5
    finally:
        gp.close()
        s.close()


def test_grippubcontrol_with_jwt_auth_accepted(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    gp = GripPubControl({"control_uri": env.publish_base, "control_iss": "publisher",
                         "key": b"publisher-key-that-is-long-enough-0123456789"})
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        gp.publish_http_stream(ch, "authorized\n", blocking=True)
        assert s.wait_for("authorized\n", 5, start=off)
    finally:
        gp.close()
        s.close()


def test_grip_url_publisher_config(env, backend, prefix, uid, pub):
    from gripcontrol import parse_grip_uri
    ch = "p-" + uid
    s = open_stream(env, backend, prefix, ch)
    gp = GripPubControl(parse_grip_uri(env.publish_base + "/?iss=x&key=base64:" +
                                       "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5LWtleS0xMjM0"))
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        gp.publish_http_stream(ch, "grip url\n", blocking=True)
        assert s.wait_for("grip url\n", 5, start=off)
    finally:
        gp.close()
        s.close()


def test_basic_auth_header_ignored(env, backend, prefix, uid, pub):
    with watching(env, backend, pub, prefix, "p-" + uid) as w:
        r = pub.post({"items": [w.item("with basic auth\n")]}, headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert r.status_code == 200
        assert w.received() == b"with basic auth\n"


def test_channel_without_subscribers_is_not_an_error(env, pub, uid):
    r = pub.post({"items": [{"channel": "empty-" + uid, "formats": {"http-response": {"body": "x"}}}]})
    assert (r.status_code, r.text) == (200, "Published\n")


def test_empty_channel_name_accepted(env, pub):
    r = pub.post({"items": [{"channel": "", "formats": {"http-stream": {"content": "x"}}}]})
    assert r.status_code == 200


def test_code_size_numeric_strings_accepted(env, backend, prefix, uid, pub):
    ch = "p-" + uid
    backend.on(prefix, grip_hold("response", ch, body="timed out\n", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "size": "12",
                                              "formats": {"http-response": {"code": "201", "body": "x"}}}))
    r = lp.result()
    assert (r.status, r.body) == (201, b"x")

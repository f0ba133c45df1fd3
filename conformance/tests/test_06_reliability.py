"""ids, duplicate suppression, prev-id sequencing, gap detection and recovery
(reliability.md; grip-http.md 7-8)."""

import time

from harness.backend import Resp, grip_hold
from harness.client import (StreamCollector, ensure_stream_subscribed, publish_until, raw_long_poll,
                            wait_recheck)


def item(ch, content, id=None, prev=None, **extra):
    it = {"channel": ch, "formats": {"http-stream": {"content": content}}}
    if id is not None:
        it["id"] = id
    if prev is not None:
        it["prev-id"] = prev
    it.update(extra)
    return it


def stream(env, backend, path, ch):
    backend.on(path, grip_hold("stream", ch))
    return StreamCollector(env.port, path)


def test_duplicate_id_dropped(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "first\n", id="dup-1"))
        pub.items(item(ch, "again\n", id="dup-1"))
        pub.items(item(ch, "other\n", id="dup-2"))
        assert s.wait_for("other\n", 5, start=off)
        assert s.body()[off:] == b"first\nother\n"
    finally:
        s.close()


def test_duplicate_id_within_one_request_dropped(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "one\n", id="x"), item(ch, "two\n", id="x"), item(ch, "three\n", id="y"))
        assert s.wait_for("three\n", 5, start=off)
        assert s.body()[off:] == b"one\nthree\n"
    finally:
        s.close()


def test_same_id_on_another_channel_not_a_duplicate(env, backend, prefix, uid, pub):
    a, b = "a-" + uid, "b-" + uid
    s = stream(env, backend, prefix, a)
    try:
        off = ensure_stream_subscribed(s, pub, a)
        pub.items(item(b, "elsewhere\n", id="shared"))
        pub.items(item(a, "here\n", id="shared"))
        assert s.wait_for("here\n", 5, start=off)
    finally:
        s.close()


def test_id_cache_applies_without_subscribers(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    pub.items(item(ch, "before anyone listened\n", id="early"))
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "duplicate of early\n", id="early"))
        pub.items(item(ch, "fresh\n", id="late"))
        assert s.wait_for("fresh\n", 5, start=off)
        assert b"duplicate of early" not in s.body()
    finally:
        s.close()


def test_prev_id_out_of_order_items_reordered(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "1\n", id="1"))
        pub.items(item(ch, "3\n", id="3", prev="2"))
        time.sleep(0.5)
        assert s.body()[off:] == b"1\n", "item 3 released before its predecessor"
        pub.items(item(ch, "2\n", id="2", prev="1"))
        assert s.wait_for("3\n", 5, start=off)
        assert s.body()[off:] == b"1\n2\n3\n"
    finally:
        s.close()


def test_prev_id_gap_released_after_message_wait(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "1\n", id="1"))
        assert s.wait_for("1\n", 5, start=off)
        t0 = time.monotonic()
        pub.items(item(ch, "9\n", id="9", prev="8"))
        assert s.wait_for("9\n", 10, start=off)
        waited = time.monotonic() - t0
        assert 4.0 <= waited <= 8.0, "released after %.1fs, expected message_wait (5-6 s)" % waited
        assert s.body()[off:] == b"1\n9\n"
    finally:
        s.close()


def test_no_seq_item_released_at_once(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "1\n", id="1"))
        t0 = time.monotonic()
        pub.items(item(ch, "20\n", id="20", prev="19", **{"no-seq": True}))
        assert s.wait_for("20\n", 3, start=off)
        assert time.monotonic() - t0 < 2
        # lastId stays 1: an item following 1 is released at once
        pub.items(item(ch, "2\n", id="2", prev="1"))
        assert s.wait_for("20\n2\n", 2, start=off)
        assert s.body()[off:] == b"1\n20\n2\n"
    finally:
        s.close()


def test_item_without_prev_id_released_at_once(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    s = stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "a\n", id="a"))
        pub.items(item(ch, "b\n", id="b"))
        pub.items(item(ch, "c\n"))
        assert s.wait_for("c\n", 2, start=off)
        assert s.body()[off:] == b"a\nb\nc\n"
    finally:
        s.close()


def test_longpoll_matching_prev_id_delivered(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    backend.on(prefix, grip_hold("response", "%s; prev-id=5" % ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    wait_recheck(backend, prefix)
    pub.items({"channel": ch, "id": "6", "prev-id": "5", "formats": {"http-response": {"body": "six\n"}}})
    assert lp.result(5).body == b"six\n"


def test_longpoll_prev_id_conflict_resends_with_grip_last(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    state = {"recover": False}

    def h(req):
        if state["recover"]:
            return Resp(200, headers=[("Content-Type", "text/plain")], body=b"recovered\n")
        return grip_hold("response", "%s; prev-id=5" % ch, body="x", timeout=20)
    backend.on(prefix, h)
    lp = raw_long_poll(env.port, prefix)
    before = len(wait_recheck(backend, prefix))
    state["recover"] = True
    pub.items({"channel": ch, "id": "7", "prev-id": "6", "formats": {"http-response": {"body": "seven\n"}}})
    r = lp.result(5)
    assert r.body == b"recovered\n"
    reqs = backend.requests(prefix)
    assert len(reqs) == before + 1
    assert [v.replace(" ", "") for v in reqs[-1].header_all("Grip-Last")] == ["%s;last-id=5" % ch]
    assert reqs[-1].sig_valid


def test_longpoll_hold_with_stale_prev_id_resent_at_once(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    # keep the channel subscribed and give it a known last id
    s = stream(env, backend, prefix + "s", ch)
    try:
        ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "10\n", id="10"))
        assert s.wait_for("10\n", 5)
        seen = []

        def h(req):
            seen.append(req)
            if len(seen) == 1:
                return grip_hold("response", "%s; prev-id=9" % ch, body="x", timeout=20)
            return Resp(200, headers=[("Content-Type", "text/plain")], body=b"caught up\n")
        backend.on(prefix + "lp", h)
        lp = raw_long_poll(env.port, prefix + "lp")
        r = lp.result(5)
        assert r.body == b"caught up\n"
        assert lp.elapsed() < 3
        assert [v.replace(" ", "") for v in seen[1].header_all("Grip-Last")] == ["%s;last-id=9" % ch]
    finally:
        s.close()


def test_stream_gap_fetches_next_link_with_grip_last(env, backend, prefix, uid, pub):
    ch = "r-" + uid
    link = prefix + "next"
    state = {"gap": False}

    def h(req):
        if req.path == link and state["gap"]:
            return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", "%s; prev-id=3" % ch),
                                      ("Grip-Link", "<%s>; rel=next" % link)], body=b"2 (recovered)\n3 (recovered)\n")
        return Resp(200, headers=[("Grip-Hold", "stream"), ("Grip-Channel", "%s; prev-id=1" % ch),
                                  ("Grip-Link", "<%s>; rel=next" % link)], body=b"" if req.path == link else b"1\n")
    backend.on(prefix, h)
    s = StreamCollector(env.port, prefix + "stream")
    try:
        # the first-subscription link fetch happens about 1 s after subscribing
        backend.wait_requests(link, 1, 4)
        time.sleep(0.5)
        state["gap"] = True
        n = len(backend.requests(link))
        pub.items(item(ch, "3 (published)\n", id="3", prev="2"))
        assert s.wait_for("3 (recovered)\n", 10), s.body()
        fetch = backend.requests(link)[n]
        assert [v.replace(" ", "") for v in fetch.header_all("Grip-Last")] == ["%s;last-id=1" % ch]
        assert fetch.sig_valid
        pub.items(item(ch, "4\n", id="4", prev="3"))
        assert s.wait_for("4\n", 5)
        assert s.body() == b"1\n2 (recovered)\n3 (recovered)\n4\n"
    finally:
        s.close()


def test_recover_endpoint_resends_longpoll(env, backend, prefix, uid, pub, http):
    ch = "r-" + uid
    state = {"recover": False}

    def h(req):
        if state["recover"]:
            return Resp(200, headers=[("Content-Type", "text/plain")], body=b"after recover\n")
        return grip_hold("response", ch, body="x", timeout=20)
    backend.on(prefix, h)
    lp = raw_long_poll(env.port, prefix)
    wait_recheck(backend, prefix)
    state["recover"] = True
    r = http.post(env.publish_base + "/recover", content=b"")
    assert r.status_code == 200
    assert lp.result(5).body == b"after recover\n"

"""Subscription meta (Grip-Set-Meta, JSON hold.meta) and filters: skip-self,
skip-users, require-sub, var-subst, build-id (grip-http.md 9)."""

from gripcontrol import HttpResponseFormat, HttpStreamFormat
from pubcontrol import Item

from harness.backend import Resp, instruct
from harness.client import (StreamCollector, ensure_stream_subscribed, publish_until,
                            raw_long_poll)


def meta_stream(env, backend, path, channel_header, meta=None, extra=()):
    hs = [("Grip-Hold", "stream"), ("Grip-Channel", channel_header)]
    if meta:
        hs.append(("Grip-Set-Meta", meta))
    hs.extend(extra)
    backend.on(path, Resp(200, headers=hs, body=b""))
    return StreamCollector(env.port, path)


def item(ch, content, meta=None, filters=None, **extra):
    f = {"content": content}
    if filters is not None:
        f["content-filters"] = filters
    it = {"channel": ch, "formats": {"http-stream": f}}
    if meta:
        it["meta"] = meta
    it.update(extra)
    return it


def test_skip_self_drops_own_messages(env, backend, prefix, uid, pub, grip_pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, "%s; filter=skip-self" % ch, meta="user=alice")
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        grip_pub.publish(ch, Item(HttpStreamFormat("from alice\n"), meta={"sender": "alice"}), blocking=True)
        grip_pub.publish(ch, Item(HttpStreamFormat("from bob\n"), meta={"sender": "bob"}), blocking=True)
        assert s.wait_for("from bob\n", 5, start=off)
        assert s.body()[off:] == b"from bob\n"
    finally:
        s.close()


def test_skip_self_without_filter_delivers(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, ch, meta="user=alice")
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "own message\n", meta={"sender": "alice"}))
        assert s.wait_for("own message\n", 5, start=off)
    finally:
        s.close()


def test_skip_users_drops_listed_users(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, "%s; filter=skip-users" % ch, meta='user="alice"')
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "skipped\n", meta={"skip_users": "carol, alice ,dave"}))
        pub.items(item(ch, "kept\n", meta={"skip_users": "carol,dave"}))
        assert s.wait_for("kept\n", 5, start=off)
        assert s.body()[off:] == b"kept\n"
    finally:
        s.close()


def test_require_sub_checks_other_subscription(env, backend, prefix, uid, pub):
    a, b, c = "a-" + uid, "b-" + uid, "c-" + uid
    s = meta_stream(env, backend, prefix, "%s; filter=require-sub, %s" % (a, b))
    try:
        ensure_stream_subscribed(s, pub, b)
        off = ensure_stream_subscribed(s, pub, a)
        pub.items(item(a, "needs c\n", meta={"require_sub": c}))
        pub.items(item(a, "needs b\n", meta={"require_sub": b}))
        assert s.wait_for("needs b\n", 5, start=off)
        assert s.body()[off:] == b"needs b\n"
    finally:
        s.close()


def test_var_subst_replaces_meta_values(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, "%s; filter=var-subst" % ch, meta='name="Alice B", room=42')
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "hi %(name)s in %(room)s, 100%%\n", filters=["var-subst"]))
        assert s.wait_for("100%\n", 5, start=off)
        assert s.body()[off:] == b"hi Alice B in 42, 100%\n"
    finally:
        s.close()


def test_var_subst_on_longpoll_body(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    backend.on(prefix, Resp(200, headers=[("Grip-Hold", "response"), ("Grip-Channel", "%s; filter=var-subst" % ch),
                                          ("Grip-Set-Meta", "user=zed"), ("Grip-Timeout", "20")], body=b"x"))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: pub.items({"channel": ch, "formats": {"http-response": {
        "body": "hello %(user)s\n", "content-filters": ["var-subst"]}}}))
    assert lp.result().body == b"hello zed\n"


def test_json_hold_meta_and_filters(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    backend.on(prefix, instruct({"hold": {"mode": "stream", "channels": [{"name": ch, "filters": ["skip-self"]}],
                                          "meta": {"user": "json-user"}}}))
    s = StreamCollector(env.port, prefix)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "mine\n", meta={"sender": "json-user"}))
        pub.items(item(ch, "theirs\n", meta={"sender": "other"}))
        assert s.wait_for("theirs\n", 5, start=off)
        assert s.body()[off:] == b"theirs\n"
    finally:
        s.close()


def test_unknown_filter_ignored(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, "%s; filter=no-such-filter" % ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, "delivered\n")
        assert s.wait_for("delivered\n", 5, start=off)
    finally:
        s.close()


def test_content_filters_mismatch_skips_stream_item(env, backend, prefix, uid, pub):
    ch = "f-" + uid
    s = meta_stream(env, backend, prefix, ch)
    try:
        off = ensure_stream_subscribed(s, pub, ch)
        pub.items(item(ch, "needs var-subst %(x)s\n", filters=["var-subst"]))
        assert s.wait_end(5), "stream should end on a content-filters mismatch"
        assert b"needs var-subst" not in s.body()
    finally:
        s.close()

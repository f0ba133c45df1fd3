"""Scale-out (issue 11): three gripproxy instances and one redis-server (the
Redis backplane, `--backplane redis://...`), and three instances with no
backplane and a publisher posting to all of them (shared-nothing).

Every case starts its own cluster on the worker's cluster ports
(harness/cluster.py) and stops it at the end; a failing case prints every
instance's log and Redis's. All `beyond_reference`: Pushpin has no backplane."""

import base64
import functools
import json
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest
from gripcontrol import GripPubControl, HttpResponseFormat, HttpStreamFormat, WebSocketMessageFormat
from pubcontrol import Item

from harness.backend import grip_hold
from harness.client import Publisher, SSEReader, StreamCollector, publish_until, raw_long_poll, wait_recheck, wait_until
from harness.cluster import (DEFAULT_PREFIX, Cluster, RedisSubscriber, WSCollector, all_cluster_ports,
                             all_subscribed, sse_after)
from harness.extra import gripproxy_bin
from harness.target import check_ports_free
from harness.ws import echo_handler, lambda_handler

pytestmark = pytest.mark.beyond_reference

SSE_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]


class Clusters:
    """The `cluster` fixture: cluster(tag, **kw) starts a Cluster; all are
    stopped when the test ends."""

    def __init__(self, env):
        self.env = env
        self.started = []
        self.closers = []

    def __call__(self, tag, start=True, wait_connected=True, **kw):
        if not self.started:
            check_ports_free(all_cluster_ports(self.env))
        c = Cluster(self.env, tag, **kw)
        self.started.append(c)
        if start:
            c.start(wait_connected=wait_connected)
        return c

    def closing(self, *things):
        """Close these (collectors, readers) before the clusters stop."""
        self.closers.extend(things)
        return things[0] if len(things) == 1 else things

    def describe(self):
        return "\n".join(c.describe() for c in self.started)

    def stop(self):
        for t in reversed(self.closers):
            try:
                if isinstance(t, StreamCollector):
                    hang_up(t)
                else:
                    t.close()
            except Exception:
                pass
        for c in reversed(self.started):
            c.stop()


@pytest.fixture
def cluster(env):
    f = Clusters(env)
    yield f
    f.stop()


def cluster_case(fn):
    """On failure, print (into the test's captured output) every instance's
    log tail and Redis's."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except BaseException:
            print("==== cluster logs (test ran %.1f s) ====" % (time.monotonic() - t0))
            print(kwargs["cluster"].describe())
            raise
    return wrapper


def stream_item(ch, content, **extra):
    it = {"channel": ch, "formats": {"http-stream": {"content": content}}}
    it.update(extra)
    return it


def sse_event(data, event="message"):
    return "event: %s\ndata: %s\n\n" % (event, data)


def held_streams(cluster, backend, instances, path, ch, body="start\n"):
    backend.on(path, grip_hold("stream", ch, body=body))
    return [cluster.closing(StreamCollector(x.port, path + "?on=" + x.label)) for x in instances]


def hang_up(s):
    """Close a StreamCollector's connection for real: a plain close() while its
    reader thread sits in recv() sends no FIN on Linux."""
    try:
        s.conn.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def wait_numsub(redis, channel, n, timeout=5.0, sharded=False):
    count = redis.shardnumsub if sharded else redis.numsub
    got = [None]

    def ok():
        got[0] = count(channel)
        return got[0] == n
    assert wait_until(ok, timeout, 0.05), "%s of %r is %s after %.0fs, expected %d" % (
        "SHARDNUMSUB" if sharded else "NUMSUB", channel, got[0], timeout, n)


def end_marker(pub, ch, streams, wss=(), sses=()):
    """Publish a last marker and wait until every subscriber has it: anything
    delivered twice would show before it."""
    m = "end-marker"
    pub.items({"channel": ch, "formats": {"http-stream": {"content": sse_event(m, "probe")},
                                          "ws-message": {"content": m}}})
    ok = wait_until(lambda: (all(s.body().endswith(sse_event(m, "probe").encode()) for s in streams)
                             and all(w.has(lambda x: x == m) for w in wss)
                             and all(any(e.data == m for e in r.events) for r in sses)), 5.0)
    assert ok, "the end marker did not reach every subscriber"
    time.sleep(0.2)  # nothing more may follow it
    return m


# -- delivery ---------------------------------------------------------------------


@cluster_case
@pytest.mark.websocket
def test_cluster_publish_on_a_reaches_every_kind_on_b_and_c_once(env, backend, uid, cluster):
    """One publish (one item, three formats, gripcontrol) to instance A reaches
    the stream, long-poll, SSE and WebSocket-over-HTTP subscribers held on B
    and C, and a stream on A itself, each exactly once."""
    c = cluster("kinds")
    A, B, C = c
    ch = "k-" + uid
    p = "/%s/" % uid
    backend.on(p + "lp", grip_hold("response", ch, body="timed out\n", timeout=20,
                                   headers=[("Content-Type", "text/plain")]))
    backend.on(p + "sse", grip_hold("stream", ch, headers=SSE_HEADERS))
    backend.on("/ws/%s/" % uid, echo_handler(subscribe=ch))
    # long-polls first: the channel is new on B and C, so their re-check runs
    lps = {x.label: raw_long_poll(x.port, p + "lp?on=" + x.label, timeout=25) for x in (B, C)}
    streams = held_streams(cluster, backend, (A, B, C), p + "st", ch)
    sses = [cluster.closing(SSEReader(x.url(p + "sse?on=" + x.label))) for x in (B, C)]
    wss = [cluster.closing(WSCollector(x.port, "/ws/%s/%s" % (uid, x.label))) for x in (B, C)]
    sync = all_subscribed(A.pub, ch, streams, sses, wss)
    for x in (B, C):
        wait_recheck(backend, p + "lp?on=" + x.label)
        assert not lps[x.label].done(), "the long-poll on %s finished early: %r" % (
            x.label, lps[x.label].result(0))
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 3)

    g = GripPubControl({"control_uri": A.publish_base})
    try:
        g.publish(ch, Item([HttpStreamFormat(sse_event("hello " + uid)),
                            HttpResponseFormat(body="hello %s\n" % uid, headers={"Content-Type": "text/plain"}),
                            WebSocketMessageFormat("hello " + uid)]), blocking=True)
    finally:
        g.close()

    for label, lp in lps.items():
        r = lp.result(5)
        assert (r.status, r.body) == (200, ("hello %s\n" % uid).encode()), "long-poll on %s: %r" % (label, r)
    m = end_marker(A.pub, ch, streams, wss, sses)
    for x, s, off in zip((A, B, C), streams, sync["offsets"]):
        assert s.body()[off:] == (sse_event("hello " + uid) + sse_event(m, "probe")).encode(), \
            "stream on %s: %r" % (x.label, s.body()[off:])
    for x, r in zip((B, C), sses):
        assert sse_after(r, sync["marker"]) == [("message", "hello " + uid), ("probe", m)], \
            "SSE on %s: %r" % (x.label, sse_after(r, sync["marker"]))
    for x, w in zip((B, C), wss):
        assert w.after(sync["marker"]) == ["hello " + uid, m], "WebSocket on %s: %r" % (
            x.label, w.after(sync["marker"]))


@cluster_case
def test_cluster_prev_id_order_holds_across_instances(env, backend, uid, cluster):
    """prev-id chains published through three different instances (and a custom
    backplane_prefix, the backplane URL given in the config file): every
    instance holds the early item until its predecessor came through Redis and
    delivers 1, 2, 3, 4."""
    prefix = "gpx-test/"
    c = cluster("previd", backplane_in_config=True, conf={"gripproxy": {"backplane_prefix": prefix}})
    A, B, C = c
    ch = "o-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    offs = all_subscribed(A.pub, ch, streams)["offsets"]
    wait_numsub(c.redis, prefix + ch, 3)
    assert c.redis.numsub(DEFAULT_PREFIX + ch) == 0

    def body(i):
        return streams[i].body()[offs[i]:]

    A.pub.items(stream_item(ch, "1\n", id="1"))
    assert wait_until(lambda: all(body(i) == b"1\n" for i in range(3)), 5), [body(i) for i in range(3)]
    A.pub.items(stream_item(ch, "4\n", id="4", **{"prev-id": "3"}))
    C.pub.items(stream_item(ch, "3\n", id="3", **{"prev-id": "2"}))
    time.sleep(0.5)
    assert [body(i) for i in range(3)] == [b"1\n"] * 3, "released before their predecessor"
    B.pub.items(stream_item(ch, "2\n", id="2", **{"prev-id": "1"}))
    assert wait_until(lambda: all(body(i) == b"1\n2\n3\n4\n" for i in range(3)), 5), \
        [body(i) for i in range(3)]
    time.sleep(0.3)
    assert [body(i) for i in range(3)] == [b"1\n2\n3\n4\n"] * 3


@cluster_case
def test_cluster_item_with_id_posted_to_two_instances_delivered_once(env, backend, uid, cluster):
    """The same item (same id) posted to A and to B, one after the other and
    then at the same time: each instance's subscribers get it once."""
    c = cluster("dedupe")
    A, B, C = c
    ch = "d-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    offs = all_subscribed(C.pub, ch, streams)["offsets"]
    A.pub.items(stream_item(ch, "first\n", id="one"))
    B.pub.items(stream_item(ch, "first\n", id="one"))
    errors = []

    def post(x):
        try:
            x.pub.items(stream_item(ch, "second\n", id="two"))
        except BaseException as e:
            errors.append(e)
    ts = [threading.Thread(target=post, args=(x,)) for x in (A, B)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(10)
    assert not errors, errors
    m = end_marker(C.pub, ch, streams)
    for x, s, off in zip((A, B, C), streams, offs):
        assert s.body()[off:] == ("first\nsecond\n" + sse_event(m, "probe")).encode(), \
            "stream on %s: %r" % (x.label, s.body()[off:])


@cluster_case
def test_cluster_flood_of_large_items_does_not_overflow_redis_subscriber_buffer(env, backend, uid, cluster):
    """Redis drops a subscriber whose unread output passes its
    `client-output-buffer-limit pubsub` (here 4 MB hard, 2 MB for 60 s). 150
    items of 200 KB (30 MB) posted by 8 publishers at once to A: every
    instance reads Redis's messages as they come, so neither subscriber is
    dropped (no reconnect, nothing in Redis's log) and each stream gets every
    item, in one order."""
    c = cluster("flood", n=2, redis_args=["--client-output-buffer-limit", "pubsub 4mb 2mb 60"],
                conf={"gripproxy": {"client_write_buffer_max": "100000000"}})
    A, B = c
    ch = "fl-" + uid
    streams = held_streams(cluster, backend, (A, B), "/%s/st" % uid, ch)
    offs = all_subscribed(A.pub, ch, streams)["offsets"]
    filler = "x" * 200_000
    errors = []

    def post(k):
        pub = Publisher(A.publish_base)
        try:
            for i in range(k, 150, 8):
                r = pub.post({"items": [stream_item(ch, "item %d %s\n" % (i, filler))]})
                if r.status_code != 200:
                    errors.append((i, r.status_code, r.text[:200]))
        except BaseException as e:
            errors.append(e)
        finally:
            pub.close()
    ts = [threading.Thread(target=post, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors, errors[:5]
    for x, s, off in zip((A, B), streams, offs):
        assert wait_until(lambda: s.body()[off:].count(b"\n") >= 150, 60), "instance %s: %d of 150 items" % (
            x.label, s.body()[off:].count(b"\n"))
    orders = []
    for s, off in zip(streams, offs):
        lines = s.body()[off:].split(b"\n")[:-1]
        assert len(lines) == 150 and all(len(line) > 200_000 for line in lines)
        orders.append([int(line.split(b" ")[1]) for line in lines])
    assert sorted(orders[0]) == list(range(150))
    assert orders[0] == orders[1], "the two instances delivered in different orders"
    with open(c.redis.log_path, "rb") as f:
        assert b"output buffer limits" not in f.read(), "Redis dropped a subscriber for its output buffer"
    for x in c:
        assert x.metric("backplane_reconnects") == 0, "instance %s reconnected" % x.label


@cluster_case
def test_cluster_metrics_count_backplane_traffic(env, backend, uid, cluster):
    """backplane_connected 1 everywhere; three items published on A: A's
    backplane_messages_out +3, B's (the only subscriber) backplane_messages_in
    +3, C's +0; no reconnects."""
    c = cluster("metrics")
    A, B, C = c
    ch = "m-" + uid
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    off = all_subscribed(A.pub, ch, [s])["offsets"][0]
    before = [x.metrics() for x in c]
    for n in range(3):
        A.pub.items(stream_item(ch, "%d\n" % n))
    assert s.wait_for("0\n1\n2\n", 5, start=off)
    time.sleep(0.3)
    after = [x.metrics() for x in c]

    def delta(i, name):
        assert name in after[i], "instance %s has no metric %s: %s" % (
            "ABC"[i], name, sorted(k for k in after[i] if "backplane" in k))
        return after[i][name] - before[i].get(name, 0)
    assert [after[i].get("backplane_connected") for i in range(3)] == [1, 1, 1]
    assert delta(0, "backplane_messages_out") == 3
    assert delta(1, "backplane_messages_out") == 0
    assert delta(1, "backplane_messages_in") == 3
    assert delta(2, "backplane_messages_in") == 0
    assert delta(0, "backplane_messages_in") == 0
    assert [after[i].get("backplane_reconnects") for i in range(3)] == [0, 0, 0]


# -- subscriptions follow local interest -------------------------------------------


@cluster_case
def test_cluster_redis_subscription_follows_local_stream_subscribers(env, backend, uid, cluster):
    """Only instances holding a subscriber are subscribed in Redis (PUBSUB
    NUMSUB): none at first, not the publishing instance, one per instance with
    a stream; after the last stream on an instance leaves, it unsubscribes."""
    c = cluster("interest")
    A, B, C = c
    ch = "i-" + uid
    rch = DEFAULT_PREFIX + ch
    assert c.redis.numsub(rch) == 0
    A.pub.items(stream_item(ch, "nobody listens\n"))
    (sb,) = held_streams(cluster, backend, (B,), "/%s/b" % uid, ch)
    all_subscribed(A.pub, ch, [sb])
    wait_numsub(c.redis, rch, 1)
    assert c.redis.channels(DEFAULT_PREFIX + "*") == [rch]
    assert len(c.redis.subscriber_clients()) == 1, c.redis.subscriber_clients()
    # a second stream on the same instance: still one subscription
    (sb2,) = held_streams(cluster, backend, (B,), "/%s/b2" % uid, ch)
    (sc,) = held_streams(cluster, backend, (C,), "/%s/c" % uid, ch)
    all_subscribed(A.pub, ch, [sb2, sc])
    wait_numsub(c.redis, rch, 2)
    assert len(c.redis.subscriber_clients()) == 2, c.redis.subscriber_clients()
    hang_up(sb)
    time.sleep(1.0)
    assert c.redis.numsub(rch) == 2, "B unsubscribed while it still had a stream on the channel"
    hang_up(sb2)
    wait_numsub(c.redis, rch, 1)
    A.pub.items(stream_item(ch, "after\n"))
    assert sc.wait_for("after\n", 5), "C lost the channel when B unsubscribed"
    hang_up(sc)
    wait_numsub(c.redis, rch, 0)
    assert c.redis.channels(DEFAULT_PREFIX + "*") == []
    r = A.pub.post({"items": [stream_item(ch, "nobody again\n")]})
    assert r.status_code == 200, r.text


@cluster_case
@pytest.mark.websocket
def test_cluster_redis_subscription_follows_websocket_subscriptions(env, backend, uid, cluster):
    """A WebSocket-over-HTTP connection subscribed by a control message is local
    interest: its instance alone subscribes in Redis; a control-message
    unsubscribe (the WebSocket still open) unsubscribes it in Redis."""
    c = cluster("wsinterest")
    A, B, C = c
    ch = "w-" + uid
    rch = DEFAULT_PREFIX + ch

    def fn(ctx, req):
        if ctx.is_opening():
            ctx.accept()
            ctx.subscribe(ch)
        while ctx.can_recv():
            m = ctx.recv()
            if m == "leave":
                ctx.unsubscribe(ch)
                ctx.send("left")
            elif m is None:
                break
    backend.on("/ws/%s/" % uid, lambda_handler(fn))
    w = cluster.closing(WSCollector(C.port, "/ws/%s/c" % uid))
    all_subscribed(A.pub, ch, wss=[w])
    wait_numsub(c.redis, rch, 1)
    w.ws.send("leave")
    assert w.wait(lambda ms: "left" in ms, 5), w.messages
    wait_numsub(c.redis, rch, 0)
    assert not w.closed


@cluster_case
def test_cluster_long_poll_channel_unsubscribed_after_linger(env, backend, uid, cluster):
    """A long-poll's channel stays subscribed in Redis for subscription_linger
    (3 s here) after the long-poll completed, then is unsubscribed."""
    c = cluster("linger", conf={"handler": {"subscription_linger": "3"}})
    A, B, C = c
    ch = "l-" + uid
    rch = DEFAULT_PREFIX + ch
    path = "/%s/lp" % uid
    backend.on(path, grip_hold("response", ch, body="timed out\n", timeout=20))
    lp = raw_long_poll(B.port, path, timeout=20)
    wait_numsub(c.redis, rch, 1)
    publish_until(lp.done, lambda: A.pub.response(ch, "answer\n"), timeout=8, interval=0.5)
    assert lp.result(2).body == b"answer\n"
    t0 = time.monotonic()
    time.sleep(1.0)
    assert c.redis.numsub(rch) == 1, "unsubscribed before subscription_linger (3 s)"
    wait_numsub(c.redis, rch, 0, timeout=6.0)
    took = time.monotonic() - t0
    assert took >= 2.0, "unsubscribed %.1f s after the long-poll completed (linger 3 s)" % took


# -- faults -------------------------------------------------------------------------


def post_status(x, ch, content="x\n"):
    try:
        r = x.pub.post({"items": [stream_item(ch, content)]})
    except httpx.HTTPError as e:
        return None, repr(e), ""
    return r.status_code, r.text, r.headers.get("Content-Type", "")


def assert_503_backplane(x, ch):
    got = [None]

    def is503():
        got[0] = post_status(x, ch)
        return got[0][0] == 503
    assert wait_until(is503, 5.0, 0.1), "instance %s: publish answered %r, not 503, with Redis down" % (
        x.label, got[0])
    status, text, ctype = got[0]
    assert text.startswith("Service Unavailable"), "503 body on %s: %r" % (x.label, text)
    assert "backplane" in text.lower(), "the 503 body on %s does not name the backplane: %r" % (x.label, text)
    assert ctype.startswith("text/"), "503 Content-Type on %s: %r" % (x.label, ctype)


def deliveries_resume(pub, ch, streams, timeout):
    """Publish numbered items (a 503 is retried) until every stream has one;
    returns (seconds until the first 200, seconds until every stream had one)."""
    t0 = time.monotonic()
    first_ok = None
    n = 0
    accepted = []
    tag = "resumed-%d-" % int(t0 * 1000)
    while True:
        n += 1
        try:
            r = pub.post({"items": [stream_item(ch, "%s%d\n" % (tag, n))]})
            if r.status_code == 200:
                accepted.append(n)
                if first_ok is None:
                    first_ok = time.monotonic() - t0
            elif r.status_code != 503:
                raise AssertionError("publish answered %d %r while Redis came back" % (r.status_code, r.text))
        except httpx.HTTPError:
            pass
        if wait_until(lambda: all(tag.encode() in s.body() for s in streams), 0.2):
            # For the record (pub/sub is at-most-once): items answered 200 that some
            # instance missed while it was subscribing again.
            missed = [[k for k in accepted if ("%s%d\n" % (tag, k)).encode() not in s.body()] for s in streams]
            print("accepted %s; missed per stream: %s" % (accepted, missed))
            return first_ok, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("deliveries did not resume within %.0f s (first 200 after %s s); got: %r"
                                 % (timeout, first_ok, [tag.encode() in s.body() for s in streams]))


@cluster_case
def test_cluster_redis_restart_503_meanwhile_then_resume_within_5s(env, backend, uid, cluster):
    """redis-server SIGKILLed and kept down 3 s: every instance's publish API
    answers 503 naming the backplane, held streams stay open; redis-server
    restarted on the same port: within 5 s a publish reaches every instance
    again, no proxy restarted; backplane_reconnects counted."""
    c = cluster("restart")
    A, B, C = c
    ch = "r-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    all_subscribed(A.pub, ch, streams)
    c.redis.kill()
    for x in c:
        assert_503_backplane(x, ch)
    assert wait_until(lambda: all(x.metric("backplane_connected") == 0 for x in c), 5), \
        [x.metric("backplane_connected") for x in c]
    # down long enough for the reconnect back-off to reach its cap (2 s)
    time.sleep(3.0)
    assert not any(s.ended or s.error for s in streams), "a held stream ended when Redis went away"
    for x in c:
        status, text, _ = post_status(x, ch)
        assert status == 503, "instance %s after 3 s without Redis: %r %r" % (x.label, status, text)
    c.redis.start()
    first_ok, took = deliveries_resume(A.pub, ch, streams, 5.0)
    print("first 200 after %.2f s, every instance delivering after %.2f s" % (first_ok or -1, took))
    assert all(x.alive() for x in c)
    # steady state again: every instance publishes to every instance
    for x in c:
        offs = [len(s.body()) for s in streams]
        x.pub.items(stream_item(ch, "from %s\n" % x.label))
        for y, s, off in zip(c, streams, offs):
            assert s.wait_for("from %s\n" % x.label, 5, start=off), "%s -> %s after the restart" % (
                x.label, y.label)
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 3)
    for x in c:
        assert x.metric("backplane_connected") == 1
        assert x.metric("backplane_reconnects") >= 1, "instance %s: backplane_reconnects %r" % (
            x.label, x.metric("backplane_reconnects"))


@cluster_case
def test_cluster_redis_paused_publish_503_after_backplane_timeout_then_resume(env, backend, uid, cluster):
    """redis-server paused (SIGSTOP): it keeps every TCP connection but answers
    nothing. With backplane_timeout=1 a publish answers 503 naming the
    backplane within a few seconds (it does not hang), and every instance's
    PING goes unanswered, so backplane_connected drops to 0 even on instances
    nobody publishes to. Resumed (SIGCONT): deliveries reach every instance
    again, no proxy restarted."""
    c = cluster("paused", conf={"gripproxy": {"backplane_timeout": "1"}})
    A, B, C = c
    ch = "p-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    all_subscribed(A.pub, ch, streams)
    c.redis.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        status, text, _ = post_status(A, ch)
        took = time.monotonic() - t0
        assert status == 503, "publish to a paused Redis answered %r %r after %.1f s" % (status, text, took)
        assert "backplane" in text.lower() and "reply" in text.lower(), text
        assert 0.8 <= took <= 4.0, "the 503 came after %.2f s, backplane_timeout is 1 s" % took
        assert wait_until(lambda: all(x.metric("backplane_connected") == 0 for x in c), 5), \
            [x.metric("backplane_connected") for x in c]
        for x in c:
            assert_503_backplane(x, ch)
        assert not any(s.ended or s.error for s in streams), "a held stream ended while Redis was paused"
    finally:
        c.redis.proc.send_signal(signal.SIGCONT)
    first_ok, took = deliveries_resume(B.pub, ch, streams, 10.0)
    print("resumed: first 200 after %.2f s, every instance delivering after %.2f s" % (first_ok or -1, took))
    assert all(x.alive() for x in c)
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 3)
    for x in c:
        assert x.metric("backplane_connected") == 1
        assert x.metric("backplane_reconnects") >= 1


@cluster_case
def test_cluster_redis_connections_killed_instances_reconnect(env, backend, uid, cluster):
    """Redis closes every instance's subscriber connection (CLIENT KILL TYPE
    pubsub), then every publishing connection (TYPE normal): each time every
    instance reconnects and re-subscribes, and deliveries resume within 5 s."""
    c = cluster("clientkill")
    A, B, C = c
    ch = "ck-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    all_subscribed(A.pub, ch, streams)
    for kind in ("pubsub", "normal"):
        killed = c.redis.command("CLIENT", "KILL", "TYPE", kind)
        assert killed >= 3, "CLIENT KILL TYPE %s closed %r connections" % (kind, killed)
        first_ok, took = deliveries_resume(B.pub, ch, streams, 5.0)
        print("after CLIENT KILL TYPE %s: first 200 after %.2f s, every instance delivering after %.2f s"
              % (kind, first_ok or -1, took))
        wait_numsub(c.redis, DEFAULT_PREFIX + ch, 3)
    for x in c:
        assert x.metric("backplane_connected") == 1
        assert x.metric("backplane_reconnects") >= 2, "instance %s: backplane_reconnects %r" % (
            x.label, x.metric("backplane_reconnects"))


@cluster_case
def test_cluster_redis_auth_and_db_in_url(env, backend, uid, cluster):
    """redis-server with requirepass: instances with the password in the URL
    (user:pass@, /db) connect and deliver; one with a wrong password starts,
    answers 503 and says why in its log."""
    pw = "s3cret-" + uid[-8:]
    c = cluster("auth", start=False, redis_password=pw,
                userinfo=["default:%s@" % pw, "default:%s@" % pw, "default:wrong-%s@" % pw],
                url_query=["/2", "", ""])
    c.start(wait_connected=False)
    A, B, C = c
    A.wait_publish_ok()
    B.wait_publish_ok()
    ch = "a-" + uid
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    all_subscribed(A.pub, ch, [s])
    assert_503_backplane(C, ch)
    assert C.metric("backplane_connected") == 0
    assert wait_until(lambda: any(w in C.log_tail(200).lower() for w in ("wrongpass", "auth", "password")), 5), \
        "instance C's log does not say why it cannot connect"


@cluster_case
def test_cluster_redis_auth_password_only_url(env, backend, uid, cluster):
    """redis://:password@host:port (no user name, the usual form for
    requirepass) connects and delivers."""
    pw = "pw-" + uid[-8:]
    c = cluster("authpw", redis_password=pw, userinfo=":%s@" % pw, n=2)
    A, B = c
    ch = "p-" + uid
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    all_subscribed(A.pub, ch, [s])


@cluster_case
def test_cluster_redis_down_at_start_instances_start_and_connect_later(env, backend, uid, cluster):
    """No Redis when the instances start: they serve clients, the publish API
    answers 503; a stream held meanwhile on B gets deliveries within 5 s of
    redis-server starting."""
    c = cluster("late", start_redis=False, wait_connected=False)
    A, B, C = c
    ch = "s-" + uid
    for x in c:
        assert_503_backplane(x, ch)
        assert x.metric("backplane_connected") == 0
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    assert s.status == 200
    c.redis.start()
    first_ok, took = deliveries_resume(A.pub, ch, [s], 5.0)
    print("first 200 after %.2f s, delivering after %.2f s" % (first_ok or -1, took))
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 1)


@cluster_case
def test_cluster_instance_sigkilled_others_carry_on(env, backend, uid, cluster):
    """Instance B SIGKILLed: its client connections drop, Redis forgets its
    subscription, and A and C keep publishing to each other, each delivery
    once; a new subscription on C works."""
    c = cluster("sigkill")
    A, B, C = c
    ch = "x-" + uid
    streams = held_streams(cluster, backend, (A, B, C), "/%s/st" % uid, ch)
    offs = all_subscribed(A.pub, ch, streams)["offsets"]
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 3)
    B.kill9()
    assert streams[1].wait_end(5), "B's client connection stayed open"
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 2)
    A.pub.items(stream_item(ch, "from A\n"))
    C.pub.items(stream_item(ch, "from C\n"))
    m = end_marker(A.pub, ch, [streams[0], streams[2]])
    for x, i in ((A, 0), (C, 2)):
        assert streams[i].body()[offs[i]:] == ("from A\nfrom C\n" + sse_event(m, "probe")).encode(), \
            "stream on %s: %r" % (x.label, streams[i].body()[offs[i]:])
    ch2 = "x2-" + uid
    (s2,) = held_streams(cluster, backend, (C,), "/%s/st2" % uid, ch2)
    all_subscribed(A.pub, ch2, [s2])
    assert A.alive() and C.alive()


# -- what travels through Redis ---------------------------------------------------------


@cluster_case
def test_cluster_one_redis_message_per_item_versioned_json(env, backend, uid, cluster):
    """A batch of two items is two Redis messages on prefix + channel, each the
    byte '1' then the item's publish JSON (README, "Several instances")."""
    c = cluster("wire", n=2)
    A, B = c
    ch = "wire-" + uid
    watcher = cluster.closing(RedisSubscriber(c.redis.port, [DEFAULT_PREFIX + ch]))
    A.pub.items(stream_item(ch, "one\n", id="w1"),
                {"channel": ch, "formats": {"http-response": {"body": "two\n", "code": 201},
                                            "ws-message": {"content": "two"}}, "meta": {"k": "v"}})
    assert watcher.wait_count(2, 5), watcher.messages
    time.sleep(0.2)
    assert len(watcher.messages) == 2, watcher.messages
    items = []
    for rch, payload in watcher.messages:
        assert rch == DEFAULT_PREFIX + ch
        assert payload[:1] == b"1", payload[:50]
        items.append(json.loads(payload[1:]))
    assert items[0]["channel"] == ch and items[0]["id"] == "w1"
    assert items[0]["formats"]["http-stream"]["content"] == "one\n"
    assert items[1]["formats"]["http-response"]["body"] == "two\n"
    assert items[1]["formats"]["http-response"]["code"] == 201
    assert items[1]["formats"]["ws-message"]["content"] == "two"
    assert items[1]["meta"] == {"k": "v"}


@cluster_case
def test_cluster_foreign_redis_messages_valid_delivered_invalid_dropped(env, backend, uid, cluster):
    """Something else PUBLISHes on a cluster channel: a message in the
    documented format ('1' + item JSON) is delivered like any publish;
    garbage, an unknown version and an item naming another channel are
    dropped and counted (backplane_messages_invalid), and the instance goes
    on."""
    c = cluster("foreign", n=2)
    A, B = c
    ch = "f-" + uid
    rch = DEFAULT_PREFIX + ch
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    off = all_subscribed(A.pub, ch, [s])["offsets"][0]
    before = B.metric("backplane_messages_invalid") or 0
    good = b"1" + json.dumps(stream_item(ch, "from outside\n")).encode()
    for bad in (b"hello", b"1{not json", b"2" + good[1:], b"1" + json.dumps(stream_item("other-" + uid, "x\n")).encode(),
                b"1"):
        assert c.redis.command("PUBLISH", rch, bad) == 1
    assert c.redis.command("PUBLISH", rch, good) == 1
    assert s.wait_for("from outside\n", 5, start=off), s.body()[off:]
    A.pub.items(stream_item(ch, "still fine\n"))
    assert s.wait_for("still fine\n", 5, start=off)
    assert s.body()[off:] == b"from outside\nstill fine\n"
    assert wait_until(lambda: (B.metric("backplane_messages_invalid") or 0) - before == 5, 3), \
        B.metric("backplane_messages_invalid")
    assert B.alive()


@cluster_case
@pytest.mark.websocket
def test_cluster_formats_survive_redis_round_trip(env, backend, uid, cluster):
    """What an item carries arrives intact on another instance: a long-poll's
    code, reason, headers and binary body; a stream's binary and escaped text
    content; a binary WebSocket message; and action close ending a stream."""
    c = cluster("formats")
    A, B, C = c
    ch = "fmt-" + uid
    p = "/%s/" % uid
    blob = bytes(range(256))
    backend.on(p + "lp", grip_hold("response", ch, body="timed out\n", timeout=20))
    lp = raw_long_poll(B.port, p + "lp", timeout=25)
    (s,) = held_streams(cluster, backend, (C,), p + "st", ch)
    backend.on("/ws/%s/" % uid, echo_handler(subscribe=ch))
    w = cluster.closing(WSCollector(B.port, "/ws/%s/b" % uid))
    off = all_subscribed(A.pub, ch, [s], wss=[w])["offsets"][0]
    wait_recheck(backend, p + "lp")
    wait_numsub(c.redis, DEFAULT_PREFIX + ch, 2)
    text = 'quote " backslash \\ tab \t ctl \u0001 é ☃ 😀\n'
    A.pub.items({"channel": ch, "formats": {
        "http-response": {"code": 203, "reason": "Partly There", "headers": {"X-Cluster": "yes"},
                          "body-bin": base64.b64encode(blob).decode()},
        "http-stream": {"content-bin": base64.b64encode(blob).decode()},
        "ws-message": {"content-bin": base64.b64encode(blob).decode()}}})
    A.pub.items(stream_item(ch, text))
    r = lp.result(5)
    assert (r.status, r.body) == (203, blob), (r.status, r.body[:40])
    assert r.header("X-Cluster") == "yes"
    assert s.wait_for(text.encode(), 5, start=off)
    assert s.body()[off:] == blob + text.encode()
    assert w.wait(lambda ms: blob in ms, 5), w.messages[-3:]
    A.pub.items({"channel": ch, "formats": {"http-stream": {"action": "close"}}})
    assert s.wait_end(5), "action close did not end the stream on C"
    assert s.body()[off:] == blob + text.encode()


# -- limits ---------------------------------------------------------------------------


@cluster_case
def test_cluster_item_over_backplane_max_item_413_nothing_published(env, backend, uid, cluster):
    """backplane_max_item=2000: an item of 5,000 bytes gets 413 with a text
    body; a batch of a small item and that one gets 413 too; neither reaches
    Redis (a test subscriber there) nor any subscriber; a small item then
    passes."""
    c = cluster("maxitem", conf={"gripproxy": {"backplane_max_item": "2000"}})
    A, B, C = c
    ch = "big-" + uid
    (s,) = held_streams(cluster, backend, (B,), "/%s/st" % uid, ch)
    off = all_subscribed(A.pub, ch, [s])["offsets"][0]
    watcher = cluster.closing(RedisSubscriber(c.redis.port, [DEFAULT_PREFIX + ch]))
    big = stream_item(ch, "B" * 5000 + "\n")
    small = stream_item(ch, "small\n")
    for body in ({"items": [big]}, {"items": [small, big]}):
        r = A.pub.post(body)
        assert r.status_code == 413, (r.status_code, r.text[:200])
        assert r.text.strip(), "413 without a body"
        assert r.headers.get("Content-Type", "").startswith("text/"), r.headers.get("Content-Type")
    A.pub.items(stream_item(ch, "after\n"))
    assert s.wait_for("after\n", 5, start=off)
    time.sleep(0.2)
    assert s.body()[off:] == b"after\n", s.body()[off:][:300]
    assert watcher.wait_count(1, 2)
    assert len(watcher.messages) == 1, [m[1][:100] for m in watcher.messages]
    assert b"after" in watcher.messages[0][1]


# -- sharded pub/sub ------------------------------------------------------------------


@cluster_case
def test_cluster_sharded_pubsub_delivers(env, backend, uid, cluster):
    """?sharded=1 (SSUBSCRIBE/SPUBLISH) against a single Redis 7: a publish to
    A reaches streams on B and C once; the instances hold shard-channel
    subscriptions (PUBSUB SHARDNUMSUB), not classic ones, and drop them when
    their streams leave."""
    c = cluster("sharded", url_query="?sharded=1")
    A, B, C = c
    ch = "h-" + uid
    rch = DEFAULT_PREFIX + ch
    streams = held_streams(cluster, backend, (B, C), "/%s/st" % uid, ch)
    offs = all_subscribed(A.pub, ch, streams)["offsets"]
    wait_numsub(c.redis, rch, 2, sharded=True)
    assert c.redis.numsub(rch) == 0
    assert c.redis.shardchannels(DEFAULT_PREFIX + "*") == [rch]
    A.pub.items(stream_item(ch, "sharded hello\n"))
    m = end_marker(A.pub, ch, streams)
    for x, s, off in zip((B, C), streams, offs):
        assert s.body()[off:] == ("sharded hello\n" + sse_event(m, "probe")).encode(), \
            "stream on %s: %r" % (x.label, s.body()[off:])
    hang_up(streams[0])
    wait_numsub(c.redis, rch, 1, sharded=True)


# -- shared-nothing -------------------------------------------------------------------


@cluster_case
def test_shared_nothing_grippubcontrol_with_three_control_uris(env, backend, uid, cluster):
    """No backplane: three independent instances, and gripcontrol's
    GripPubControl configured with the three publish URLs. Each instance's
    subscriber gets the item once."""
    c = cluster("nothing", backplane=False)
    ch = "n-" + uid
    streams = held_streams(cluster, backend, list(c), "/%s/st" % uid, ch)
    offs = [all_subscribed(x.pub, ch, [s])["offsets"][0] for x, s in zip(c, streams)]
    g = GripPubControl([{"control_uri": x.publish_base} for x in c])
    try:
        g.publish_http_stream(ch, "to all three\n", blocking=True)
    finally:
        g.close()
    for x, s, off in zip(c, streams, offs):
        assert s.wait_for("to all three\n", 5, start=off), "instance %s: %r" % (x.label, s.body()[off:])
    time.sleep(0.3)
    for x, s, off in zip(c, streams, offs):
        assert s.body()[off:] == b"to all three\n", "instance %s: %r" % (x.label, s.body()[off:])


@cluster_case
def test_shared_nothing_publish_cli_with_three_specs(env, backend, uid, cluster):
    """No backplane: `gripproxy publish --spec URL1 --spec URL2 --spec URL3`
    publishes to all three instances; each subscriber gets the item once."""
    c = cluster("nothing-cli", backplane=False)
    ch = "n-" + uid
    streams = held_streams(cluster, backend, list(c), "/%s/st" % uid, ch)
    offs = [all_subscribed(x.pub, ch, [s])["offsets"][0] for x, s in zip(c, streams)]
    cmd = [gripproxy_bin(), "publish"]
    for x in c:
        cmd += ["--spec", x.publish_base]
    cmd += [ch, "from the command line"]
    p = subprocess.run(cmd, capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "exit %d; stdout %r; stderr %r" % (p.returncode, p.stdout, p.stderr)
    got = lambda: all(s.wait_for("from the command line\n", 0, start=o) for s, o in zip(streams, offs))  # noqa: E731
    wait_until(got, 5)
    time.sleep(0.3)
    bodies = {x.label: s.body()[o:] for x, s, o in zip(c, streams, offs)}
    assert bodies == {x.label: b"from the command line\n" for x in c}, bodies

"""Behaviours that need their own, short-lived target instance (harness/extra.py,
on the worker's aux ports): graceful shutdown on SIGTERM, `client_maxconn`
(decisions D16) and a raised `client_buffer_size` (decisions C6)."""

import contextlib
import signal
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from harness.backend import Resp, grip_hold
from harness.client import (Publisher, RawConn, StreamCollector, ensure_stream_subscribed, raw_long_poll,
                            raw_request, wait_recheck, wait_until)
from harness.extra import aux_routes
from harness.ws import echo_handler, ws_subscribed


def ok_handler(backend, path, body=b"ok\n"):
    backend.on(path, Resp(200, headers=[("Content-Type", "text/plain")], body=body))


# -- graceful shutdown ----------------------------------------------------------


def held_pair(env, backend, prefix, uid, target, tpub):
    """A held long-poll (answered by its held response on timeout) and a held
    stream on the instance, both subscribed."""
    lp_ch = "lp-" + uid
    backend.on(prefix + "lp", grip_hold("response", lp_ch, body="held response\n", timeout=30,
                                       headers=[("Content-Type", "text/plain")]))
    s = held_stream(backend, prefix, uid, target, tpub)
    lp = raw_long_poll(target.port, prefix + "lp", timeout=30)
    wait_recheck(backend, prefix + "lp")
    assert not lp.done()
    return lp, s


def held_stream(backend, prefix, uid, target, tpub, attempts=2):
    """A held stream on the instance, subscribed. A freshly started Pushpin has
    once (CI, 4 workers busy) held a stream that no publish reached for 10 s:
    such a stream is closed and a new one held on a fresh channel, and the
    failure reports what the client saw and the instance's log."""
    for attempt in range(1, attempts + 1):
        st_ch = "st-%s-%d" % (uid, attempt)
        backend.on(prefix + "st%d" % attempt, grip_hold("stream", st_ch, body="start\n"))
        s = StreamCollector(target.port, prefix + "st%d" % attempt)
        try:
            ensure_stream_subscribed(s, tpub, st_ch)
            return s
        except AssertionError as e:
            s.close()
            if attempt == attempts:
                raise AssertionError("%s; stream body %r; %s log:\n%s"
                                     % (e, s.body()[:200], target.name, target.log_tail())) from None
    raise AssertionError("unreachable")


def sigterm_and_wait(target, bound=10):
    t0 = time.monotonic()
    target.proc.send_signal(signal.SIGTERM)
    try:
        code = target.proc.wait(timeout=bound)
    except Exception:
        pytest.fail("still running %ds after SIGTERM" % bound)
    return code, time.monotonic() - t0


def test_sigterm_with_held_requests_exits_promptly(env, backend, prefix, uid, aux):
    """SIGTERM with a long-poll and a stream held: the process exits within a
    few seconds and both client connections are finished (none left hanging)."""
    target = aux("sigterm", aux_routes(env))
    tpub = Publisher(target.publish_base)
    lp, s = held_pair(env, backend, prefix, uid, target, tpub)
    try:
        code, took = sigterm_and_wait(target)
        assert took < 5, "exited %.1fs after SIGTERM" % took
        assert s.wait_end(5), "the stream connection was left open"
        assert lp.done() or wait_until(lp.done, 5), "the long-poll connection was left open"
    finally:
        s.close()
        tpub.close()


@pytest.mark.beyond_reference
def test_sigterm_long_poll_gets_held_response_stream_ends_cleanly(env, backend, prefix, uid, aux):
    """Graceful shutdown (README): a held long-poll gets its held (timeout)
    response and a held stream ends with its final chunk. Pushpin 1.36 just
    closes both connections."""
    target = aux("sigterm-graceful", aux_routes(env))
    tpub = Publisher(target.publish_base)
    lp, s = held_pair(env, backend, prefix, uid, target, tpub)
    try:
        target.proc.send_signal(signal.SIGTERM)
        r = lp.result(10)
        assert (r.status, r.body) == (200, b"held response\n")
        assert s.wait_end(10), "the stream was not ended"
        assert s.error is None and s.ended and not s.closed, \
            "the stream did not end with its final chunk: %r" % (s.error,)
        code, took = sigterm_and_wait(target)
        assert took < 5
    finally:
        s.close()
        tpub.close()


@pytest.mark.beyond_reference
def test_sigterm_delivers_every_publish_already_answered(env, backend, prefix, uid, aux):
    """Decisions D7: an item accepted (answered 200) before a graceful shutdown
    starts is still delivered. Eight publishers post 40 items each to a channel
    ten streams hold, and SIGTERM follows the last 200 at once: every stream
    gets all 320 items, in each publisher's order, before it ends."""
    import threading
    target = aux("sigterm-drain", aux_routes(env))
    tpub = Publisher(target.publish_base)
    ch = "drain-" + uid
    backend.on(prefix + "st", grip_hold("stream", ch, body="start\n"))
    streams = []
    try:
        for _ in range(10):
            s = StreamCollector(target.port, prefix + "st")
            streams.append(s)
            ensure_stream_subscribed(s, tpub, ch)
        start = [len(s.body()) for s in streams]
        failures = []

        def publish(n):
            p = Publisher(target.publish_base)
            try:
                for i in range(40):
                    r = p.post({"items": [{"channel": ch, "formats": {"http-stream": {"content": "m%d-%d\n" % (n, i)}}}]})
                    if r.status_code != 200:
                        failures.append((n, i, r.status_code))
            finally:
                p.close()

        threads = [threading.Thread(target=publish, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not failures, failures
        code, took = sigterm_and_wait(target)
        assert code == 0
        for k, s in enumerate(streams):
            assert s.wait_end(10), "stream %d was not ended" % k
            lines = [l for l in s.body()[start[k]:].decode().split("\n") if l.startswith("m")]
            for n in range(8):
                got = [l for l in lines if l.startswith("m%d-" % n)]
                assert got == ["m%d-%d" % (n, i) for i in range(40)], \
                    "stream %d, publisher %d: %d of 40 items (%r ...)" % (k, n, len(got), got[:3])
    finally:
        for s in streams:
            s.close()
        tpub.close()


def test_sigterm_exit_status_zero(env, backend, aux):
    target = aux("sigterm-idle", aux_routes(env))
    target.proc.send_signal(signal.SIGTERM)
    try:
        code = target.proc.wait(timeout=10)
    except Exception:
        pytest.fail("still running 10 s after SIGTERM")
    assert code == 0, "exit status %s after SIGTERM; log:\n%s" % (code, target.log_tail())


@pytest.mark.beyond_reference
def test_sigterm_exits_within_shutdown_grace(env, backend, prefix, uid, aux):
    """`[gripproxy] shutdown_grace`: an exchange that cannot finish (its backend
    answers after 30 s) does not hold the exit past the grace; a held stream
    beside it still ends cleanly first."""
    target = aux("sigterm-grace", aux_routes(env), {"gripproxy": {"shutdown_grace": "2", "backend_timeout": "60"}})
    tpub = Publisher(target.publish_base)
    backend.on(prefix + "stuck", Resp(200, body=b"too late\n", delay=30))
    s = held_stream(backend, prefix, uid, target, tpub)
    stuck = RawConn(target.port, timeout=40)
    try:
        stuck.send(raw_request("GET", prefix + "stuck"))
        assert wait_until(lambda: any(r.path == prefix + "stuck" for r in backend.requests()), 5)
        code, took = sigterm_and_wait(target)
        assert 1.5 <= took < 5, "exited %.1fs after SIGTERM with shutdown_grace=2" % took
        assert s.wait_end(5) and s.ended, "the stream was not ended"
        assert stuck.peer_closed(5), "the stuck exchange's client connection was left open"
    finally:
        stuck.close()
        s.close()
        tpub.close()


@pytest.mark.websocket
@pytest.mark.beyond_reference
def test_sigterm_closes_websocket_1001(env, backend, uid, aux):
    """A WebSocket gets close 1001 (going away) on graceful shutdown."""
    from websockets.sync.client import connect
    ch = "ws-" + uid
    path = "/ws-sigterm/%s/" % uid
    backend.on(path, echo_handler(subscribe=ch))
    target = aux("sigterm-ws", aux_routes(env, "*,path_beg=/ws-sigterm/ 127.0.0.1:%d,over_http" % env.ports.backend))
    tpub = Publisher(target.publish_base)
    try:
        with connect("ws://127.0.0.1:%d%s" % (target.port, path), compression=None, ping_interval=None,
                     open_timeout=10, close_timeout=5) as ws:
            ws_subscribed(ws, tpub, ch)
            target.proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=10)
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
        target.proc.wait(timeout=10)
    finally:
        tpub.close()


@pytest.mark.websocket
@pytest.mark.beyond_reference
def test_sigterm_every_websocket_session_ends_at_the_backend(env, backend, uid, aux):
    """Graceful shutdown with more WebSocket-over-HTTP sessions than the backend queue holds
    (`backend_max_connections` 2, `backend_queue_max` 2): every session's last event (CLOSE or
    DISCONNECT) still reaches the backend before the process exits. Refused by a full queue they
    used to wait out a retry delay, and the backend client was gone by then."""
    from websockets.sync.client import connect
    from harness.ws import events_of
    path = "/ws-sigterm-all/%s/" % uid
    backend.on(path, echo_handler())
    target = aux("sigterm-ws-all", aux_routes(env, "*,path_beg=/ws-sigterm-all/ 127.0.0.1:%d,over_http" % env.ports.backend),
                 {"gripproxy": {"backend_max_connections": "2", "backend_queue_max": "2"}})
    with contextlib.ExitStack() as clients:
        for _ in range(12):
            clients.enter_context(connect("ws://127.0.0.1:%d%s" % (target.port, path), compression=None,
                                          ping_interval=None, open_timeout=10, close_timeout=5))
        opened = {r.header("Connection-Id") for r in backend.requests(path) if ("OPEN", None) in events_of(r)}
        assert len(opened) == 12, opened
        code, _ = sigterm_and_wait(target)
        assert code == 0
        ended = {r.header("Connection-Id") for r in backend.requests(path)
                 if any(e[0] in ("CLOSE", "DISCONNECT") for e in events_of(r))}
        assert ended == opened, "%d of 12 sessions ended at the backend; log:\n%s" % (len(ended & opened), target.log_tail())


# -- client_maxconn ---------------------------------------------------------------


def get_on(conn, path):
    conn.send(raw_request("GET", path))
    return conn.read_response(timeout=5)


@pytest.mark.beyond_reference
def test_client_maxconn_fourth_connection_503(env, backend, prefix, aux):
    """decisions D16: with client_maxconn=3, a 4th concurrent connection is
    answered 503 with Connection: close; the three others keep working."""
    ok_handler(backend, prefix)
    target = aux("maxconn", aux_routes(env), {"runner": {"client_maxconn": "3"}})
    conns = []
    try:
        # the readiness probe's connections may take a moment to be counted out
        deadline = time.monotonic() + 5
        while len(conns) < 3:
            c = RawConn(target.port, timeout=5)
            r = get_on(c, prefix + str(len(conns)))
            if r.status == 200:
                conns.append(c)
                continue
            c.close()
            assert r.status == 503 and time.monotonic() < deadline, \
                "connection %d of 3 refused (%s)" % (len(conns) + 1, r.status)
            time.sleep(0.1)
        fourth = RawConn(target.port, timeout=5)
        try:
            try:
                fourth.send(raw_request("GET", prefix + "fourth"))
            except OSError:
                pass
            r = fourth.read_response(timeout=5)
            assert r.status == 503, r
            assert "close" in (r.header("Connection") or "").lower()
            assert fourth.peer_closed(3), "the refused connection stayed open"
        finally:
            fourth.close()
        for i, c in enumerate(conns):
            r = get_on(c, prefix + "again-%d" % i)
            assert (r.status, r.body) == (200, b"ok\n")
        assert not any(r.target.endswith("fourth") for r in backend.requests(prefix))
        # a slot freed is a slot usable again
        conns.pop().close()
        deadline = time.monotonic() + 3
        while True:
            c = RawConn(target.port, timeout=5)
            try:
                r = get_on(c, prefix + "freed")
            finally:
                c.close()
            if r.status == 200:
                break
            assert time.monotonic() < deadline, "a freed connection slot was not reused"
            time.sleep(0.1)
    finally:
        for c in conns:
            c.close()
    assert target.alive()


@pytest.mark.beyond_reference
def test_client_maxconn_refused_connection_does_not_block_shutdown(env, backend, prefix, aux):
    """decisions D16: a connection refused past client_maxconn is closed by the
    proxy, so it cannot keep a later graceful shutdown waiting."""
    ok_handler(backend, prefix)
    target = aux("maxconn-stop", aux_routes(env), {"runner": {"client_maxconn": "1"}})
    first = RawConn(target.port, timeout=5)
    refused = None
    try:
        deadline = time.monotonic() + 5
        while get_on(first, prefix).status != 200:
            assert time.monotonic() < deadline, "the only connection slot never freed"
            first.close()
            time.sleep(0.1)
            first = RawConn(target.port, timeout=5)
        refused = RawConn(target.port, timeout=5)
        try:
            refused.send(raw_request("GET", prefix + "refused"))
        except OSError:
            pass
        time.sleep(0.5)
        first.close()
        code, took = sigterm_and_wait(target)
        assert took < 5, "exited %.1fs after SIGTERM" % took
    finally:
        first.close()
        if refused:
            refused.close()


# -- client_buffer_size -----------------------------------------------------------


def test_client_buffer_size_raised_accepts_larger_head(env, backend, prefix, aux):
    """[runner] client_buffer_size=16384: a 12 kB header (over the default
    8,192) is accepted and reaches the backend."""
    ok_handler(backend, prefix)
    target = aux("bufsize", aux_routes(env), {"runner": {"client_buffer_size": "16384"}})
    with httpx.Client(timeout=10) as c:
        r = c.get(target.url(prefix), headers={"X-Big": "b" * 12000})
    assert (r.status_code, r.text) == (200, "ok\n")
    assert backend.requests(prefix)[-1].header("X-Big") == "b" * 12000


@pytest.mark.beyond_reference
def test_client_buffer_size_raised_limit_431(env, backend, prefix, aux):
    """decisions C6 with client_buffer_size=16384: a 20 kB head gets 431,
    and the instance keeps serving."""
    ok_handler(backend, prefix)
    target = aux("bufsize431", aux_routes(env), {"runner": {"client_buffer_size": "16384"}})
    c = RawConn(target.port, timeout=5)
    try:
        c.send(raw_request("GET", prefix, headers=[("X-Big", "b" * 20000)]))
        r = c.read_response(timeout=5)
    finally:
        c.close()
    assert r.status == 431
    with httpx.Client(timeout=10) as h:
        r = h.get(target.url(prefix), headers={"X-Big": "b" * 12000})
    assert (r.status_code, r.text) == (200, "ok\n")


def get_at_once(target, path, n):
    """`n` connections each send `GET path` before any answer is read; returns the connections and the answers."""
    conns = [RawConn(target.port, timeout=20) for _ in range(n)]
    try:
        for c in conns:
            c.send(raw_request("GET", path))
        return conns, [c.read_response(timeout=15) for c in conns]
    except BaseException:
        for c in conns:
            c.close()
        raise


def refusal_statuses(results, allowed):
    """The answers' statuses, all in `allowed`, every 503 with decisions D21's text."""
    statuses = [r.status for r in results]
    assert set(statuses) <= allowed, statuses
    assert all(r.body == b"Service unavailable: too many requests waiting for the backend.\n"
               for r in results if r.status == 503)
    return statuses


@pytest.mark.beyond_reference
def test_backend_queue_full_answers_503(env, backend, prefix, aux):
    """Decisions D21: backend calls in flight are capped (`backend_max_connections`) and the rest wait in a queue
    (`backend_queue_max`), both shared out among the event loops; past that, a request gets 503 at once and its
    connection stays usable. The others are answered once the slow backend answers."""
    target = aux("queue-full", aux_routes(env), {"gripproxy": {"backend_max_connections": "2", "backend_queue_max": "2"}})
    backend.on(prefix + "slow", Resp(200, headers=[("Content-Type", "text/plain")], body=b"slow\n", delay=2))
    conns, results = get_at_once(target, prefix + "slow", 12)
    try:
        statuses = refusal_statuses(results, {200, 503})
        assert statuses.count(503) >= 1 and statuses.count(200) >= 2, statuses
        refused = [(c, r) for c, r in zip(conns, results) if r.status == 503]
        # Nothing was sent for a refused request, and its connection still serves the next one.
        assert len(backend.requests(prefix + "slow")) == statuses.count(200)
        ok_handler(backend, prefix + "after")
        c, _ = refused[0]
        c.send(raw_request("GET", prefix + "after"))
        assert c.read_response(timeout=10).status == 200
    finally:
        for c in conns:
            c.close()


@pytest.mark.beyond_reference
def test_backend_queue_wait_past_backend_timeout_answers_503(env, backend, prefix, aux):
    """Decisions D21: a request that waits `backend_timeout` in the queue for a backend connection gets 503, not a
    late call. One connection per event loop, a backend slower than the timeout: each loop's first request times
    out (504) and the one that then gets the slot may too, while those still waiting behind them give up."""
    target = aux("queue-wait", aux_routes(env), {"gripproxy": {
        "backend_max_connections": "2", "backend_queue_max": "100", "backend_timeout": "2"}})
    backend.on(prefix + "slower", Resp(200, headers=[("Content-Type", "text/plain")], body=b"late\n", delay=5))
    conns, results = get_at_once(target, prefix + "slower", 8)
    try:
        statuses = refusal_statuses(results, {503, 504})
        assert statuses.count(503) >= 2 and statuses.count(504) >= 2, statuses
        # Only the calls that got a slot reached the backend.
        assert len(backend.requests(prefix + "slower")) == statuses.count(504)
    finally:
        for c in conns:
            c.close()

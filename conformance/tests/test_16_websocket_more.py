"""More WebSocket-over-HTTP cases: large and fragmented client messages,
Grip-Sig on every request, and a backend that goes away after the handshake
(websocket-over-http.md 4-5; decisions W1, W8). The backend-down cases run a
second, short-lived target instance (harness/extra.py) whose route points at a
backend the test can stop."""

import os
import time

import jwt
import pytest
from gripcontrol import validate_sig
from websockets.exceptions import ConnectionClosed

from harness.backend import Resp
from harness.client import wait_until
from harness.extra import ClosableBackend, aux_routes
from harness.target import SIG_ISS, SIG_KEY
from harness.ws import echo_handler, events_of, ws_connect

pytestmark = pytest.mark.websocket


def wspath(uid):
    return "/ws/%s/" % uid


def client_events(backend, path):
    """Every event the backend got from the client side, in order."""
    return [e for r in backend.requests(path) for e in events_of(r)]


# -- message sizes and fragments ------------------------------------------------


def test_ws_64k_text_message_reaches_backend_whole(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    text = "".join(chr(0x41 + i % 26) for i in range(65536))
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(text)
        assert wait_until(lambda: ("TEXT", text.encode()) in client_events(backend, wspath(uid)), 10)


def test_ws_64k_binary_message_reaches_backend_whole(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    data = os.urandom(65536)
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(data)
        assert wait_until(lambda: ("BINARY", data) in client_events(backend, wspath(uid)), 10)


@pytest.mark.beyond_reference
@pytest.mark.parametrize("kind", ["text", "binary"])
def test_ws_64k_message_round_trip(env, backend, uid, kind):
    """The echo of a 64 kB message comes back whole (websocket-over-http.md 4:
    Pushpin stalls on backend messages over 16,384 bytes)."""
    backend.on(wspath(uid), echo_handler())
    msg = "".join(chr(0x41 + i % 26) for i in range(65536)) if kind == "text" else os.urandom(65536)
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(msg)
        assert ws.recv(timeout=10) == msg


@pytest.mark.beyond_reference
def test_ws_1mb_message_round_trip(env, backend, uid):
    """decisions W1: a client message up to websocket_max_message (1 MiB) goes
    to the backend whole, and the backend's 1 MB answer reaches the client
    (Pushpin drops the connection from about 120 kB)."""
    backend.on(wspath(uid), echo_handler())
    data = os.urandom(1000000)
    with ws_connect(env, wspath(uid), max_size=2 ** 21) as ws:
        ws.send(data)
        assert ws.recv(timeout=20) == data
    assert ("BINARY", data) in client_events(backend, wspath(uid))


def test_ws_fragmented_message_arrives_whole_at_backend(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    parts = ["part-%d|" % i * 50 for i in range(8)]  # 8 frames, 2.4 kB
    whole = "".join(parts)
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(parts)
        assert ws.recv(timeout=5) == whole
        ws.send("after")
        assert ws.recv(timeout=5) == "after"
    texts = [c for t, c in client_events(backend, wspath(uid)) if t == "TEXT"]
    assert texts == [whole.encode(), b"after"], "fragments were not sent as one TEXT event"


def test_ws_fragmented_binary_message_arrives_whole_at_backend(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    parts = [os.urandom(1000) for _ in range(5)]
    with ws_connect(env, wspath(uid)) as ws:
        ws.send(parts)
        assert ws.recv(timeout=5) == b"".join(parts)
    bins = [c for t, c in client_events(backend, wspath(uid)) if t == "BINARY"]
    assert bins == [b"".join(parts)]


# -- Grip-Sig -------------------------------------------------------------------


def test_ws_every_over_http_request_signed(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        for m in ("one", "two"):
            ws.send(m)
            assert ws.recv(timeout=5) == m
        ws.close(1000, "done")
    reqs = backend.requests(wspath(uid))
    assert len(reqs) >= 4, [events_of(r) for r in reqs]  # OPEN, one, two, CLOSE
    now = time.time()
    for r in reqs:
        token = r.header("Grip-Sig")
        assert token, "a WebSocket-over-HTTP request without Grip-Sig: %r" % events_of(r)
        assert validate_sig(token, SIG_KEY), "Grip-Sig does not validate: %r" % events_of(r)
        claims = jwt.decode(token, SIG_KEY, algorithms=["HS256"])
        assert claims["iss"] == SIG_ISS
        assert now + 300 < claims["exp"] <= now + 3700, claims


def test_ws_grip_sig_not_valid_with_other_key(env, backend, uid):
    backend.on(wspath(uid), echo_handler())
    with ws_connect(env, wspath(uid)) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "x"
    token = backend.requests(wspath(uid))[0].header("Grip-Sig")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert not validate_sig(token, "some-other-key-of-at-least-32-bytes-xx")


# -- backend gone after the handshake ------------------------------------------


def down_routes(env):
    return aux_routes(env, "*,path_beg=/wsdown/ 127.0.0.1:%d,over_http" % env.ports.spare)


@pytest.mark.beyond_reference
def test_ws_backend_down_after_handshake_closes_1011(env, backend, uid, aux, spare_backend):
    """websocket-over-http.md 5, decisions W8: connect failures after the
    handshake are retried on the configured schedule, then the client gets
    close 1011 (Pushpin drops the TCP connection)."""
    target = aux("wsdown", down_routes(env), {"gripproxy": {"backend_retry_delays": "0.1,0.1"}})
    path = "/wsdown/%s/" % uid
    spare_backend.on(path, echo_handler())
    with _connect(target, path) as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        spare_backend.stop()
        t0 = time.monotonic()
        ws.send("after the backend went away")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        took = time.monotonic() - t0
        assert ws.close_code == 1011, (ws.close_code, ws.close_reason)
        assert took < 5, "closed only after %.1fs with retry delays 0.1,0.1" % took
    assert target.alive()
    backend.on("/healthy-%s/" % uid, Resp(200, body=b"still here\n"))
    r = _get(target, "/healthy-%s/" % uid)
    assert (r.status_code, r.text) == (200, "still here\n")


def test_ws_backend_back_within_retry_window_message_delivered(env, uid, aux, spare_backend):
    """websocket-over-http.md 5: a connect failure after the handshake is
    retried (after about 1-2 s); a backend that is back by then gets the
    message and its answer reaches the client."""
    target = aux("wsback", down_routes(env))
    path = "/wsdown/%s/" % uid
    spare_backend.on(path, echo_handler())
    with _connect(target, path) as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        spare_backend.stop()
        ws.send("sent while the backend is down")
        time.sleep(0.3)
        again = ClosableBackend(env.ports.spare)
        again.on(path, echo_handler())
        again.start()
        try:
            assert ws.recv(timeout=10) == "sent while the backend is down"
            ws.send("and later")
            assert ws.recv(timeout=5) == "and later"
        finally:
            again.stop()
    assert ("TEXT", b"sent while the backend is down") in client_events(again, path)


def _connect(target, path):
    from websockets.sync.client import connect
    return connect("ws://127.0.0.1:%d%s" % (target.port, path), compression=None, ping_interval=None,
                   open_timeout=10, close_timeout=5)


def _get(target, path):
    import httpx
    with httpx.Client(timeout=10) as c:
        return c.get(target.url(path))

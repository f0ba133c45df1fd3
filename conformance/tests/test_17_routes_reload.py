"""Routes file reload (routes.md 1; decisions D3). Each test runs a second,
short-lived target instance (harness/extra.py: gripproxy with `--routes FILE`,
Pushpin with `routesfile` in its config), rewrites its routes file in place and
probes until requests follow the new table."""

import time

import httpx
import pytest

from harness.backend import Resp, grip_hold
from harness.client import StreamCollector, ensure_stream_subscribed
from harness.extra import aux_routes

RELOAD_BOUND = 3.5  # about 1 s after the change (routes.md 1), with a margin


def route_to(port, path):
    return "*,path_beg=%s 127.0.0.1:%d" % (path, port)


def served_by(target, path):
    with httpx.Client(timeout=10) as c:
        r = c.get(target.url(path))
    return r.status_code, r.text


def wait_served_by(target, path, want, timeout):
    deadline = time.monotonic() + timeout
    while True:
        got = served_by(target, path)
        if got == want:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def setup_two_backends(backend, spare_backend, path):
    backend.on(path, Resp(200, headers=[("Content-Type", "text/plain")], body=b"main\n"))
    spare_backend.on(path, Resp(200, headers=[("Content-Type", "text/plain")], body=b"spare\n"))


def test_routes_file_change_followed(env, backend, spare_backend, uid, aux):
    path = "/moving/%s/" % uid
    setup_two_backends(backend, spare_backend, path)
    target = aux("reload", aux_routes(env, route_to(env.ports.backend, "/moving/")))
    assert served_by(target, path) == (200, "main\n")
    t0 = time.monotonic()
    target.write_routes(aux_routes(env, route_to(env.ports.spare, "/moving/")))
    assert wait_served_by(target, path, (200, "spare\n"), 6), "the new routes file was not applied"
    took = time.monotonic() - t0
    assert took <= RELOAD_BOUND, "new routes applied only after %.1fs" % took
    # stays on the new table
    for _ in range(5):
        assert served_by(target, path) == (200, "spare\n")


def test_routes_file_new_route_added(env, backend, spare_backend, uid, aux):
    path = "/added/%s/" % uid
    setup_two_backends(backend, spare_backend, path)
    target = aux("reload-add", aux_routes(env))
    assert served_by(target, path) == (200, "main\n")
    target.write_routes(aux_routes(env, route_to(env.ports.spare, "/added/")))
    assert wait_served_by(target, path, (200, "spare\n"), RELOAD_BOUND)
    # and removed again
    target.write_routes(aux_routes(env))
    assert wait_served_by(target, path, (200, "main\n"), RELOAD_BOUND)


def test_routes_reload_keeps_held_stream(env, backend, spare_backend, uid, aux):
    """routes.md 1: connections already routed keep their route."""
    path = "/moving/%s/" % uid
    ch = "rl-" + uid
    backend.on(path + "stream", grip_hold("stream", ch, body="start\n"))
    setup_two_backends(backend, spare_backend, path)
    target = aux("reload-stream", aux_routes(env, route_to(env.ports.backend, "/moving/")))
    from harness.client import Publisher
    tpub = Publisher(target.publish_base)
    # A freshly started instance (Pushpin: its zurl and handler too) must serve the route before the stream
    # is opened, or the stream request itself can fail while the services come up.
    assert wait_served_by(target, path, (200, "main\n"), 10)
    s = StreamCollector(target.port, path + "stream")
    try:
        assert s.status == 200, s.status
        off = ensure_stream_subscribed(s, tpub, ch, timeout=20)
        target.write_routes(aux_routes(env, route_to(env.ports.spare, "/moving/")))
        assert wait_served_by(target, path, (200, "spare\n"), RELOAD_BOUND)
        tpub.stream(ch, "after the reload\n")
        assert s.wait_for("after the reload\n", 5, start=off)
        assert not s.ended
    finally:
        s.close()
        tpub.close()


@pytest.mark.beyond_reference
def test_malformed_routes_reload_keeps_old_table(env, backend, spare_backend, uid, aux):
    """decisions D3: a reload that finds a malformed line rejects the whole
    new file (Pushpin would skip the line and load the rest) and the process
    keeps serving; a later valid file is applied."""
    path = "/moving/%s/" % uid
    setup_two_backends(backend, spare_backend, path)
    target = aux("reload-bad", aux_routes(env, route_to(env.ports.backend, "/moving/")))
    assert served_by(target, path) == (200, "main\n")
    target.write_routes(aux_routes(env, route_to(env.ports.spare, "/moving/"),
                                   "*,path_beg=/no-target-here/"))
    # a reload happens about 1 s after the change: for well past that, the old table stays
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        assert served_by(target, path) == (200, "main\n"), "a malformed routes file was (partly) applied"
        assert target.alive()
        time.sleep(0.2)
    target.write_routes(aux_routes(env, route_to(env.ports.spare, "/moving/")))
    assert wait_served_by(target, path, (200, "spare\n"), RELOAD_BOUND), \
        "a valid file after a rejected one was not applied"
    assert target.alive()

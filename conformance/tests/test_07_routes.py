"""Routes: selection, path rewriting, route options, targets, the built-in
`test` target (routes.md). The routes file is written by harness/target.py."""

import jwt
import pytest
from gripcontrol import validate_sig

from harness.backend import Resp, grip_hold
from harness.client import (RawConn, StreamCollector, ensure_stream_subscribed, publish_until,
                            raw_long_poll, raw_request)
from harness.target import ROUTE_SIG_ISS, ROUTE_SIG_KEY, SIG_KEY

OK = Resp(200, headers=[("Content-Type", "text/plain")], body=b"routed\n")


def test_default_route_reaches_backend(env, backend, prefix, http):
    backend.on(prefix, OK)
    r = http.get(env.url(prefix), headers={"Host": "any-host.example"})
    assert (r.status_code, r.text) == (200, "routed\n")


def test_path_beg_route_selected(env, backend, uid, http):
    backend.on("/rt/%s/" % uid, OK)
    http.get(env.url("/rt/%s/x" % uid))
    assert backend.requests("/rt/%s/" % uid)[-1].header("X-Route") == "rt"


def test_longest_path_beg_wins(env, backend, uid, http):
    backend.on("/rt/long/%s/" % uid, OK)
    http.get(env.url("/rt/long/%s/x" % uid))
    assert backend.requests("/rt/long/%s/" % uid)[-1].header("X-Route") == "rt-long"


def test_unmatched_path_uses_star_route(env, backend, prefix, http):
    backend.on(prefix, OK)
    http.get(env.url(prefix))
    assert backend.requests(prefix)[-1].header("X-Route") is None


def test_path_rem_removes_characters(env, backend, uid, http):
    backend.on("/%s/" % uid, OK)
    r = http.get(env.url("/rem/%s/items?x=1" % uid))
    assert r.status_code == 200
    assert backend.requests("/%s/" % uid)[-1].target == "/%s/items?x=1" % uid


def test_replace_beg_rewrites_prefix(env, backend, uid, http):
    backend.on("/new/%s/" % uid, OK)
    r = http.get(env.url("/old/%s/a/b" % uid))
    assert r.status_code == 200
    assert backend.requests("/new/%s/" % uid)[-1].target == "/new/%s/a/b" % uid


def test_as_host_changes_host_header(env, backend, uid, http):
    backend.on("/ashost/%s/" % uid, OK)
    http.get(env.url("/ashost/%s/x" % uid), headers={"Host": "public.example"})
    assert backend.requests("/ashost/%s/" % uid)[-1].header("Host") == "internal.example:8080"


def test_route_header_option_sets_and_removes(env, backend, uid, http):
    backend.on("/hdr/%s/" % uid, OK)
    http.get(env.url("/hdr/%s/x" % uid), headers={"X-Added": "from-client", "X-Removed": "bye",
                                                   "X-Other": "stays"})
    req = backend.requests("/hdr/%s/" % uid)[-1]
    assert req.header_all("X-Added") == ["from-route"]
    assert req.header("X-Removed") is None
    assert req.header("X-Other") == "stays"


def test_route_prefix_applies_to_channels(env, backend, uid, pub):
    path = "/pfx/%s/" % uid
    ch = "c-" + uid
    backend.on(path, grip_hold("stream", ch))
    s = StreamCollector(env.port, path)
    try:
        off = ensure_stream_subscribed(s, pub, "pfx-" + ch)
        pub.stream(ch, "unprefixed\n")
        pub.stream("pfx-" + ch, "prefixed\n")
        assert s.wait_for("prefixed\n", 5, start=off)
        assert s.body()[off:] == b"prefixed\n"
    finally:
        s.close()


def test_no_grip_route_relays_grip_headers_untouched(env, backend, uid):
    path = "/nogrip/%s/" % uid
    backend.on(path, Resp(200, headers=[("Grip-Hold", "response"), ("Grip-Channel", "x-" + uid),
                                        ("Content-Type", "text/plain")], body=b"not held\n"))
    c = RawConn(env.port)
    c.send(raw_request("GET", path))
    r = c.read_response(timeout=5)
    c.close()
    assert r.body == b"not held\n"
    assert r.header("Grip-Hold") == "response"
    assert r.header("Grip-Channel") == "x-" + uid
    req = backend.requests(path)[-1]
    assert req.header("Grip-Sig") is None
    assert req.header("Grip-Feature") is None


def test_host_route_without_matching_path_is_502_no_fallback(env, backend, http):
    r = http.get(env.url("/other/path"), headers={"Host": "routehost.test"})
    assert r.status_code == 502
    assert r.text == "No route for host: routehost.test\n"


def test_host_route_matches_ignoring_port_and_case(env, backend, uid, http):
    backend.on("/only/%s/" % uid, OK)
    r = http.get(env.url("/only/%s/x" % uid), headers={"Host": "RouteHost.Test:8080"})
    assert (r.status_code, r.text) == (200, "routed\n")


def test_backend_down_502(env, uid, http, healthy):
    r = http.get(env.url("/down/%s" % uid))
    assert r.status_code == 502
    assert r.text == "Error while proxying to origin.\n"
    assert r.headers["content-type"].startswith("text/plain")
    healthy()


def test_failover_to_second_target(env, backend, uid, http):
    backend.on("/failover/%s/" % uid, OK)
    r = http.get(env.url("/failover/%s/x" % uid))
    assert (r.status_code, r.text) == (200, "routed\n")


def test_route_sig_key_and_issuer(env, backend, uid, http):
    backend.on("/rsig/%s/" % uid, OK)
    http.get(env.url("/rsig/%s/x" % uid))
    token = backend.requests("/rsig/%s/" % uid)[-1].header("Grip-Sig")
    assert validate_sig(token, ROUTE_SIG_KEY)
    assert not validate_sig(token, SIG_KEY)
    assert jwt.decode(token, ROUTE_SIG_KEY, algorithms=["HS256"])["iss"] == ROUTE_SIG_ISS


def test_target_sub_option_adds_implicit_channel(env, backend, uid, pub):
    path = "/implicit/%s/" % uid
    backend.on(path, grip_hold("stream", "own-" + uid))
    s = StreamCollector(env.port, path)
    try:
        off = ensure_stream_subscribed(s, pub, "implicit-sub")
        pub.stream("implicit-sub", "implicit %s\n" % uid)
        assert s.wait_for("implicit %s\n" % uid, 5, start=off)
    finally:
        s.close()


def test_test_target_hello(env, http):
    r = http.get(env.url("/testtarget/"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text == "Hello from the Pushpin test handler!\n"


def test_test_target_unknown_resource_404(env, http):
    r = http.get(env.url("/testtarget/nothing-here"))
    assert (r.status_code, r.text) == (404, "no such test resource\n")


def test_test_target_stream(env, uid, pub):
    ch = "tt-" + uid
    s = StreamCollector(env.port, "/testtarget/stream?channel=" + ch)
    try:
        assert s.status == 200
        assert s.wait_for("[stream opened]\n", 3)
        off = ensure_stream_subscribed(s, pub, ch)
        pub.stream(ch, "to the test handler\n")
        assert s.wait_for("to the test handler\n", 5, start=off)
    finally:
        s.close()


def test_test_target_response_hold(env, uid, pub):
    ch = "tt-" + uid
    lp = raw_long_poll(env.port, "/testtarget/response?channel=" + ch)
    publish_until(lp.done, lambda: pub.response(ch, "answered\n"))
    assert lp.result().body == b"answered\n"

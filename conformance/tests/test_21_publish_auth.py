"""Publish authorization (issue 12 item 2; `[gripproxy] publish_auth`). Pushpin
1.36 has none, so every case is beyond_reference. The accepted cases publish
with the real GRIP libraries (gripcontrol's `key` + `control_iss`, pubcontrol's
`set_auth_basic`) and with `gripproxy publish -u`, and check what a held stream
receives; the refused cases check that nothing reaches it."""

import base64
import subprocess
import time

import httpx
import jwt
import pytest
from gripcontrol import GripPubControl
from pubcontrol import Item, PubControlClient
from gripcontrol import HttpStreamFormat

from harness.backend import grip_hold
from harness.client import Publisher, StreamCollector, wait_until
from harness.extra import aux_routes, gripproxy_bin

pytestmark = pytest.mark.beyond_reference

KEY = "a-publish-key-for-the-conformance-suite"
ISS = "conformance-publisher"


def held_stream(backend, prefix, target, ch, publisher):
    """A stream held on `ch` on the aux instance, subscribed (checked with a
    publish through `publisher`, which must be authorized)."""
    backend.on(prefix + "st", grip_hold("stream", ch, body="start\n"))
    s = StreamCollector(target.port, prefix + "st")
    assert s.wait_for("start\n", 5)

    def probe():
        publisher("probe\n")
        return s.wait_for("probe\n", 0.3)
    assert wait_until(probe, 10), "the stream never got a probe: %r" % s.body()
    return s


def refused(target, headers=None, body=None):
    r = httpx.post(target.publish_base + "/publish/", headers=headers or {},
                   content=body if body is not None else b'{"items":[]}', timeout=10)
    return r


def test_jwt_gripcontrol_with_key_and_iss_publishes(env, backend, prefix, uid, aux):
    target = aux("auth-jwt", aux_routes(env), {"gripproxy": {"publish_auth": "jwt", "publish_key": KEY,
                                                              "publish_iss": ISS}})
    ch = "auth-" + uid
    gp = GripPubControl({"control_uri": target.publish_base, "control_iss": ISS, "key": KEY})
    s = held_stream(backend, prefix, target, ch, lambda text: gp.publish_http_stream(ch, text))
    try:
        start = len(s.body())
        gp.publish_http_stream(ch, "signed\n")
        assert s.wait_for("signed\n", 5, start=start)
    finally:
        s.close()


def test_jwt_refuses_missing_wrong_key_wrong_issuer_and_expired(env, backend, prefix, uid, aux):
    target = aux("auth-jwt-no", aux_routes(env), {"gripproxy": {"publish_auth": "jwt", "publish_key": KEY,
                                                                 "publish_iss": ISS}})
    ch = "auth-no-" + uid
    good = GripPubControl({"control_uri": target.publish_base, "control_iss": ISS, "key": KEY})
    s = held_stream(backend, prefix, target, ch, lambda text: good.publish_http_stream(ch, text))
    try:
        start = len(s.body())
        item = b'{"items":[{"channel":"%s","formats":{"http-stream":{"content":"leaked\\n"}}}]}' % ch.encode()
        now = int(time.time())
        tokens = {
            "none": None,
            "wrong key": jwt.encode({"iss": ISS, "exp": now + 600}, "some other key", algorithm="HS256"),
            "wrong issuer": jwt.encode({"iss": "intruder", "exp": now + 600}, KEY, algorithm="HS256"),
            "expired": jwt.encode({"iss": ISS, "exp": now - 60}, KEY, algorithm="HS256"),
        }
        for why, token in tokens.items():
            headers = {"Content-Type": "application/json"}
            if token:
                headers["Authorization"] = "Bearer " + token
            r = refused(target, headers, item)
            assert r.status_code == 401, (why, r.status_code, r.text)
            assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), (why, r.headers)
        r = refused(target, {"Authorization": "Bearer " + jwt.encode({"iss": ISS}, KEY, algorithm="HS256")}, b"not json")
        assert r.status_code == 400, "an authorized request goes on to the body's own checks: %d" % r.status_code
        time.sleep(0.5)
        assert s.body()[start:] == b"", "a refused publish reached the stream: %r" % s.body()[start:]
    finally:
        s.close()


def test_basic_pubcontrol_and_cli_publish_and_wrong_password_is_refused(env, backend, prefix, uid, aux):
    target = aux("auth-basic", aux_routes(env), {"gripproxy": {"publish_auth": "basic", "publish_user": "pub",
                                                                "publish_pass": "pa:ss"}})
    ch = "auth-b-" + uid
    client = PubControlClient(target.publish_base)
    client.set_auth_basic("pub", "pa:ss")

    def publish(text):
        client.publish(ch, Item(HttpStreamFormat(text)), blocking=True)
    s = held_stream(backend, prefix, target, ch, publish)
    try:
        start = len(s.body())
        publish("basic\n")
        assert s.wait_for("basic\n", 5, start=start)
        p = subprocess.run([gripproxy_bin(), "publish", "--spec", target.publish_base, "-u", "pub:pa:ss",
                            "--format", "http-stream", ch, "from the cli"],
                           capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, (p.returncode, p.stderr)
        assert s.wait_for("from the cli\n", 5, start=start)
        mark = len(s.body())
        for credentials in ("pub:wrong", "other:pa:ss"):
            auth = "Basic " + base64.b64encode(credentials.encode()).decode()
            r = refused(target, {"Authorization": auth, "Content-Type": "application/json"},
                        b'{"items":[{"channel":"%s","formats":{"http-stream":{"content":"leaked\\n"}}}]}' % ch.encode())
            assert r.status_code == 401, (credentials, r.status_code)
            assert r.headers.get("WWW-Authenticate", "").startswith("Basic")
        p = subprocess.run([gripproxy_bin(), "publish", "--spec", target.publish_base, "-u", "pub:nope", ch, "x"],
                           capture_output=True, timeout=15, stdin=subprocess.DEVNULL)
        assert p.returncode == 1 and b"401" in p.stderr, (p.returncode, p.stderr)
        time.sleep(0.5)
        assert s.body()[mark:] == b"", "a refused publish reached the stream: %r" % s.body()[mark:]
    finally:
        s.close()


def test_the_connection_stays_usable_after_a_refusal(env, aux):
    """A 401 is answered before the body, which is then read and dropped, so a
    kept-alive publisher connection takes the next request."""
    target = aux("auth-keepalive", aux_routes(env), {"gripproxy": {"publish_auth": "basic", "publish_user": "u",
                                                                    "publish_pass": "p"}})
    with httpx.Client(timeout=10) as c:
        r1 = c.post(target.publish_base + "/publish/", content=b'{"items":[]}')
        assert r1.status_code == 401
        r2 = c.post(target.publish_base + "/publish/", content=b'{"items":[]}', auth=("u", "p"))
        assert r2.status_code == 200, (r2.status_code, r2.text)

"""Pass-through: responses without GRIP instructions are relayed as they are;
requests reach the backend with Grip-Sig and Grip-Feature added and the
hop-by-hop and client Grip-* headers removed (grip-http.md 1-2; decisions D12-D14)."""

import gzip
import os
import time

import httpx
import jwt
import pytest

from harness.backend import Resp
from harness.client import RawConn, raw_request
from harness.target import SIG_ISS, SIG_KEY

GRIP_FEATURE = ("status, session, link:next, filter:skip-self, filter:skip-users, "
                "filter:require-sub, filter:build-id, filter:var-subst")


def test_get_relays_status_headers_and_body(env, backend, prefix, http):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain"), ("X-Custom", "abc")],
                            body=b"hello from origin\n"))
    r = http.get(env.url(prefix + "hello"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-custom"] == "abc"
    assert r.text == "hello from origin\n"


@pytest.mark.parametrize("code", [201, 202, 301, 400, 403, 404, 418, 500, 503])
def test_status_code_relayed(env, backend, prefix, http, code):
    hs = [("Content-Type", "text/plain")]
    if code == 301:
        hs.append(("Location", "/elsewhere"))
    backend.on(prefix, Resp(code, headers=hs, body=b"status %d\n" % code))
    r = http.get(env.url(prefix), follow_redirects=False)
    assert r.status_code == code
    assert r.text == "status %d\n" % code
    if code == 301:
        assert r.headers["location"] == "/elsewhere"


def test_204_no_content_relayed(env, backend, prefix, http):
    backend.on(prefix, Resp(204, headers=[("X-Empty", "yes")]))
    r = http.delete(env.url(prefix + "thing"))
    assert r.status_code == 204
    assert r.headers["x-empty"] == "yes"
    assert r.content == b""


def test_custom_reason_phrase_relayed(env, backend, prefix):
    backend.on(prefix, Resp(200, reason="Totally Fine", headers=[("Content-Type", "text/plain")],
                            body=b"ok\n"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix))
    r = c.read_response()
    c.close()
    assert (r.status, r.reason, r.body) == (200, "Totally Fine", b"ok\n")


def test_repeated_response_headers_kept(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/"),
                                          ("Content-Type", "text/plain")], body=b"x"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix))
    r = c.read_response()
    c.close()
    assert r.header_all("Set-Cookie") == ["a=1; Path=/", "b=2; Path=/"]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_method_path_and_query_forwarded(env, backend, prefix, http, method):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"done\n"))
    body = b'{"k": "v"}' if method in ("POST", "PUT", "PATCH") else None
    r = http.request(method, env.url(prefix + "a/b%20c?x=1&y=%2F"), content=body,
                     headers={"Content-Type": "application/json"} if body else None)
    assert r.status_code == 200
    req = backend.requests(prefix)[-1]
    assert req.method == method
    assert req.target == prefix + "a/b%20c?x=1&y=%2F"
    if body:
        assert req.body == body
        assert req.header("Content-Type") == "application/json"


def test_request_headers_forwarded(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix), headers={
        "Cookie": "session=abc", "Authorization": "Bearer tok", "User-Agent": "conformance/1",
        "X-Custom-Thing": "value 1", "Origin": "http://app.example", "Host": "app.example:8080"})
    req = backend.requests(prefix)[-1]
    assert req.header("Cookie") == "session=abc"
    assert req.header("Authorization") == "Bearer tok"
    assert req.header("User-Agent") == "conformance/1"
    assert req.header("X-Custom-Thing") == "value 1"
    assert req.header("Origin") == "http://app.example"
    assert req.header("Host") == "app.example:8080"


def test_head_request_relays_headers_only(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain"), ("X-H", "1")], body=b"12345"))
    c = RawConn(env.port)
    c.send(raw_request("HEAD", prefix))
    r = c.read_response(head_request=True)
    assert r.status == 200 and r.header("X-H") == "1"
    # the connection must stay in sync: a second request is answered normally
    c.send(raw_request("GET", prefix))
    r2 = c.read_response()
    c.close()
    assert r2.body == b"12345"
    assert backend.requests(prefix)[0].method == "HEAD"


def test_one_megabyte_response_body(env, backend, prefix, http):
    data = os.urandom(1024 * 1024)
    backend.on(prefix, Resp(200, headers=[("Content-Type", "application/octet-stream")], body=data))
    r = http.get(env.url(prefix))
    assert r.status_code == 200
    assert len(r.content) == len(data)
    assert r.content == data


def test_one_megabyte_request_body_forwarded(env, backend, prefix, http):
    data = os.urandom(1024 * 1024)
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"got it\n"))
    r = http.post(env.url(prefix), content=data, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.text == "got it\n"
    assert backend.requests(prefix)[-1].body == data


def test_chunked_response_relayed_whole(env, backend, prefix, http):
    parts = [b"part-%d;" % i * 50 for i in range(20)]
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], chunks=parts))
    r = http.get(env.url(prefix))
    assert r.status_code == 200
    assert r.content == b"".join(parts)


def test_chunked_response_is_streamed_not_buffered(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")],
                            chunks=[b"first\n", 2.5, b"second\n"]))
    c = RawConn(env.port)
    t0 = time.monotonic()
    c.send(raw_request("GET", prefix))
    version, status, reason, headers = c.read_head()
    assert status == 200
    te = [v for k, v in headers if k.lower() == "transfer-encoding"]
    cl = [v for k, v in headers if k.lower() == "content-length"]
    assert te and "chunked" in te[0].lower() and not cl
    first = c.read_chunk()
    t_first = time.monotonic() - t0
    rest = b""
    while True:
        d = c.read_chunk()
        if not d:
            break
        rest += d
    c.close()
    assert first + rest == b"first\nsecond\n"
    assert first.startswith(b"first"), first
    assert t_first < 2.0, "first chunk only after %.1fs: response was buffered" % t_first


def test_close_delimited_backend_body_relayed(env, backend, prefix, http):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"until close\n" * 100,
                            close_delimited=True))
    r = http.get(env.url(prefix))
    assert r.status_code == 200
    assert r.text == "until close\n" * 100


def test_chunked_request_body_forwarded(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"ok\n"))
    c = RawConn(env.port)
    c.send(raw_request("POST", prefix, headers=[("Transfer-Encoding", "chunked"),
                                                ("Content-Type", "text/plain")])
           + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    r = c.read_response()
    c.close()
    assert r.status == 200
    req = backend.requests(prefix)[-1]
    assert req.body == b"hello world"


def test_gzip_encoded_response_arrives_intact(env, backend, prefix, http):
    plain = b"compressible text " * 200
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain"), ("Content-Encoding", "gzip")],
                            body=gzip.compress(plain)))
    r = http.get(env.url(prefix), headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.content == plain  # httpx decodes; either relay style gives the same text


def test_grip_sig_is_a_valid_jwt_with_configured_issuer(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix))
    req = backend.requests(prefix)[-1]
    assert req.sig_valid, "Grip-Sig missing or not valid under the configured key"
    claims = jwt.decode(req.header("Grip-Sig"), SIG_KEY, algorithms=["HS256"])
    assert claims["iss"] == SIG_ISS
    assert time.time() + 60 < claims["exp"] <= time.time() + 3700


def test_grip_sig_rejected_with_wrong_key(env, backend, prefix, http):
    from gripcontrol import validate_sig
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix))
    token = backend.requests(prefix)[-1].header("Grip-Sig")
    assert validate_sig(token, SIG_KEY)
    assert not validate_sig(token, "another-key-of-sufficient-length-0123456789")


def test_grip_feature_header_sent(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix))
    assert backend.requests(prefix)[-1].header("Grip-Feature") == GRIP_FEATURE


def test_client_grip_headers_not_forwarded(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix), headers={"Grip-Sig": "forged.token.here", "Grip-Last": "c; last-id=1",
                                       "Grip-Something": "x", "grip-feature": "none"})
    req = backend.requests(prefix)[-1]
    assert req.header_all("Grip-Sig") != ["forged.token.here"]
    assert len(req.header_all("Grip-Sig")) == 1 and req.sig_valid
    assert req.header("Grip-Last") is None
    assert req.header("Grip-Something") is None
    assert req.header_all("Grip-Feature") == [GRIP_FEATURE]


def test_connection_and_keep_alive_headers_removed(env, backend, prefix):
    backend.on(prefix, Resp(200, body=b"ok"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix, headers=[("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"),
                                               ("X-End", "kept")]))
    r = c.read_response()
    c.close()
    assert r.status == 200
    req = backend.requests(prefix)[-1]
    assert req.header("Connection") in (None, "keep-alive")  # re-generated hop by hop at most
    assert req.header("Keep-Alive") is None
    assert req.header("X-End") == "kept"


@pytest.mark.beyond_reference
def test_headers_named_by_connection_removed(env, backend, prefix):
    """decisions D12 / RFC 9110 7.6.1. Pushpin 1.36 forwards X-Hop, TE, Trailer, Upgrade
    and Proxy-Connection (observed), so this is GripProxy-only."""
    backend.on(prefix, Resp(200, body=b"ok"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix, headers=[("Connection", "keep-alive, X-Hop"), ("X-Hop", "secret"),
                                               ("TE", "trailers"), ("Trailer", "X-T"),
                                               ("Proxy-Connection", "keep-alive"), ("X-End", "kept")]))
    r = c.read_response()
    c.close()
    assert r.status == 200
    req = backend.requests(prefix)[-1]
    for name in ("X-Hop", "TE", "Trailer", "Proxy-Connection", "Keep-Alive"):
        assert req.header(name) is None, name
    assert req.header("X-End") == "kept"


def test_x_forwarded_for_passed_unchanged(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix + "one"), headers={"X-Forwarded-For": "203.0.113.7"})
    http.get(env.url(prefix + "none"))
    reqs = {r.path: r for r in backend.requests(prefix)}
    assert reqs[prefix + "one"].header_all("X-Forwarded-For") == ["203.0.113.7"]
    assert reqs[prefix + "none"].header("X-Forwarded-For") is None


def test_x_forwarded_for_lines_folded(env, backend, prefix):
    backend.on(prefix, Resp(200, body=b"ok"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix, headers=[("X-Forwarded-For", "198.51.100.1"),
                                               ("X-Forwarded-For", "198.51.100.2")]))
    c.read_response()
    c.close()
    vals = backend.requests(prefix)[-1].header_all("X-Forwarded-For")
    assert [v.replace(" ", "") for v in vals] == ["198.51.100.1,198.51.100.2"]


def test_client_x_forwarded_proto_removed(env, backend, prefix, http):
    backend.on(prefix, Resp(200, body=b"ok"))
    http.get(env.url(prefix), headers={"X-Forwarded-Proto": "https", "X-Forwarded-Protocol": "https"})
    req = backend.requests(prefix)[-1]
    assert req.header("X-Forwarded-Proto") is None
    assert req.header("X-Forwarded-Protocol") is None


def test_keep_alive_connection_serves_several_requests(env, backend, prefix):
    backend.on(prefix, lambda req: Resp(200, headers=[("Content-Type", "text/plain")],
                                        body=req.path.encode()))
    c = RawConn(env.port)
    for i in range(3):
        c.send(raw_request("GET", prefix + str(i)))
        r = c.read_response()
        assert (r.status, r.body) == (200, (prefix + str(i)).encode())
    c.close()


def test_pipelined_requests_answered_in_order(env, backend, prefix):
    def h(req):
        # the first answer is the slowest: order must still be kept
        return Resp(200, headers=[("Content-Type", "text/plain")], body=req.path.encode(),
                    delay=0.5 if req.path.endswith("/0") else 0)
    backend.on(prefix, h)
    c = RawConn(env.port)
    c.send(b"".join(raw_request("GET", prefix + str(i)) for i in range(3)))
    bodies = [c.read_response().body for _ in range(3)]
    c.close()
    assert bodies == [(prefix + str(i)).encode() for i in range(3)]


def test_expect_100_continue(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"ok\n"))
    c = RawConn(env.port)
    body = b"x" * 5000
    c.send(raw_request("POST", prefix, headers=[("Expect", "100-continue"),
                                                ("Content-Length", str(len(body)))]))
    interim = c.read_until(b"\r\n\r\n", timeout=5)
    assert interim.startswith(b"HTTP/1.1 100"), interim
    c.send(body)
    r = c.read_response()
    c.close()
    assert (r.status, r.body) == (200, b"ok\n")
    req = backend.requests(prefix)[-1]
    assert req.body == body
    assert req.header("Expect") is None


def test_http10_request_relayed(env, backend, prefix):
    backend.on(prefix, Resp(200, headers=[("Content-Type", "text/plain")], body=b"old client\n"))
    c = RawConn(env.port)
    c.send(raw_request("GET", prefix, version="HTTP/1.0"))
    r = c.read_response()
    c.close()
    assert r.status == 200 and r.body == b"old client\n"

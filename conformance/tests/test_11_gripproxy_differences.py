"""Deliberate GripProxy improvements over Pushpin 1.36 (decisions.md items
marked *GripProxy*). All are `beyond_reference`: skipped on the pushpin target.
(Other such cases sit next to their topic: 504 and 400/431 in test_08,
Connection-named headers in test_01.)"""

import os
import re
import socket
import subprocess
import time

import pytest

from harness.backend import Resp, grip_hold
from harness.client import RawConn, raw_long_poll, raw_request
from harness.target import CONFORMANCE_DIR, SIG_KEY

pytestmark = pytest.mark.beyond_reference


def test_publish_during_recheck_not_lost(env, backend, prefix, uid, pub):
    """decisions D15 / grip-http.md 8: while the first-subscription re-send is
    out, the hold stays subscribed and an item completes the client."""
    ch = "d15-" + uid
    seen = []

    def h(req):
        seen.append(req)
        if len(seen) == 1:
            return grip_hold("response", ch, body="x", timeout=20)
        resp = grip_hold("response", ch, body="x", timeout=20)
        resp.delay = 2.0  # the re-send's answer is slow
        return resp
    backend.on(prefix, h)
    lp = raw_long_poll(env.port, prefix)
    assert len(backend.wait_requests(prefix, 2, 4)) >= 2, "no first-subscription re-check"
    time.sleep(0.3)
    t0 = time.monotonic()
    pub.response(ch, "published during the re-check\n")
    r = lp.result(5)
    assert r.body == b"published during the re-check\n"
    assert time.monotonic() - t0 < 1.5, "delivered only after the re-send's answer"


def test_recheck_new_hold_answer_keeps_hold(env, backend, prefix, uid, pub):
    """decisions D15: a new hold answer to the re-send keeps the hold."""
    ch = "d15-" + uid
    backend.on(prefix, grip_hold("response", ch, body="x", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    backend.wait_requests(prefix, 2, 4)
    time.sleep(0.5)
    pub.response(ch, "after the re-check\n")
    assert lp.result(5).body == b"after the re-check\n"


def _run_with_routes(env, tmp_name, routes_text):
    workdir = os.path.join(env.target.workdir, tmp_name)
    os.makedirs(workdir, exist_ok=True)
    routes = os.path.join(workdir, "routes.in")
    with open(routes, "w") as f:
        f.write(routes_text)
    adapter = os.path.join(CONFORMANCE_DIR, "targets", "%s.sh" % env.name)
    p = subprocess.run([adapter, workdir, str(env.ports.aux[0]), str(env.ports.aux[1]),
                        str(env.ports.backend), SIG_KEY, routes],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    # the adapter copies the routes to WORKDIR/routes and gives the target that file
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace"), os.path.join(workdir, "routes")


@pytest.mark.parametrize("bad_line", ["*,path_beg=/no-target/", '*,header="X-Unterminated: a 127.0.0.1:1'])
def test_malformed_routes_line_is_fatal_at_start(env, bad_line):
    """decisions D3: a routes line that does not parse stops start-up with exit
    code 2 and a message naming the file and the line."""
    text = "# comment\n* 127.0.0.1:%d\n%s\n" % (env.ports.backend, bad_line)
    try:
        code, out, routes = _run_with_routes(env, "bad-routes", text)
    except subprocess.TimeoutExpired:
        pytest.fail("the target kept running with a malformed routes file")
    assert code == 2, "exit code %s; output:\n%s" % (code, out[-2000:])
    # FILE:LINE: REASON, the file as given (or its real path) and exactly line 3
    names = "|".join(re.escape(n) for n in {routes, os.path.realpath(routes)})
    assert re.search(r"(?:^|\s)(?:%s):3: \S" % names, out, re.M), \
        "no '%s:3: <reason>' in the output:\n%s" % (routes, out[-2000:])


def test_slow_stream_reader_is_disconnected_not_skipped(env, backend, prefix, uid, pub):
    """decisions D8: a connection whose queued bytes pass client_write_buffer_max
    (1 MiB) is closed; it never silently misses items."""
    ch = "d8-" + uid
    backend.on(prefix, grip_hold("stream", ch, body="start\n"))
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", env.port))
    s.settimeout(10)
    try:
        s.sendall(raw_request("GET", prefix))
        buf = b""
        # subscribed? publish probes until one is read
        n = 0
        deadline = time.monotonic() + 10
        while b"probe" not in buf:
            assert time.monotonic() < deadline, "stream never subscribed"
            n += 1
            pub.stream(ch, "probe %d\n" % n)
            s.settimeout(0.3)
            try:
                while b"probe" not in buf:
                    buf += s.recv(65536)
            except socket.timeout:
                pass
        s.settimeout(10)
        # stop reading; publish far more than kernel buffers plus 1 MiB
        items = [("item %03d " % i).encode() + b"x" * 199990 + b"\n" for i in range(60)]
        for it in items:
            pub.stream(ch, it.decode())
        time.sleep(1.0)
        # now read what there is, until the proxy closes the connection
        data = b""
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline:
            try:
                d = s.recv(1 << 20)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            data += d
        assert closed, "the slow connection was not closed"
        # de-chunk what arrived and check nothing in the middle is missing
        stream = (buf + data)
        body = b""
        rest = stream[stream.index(b"\r\n\r\n") + 4:]
        while rest:
            line, sep, rest2 = rest.partition(b"\r\n")
            if not sep:
                break
            size = int(line.split(b";")[0], 16)
            if size == 0 or len(rest2) < size + 2:
                body += rest2[:size]
                break
            body += rest2[:size]
            rest = rest2[size + 2:]
        assert b"item 000 " in body, "the first item never arrived: %r" % body[-300:]
        payload = body[body.index(b"item 000 "):]
        full = b"".join(items)
        assert len(payload) < len(full), "every item arrived: the bound was not reached"
        assert full.startswith(payload), "an item was skipped instead of closing the connection"
    finally:
        s.close()

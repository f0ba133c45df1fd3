"""The publish command-line tool (decisions D11): `gripproxy publish` on the
gripproxy target, Pushpin's own `pushpin-publish` on the pushpin target, with
the same flags (the former is a drop-in for the latter)."""

import shutil
import time

import pytest

from harness.backend import grip_hold
from harness.client import StreamCollector, ensure_stream_subscribed, publish_until, raw_long_poll
from harness.extra import publish_cli
from harness.ws import echo_handler, ws_connect, ws_subscribed


@pytest.fixture(autouse=True)
def _tool_present(env):
    if env.name == "pushpin" and not shutil.which("pushpin-publish"):
        pytest.fail("pushpin-publish is not installed (it ships with the pushpin package)")


def cli_ok(env, *args, **kw):
    p = publish_cli(env, *args, **kw)
    assert p.returncode == 0, "exit %d; stdout %r; stderr %r" % (p.returncode, p.stdout, p.stderr)
    return p


def held_stream(env, backend, path, ch, pub):
    backend.on(path, grip_hold("stream", ch, body="start\n"))
    s = StreamCollector(env.port, path)
    off = ensure_stream_subscribed(s, pub, ch)
    return s, off


def test_publish_cli_to_stream(env, backend, prefix, uid, pub):
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        cli_ok(env, ch, "hello from the command line")
        assert s.wait_for("hello from the command line\n", 5, start=off)
        assert s.body()[off:] == b"hello from the command line\n"
    finally:
        s.close()


def test_publish_cli_no_eol(env, backend, prefix, uid, pub):
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        cli_ok(env, "--no-eol", ch, "no newline")
        cli_ok(env, ch, "|end")
        assert s.wait_for("|end\n", 5, start=off)
        assert s.body()[off:] == b"no newline|end\n"
    finally:
        s.close()


def test_publish_cli_to_long_poll(env, backend, prefix, uid):
    ch = "cli-" + uid
    backend.on(prefix, grip_hold("response", ch, body="timed out\n", timeout=20,
                                 headers=[("Content-Type", "text/plain")]))
    lp = raw_long_poll(env.port, prefix)
    publish_until(lp.done, lambda: cli_ok(env, ch, "long-poll answer"), timeout=12, interval=0.5)
    r = lp.result(5)
    assert (r.status, r.body) == (200, b"long-poll answer\n")


def test_publish_cli_code_and_header_to_long_poll(env, backend, prefix, uid):
    ch = "cli-" + uid
    backend.on(prefix, grip_hold("response", ch, body="timed out\n", timeout=20))
    lp = raw_long_poll(env.port, prefix)
    # options after the arguments: pushpin-publish's -H takes several values
    publish_until(lp.done, lambda: cli_ok(env, ch, "accepted", "--code", "202", "-H", "X-From-Cli: yes"),
                  timeout=12, interval=0.5)
    r = lp.result(5)
    assert (r.status, r.body) == (202, b"accepted\n")
    assert r.header("X-From-Cli") == "yes"


def test_publish_cli_close_ends_stream(env, backend, prefix, uid, pub):
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        cli_ok(env, "--close", ch)
        assert s.wait_end(5), "the stream was not ended by --close"
        assert s.ended and s.error is None, "the stream did not end cleanly: %r" % (s.error,)
        assert s.body()[off:] == b""
    finally:
        s.close()


def test_publish_cli_id_passes_through(env, backend, prefix, uid, pub):
    """--id reaches the proxy: a second item with the same id is a duplicate."""
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        cli_ok(env, "--id", "same", ch, "first")
        cli_ok(env, "--id", "same", ch, "duplicate")
        cli_ok(env, "--id", "other", ch, "second")
        assert s.wait_for("second\n", 5, start=off)
        assert s.body()[off:] == b"first\nsecond\n"
    finally:
        s.close()


def test_publish_cli_prev_id_passes_through(env, backend, prefix, uid, pub):
    """--prev-id reaches the proxy: an item whose predecessor has not come
    yet waits for it (reliability.md 3)."""
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        cli_ok(env, "--id", "1", ch, "one")
        assert s.wait_for("one\n", 5, start=off)
        cli_ok(env, "--id", "3", "--prev-id", "2", ch, "three")
        time.sleep(0.5)
        assert s.body()[off:] == b"one\n", "an item was released before its predecessor"
        cli_ok(env, "--id", "2", "--prev-id", "1", ch, "two")
        assert s.wait_for("three\n", 5, start=off)
        assert s.body()[off:] == b"one\ntwo\nthree\n"
    finally:
        s.close()


@pytest.mark.websocket
def test_publish_cli_to_websocket(env, backend, uid, pub):
    ch = "cli-" + uid
    path = "/ws/%s/" % uid
    backend.on(path, echo_handler(subscribe=ch))
    with ws_connect(env, path) as ws:
        ws_subscribed(ws, pub, ch)
        cli_ok(env, ch, "to the websocket")
        assert ws.recv(timeout=5) == "to the websocket"


def test_publish_cli_unreachable_spec_exits_nonzero(env, healthy):
    """A refused connection is an error at once (pushpin-publish: a few ms)."""
    t0 = time.monotonic()
    p = publish_cli(env, "cli-unreachable", "x", spec="http://127.0.0.1:%d" % env.ports.dead, timeout=60)
    took = time.monotonic() - t0
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert took < 5, "a refused connection took %.1fs to report" % took
    assert p.stderr.strip(), "no error message on stderr"
    healthy()


def test_publish_cli_non_200_exits_nonzero(env, healthy):
    """A spec URL whose publish endpoint answers 404 (a path prefix the publish
    port does not serve) is an error."""
    p = publish_cli(env, "cli-404", "x", spec=env.publish_base + "/not-a-publish-prefix")
    assert p.returncode != 0, (p.stdout, p.stderr)
    assert p.stderr.strip(), "no error message on stderr"
    healthy()


@pytest.mark.beyond_reference
@pytest.mark.parametrize("dash", [False, True], ids=["absent", "dash"])
def test_publish_cli_content_from_stdin(env, backend, prefix, uid, pub, dash):
    """decisions D11: with CONTENT absent or `-`, `gripproxy publish` reads
    standard input (pushpin-publish 1.36 requires CONTENT)."""
    ch = "cli-" + uid
    s, off = held_stream(env, backend, prefix, ch, pub)
    try:
        args = [ch, "-"] if dash else [ch]
        cli_ok(env, *args, input=b"read from standard input")
        assert s.wait_for("read from standard input\n", 5, start=off)
        assert s.body()[off:] == b"read from standard input\n"
    finally:
        s.close()

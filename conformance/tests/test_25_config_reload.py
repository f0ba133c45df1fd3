"""SIGHUP reloads the config file (issue 12 item 1): the keys that can change
live (the client limits and timeouts, the WebSocket limits,
connection_subscription_max, the log level, the routes file's name) take
effect for new connections; every other changed key is logged as needing a
restart; a file that does not parse changes nothing. Pushpin 1.36 does not
reload its config on SIGHUP, so these cases are beyond_reference."""

import os
import signal
import socket
import time

import httpx
import pytest

from harness.client import wait_until
from harness.extra import aux_routes

pytestmark = pytest.mark.beyond_reference


def connect(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def refused(port, source):
    """True when a new connection from `source` gets the 503 of a connection cap
    (before it sent anything); False when it is admitted (nothing within 2 s: on
    a loaded machine the 503 can take longer than a fraction of a second)."""
    s = connect(port, source)
    try:
        s.settimeout(2)
        try:
            data = s.recv(4096)
        except socket.timeout:
            return False
        return data.startswith(b"HTTP/1.1 503")
    finally:
        s.close()


def answered_status(s):
    """Sends `GET /__ready` (the test backend answers it) on the kept-alive
    connection `s` and returns the answer's status code."""
    s.settimeout(5)
    s.sendall(b"GET /__ready HTTP/1.1\r\nHost: example.com\r\n\r\n")
    data = b""
    while b"ready\n" not in data and not data.startswith(b"HTTP/1.1 503"):
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def reload_with(target, conf):
    """Rewrites the instance's config file with `conf` over the harness's base
    keys (AuxTarget._command renders it), then SIGHUP."""
    target.conf = conf
    target._command()
    target.proc.send_signal(signal.SIGHUP)


def log_text(target):
    with open(target.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def metric(port, name):
    for line in httpx.get("http://127.0.0.1:%d/metrics" % port, timeout=5).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def test_sighup_applies_live_limits_to_new_connections_and_keeps_old_ones(env, aux, uid):
    metrics_conf = {"proxy": {"prometheus_port": "127.0.0.1:%d" % env.ports.spare}}
    target = aux("reload", aux_routes(env), dict(metrics_conf))
    held = [connect(target.port, "127.0.0.21") for _ in range(3)]
    extra = []
    try:
        assert not refused(target.port, "127.0.0.21")
        reload_with(target, {**metrics_conf, "gripproxy": {"client_maxconn_per_address": "2"}})
        assert wait_until(lambda: "config reloaded: client_maxconn_per_address 0 -> 2" in log_text(target), 5), log_text(target)[-2000:]
        # A cap switched on counts the connections accepted from then on: two more, then 503.
        # Each connection is counted by its own event loop as it starts, so two connected back to back can be
        # counted in either order; and a connection still waiting in the listen backlog looks like an admitted
        # one. So each is seen admitted (a request on it answered, the connection kept) before the next opens.
        for _ in range(2):
            extra.append(connect(target.port, "127.0.0.21"))
            assert answered_status(extra[-1]) == 200
        assert refused(target.port, "127.0.0.21")
        # Connections accepted before the reload stay open.
        for s in held + extra:
            s.settimeout(0.2)
            with pytest.raises(socket.timeout):
                s.recv(1)
        # A restart-only key is reported, not applied; the live cap is unchanged.
        reload_with(target, {**metrics_conf, "gripproxy": {"client_maxconn_per_address": "2"},
                             "handler": {"message_wait": "1234"}})
        assert wait_until(lambda: "message_wait changed; it takes effect after a restart" in log_text(target), 5)
        # A file that does not parse changes nothing.
        reload_with(target, {**metrics_conf, "gripproxy": {"client_maxconn_per_address": "lots"}})
        assert wait_until(lambda: "config reload rejected" in log_text(target), 5), log_text(target)[-2000:]
        assert metric(env.ports.spare, "config_reload_rejected") == 1
        assert metric(env.ports.spare, "config_reload") == 2
        assert refused(target.port, "127.0.0.21")
        # Lifting the cap admits the address again.
        reload_with(target, {**metrics_conf, "gripproxy": {"client_maxconn_per_address": "0"}})
        assert wait_until(lambda: not refused(target.port, "127.0.0.21"), 5)
        assert target.alive()
    finally:
        for s in held + extra:
            s.close()


def test_sighup_changes_the_log_level(env, aux, uid):
    target = aux("reloadlog", aux_routes(env), {"runner": {"log_level": "2"}})
    before, after = "/before-%s" % uid, "/after-%s" % uid
    httpx.get(target.url(before), timeout=5)
    assert wait_until(lambda: before in log_text(target), 3), "no access line at log_level 2"
    reload_with(target, {"runner": {"log_level": "1"}})
    # The reload's own line is a notice: below warning, so not written at level 1; wait for the level instead.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        tag = "/probe-%s-%d" % (uid, int(time.monotonic() * 1000))
        httpx.get(target.url(tag), timeout=5)
        time.sleep(0.3)
        if tag not in log_text(target):
            break
    else:
        raise AssertionError("access lines still written after log_level 1 was reloaded")
    httpx.get(target.url(after), timeout=5)
    time.sleep(0.3)
    assert after not in log_text(target)
    reload_with(target, {"runner": {"log_level": "3"}})
    assert wait_until(lambda: "config reloaded: log_level warning -> debug" in log_text(target), 5), log_text(target)[-2000:]

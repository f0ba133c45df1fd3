"""Several gripproxy instances and one redis-server, for the scale-out cases
(issue 11, tests/test_20_cluster.py). gripproxy only: Pushpin has no backplane,
so every case using this is `beyond_reference`.

Ports: inside the worker's block (harness/target.py; block = the worker's
client port - 1), all odd, above the ports the rest of the suite uses:

    redis +31
    instance 0: client +33, publish +35, metrics +37
    instance 1: client +39, publish +41, metrics +43
    instance 2: client +45, publish +47, metrics +49

A cluster is started per test and stopped when it ends; a port that is
already taken is a start-up error (check_ports_free), never replaced.

- `RedisServer`: /usr/bin/redis-server on 127.0.0.1 with `--save ''
  --appendonly no`, started and stopped (or SIGKILLed) by PID; a restart uses
  the same port.
- `resp_command` / `RedisSubscriber`: a tiny raw-socket RESP2 client, for
  `PUBSUB NUMSUB` and friends and for watching what reaches Redis.
- `Instance`: one gripproxy with `--backplane URL` (or `[gripproxy]
  backplane=` in its config), the suite's routes file (everything to the
  worker's test backend) and `--prometheus-port`.
- `Cluster`: Redis plus N instances; `describe()` is every log's tail, printed
  when a test fails (see `cluster_case` in the test module).
- Subscriber collectors that read in threads (`WSCollector`) and
  `all_subscribed`, which publishes probes until every stream, SSE reader and
  WebSocket has one, then a marker after which each sees only what follows.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx

from harness.client import Publisher, wait_until
from harness.extra import _merge, _render_ini, gripproxy_bin
from harness.target import SIG_ISS, SIG_KEY, Target, check_ports_free, routes_text

REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
DEFAULT_PREFIX = "gripproxy:"


def block_of(env) -> int:
    return env.ports.client - 1


def redis_port(env) -> int:
    return block_of(env) + 31


def instance_ports(env, i: int):
    """(client, publish, metrics) of instance i (0..2)."""
    b = block_of(env) + 33 + 6 * i
    return b, b + 2, b + 4


def all_cluster_ports(env):
    out = [redis_port(env)]
    for i in range(3):
        out.extend(instance_ports(env, i))
    return out


# --------------------------------------------------------------------------------
# RESP (just enough)


class RedisError(Exception):
    pass


def _encode(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class _Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("redis closed the connection")
            self.buf += d
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("redis closed the connection")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n + 2:]
        return out

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            return RedisError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RedisError("unexpected RESP type %r" % line[:40])


def resp_command(port: int, *args, timeout: float = 3.0, auth: str = None):
    """One command on a fresh connection (after AUTH when given); an error
    reply raises RedisError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.settimeout(timeout)
        reader = _Reader(s)
        if auth is not None:
            s.sendall(_encode("AUTH", auth))
            r = reader.reply()
            if isinstance(r, RedisError):
                raise r
        s.sendall(_encode(*args))
        r = reader.reply()
    if isinstance(r, RedisError):
        raise r
    return r


def _text(v):
    return v.decode() if isinstance(v, bytes) else v


class RedisSubscriber:
    """A test-side SUBSCRIBE (or SSUBSCRIBE) to Redis channels: collects every
    message ((channel, payload bytes)) in a thread, to see what a publish put
    on the wire. It counts in PUBSUB NUMSUB like any subscriber."""

    def __init__(self, port: int, channels, sharded: bool = False, timeout: float = 3.0):
        channels = list(channels)
        self.messages = []
        self._cond = threading.Condition()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reader = _Reader(self.sock)
        cmd = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self.sock.sendall(_encode(cmd, *channels))
        for _ in channels:
            r = self.reader.reply()
            assert isinstance(r, list) and _text(r[0]).lower() in ("subscribe", "ssubscribe"), r
        self.sock.settimeout(None)
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            while True:
                r = self.reader.reply()
                if isinstance(r, list) and len(r) == 3 and _text(r[0]) in ("message", "smessage"):
                    with self._cond:
                        self.messages.append((_text(r[1]), r[2]))
                        self._cond.notify_all()
        except (OSError, ConnectionError, RedisError):
            pass

    def wait_count(self, n: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# --------------------------------------------------------------------------------
# redis-server


class RedisServer:
    def __init__(self, port: int, workdir: str, args=(), password: str = None):
        self.port = port
        self.workdir = workdir
        self.args = list(args)
        self.password = password
        self.proc = None
        self.log_path = os.path.join(workdir, "redis.log")
        self.starts = 0

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d" % self.port

    def start(self, timeout: float = 5.0):
        if not os.access(REDIS_SERVER, os.X_OK):
            raise RuntimeError("%s not found: apt-get install redis-server (Debian's Redis 7.0)" % REDIS_SERVER)
        check_ports_free([self.port])
        os.makedirs(self.workdir, exist_ok=True)
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"---- start %d ----\n" % self.starts)
        log.flush()
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, "--daemonize", "no", "--protected-mode", "no"]
            + (["--requirepass", self.password] if self.password else []) + self.args,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited with %s; log:\n%s" % (self.proc.returncode, self.log_tail()))
            try:
                if self.command("PING", timeout=1) == "PONG":
                    return self
            except (OSError, ConnectionError, RedisError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server not answering PING after %.0fs; log:\n%s"
                                   % (timeout, self.log_tail()))
            time.sleep(0.05)

    def kill(self):
        """SIGKILL by PID: no goodbye to its clients beyond the kernel's."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command(self, *args, timeout: float = 3.0):
        if self.password:
            return resp_command(self.port, *args, timeout=timeout, auth=self.password)
        return resp_command(self.port, *args, timeout=timeout)

    def numsub(self, channel: str) -> int:
        r = self.command("PUBSUB", "NUMSUB", channel)
        return int(r[1])

    def shardnumsub(self, channel: str) -> int:
        r = self.command("PUBSUB", "SHARDNUMSUB", channel)
        return int(r[1])

    def channels(self, pattern: str = "*") -> list:
        return sorted(_text(c) for c in self.command("PUBSUB", "CHANNELS", pattern))

    def shardchannels(self, pattern: str = "*") -> list:
        return sorted(_text(c) for c in self.command("PUBSUB", "SHARDCHANNELS", pattern))

    def subscriber_clients(self) -> list:
        """CLIENT LIST lines of connections with a (s)subscription."""
        out = []
        for line in _text(self.command("CLIENT", "LIST")).splitlines():
            f = dict(kv.split("=", 1) for kv in line.split(" ") if "=" in kv)
            if int(f.get("sub", 0)) + int(f.get("psub", 0)) + int(f.get("ssub", 0) or 0) > 0:
                out.append(line)
        return out

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"


# --------------------------------------------------------------------------------
# gripproxy instances


class Instance(Target):
    """One gripproxy of a cluster. `backplane` is a URL or None (shared-nothing);
    `backplane_in_config` puts it in the config file instead of the flag."""

    def __init__(self, env, index: int, workdir: str, backplane: str = None, conf: dict = None,
                 backplane_in_config: bool = False):
        client, publish, metrics = instance_ports(env, index)
        ports = dataclasses.replace(env.ports, client=client, publish=publish)
        super().__init__("gripproxy", ports, workdir)
        self.env = env
        self.index = index
        self.label = "ABCDEFGH"[index]
        self.port = client
        self.metrics_port = metrics
        self.backplane = backplane
        self.backplane_in_config = backplane_in_config
        self.conf = conf or {}
        self.pub = None

    def url(self, path: str) -> str:
        return self.client_base + path

    def command(self):
        base = {"proxy": {"sig_iss": SIG_ISS, "sig_key": SIG_KEY},
                "gripproxy": {"backend_timeout": os.environ.get("BACKEND_TIMEOUT", "3")}}
        if self.backplane and self.backplane_in_config:
            base["gripproxy"]["backplane"] = self.backplane
        conf = os.path.join(self.workdir, "gripproxy.conf")
        with open(conf, "w") as f:
            f.write(_render_ini(_merge(base, self.conf)))
        cmd = [gripproxy_bin(), "--config", conf,
               "--port", "127.0.0.1:%d" % self.ports.client,
               "--publish-port", "127.0.0.1:%d" % self.ports.publish,
               "--routes", os.path.join(self.workdir, "routes"),
               "--prometheus-port", "127.0.0.1:%d" % self.metrics_port]
        if self.backplane and not self.backplane_in_config:
            cmd += ["--backplane", self.backplane]
        return cmd

    def launch(self):
        """Start the process (no waiting)."""
        check_ports_free([self.ports.client, self.ports.publish, self.metrics_port])
        if os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir, exist_ok=True)
        with open(os.path.join(self.workdir, "routes"), "w") as f:
            f.write(routes_text(self.env.ports))
        cmd = self.command()
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.pub = Publisher(self.publish_base)
        return self

    def wait_serving(self, timeout: float = 15.0):
        """The client listener answers (through the test backend's /__ready)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("instance %s exited with %s during start-up; log:\n%s"
                                   % (self.label, self.proc.returncode, self.log_tail()))
            try:
                r = httpx.get(self.client_base + "/__ready", timeout=2)
                if r.status_code == 200 and r.text == "ready\n":
                    return
                last = "client %s" % r.status_code
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError("instance %s not serving after %.0fs (%s); log:\n%s"
                           % (self.label, timeout, last, self.log_tail()))

    def wait_publish_ok(self, timeout: float = 15.0):
        """An empty publish answers 200 and, with a backplane, backplane_connected is 1."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("instance %s exited with %s; log:\n%s"
                                   % (self.label, self.proc.returncode, self.log_tail()))
            try:
                r = httpx.post(self.publish_base + "/publish/", content=b'{"items":[]}',
                               headers={"Content-Type": "application/json"}, timeout=2)
                connected = self.metric("backplane_connected") if self.backplane else 1
                if r.status_code == 200 and connected == 1:
                    return
                last = "publish %s, backplane_connected %s" % (r.status_code, connected)
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.05)
        raise RuntimeError("instance %s: publish API not ready after %.0fs (%s); log:\n%s"
                           % (self.label, timeout, last, self.log_tail()))

    def start(self, timeout: float = 15.0):
        self.launch()
        self.wait_serving(timeout)
        self.wait_publish_ok(timeout)
        return self

    def metrics(self) -> dict:
        r = httpx.get("http://127.0.0.1:%d/metrics" % self.metrics_port, timeout=3)
        r.raise_for_status()
        out = {}
        for line in r.text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            try:
                out[name.strip()] = float(value)
            except ValueError:
                pass
        return out

    def metric(self, name: str):
        """A metric's value (None when absent)."""
        return self.metrics().get(name)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)

    def stop(self):
        if self.pub:
            self.pub.close()
        super().stop()

    def describe(self, n: int = 60) -> str:
        state = "running" if self.alive() else "exited %s" % (self.proc.returncode if self.proc else "-")
        return "---- instance %s (client %d, publish %d, metrics %d; %s) ----\n%s" % (
            self.label, self.ports.client, self.ports.publish, self.metrics_port, state, self.log_tail(n))


class Cluster:
    """redis-server (unless backplane is False) and n gripproxy instances.

    url_query: appended to the redis:// URL (e.g. "?sharded=1"); userinfo:
    put before the host ("user:pass@"); either may be a list, one per instance.
    redis_args, redis_password: extra redis-server arguments, --requirepass.
    conf: extra config keys for every instance ({section: {key: value}}).
    """

    def __init__(self, env, tag: str, n: int = 3, backplane: bool = True, url_query: str = "",
                 conf: dict = None, backplane_in_config: bool = False, start_redis: bool = True,
                 redis_args=(), redis_password: str = None, userinfo=""):
        assert 1 <= n <= 3
        self.env = env
        self.workdir = os.path.join(env.target.workdir, "cluster-" + tag)
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(self.workdir, exist_ok=True)
        self.redis = RedisServer(redis_port(env), os.path.join(self.workdir, "redis"), redis_args,
                                 redis_password) if backplane else None
        if isinstance(userinfo, str):
            userinfo = [userinfo] * n
        if isinstance(url_query, str):
            url_query = [url_query] * n

        def url(i):
            if not backplane:
                return None
            return "redis://%s127.0.0.1:%d%s" % (userinfo[i], self.redis.port, url_query[i])
        self.instances = [Instance(env, i, os.path.join(self.workdir, "gp%d" % i), url(i), conf,
                                   backplane_in_config) for i in range(n)]
        self.start_redis = start_redis

    def __getitem__(self, i) -> Instance:
        return self.instances[i]

    def __iter__(self):
        return iter(self.instances)

    def start(self, wait_connected: bool = True):
        if self.redis and self.start_redis:
            self.redis.start()
        for inst in self.instances:
            inst.launch()
        for inst in self.instances:
            inst.wait_serving()
        if wait_connected:
            for inst in self.instances:
                inst.wait_publish_ok()
        return self

    def stop(self):
        for inst in self.instances:  # SIGTERM all first, then wait for each
            if inst.alive():
                try:
                    inst.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for inst in self.instances:
            if inst.proc is not None:
                try:
                    inst.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass  # stop() below kills its process group
            inst.stop()
        if self.redis:
            self.redis.stop()

    def describe(self) -> str:
        parts = [inst.describe() for inst in self.instances]
        if self.redis:
            parts.append("---- redis-server :%d (%s) ----\n%s" % (
                self.redis.port, "running" if self.redis.alive() else "down", self.redis.log_tail()))
        return "\n".join(parts)


# --------------------------------------------------------------------------------
# subscribers


class WSCollector:
    """A WebSocket client whose messages are collected in a thread."""

    def __init__(self, port: int, path: str):
        from websockets.sync.client import connect
        self.ws = connect("ws://127.0.0.1:%d%s" % (port, path), compression=None, ping_interval=None,
                          open_timeout=10, close_timeout=3, legacy=True)  # closed by close(), not a `with`
        self.messages = []
        self.closed = False
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            for m in self.ws:
                with self._cond:
                    self.messages.append(m)
                    self._cond.notify_all()
        except Exception:
            pass
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def has(self, pred) -> bool:
        with self._cond:
            return any(pred(m) for m in self.messages)

    def wait(self, pred, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return pred(self.messages)
                self._cond.wait(left)
            return True

    def after(self, marker: str) -> list:
        with self._cond:
            msgs = list(self.messages)
        return msgs[msgs.index(marker) + 1:] if marker in msgs else None

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def all_subscribed(pub: Publisher, channel: str, streams=(), sses=(), wss=(), timeout: float = 10.0,
                   interval: float = 0.3) -> dict:
    """Publish probe items (http-stream `event: probe` SSE text, and ws-message)
    on channel until every stream (StreamCollector), SSE reader (SSEReader) and
    WebSocket (WSCollector) has one, then a final marker, and wait until every
    one has that. Long-polls are not touched (no http-response format).

    Returns {"offsets": [body offset after the marker, per stream],
             "marker": the marker's data, "probes": publishes made}."""
    tag = "probe-%s" % secrets.token_hex(4)

    def item(data):
        return {"channel": channel, "formats": {
            "http-stream": {"content": "event: probe\ndata: %s\n\n" % data},
            "ws-message": {"content": data}}}

    def stream_has(s, data):
        return ("data: %s\n" % data).encode() in s.body()

    def sse_has(r, data):
        with r._cond:
            return any(e.event == "probe" and e.data == data for e in r.events)

    def sse_any(r):
        with r._cond:
            return any(e.event == "probe" and e.data.startswith(tag) for e in r.events)

    n = 0
    deadline = time.monotonic() + timeout
    while True:
        n += 1
        pub.items(item("%s-%d" % (tag, n)))

        def done():
            return (all(("data: %s-" % tag).encode() in s.body() for s in streams)
                    and all(sse_any(r) for r in sses)
                    and all(w.has(lambda m: isinstance(m, str) and m.startswith(tag)) for w in wss))
        if wait_until(done, interval):
            break
        if time.monotonic() > deadline:
            missing = ([("stream", s.body()[-200:]) for s in streams if ("data: %s-" % tag).encode() not in s.body()]
                       + [("sse", len(r.events)) for r in sses if not sse_any(r)]
                       + [("ws", w.messages[-3:]) for w in wss
                          if not w.has(lambda m: isinstance(m, str) and m.startswith(tag))])
            raise AssertionError("after %d probes in %.0fs, not every subscriber has one: %r"
                                 % (n, timeout, missing))
    marker = "%s-end" % tag
    pub.items(item(marker))
    ok = wait_until(lambda: (all(stream_has(s, marker) for s in streams)
                             and all(sse_has(r, marker) for r in sses)
                             and all(w.has(lambda m: m == marker) for w in wss)), 5.0)
    assert ok, "the probe marker did not reach every subscriber"
    needle = ("data: %s\n\n" % marker).encode()
    offsets = []
    for s in streams:
        b = s.body()
        offsets.append(b.index(needle) + len(needle))
    return {"offsets": offsets, "marker": marker, "probes": n}


def sse_after(reader, marker: str) -> list:
    """The (event, data) of a reader's events after the probe marker."""
    with reader._cond:
        evs = list(reader.events)
    for i, e in enumerate(evs):
        if e.event == "probe" and e.data == marker:
            return [(x.event, x.data) for x in evs[i + 1:]]
    return None

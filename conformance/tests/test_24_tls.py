"""TLS to clients (issue 12 item 1): `[runner] https_ports` with the
certificates of a folder of `NAME.crt` + `NAME.key` pairs, chosen by SNI with
`default` otherwise, reloaded when the files change and on SIGHUP. On TLS
connections `ssl=yes` routes match and `X-Forwarded-Proto: https` is set, and
`wss://` works for both WebSocket kinds. The certificates are made with the
openssl command for each test. A second instance listens for TLS on the
worker's spare port; its certificate folder is `[gripproxy] tls_certs`
(Pushpin reads only `runner/certs` beside its config, so these cases are
beyond_reference)."""

import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest
from websockets.sync.client import connect as ws_client

from harness.backend import Resp
from harness.client import wait_until
from harness.extra import aux_routes
from harness.ws import echo_handler

pytestmark = pytest.mark.beyond_reference


def make_pair(folder, name, common_name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=%s" % common_name, "-addext", "subjectAltName=DNS:%s" % common_name,
                    "-keyout", os.path.join(folder, name + ".key.tmp"),
                    "-out", os.path.join(folder, name + ".crt.tmp")],
                   check=True, capture_output=True)
    # Moved into place key first, so a reload never sees a new certificate with the old key.
    os.replace(os.path.join(folder, name + ".key.tmp"), os.path.join(folder, name + ".key"))
    os.replace(os.path.join(folder, name + ".crt.tmp"), os.path.join(folder, name + ".crt"))
    with open(os.path.join(folder, name + ".crt")) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def client_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def presented(port, server_name):
    """The DER certificate the server presents for `server_name` (None: no SNI)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context().wrap_socket(raw, server_hostname=server_name) as s:
            return s.getpeercert(binary_form=True)


def https_get(port, path, server_name="example.test", headers=()):
    """A GET over TLS; returns (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context().wrap_socket(raw, server_hostname=server_name) as s:
            lines = ["GET %s HTTP/1.1" % path, "Host: %s" % server_name, "Connection: close"]
            lines += ["%s: %s" % h for h in headers]
            s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                data += d
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    hs = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        hs[k.strip().lower()] = v.strip()
    return status, hs, body


@pytest.fixture
def certs():
    with tempfile.TemporaryDirectory(prefix="gp-tls-") as folder:
        yield folder


def tls_instance(env, aux, certs, tag, routes=(), ws_backend_port=None):
    lines = list(routes)
    lines.append("*,path_beg=/ws/ 127.0.0.1:%d,over_http" % env.ports.backend)
    if ws_backend_port:
        lines.append("*,path_beg=/wspass/ 127.0.0.1:%d" % ws_backend_port)
    return aux(tag, aux_routes(env, *lines),
               {"runner": {"https_ports": "127.0.0.1:%d" % env.ports.spare}, "gripproxy": {"tls_certs": certs}})


def test_certificate_chosen_by_sni_default_otherwise(env, backend, prefix, aux, certs):
    default = make_pair(certs, "default", "default.test")
    named = make_pair(certs, "sni.test", "sni.test")
    tls_instance(env, aux, certs, "sni")
    port = env.ports.spare
    assert presented(port, "sni.test") == named
    assert presented(port, "SNI.Test") == named  # server names compare case-insensitively
    assert presented(port, "other.test") == default
    assert presented(port, None) == default


def test_tls_requests_reach_the_backend_as_https(env, backend, prefix, aux, certs):
    make_pair(certs, "default", "default.test")
    backend.on(prefix + "any", Resp(200, body=b"from the backend\n"))
    target = tls_instance(env, aux, certs, "proto", routes=["*,path_beg=%ssecure,ssl=yes test" % prefix])
    status, _, body = https_get(env.ports.spare, prefix + "any")
    assert (status, body) == (200, b"from the backend\n")
    assert backend.requests(prefix + "any")[-1].header("X-Forwarded-Proto") == "https"
    # ssl=yes matches on TLS only: the built-in test target answers there, the backend over plain HTTP.
    status, _, body = https_get(env.ports.spare, prefix + "secure")
    assert (status, body) == (200, b"Hello from the Pushpin test handler!\n")
    import httpx
    r = httpx.get(target.url(prefix + "any"), timeout=10)
    assert (r.status_code, r.text) == (200, "from the backend\n")
    assert backend.requests(prefix + "any")[-1].header("X-Forwarded-Proto") is None
    r = httpx.get(target.url(prefix + "secure"), timeout=10)
    assert "Pushpin test handler" not in r.text


def test_wss_for_both_websocket_kinds(env, backend, ws_backend, uid, aux, certs):
    make_pair(certs, "default", "default.test")
    backend.on("/ws/%s/" % uid, echo_handler())

    def echo(ws):
        for m in ws:
            ws.send(m)
    ws_backend.on("/wspass/%s/" % uid, echo)
    tls_instance(env, aux, certs, "wss", ws_backend_port=env.ports.ws_backend)
    for path in ("/ws/%s/over-http" % uid, "/wspass/%s/pass" % uid):
        with ws_client("wss://127.0.0.1:%d%s" % (env.ports.spare, path), ssl=client_context(),
                       server_hostname="default.test", compression=None, ping_interval=None,
                       open_timeout=10, close_timeout=5) as ws:
            ws.send("secure %s" % path)
            assert ws.recv(timeout=5) == "secure %s" % path


def test_certificates_reload_when_files_change_and_on_sighup(env, backend, prefix, aux, certs):
    make_pair(certs, "default", "default.test")
    first = make_pair(certs, "sni.test", "sni.test")
    target = tls_instance(env, aux, certs, "reload")
    port = env.ports.spare
    backend.on(prefix + "ok", Resp(200, body=b"ok\n"))
    assert presented(port, "sni.test") == first
    # An established TLS connection, kept alive across the reload.
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    kept = client_context().wrap_socket(raw, server_hostname="sni.test")
    try:
        time.sleep(1.1)  # a new modification time, whatever the file system's resolution
        second = make_pair(certs, "sni.test", "sni.test")
        assert second != first
        assert wait_until(lambda: presented(port, "sni.test") == second, 5), "the new certificate was not loaded"
        # A broken new pair is logged and the working one stays.
        time.sleep(1.1)
        with open(os.path.join(certs, "sni.test.key"), "w") as f:
            f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        assert wait_until(lambda: "sni.test" in target.log_tail(200) and "not loaded" in target.log_tail(200), 5)
        assert presented(port, "sni.test") == second
        # SIGHUP reloads too: a pair written back, then the signal right away.
        time.sleep(1.1)
        third = make_pair(certs, "sni.test", "sni.test")
        target.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: presented(port, "sni.test") == third, 5)
        # The connection made before every reload still works, with its first certificate.
        assert kept.getpeercert(binary_form=True) == first
        kept.sendall(b"GET %sok HTTP/1.1\r\nHost: sni.test\r\n\r\n" % prefix.encode())
        data = b""
        while b"ok\n" not in data:
            d = kept.recv(65536)
            assert d, "the established TLS connection was closed"
            data += d
        assert data.startswith(b"HTTP/1.1 200 ")
    finally:
        kept.close()


def test_no_default_certificate_is_a_startup_error(env, aux, certs):
    make_pair(certs, "only.test", "only.test")
    with pytest.raises(Exception):
        tls_instance(env, aux, certs, "nodefault")


def test_plain_http_on_the_tls_port_is_refused_and_others_are_served(env, backend, prefix, aux, certs):
    make_pair(certs, "default", "default.test")
    backend.on(prefix + "ok", Resp(200, body=b"ok\n"))
    tls_instance(env, aux, certs, "plain")
    with socket.create_connection(("127.0.0.1", env.ports.spare), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
    status, _, body = https_get(env.ports.spare, prefix + "ok")
    assert (status, body) == (200, b"ok\n")


class TLSBackend:
    """A small HTTPS backend on `port` with a self-signed certificate: answers
    every GET with the Host it was sent."""

    def __init__(self, port, folder):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        import threading
        make_pair(folder, "backend", "backend.test")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = ("tls backend saw Host %s\n" % self.headers.get("Host")).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(folder, "backend.crt"), os.path.join(folder, "backend.key"))
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def test_tls_to_backends_insecure_and_verified(env, backend, prefix, aux, certs):
    """Route targets with `ssl` speak TLS to the backend; `insecure` skips
    verification (a self-signed backend works), without it the certificate is
    verified (502); `host=` sets the Host sent."""
    tls_backend = TLSBackend(env.ports.spare, certs)
    try:
        port = env.ports.spare
        target = aux("tlsbackend", aux_routes(
            env,
            "*,path_beg=%sinsecure 127.0.0.1:%d,ssl,insecure,host=internal.example" % (prefix, port),
            "*,path_beg=%sverified 127.0.0.1:%d,ssl" % (prefix, port)))
        import httpx
        with httpx.Client(timeout=15) as c:
            for _ in range(3):  # kept-alive backend connections reuse the client context
                r = c.get(target.url(prefix + "insecure"))
                assert (r.status_code, r.text) == (200, "tls backend saw Host internal.example\n")
            r = c.get(target.url(prefix + "verified"))
            assert r.status_code == 502, (r.status_code, r.text)
    finally:
        tls_backend.stop()

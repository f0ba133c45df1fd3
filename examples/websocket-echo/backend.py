#!/usr/bin/env python3
"""A stateless WebSocket echo backend for GripProxy, in the style of faas-grip's echo function.

It never holds a connection: every piece of WebSocket activity arrives as one short HTTP POST
(WebSocket-over-HTTP, `Content-Type: application/websocket-events`), and the answer says what to send
back. It accepts OPEN (and subscribes the connection to channel "echo", so a publish reaches it),
echoes every TEXT and BINARY message, and answers CLOSE with CLOSE. Standard library only.

    python3 examples/websocket-echo/backend.py 8000
    gripproxy --route "* localhost:8000,over_http"
    python3 -m websockets ws://localhost:7999/      # pip install websockets; type a line, see it echoed
"""
import http.server
import sys


def decode_events(body: bytes):
    """Parses `TYPE[ hexlen]\\r\\n[content\\r\\n]` events."""
    events, i = [], 0
    while i < len(body):
        end = body.index(b"\r\n", i)
        line = body[i:end].decode()
        i = end + 2
        if " " in line:
            kind, size = line.split(" ", 1)
            size = int(size, 16)
            events.append((kind, body[i:i + size]))
            i += size + 2
        else:
            events.append((line, None))
    return events


def encode_events(events) -> bytes:
    out = b""
    for kind, content in events:
        if content is None:
            out += kind.encode() + b"\r\n"
        else:
            out += b"%s %x\r\n%s\r\n" % (kind.encode(), len(content), content)
    return out


class EchoFunction(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        if self.headers.get("Content-Type", "").split(";")[0] != "application/websocket-events":
            self.send_error(400, "expected application/websocket-events")
            return
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        out = []
        for kind, content in decode_events(body):
            if kind == "OPEN":
                out.append(("OPEN", None))
                # A control message: subscribe this connection to channel "echo" (grip extension accepted below).
                out.append(("TEXT", b'c:{"type": "subscribe", "channel": "echo"}'))
            elif kind in ("TEXT", "BINARY"):
                # With the grip extension, messages for the client carry the "m:" prefix.
                out.append((kind, b"m:" + content))
            elif kind == "CLOSE":
                out.append(("CLOSE", content))
        reply = encode_events(out)
        self.send_response(200)
        self.send_header("Content-Type", "application/websocket-events")
        self.send_header("Sec-WebSocket-Extensions", "grip")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"WebSocket-over-HTTP echo backend on 127.0.0.1:{port}", flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), EchoFunction).serve_forever()

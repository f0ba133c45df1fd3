#!/usr/bin/env python3
"""A tiny GRIP backend for the cluster example. Standard library only.

Every answer tells GripProxy to hold the client on channel "test" (or the channel named by `?channel=`), and says
which GripProxy instance the request came through (each instance's routes add `X-Instance`):

    GET /stream     a stream: "[stream opened via gp2]", then every published http-stream item
    GET /sse        Server-Sent Events on the same channel
    GET /response   a long-poll: the first published http-response item, or a timeout answer after 55 s
    /ws             WebSocket-over-HTTP (route option over_http): accepted, subscribed to the channel with a
                    control message, every message echoed
    GET /           a short help text

    python3 examples/cluster/backend.py 8000
"""
import http.server
import json
import sys
import urllib.parse

KEEP_ALIVE = "\\n; format=cstring; timeout=20"  # a newline every 20 s on an idle stream keeps HAProxy's timeouts happy


def decode_events(body: bytes):
    """Parses WebSocket-over-HTTP events: `TYPE[ hexlen]\\r\\n[content\\r\\n]`."""
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


class Backend(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, headers, body: bytes):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        channel = urllib.parse.parse_qs(url.query).get("channel", ["test"])[0]
        via = self.headers.get("X-Instance", "?")
        if url.path == "/stream":
            self.answer(200, [("Content-Type", "text/plain"), ("Grip-Hold", "stream"), ("Grip-Channel", channel),
                              ("Grip-Keep-Alive", KEEP_ALIVE)],
                        b"[stream opened via %s on channel %s]\n" % (via.encode(), channel.encode()))
        elif url.path == "/sse":
            self.answer(200, [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                              ("Grip-Hold", "stream"), ("Grip-Channel", channel),
                              ("Grip-Keep-Alive", ":\\n\\n; format=cstring; timeout=20")],
                        b"event: opened\ndata: %s\n\n" % json.dumps({"via": via, "channel": channel}).encode())
        elif url.path == "/response":
            self.answer(200, [("Content-Type", "text/plain"), ("Grip-Hold", "response"), ("Grip-Channel", channel),
                              ("Grip-Timeout", "55")],
                        b"[nothing published within 55 s; asked via %s]\n" % via.encode())
        else:
            self.answer(200, [("Content-Type", "text/plain")],
                        b"cluster example backend, reached via %s: try /stream, /sse, /response, or a WebSocket "
                        b"on /ws\n" % via.encode())

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Type", "").split(";")[0] != "application/websocket-events":
            self.answer(400, [("Content-Type", "text/plain")], b"expected application/websocket-events\n")
            return
        channel = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("channel", ["test"])[0]
        via = self.headers.get("X-Instance", "?")
        out = []
        for kind, content in decode_events(body):
            if kind == "OPEN":
                out.append(("OPEN", None))
                sub = json.dumps({"type": "subscribe", "channel": channel})
                out.append(("TEXT", b"c:" + sub.encode()))
                out.append(("TEXT", b"m:[websocket opened via %s on channel %s]" % (via.encode(), channel.encode())))
            elif kind in ("TEXT", "BINARY"):
                out.append((kind, b"m:" + content))  # grip extension: messages for the client carry "m:"
            elif kind == "CLOSE":
                out.append(("CLOSE", content))
        self.answer(200, [("Content-Type", "application/websocket-events"), ("Sec-WebSocket-Extensions", "grip")],
                    encode_events(out))

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Backend)
    server.daemon_threads = True
    print("cluster example backend on 127.0.0.1:%d" % port, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass

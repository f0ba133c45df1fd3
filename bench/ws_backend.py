#!/usr/bin/env python3
"""A minimal WebSocket-over-HTTP GRIP backend for the benchmark's `ws` mode (standard library only).

    ws_backend.py --port PORT [--stats FILE] [--max-seconds S]

Every request is a POST of `application/websocket-events` (shared/spec/websocket-over-http.md 2-4).
- A body that starts with OPEN is answered `OPEN` plus a control message subscribing the connection to the
  channel named by the request's `channel=` query parameter (default `test`), with
  `Sec-WebSocket-Extensions: grip` so that the proxy honours control messages.
- A body with a CLOSE event is answered with the same CLOSE (as GRIP libraries do), so the proxy completes
  the close handshake.
- Anything else (TEXT, PING, DISCONNECT, keep-alive requests with no events) gets an empty 200
  `application/websocket-events` body.

HTTP/1.1 with keep-alive, one asyncio loop. Counts of requests and events are written to --stats (JSON) when
the process gets SIGTERM or SIGINT, or reaches --max-seconds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.parse

EVENTS_TYPE = b"application/websocket-events"
stats = {"requests": 0, "OPEN": 0, "TEXT": 0, "BINARY": 0, "PING": 0, "PONG": 0, "CLOSE": 0, "DISCONNECT": 0,
         "empty": 0, "bad": 0, "connections": 0}


def parse_events(body: bytes) -> list[tuple[str, bytes | None]]:
    """[(type, content or None)]; raises ValueError on a malformed body."""
    out, i = [], 0
    while i < len(body):
        eol = body.index(b"\r\n", i)
        line = body[i:eol].decode("ascii")
        i = eol + 2
        if " " in line:
            kind, hexlen = line.split(" ", 1)
            n = int(hexlen, 16)
            content = body[i:i + n]
            if len(content) != n or body[i + n:i + n + 2] != b"\r\n":
                raise ValueError("truncated event")
            i += n + 2
            out.append((kind, content))
        else:
            out.append((line, None))
    return out


def event(kind: str, content: bytes | None = None) -> bytes:
    if content is None:
        return kind.encode() + b"\r\n"
    return b"%s %x\r\n%s\r\n" % (kind.encode(), len(content), content)


def answer(target: str, body: bytes) -> tuple[bytes, list[str]]:
    try:
        events = parse_events(body)
    except (ValueError, UnicodeDecodeError):
        stats["bad"] += 1
        return b"", []
    if not events:
        stats["empty"] += 1
    for kind, _ in events:
        if kind in stats:
            stats[kind] += 1
    if events and events[0][0] == "OPEN":
        query = urllib.parse.urlsplit(target).query
        channel = urllib.parse.parse_qs(query).get("channel", ["test"])[0]
        control = b"c:" + json.dumps({"type": "subscribe", "channel": channel}, separators=(",", ":")).encode()
        return event("OPEN") + event("TEXT", control), ["Sec-WebSocket-Extensions: grip"]
    for kind, content in events:
        if kind == "CLOSE":
            return event("CLOSE", content), []
    return b"", []


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request: (target, headers with lower-case names, body), or None when the client is gone.
    Shared with bench/soak.py's SSE backend."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    target = parts[1] if len(parts) > 1 else "/"
    headers = {}
    for h in lines[1:]:
        if ":" in h:
            k, v = h.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(n) if n else b""
    return target, headers, body


class BackendProtocol(asyncio.Protocol):
    """One proxy connection: HTTP/1.1 requests parsed from the buffer as they arrive, answered in order. A protocol
    rather than streams: 19,000 `CLOSE`/`DISCONNECT` events at once cost the stream-based version ~140 us of
    CPU each, on the same 2 cores as the proxy it measures."""

    MAX_HEAD = 1 << 16

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stats["connections"] += 1
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > self.MAX_HEAD:
                    self.transport.close()
                return
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            target = parts[1] if len(parts) > 1 else "/"
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "connection":
                    close = value.strip().lower() == "close"
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            stats["requests"] += 1
            out, extra = answer(target, body)
            resp = ["HTTP/1.1 200 OK", "Content-Type: " + EVENTS_TYPE.decode(), f"Content-Length: {len(out)}"] + extra
            if close:
                resp.append("Connection: close")
            self.transport.write(("\r\n".join(resp) + "\r\n\r\n").encode() + out)
            if close:
                self.transport.close()
                self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stats", help="write request/event counts (JSON) here on exit")
    ap.add_argument("--max-seconds", type=float, default=7200)
    args = ap.parse_args()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BackendProtocol, "127.0.0.1", args.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def write_stats() -> None:
        if args.stats:
            with open(args.stats, "w") as f:
                json.dump(stats, f)
    # SIGUSR1: write the counts now (the bench reads them between phases).
    loop.add_signal_handler(signal.SIGUSR1, write_stats)
    print(f"ws_backend: listening on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    write_stats()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

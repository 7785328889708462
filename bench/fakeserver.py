"""A loopback fake of N feed servers, run in its own process so its CPU is never counted.

``python -m bench.fakeserver --n 10000 [--port 0]`` prints ``PORT <n>`` once it listens, then
serves until killed (or its stdin closes):

- ``GET /feed/<i>``: feed ``i`` (0 <= i < N) at its current version, ~30 KB of RSS
  (:mod:`bench.corpus`), with ``ETag`` and ``Last-Modified``; ``If-None-Match`` (first) and
  ``If-Modified-Since`` answer ``304 Not Modified`` when nothing changed;
- ``GET /_advance?fraction=0.05&seed=1``: move a deterministic random ``fraction`` of the
  feeds to their next version (a new body, ETag and Last-Modified);
- ``GET /_stats`` (JSON: requests, ok, not_modified, bytes sent, CPU seconds of this process)
  and ``GET /_reset``: zero the counters.

A small HTTP/1.1 keep-alive server on a bare :class:`asyncio.Protocol` rather than aiohttp's:
it costs a few tens of microseconds per answer, so on a 2-core machine it leaves the other core
to the process being measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

from bench import corpus

__all__ = ["FeedServer", "main"]


class FeedServer:
    """The feeds' versions and what was sent."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.versions = [0] * n
        self._modified: dict[int, bytes] = {}
        self.reset()

    def reset(self) -> None:
        self.requests = self.ok = self.not_modified = self.other = self.bytes = 0

    def advance(self, fraction: float, seed: int) -> int:
        """Move ``fraction`` of the feeds (chosen by ``seed``) to their next version."""
        count = round(self.n * fraction)
        for i in random.Random(seed).sample(range(self.n), count):
            self.versions[i] += 1
        return count

    def last_modified(self, version: int) -> bytes:
        value = self._modified.get(version)
        if value is None:
            value = self._modified[version] = corpus.last_modified(version).encode()
        return value

    def stats(self) -> dict[str, float]:
        return {
            "requests": self.requests, "ok": self.ok, "not_modified": self.not_modified,
            "other": self.other, "bytes": self.bytes, "cpu_seconds": time.process_time(),
        }

    def answer(self, target: str, headers: dict[bytes, bytes]) -> bytes:
        """The whole HTTP response (head and body) for one GET."""
        if target.startswith("/feed/"):
            try:
                i = int(target[6:])
            except ValueError:
                i = -1
            if 0 <= i < self.n:
                return self._feed(i, headers)
            return self._plain(404, b"Not Found", b"no such feed\n")
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/_advance":
            count = self.advance(float(query.get("fraction", "0.05")), int(query.get("seed", "1")))
            return self._json({"changed": count})
        if parts.path == "/_stats":
            return self._json(self.stats())
        if parts.path == "/_reset":
            self.reset()
            return self._json({"ok": True})
        return self._plain(404, b"Not Found", b"not found\n")

    def _feed(self, i: int, headers: dict[bytes, bytes]) -> bytes:
        version = self.versions[i]
        etag = b'"%x-%d"' % (i, version)
        modified = self.last_modified(version)
        match = headers.get(b"if-none-match")
        if match is not None:
            fresh = etag in (m.strip() for m in match.split(b","))
        else:
            fresh = headers.get(b"if-modified-since") == modified
        common = (
            b"Date: " + _now() + b"\r\nServer: nginx\r\nETag: " + etag
            + b"\r\nLast-Modified: " + modified
            + b"\r\nVary: Accept-Encoding\r\nCache-Control: max-age=0, must-revalidate\r\n"
        )
        if fresh:
            self.not_modified += 1
            return b"HTTP/1.1 304 Not Modified\r\n" + common + b"\r\n"
        body = corpus.body(i, version)
        self.ok += 1
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml; charset=UTF-8\r\n"
            + common
            + b'Link: <https://example.go.id/wp-json/>; rel="https://api.w.org/"\r\n'
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )

    def _json(self, value: object) -> bytes:
        return self._plain(200, b"OK", json.dumps(value).encode(), b"application/json")

    def _plain(
        self, status: int, phrase: bytes, body: bytes, ctype: bytes = b"text/plain"
    ) -> bytes:
        if status != 200:
            self.other += 1
        return (
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
            % (status, phrase, ctype, len(body))
        ) + body


_date_cache: tuple[int, bytes] = (0, b"")


def _now() -> bytes:
    global _date_cache
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, formatdate(second, usegmt=True).encode())
    return _date_cache[1]


class _Connection(asyncio.Protocol):
    """One keep-alive connection: requests are read whole (GET only, no body), answered in
    order."""

    def __init__(self, server: FeedServer) -> None:
        self.server = server
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
            lines = head.split(b"\r\n")
            try:
                _method, target, _version = lines[0].split(b" ", 2)
            except ValueError:
                assert self.transport is not None
                self.transport.close()
                return
            headers: dict[bytes, bytes] = {}
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                headers[name] = value.strip()
                if name == b"connection" and value.strip().lower() == b"close":
                    close = True
            answer = self.server.answer(target.decode("latin-1"), headers)
            self.server.requests += 1
            self.server.bytes += len(answer)
            assert self.transport is not None
            self.transport.write(answer)
            if close:
                self.transport.close()
                return


async def serve(n: int, host: str, port: int) -> None:
    """Serve until stdin closes (the parent died or closed it)."""
    server = FeedServer(n)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(lambda: _Connection(server), host, port, backlog=4096)
    bound = listener.sockets[0].getsockname()[1]
    print(f"PORT {bound}", flush=True)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.read()  # EOF: the parent is gone
    listener.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of feeds")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.n, args.host, args.port))


if __name__ == "__main__":
    main()

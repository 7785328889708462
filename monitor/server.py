"""The HTTP side of pantau: an aiohttp app serving /metrics, /healthz and /readyz.

``/healthz`` answers as long as the event loop serves requests: that is all it proves.
``/readyz`` asks a :class:`Readiness` (the daemon) whether the store, the config and the
plugins are ready, and says which part is not. ``/metrics`` renders the registry of
:class:`monitor.metrics.Metrics` in the Prometheus text format, gzipped when the client asks
(from the cached exposition: only what changed since the last scrape is formatted and
compressed again).

Access logs go through structlog at debug level (never aiohttp's own format on stdout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
from typing import Any, Protocol

import structlog
from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger

from monitor.board import BoardSource, add_board_routes
from monitor.clock import Clock, SystemClock
from monitor.deflater import Deflater
from monitor.metrics import Metrics, gzip_segments

__all__ = [
    "CLOCK_KEY",
    "CONTENT_TYPE",
    "DEFLATER_KEY",
    "METRICS_KEY",
    "READINESS_KEY",
    "Readiness",
    "ServerThread",
    "accepts_gzip",
    "bound_port",
    "make_app",
    "start_server",
]

#: The Prometheus text format pantau serves (prometheus_client >= 0.22 calls 1.0.0 "latest").
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A render (and gzip) slower than this (seconds) is logged as a warning.
SLOW_RENDER = 0.05
#: Bodies smaller than this are not worth gzipping.
_GZIP_MIN = 1024

log = structlog.get_logger("pantau.server")


class Readiness(Protocol):
    """What /readyz asks: overall readiness and its parts (``store``, ``config``, ``plugins``)."""

    def ready(self) -> tuple[bool, dict[str, bool]]: ...


METRICS_KEY = web.AppKey("metrics", Metrics)
READINESS_KEY = web.AppKey("readiness", Readiness)
CLOCK_KEY = web.AppKey("clock", Clock)
DEFLATER_KEY = web.AppKey("deflater", Deflater)

_INDEX = """pantau: watches agencies' public channels

/metrics  Prometheus metrics
/healthz  200 while the daemon's event loop serves
/readyz   200 when store, config and plugins are ready; 503 names what is not
"""


def make_app(
    metrics: Metrics,
    readiness: Readiness,
    *,
    clock: Clock | None = None,
    board: BoardSource | None = None,
) -> web.Application:
    """The aiohttp application. ``clock`` times /metrics renders (default: the system clock).

    With a ``board`` source, ``/`` is the public board and ``/api/v1/agencies`` its JSON twin
    (see :mod:`monitor.board`); without one, ``/`` is a plain-text index.
    """
    app = web.Application()
    app[METRICS_KEY] = metrics
    app[READINESS_KEY] = readiness
    app[CLOCK_KEY] = clock if clock is not None else SystemClock()
    deflater = Deflater(metrics)
    app[DEFLATER_KEY] = deflater

    async def stop_deflater(app: web.Application) -> None:
        await asyncio.to_thread(deflater.stop)

    app.on_cleanup.append(stop_deflater)
    if board is not None:
        add_board_routes(app, board)
    else:
        app.router.add_get("/", _index)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def _index(request: web.Request) -> web.Response:
    return web.Response(text=_INDEX)


async def _healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(request: web.Request) -> web.Response:
    try:
        ready, checks = request.app[READINESS_KEY].ready()
    except Exception:
        log.exception("readiness check failed")
        return web.json_response(
            {"ready": False, "checks": {}, "failing": [], "error": "readiness check failed"},
            status=503,
        )
    checks = {name: bool(ok) for name, ok in checks.items()}
    failing = sorted(name for name, ok in checks.items() if not ok)
    body: dict[str, Any] = {"ready": bool(ready), "checks": checks}
    if not ready:
        body["failing"] = failing
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    """The exposition, from the cached segments (see :mod:`monitor.exposition`): gzipped
    when the client accepts gzip, else joined.

    The answer makes no zlib call: segments that changed since they were last deflated go
    out stored (uncompressed inside the gzip stream) and are compressed after the answer on
    a thread of their own (:mod:`monitor.deflater`), for the next scrape; the CRC is chained
    from the cached segments' own (:mod:`monitor.crc`).
    """
    clock = request.app[CLOCK_KEY]
    started = clock.monotonic()
    metrics = request.app[METRICS_KEY]
    compress = accepts_gzip(request)
    segments = metrics.segments(deflate=False)
    headers = {hdrs.CONTENT_TYPE: CONTENT_TYPE}
    if compress and sum(len(raw) for raw, _ in segments) >= _GZIP_MIN:
        body = gzip_segments(segments, compress=False)
        headers[hdrs.CONTENT_ENCODING] = "gzip"
        headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        request.app[DEFLATER_KEY].start()
    else:
        body = b"".join(raw for raw, _ in segments)
    elapsed = clock.monotonic() - started
    if elapsed > SLOW_RENDER:
        log.warning("slow metrics render", seconds=round(elapsed, 4), bytes=len(body))
    return web.Response(body=body, headers=headers)


def accepts_gzip(request: web.Request) -> bool:
    """Whether Accept-Encoding lists gzip with a non-zero quality."""
    for part in request.headers.get(hdrs.ACCEPT_ENCODING, "").split(","):
        coding, *params = part.split(";")
        if coding.strip().lower() != "gzip":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value) > 0
                except ValueError:
                    return False
        return True
    return False


class _AccessLogger(AbstractAccessLogger):
    """aiohttp's access log, as structlog debug events."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.debug(
            "http request",
            method=request.method,
            path=request.path,
            status=response.status,
            seconds=round(time, 4),
        )


async def start_server(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0,
    sock: socket.socket | None = None,
) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (port 0: any free port, see :func:`bound_port`), or on
    ``sock``, a listening socket already bound to that address (see :mod:`monitor.early`).

    Returns the runner; the caller stops the server with ``await runner.cleanup()``.
    """
    runner = web.AppRunner(
        app, access_log_class=_AccessLogger, handle_signals=False,
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site: web.BaseSite = (
            web.TCPSite(runner, host, port) if sock is None else web.SockSite(runner, sock)
        )
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("serving", host=host, port=bound_port(runner))
    return runner


class ServerThread:
    """The HTTP server on a thread and event loop of its own.

    The daemon's event loop runs every check; a burst of them (the first sweep of thousands
    of new feeds) keeps it busy for long stretches, and a request served there would wait
    behind all of it. On its own loop a scrape waits at most for the GIL (handed over every
    few milliseconds). What the handlers read is safe from here: the metrics cache takes a
    lock and copies the states mapping; ``AccountState`` objects are replaced, never mutated;
    the board and the readiness check only read attributes and look keys up; the
    prometheus_client metrics are thread-safe.
    """

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self, app: web.Application, host: str, port: int, *,
                    sock: socket.socket | None = None, shutdown_timeout: float = 5.0) -> None:
        """Start serving; raises what :func:`start_server` raises (address in use...)."""
        started: concurrent.futures.Future[int] = concurrent.futures.Future()

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                runner = loop.run_until_complete(
                    start_server(app, host, port, sock=sock, shutdown_timeout=shutdown_timeout)
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                started.set_exception(exc)
                loop.close()
                return
            self._loop = loop
            started.set_result(bound_port(runner))
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=main, name="pantau-http", daemon=True)
        self._thread.start()
        self.port = await asyncio.wrap_future(started)

    async def close(self) -> None:
        """Stop serving (in-flight requests get the shutdown timeout) and end the thread."""
        loop, thread = self._loop, self._thread
        self._loop = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            await asyncio.to_thread(thread.join, 30)


def bound_port(runner: web.AppRunner) -> int:
    """The TCP port the runner's first site listens on."""
    addresses = runner.addresses
    if not addresses:
        raise RuntimeError("the server is not listening")
    return int(addresses[0][1])

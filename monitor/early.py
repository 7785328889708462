"""Serving the snapshot while the daemon starts (see :mod:`monitor.snapshot`).

:func:`serve_snapshot` binds the listen address itself and serves ``/metrics`` from the
snapshot, ``/healthz`` (alive) and ``/readyz`` (503: starting) on a duplicate of the listening
socket. When config and store are loaded, the daemon starts its real server on the original
socket and only then stops this one, so a scrape never finds the port closed.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import structlog
from aiohttp import hdrs, web

from monitor.server import CONTENT_TYPE, accepts_gzip
from monitor.snapshot import Snapshot

__all__ = ["EarlyServer", "serve_snapshot"]

log = structlog.get_logger("pantau.server")

_STARTING = {"ready": False, "checks": {"started": False}, "failing": ["started"]}


@dataclass
class EarlyServer:
    """The snapshot's server and the listening socket the real server takes over."""

    runner: web.AppRunner
    sock: socket.socket
    host: str
    port: int

    async def close(self) -> None:
        await self.runner.cleanup()

    def release(self) -> None:
        """Close the listening socket too (the real server did not take it over)."""
        self.sock.close()


def _bind(host: str, port: int) -> socket.socket | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name may resolve to several addresses: the normal path
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        log.warning("snapshot not served: cannot listen", listen=f"{host}:{port}",
                    error=str(exc))
        return None


async def serve_snapshot(snapshot: Snapshot) -> EarlyServer | None:
    """Serve the snapshot on its listen address; ``None`` if it cannot (the caller then
    starts the normal way)."""
    sock = _bind(snapshot.listen_host, snapshot.listen_port)
    if sock is None:
        return None
    raw: list[bytes] = []

    async def metrics(request: web.Request) -> web.Response:
        headers = {hdrs.CONTENT_TYPE: CONTENT_TYPE, hdrs.VARY: hdrs.ACCEPT_ENCODING}
        if accepts_gzip(request):
            headers[hdrs.CONTENT_ENCODING] = "gzip"
            return web.Response(body=snapshot.gzip_body, headers=headers)
        if not raw:
            raw.append(snapshot.raw())
        return web.Response(body=raw[0], headers=headers)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        return web.json_response(_STARTING, status=503)

    async def starting(request: web.Request) -> web.Response:
        return web.Response(status=503, text="pantau is starting\n",
                            headers={hdrs.RETRY_AFTER: "5"})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", starting)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock.dup()).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    port = int(sock.getsockname()[1])
    log.info("serving the last snapshot while starting", host=snapshot.listen_host, port=port,
             generation=snapshot.generation)
    return EarlyServer(runner, sock, snapshot.listen_host, port)

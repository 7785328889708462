"""Keeps the cached ``/metrics`` segments compressed, on a thread of its own.

A gzip answer makes no zlib call (:func:`monitor.server._metrics`): the segments that changed
since they were last compressed go out stored, uncompressed inside the gzip stream. Every
zlib call lets go of the GIL, and while the daemon's loop is busy taking it back costs up to
the switch interval (5 ms) per call: compressing 20 changed segments inside an answer made it
100 ms late. :class:`Deflater` compresses them after the answer instead, for the next scrape;
and while a gzip client keeps scraping, it also brings the cache up to date every
:data:`REFRESH_EVERY` seconds without a scrape, so that an answer 15 s after the last one has
only the last seconds' changes to send uncompressed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

import structlog

__all__ = ["BATCH", "KEEP_WARM", "REFRESH_EVERY", "Deflater"]

#: Segments taken at a time (each ~0.1-0.5 ms of CPU to compress).
BATCH = 8
#: Seconds without a scrape after which the cache is refreshed and compressed anyway.
REFRESH_EVERY = 2.0
#: Refreshing stops this long (seconds) after the last gzip scrape.
KEEP_WARM = 300.0

log = structlog.get_logger("pantau.server")


class Compressible(Protocol):
    """What the deflater needs of :class:`monitor.metrics.Metrics`."""

    def deflate_pending(self, limit: int) -> bool: ...

    def refresh_cache(self) -> None: ...


class Deflater:
    """Compresses the cache's pending segments after each gzip answer (:meth:`start`), and
    refreshes it every ``every`` seconds without a scrape, until ``keep_warm`` seconds after
    the last one. A daemon thread, started on first use."""

    def __init__(
        self,
        metrics: Compressible,
        *,
        every: float = REFRESH_EVERY,
        keep_warm: float = KEEP_WARM,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metrics = metrics
        self._every = every
        self._keep_warm = keep_warm
        self._monotonic = monotonic
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stopping = False
        self._last: float | None = None  # when start() was last called
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        #: Refreshes done without a scrape (for tests and curiosity).
        self.refreshes = 0

    def start(self) -> None:
        """A gzip answer went out: compress what it sent stored."""
        with self._guard:
            if self._stopping:
                return
            self._last = self._monotonic()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pantau-deflate", daemon=True
                )
                self._thread.start()
            self._idle.clear()
            self._wanted.set()

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing asked of :meth:`start` is left undone."""
        return self._idle.wait(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread (a daemon thread: it never holds the process up either way)."""
        with self._guard:
            self._stopping = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._guard:
                last = self._last
            warm = last is not None and self._monotonic() - last < self._keep_warm
            woken = self._wanted.wait(self._every if warm else None)
            if self._stopping:
                return
            try:
                if woken:
                    self._wanted.clear()
                else:  # no scrape for a while: catch up now, not in the next answer
                    self._metrics.refresh_cache()
                    self.refreshes += 1
                while not self._stopping and self._metrics.deflate_pending(BATCH):
                    pass
            except Exception:
                log.exception("compressing the metrics cache failed")
            with self._guard:
                if not self._wanted.is_set():
                    self._idle.set()

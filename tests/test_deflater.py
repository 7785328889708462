"""Tests for monitor.deflater: compressing the /metrics cache on a thread of its own.

The thread is real; the clock that decides whether to keep refreshing is injected, and the
tests wait for conditions (bounded), never for a fixed time.
"""

from __future__ import annotations

import threading
import time

import pytest
from structlog.testing import capture_logs

from monitor.deflater import BATCH, Deflater


class FakeMetrics:
    """Counts calls; ``pending`` segments are deflated BATCH at a time."""

    def __init__(self, pending: int = 0) -> None:
        self.pending = pending
        self.deflated = 0
        self.refreshes = 0
        self.fail = False
        self.lock = threading.Lock()

    def deflate_pending(self, limit: int) -> bool:
        assert limit == BATCH
        with self.lock:
            if self.fail:
                self.fail = False
                raise RuntimeError("boom")
            done = min(limit, self.pending)
            self.pending -= done
            self.deflated += done
            return done >= limit

    def refresh_cache(self) -> None:
        with self.lock:
            self.refreshes += 1
            self.pending += 3


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def until(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_start_deflates_everything_pending_then_idles(clock):
    metrics = FakeMetrics(pending=3 * BATCH + 2)
    deflater = Deflater(metrics, every=3600, monotonic=clock)
    try:
        deflater.start()
        assert deflater.wait_idle(10)
        assert metrics.pending == 0 and metrics.deflated == 3 * BATCH + 2
        assert deflater.refreshes == 0
    finally:
        deflater.stop()


def test_refreshes_between_scrapes_while_warm_only(clock):
    metrics = FakeMetrics()
    deflater = Deflater(metrics, every=0.01, keep_warm=300, monotonic=clock)
    try:
        deflater.start()
        until(lambda: deflater.refreshes >= 2)  # no scrape for `every`: caught up anyway
        until(lambda: metrics.pending == 0)
        assert metrics.deflated >= 6
        clock.t += 301  # no gzip scrape for longer than keep_warm: refreshing stops
        settled = deflater.refreshes
        time.sleep(0.2)  # at every=0.01 a warm thread would refresh ~20 times meanwhile
        assert deflater.refreshes <= settled + 1  # one wait may have begun before the move
        settled = deflater.refreshes
        deflater.start()  # a scrape again: refreshing resumes
        until(lambda: deflater.refreshes > settled)
    finally:
        deflater.stop()


def test_no_thread_and_no_refresh_before_a_gzip_scrape(clock):
    metrics = FakeMetrics(pending=5)
    deflater = Deflater(metrics, every=0.01, monotonic=clock)
    time.sleep(0.05)
    assert deflater._thread is None and metrics.refreshes == 0 and metrics.pending == 5
    deflater.stop()


def test_a_failure_is_logged_and_the_thread_goes_on(clock):
    metrics = FakeMetrics(pending=BATCH)
    metrics.fail = True
    deflater = Deflater(metrics, every=3600, monotonic=clock)
    try:
        with capture_logs() as logs:
            deflater.start()
            assert deflater.wait_idle(10)
        assert any(e["event"] == "compressing the metrics cache failed" for e in logs)
        assert metrics.pending == BATCH
        deflater.start()
        assert deflater.wait_idle(10)
        assert metrics.pending == 0
    finally:
        deflater.stop()


def test_stop_ends_the_thread_and_later_starts_do_nothing(clock):
    metrics = FakeMetrics(pending=1)
    deflater = Deflater(metrics, every=0.01, monotonic=clock)
    deflater.start()
    assert deflater.wait_idle(10)
    thread = deflater._thread
    assert thread is not None and thread.is_alive()
    deflater.stop()
    assert not thread.is_alive()
    metrics.pending = 4
    deflater.start()
    time.sleep(0.02)
    assert metrics.pending == 4

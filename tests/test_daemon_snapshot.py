"""A restart serves the last clean stop's snapshot at once, then hands over to the live server
on the same socket; a stale or foreign snapshot is never served."""

from __future__ import annotations

import asyncio
import gzip
import random
import threading
from pathlib import Path

import aiohttp
import pytest
from fakes.scripted import ScriptedPlatform, plugin_module
from test_daemon import _config, _running, _until, _value

from monitor import snapshot
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.engine import Engine
from monitor.plugins import Plugins, load_plugins
from monitor.scheduler import Scheduler

LABELS = {"agency": "dinsos", "platform": "scripted", "account": "ok-a"}


@pytest.fixture
def scripted() -> tuple[ScriptedPlatform, Plugins]:
    platform = ScriptedPlatform()
    plugins = load_plugins(environ={}, entry_points=[],
                           extra=[("scripted", plugin_module(platform))])
    return platform, plugins


def _daemon(path: Path, plugins: Plugins) -> Daemon:
    return Daemon(path, plugins, rng=random.Random(3),
                  scheduler=Scheduler(random.Random(3), spread=0.0), grace=0.1, environ={})


async def _get(port: int, path: str, *, gzip_ok: bool = True) -> tuple[int, dict, bytes]:
    headers = {"Accept-Encoding": "gzip" if gzip_ok else "identity"}
    async with aiohttp.ClientSession(auto_decompress=False) as session, session.get(
        f"http://127.0.0.1:{port}{path}", headers=headers
    ) as resp:
        body = await resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return resp.status, dict(resp.headers), body


async def _first_run(path: Path, plugins: Plugins, platform: ScriptedPlatform) -> int:
    """Run the daemon until ok-a is checked, stop it cleanly; returns the port it used."""
    daemon = _daemon(path, plugins)
    async with _running(daemon):
        await _until(lambda: daemon.engine.states.get(("dinsos", "scripted", "ok-a")) is not None)
        port = daemon.port
    return port


class _Gate:
    """Holds the daemon's config load (run in a thread) until the test opens it."""

    def __init__(self, daemon: Daemon) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        original = daemon._load_config

        def slow_load():  # noqa: ANN202
            self.entered.set()
            assert self.release.wait(10)
            return original()

        daemon._load_config = slow_load  # type: ignore[method-assign]


async def test_restart_serves_the_snapshot_then_the_live_render(tmp_path, scripted):
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"], interval="1h")
    port = await _first_run(path, plugins, platform)
    state = tmp_path / "pantau.db"
    assert snapshot.snapshot_path(state).exists()

    daemon = _daemon(path, plugins)
    gate = _Gate(daemon)
    task = asyncio.create_task(daemon.run())
    try:
        await _until(gate.entered.is_set)
        # config not loaded yet: the snapshot answers on the port of the last run
        status, headers, body = await _get(port, "/metrics")
        assert status == 200 and headers["Content-Encoding"] == "gzip"
        text = body.decode()
        assert _value(text, "pantau_last_post_timestamp_seconds", **LABELS) == (
            platform.newest.timestamp()
        )
        assert "pantau_check_duration_seconds" not in text  # counters restart at zero
        status, _, plain = await _get(port, "/metrics", gzip_ok=False)
        assert status == 200 and plain == body
        status, _, ready = await _get(port, "/readyz")
        assert status == 503 and b'"started": false' in ready
        assert (await _get(port, "/healthz"))[0] == 200
        assert (await _get(port, "/"))[0] == 503
        gate.release.set()
        await asyncio.wait_for(daemon.started.wait(), 10)
        # the live server took over the same socket
        assert daemon.port == port
        status, _, ready = await _get(port, "/readyz")
        assert status == 200
        status, _, body = await _get(port, "/metrics")
        assert b"pantau_check_duration_seconds" in body
    finally:
        gate.release.set()
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


async def test_a_check_committed_since_makes_the_snapshot_stale(tmp_path, scripted):
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"], interval="1h")
    await _first_run(path, plugins, platform)
    # `pantau check` between stop and start: the store moves on, the snapshot does not
    config = load_config(path, plugins.platforms, {})
    engine = await Engine.open(config, plugins, __import__("monitor.clock").clock.SystemClock())
    async with engine:
        await engine.check(config.accounts[0])
    assert snapshot.find(path, {}) is None


async def test_an_edited_config_makes_the_snapshot_stale(tmp_path, scripted):
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"], interval="1h")
    await _first_run(path, plugins, platform)
    assert snapshot.find(path, {}) is not None
    path.write_text(path.read_text().replace("Dinas Sosial", "Dinas Sosial Kota"))
    assert snapshot.find(path, {}) is None


async def test_no_snapshot_after_a_store_failure(tmp_path, scripted):
    """Memory ahead of the store (a failed write) must not be saved as if stored."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"], interval="1h")
    await _first_run(path, plugins, platform)
    assert snapshot.snapshot_path(tmp_path / "pantau.db").exists()
    daemon = _daemon(path, plugins)
    async with _running(daemon):
        daemon.engine.store_error = "disk full"  # as Engine.check sets it
    assert not snapshot.snapshot_path(tmp_path / "pantau.db").exists()


async def test_a_stop_during_a_store_write_still_writes_a_true_snapshot(tmp_path, scripted):
    """A check cancelled at stop while the store commits it: memory catches up with the store
    before the snapshot is taken, so the snapshot is written and shows that check."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"], interval="1h")
    daemon = _daemon(path, plugins)
    entered = asyncio.Event()
    async with _running(daemon):
        store = daemon.engine.store
        real_record = store.record

        async def slow_record(result, state, **kwargs):  # noqa: ANN001, ANN202
            entered.set()
            await asyncio.sleep(0.3)  # the stop arrives meanwhile
            return await real_record(result, state, **kwargs)

        store.record = slow_record  # type: ignore[method-assign]
        await _until(lambda: ("dinsos", "scripted", "ok-a") in daemon.engine.states)
        daemon.engine.states.clear()  # as if never checked; the check below starts afresh
        task = asyncio.create_task(daemon._check(daemon.engine.config.accounts[0]))
        daemon._tasks.add(task)  # as the daemon's loop does: the stop cancels it
        await asyncio.wait_for(entered.wait(), 10)
    # stopped: the record landed after its check was cancelled, and memory followed
    state = daemon.engine.states[("dinsos", "scripted", "ok-a")]
    assert state.last_post_at == platform.newest
    found = snapshot.find(path, {})
    assert found is not None
    assert _value(found.raw().decode(), "pantau_last_post_timestamp_seconds", **LABELS) == (
        platform.newest.timestamp()
    )

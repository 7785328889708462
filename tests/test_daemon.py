"""The daemon and the engine: checks isolated, results committed then served, restart, reload."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from fakes.clock import FakeClock
from fakes.scripted import ScriptedPlatform, plugin_module
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.engine import Engine
from monitor.model import Post
from monitor.plugins import Plugins, load_plugins
from monitor.scheduler import Scheduler
from monitor.store import Store

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _config(tmp_path: Path, accounts: list[str], *, extra_agency: str = "",
            interval: str = "30m", timeout: str = "2s") -> Path:
    lines = "\n".join(f"        - {a}" for a in accounts)
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: 127.0.0.1:0\n"
        f"state: {tmp_path / 'pantau.db'}\n"
        f"check: {{interval: {interval}, timeout: {timeout}, concurrency: 4}}\n"
        f"expect: [scripted, youtube]\n"
        f"agencies:\n"
        f"  - id: dinsos\n    name: Dinas Sosial\n    group: dinas\n"
        f"    accounts:\n      scripted:\n{lines}\n"
        f"{extra_agency}"
    )
    return path


@pytest.fixture
def scripted() -> tuple[ScriptedPlatform, Plugins]:
    platform = ScriptedPlatform()
    plugins = load_plugins(environ={}, entry_points=[],
                           extra=[("scripted", plugin_module(platform))])
    return platform, plugins


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(text: str, metric: str, **labels: str) -> float | None:
    for (n, lbls), value in _samples(text).items():
        if n == metric and all(dict(lbls).get(k) == v for k, v in labels.items()):
            return value
    return None


async def _scrape(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{port}/metrics"
    ) as resp:
        assert resp.status == 200
        return await resp.text()


@contextlib.asynccontextmanager
async def _running(daemon: Daemon) -> AsyncIterator[asyncio.Task]:
    task = asyncio.create_task(daemon.run())
    started = asyncio.create_task(daemon.started.wait())
    await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # raise the start-up error
    try:
        yield task
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=10)


async def _until(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


# -- engine: one check, isolated, committed before reported --------------------------------

async def test_plugin_raise_hang_or_garbage_fails_only_its_own_check(tmp_path, scripted):
    """A plugin that raises, hangs or returns garbage gives `internal` for that check only."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a", "raise-b", "hang-c", "garbage-d", "ok-e"], timeout="0.2s")
    config = load_config(path, plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW), random.Random(1))
    engine.checker.grace = 0.1
    async with engine:
        results = await asyncio.wait_for(
            asyncio.gather(*(engine.check(a) for a in config.accounts)), timeout=5
        )
    by_account = {r.account.account: r for r in results}
    assert by_account["ok-a"].ok and by_account["ok-e"].ok
    for name, phrase in [("raise-b", "RuntimeError: plugin bug"),
                         ("hang-c", "did not finish within the check timeout"),
                         ("garbage-d", "not an Observation")]:
        assert by_account[name].reason == "internal", name
        assert phrase in by_account[name].message
    assert by_account["ok-a"].observation.latest_post_at == platform.newest


async def test_result_is_committed_before_it_is_reported(tmp_path, scripted):
    """When an observer hears of a result, the store already holds it."""
    _, plugins = scripted
    config = load_config(_config(tmp_path, ["ok-a"]), plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    seen: list[int] = []

    def observer(result) -> None:  # noqa: ANN001
        import sqlite3

        with contextlib.closing(sqlite3.connect(config.state)) as db:
            seen.append(db.execute("SELECT count(*) FROM checks").fetchone()[0])

    engine.observers.append(observer)
    async with engine:
        await engine.check(config.accounts[0])
    assert seen == [1]


async def test_failed_check_keeps_last_known_post_time(tmp_path, scripted):
    """A failure after a success keeps last_post_at in memory and in the store."""
    platform, plugins = scripted
    config = load_config(_config(tmp_path, ["ok-a"]), plugins.platforms)
    clock = FakeClock(NOW)
    engine = await Engine.open(config, plugins, clock)
    account = config.accounts[0]
    async with engine:
        await engine.check(account)
        platform.posts["ok-a"] = []  # no posts this time is not a failure, and erases nothing
        clock.advance(60)
        await engine.check(account)
        original = platform.latest

        async def failing(account_name, ctx):  # noqa: ANN001, ANN202
            raise RuntimeError("down")

        platform.latest = failing  # type: ignore[method-assign]
        clock.advance(60)
        result = await engine.check(account)
        platform.latest = original  # type: ignore[method-assign]
    assert not result.ok
    assert engine.states[account.key].last_post_at == platform.newest
    store = await Store.open(config.state)
    try:
        stored = (await store.load()).accounts[account.key]
    finally:
        await store.close()
    assert stored.last_post_at == platform.newest and stored.ok is False
    assert stored.consecutive_failures == 1


# -- the daemon ------------------------------------------------------------------------------

async def test_metrics_after_checks_and_hanging_plugin_does_not_block_others(tmp_path, scripted):
    """Every metric appears with the right values; a hanging account delays no other."""
    platform, plugins = scripted
    real_now = datetime.now(UTC).replace(microsecond=0)  # the daemon runs on the real clock
    newest = real_now - timedelta(days=2)
    platform.posts["ok-a"] = [
        Post(newest, id="p3"),
        Post(real_now - timedelta(days=10), id="p2"),
        Post(real_now - timedelta(days=40), id="p1"),
    ]
    path = _config(tmp_path, ["hang-h", "ok-a", "fail-not_found-x"], interval="1s",
                   timeout="0.3s")
    daemon = Daemon(path, plugins, rng=random.Random(3),
                    scheduler=Scheduler(random.Random(3), spread=0.05), grace=0.1)
    async with _running(daemon):
        await _until(lambda: platform.calls["ok-a"] >= 3)
        await _until(lambda: platform.calls["hang-h"] >= 1
                     and daemon.engine.states.get(("dinsos", "scripted", "hang-h")) is not None)
        text = await _scrape(daemon.port)
    labels = {"agency": "dinsos", "platform": "scripted", "account": "ok-a"}
    assert _value(text, "pantau_last_post_timestamp_seconds", **labels) == newest.timestamp()
    assert _value(text, "pantau_check_success", **labels) == 1.0
    assert _value(text, "pantau_last_success_timestamp_seconds", **labels) > 0
    assert _value(text, "pantau_last_check_timestamp_seconds", **labels) > 0
    assert _value(text, "pantau_silence_threshold_seconds", **labels) == 7 * 86400
    assert _value(text, "pantau_posts", window="7d", **labels) == 1
    assert _value(text, "pantau_posts", window="30d", **labels) == 2
    hang = {**labels, "account": "hang-h"}
    assert _value(text, "pantau_check_success", **hang) == 0.0
    assert _value(text, "pantau_last_post_timestamp_seconds", **hang) is None
    assert _value(text, "pantau_check_errors_total", platform="scripted", reason="internal") >= 1
    assert _value(text, "pantau_check_errors_total", platform="scripted", reason="not_found") >= 1
    assert _value(text, "pantau_check_errors_total", platform="scripted", reason="auth") == 0
    assert _value(text, "pantau_check_duration_seconds_count", platform="scripted") >= 4
    assert _value(text, "pantau_account_missing", agency="dinsos", platform="youtube") == 1
    assert _value(text, "pantau_account_missing", agency="dinsos", platform="scripted") is None
    assert _value(text, "pantau_agency_info", agency="dinsos", name="Dinas Sosial",
                  group="dinas") == 1
    assert _value(text, "pantau_build_info") == 1


async def test_restart_serves_stored_values_before_any_new_check(tmp_path, scripted):
    """After a restart /metrics shows the stored last post at once, with no check run."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"])
    first = Daemon(path, plugins, scheduler=Scheduler(random.Random(1), spread=0.01))
    async with _running(first):
        await _until(lambda: first.engine.states.get(("dinsos", "scripted", "ok-a")) is not None)
        before = await _scrape(first.port)
    calls = platform.calls["ok-a"]
    # The second daemon would check only after an hour: everything it serves is stored.
    second = Daemon(path, plugins, scheduler=Scheduler(random.Random(2), spread=3600))
    async with _running(second):
        after = await _scrape(second.port)
    assert platform.calls["ok-a"] == calls
    keep = ("pantau_last_post_timestamp_seconds", "pantau_last_check_timestamp_seconds",
            "pantau_last_success_timestamp_seconds", "pantau_check_success", "pantau_posts")
    pick = {k: v for k, v in _samples(before).items() if k[0] in keep}
    assert pick and pick == {k: v for k, v in _samples(after).items() if k[0] in keep}


async def test_first_scrape_finds_the_cache_warm(tmp_path, scripted):
    """The daemon builds the first render (and its deflated segments) before it serves: the
    first scrape formats nothing and deflates nothing."""
    platform, plugins = scripted
    path = _config(tmp_path, [f"ok-{i}" for i in range(20)])
    daemon = Daemon(path, plugins, scheduler=Scheduler(random.Random(2), spread=3600))
    async with _running(daemon):
        stats = daemon.metrics.collector.cache.stats
        assert stats.scrapes == 1 and stats.segments_deflated > 0
        formatted, deflated = stats.accounts_formatted, stats.segments_deflated
        assert "pantau_silence_threshold_seconds" in await _scrape(daemon.port)
        assert (stats.scrapes, stats.accounts_formatted, stats.segments_deflated) \
            == (2, formatted, deflated)


async def test_rate_limited_platform_pauses(tmp_path, scripted):
    """A rate-limited answer pauses the whole platform until its retry-after."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ratelimit-a", "ok-b"], interval="1s")
    daemon = Daemon(path, plugins, scheduler=Scheduler(random.Random(1), spread=0.01))
    async with _running(daemon):
        await _until(lambda: platform.calls["ratelimit-a"] >= 1)
        await _until(lambda: daemon.scheduler.paused_until("scripted") is not None)
        await asyncio.sleep(0.3)
    assert platform.calls["ratelimit-a"] == 1
    until = daemon.scheduler.paused_until("scripted")
    assert until - datetime.now(UTC).timestamp() > 100  # retry_after 120 s


async def test_reload_applies_new_config_and_keeps_old_on_error(tmp_path, scripted):
    """A reload adds agencies; a bad new config is refused and the old one keeps running."""
    platform, plugins = scripted
    path = _config(tmp_path, ["ok-a"])
    daemon = Daemon(path, plugins, scheduler=Scheduler(random.Random(1), spread=0.01))
    async with _running(daemon):
        _config(tmp_path, ["ok-a"], extra_agency=(
            "  - id: satpolpp\n    name: Satpol PP\n    group: dinas\n"
            "    accounts: {scripted: ok-s}\n"))
        assert await daemon.reload() is True
        assert [a.id for a in daemon.engine.config.agencies] == ["dinsos", "satpolpp"]
        text = await _scrape(daemon.port)
        assert _value(text, "pantau_agency_info", agency="satpolpp") == 1
        path.write_text(path.read_text().replace("interval: 30m", "interval: soon"))
        assert await daemon.reload() is False
        assert [a.id for a in daemon.engine.config.agencies] == ["dinsos", "satpolpp"]
        daemon.request_reload()  # the signal path goes through the loop
        await asyncio.sleep(0.1)
        assert daemon.engine.config.check.interval == 1800
        await _until(lambda: platform.calls["ok-s"] >= 1)  # the new account is scheduled


async def test_stop_cancels_in_flight_checks_promptly(tmp_path, scripted):
    """request_stop with a hanging check in flight returns within the stop timeout."""
    platform, plugins = scripted
    path = _config(tmp_path, ["hang-a"], timeout="60s")
    daemon = Daemon(path, plugins, scheduler=Scheduler(random.Random(1), spread=0.01))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.started.wait(), 10)
    await asyncio.wait_for(platform.called.wait(), 10)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    daemon.request_stop()
    await asyncio.wait_for(task, timeout=10)
    assert loop.time() - t0 < 2


# -- conditional GET through the whole path, and logs bound per check ---------------------------

async def test_validators_are_committed_and_reused_after_restart(tmp_path, aiohttp_server):
    """A feed's ETag is stored with a successful check, sent after a restart, and a 304
    keeps the last post without parsing."""
    from fakes.feeds import FeedFake, FeedRoute, make_app, rss, rss_item

    fake = FeedFake(routes={"/feed/": FeedRoute(body=rss([
        rss_item("Rakor", pub_date="Rab, 09 Okt 2024 09:30:00 WIB")]))})
    server = await aiohttp_server(make_app(fake))
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"state: {tmp_path / 'pantau.db'}\nagencies:\n  - id: dinsos\n    name: Dinas Sosial\n"
        f"    accounts: {{rss: '{server.make_url('/feed/')}'}}\n")
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "rss"})
    config = load_config(path, plugins.platforms)
    [account] = config.accounts
    newest = datetime(2024, 10, 9, 2, 30, tzinfo=UTC)
    for _ in range(2):  # the second engine is a restart: validators come from the store
        engine = await Engine.open(config, plugins, FakeClock(NOW))
        async with engine:
            result = await engine.check(account)
        assert result.ok and engine.states[account.key].last_post_at == newest
    assert fake.bodies_sent == 1 and fake.not_modified_sent == 1
    assert fake.requests[-1].get("If-None-Match") == fake.routes["/feed/"].etag_value
    assert result.observation.unchanged  # the 304 was not parsed


async def test_log_lines_of_a_check_carry_agency_platform_account(tmp_path, scripted):
    """Everything logged during a check is bound to its agency, platform and account."""
    from structlog.testing import capture_logs

    platform, plugins = scripted
    config = load_config(_config(tmp_path, ["raise-a"]), plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    with capture_logs(processors=[structlog_merge]) as logs:
        async with engine:
            await engine.check(config.accounts[0])
    [entry] = [e for e in logs if e["event"] == "plugin raised"]
    assert (entry["agency"], entry["platform"], entry["account"]) == (
        "dinsos", "scripted", "raise-a")


def structlog_merge(logger, name, event):  # noqa: ANN001, ANN201
    import structlog

    return structlog.contextvars.merge_contextvars(logger, name, event)


async def test_failed_check_stores_no_validators(tmp_path, aiohttp_server):
    """A 200 that fails to parse (a login page with an ETag) leaves no validator behind, so
    the next check fetches the body again instead of trusting a 304."""
    from fakes.feeds import HTML_LOGIN_PAGE, FeedFake, FeedRoute, make_app

    fake = FeedFake(routes={"/feed/": FeedRoute(body=HTML_LOGIN_PAGE, content_type="text/html")})
    server = await aiohttp_server(make_app(fake))
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"state: {tmp_path / 'pantau.db'}\nagencies:\n  - id: dinsos\n    name: Dinas Sosial\n"
        f"    accounts: {{rss: '{server.make_url('/feed/')}'}}\n")
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "rss"})
    config = load_config(path, plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    async with engine:
        first = await engine.check(config.accounts[0])
        second = await engine.check(config.accounts[0])
    assert (first.reason, second.reason) == ("parse", "parse")
    assert "If-None-Match" not in fake.requests[-1] and fake.not_modified_sent == 0
    assert engine.validators == {}


async def test_deferred_check_waits_for_next_window_without_failing(tmp_path, scripted):
    """A plugin whose budget is spent defers: nothing is recorded, the platform pauses."""
    platform, plugins = scripted
    path = _config(tmp_path, ["defer-a", "ok-b"], interval="1s")
    daemon = Daemon(path, plugins, scheduler=Scheduler(random.Random(1), spread=0.01))
    async with _running(daemon):
        await _until(lambda: platform.calls["defer-a"] >= 1)
        await _until(lambda: daemon.scheduler.paused_until("scripted") is not None)
        await asyncio.sleep(0.2)
        text = await _scrape(daemon.port)
    assert platform.calls["defer-a"] == 1
    assert ("dinsos", "scripted", "defer-a") not in daemon.engine.states  # not a failure
    assert 250 < daemon.scheduler.paused_until("scripted") - datetime.now(UTC).timestamp() <= 300
    errors = _value(text, "pantau_check_errors_total", platform="scripted", reason="rate_limited")
    assert errors == 0
    assert _value(text, "pantau_scripted_calls_total") >= 1  # the platform's own collector


async def test_deferred_in_one_shot_check_is_rate_limited(tmp_path, scripted):
    """Without a scheduler to wait (pantau check), a deferral is reported as rate_limited."""
    _, plugins = scripted
    config = load_config(_config(tmp_path, ["defer-a"]), plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    async with engine:
        result = await engine.check(config.accounts[0])
    assert (result.ok, result.reason, result.retry_after) == (False, "rate_limited", 300)
    assert "budget" in result.message


async def test_systemd_notifications_over_a_real_datagram_socket(tmp_path, scripted):
    """READY=1 after start, WATCHDOG=1 pings, RELOADING=1/READY=1 around reload, STOPPING=1."""
    import os
    import socket

    _, plugins = scripted
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    daemon = Daemon(_config(tmp_path, ["ok-a"]), plugins, environ=env,
                    scheduler=Scheduler(random.Random(1), spread=0.01))
    messages: list[str] = []

    def drain() -> None:
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except BlockingIOError:
                return

    try:
        async with _running(daemon):
            await _until(lambda: drain() or messages.count("WATCHDOG=1") >= 3, timeout=5)
            await daemon.reload()
        drain()
    finally:
        sock.close()
    assert messages[0] == "READY=1"
    reload_at = next(i for i, m in enumerate(messages) if m.startswith("RELOADING=1\n"))
    assert "MONOTONIC_USEC=" in messages[reload_at]
    assert "READY=1" in messages[reload_at + 1:]
    assert messages[-1] == "STOPPING=1"


async def test_failures_and_recoveries_are_logged_once_per_change(tmp_path, scripted):
    """A warning when an account starts failing, none while it keeps failing, an info when
    it recovers."""
    from structlog.testing import capture_logs

    platform, plugins = scripted
    config = load_config(_config(tmp_path, ["ok-a"]), plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    account = config.accounts[0]
    original = platform.latest

    async def down(name, ctx):  # noqa: ANN001, ANN202
        from monitor.model import Unreachable

        raise Unreachable("cannot connect to scripted.example")

    with capture_logs() as logs:
        async with engine:
            await engine.check(account)
            platform.latest = down  # type: ignore[method-assign]
            await engine.check(account)
            await engine.check(account)
            platform.latest = original  # type: ignore[method-assign]
            await engine.check(account)
    events = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("check ")]
    assert events == [("check failing", "warning"), ("check still failing", "debug"),
                      ("check recovered", "info")]
    failing = next(e for e in logs if e["event"] == "check failing")
    assert (failing["reason"], failing["agency"], failing["account"]) == (
        "unreachable", "dinsos", "ok-a")

"""Tests for plugins.meta (the shared Graph API client, budget, usage and metrics), and for the
Meta platforms through the engine, the daemon and the CLI: deferral, metrics, validate, and
that the token is found nowhere."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import aiohttp
import pytest
import structlog
from fakes.clock import FakeClock
from fakes.meta import (
    APP_SECRET,
    IG_USER_ID,
    TOKEN,
    TOKEN_ECHOED,
    TOKEN_EXPIRED,
    WEB_REQUIRE_LOGIN,
    MetaEnv,
    MetaFake,
    alias_missing,
    buc_usage,
    business_discovery,
    fb_post,
    fb_posts,
    ig_media,
    make_app,
    meta_env,
    secret,
    throttled,
    web_node,
    web_profile,
)
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.cli import main
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.engine import Engine
from monitor.metrics import Metrics
from monitor.model import Account, Deferred, RateLimited, Unreachable
from monitor.plugins import load_plugins
from monitor.scheduler import Scheduler
from plugins import meta
from plugins.facebook import FacebookPlatform
from plugins.instagram import InstagramPlatform
from plugins.meta import (
    DEFAULT_COOLDOWN,
    DEFAULT_RATE_WAIT,
    HUB,
    MetaHub,
    MetaSettings,
    TokenBudget,
    appsecret_proof,
    budget_lines,
    clean_message,
    graph_error,
    read_usage,
    token_key,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
ENV = {"PANTAU_META_TOKEN": TOKEN, "PANTAU_META_APP_SECRET": APP_SECRET}
PROOF = appsecret_proof(TOKEN, APP_SECRET)


@pytest.fixture(autouse=True)
def _fresh_hub() -> Iterator[None]:
    """Engine and CLI runs use the process-wide hub: each test starts with it empty."""
    HUB.reset()
    yield
    HUB.reset()


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[MetaEnv]:
    async with meta_env(aiohttp_server, NOW) as value:
        yield value


# -- pieces ------------------------------------------------------------------------------------

def test_appsecret_proof_is_hmac_sha256_of_token_keyed_by_secret() -> None:
    """appsecret_proof is hex HMAC-SHA256(key=app secret, msg=token)."""
    expected = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    assert expected == PROOF and len(PROOF) == 64


def test_read_usage_takes_the_highest_percentage_and_regain_time() -> None:
    """Usage: max over X-App-Usage and every BUC entry, /100; regain in seconds."""
    headers = {"X-App-Usage": json.dumps({"call_count": 12, "total_time": 40,
                                          "total_cputime": 3}),
               **buc_usage(67, regain_minutes=3)}
    usage = read_usage(headers)
    assert usage.ratio == 0.67 and usage.regain == 180
    assert read_usage({"X-App-Usage": json.dumps({"call_count": 130})}).ratio == 1.0


@pytest.mark.parametrize("headers", [
    {}, {"X-App-Usage": "not json"}, {"X-App-Usage": "[1, 2]"},
    {"X-Business-Use-Case-Usage": json.dumps({"1": "x"})},
    {"X-App-Usage": json.dumps({"call_count": True, "total_time": "9"})},
])
def test_read_usage_ignores_missing_or_malformed_headers(headers: dict[str, str]) -> None:
    """Unreadable usage headers give no usage, never an error."""
    assert read_usage(headers).ratio is None


def test_clean_message_removes_tokens_urls_and_long_blobs() -> None:
    """Known secrets, token-looking words, secret query params and 64-hex proofs go."""
    text = (f"bad token {TOKEN} at https://graph.facebook.com/me?access_token=abc123&x=1 "
            f"proof {PROOF} other EAAB{'x' * 30}")
    cleaned = clean_message(text, ["abc123"])
    for leaked in (TOKEN, "abc123", PROOF, "EAABxxxx"):
        assert leaked not in cleaned
    assert "x=1" in cleaned and len(clean_message("y " * 400)) <= 300


@pytest.mark.parametrize(("error", "status", "kind"), [
    ({"code": 80001, "message": "There have been too many calls to this Page account"}, 400,
     RateLimited),
    ({"code": 4, "message": "limit", "is_transient": True}, 400, RateLimited),
    ({"code": 1, "message": "An unknown error occurred", "is_transient": True}, 400, Unreachable),
    ({"code": "190", "message": "Error validating access token"}, 400, "auth"),
    ({"code": 2500, "message": "Unknown path components"}, 400, "parse"),
    ({"code": 12, "message": "deprecated"}, 403, "auth"),
    ({"message": "odd"}, 404, "not_found"),
])
def test_graph_error_mapping_edge_cases(error: dict, status: int, kind) -> None:  # noqa: ANN001
    """Codes map before statuses; throttling beats is_transient; unknown codes are parse."""
    mapped = graph_error(error, status=status, headers={})
    if isinstance(kind, str):
        assert mapped.reason == kind
    else:
        assert isinstance(mapped, kind)


def test_throttling_without_a_regain_estimate_waits_the_default() -> None:
    """A throttling code without estimated_time_to_regain_access waits 15 minutes."""
    mapped = graph_error({"code": 17, "message": "(#17) User request limit reached"},
                         status=400, headers={})
    assert isinstance(mapped, RateLimited) and mapped.retry_after == DEFAULT_RATE_WAIT == 900


def test_budget_is_a_sliding_hour_and_defers_to_the_oldest_call_leaving() -> None:
    """With 3 calls/hour, the 4th waits until the first call is an hour old."""
    budget = TokenBudget(key="k", source="env PANTAU_META_TOKEN")
    for t in (0.0, 600.0, 1200.0):
        budget.acquire(t, 3)
    with pytest.raises(Deferred) as caught:
        budget.acquire(1800.0, 3)
    assert caught.value.retry_after == 1800.0
    assert "hourly budget of 3 Graph API calls" in caught.value.message
    budget.acquire(3600.0, 3)  # the call at 0 has left the window
    assert budget.used(3600.0) == 3


def test_budget_is_keyed_by_a_token_hash_shared_across_sources() -> None:
    """The same token from two sources is one budget, keyed by a hash that is not the token."""
    hub = MetaHub()
    first = hub.budget(secret(TOKEN, "env PANTAU_META_TOKEN"))
    second = hub.budget(secret(TOKEN, "file /run/credentials/meta-token"))
    assert first is second and first.key == token_key(TOKEN)
    assert TOKEN not in first.key and list(hub.budgets) == [hashlib.sha256(
        TOKEN.encode()).hexdigest()[:16]]
    assert hub.budget(secret("EAAanother")) is not first


def test_settings_reject_a_literal_token_and_a_bad_graph_url() -> None:
    """A literal token is refused (secrets come by reference); graph_url must be http(s)."""
    with pytest.raises(ValueError, match="literal secret"):
        MetaSettings(access_token=TOKEN)
    with pytest.raises(ValueError, match="http"):
        MetaSettings(graph_url="graph.facebook.com")
    assert MetaSettings(graph_url="https://graph.facebook.com/v25.0/").graph_url == (
        "https://graph.facebook.com/v25.0")


# -- budget and usage through the platforms ---------------------------------------------------

async def test_shared_token_shares_one_budget_across_instagram_and_facebook(env) -> None:
    """Instagram and Facebook with the same token count against one hourly budget."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", [])
    env.fake.pages["pemkotcilegon"] = fb_posts([])
    ig, fb = InstagramPlatform(hub=env.hub), FacebookPlatform(hub=env.hub)
    await env.check(ig, "dinsos.cilegon", env.instagram(hourly_budget=2))
    await env.check(fb, "pemkotcilegon", env.facebook(hourly_budget=2))
    with pytest.raises(Deferred):
        await env.check(ig, "dinsos.cilegon", env.instagram(hourly_budget=2))
    assert env.fake.graph_calls == 2
    assert env.hub.requests == {"instagram": 1, "facebook": 1}


async def test_usage_at_threshold_defers_every_platform_of_the_token(env) -> None:
    """X-App-Usage at 95% (threshold 90): the next calls of both platforms wait, unsent."""
    env.fake.usage = {"X-App-Usage": json.dumps({"call_count": 95, "total_time": 20,
                                                 "total_cputime": 10})}
    env.fake.pages["pemkotcilegon"] = fb_posts([fb_post("2026-11-20T00:00:00+0000", "1_2")])
    ig, fb = InstagramPlatform(hub=env.hub), FacebookPlatform(hub=env.hub)
    assert (await env.check(fb, "pemkotcilegon", env.facebook())).post_id == "1_2"
    for platform, account, settings in ((fb, "pemkotcilegon", env.facebook()),
                                        (ig, "dinsos.cilegon", env.instagram())):
        with pytest.raises(Deferred) as caught:
            await env.check(platform, account, settings)
        assert caught.value.retry_after == DEFAULT_COOLDOWN
        assert "95%" in caught.value.message and "threshold 90%" in caught.value.message
    assert env.fake.graph_calls == 1
    env.clock.advance(DEFAULT_COOLDOWN)
    env.fake.usage = {"X-App-Usage": json.dumps({"call_count": 40})}
    await env.check(fb, "pemkotcilegon", env.facebook())
    assert env.fake.graph_calls == 2


async def test_usage_threshold_is_a_setting_and_buc_regain_sets_the_wait(env) -> None:
    """BUC usage 70% with threshold 60 and regain 7 min: defer for 420 s; 50% does not."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", [])
    ig = InstagramPlatform(hub=env.hub)
    env.fake.usage = buc_usage(50)
    await env.check(ig, "dinsos.cilegon", env.instagram(usage_threshold=60))
    env.fake.usage = buc_usage(70, regain_minutes=7)
    await env.check(ig, "dinsos.cilegon", env.instagram(usage_threshold=60))
    with pytest.raises(Deferred) as caught:
        await env.check(ig, "dinsos.cilegon", env.instagram(usage_threshold=60))
    assert caught.value.retry_after == 420 and env.fake.graph_calls == 2


async def test_throttling_error_holds_the_sibling_platform(env) -> None:
    """After Instagram is throttled (613, 7 min), Facebook on the same token defers."""
    env.fake.instagram["dinsos.cilegon"] = throttled(613, regain_minutes=7)
    ig, fb = InstagramPlatform(hub=env.hub), FacebookPlatform(hub=env.hub)
    with pytest.raises(RateLimited):
        await env.check(ig, "dinsos.cilegon", env.instagram())
    with pytest.raises(Deferred) as caught:
        await env.check(fb, "pemkotcilegon", env.facebook())
    assert caught.value.retry_after == 420 and env.fake.graph_calls == 1


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_collector_exports_usage_requests_and_expiry_once(env) -> None:
    """Both platforms return one collector: each family once, usage 0..1, calls, expiry."""
    env.fake.usage = buc_usage(42)
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", [])
    ig, fb = InstagramPlatform(hub=env.hub), FacebookPlatform(hub=env.hub)
    registry = CollectorRegistry()
    for collector in [*ig.collectors(), *fb.collectors()]:
        registry.register(collector)
    await env.check(ig, "dinsos.cilegon", env.instagram(token_expires=date(2027, 1, 31)))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE pantau_meta_api_usage_ratio gauge") == 1
    samples = _samples(text)
    assert samples[("pantau_meta_api_usage_ratio", (("platform", "instagram"),))] == 0.42
    assert samples[("pantau_api_requests_total", (("platform", "instagram"),))] == 1
    assert samples[("pantau_api_requests_total", (("platform", "facebook"),))] == 0
    assert samples[("pantau_token_expiry_timestamp_seconds", (("platform", "instagram"),))] == (
        datetime(2027, 1, 31, tzinfo=UTC).timestamp())


async def test_token_expiring_soon_is_logged_once_a_day(env) -> None:
    """A token expiring within two weeks is warned about once per day, by source."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", [])
    ig = InstagramPlatform(hub=env.hub)
    settings = env.instagram(token_expires=date(2026, 12, 1))
    with structlog.testing.capture_logs() as logs:
        await env.check(ig, "dinsos.cilegon", settings)
        await env.check(ig, "dinsos.cilegon", settings)
    [warning] = [e for e in logs if e["event"].startswith("Meta access token expires soon")]
    assert warning["days"] == 6 and warning["token"] == "env PANTAU_META_TOKEN"


def test_budget_lines_need_warning_and_expiry() -> None:
    """validate lines: calls/hour by token source, a warning above the budget, expiry."""
    accounts = [Account("a", "facebook", f"p{i}", "u", 900.0, 20.0, 86400.0) for i in range(60)]
    settings = MetaSettings(access_token=secret(), hourly_budget=200,
                            token_expires=date(2026, 12, 1))
    lines = budget_lines("facebook", accounts, settings, 1, today=date(2026, 11, 25))
    text = "\n".join(t for t, _ in lines)
    assert "env PANTAU_META_TOKEN" in text and "240.0 Graph API calls/hour" in text
    assert "interval to at least 18m" in text and TOKEN not in text
    assert [w for _, w in lines] == [True, True, True]
    assert "expires on 2026-12-01 (in 6 days)" in lines[-1][0]
    few = budget_lines("facebook", accounts[:2], MetaSettings(access_token=secret()), 1)
    assert few == [(few[0][0], False)] and "8.0 Graph API calls/hour" in few[0][0]


# -- engine, daemon, CLI -----------------------------------------------------------------------

def _config(tmp_path: Path, base: str, *, agencies: str, interval: str = "1h",
            instagram: str = "", facebook: str = "") -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: 127.0.0.1:0\n"
        f"state: {tmp_path / 'pantau.db'}\n"
        f"check: {{interval: {interval}, timeout: 5s, concurrency: 4}}\n"
        f"platforms:\n"
        f"  instagram:\n"
        f"    graph_url: {base}/v25.0\n    web_url: {base}\n"
        f"    access_token: {{env: PANTAU_META_TOKEN}}\n"
        f"    app_secret: {{env: PANTAU_META_APP_SECRET}}\n"
        f"    ig_user_id: '{IG_USER_ID}'\n    token_expires: 2027-01-31\n{instagram}"
        f"  facebook:\n"
        f"    graph_url: {base}/v25.0\n"
        f"    access_token: {{env: PANTAU_META_TOKEN}}\n"
        f"    app_secret: {{env: PANTAU_META_APP_SECRET}}\n{facebook}"
        f"agencies:\n{agencies}"
    )
    return path


def _agency(agency: str, instagram: list[str], facebook: list[str]) -> str:
    return (f"  - id: {agency}\n    name: Dinas {agency}\n    accounts:\n"
            f"      instagram: {json.dumps(instagram)}\n      facebook: {json.dumps(facebook)}\n")


@pytest.fixture
async def fake_server(aiohttp_server) -> tuple[MetaFake, str]:
    fake = MetaFake(app_secret=APP_SECRET)
    server = await aiohttp_server(make_app(fake))
    return fake, str(server.make_url("/")).rstrip("/")


async def test_engine_checks_both_platforms_from_a_config(tmp_path, fake_server) -> None:
    """A YAML config with the token via {env:}: both platforms report their newest post."""
    fake, base = fake_server
    fake.instagram["dinsos.cilegon"] = business_discovery(
        "dinsos.cilegon", [ig_media("2026-11-20T03:15:00+0000", "C3")])
    fake.pages["pemkotcilegon"] = fb_posts([fb_post("2026-11-23T23:30:00+0000", "1_9")])
    path = _config(tmp_path, base, agencies=_agency("dinsos", ["dinsos.cilegon"],
                                                    ["pemkotcilegon"]))
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram,facebook"})
    config = load_config(path, plugins.platforms, ENV)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    async with engine:
        results = {r.account.platform: r for r in
                   [await engine.check(a) for a in config.accounts]}
    assert results["instagram"].observation.latest_post_at == datetime(2026, 11, 20, 3, 15,
                                                                       tzinfo=UTC)
    assert results["facebook"].observation.post_id == "1_9"
    assert {r.observation.method for r in results.values()} == {"graph-api"}
    assert all(r.query["appsecret_proof"] == PROOF for r in fake.requests)


async def test_engine_one_shot_reports_a_spent_budget_as_rate_limited(tmp_path,
                                                                      fake_server) -> None:
    """Through the engine: a deferral propagates to the daemon, and is rate_limited in `check`."""
    fake, base = fake_server
    fake.pages["pemkotcilegon"] = fb_posts([])
    path = _config(tmp_path, base, facebook="    hourly_budget: 1\n",
                   agencies=_agency("dinsos", [], ["pemkotcilegon", "dinsoscilegon"]))
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram,facebook"})
    config = load_config(path, plugins.platforms, ENV)
    first, second = config.accounts
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    async with engine:
        assert (await engine.check(first)).ok
        with pytest.raises(Deferred):
            await engine.check(second, allow_defer=True)
        result = await engine.check(second)
    assert (result.ok, result.reason, result.retry_after) == (False, "rate_limited", 3600)
    assert "budget" in result.message and fake.graph_calls == 1


@contextlib.asynccontextmanager
async def _running(daemon: Daemon) -> AsyncIterator[None]:
    task = asyncio.create_task(daemon.run())
    started = asyncio.create_task(daemon.started.wait())
    await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=10)


async def _until(predicate, timeout: float = 10.0) -> None:  # noqa: ANN001
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_daemon_defers_on_spent_shared_budget_and_exports_usage(tmp_path,
                                                                      fake_server) -> None:
    """Daemon: with one call/hour shared by both platforms, one check runs, the other waits
    (paused, nothing recorded, no error counted); /metrics shows calls and usage."""
    fake, base = fake_server
    fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", [])
    fake.pages["pemkotcilegon"] = fb_posts([])
    budget = "    hourly_budget: 1\n"
    path = _config(tmp_path, base, interval="1s", instagram=budget, facebook=budget,
                   agencies=_agency("dinsos", ["dinsos.cilegon"], ["pemkotcilegon"]))
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram,facebook"})
    daemon = Daemon(path, plugins, environ=ENV,
                    scheduler=Scheduler(random.Random(1), spread=0.01))
    async with _running(daemon):
        scheduler = daemon.scheduler
        await _until(lambda: len(daemon.engine.states) == 1 and any(
            scheduler.paused_until(p) for p in ("instagram", "facebook")))
        async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{daemon.port}/metrics") as resp:
            text = await resp.text()
        states = dict(daemon.engine.states)
    [(_, checked, _)] = states
    waiting = "facebook" if checked == "instagram" else "instagram"
    pause = scheduler.paused_until(waiting) - datetime.now(UTC).timestamp()
    assert 3500 < pause <= 3600
    assert fake.graph_calls == 1
    samples = _samples(text)
    for platform in ("instagram", "facebook"):
        labels = (("platform", platform), ("reason", "rate_limited"))
        assert samples[("pantau_check_errors_total", labels)] == 0
        assert samples[("pantau_meta_api_usage_ratio", (("platform", platform),))] == 0.03
    assert samples[("pantau_api_requests_total", (("platform", checked),))] == 1
    assert samples[("pantau_api_requests_total", (("platform", waiting),))] == 0
    assert text.count("# HELP pantau_api_requests_total") == 1


def test_validate_prints_calls_per_token_and_warns_over_budget(tmp_path, monkeypatch,
                                                              capsys) -> None:
    """`pantau validate`: per platform, the token's source, calls/hour, and a warning."""
    for name, value in {**ENV, "PANTAU_PLUGINS": "instagram,facebook"}.items():
        monkeypatch.setenv(name, value)
    pages = [f"halaman{i}" for i in range(30)]
    path = _config(tmp_path, "https://graph.example", interval="15m",
                   facebook="    hourly_budget: 100\n",
                   agencies=_agency("dinsos", ["dinsos.cilegon"], pages))
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert ("instagram: Meta token env PANTAU_META_TOKEN: 1 accounts need about 4.0 Graph API "
            "calls/hour of its hourly_budget 200") in out
    assert ("WARNING: facebook: Meta token env PANTAU_META_TOKEN: 30 accounts need about 120.0 "
            "Graph API calls/hour of its hourly_budget 100") in out
    assert "WARNING: facebook: Meta token env PANTAU_META_TOKEN: 120.0 calls/hour exceed" in out
    assert "expires on 2027-01-31" in out
    assert TOKEN not in out and APP_SECRET not in out


# -- the token is found nowhere ----------------------------------------------------------------

OLD = "2025-03-01T02:00:00+0000"  # the CLI runs on the real clock: dates safely in the past


def _hostile(fake: MetaFake) -> str:
    """Successes and failures (one echoing the token) for a run that must leak nothing."""
    fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon",
                                                          [ig_media(OLD, "C3")])
    fake.instagram["ditolak"] = TOKEN_EXPIRED
    fake.web["kecamatan.cibeber"] = web_profile("kecamatan.cibeber",
                                                [web_node(1_740_000_000, "Bx")])
    fake.web["terkunci"] = WEB_REQUIRE_LOGIN
    fake.pages["pemkotcilegon"] = fb_posts([fb_post(OLD, "1_9")])
    fake.pages["bocor"] = TOKEN_ECHOED
    fake.pages["penuh"] = throttled(32, regain_minutes=2)
    fake.pages["hilang"] = alias_missing("hilang")
    return _agency("dinsos", ["dinsos.cilegon", "ditolak", "kecamatan.cibeber", "terkunci"],
                   ["pemkotcilegon", "bocor", "penuh", "hilang"])


def _assert_clean(where: str, text: str) -> None:
    for secret_value in (TOKEN, APP_SECRET, PROOF, TOKEN[:24]):
        assert secret_value not in text, f"{where} leaks {secret_value[:6]}..."


async def test_token_found_nowhere_logs_metrics_output_state(tmp_path, fake_server,
                                                            monkeypatch, capsys,
                                                            caplog) -> None:
    """A debug-logged run with a token via {env:}: the token, app secret and proof are in no
    log (structlog and stdlib), metric, `check` output (JSON, table) or SQLite byte."""
    fake, base = fake_server
    path = _config(tmp_path, base, agencies=_hostile(fake))
    for name, value in {**ENV, "PANTAU_PLUGINS": "instagram,facebook"}.items():
        monkeypatch.setenv(name, value)

    # the CLI, as an operator runs it, logging at debug level to stderr
    code = await asyncio.to_thread(main, ["check", "-c", str(path), "--format", "json",
                                          "--log-level", "debug"])
    out, err = capsys.readouterr()
    results = {(r["platform"], r["account"]): r for r in json.loads(out)}
    assert code == 1 and len(results) == 8
    assert results[("instagram", "dinsos.cilegon")]["latest_post_at"] == "2025-03-01T02:00:00Z"
    assert results[("facebook", "bocor")]["error"]["reason"] == "auth"
    assert results[("facebook", "penuh")]["error"]["reason"] == "rate_limited"
    assert "graph api call" in err and "REDACTED" in err  # URLs are logged, proof redacted
    _assert_clean("check --format json", out)
    _assert_clean("check stderr", err)
    HUB.reset()
    await asyncio.to_thread(main, ["check", "-c", str(path), "--log-level", "debug"])
    table, err = capsys.readouterr()
    assert "pemkotcilegon" in table
    _assert_clean("check table", table)
    _assert_clean("check table stderr", err)

    # the engine with raw structlog events (before any scrubbing) and stdlib records
    structlog.reset_defaults()
    caplog.set_level(logging.DEBUG)
    HUB.reset()
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram,facebook"})
    config = load_config(path, plugins.platforms)
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    metrics = Metrics(engine, "test")
    for platform in plugins.platforms.values():
        for collector in platform.collectors():
            metrics.register(collector)
    with structlog.testing.capture_logs() as events:
        async with engine:
            results_ = [await engine.check(a) for a in config.accounts]
    assert any(e["event"] == "http request" for e in events)
    _assert_clean("structlog events", repr(events))
    _assert_clean("stdlib log", caplog.text)
    _assert_clean("check messages", repr([r.message for r in results_]))
    exposition = metrics.render().decode()
    assert "pantau_api_requests_total" in exposition
    _assert_clean("metrics", exposition)

    # the state store, byte by byte (WAL and journal files included)
    files = sorted(tmp_path.glob("pantau.db*"))
    assert files
    for file in files:
        data = file.read_bytes()
        assert TOKEN.encode() not in data and PROOF.encode() not in data, file.name
        assert APP_SECRET.encode() not in data, file.name
    assert TOKEN not in repr(meta.HUB.budgets)


async def test_token_expiry_is_exported_at_start_before_any_check(tmp_path) -> None:
    """The daemon configures platforms at start: the expiry metric needs no check first."""
    from monitor.daemon import Daemon
    from monitor.plugins import load_plugins
    from monitor.scheduler import Scheduler

    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: 127.0.0.1:0\nstate: {tmp_path / 'state.db'}\n"
        "platforms:\n  instagram:\n    access_token: {env: META_TOKEN_X}\n"
        "    ig_user_id: '17841400000000000'\n    token_expires: 2027-01-31\n"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n    accounts: {instagram: dinsos}\n")
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram"})
    daemon = Daemon(path, plugins, environ={"META_TOKEN_X": "tok-123456"},
                    scheduler=Scheduler(random.Random(1), spread=3600))
    task = asyncio.create_task(daemon.run())
    try:
        await asyncio.wait_for(daemon.started.wait(), 10)
        async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{daemon.port}/metrics"
        ) as resp:
            text = await resp.text()
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    [sample] = [s for family in text_string_to_metric_families(text) for s in family.samples
                if s.name == "pantau_token_expiry_timestamp_seconds"]
    assert sample.labels == {"platform": "instagram"}
    assert sample.value == datetime(2027, 1, 31, tzinfo=UTC).timestamp()

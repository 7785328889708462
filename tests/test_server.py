"""Tests for monitor.server: /metrics, /healthz, /readyz on a loopback server."""

from __future__ import annotations

import asyncio
import gzip
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp
import pytest
import structlog
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from monitor import exposition
from monitor.deflater import Deflater
from monitor.metrics import AgencyInfo, Metrics
from monitor.model import Account
from monitor.server import CONTENT_TYPE, DEFLATER_KEY, bound_port, make_app, start_server
from monitor.state import AccountState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass
class View:
    accounts: list[Account] = field(default_factory=list)
    agencies: list[AgencyInfo] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str, str], AccountState] = field(default_factory=dict)

    def now(self) -> datetime:
        return NOW


@dataclass
class Ready:
    parts: dict[str, bool] = field(
        default_factory=lambda: {"store": True, "config": True, "plugins": True}
    )

    def ready(self) -> tuple[bool, dict[str, bool]]:
        return all(self.parts.values()), dict(self.parts)


class Broken:
    def ready(self) -> tuple[bool, dict[str, bool]]:
        raise RuntimeError("boom")


class StepClock:
    """A clock whose monotonic() advances by ``step`` on every call."""

    def __init__(self, step: float) -> None:
        self.step, self.t = step, 0.0

    def now(self) -> datetime:
        return NOW

    def monotonic(self) -> float:
        self.t += self.step
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.t += seconds


def many_accounts(n: int) -> list[Account]:
    return [Account(agency=f"a{i}", platform="rss", account=f"https://x/{i}", url="u",
                    interval=1.0, timeout=1.0, silence_after=60.0) for i in range(n)]


@pytest.fixture
def logs():
    """structlog events at every level, whatever another test configured before."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        with capture_logs() as captured:
            yield captured
    finally:
        structlog.configure(**saved)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(View(agencies=[AgencyInfo("dinsos", "Dinas Sosial", "dinas")]), "1.2.3")


@pytest.fixture
def ready() -> Ready:
    return Ready()


@pytest.fixture
async def client(aiohttp_client, metrics, ready):
    return await aiohttp_client(make_app(metrics, ready))


async def test_metrics_endpoint_serves_exposition(client):
    """/metrics answers 200 with the 0.0.4 text content type and pantau_build_info."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert resp.headers["Content-Type"] == CONTENT_TYPE
    text = await resp.text()
    assert 'pantau_build_info{version="1.2.3"} 1.0' in text
    assert 'pantau_agency_info{agency="dinsos"' in text


async def test_metrics_gzipped_when_accepted(aiohttp_client, ready):
    """A large exposition is gzipped when the client accepts gzip, and plain otherwise."""
    big = Metrics(View(accounts=many_accounts(50)), "v")
    client = await aiohttp_client(make_app(big, ready))
    plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    raw = await plain.read()
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                            auto_decompress=False)
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(await resp.read()) == raw
    refused = await client.get("/metrics", headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers


async def test_metrics_gzip_follows_state_changes(aiohttp_client, ready):
    """The gzipped exposition (from the cache) follows a changed state, and equals the text
    formatted afresh."""
    view = View(accounts=many_accounts(300))
    big = Metrics(view, "v")
    client = await aiohttp_client(make_app(big, ready))

    async def scrape() -> bytes:
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Vary"] == "Accept-Encoding"
        return gzip.decompress(await resp.read())

    first = await scrape()
    view.states[view.accounts[200].key] = AccountState(last_check_at=NOW, ok=False)
    second = await scrape()
    assert second != first
    assert second == generate_latest(big.registry)
    assert b'pantau_check_success{account="https://x/200",agency="a200",platform="rss"} 0.0' \
        in second


async def test_gzip_answer_makes_no_zlib_call(aiohttp_client, ready, monkeypatch):
    """The answer sends changed segments stored: no compression in the request (zlib lets go
    of the GIL, and getting it back from a busy daemon thread costs up to 5 ms a call)."""
    monkeypatch.setattr(Deflater, "start", lambda self: None)

    def no_zlib(*args, **kwargs):
        raise AssertionError("zlib compression in the answer")

    monkeypatch.setattr(exposition.zlib, "compressobj", no_zlib)
    view = View(accounts=many_accounts(300))
    big = Metrics(view, "v")
    client = await aiohttp_client(make_app(big, ready))
    resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                            auto_decompress=False)
    assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
    packed = await resp.read()
    assert gzip.decompress(packed) == generate_latest(big.registry)
    assert big.collector.cache.stats.segments_deflated == 0
    assert len(packed) > len(generate_latest(big.registry))  # stored, not compressed


async def test_deflater_compresses_after_the_answer(aiohttp_client, ready):
    """After a gzip answer the deflater thread compresses what changed; the next answer is
    small, still equal to the text; the thread ends with the app."""
    view = View(accounts=many_accounts(300))
    big = Metrics(view, "v")
    app = make_app(big, ready)
    client = await aiohttp_client(app)

    async def scrape() -> bytes:
        resp = await client.get("/metrics", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
        return await resp.read()

    first = await scrape()
    deflater = app[DEFLATER_KEY]
    assert await asyncio.to_thread(deflater.wait_idle, 10)
    assert big.collector.cache.stats.segments_deflated > 0
    second = await scrape()
    assert gzip.decompress(second) == gzip.decompress(first) == generate_latest(big.registry)
    assert len(second) < len(first) / 5
    view.states[view.accounts[7].key] = AccountState(last_check_at=NOW, ok=False)
    third = await scrape()
    assert gzip.decompress(third) == generate_latest(big.registry) != gzip.decompress(second)
    assert await asyncio.to_thread(deflater.wait_idle, 10)
    thread = deflater._thread
    assert thread is not None and thread.is_alive()
    await client.close()
    assert not thread.is_alive()


async def test_slow_render_is_logged(aiohttp_client, metrics, ready, logs):
    """A /metrics render slower than the threshold is logged as a warning."""
    client = await aiohttp_client(make_app(metrics, ready, clock=StepClock(1.0)))
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["slow metrics render"]


async def test_fast_render_is_not_logged(aiohttp_client, metrics, ready, logs):
    """A quick render logs no warning."""
    client = await aiohttp_client(make_app(metrics, ready, clock=StepClock(0.0)))
    await client.get("/metrics")
    assert not [e for e in logs if e["log_level"] == "warning"]


async def test_healthz_ok(client):
    """/healthz answers 200 ok."""
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert (await resp.text()).strip() == "ok"


async def test_readyz_ready(client):
    """/readyz answers 200 with every part when all are ready."""
    resp = await client.get("/readyz")
    assert resp.status == 200
    assert await resp.json() == {
        "ready": True, "checks": {"store": True, "config": True, "plugins": True}
    }


async def test_readyz_names_failing_part(client, ready):
    """/readyz answers 503 and names the part that is not ready."""
    ready.parts["store"] = False
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["ready"] is False
    assert body["checks"]["store"] is False
    assert body["failing"] == ["store"]


async def test_readyz_when_readiness_raises(aiohttp_client, metrics, logs):
    """A readiness check that raises gives 503, not a 500, and is logged."""
    client = await aiohttp_client(make_app(metrics, Broken()))
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["ready"] is False
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["readiness check failed"]


async def test_index_lists_endpoints(client):
    """/ lists the endpoints."""
    text = await (await client.get("/")).text()
    assert "/metrics" in text and "/healthz" in text and "/readyz" in text


async def test_start_server_on_loopback_port_zero(metrics, ready, logs):
    """start_server binds 127.0.0.1:0, bound_port finds the port, cleanup stops it."""
    runner = await start_server(make_app(metrics, ready), "127.0.0.1", 0)
    try:
        port = bound_port(runner)
        assert port > 0
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 200
                assert "pantau_build_info" in await resp.text()
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
        access = [e for e in logs if e["event"] == "http request"]
        assert [e["path"] for e in access] == ["/metrics", "/healthz"]
        assert all(e["log_level"] == "debug" for e in access)
    finally:
        await runner.cleanup()
    with pytest.raises(RuntimeError):
        bound_port(runner)

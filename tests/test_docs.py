"""Docs that tests keep honest: the plugin guide names every hook with its exact signature,
and its example plugin really works through the real HTTP client."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from aiohttp import web
from fakes.clock import FakeClock

from monitor import hookspecs
from monitor.checker import Memo
from monitor.http import HttpClient
from monitor.model import Account, ParseError
from monitor.platform import CheckContext
from monitor.plugins import load_plugins

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "plugins.md"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _hookspecs() -> list:
    return [
        f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(f, "pantau_spec")
    ]


def _signature(func) -> str:  # noqa: ANN001
    params = ", ".join(f"{n}: {a}" for n, a in func.__annotations__.items() if n != "return")
    return f"def {func.__name__}({params}) -> {func.__annotations__['return']}:"


def test_every_hook_is_in_the_guide_with_its_exact_signature():
    """docs/plugins.md shows each hookspec with the signature in monitor/hookspecs.py."""
    guide = GUIDE.read_text()
    specs = _hookspecs()
    assert specs, "no hookspecs found"
    for func in specs:
        assert _signature(func) in guide, f"{_signature(func)} missing from {GUIDE}"


def _example_module(tmp_path: Path):
    text = GUIDE.read_text()
    section = text.split("## A complete example", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "pantau_jsonfeed.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("pantau_jsonfeed", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pantau_jsonfeed"] = module
    spec.loader.exec_module(module)
    return module


class _NoValidators:
    def get_validators(self, url: str):  # noqa: ANN201
        return None


@pytest.fixture
def jsonfeed_server(aiohttp_server):
    """A loopback JSON Feed: a pinned old item first, an unsorted newest, a scheduled one."""
    feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [
            {"id": "pinned", "url": "https://x/p", "date_published": "2024-01-05T08:00:00+07:00"},
            {"id": "2", "url": "https://x/2", "date_published": "2026-11-19T10:00:00+07:00"},
            {"id": "3", "url": "https://x/3", "date_published": "2026-11-18T01:00:00Z"},
            {"id": "future", "date_published": "2026-12-25T00:00:00Z"},
        ],
    }

    async def good(request: web.Request) -> web.Response:
        return web.json_response(feed)

    async def bad(request: web.Request) -> web.Response:
        return web.json_response({"hello": "world"})

    app = web.Application()
    app.router.add_get("/feed.json", good)
    app.router.add_get("/bad.json", bad)
    return aiohttp_server(app)


async def test_guide_example_plugin_runs(tmp_path, jsonfeed_server):
    """The guide's example registers through the plugin manager and finds the newest post."""
    module = _example_module(tmp_path)
    try:
        loaded = load_plugins(environ={}, entry_points=[], extra=[("jsonfeed", module)])
        platform = loaded.platforms["jsonfeed"]
        server = await jsonfeed_server
        url = platform.normalize(f" {server.make_url('/feed.json')} ")
        client = HttpClient(user_agent="test", validators=_NoValidators(), clock=FakeClock(NOW))
        await client.start()
        try:
            account = Account("diskominfo", "jsonfeed", url, url, 1800, 5, 7 * 86400)
            ctx = CheckContext(
                http=client.bind("jsonfeed", timeout=5), settings=platform.settings_model(),
                log=structlog.get_logger(), clock=FakeClock(NOW), memo=Memo(), account=account,
            )
            observation = await platform.latest(url, ctx)
            assert observation.latest_post_at == datetime(2026, 11, 19, 3, 0, tzinfo=UTC)
            assert observation.post_id == "2" and observation.method == "jsonfeed"
            assert len(observation.posts) == 3  # the scheduled item is ignored
            bad_url = str(server.make_url("/bad.json"))
            with pytest.raises(ParseError):
                await platform.latest(bad_url, ctx)
        finally:
            await client.close()
        with pytest.raises(ValueError, match="http"):
            platform.normalize("ftp://example")
    finally:
        sys.modules.pop("pantau_jsonfeed", None)


def test_readme_config_example_is_valid(tmp_path):
    """The YAML example in the README's Configuration section loads as a real config."""
    from monitor.config import load_config

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    path = tmp_path / "readme.yaml"
    path.write_text(example)
    loaded = load_plugins(environ={"PANTAU_PLUGINS": "rss"})
    config = load_config(path, loaded.platforms)
    by_url = {a.account: a for a in config.accounts}
    override = by_url["https://dinsos.example.go.id/berita/feed/"]
    assert (override.interval, override.silence_after) == (7200, 30 * 86400)
    plain = by_url["https://dinsos.example.go.id/feed/"]
    assert (plain.interval, plain.silence_after) == (3600, 14 * 86400)  # platform, agency


def test_readme_lists_every_metric_the_collector_exports():
    """Every metric family pantau exports is documented in the README's metrics table."""
    from monitor.metrics import Metrics
    from monitor.state import AccountState

    account = Account("dinsos", "rss", "https://x/feed", "https://x/feed", 1800, 20, 86400)

    class View:
        accounts = [account]
        agencies = [type("A", (), {"id": "dinsos", "name": "Dinas Sosial", "group": "dinas"})()]
        missing = [("dinsos", "youtube")]
        states = {account.key: AccountState(last_post_at=NOW, last_check_at=NOW,
                                            last_success_at=NOW, ok=True)}

        def now(self) -> datetime:
            return NOW

    metrics = Metrics(View(), "1.0")
    metrics.init_platforms(["rss"])
    exported = {family.name for family in metrics.registry.collect()}
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"\| `(pantau_[a-z_]+)` \|", readme))
    assert len(exported) >= 11
    # prometheus_client names counters without their _total suffix
    assert {n if n in documented else n + "_total" for n in exported} <= documented

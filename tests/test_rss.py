"""Tests for plugins.rss end to end: the real plugin, the real HttpClient, a loopback fake."""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from fakes.clock import FakeClock
from fakes.feeds import (
    HTML_LOGIN_PAGE,
    FeedFake,
    FeedRoute,
    make_app,
    rss,
    rss_item,
)
from pydantic import ValidationError

from monitor.http import HttpClient, Validators
from monitor.model import Account, NotFound, Observation, ParseError, Unreachable
from monitor.platform import CheckContext
from monitor.plugins import load_plugins
from plugins.rss import RssPlatform, RssSettings

NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)

FEED = rss(
    [
        rss_item("Maklumat", pub_date="Mon, 09 Jan 2023 08:00:00 +0700"),  # sticky post first
        rss_item("Rakor Kehumasan", pub_date="Rab, 09 Okt 2024 09:30:00 WIB",
                 guid="https://dinsos.example.go.id/?p=4312"),
        rss_item("Terjadwal", pub_date="Sen, 14 Okt 2024 08:00:00 WIB"),  # scheduled: ignored
        rss_item("HUT RI", pub_date="Sab, 17 Agu 2024 07:00:00 WIB"),
    ],
    last_build_date="Thu, 10 Oct 2024 11:59:00 +0000",
)


@dataclass
class Store:
    """Validators kept across checks, committed after each successful check like the core."""

    stored: dict[str, Validators] = field(default_factory=dict)

    def get_validators(self, url: str) -> Validators | None:
        return self.stored.get(url)


class Memo:
    """A dict-backed AccountMemo."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


@dataclass
class Env:
    fake: FeedFake
    base: str
    store: Store
    check: Callable[[str], Awaitable[Observation]]


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[Env]:
    """A fake feed server, a started HttpClient on a fake clock, and a check(path) helper."""
    fake = FeedFake()
    server = await aiohttp_server(make_app(fake))
    base = str(server.make_url("/")).rstrip("/")
    store = Store()
    clock = FakeClock(NOW)
    platform = RssPlatform()
    async with HttpClient(
        user_agent="pantau-test", validators=store, clock=clock, rng=random.Random(7)
    ) as client:

        async def check(path: str) -> Observation:
            account = platform.normalize(base + path)
            http = client.bind("rss", timeout=5)
            ctx = CheckContext(
                http=http,
                settings=RssSettings(),
                log=structlog.get_logger(),
                clock=clock,
                memo=Memo(),
                account=Account(
                    agency="dinsos", platform="rss", account=account, url=platform.url(account),
                    interval=1800.0, timeout=5.0, silence_after=7 * 86400.0,
                ),
            )
            observation = await platform.latest(account, ctx)
            store.stored.update(http.pending_validators)  # the core commits on success
            return observation

        yield Env(fake=fake, base=base, store=store, check=check)


async def test_newest_post_with_method_feed(env: Env) -> None:
    """The newest dated, non-future entry is reported, with method "feed"."""
    env.fake.routes["/feed/"] = FeedRoute(FEED)
    obs = await env.check("/feed/")
    assert obs.method == "feed"
    assert not obs.unchanged
    assert obs.latest_post_at == datetime(2024, 10, 9, 2, 30, tzinfo=UTC)
    assert obs.post_id == "https://dinsos.example.go.id/?p=4312"
    assert obs.post_url == "https://dinsos.example.go.id/berita/rakor-kehumasan/"
    assert len(obs.posts) == 3


async def test_feed_is_parsed_off_the_event_loop(env: Env, monkeypatch) -> None:
    """parse_feed runs in a worker thread, not on the event loop's thread."""
    import plugins.rss

    threads: list[int] = []
    real = plugins.rss.parse_feed

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(plugins.rss, "parse_feed", spy)
    env.fake.routes["/feed/"] = FeedRoute(FEED)
    await env.check("/feed/")
    assert threads and threads[0] != threading.get_ident()


async def test_sends_feed_accept_header(env: Env) -> None:
    """The request asks for feed media types first."""
    env.fake.routes["/feed/"] = FeedRoute(FEED)
    await env.check("/feed/")
    assert env.fake.requests[-1]["Accept"].startswith("application/rss+xml")


async def test_second_check_with_etag_is_not_modified(env: Env) -> None:
    """With a stored ETag the server answers 304, the body is not sent again: unchanged."""
    env.fake.routes["/feed/"] = FeedRoute(FEED, last_modified=None)
    first = await env.check("/feed/")
    second = await env.check("/feed/")
    assert first.latest_post_at is not None
    assert second == Observation.not_modified("feed")
    assert env.fake.requests[-1]["If-None-Match"] == env.fake.routes["/feed/"].etag_value
    assert (env.fake.bodies_sent, env.fake.not_modified_sent) == (1, 1)


async def test_second_check_with_last_modified_is_not_modified(env: Env) -> None:
    """With only Last-Modified, If-Modified-Since gets a 304 and the body is not resent."""
    env.fake.routes["/feed/"] = FeedRoute(FEED, etag=False)
    await env.check("/feed/")
    second = await env.check("/feed/")
    assert second.unchanged
    assert "If-Modified-Since" in env.fake.requests[-1]
    assert (env.fake.bodies_sent, env.fake.not_modified_sent) == (1, 1)


async def test_changed_feed_is_parsed_again(env: Env) -> None:
    """A new body (new ETag) after a check is parsed: the new post is seen."""
    env.fake.routes["/feed/"] = FeedRoute(FEED)
    await env.check("/feed/")
    env.fake.routes["/feed/"] = FeedRoute(
        rss([rss_item("Baru", pub_date="Thu, 10 Oct 2024 08:00:00 WIB")])
    )
    obs = await env.check("/feed/")
    assert not obs.unchanged
    assert obs.latest_post_at == datetime(2024, 10, 10, 1, tzinfo=UTC)
    assert env.fake.bodies_sent == 2


async def test_same_body_without_validators_is_unchanged(env: Env) -> None:
    """A server without ETag/Last-Modified sending the same body: unchanged, not re-parsed."""
    env.fake.routes["/feed/"] = FeedRoute(FEED, etag=False, last_modified=None)
    first = await env.check("/feed/")
    second = await env.check("/feed/")
    assert not first.unchanged
    assert second.unchanged and second.latest_post_at is None
    assert env.fake.bodies_sent == 2


@pytest.mark.parametrize("status", [404, 410])
async def test_gone_feed_is_not_found(env: Env, status: int) -> None:
    """404 and 410 are reason not_found."""
    env.fake.routes["/feed/"] = FeedRoute(b"<html>gone</html>", status=status,
                                          content_type="text/html")
    with pytest.raises(NotFound):
        await env.check("/feed/")


async def test_server_error_is_unreachable(env: Env) -> None:
    """A 500 (after the client's retries) is reason unreachable."""
    env.fake.routes["/feed/"] = FeedRoute(b"Internal Server Error", status=500,
                                          content_type="text/plain")
    with pytest.raises(Unreachable):
        await env.check("/feed/")
    assert len(env.fake.requests) >= 2  # retried, on the fake clock


async def test_html_login_page_is_parse_error(env: Env) -> None:
    """An HTML login page answered with 200 is reason parse, naming the page."""
    env.fake.routes["/feed/"] = FeedRoute(HTML_LOGIN_PAGE, content_type="text/html")
    with pytest.raises(ParseError, match="HTML page titled 'Login - SSO"):
        await env.check("/feed/")


async def test_empty_feed_has_no_latest_post(env: Env) -> None:
    """A valid feed without items: success with latest_post_at None."""
    env.fake.routes["/feed/"] = FeedRoute(rss([]))
    obs = await env.check("/feed/")
    assert obs.latest_post_at is None and obs.posts == () and obs.method == "feed"


async def test_relative_links_resolve_against_the_final_url(env: Env) -> None:
    """A relative item link is made absolute against the URL the feed came from."""
    env.fake.routes["/feed/"] = FeedRoute(
        rss([rss_item("R", link="/berita/r/", pub_date="Wed, 09 Oct 2024 08:00 WIB")])
    )
    obs = await env.check("/feed/")
    assert obs.post_url == env.base + "/berita/r/"


def test_plugin_is_loaded_through_the_entry_point() -> None:
    """monitor.plugins.load_plugins() finds the rss platform via the pantau entry point."""
    loaded = load_plugins(environ={})
    assert isinstance(loaded.platforms.get("rss"), RssPlatform)
    assert any(p.name == "rss" and p.platforms == ["rss"] and not p.error for p in loaded.loaded)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://dinsos.example.go.id/feed/", "https://dinsos.example.go.id/feed/"),
        ("  HTTPS://Dinsos.Example.GO.ID/Feed/?Kat=Berita#top \n",
         "https://dinsos.example.go.id/Feed/?Kat=Berita"),
        ("http://127.0.0.1:8080/rss.xml", "http://127.0.0.1:8080/rss.xml"),
        ("https://rsshub.example/youtube/channel/UC0?limit=5",
         "https://rsshub.example/youtube/channel/UC0?limit=5"),
    ],
)
def test_normalize_accepts_http_urls(raw: str, expected: str) -> None:
    """Scheme and host are lower-cased, spaces and fragment dropped, path and query kept."""
    assert RssPlatform().normalize(raw) == expected
    assert RssPlatform().url(expected) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "dinsos.example.go.id/feed", "ftp://example.go.id/feed", "feed://example.go.id/rss",
     "file:///etc/passwd", "https://", "https://exa mple.go.id/feed", "https://h:99999/"],
)
def test_normalize_rejects_non_http_urls(raw: str) -> None:
    """Anything but an absolute http(s) URL is a ValueError naming what was expected."""
    with pytest.raises(ValueError, match="expected an http\\(s\\) feed URL"):
        RssPlatform().normalize(raw)


def test_normalize_rejects_credentials_without_echoing_them() -> None:
    """A URL with a password is refused and the password is not in the message."""
    with pytest.raises(ValueError, match="user name or password") as info:
        RssPlatform().normalize("https://admin:s3cr3t@example.go.id/feed")
    assert "s3cr3t" not in str(info.value)


def test_settings_defaults_and_validation() -> None:
    """future_skew defaults to one day; an unknown time zone is refused."""
    settings = RssSettings()
    assert settings.future_skew == 86400.0
    assert settings.tz.key == "Asia/Jakarta"
    assert RssSettings(future_skew="2h", default_timezone="Asia/Jayapura").future_skew == 7200.0
    with pytest.raises(ValidationError, match="unknown time zone 'Asia/Cilegon'"):
        RssSettings(default_timezone="Asia/Cilegon")
    with pytest.raises(ValidationError):
        RssSettings(future_skew="soon")

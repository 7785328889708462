"""Tests for plugins.rss end to end: the real plugin, the real HttpClient, a loopback fake."""

from __future__ import annotations

import asyncio
import pickle
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
    atom,
    atom_entry,
    make_app,
    rss,
    rss_item,
)
from pydantic import ValidationError

from monitor.http import HttpClient, Validators
from monitor.model import Account, NotFound, Observation, ParseError, Unreachable
from monitor.platform import CheckContext, ThreadRunner
from monitor.plugins import load_plugins
from plugins.feeds import INLINE_MAX, parse_feed
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
    check: Callable[..., Awaitable[Observation]]


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

        async def check(path: str, cpu: Any = None) -> Observation:
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
                cpu=cpu or ThreadRunner(),
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


class SpyRunner:
    """A CpuRunner recording what it was given to run, and on which thread it ran."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []
        self.threads: list[int] = []

    async def run(self, func: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((func, kwargs))
        pickle.dumps((func, args, kwargs))  # what worker processes need

        def call() -> Any:
            self.threads.append(threading.get_ident())
            return func(*args, **kwargs)

        return await asyncio.to_thread(call)


def big_feed() -> bytes:
    """A plain RSS feed over plugins.feeds.INLINE_MAX (long descriptions)."""
    text = "Kegiatan dinas " * 1000
    items = [rss_item(f"Berita {n}", pub_date=f"Mon, {n + 1:02d} Sep 2024 08:00:00 +0700",
                      extra=f"<content:encoded><![CDATA[{text}]]></content:encoded>")
             for n in range(20)]
    body = rss(items)
    assert len(body) > INLINE_MAX
    return body


async def test_big_feed_is_parsed_off_the_event_loop(env: Env) -> None:
    """A body over INLINE_MAX goes whole to ctx.run_cpu (worker processes in the daemon):
    parse_feed, module-level, with picklable arguments; not on the event loop's thread."""
    env.fake.routes["/feed/"] = FeedRoute(big_feed())
    spy = SpyRunner()
    obs = await env.check("/feed/", cpu=spy)
    assert [func for func, _ in spy.calls] == [parse_feed]
    assert spy.calls[0][1]["base_url"] == env.base + "/feed/"
    assert spy.threads and threading.get_ident() not in spy.threads
    assert obs.latest_post_at == datetime(2024, 9, 20, 1, tzinfo=UTC)


async def test_small_plain_rss_is_read_at_once(env: Env) -> None:
    """A small plain RSS 2.0 body is read by the fast reader on the loop: nothing is sent to
    ctx.run_cpu, and the answer is feedparser's."""
    env.fake.routes["/feed/"] = FeedRoute(FEED)
    spy = SpyRunner()
    obs = await env.check("/feed/", cpu=spy)
    assert spy.calls == []
    assert obs.latest_post_at == datetime(2024, 10, 9, 2, 30, tzinfo=UTC)
    assert obs.post_id == "https://dinsos.example.go.id/?p=4312"


async def test_small_feed_the_fast_reader_refuses_goes_to_run_cpu(env: Env) -> None:
    """An Atom feed (or any RSS the fast reader doubts) goes to ctx.run_cpu, once, with the
    fast reader not tried again there."""
    body = atom([atom_entry("v1", published="2024-10-08T10:00:00Z")])
    env.fake.routes["/feed/"] = FeedRoute(body, content_type="application/atom+xml")
    spy = SpyRunner()
    obs = await env.check("/feed/", cpu=spy)
    assert [(func, kwargs["fast"]) for func, kwargs in spy.calls] == [(parse_feed, False)]
    assert spy.threads and threading.get_ident() not in spy.threads
    assert obs.post_id == "yt:video:v1"


async def test_parse_errors_come_back_from_run_cpu(env: Env) -> None:
    """A ParseError raised where run_cpu runs parse_feed reaches the check."""
    env.fake.routes["/feed/"] = FeedRoute(rss([rss_item("A")]))
    with pytest.raises(ParseError, match="no dated entries"):
        await env.check("/feed/", cpu=SpyRunner())


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


# --- normalize: the fast form agrees with urlsplit's --------------------------------------


def normalize_by_urlsplit(account: str) -> str:
    """RssPlatform.normalize as it was, all through urlsplit (the reference)."""
    from urllib.parse import urlsplit, urlunsplit

    value = account.strip()
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"expected an http(s) feed URL, got {account!r}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError(f"expected an http(s) feed URL, got {account!r}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a feed URL must not contain a user name or password")
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path, parts.query, ""))


def _outcome(normalize: Callable[[str], str], raw: str) -> tuple[str, str]:
    try:
        return "ok", normalize(raw)
    except ValueError as exc:
        return "error", str(exc)


ODD_URLS = [
    "https://dinsos.example.go.id/feed/", "HTTPS://Dinsos.Example.GO.ID/Feed/?Kat=Berita#top",
    "http://127.0.0.1:8080/rss.xml", "http://h:/x", "http://h:0/x", "http://h:0080/x",
    "http://h:65535", "http://h:65536/", "http://h:" + "0" * 5000 + "80/", "http://h:99999999/",
    "http://h:8a/", "http://[::1]:8080/feed", "http://[::1/feed", "http://::1]/x",
    "https://user@h/x", "https://user:pw@h/x", "https://:pw@h/x", "https://h/x@y",
    "https://h?q", "https://h#f", "https://h/?", "https://h/#", "https://h/a?b?c#d#e",
    "https://h/a b", "https://h/a\tb", "https://h/a\u00a0b", "https://h/a\u2003", "https://h/\x1c",
    "https://h/\x01", "\x01https://h/", " https://h/ ", "https:/h/x", "https:h", "https:///x",
    "http://", "https://h_a.b-c/x", "https://H.%41.com/", "https://tést.example/", "https://h/é",
    "ftp://h/x", "feed://h/x", "HtTpS://h/X", "https://h;p/x", "https://h,p/x", "https://h%25/x",
    "https://h./x", "https://.h/x", "https://-/x", "https://h/\\x", "https://h\\x/y",
    "https://h:80:80/", "https://h:+80/", "https://h:\u0661\u0662/", "https://ＥＸＡＭＰＬＥ.com/",
    "https://h/%zz", "https://h/" + "a" * 3000, "", "   ", "https", "//h/x", "https://h\n/x",
]


def test_normalize_agrees_with_urlsplit_on_odd_urls() -> None:
    """The fast form gives exactly the urlsplit form's result, or the same error."""
    platform = RssPlatform()
    for raw in ODD_URLS:
        assert _outcome(platform.normalize, raw) == _outcome(normalize_by_urlsplit, raw), raw


def test_normalize_agrees_with_urlsplit_on_random_urls() -> None:
    """Random strings built from URL pieces and troublesome characters: same results."""
    rng = random.Random(77)
    pieces = ["http", "https", "HTTP", "://", ":", "/", "//", "?", "#", "@", "[", "]", "%", "%41",
              ".", "-", "_", "h", "Example", "go.id", "8080", "0", "65536", " ", "\t", "\u00a0",
              "\x1f", "é", "a", "=", "&", ";", "~", "+", "\\", "Ａ", "\u0663", "xn--e1a"]
    platform = RssPlatform()
    for _ in range(20_000):
        raw = rng.choice(["http://", "https://", "HTTPS://", ""]) + "".join(
            rng.choice(pieces) for _ in range(rng.randrange(1, 9)))
        assert _outcome(platform.normalize, raw) == _outcome(normalize_by_urlsplit, raw), raw

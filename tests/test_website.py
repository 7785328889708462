"""Tests for plugins.website end to end: the real plugin, the real HttpClient, a loopback fake
site (tests/fakes/website.py) reproducing each method, each trap and each failure shape."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog
from fakes.clock import FakeClock
from fakes.feeds import billion_laughs, rss, rss_item
from fakes.website import (
    LOGIN_PAGE,
    SiteFake,
    SiteRoute,
    home_page,
    html_route,
    json_route,
    make_site_app,
    rest_error,
    robots_txt,
    sitemap_index,
    urlset,
    wp_post,
    xml_route,
)
from pydantic import ValidationError

from monitor.http import HttpClient, Validators
from monitor.model import (
    Account,
    Blocked,
    Observation,
    ParseError,
    RateLimited,
    Timeout,
    Unreachable,
)
from monitor.platform import CheckContext
from monitor.plugins import load_plugins
from plugins.sitemaps import parse_sitemap, parse_xml, sitemap_kind
from plugins.website import WebsitePlatform, WebsiteSettings
from plugins.wordpress import same_site

NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)
REST = "/wp-json/wp/v2/posts"
REST_ROUTE = "?rest_route=/wp/v2/posts"
RSS = "application/rss+xml; charset=UTF-8"

#: The REST answer of a site with a sticky 2023 post listed first.
POSTS = [
    wp_post(7, "2023-01-09T08:00:00", "2023-01-09T01:00:00", sticky=True),
    wp_post(4312, "2024-10-09T09:30:00", "2024-10-09T02:30:00",
            link="https://dinsos.example.go.id/berita/rakor/"),
    wp_post(4300, "2024-08-17T07:00:00", "2024-08-17T00:00:00"),
]
NEWEST = datetime(2024, 10, 9, 2, 30, tzinfo=UTC)

FEED = rss([
    rss_item("Maklumat", pub_date="Mon, 09 Jan 2023 08:00:00 +0700"),
    rss_item("Rakor", pub_date="Rab, 09 Okt 2024 09:30:00 WIB"),
])
COMMENTS_FEED = rss([rss_item("Komentar", pub_date="Thu, 10 Oct 2024 11:00:00 WIB")])
PLAIN_HOME = home_page(body="<p>Selamat datang di situs resmi Dinas Sosial.</p>")


class Store:
    """Validators kept across checks, committed after each successful check like the core."""

    def __init__(self) -> None:
        self.stored: dict[str, Validators] = {}

    def get_validators(self, url: str) -> Validators | None:
        return self.stored.get(url)


class Memo:
    """A dict-backed AccountMemo, kept across the checks of a test."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


class WallClock(FakeClock):
    """A fixed wall time with a real monotonic clock (for deadline tests)."""

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class Env:
    fake: SiteFake
    site: str
    store: Store
    memo: Memo
    check: Callable[..., Awaitable[Observation]]
    clock: FakeClock = field(default_factory=lambda: FakeClock(NOW))

    def route(self, key: str, route: SiteRoute) -> None:
        self.fake.routes[key] = route


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[Env]:
    """A fake site, a started HttpClient, and check(**settings) keeping memo and validators."""
    fake = SiteFake()
    server = await aiohttp_server(make_site_app(fake))
    platform = WebsitePlatform()
    site = platform.normalize(str(server.make_url("/")))
    store, memo = Store(), Memo()
    clocks = {"fake": FakeClock(NOW), "wall": WallClock(NOW)}
    clients = {
        name: HttpClient(user_agent="pantau-test", validators=store, clock=clock,
                         rng=random.Random(7))
        for name, clock in clocks.items()
    }
    for client in clients.values():
        await client.start()

    async def check(*, timeout: float = 5.0, clock: str = "fake", **settings: Any) -> Observation:
        http = clients[clock].bind("website", timeout=timeout)
        ctx = CheckContext(
            http=http, settings=WebsiteSettings(**settings), log=structlog.get_logger(),
            clock=clocks[clock], memo=memo,
            account=Account(agency="dinsos", platform="website", account=site, url=site,
                            interval=1800.0, timeout=timeout, silence_after=7 * 86400.0),
        )
        observation = await platform.latest(site, ctx)
        store.stored.update(http.pending_validators)  # the core commits on success
        return observation

    yield Env(fake=fake, site=site, store=store, memo=memo, check=check)
    fake.release()
    for client in clients.values():
        await client.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- accounts and settings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://dinsos.example.go.id", "https://dinsos.example.go.id"),
        ("  HTTPS://Dinsos.Example.GO.ID/ \n", "https://dinsos.example.go.id"),
        ("https://dinsos.example.go.id/?page_id=2#top", "https://dinsos.example.go.id"),
        ("http://example.go.id:80/Dinsos/", "http://example.go.id/Dinsos"),
        ("https://example.go.id:8443", "https://example.go.id:8443"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ],
)
def test_normalize_gives_the_base_url(raw: str, expected: str) -> None:
    """Scheme/host lower-cased; default port, trailing slash, query and fragment dropped."""
    assert WebsitePlatform().normalize(raw) == expected
    assert WebsitePlatform().url(expected) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "dinsos.example.go.id", "ftp://example.go.id", "file:///etc/passwd", "https://",
     "https://exa mple.go.id", "https://h:99999/", "mailto:humas@example.go.id"],
)
def test_normalize_rejects_anything_but_http_urls(raw: str) -> None:
    """Anything but an absolute http(s) URL is a ValueError saying what is expected."""
    with pytest.raises(ValueError, match=r"expected a website's http\(s\) base URL"):
        WebsitePlatform().normalize(raw)


def test_normalize_rejects_credentials_without_echoing_them() -> None:
    """A URL with a password is refused and the password is not in the message."""
    with pytest.raises(ValueError, match="user name or password") as info:
        WebsitePlatform().normalize("https://admin:s3cr3t@example.go.id")
    assert "s3cr3t" not in str(info.value)


def test_settings_defaults_and_validation() -> None:
    """Defaults: 1d skew, Asia/Jakarta, 5 sitemaps, all methods; bad values are refused."""
    settings = WebsiteSettings()
    assert (settings.future_skew, settings.tz.key, settings.max_sitemaps, settings.methods) == (
        86400.0, "Asia/Jakarta", 5, None)
    assert WebsiteSettings(methods=["feed", "html"]).methods == ("feed", "html")
    for bad in ({"methods": ["rss"]}, {"methods": []}, {"methods": ["feed", "feed"]},
                {"default_timezone": "Asia/Cilegon"}, {"max_sitemaps": 0}, {"sitemap": 1}):
        with pytest.raises(ValidationError):
            WebsiteSettings(**bad)


def test_plugin_is_loaded_through_the_entry_point() -> None:
    """monitor.plugins.load_plugins() finds the website platform via the pantau entry point."""
    loaded = load_plugins(environ={"PANTAU_PLUGINS": "website"})
    assert isinstance(loaded.platforms.get("website"), WebsitePlatform)


# --- 1. WordPress REST API ----------------------------------------------------------------


async def test_rest_takes_the_newest_post_not_the_sticky_first(env: Env) -> None:
    """A sticky 2023 post listed first does not win: the maximum date_gmt does."""
    env.route(REST, json_route(POSTS))
    obs = await env.check()
    assert (obs.method, obs.latest_post_at, obs.post_id) == ("wp-json", NEWEST, "4312")
    assert obs.post_url == "https://dinsos.example.go.id/berita/rakor/"
    assert len(obs.posts) == 3
    [request] = env.fake.requests
    assert "per_page=5&orderby=date&order=desc&_fields=id,date_gmt,date,link,sticky" in (
        request["path"].replace("%2C", ","))


async def test_rest_date_gmt_is_utc_and_date_is_local(env: Env) -> None:
    """date_gmt (no zone) is read as UTC and beats date (here a site set to WITA, +8);
    date alone is read in Asia/Jakarta."""
    env.route(REST, json_route([wp_post(1, "2024-10-09T10:30:00", "2024-10-09T02:30:00")]))
    assert (await env.check()).latest_post_at == datetime(2024, 10, 9, 2, 30, tzinfo=UTC)
    env.route(REST, json_route([wp_post(2, "2024-10-09T09:30:00", None)]))
    assert (await env.check()).latest_post_at == datetime(2024, 10, 9, 2, 30, tzinfo=UTC)


async def test_rest_modified_newer_than_date_is_not_a_post_time(env: Env) -> None:
    """modified/modified_gmt (an edit today) never replace the publication date."""
    env.route(REST, json_route([wp_post(1, "2024-10-01T08:00:00", "2024-10-01T01:00:00",
                                        modified="2024-10-10T18:00:00",
                                        modified_gmt="2024-10-10T11:00:00")]))
    assert (await env.check()).latest_post_at == datetime(2024, 10, 1, 1, tzinfo=UTC)


async def test_rest_scheduled_post_is_ignored(env: Env) -> None:
    """A post dated more than a day ahead (scheduled) is skipped."""
    env.route(REST, json_route([wp_post(9, "2024-10-20T08:00:00", "2024-10-20T01:00:00"),
                                *POSTS]))
    assert (await env.check()).latest_post_at == NEWEST


async def test_rest_cannot_access_moves_on_without_rest_route(env: Env) -> None:
    """401 rest_cannot_access: the API is blocked; ?rest_route= is not tried, the feed answers."""
    env.route(REST, json_route(rest_error("rest_cannot_access", "Only authenticated users "
                                          "can access the REST API.", 401), status=401))
    env.route("/", html_route(home_page(feeds=[("application/rss+xml", "/feed/", "Feed")])))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    obs = await env.check()
    assert (obs.method, obs.latest_post_at) == ("feed", NEWEST)
    assert env.fake.hits[REST_ROUTE] == 0 and env.memo.get("method") == "feed"


async def test_rest_404_falls_back_to_rest_route(env: Env) -> None:
    """/wp-json/ 404 (plain permalinks): ?rest_route= answers; next time it alone is asked."""
    env.route(REST_ROUTE, json_route(POSTS))
    obs = await env.check()
    assert (obs.method, obs.latest_post_at) == ("wp-json", NEWEST)
    assert env.fake.hits == {REST: 1, REST_ROUTE: 1}
    env.fake.reset_counts()
    await env.check()
    assert env.fake.hits == {REST_ROUTE: 1}


async def test_rest_redirect_to_login_page_is_blocked(env: Env) -> None:
    """A redirect to wp-login.php: next method; the login page is never taken for data."""
    env.route(REST, SiteRoute(redirect="/wp-login.php?redirect_to=%2Fwp-json%2F"))
    env.route("/wp-login.php", html_route(LOGIN_PAGE))
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    obs = await env.check()
    assert obs.method == "feed" and env.fake.hits[REST_ROUTE] == 0


async def test_rest_html_page_instead_of_json_tries_rest_route(env: Env) -> None:
    """A 200 HTML page at /wp-json/ (rewrites off) is not data; ?rest_route= is tried."""
    env.route(REST, html_route(PLAIN_HOME))
    env.route(REST_ROUTE, json_route(POSTS))
    assert (await env.check()).method == "wp-json"
    assert env.memo.get("wp_form") == "rest_route"
    [key] = env.store.stored  # the HTML page's validators were not kept
    assert "rest_route=" in key


async def test_rest_rate_limit_stops_the_check(env: Env) -> None:
    """A 429 from the site is rate_limited at once: no other method hammers the site."""
    env.route(REST, json_route({}, status=429, headers={"Retry-After": "120"}))
    with pytest.raises(RateLimited) as info:
        await env.check()
    assert info.value.retry_after == 120.0 and env.fake.total == 1


async def test_rest_without_posts_is_an_empty_site_when_nothing_else_has_dates(env: Env) -> None:
    """An empty REST list, and no other method with a date: success, no latest post."""
    env.route(REST, json_route([]))
    env.route("/", html_route(PLAIN_HOME))
    obs = await env.check()
    assert obs == Observation(latest_post_at=None, method="wp-json")
    assert env.memo.data == {"method": "wp-json", "source": env.site + REST, "wp_form": "wp-json"}


# --- 2. feeds -----------------------------------------------------------------------------


async def test_feed_autodiscovery_resolves_relative_href_and_skips_comments(env: Env) -> None:
    """The main feed linked with a relative href is read; the comments feed never is."""
    env.route("/berita/", html_route(home_page(feeds=[
        ("application/rss+xml", "../comments/feed/", "Dinsos &raquo; Comments Feed"),
        ("application/rss+xml", "../index.php/feed/rss2/", "Dinsos &raquo; Feed"),
    ])))
    env.route("/", SiteRoute(redirect="/berita/"))
    env.route("/index.php/feed/rss2/", SiteRoute(FEED, content_type=RSS))
    env.route("/comments/feed/", SiteRoute(COMMENTS_FEED, content_type=RSS))
    obs = await env.check(methods=["feed"])
    assert (obs.method, obs.latest_post_at) == ("feed", NEWEST)
    assert env.fake.hits["/comments/feed/"] == 0 and env.fake.hits["/feed/"] == 0
    assert env.memo.get("feed_url") == env.site + "/index.php/feed/rss2/"


async def test_feed_falls_back_to_slash_feed(env: Env) -> None:
    """No feed linked on the home page: {site}/feed/ is read."""
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    assert (await env.check(methods=["feed"])).latest_post_at == NEWEST


async def test_remembered_feed_costs_one_request_and_uses_304(env: Env) -> None:
    """Once the feed answered, a check is one conditional GET of it; a 304 keeps the values."""
    env.route("/", html_route(home_page(feeds=[("application/atom+xml", "/feed/", "Feed")])))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS, etag=True))
    first = await env.check()
    assert first.method == "feed" and first.latest_post_at == NEWEST
    env.fake.reset_counts()
    second = await env.check()
    assert second == Observation.not_modified("feed")
    assert env.fake.hits == {"/feed/": 1} and env.fake.not_modified_sent == 1
    assert env.fake.requests[0]["If-None-Match"] == env.fake.routes["/feed/"].etag_value


async def test_304_for_a_source_that_did_not_answer_last_is_not_trusted(env: Env) -> None:
    """Validators from an older time: a 304 is not taken as "unchanged"; the body is read."""
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS, etag=True))
    await env.check(methods=["feed"])
    env.memo.data.update({"method": "sitemap", "source": env.site + "/sitemap.xml"})
    obs = await env.check(methods=["sitemap", "feed"])
    assert not obs.unchanged and obs.latest_post_at == NEWEST and obs.method == "feed"
    assert env.fake.hits["/feed/"] == 3  # first check, the untrusted 304, the refetch


async def test_validators_of_a_failed_answer_are_not_kept(env: Env) -> None:
    """A login page served at the feed URL leaves no validator that could later fake a 304."""
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS, etag=True))
    await env.check(methods=["feed", "sitemap"])
    [key] = env.store.stored
    good = env.store.stored[key]
    env.route("/feed/", html_route(LOGIN_PAGE, etag=True))
    env.route("/sitemap.xml", xml_route(urlset([(env.site + "/berita/a/", "2024-10-08")])))
    obs = await env.check(methods=["feed", "sitemap"])
    assert obs.method == "sitemap"
    assert env.store.stored[key] == good
    assert good.body_hash == hashlib.sha256(FEED).hexdigest()


# --- 3. sitemaps --------------------------------------------------------------------------


def _yoast(env: Env) -> None:
    site = env.site
    env.route("/robots.txt", SiteRoute(robots_txt([site + "/sitemap_index.xml"]),
                                       content_type="text/plain"))
    env.route("/sitemap_index.xml", xml_route(sitemap_index([
        (site + "/post-sitemap.xml", "2024-10-09T02:31:00+00:00"),
        (site + "/post-sitemap2.xml", "2024-01-05T10:00:00+00:00"),
        (site + "/page-sitemap.xml", "2024-10-10T09:00:00+00:00"),  # newer, but pages
        (site + "/category-sitemap.xml", "2024-10-10T09:00:00+00:00"),
    ])))
    env.route("/post-sitemap.xml", xml_route(urlset([
        (site + "/", "2024-10-10T10:00:00+07:00"),  # the home page: not a post
        (site + "/berita/rakor/", "2024-10-09T09:31:00+07:00"),
        (site + "/berita/hut-ri/", "2024-08-17T07:00:00+07:00"),
    ])))
    env.route("/page-sitemap.xml", xml_route(urlset([(site + "/profil/", "2024-10-10")])))


async def test_sitemap_index_follows_only_the_newest_post_sitemap(env: Env) -> None:
    """robots.txt -> Yoast index -> the post sitemap with the newest lastmod; pages ignored."""
    _yoast(env)
    obs = await env.check(methods=["sitemap"])
    assert obs.method == "sitemap"
    assert obs.latest_post_at == datetime(2024, 10, 9, 2, 31, tzinfo=UTC)
    assert obs.post_url == env.site + "/berita/rakor/"
    assert env.fake.hits["/page-sitemap.xml"] == 0 and env.fake.hits["/post-sitemap2.xml"] == 0
    assert env.fake.hits["/category-sitemap.xml"] == 0


async def test_remembered_sitemap_costs_two_requests(env: Env) -> None:
    """Once a sitemap answered, a check fetches the index and one post sitemap only."""
    _yoast(env)
    await env.check()
    env.fake.reset_counts()
    obs = await env.check()
    assert obs.method == "sitemap"
    assert env.fake.hits == {"/sitemap_index.xml": 1, "/post-sitemap.xml": 1}


async def test_wp_core_sitemap_without_lastmod_finds_no_date(env: Env) -> None:
    """WordPress core sitemaps carry no lastmod: the sitemap method says so."""
    site = env.site
    env.route("/wp-sitemap.xml", xml_route(sitemap_index([
        (site + "/wp-sitemap-posts-post-1.xml", None),
        (site + "/wp-sitemap-posts-page-1.xml", None),
        (site + "/wp-sitemap-taxonomies-category-1.xml", None),
    ])))
    env.route("/wp-sitemap-posts-post-1.xml", xml_route(urlset([(site + "/?p=1", None)])))
    with pytest.raises(ParseError, match=r"sitemap: .*wp-sitemap-posts-post-1.xml: no dated "
                                         r"post URL \(lastmod missing\)") as info:
        await env.check(methods=["sitemap"])
    assert "/sitemap_index.xml, /sitemap.xml: HTTP 404" in str(info.value)
    assert env.fake.hits["/wp-sitemap-posts-page-1.xml"] == 0


async def test_index_lastmod_stands_in_for_an_unavailable_post_sitemap(env: Env) -> None:
    """A post sitemap that 404s (or has no lastmod) counts as its index entry's lastmod."""
    env.route("/sitemap_index.xml", xml_route(sitemap_index([
        (env.site + "/post-sitemap.xml", "2024-10-08T03:00:00+00:00")])))
    obs = await env.check(methods=["sitemap"])
    assert obs.latest_post_at == datetime(2024, 10, 8, 3, tzinfo=UTC) and obs.post_url is None


async def test_undated_children_are_read_last_first_within_max_sitemaps(env: Env) -> None:
    """Without lastmods the last-listed post sitemap is read first; max_sitemaps bounds it."""
    site = env.site
    env.route("/wp-sitemap.xml", xml_route(sitemap_index(
        [(f"{site}/wp-sitemap-posts-post-{n}.xml", None) for n in range(1, 9)])))
    env.route("/wp-sitemap-posts-post-8.xml", xml_route(urlset([(site + "/?p=8", None)])))
    env.route("/wp-sitemap-posts-post-7.xml", xml_route(urlset([(site + "/?p=7", "2024-10-07")])))
    obs = await env.check(methods=["sitemap"], max_sitemaps=4)
    assert obs.latest_post_at == datetime(2024, 10, 6, 17, tzinfo=UTC)  # midnight WIB
    assert env.fake.hits["/wp-sitemap-posts-post-6.xml"] == 0
    env.fake.reset_counts()
    env.memo.data.clear()
    with pytest.raises(ParseError, match="max_sitemaps"):
        await env.check(methods=["sitemap"], max_sitemaps=2)
    assert env.fake.total == 3  # robots.txt (free) + 2 sitemap files


async def test_news_sitemap_publication_date_beats_lastmod(env: Env) -> None:
    """A news sitemap's publication_date is a post time; its lastmod (an edit) is not used."""
    site = env.site
    env.route("/sitemap.xml", xml_route(urlset(
        [(site + "/berita/a/", "2024-10-10T08:00:00+07:00")],
        news={site + "/berita/a/": "2024-10-05T08:00:00+07:00"})))
    obs = await env.check(methods=["sitemap"])
    assert obs.latest_post_at == datetime(2024, 10, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize("body", [
    b'<?xml version="1.0"?>\n<!DOCTYPE urlset [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&xxe;</loc>'
    b"<lastmod>2024-10-09</lastmod></url></urlset>",
    billion_laughs().replace(b"<rss", b"<urlset").replace(b"</rss>", b"</urlset>"),
], ids=["xxe", "billion-laughs"])
async def test_hostile_sitemap_is_refused(env: Env, body: bytes) -> None:
    """DOCTYPE/ENTITY declarations are refused before parsing: a parse error, nothing read."""
    env.route("/sitemap.xml", xml_route(body))
    with pytest.raises(ParseError, match="refused XML with a DOCTYPE or ENTITY declaration"):
        await env.check(methods=["sitemap"])


def test_parse_xml_refuses_a_doctype_hidden_in_utf16() -> None:
    """A UTF-16 document cannot slip a DOCTYPE past the check."""
    body = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'
    with pytest.raises(ParseError, match="DOCTYPE"):
        parse_xml(body.encode("utf-16"))


def test_parse_sitemap_reads_gzip_and_refuses_a_gzip_bomb() -> None:
    """A .xml.gz body is inflated; one inflating past the cap is a parse error."""
    body = urlset([("https://x.go.id/a/", "2024-10-09T01:00:00Z")])
    sitemap = parse_sitemap(gzip.compress(body), base_url="https://x.go.id/", default_tz=UTC)
    assert sitemap.entries[0].lastmod == datetime(2024, 10, 9, 1, tzinfo=UTC)
    bomb = gzip.compress(b"<urlset>" + b" " * (17 * 1024 * 1024) + b"</urlset>")
    with pytest.raises(ParseError, match="inflates to more than"):
        parse_sitemap(bomb, base_url="https://x.go.id/", default_tz=UTC)


@pytest.mark.parametrize(("url", "same"), [
    ("https://www.dinsos.example.go.id:443/feed/", True),
    ("http://dinsos.example.go.id/sitemap.xml", True),
    ("https://dinsos.example.go.id:8443/feed/", False),
    ("https://feeds.feedburner.com/dinsos", False),
    ("https://dinsos.example.go.id.evil.example/feed/", False),
    ("ftp://dinsos.example.go.id/feed/", False),
])
def test_same_site(url: str, same: bool) -> None:
    """Links are followed on the site's own host only (scheme, www. and default port aside)."""
    assert same_site(url, "http://dinsos.example.go.id") is same


@pytest.mark.parametrize(("name", "kind"), [
    ("post-sitemap.xml", "posts"), ("post-sitemap2.xml", "posts"),
    ("wp-sitemap-posts-post-1.xml", "posts"), ("sitemap-posts-2024-10.xml", "posts"),
    ("sitemap-pt-post-2024-10.xml", "posts"), ("news-sitemap.xml", "posts"),
    ("berita-sitemap.xml", "posts"), ("page-sitemap.xml", "other"),
    ("wp-sitemap-posts-page-1.xml", "other"), ("category-sitemap.xml", "other"),
    ("post_tag-sitemap.xml", "other"), ("author-sitemap.xml", "other"),
    ("attachment-sitemap.xml", "other"), ("wp-sitemap-users-1.xml", "other"),
    ("wp-sitemap-taxonomies-category-1.xml", "other"), ("sitemap.xml", "unknown"),
])
def test_sitemap_kind_by_name(name: str, kind: str) -> None:
    """Post and news sitemaps are followed; page/category/tag/author/attachment ones never."""
    assert sitemap_kind(f"https://x.go.id/{name}") == kind


# --- 4. page dates ------------------------------------------------------------------------


async def test_html_reads_a_visible_date_as_midnight_local(env: Env) -> None:
    """A page with only a visible date: htmldate's day, at midnight Asia/Jakarta."""
    env.route("/", html_route(home_page(body="<div class='post'><h2>Penyaluran bansos</h2>"
                                             "<p>Diposting pada 08/10/2024 oleh admin</p></div>"
                                             "<footer>Copyright 2024</footer>")))
    obs = await env.check()
    assert (obs.method, obs.latest_post_at) == ("html", datetime(2024, 10, 7, 17, tzinfo=UTC))


async def test_html_copyright_year_is_not_a_date(env: Env) -> None:
    """htmldate's year-only guess from a copyright line (1 January) is refused."""
    env.route("/", html_route(home_page(body="<footer>Copyright &copy; 2021 Dinsos</footer>")))
    with pytest.raises(ParseError, match="html: no date in page"):
        await env.check(methods=["html"])


async def test_html_reads_the_linked_news_page(env: Env) -> None:
    """A home page without dates but linking /berita/: the news page's date is used."""
    env.route("/", html_route(home_page(body='<a href="/berita/">Berita</a>')))
    env.route("/berita/", html_route(home_page(body="<p>Rabu, 9 Oktober 2024 - Rakor</p>")))
    obs = await env.check(methods=["html"])
    assert obs.latest_post_at == datetime(2024, 10, 8, 17, tzinfo=UTC)


async def test_htmldate_never_fetches_and_runs_off_the_loop(env: Env, monkeypatch) -> None:
    """A body that is just a URL is not downloaded by htmldate; it runs in a worker thread."""
    import plugins.website

    threads: list[int] = []
    real = plugins.website.page_date

    def spy(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(plugins.website, "page_date", spy)
    env.route("/", SiteRoute(f"{env.site}/trap".encode(), content_type="text/plain"))
    with pytest.raises(ParseError, match="html: no date"):
        await env.check(methods=["html"])
    assert env.fake.hits["/trap"] == 0
    assert threads and threads[0] != threading.get_ident()


# --- the chain, memory, failures ----------------------------------------------------------


async def test_remembered_rest_costs_one_request_and_falls_back_when_it_breaks(env: Env) -> None:
    """wp-json remembered: one request; when it breaks the next method answers and is kept."""
    env.route(REST, json_route(POSTS))
    await env.check()
    env.fake.reset_counts()
    assert await env.check() == Observation.not_modified("wp-json")  # the same body again
    assert env.fake.total == 1
    env.route(REST, json_route(rest_error("rest_disabled", "off", 403), status=403))
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    assert (await env.check()).method == "feed"
    assert env.memo.get("method") == "feed"
    env.fake.reset_counts()
    assert (await env.check()).method == "feed" and env.fake.hits == {"/feed/": 1}


async def test_no_method_finds_a_date_names_every_method(env: Env) -> None:
    """A reachable site without dates: parse, naming each method and why it failed."""
    env.route("/", html_route(PLAIN_HOME))
    with pytest.raises(ParseError) as info:
        await env.check()
    message = str(info.value)
    assert message.startswith("no post date found: wp-json: /wp-json/: HTTP 404, an HTML page")
    assert "; feed: no feed linked, /feed/: HTTP 404; sitemap: " in message
    assert "; html: no date in page" in message


async def test_unreachable_site_is_unreachable(env: Env) -> None:
    """Connection refused on every URL: unreachable, after wp-json and the home page only."""
    platform = WebsitePlatform()
    site = platform.normalize(f"http://127.0.0.1:{closed_port()}")
    store, clock = Store(), FakeClock(NOW)
    async with HttpClient(user_agent="t", validators=store, clock=clock) as client:
        ctx = CheckContext(
            http=client.bind("website", timeout=30), settings=WebsiteSettings(),
            log=structlog.get_logger(), clock=clock, memo=Memo(),
            account=Account("dinsos", "website", site, site, 1800.0, 30.0, 7 * 86400.0),
        )
        with pytest.raises(Unreachable, match="site unreachable: cannot connect"):
            await platform.latest(site, ctx)
    assert len(clock.sleeps) == 4  # two requests, each retried twice


async def test_server_errors_everywhere_are_unreachable(env: Env) -> None:
    """5xx on the REST API and the home page: unreachable; the other methods are not tried."""
    for key in (REST, "/", "/feed/"):
        env.route(key, SiteRoute(b"Service Unavailable", status=503))
    with pytest.raises(Unreachable, match="HTTP 503"):
        await env.check()
    assert set(env.fake.hits) == {REST, "/"}


async def test_forbidden_site_is_blocked(env: Env) -> None:
    """A WAF answering 403 to everything, home page included: blocked, not parse."""
    for key in (REST, REST_ROUTE, "/", "/feed/", "/robots.txt", "/sitemap_index.xml",
                "/wp-sitemap.xml", "/sitemap.xml"):
        env.route(key, html_route(b"<html><title>Access denied</title></html>", status=403))
    with pytest.raises(Blocked, match=r"home page HTTP 403"):
        await env.check()


async def test_login_wall_site_is_blocked(env: Env) -> None:
    """A home page redirecting to a login page: blocked (a login wall), not parse."""
    for key in (REST, "/", "/feed/"):
        env.route(key, SiteRoute(redirect="/wp-login.php?redirect_to=%2F"))
    env.route("/wp-login.php", html_route(LOGIN_PAGE))
    with pytest.raises(Blocked, match="redirects to a login page: wp-json: redirected to a lo"):
        await env.check()


async def test_slow_rest_api_leaves_time_for_the_feed(env: Env) -> None:
    """A REST API that never answers uses half the check time; the feed still answers."""
    env.route(REST, SiteRoute(hang=True))
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    started = time.monotonic()
    obs = await env.check(timeout=0.4, clock="wall")
    assert obs.method == "feed" and time.monotonic() - started < 0.4


async def test_timeout_everywhere_is_timeout_within_the_check_timeout(env: Env) -> None:
    """A site that never answers: reason timeout (not parse), within the check timeout."""
    for key in (REST, REST_ROUTE, "/", "/feed/", "/robots.txt", "/sitemap_index.xml",
                "/wp-sitemap.xml", "/sitemap.xml"):
        env.route(key, SiteRoute(hang=True))
    started = time.monotonic()
    with pytest.raises(Timeout, match="no post date found in time: wp-json: no answer"):
        await env.check(timeout=0.4, clock="wall")
    assert time.monotonic() - started < 0.4 + 0.2


async def test_methods_setting_restricts_and_orders(env: Env) -> None:
    """methods: [feed] never asks the REST API, even when it would answer."""
    env.route(REST, json_route(POSTS))
    env.route("/", html_route(PLAIN_HOME))
    env.route("/feed/", SiteRoute(FEED, content_type=RSS))
    assert (await env.check(methods=["feed"])).method == "feed"
    assert env.fake.hits[REST] == 0


# --- through the core: config, engine, CLI -------------------------------------------------


def _write_config(tmp_path, site: str) -> Any:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"state: {tmp_path / 'pantau.db'}\ncheck: {{interval: 30m, timeout: 5s}}\n"
        "platforms:\n  website:\n    max_sitemaps: 3\n    default_timezone: Asia/Jakarta\n"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n"
        f"    accounts: {{website: '{site}/'}}\n"
    )
    return path


@pytest.fixture
async def site_server(aiohttp_server):
    fake = SiteFake()
    fake.routes[REST_ROUTE] = json_route(POSTS)
    server = await aiohttp_server(make_site_app(fake))
    yield fake, str(server.make_url("")).rstrip("/")
    fake.release()


async def test_config_and_engine_remember_the_method_across_a_restart(tmp_path, site_server):
    """Through config + Engine: the method and REST form found are stored, so after a
    restart the check is a single request."""
    from monitor.config import load_config
    from monitor.engine import Engine

    fake, site = site_server
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "website"})
    config = load_config(_write_config(tmp_path, site), plugins.platforms)
    [account] = config.accounts
    assert account.account == site and config.platforms["website"].max_sitemaps == 3
    for _ in range(2):  # the second engine is a restart: the memo comes from the store
        fake.reset_counts()
        engine = await Engine.open(config, plugins, FakeClock(NOW))
        async with engine:
            result = await engine.check(account)
        assert result.ok and result.observation.method == "wp-json"
        assert engine.states[account.key].last_post_at == NEWEST
    assert fake.hits == {REST_ROUTE: 1}


async def test_cli_check_json(tmp_path, site_server, capsys):
    """`pantau check --format json` reports the website's newest post and method."""
    from monitor.cli import main

    _, site = site_server
    path = _write_config(tmp_path, site)
    code = await asyncio.to_thread(main, ["check", "-c", str(path), "--format", "json"])
    [item] = json.loads(capsys.readouterr().out)
    assert code == 0
    assert item == {
        "agency": "dinsos", "platform": "website", "account": site, "ok": True,
        "latest_post_at": "2024-10-09T02:30:00Z",
        "post_url": "https://dinsos.example.go.id/berita/rakor/", "method": "wp-json",
        "error": None,
    }


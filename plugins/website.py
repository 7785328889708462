"""The ``website`` platform: an official website (often WordPress on *.go.id), by its base URL.

Methods, tried in order (``methods`` may restrict or reorder them), each reported as the
observation's ``method``:

1. ``wp-json`` — the WordPress REST API: ``{site}/wp-json/wp/v2/posts?per_page=5&...``, or
   ``{site}/?rest_route=/wp/v2/posts&...`` after a plain 404 or an HTML page (pretty permalinks
   off); see :mod:`plugins.wordpress`. A blocked API (401/403 ``rest_cannot_access``, any REST
   error code, a login redirect) moves on to the next method at once.
2. ``feed`` — the home page's ``<link rel="alternate">`` feeds (relative hrefs resolved,
   comment feeds ignored), then ``{site}/feed/``, read with :mod:`plugins.feeds`.
3. ``sitemap`` — robots.txt ``Sitemap:`` lines, ``/sitemap_index.xml``, ``/wp-sitemap.xml``,
   ``/sitemap.xml``; only post sitemaps are followed, at most ``max_sitemaps`` files per check
   (:class:`plugins.sitemaps.SitemapWalk`). A news ``publication_date`` is a post time; a
   ``lastmod`` is a modification time, used as the best available. A post sitemap that cannot
   be fetched or lists no ``lastmod`` counts as its index entry's ``lastmod`` (when that
   sitemap last changed: the newest change among its posts).
4. ``html`` — ``htmldate`` on the home page and a linked ``/berita/``/``/news/`` page: day
   granularity, reported as that day's midnight in ``default_timezone``.

The method that answered is remembered (``ctx.memo``: ``method``, ``source`` and the REST URL
form, feed URL or sitemap URL) and tried first next time, so a check of a known site costs one
or two requests. REST and feed answers use conditional GET; a 304 (or an identical body) is
trusted only for the source that answered last time, and only the validators of the answer
actually used are kept. Every method but the last may use at most half of the time left.

Failures: a 429 stops the check (``rate_limited``). When no method finds a date the error
names each method and why: ``timeout`` if time ran out; ``unreachable`` if the site (its home
page) cannot be reached — checked as soon as a method meets a connection error or 5xx;
``blocked`` if the home page redirects to a login page or answers 401/403; ``not_found`` for a
home page 404/410; else ``parse``. A method that got a valid answer listing no posts (an empty
REST list or feed) makes the check a success without a latest post when nothing else has one.

Settings under ``platforms.website``::

    website:
      future_skew: 1d                # posts dated further ahead are ignored
      default_timezone: Asia/Jakarta # zone of dates written without one
      max_sitemaps: 5                # sitemap files fetched at most per check
      methods: [wp-json, feed, sitemap, html]   # restrict or reorder
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, time, timedelta
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, field_validator

from monitor import hookimpl
from monitor.http import Response
from monitor.model import (
    Blocked,
    CheckError,
    NotFound,
    Observation,
    ParseError,
    Post,
    RateLimited,
    Timeout,
    Unreachable,
)
from monitor.platform import CheckContext, Platform
from plugins.dates import DatedSettings
from plugins.feeds import read_feed
from plugins.sitemaps import SitemapWalk
from plugins.wordpress import (
    PageLinks,
    RestUnusable,
    is_login_url,
    looks_like_html,
    page_date,
    posts_from_rest,
    rest_endpoint,
    rest_items,
    same_site,
    scan_page,
)

__all__ = ["METHODS", "WebsitePlatform", "WebsiteSettings", "register_platforms"]

#: The methods, in their default order.
METHODS: tuple[str, ...] = ("wp-json", "feed", "sitemap", "html")
#: The share of the time left that a method other than the last one may use.
METHOD_SHARE = 0.5

JSON_ACCEPT = "application/json, */*;q=0.5"
FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)
HTML_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
XML_ACCEPT = "application/xml, text/xml;q=0.9, */*;q=0.5"
REST_MAX_BYTES = 2 * 1024 * 1024
PAGE_MAX_BYTES = 5 * 1024 * 1024
_WHY_MAX = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
MethodName = Literal["wp-json", "feed", "sitemap", "html"]


class WebsiteSettings(DatedSettings):
    """``platforms.website`` in the config."""

    max_sitemaps: int = Field(
        default=5, ge=1, le=50, description="sitemap files fetched at most per check"
    )
    methods: tuple[MethodName, ...] | None = Field(
        default=None, description="the methods to try, in this order (default: all)"
    )

    @field_validator("methods")
    @classmethod
    def _distinct(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError(f"methods must be a non-empty list without repeats of {METHODS}")
        return value



class WebsitePlatform(Platform):
    """A website by its base URL; the newest post by the first method that finds one."""

    name = "website"
    settings_model = WebsiteSettings

    def normalize(self, account: str) -> str:
        """The site's base URL: http(s), scheme and host lower-cased, default port, trailing
        slash, query and fragment dropped; the path (a site in a subdirectory) kept."""
        value = account.strip()
        expected = (
            "expected a website's http(s) base URL such as https://dinsos.example.go.id, "
            f"got {account!r}"
        )
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError(expected) from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not parts.hostname or any(c.isspace() for c in value):
            raise ValueError(expected)
        if parts.username is not None or parts.password is not None:
            raise ValueError("a website URL must not contain a user name or password")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
        return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))

    def url(self, account: str) -> str:
        """The site's base URL."""
        return account

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """Try the methods (the remembered one first) until one finds the newest post."""
        settings = ctx.settings if isinstance(ctx.settings, WebsiteSettings) else WebsiteSettings()
        return await _SiteCheck(account, ctx, settings).run()


class _Failed(Exception):  # noqa: N818 - control flow inside a check
    """A method found no date; ``message`` says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Empty(_Failed):
    """A method got a valid answer listing no posts at all."""

    def __init__(self, message: str, method: str) -> None:
        super().__init__(message)
        self.observation = Observation(latest_post_at=None, method=method)


class _SiteCheck:
    """One check of one site: the method chain, the shared home page, the failures."""

    def __init__(self, site: str, ctx: CheckContext, settings: WebsiteSettings) -> None:
        self.site = site
        self.ctx = ctx
        self.settings = settings
        self.memo = ctx.memo
        self.now = ctx.clock.now()
        self.tz = settings.tz
        self.skew = timedelta(seconds=settings.future_skew)
        self.failures: list[tuple[str, str, str]] = []  # (method, why, reason)
        self.source: str | None = None  # what the answering method read
        self.hints: dict[str, str] = {}  # memo keys to keep if the method answers
        self._home: object = None  # a Response, or the CheckError its fetch raised
        self._links: PageLinks | None = None
        self._kept: set[str] = set()  # validator keys of the answer a method used
        self._keys: dict[str, set[str]] = {}  # validator keys recorded per source
        deadline = getattr(ctx.http, "deadline", None)
        self.deadline = (
            deadline if isinstance(deadline, float) else ctx.clock.monotonic() + ctx.account.timeout
        )

    # -- the chain ------------------------------------------------------------------------
    def chain(self) -> list[str]:
        methods = list(self.settings.methods or METHODS)
        remembered = self.memo.get("method")
        if remembered in methods:
            methods.remove(remembered)
            methods.insert(0, remembered)
        return methods

    async def run(self) -> Observation:
        runners: dict[str, Callable] = {
            "wp-json": self._wp_json, "feed": self._feed, "sitemap": self._sitemap,
            "html": self._html,
        }
        chain = self.chain()
        empty: tuple[Observation, str | None, dict[str, str]] | None = None
        for index, method in enumerate(chain):
            pending = getattr(self.ctx.http, "pending_validators", {})
            before = set(pending)
            self.source, self.hints, self._kept = None, {}, set()
            share = None if index == len(chain) - 1 else self._share()
            try:
                async with asyncio.timeout(share):
                    observation = await runners[method]()
            except RateLimited:
                raise
            except _Empty as exc:
                self._fail(method, exc.message, "empty")
                empty = empty or (exc.observation, self.source, self.hints)
            except _Failed as exc:
                self._fail(method, exc.message, "parse")
            except TimeoutError:
                why = f"no answer within {share or 0:.1f}s, its share of the check timeout"
                self._fail(method, why, "timeout")
            except Timeout as exc:  # the check's deadline (or a connection) ran out
                self._fail(method, exc.message, "timeout")
                break
            except Unreachable as exc:
                self._fail(method, exc.message, "unreachable")
                await self._require_home()
            except CheckError as exc:
                self._fail(method, exc.message, exc.reason)
            else:
                self._remember(method)
                self.ctx.log.debug("website method answered", method=method, source=self.source)
                return observation
            finally:
                # Only the validators of the answer used are kept: a conditional GET of a
                # login page must never later pass for "unchanged".
                for key in set(pending) - before - self._kept:
                    pending.pop(key, None)
        reasons = {reason for _, _, reason in self.failures}
        if empty is not None and "timeout" not in reasons:
            observation, self.source, self.hints = empty
            self._remember(observation.method)
            return observation
        raise self._final_error()

    def _share(self) -> float:
        return max(0.0, (self.deadline - self.ctx.clock.monotonic()) * METHOD_SHARE)

    def _fail(self, method: str, why: str, reason: str) -> None:
        """Record why a method failed."""
        why = " ".join(why.split())
        why = why if len(why) <= _WHY_MAX else why[: _WHY_MAX - 1] + "…"
        self.failures.append((method, why, reason))
        self.ctx.log.debug("website method failed", method=method, reason=reason, error=why)

    def _remember(self, method: str) -> None:
        self._kept = self._keys.get(self.source or "", set())
        self.memo.set("method", method)
        self.memo.set("source", self.source)
        for key, value in self.hints.items():
            self.memo.set(key, value)

    def _final_error(self) -> CheckError:
        summary = "; ".join(f"{m}: {why}" for m, why, _ in self.failures) or "no method tried"
        reasons = [reason for _, _, reason in self.failures]
        if "timeout" in reasons:
            return Timeout(f"no post date found in time: {summary}")
        status = getattr(self._home, "status", None)
        if isinstance(self._home, Response) and self._home.redirects and is_login_url(
            self._home.url
        ):
            return Blocked(f"the site redirects to a login page: {summary}")
        if status in (401, 403):
            return Blocked(f"the site refuses access (home page HTTP {status}): {summary}")
        if status in (404, 410):
            return NotFound(f"no site at this address (home page HTTP {status}): {summary}")
        if reasons and all(reason == "unreachable" for reason in reasons):
            return Unreachable(f"site unreachable: {summary}")
        return ParseError(f"no post date found: {summary}")

    def _on_site(self, url: object) -> bool:
        return isinstance(url, str) and same_site(url, self.site)

    # -- shared fetches -------------------------------------------------------------------
    async def _home_page(self) -> Response:
        """The home page (fetched once per check; its failure is remembered too)."""
        if self._home is None:
            try:
                self._home = await self.ctx.http.get(
                    self.site + "/", headers={"Accept": HTML_ACCEPT}, max_bytes=PAGE_MAX_BYTES
                )
            except (Timeout, Unreachable, ParseError) as exc:
                self._home = exc
        if isinstance(self._home, CheckError):
            raise self._home
        return self._home

    async def _require_home(self) -> None:
        """After a method found the site unreachable: stop now if the home page is too."""
        try:
            await self._home_page()
        except Unreachable as exc:
            raise Unreachable(f"site unreachable: {exc.message}") from None
        except Timeout as exc:
            self._fail("home page", exc.message, "timeout")
            raise self._final_error() from None
        except ParseError:
            pass

    async def _page_links(self) -> PageLinks:
        """Feed and news links of the home page (``_Failed`` when it is not a 2xx answer)."""
        home = await self._home_page()
        if not 200 <= home.status < 300:
            raise _Failed(f"home page: HTTP {home.status}")
        if self._links is None:
            self._links = await self.ctx.run_cpu(
                scan_page, home.text(), home.url, (self.site, home.url)
            )
        return self._links

    async def _fetch(
        self, url: str, source: str, method: str, *, accept: str, max_bytes: int | None = None,
        params: dict[str, str] | None = None,
    ) -> Response:
        """A conditional GET of data; a 304 is trusted only for what answered last time."""
        trusted = self.memo.get("method") == method and self.memo.get("source") == source
        pending = getattr(self.ctx.http, "pending_validators", {})
        before = set(pending)
        resp = await self.ctx.http.get(
            url, params=params, headers={"Accept": accept}, conditional=True, max_bytes=max_bytes
        )
        if resp.not_modified and not trusted:  # validators from another time: ask again
            resp = await self.ctx.http.get(
                url, params=params, headers={"Accept": accept}, max_bytes=max_bytes
            )
        if resp.unchanged and not trusted:
            resp = replace(resp, unchanged=False)
        self._keys[source] = set(pending) - before
        return resp

    # -- 1. WordPress REST API ------------------------------------------------------------
    async def _wp_json(self) -> Observation:
        forms = ["wp-json", "rest_route"]
        if self.memo.get("wp_form") == "rest_route":
            forms.reverse()
        problems: list[str] = []
        for form in forms:
            url, params = rest_endpoint(self.site, form)
            source = f"{self.site}/?rest_route=" if form == "rest_route" else url
            resp = await self._fetch(
                url, source, "wp-json", accept=JSON_ACCEPT, params=params,
                max_bytes=REST_MAX_BYTES,
            )
            self.source, self.hints = source, {"wp_form": form}
            if resp.unchanged:
                return Observation.not_modified("wp-json")
            try:
                items = rest_items(
                    resp.status, resp.body, content_type=resp.headers.get("Content-Type"),
                    final_url=resp.url, redirects=resp.redirects,
                )
            except RestUnusable as exc:
                problems.append(f"{'?rest_route=' if form == 'rest_route' else '/wp-json/'}: "
                                f"{exc.message}")
                if exc.retry_other_form:
                    continue
                break
            posts, _ = posts_from_rest(
                items, now=self.now, default_tz=self.tz, future_skew=self.skew
            )
            if posts:
                return Observation.from_posts(posts, method="wp-json")
            if items:
                raise _Failed(f"{len(items)} posts, none with a usable date (or all scheduled)")
            raise _Empty("the REST API lists no posts", "wp-json")
        if len(problems) == 1:
            problems[0] = problems[0].split(": ", 1)[1]
        raise _Failed(", ".join(problems))

    # -- 2. feeds -------------------------------------------------------------------------
    async def _feed(self) -> Observation:
        tried: list[str] = []
        problems: list[str] = []
        remembered = self.memo.get("feed_url")
        if self._on_site(remembered):
            observation = await self._read_feed(remembered, tried, problems)
            if observation is not None:
                return observation
        try:
            links = await self._page_links()
        except _Failed as exc:
            links = None
            problems.append(exc.message)
        candidates = ([*links.feeds[:2]] if links else []) + [self.site + "/feed/"]
        if links is not None and not links.feeds:
            problems.append("no feed linked")
        for url in candidates:
            if url not in tried:
                observation = await self._read_feed(url, tried, problems)
                if observation is not None:
                    return observation
        raise _Failed(", ".join(problems))

    async def _read_feed(
        self, url: str, tried: list[str], problems: list[str]
    ) -> Observation | None:
        tried.append(url)
        resp = await self._fetch(url, url, "feed", accept=FEED_ACCEPT)
        self.source, self.hints = url, {"feed_url": url}
        if resp.unchanged:
            return Observation.not_modified("feed")
        if not 200 <= resp.status < 300:
            problems.append(f"{_path(url)}: HTTP {resp.status}")
            return None
        try:
            posts = await read_feed(
                self.ctx, resp.body, now=self.now, default_tz=self.tz, future_skew=self.skew,
                content_type=resp.headers.get("Content-Type"), base_url=resp.url,
            )
        except ParseError as exc:
            problems.append(f"{_path(url)}: {exc.message}")
            return None
        if not posts:
            raise _Empty(f"{_path(url)}: the feed has no entries", "feed")
        return Observation.from_posts(posts, method="feed")

    # -- 3. sitemaps ----------------------------------------------------------------------
    async def _sitemap(self) -> Observation:
        walk = SitemapWalk(
            site=self.site, fetch=self._get_xml, budget=self.settings.max_sitemaps,
            default_tz=self.tz, latest_allowed=self.now + self.skew, run_cpu=self.ctx.run_cpu,
        )
        remembered = self.memo.get("sitemap_url")
        roots = [remembered] if self._on_site(remembered) else []
        posts, root = await walk.run(roots, robots_url=_robots_url(self.site))
        if not posts:
            raise _Failed(walk.summary())
        self.source, self.hints = root, {"sitemap_url": root}
        return Observation.from_posts(posts, method="sitemap")

    async def _get_xml(self, url: str) -> Response:
        return await self.ctx.http.get(url, headers={"Accept": XML_ACCEPT})

    # -- 4. page dates --------------------------------------------------------------------
    async def _html(self) -> Observation:
        links = await self._page_links()
        home = await self._home_page()
        pages = [home.body]
        news = links.news_page
        if news and news != home.url:
            try:
                resp = await self.ctx.http.get(
                    news, headers={"Accept": HTML_ACCEPT}, max_bytes=PAGE_MAX_BYTES
                )
            except (Timeout, Unreachable, ParseError) as exc:  # the home page may still do
                self.ctx.log.debug("news page not read", page=_path(news), error=exc.message)
            else:
                if 200 <= resp.status < 300 and looks_like_html(resp.body, "text/html"):
                    pages.append(resp.body)
        latest = (self.now + self.skew).astimezone(self.tz).date()
        posts = []
        for body in pages:
            day = await self.ctx.run_cpu(page_date, body, latest)
            if day is not None:
                posts.append(Post(datetime.combine(day, time(0), tzinfo=self.tz)))
        if not posts:
            raise _Failed("no date in page" if len(pages) == 1 else "no date in home or news page")
        self.source = "html"
        return Observation.from_posts(posts, method="html")


def _path(url: str) -> str:
    """The path and query of a URL (messages name the site once, not every URL)."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _robots_url(site: str) -> str:
    parts = urlsplit(site)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Provide the ``website`` platform."""
    register(WebsitePlatform())

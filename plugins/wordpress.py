"""What a (WordPress) site serves, read truthfully: REST API answers and the home page's links.

Used by the ``website`` platform. Pure and synchronous (no I/O).

- :func:`rest_items` classifies an answer of ``/wp-json/wp/v2/posts`` (or ``?rest_route=``):
  a JSON list of posts, or :class:`RestUnusable` saying why not and whether the other URL form
  is worth trying (a plain 404 or an HTML page: pretty permalinks are off; never after a REST
  error such as ``rest_cannot_access``, nor after a login redirect: the API is blocked).
- :func:`posts_from_rest` reads the posts' dates: ``date_gmt`` (UTC, written without a zone),
  else ``date`` (site-local, in ``default_tz``); ``modified``/``modified_gmt`` are never used.
  Sticky posts and order do not matter: the caller takes the maximum.
- :func:`scan_page` finds a page's feed links (``<link rel="alternate">``; comment feeds
  dropped) and a linked news index page (``/berita/``, ``/news/``, ``/artikel/``).
- :func:`page_date` asks ``htmldate`` for a page's publication day (the last resort).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from html.parser import HTMLParser
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

from monitor.model import Post
from plugins.dates import parse_date

__all__ = [
    "FEED_TYPES",
    "NEWS_SEGMENTS",
    "REST_PARAMS",
    "PageLinks",
    "RestUnusable",
    "is_login_url",
    "looks_like_html",
    "page_date",
    "posts_from_rest",
    "rest_endpoint",
    "rest_items",
    "same_site",
    "scan_page",
]

#: The query of the posts request (PLATFORMS.md): five newest by date, only the fields we read.
REST_PARAMS: dict[str, str] = {
    "per_page": "5",
    "orderby": "date",
    "order": "desc",
    "_fields": "id,date_gmt,date,link,sticky",
}
#: Media types of feed links in a page's ``<head>``.
FEED_TYPES = frozenset({"application/rss+xml", "application/atom+xml", "application/rdf+xml"})
#: Last path segments of a news index page worth reading for dates.
NEWS_SEGMENTS = frozenset({"berita", "news", "artikel"})

_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")
_LOGIN = re.compile(r"wp-login\.php|/login\b|/masuk\b|/sso\b|[?&]redirect_to=", re.IGNORECASE)
_COMMENTS = re.compile(r"comment|komentar", re.IGNORECASE)


class RestUnusable(Exception):  # noqa: N818 - a classification, not an error to report as is
    """The REST answer holds no posts. ``retry_other_form``: try the other URL form."""

    def __init__(self, message: str, *, retry_other_form: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retry_other_form = retry_other_form


def rest_endpoint(site: str, form: str) -> tuple[str, dict[str, str]]:
    """The URL and query of the posts request: ``form`` is ``"wp-json"`` (pretty permalinks)
    or ``"rest_route"`` (``{site}/?rest_route=/wp/v2/posts``)."""
    if form == "rest_route":
        return f"{site}/", {"rest_route": "/wp/v2/posts", **REST_PARAMS}
    return f"{site}/wp-json/wp/v2/posts", dict(REST_PARAMS)


def is_login_url(url: str) -> bool:
    """Whether a URL looks like a login page (``wp-login.php``, ``/login``, ``?redirect_to=``)."""
    parts = urlsplit(url)
    return bool(_LOGIN.search(f"{parts.path}?{parts.query}"))


def looks_like_html(body: bytes, content_type: str | None = None) -> bool:
    """Whether a body is an HTML page (by its start, or its Content-Type when it is not JSON)."""
    if _HTML_START.match(body[:4096]):
        return True
    stripped = body.lstrip()[:1]
    return "html" in (content_type or "").lower() and stripped not in (b"[", b"{")


def rest_items(
    status: int,
    body: bytes,
    *,
    content_type: str | None = None,
    final_url: str = "",
    redirects: tuple[str, ...] = (),
) -> list[Any]:
    """The JSON list of posts in a REST answer, or :class:`RestUnusable` saying why not."""
    if redirects and is_login_url(final_url):
        raise RestUnusable("redirected to a login page")
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        if looks_like_html(body, content_type):
            what = f"HTTP {status}, an HTML page" if status != 200 else "an HTML page"
            raise RestUnusable(
                f"{what} instead of JSON", retry_other_form=status in (200, 404)
            ) from None
        if status != 200:
            raise RestUnusable(f"HTTP {status}", retry_other_form=status == 404) from None
        raise RestUnusable("invalid JSON") from None
    if isinstance(data, dict) and isinstance(data.get("code"), str):
        code = data["code"] if _CODE.match(data["code"]) else "error"
        raise RestUnusable(f"HTTP {status} {code}")
    if not 200 <= status < 300:
        raise RestUnusable(f"HTTP {status}", retry_other_form=status == 404)
    if not isinstance(data, list):
        raise RestUnusable("unexpected JSON: not a list of posts")
    return data


def posts_from_rest(
    items: list[Any], *, now: datetime, default_tz: tzinfo, future_skew: timedelta
) -> tuple[list[Post], int]:
    """The dated posts of a REST answer, and how many items had no usable date.

    ``date_gmt`` is UTC even though it carries no zone; ``date`` (site-local) is read in
    ``default_tz`` only when ``date_gmt`` is missing or unreadable. Posts dated more than
    ``future_skew`` after ``now`` (scheduled) are skipped and counted as unusable.
    """
    horizon = now + future_skew
    posts: list[Post] = []
    unusable = 0
    for item in items:
        when = _item_date(item, default_tz) if isinstance(item, dict) else None
        if when is None or when > horizon:
            unusable += 1
            continue
        link = item.get("link") if isinstance(item.get("link"), str) else None
        post_id = item.get("id")
        posts.append(Post(when, id=None if post_id is None else str(post_id), url=link))
    return posts, unusable


def _item_date(item: dict[str, Any], default_tz: tzinfo) -> datetime | None:
    for key, zone in (("date_gmt", UTC), ("date", default_tz)):
        value = item.get(key)
        if isinstance(value, str) and value.strip() and not value.startswith("0000"):
            when = parse_date(value.strip(), zone)
            if when is not None:
                return when
    return None


@dataclass
class PageLinks:
    """What :func:`scan_page` found: feed URLs (main feeds first, comment feeds dropped) and
    the first linked news index page, all absolute and on the same site."""

    feeds: list[str] = field(default_factory=list)
    news_page: str | None = None


def scan_page(html: str, page_url: str, sites: tuple[str, ...]) -> PageLinks:
    """The feed links and a news index link of an HTML page; relative links resolve against
    the page's URL (or its ``<base href>``). Links off the ``sites`` (the site and where its
    home page redirected) are ignored."""
    parser = _LinkParser()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001, S110 - html.parser is lenient; keep what was found
        pass
    base = urljoin(page_url, parser.base) if parser.base else page_url
    links = PageLinks()
    for href, title in parser.feeds:
        url = _absolute(base, href)
        if url is None or not _on(url, sites) or url in links.feeds:
            continue
        if _COMMENTS.search(urlsplit(url).path) or _COMMENTS.search(title):
            continue
        links.feeds.append(url)
    for href in parser.anchors:
        url = _absolute(base, href)
        if url is None or not _on(url, sites):
            continue
        if urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].lower() in NEWS_SEGMENTS:
            links.news_page = url
            break
    return links


def same_site(url: str, site: str) -> bool:
    """Whether ``url`` is on the site's host: http or https, a leading ``www.`` on either side
    and default ports ignored (``http://x.go.id`` and ``https://www.x.go.id:443/feed/`` are)."""
    a, b = urlsplit(url), urlsplit(site)
    if a.scheme not in ("http", "https") or not a.hostname:
        return False
    try:
        return _host_port(a) == _host_port(b)
    except ValueError:  # an invalid port
        return False


def _host_port(parts: SplitResult) -> tuple[str, int | None]:
    port = parts.port
    if port == {"http": 80, "https": 443}.get(parts.scheme):
        port = None
    return (parts.hostname or "").removeprefix("www."), port


def _on(url: str, sites: tuple[str, ...]) -> bool:
    return any(same_site(url, site) for site in sites)


def _absolute(base: str, href: str) -> str | None:
    href = href.strip()
    if not href or href.startswith(("#", "javascript:", "mailto:", "data:")):
        return None
    try:
        parts = urlsplit(urljoin(base, href))
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


class _LinkParser(HTMLParser):
    """Collects ``<base href>``, feed ``<link>``s and ``<a href>``s."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.feeds: list[tuple[str, str]] = []
        self.anchors: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"]
        elif tag == "link":
            rel = values.get("rel", "").lower().split()
            kind = values.get("type", "").split(";", 1)[0].strip().lower()
            if "alternate" in rel and kind in FEED_TYPES and values.get("href"):
                self.feeds.append((values["href"], values.get("title", "")))
        elif tag == "a" and values.get("href"):
            self.anchors.append(values["href"])

    handle_startendtag = handle_starttag


def page_date(body: bytes, latest: date) -> date | None:
    """The publication day ``htmldate`` finds in an HTML page, or None.

    htmldate gets the *bytes* (a str starting with ``http`` would make it download a URL) and
    never fetches anything. ``original_date=True`` (publication, not modification: on a
    listing it prefers the older candidates, so the answer errs towards silence, never towards
    a "today" widget); ``extensive_search=True`` so that a date visible only in the text is
    found. Days after ``latest`` are refused. A 1 January that the page never writes out is
    htmldate's year-only guess (a copyright line) and is refused too.
    """
    from htmldate import find_date  # imported on first use: it pulls in lxml and dateparser

    if not body.strip():
        return None
    try:
        found = find_date(
            body,
            extensive_search=True,
            original_date=True,
            max_date=datetime.combine(latest, time(23, 59, 59)),
        )
    except Exception:  # noqa: BLE001 - hostile HTML: any htmldate failure means "no date"
        return None
    if not found:
        return None
    try:
        day = date.fromisoformat(found)
    except ValueError:
        return None
    if (day.month, day.day) == (1, 1) and not _writes_new_year(body, day.year):
        return None
    return day


def _writes_new_year(body: bytes, year: int) -> bool:
    text = body.decode("utf-8", errors="replace")
    jan = r"(?:jan(?:uari|uary)?\.?)"
    pattern = (
        rf"{year}[-/.]0?1[-/.]0?1\b|\b0?1[-/.]0?1[-/.]{year}|\b0?1\s+{jan}\s*,?\s*{year}"
        rf"|{jan}\s+0?1(?:st)?\s*,?\s*{year}"
    )
    return re.search(pattern, text, re.IGNORECASE) is not None

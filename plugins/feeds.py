"""Feed bytes -> posts: RSS 0.9x/2.0, RSS 1.0 (RDF) and Atom, read truthfully.

Shared by every plugin that reads a feed (rss, website autodiscovery, YouTube's channel feed).
Pure and synchronous: call it off the event loop (``ctx.run_cpu``), or through
:func:`read_feed`, which reads small plain RSS 2.0 at once with :mod:`plugins.fastfeed` and
sends the rest to ``ctx.run_cpu``.

The rules (DESIGN.md "Truthful", PLATFORMS.md "RSS / Atom feeds"):

- the newest post is the maximum date over all entries, never the first entry (pinned posts,
  unsorted feeds);
- an entry's date is ``published``; ``updated`` is used only when no entry of the feed has a
  ``published`` (an edit is not a post); undated entries are skipped;
- the channel's ``lastBuildDate`` and the feed-level ``updated``/``published`` are ignored;
- dates are read from the raw strings with :func:`plugins.dates.parse_date` (Indonesian month
  names, WIB/WITA/WIT, no zone = the source's zone), because feedparser gets these wrong; its
  own parsed value is used only for a string we cannot read that carries an explicit UTC
  offset (so that its default of UTC cannot apply) and whose year it found;
- dates more than ``future_skew`` ahead of ``now`` are ignored (scheduled posts, bad clocks).

feedparser is given the bytes wrapped in a stream, never a string (a string may be taken as a
URL or a file name) and never fetches anything itself. It strips entity declarations other than
simple character replacements, so external entities (XXE) and entity expansion bombs are inert.

Cost (docs/performance.md): :func:`parse_feed` first tries :func:`plugins.fastfeed.fast_rss_posts`
(plain RSS 2.0, ~1 ms, the same posts). With feedparser it does not give the final URL as
Content-Location when it can do without: feedparser then resolves every link, comment and
enclosure URL of every entry, about a quarter of its time; the links kept are joined here
instead, with feedparser's own join, to the same result.
"""

from __future__ import annotations

import importlib.util
import io
import re
import xml.sax
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import feedparser
import feedparser.api

from monitor.model import ParseError, Post
from plugins.dates import parse_date
from plugins.fastfeed import HTML_START as _HTML_START
from plugins.fastfeed import fast_rss_posts, feedparser_base, utf8_document

if TYPE_CHECKING:
    from monitor.platform import CheckContext

try:
    from feedparser.urls import _urljoin
except ImportError:  # pragma: no cover - another feedparser: links are resolved by feedparser
    _urljoin = None

__all__ = ["INLINE_MAX", "load_feed", "parse_feed", "posts_from_feed", "read_feed"]

#: Bodies up to this size are first tried with the fast RSS reader on the event loop (about
#: 1 ms for 33 KB; shipping the body to a worker process and the posts back costs as much).
INLINE_MAX = 256 * 1024

# feedparser asks xml.sax for the parsers in feedparser.api.PREFERRED_XML_PARSERS before the
# standard expat reader; its default is ["drv_libxml2"], a module of the old libxml2 Python
# bindings that is almost never installed. A failed import is retried at every parse: it walks
# sys.path and takes the import lock, on which parse threads queue. The list is a global of
# feedparser shared by everyone in the process, so it is changed only when that changes no
# one's parser: when it still holds feedparser's default and drv_libxml2 cannot be found, the
# import fails every time and xml.sax falls back to expat anyway; emptying the list only skips
# the doomed attempt. A process that has drv_libxml2, or set its own list, keeps its choice.
def _skip_missing_libxml2() -> None:
    if feedparser.api.PREFERRED_XML_PARSERS == ["drv_libxml2"] and (
        importlib.util.find_spec("drv_libxml2") is None
    ):
        feedparser.api.PREFERRED_XML_PARSERS = []


_skip_missing_libxml2()

_HTML_ANYWHERE = re.compile(rb"<(?:html|body|head)[\s>]", re.IGNORECASE)
_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
# An explicit UTC offset at the end ("+07:00", "-0500", "Z") or the names GMT/UTC/UT.
_EXPLICIT_ZONE = re.compile(r"(?:[+-]\d{2}:?\d{2}|\dZ|\sZ)$|\b(?:GMT|UTC|UT)\b")
_SNIFF = 4096


def parse_feed(
    body: bytes,
    *,
    now: datetime,
    default_tz: tzinfo,
    future_skew: timedelta,
    content_type: str | None = None,
    base_url: str | None = None,
    fast: bool = True,
) -> list[Post]:
    """The dated posts of a feed, in feed order (``Observation.from_posts`` sorts them).

    A valid feed without entries gives ``[]``. Raises :class:`monitor.model.ParseError` for an
    empty body, an HTML page or anything else that is not a feed, and for a feed whose entries
    all lack a usable date. ``fast=False`` skips the fast RSS reader (the caller tried it).
    """
    dates = {"now": now, "default_tz": default_tz, "future_skew": future_skew}
    if fast:
        posts = fast_rss_posts(body, content_type=content_type, base_url=base_url, **dates)
        if posts is not None:
            return posts
    base = _join_base(body, content_type, base_url)
    if base is not None:
        # Content-Location "" (not none at all): feedparser still reads the body as an HTTP
        # response (without a Content-Type it then defaults to ISO-8859-1, as when it was
        # given the base URL), and has no base to resolve anything against.
        feed = _load(body, content_type, {"content-location": ""})
        if _resolve_links(feed, base):
            return posts_from_feed(feed, **dates)
    feed = load_feed(body, content_type=content_type, base_url=base_url)
    return posts_from_feed(feed, **dates)


async def read_feed(
    ctx: CheckContext,
    body: bytes,
    *,
    now: datetime,
    default_tz: tzinfo,
    future_skew: timedelta,
    content_type: str | None = None,
    base_url: str | None = None,
) -> list[Post]:
    """:func:`parse_feed` without holding up the event loop: a body up to :data:`INLINE_MAX`
    is first read by the fast RSS reader right here; anything else is parsed by
    ``ctx.run_cpu`` (worker processes when the daemon has them)."""
    options: dict[str, Any] = {
        "now": now, "default_tz": default_tz, "future_skew": future_skew,
        "content_type": content_type, "base_url": base_url,
    }
    if len(body) <= INLINE_MAX:
        posts = fast_rss_posts(body, **options)
        if posts is not None:
            return posts
        return await ctx.run_cpu(parse_feed, body, fast=False, **options)
    return await ctx.run_cpu(parse_feed, body, **options)


_BASE_ATTRIBUTE = re.compile(rb"base\s*=", re.IGNORECASE)


def _join_base(body: bytes, content_type: str | None, base_url: str | None) -> str | None:
    """The base to join kept links against after a parse without Content-Location (``""``:
    nothing to join), or None when the parse must be given the base URL: an ``xml:base`` (or
    ``base``) attribute may be in the document (feedparser then moves its base from the
    given one), or feedparser's base would not settle (see fastfeed.feedparser_base)."""
    if not base_url:
        return None
    if _urljoin is None:
        return None
    base = feedparser_base(base_url)
    if not base:
        return None
    data = utf8_document(body, content_type=content_type, http=True)
    if data is None:
        # Undecodable: feedparser's loose parser reads body.decode("utf-8", "replace").
        data = body
    return None if _BASE_ATTRIBUTE.search(data) else base


def _resolve_links(feed: feedparser.FeedParserDict, base: str) -> bool:
    """Give each entry the ``link`` feedparser would have made with ``base`` (it joins the raw
    link with ``base``; joining its unresolved value gives the same URL). False when that cannot
    be known: an empty link (an empty ``<link>`` stays empty, an empty Atom ``href`` becomes
    the base), an id that the join would change (feedparser resolves an id only when it is a
    permalink guid or an Atom id, which the parsed entry does not say), or a link or id that
    is not ASCII (feedparser re-decodes non-ASCII values after joining, not before)."""
    for entry in feed.get("entries") or []:
        if not isinstance(entry, dict):
            continue
        link = dict.get(entry, "link")
        if isinstance(link, str):
            if not link or not link.isascii():
                return False
            dict.__setitem__(entry, "link", _urljoin(base, link))
        ident = dict.get(entry, "id")
        if isinstance(ident, str) and ident and (
            not ident.isascii() or _urljoin(base, ident) != ident
        ):
            return False
    return True


def load_feed(
    body: bytes, *, content_type: str | None = None, base_url: str | None = None
) -> feedparser.FeedParserDict:
    """The feedparser result for ``body``, or ParseError when ``body`` is not a feed.

    ``content_type`` (the response's ``Content-Type``) helps find the encoding; ``base_url``
    (the final URL) resolves relative links.
    """
    return _load(body, content_type, {"content-location": base_url} if base_url else {})


def _load(
    body: bytes, content_type: str | None, headers: dict[str, str]
) -> feedparser.FeedParserDict:
    """load_feed with the response headers feedparser is given (besides the content type)."""
    if not body or not body.strip():
        raise ParseError("not a feed: the body is empty")
    head = body[:_SNIFF]
    if _HTML_START.match(head):
        raise ParseError(_html_message(head))
    if content_type:
        headers = {"content-type": content_type, **headers}
    try:
        feed = feedparser.parse(
            io.BytesIO(body),
            response_headers=headers,
            resolve_relative_uris=False,
            sanitize_html=False,
        )
    except Exception as exc:  # noqa: BLE001 - feedparser's loose parser can raise anything
        raise ParseError(f"not a feed: feedparser failed: {type(exc).__name__}") from exc
    if feed.get("entries"):
        return feed
    if feed.get("version"):
        if isinstance(feed.get("bozo_exception"), xml.sax.SAXParseException):
            # A cut-off or broken document must not read as "this account has no posts".
            raise ParseError(
                f"not a feed: malformed {feed['version']} document without entries: "
                f"{_short(str(feed['bozo_exception']))}"
            )
        return feed
    if _HTML_ANYWHERE.search(head) or "html" in (content_type or "").lower():
        raise ParseError(_html_message(head))
    problem = feed.get("bozo_exception")
    detail = f": {_short(str(problem))}" if problem else ""
    raise ParseError(f"not a feed: no RSS, RDF or Atom document found{detail}")


def posts_from_feed(
    feed: feedparser.FeedParserDict,
    *,
    now: datetime,
    default_tz: tzinfo,
    future_skew: timedelta,
) -> list[Post]:
    """The dated posts of a parsed feed (see the module docstring for the rules)."""
    entries: list[Any] = list(feed.get("entries") or [])
    if not entries:
        return []
    field = "published" if any(_field(e, "published") for e in entries) else "updated"
    latest_allowed = now + future_skew
    posts: list[Post] = []
    undated = unreadable = future = 0
    for entry in entries:
        if _field(entry, field) is None:
            undated += 1
            continue
        when = _entry_date(entry, field, default_tz)
        if when is None:
            unreadable += 1
            continue
        if when > latest_allowed:
            future += 1
            continue
        link = _field(entry, "link")
        posts.append(Post(published_at=when, id=_field(entry, "id") or link, url=link))
    if not posts:
        raise ParseError(
            f"no dated entries: {len(entries)} entries, {undated} without a date, "
            f"{unreadable} with an unreadable date, {future} dated in the future"
        )
    return posts


def _entry_date(entry: Any, field: str, default_tz: tzinfo) -> datetime | None:
    """The entry's ``field`` date read from its raw string; feedparser's only as a safe fallback."""
    raw = _field(entry, field)
    if raw is None:
        return None
    when = parse_date(raw, default_tz)
    if when is not None or not _EXPLICIT_ZONE.search(raw):
        return when
    parsed = dict.get(entry, f"{field}_parsed")
    try:
        when = datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None
    # feedparser fills a missing year with the current one and misreads some formats: keep its
    # answer only when the year it found is written in the string.
    return when if str(when.year) in raw else None


def _field(entry: Any, key: str) -> str | None:
    """A stripped string field of an entry, or None. Read as a plain dict: feedparser's
    ``entry.get("updated")`` silently answers with ``published`` when there is no ``updated``."""
    value = dict.get(entry, key) if isinstance(entry, dict) else None
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _html_message(head: bytes) -> str:
    match = _TITLE.search(head)
    title = _short(match.group(1).decode("utf-8", "replace")) if match else ""
    suffix = f" titled {title!r}" if title else ""
    return f"not a feed: got an HTML page{suffix} (a login, error or maintenance page?)"


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

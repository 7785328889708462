"""Feed bytes -> posts: RSS 0.9x/2.0, RSS 1.0 (RDF) and Atom, read truthfully.

Shared by every plugin that reads a feed (rss, website autodiscovery, YouTube's channel feed).
Pure and synchronous: call it off the event loop (``asyncio.to_thread``).

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
"""

from __future__ import annotations

import io
import re
import xml.sax
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import feedparser

from monitor.model import ParseError, Post
from plugins.dates import parse_date

__all__ = ["load_feed", "parse_feed", "posts_from_feed"]

# The start of an HTML document: optional BOM, XML declaration and comments, then <!doctype html,
# <html>, <head> or <body>. A feed never starts like this.
_HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:!doctype\s+html|html[\s>/]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)
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
) -> list[Post]:
    """The dated posts of a feed, in feed order (``Observation.from_posts`` sorts them).

    A valid feed without entries gives ``[]``. Raises :class:`monitor.model.ParseError` for an
    empty body, an HTML page or anything else that is not a feed, and for a feed whose entries
    all lack a usable date.
    """
    feed = load_feed(body, content_type=content_type, base_url=base_url)
    return posts_from_feed(feed, now=now, default_tz=default_tz, future_skew=future_skew)


def load_feed(
    body: bytes, *, content_type: str | None = None, base_url: str | None = None
) -> feedparser.FeedParserDict:
    """The feedparser result for ``body``, or ParseError when ``body`` is not a feed.

    ``content_type`` (the response's ``Content-Type``) helps find the encoding; ``base_url``
    (the final URL) resolves relative links.
    """
    if not body or not body.strip():
        raise ParseError("not a feed: the body is empty")
    head = body[:_SNIFF]
    if _HTML_START.match(head):
        raise ParseError(_html_message(head))
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    if base_url:
        headers["content-location"] = base_url
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

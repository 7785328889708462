"""A fast reader for plain RSS 2.0 that gives exactly the posts feedparser's path gives, or None.

:func:`plugins.feeds.parse_feed` costs ~14 ms per 33 KB WordPress feed, almost all of it in
feedparser's pure-Python SAX handlers. :func:`fast_rss_posts` reads the same document with
``xml.etree.ElementTree`` (expat and a C tree builder: ~1 ms) when, and only when, the document
is so plain that feedparser's reading of it is known; for anything else it answers ``None`` and
the caller uses feedparser. It is an optimisation, never a second opinion: where it answers, the
posts (ids, URLs, times, order) are those of ``parse_feed``'s feedparser path, which
``tests/test_fastfeed.py`` checks on thousands of generated and collected feeds.

What "plain" means, each rule because feedparser would otherwise read the document differently:

- the bytes are decoded by feedparser's own ``convert_to_utf8`` (same HTTP charset, declared
  encoding and BOM rules, same fallbacks) and ElementTree parses exactly the UTF-8 document
  feedparser's strict parser would parse; a document feedparser cannot decode, or that expat
  rejects, is left to feedparser (its loose parser reads broken documents its own way);
- no ``<!DOCTYPE`` and no ``<!ENTITY`` anywhere (feedparser rewrites DTDs; see Safety);
- the root is ``<rss>`` (no namespace) whose only child element is ``<channel>``;
- the channel's children are leaves (no child elements), or ``image``/``textInput`` whose
  children are leaves, or ``<item>``; no other element is named ``item`` or ``entry`` in any
  case or namespace (feedparser makes an entry of each, wherever it is); no attribute anywhere
  is named ``base`` (``xml:base`` moves the base of every later link); no namespace URI
  contains whitespace (xml.sax splits names on it);
- items have no attributes (``rdf:about``, ``href`` and ``lastmod`` set ids, links and dates);
  their children are leaves from a short list (WordPress': title, link, guid, pubDate,
  description, category, comments, author, enclosure, dc:creator, content:encoded,
  wfw:commentRss, wfw:comment, slash:comments, Jetpack's post-id), named as feedparser names
  them (namespace URI to its canonical prefix, local name lower-cased); at most one ``link``
  (without attributes) and one ``guid`` (whose only no-namespace attribute is ``isPermaLink``,
  and no namespaced attribute), exactly one ``pubDate``; the prefixes dc, content, wfw and
  slash are not bound to another known namespace (feedparser would then call another
  handler);
- every pubDate is read by :func:`plugins.dates.parse_date` (an unreadable date may be read
  by feedparser's own parser instead: that fallback is left to it); the usual RFC 822 shape
  takes a shortcut that makes parse_date's datetime without its general tokenizer;
- the channel has items and at least one post survives the future-skew filter (an empty
  channel, and a feed of future posts, get feedparser's answer: ``[]`` or its error).

Text is what expat reports to xml.sax: CDATA sections are text, comments and processing
instructions inside a value are dropped and the text around them joined, entities and
character references are replaced.

Values are made as feedparser makes them: text stripped; a ``link`` and a permalink ``guid``
resolved against the base feedparser would use (``base_url`` as Content-Location) with
feedparser's own join; non-ASCII text re-decoded as feedparser does (UTF-8 read as Latin-1 is
repaired, C1 controls become their windows-1252 characters); ``&amp;`` and ``&name;`` in a
``link`` rewritten; a permalink guid is the link of an item without ``<link>``; the id is the
guid, else the link.

Safety: ElementTree is not hardened against entity expansion (billion laughs) nor against
external entities. Both need entity declarations, and XML allows those only in a document type
declaration: a document without ``<!DOCTYPE`` has only the five predefined entities and
character references, an undefined ``&name;`` is a well-formedness error, and nothing is ever
fetched. The check runs on the exact bytes handed to expat, so refusing ``<!DOCTYPE`` (and
``<!ENTITY``) leaves expat nothing to expand; such documents go to feedparser, which strips
unsafe entity declarations first. Parsing is then linear in the body, like any expat parse.
"""

from __future__ import annotations

import contextlib
import functools
import re
import xml.etree.ElementTree as ElementTree
from datetime import UTC, datetime, timedelta, timezone, tzinfo

from monitor.model import Post
from plugins.dates import _DAYS, _FILLERS, MONTHS, ZONES, parse_date

try:  # feedparser's own pieces, so that the decoding and the joining are feedparser's
    from feedparser.encodings import convert_to_utf8
    from feedparser.html import _cp1252
    from feedparser.mixin import _FeedParserMixin
    from feedparser.urls import _urljoin, make_safe_absolute_uri

    _KNOWN: dict[str, str] = {uri.lower(): prefix for uri, prefix in
                              _FeedParserMixin.namespaces.items()}
except (ImportError, AttributeError):  # pragma: no cover - another feedparser: never fast
    convert_to_utf8 = None  # type: ignore[assignment]
    _KNOWN = {}

__all__ = ["HTML_START", "fast_rss_posts", "feedparser_base", "utf8_document"]

# Item children as feedparser names them (canonical prefix, lower-cased local name), whose
# handlers touch no entry id, link or date and leave no state behind.
_ITEM_LEAVES = frozenset({
    ("", "title"), ("", "link"), ("", "guid"), ("", "pubdate"), ("", "description"),
    ("", "category"), ("", "comments"), ("", "author"), ("", "enclosure"),
    ("dc", "creator"), ("content", "encoded"), ("wfw", "commentrss"), ("wfw", "comment"),
    ("slash", "comments"),
})
# Jetpack's <post-id xmlns="com-wordpress:feed-additions:1">: an unknown namespace, so its
# feedparser name depends on the document's prefixes, but a name with "-" has no handler.
_WPCOM = "com-wordpress:feed-additions:1"
_CONTAINERS = frozenset({"image", "textinput"})
_ENTRY_NAMES = frozenset({"item", "entry"})
# A prefix feedparser looks up in its namespace map (see the module docstring).
_PREFIX_BINDING = re.compile(rb"""xmlns:(dc|content|wfw|slash)\s*=\s*(["'])(.*?)\2""", re.DOTALL)
_AMP_ENTITY = re.compile("&([A-Za-z0-9_]+);")
# An absolute http(s) URL that feedparser's _urljoin gives back as it is, whatever the base:
# a lower-case scheme, an ASCII host, then a path and an optional non-empty query of plain
# characters (no ";" params, no "#", no whitespace or controls, no "[" "]" or "\\").
# urljoin then only splits and re-joins it, or returns it (another scheme than the base's).
_JOINED_AS_IS = re.compile(
    r"https?://[A-Za-z0-9][A-Za-z0-9.-]*(?::[0-9]+)?"
    r"(?:/[A-Za-z0-9._~/%!$&'()*+,=:@-]*)?(?:\?[A-Za-z0-9._~/%!$&'()*+,=:@?-]+)?"
)
# The RFC 822 date of nearly every feed ("Sab, 21 Nov 2026 14:21:00 +0700"), read without
# parse_date's general tokenizer; see _read_date.
_RFC822 = re.compile(
    r"(?:(?P<dow>[A-Za-z']{2,9})(?:, ?| ))?(?P<d>[0-9]{1,2}) (?P<mon>[A-Za-z]{3,9}) "
    r"(?P<y>[0-9]{4}) (?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2}))? "
    r"(?P<z>[+-][0-9]{4}|[A-Za-z]{1,4})"
)
_NOT_ZONES = frozenset(MONTHS) | _DAYS | _FILLERS | {"am", "pm"}
# feedparser's encoding sniffing: first lines longer than this are checked (see _cheap_sniff).
_SNIFF_LINE = 512
# Bodies feedparser transcodes before sniffing that may start with "<": UTF-16/32.
_TRANSCODED = frozenset({
    b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x3c\x00\x3f",
    b"\x3c\x00\x3f\x00", b"\x00\x00\x00\x3c", b"\x3c\x00\x00\x00",
}) | {bom + rest for bom in (b"\xfe\xff", b"\xff\xfe") for rest in (b"\x00<", b"<\x00")}
#: The start of an HTML document: optional BOM, XML declaration and comments, then <!doctype
#: html, <html>, <head> or <body>. A feed never starts like this (plugins.feeds refuses it).
HTML_START = re.compile(
    rb"^(?:\xef\xbb\xbf)?\s*(?:<\?xml[^>]*>\s*)?(?:<!--.*?-->\s*)*"
    rb"<(?:!doctype\s+html|html[\s>/]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)


class _NotPlain(Exception):  # noqa: N818 - control flow: "leave it to feedparser"
    pass


def utf8_document(body: bytes, *, content_type: str | None, http: bool) -> bytes | None:
    """``body`` as feedparser's strict parser receives it: decoded by feedparser's rules
    (``content_type``'s charset, the XML declaration, the BOM, its fallbacks) and re-encoded
    as UTF-8 with a rewritten declaration. ``http`` says whether feedparser is given response
    headers at all (without a Content-Type it then defaults to ISO-8859-1, else to UTF-8).
    None when feedparser cannot decode it (it then uses its loose parser)."""
    if convert_to_utf8 is None:
        return None
    headers: dict[str, str] = {}
    if content_type:
        headers["content-type"] = content_type
    elif http:
        headers["content-location"] = ""  # any header: "there was an HTTP response"
    result: dict[str, object] = {}
    data = convert_to_utf8(headers, body, result)
    return data if result.get("encoding") and isinstance(data, bytes) else None


def _cheap_sniff(body: bytes) -> bool:
    """Whether feedparser's encoding sniffing is sure to be quick on ``body``.

    ``convert_to_utf8`` matches ``^<\\?.*encoding=['"](.*?)['"].*\\?>`` against the first
    line; on a long line that starts with ``<?`` and does not close the encoding declaration
    with a later ``?>`` the backtracking grows with the cube of the line (1 KiB: ~10 ms; 13 KB:
    15 s). feedparser's own parse has the same cost (in a worker); the fast reader runs on the
    event loop, so it takes such a body only when the match is certain to be linear: a short
    first line, one that cannot match, or one whose last ``encoding=`` is quoted and followed
    by a quote and then a ``?>``.
    """
    if body[:4] == b"\x4c\x6f\xa7\x94":  # EBCDIC
        return False
    if body[:4] in _TRANSCODED:  # UTF-16 or UTF-32: 2 or 4 bytes a character
        return body.find(b"\n", 0, _SNIFF_LINE * 2) >= 0
    data = body[3:] if body[:3] == b"\xef\xbb\xbf" else body
    end = data.find(b"\n")
    line = data if end < 0 else data[:end]
    if len(line) <= _SNIFF_LINE or not line.startswith(b"<?"):
        return True
    last, close = line.rfind(b"encoding="), line.rfind(b"?>")
    if last < 0:
        return True
    quoted = line[last + 9:last + 10] in (b"'", b'"')
    return quoted and close > last + 10 and (
        line.find(b"'", last + 10, close) >= 0 or line.find(b'"', last + 10, close) >= 0
    )


def feedparser_base(base_url: str | None) -> str | None:
    """The base feedparser resolves links against when given ``base_url`` as Content-Location:
    it passes the base through ``make_safe_absolute_uri`` at every element. None when that
    does not settle at once (then the base depends on the depth: leave it to feedparser).
    ``""`` without a base URL (feedparser then only tidies ``scheme:///`` slashes)."""
    if not base_url:
        return ""
    if convert_to_utf8 is None:
        return None
    first = make_safe_absolute_uri(base_url, base_url) or base_url
    return first if (make_safe_absolute_uri(first, first) or first) == first else None


def fast_rss_posts(
    body: bytes,
    *,
    now: datetime,
    default_tz: tzinfo,
    future_skew: timedelta,
    content_type: str | None = None,
    base_url: str | None = None,
) -> list[Post] | None:
    """The posts ``plugins.feeds.parse_feed`` would return for ``body``, or None when the
    document is not plain RSS 2.0 (see the module docstring) and feedparser must read it.

    Never raises for a hostile or broken body: anything unexpected is None."""
    if not body or HTML_START.match(body[:4096]) or not _cheap_sniff(body):
        return None
    data = utf8_document(body, content_type=content_type, http=bool(content_type or base_url))
    if data is None or b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return None
    base = feedparser_base(base_url)
    if base is None or not base.isascii():
        return None
    for match in _PREFIX_BINDING.finditer(data):
        uri = match[3].decode("utf-8", "replace")
        canonical = _KNOWN.get(uri.lower())
        if "&" in uri or (canonical is not None and canonical != match[1].decode()):
            return None
    try:
        root = ElementTree.fromstring(data)
        items = _items(root)
        return _posts(items, base, now=now, default_tz=default_tz, future_skew=future_skew)
    except (ElementTree.ParseError, _NotPlain, ValueError, OverflowError):
        return None


def _items(root: ElementTree.Element) -> list[ElementTree.Element]:
    """The channel's items, after checking the shape of the whole document."""
    if root.tag != "rss" or len(root) != 1 or root[0].tag != "channel":
        raise _NotPlain
    channel = root[0]
    _no_base(root)
    _no_base(channel)
    items = []
    for child in channel:
        if child.tag == "item":
            items.append(child)
            continue
        local = _name(child)[1]
        if local in _ENTRY_NAMES:
            raise _NotPlain
        _no_base(child)
        if len(child):
            if child.tag.lower() not in _CONTAINERS:
                raise _NotPlain
            for grandchild in child:
                if len(grandchild) or _name(grandchild)[1] in _ENTRY_NAMES:
                    raise _NotPlain
                _no_base(grandchild)
    if not items:
        raise _NotPlain
    return items


def _posts(
    items: list[ElementTree.Element],
    base: str,
    *,
    now: datetime,
    default_tz: tzinfo,
    future_skew: timedelta,
) -> list[Post] | None:
    latest_allowed = now + future_skew
    posts: list[Post] = []
    for item in items:
        if item.keys():
            raise _NotPlain
        pub = link = guid = None
        for child in item:
            kind = _item_child(child.tag)
            if len(child):
                raise _NotPlain
            _no_base(child)
            if kind == "pubdate":
                if pub is not None:
                    raise _NotPlain
                pub = child
            elif kind == "link":
                if link is not None or child.keys():
                    raise _NotPlain
                link = child
            elif kind == "guid":
                if guid is not None:
                    raise _NotPlain
                guid = child
        if pub is None:
            raise _NotPlain
        raw = _as_feedparser(_text(pub)).strip()
        when = _read_date(raw, default_tz) if raw else None
        if when is None:
            raise _NotPlain  # undated, or a date only feedparser may read: its business
        url, ident = _link_and_id(link, guid, base)
        if when > latest_allowed:
            continue
        posts.append(Post(published_at=when, id=ident or url, url=url))
    return posts or None


def _link_and_id(
    link: ElementTree.Element | None, guid: ElementTree.Element | None, base: str
) -> tuple[str | None, str | None]:
    """An item's URL and id as feedparser and ``posts_from_feed`` make them."""
    url: str | None = None
    if link is not None:
        value = _text(link)
        if value:
            value = _join(base, value)
        value = _as_feedparser(value)
        value = _AMP_ENTITY.sub(r"&\g<1>", value.replace("&amp;", "&"))
        url = value.strip() or None
    ident: str | None = None
    if guid is not None:
        permalink = _permalink(guid)
        value = _text(guid)
        if value and permalink:
            value = _join(base, value)
        ident = _as_feedparser(value).strip() or None
        if permalink and link is None:
            url = ident
    return url, ident


def _join(base: str, value: str) -> str:
    """``feedparser.urls._urljoin(base, value)``, at once for the usual absolute link."""
    if _JOINED_AS_IS.fullmatch(value) is not None:
        return value
    return _urljoin(base, value)


def _read_date(raw: str, default_tz: tzinfo) -> datetime | None:
    """``parse_date(raw, default_tz)``, sooner for the usual RFC 822 shape: one space between
    the parts, an optional day name (English or Indonesian), a month name, a 4-digit year,
    hh:mm[:ss], a known zone name or a +hhmm offset. For these parse_date's tokenizer
    makes the same datetime from the same numbers; anything else, or anything out of range,
    goes to parse_date itself (tests/test_fastfeed.py compares them)."""
    match = _RFC822.fullmatch(raw)
    if match is None:
        return parse_date(raw, default_tz)
    month = MONTHS.get(match["mon"].lower())
    dow, zone_text = match["dow"], match["z"]
    zone: tzinfo | None = None
    if zone_text[0] in "+-":
        hours, minutes = int(zone_text[1:3]), int(zone_text[3:])
        if hours <= 14 and minutes < 60:
            sign = -1 if zone_text[0] == "-" else 1
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    elif (name := zone_text.lower()) in ZONES and name not in _NOT_ZONES:
        zone = timezone(timedelta(hours=ZONES[name]))
    if month is None or zone is None or (dow is not None and dow.lower() not in _DAYS):
        return parse_date(raw, default_tz)
    try:
        when = datetime(
            int(match["y"]), month, int(match["d"]), int(match["h"]), int(match["mi"]),
            min(int(match["s"] or 0), 59), tzinfo=zone,
        )
    except ValueError:
        return parse_date(raw, default_tz)
    return when.astimezone(UTC)


def _permalink(guid: ElementTree.Element) -> bool:
    """feedparser's reading of ``isPermaLink`` (attribute names lower-cased; default true)."""
    values = []
    for key, value in guid.items():
        if key[:1] == "{":
            raise _NotPlain
        if key.lower() == "ispermalink":
            values.append(value)
    if len(values) > 1:
        raise _NotPlain
    return not values or values[0] == "true"


def _text(element: ElementTree.Element) -> str:
    """The stripped text of a leaf (feedparser strips before resolving)."""
    return (element.text or "").strip()


def _as_feedparser(value: str) -> str:
    """What feedparser does to every value it stores, after resolving it: UTF-8 that was
    read as Latin-1 is re-decoded, and C1 controls are mapped to windows-1252 characters."""
    if value.isascii():
        return value
    with contextlib.suppress(UnicodeError):
        value = value.encode("iso-8859-1").decode("utf-8")
    return value.translate(_cp1252)


@functools.lru_cache(maxsize=1024)
def _item_child(tag: str) -> str:
    """``pubdate``, ``link``, ``guid`` or ``""`` (another known harmless leaf) for the tag
    of an item's child; _NotPlain for any other child (not cached: raised each time)."""
    name = _tag_name(tag)
    if name not in _ITEM_LEAVES and name != (_WPCOM, "post-id"):
        raise _NotPlain
    return name[1] if not name[0] and name[1] in ("pubdate", "link", "guid") else ""


def _name(element: ElementTree.Element) -> tuple[str, str]:
    """(canonical prefix or unknown namespace URI, lower-cased local name), as feedparser
    names an element."""
    return _tag_name(element.tag)


def _tag_name(tag: object) -> tuple[str, str]:
    if not isinstance(tag, str):
        raise _NotPlain
    if tag[:1] != "{":
        return "", tag.lower()
    uri, _, local = tag[1:].partition("}")
    if uri.split() != [uri]:
        raise _NotPlain
    return _KNOWN.get(uri.lower(), uri), local.lower()


def _no_base(element: ElementTree.Element) -> None:
    """Refuse ``base``/``xml:base`` (any prefix or case) and whitespace in attribute URIs."""
    for key in element.keys():  # noqa: SIM118 - an Element: keys() makes no attrib dict
        local = key
        if key[:1] == "{":
            uri, _, local = key[1:].partition("}")
            if uri.split() != [uri]:
                raise _NotPlain
        if local.lower() == "base":
            raise _NotPlain

"""Sitemaps read safely: robots.txt ``Sitemap:`` lines, sitemap indexes, url sets, news sitemaps.

Used by the ``website`` platform's ``sitemap`` method. The parsers are pure and synchronous
(call them off the event loop); :class:`SitemapWalk` is the async walk from a site's roots to
its newest post, given a fetch function.

Safety: sitemaps come from sites we do not control. :func:`parse_xml` decodes the bytes itself
(UTF-8, or UTF-16 with a BOM; a gzip body is inflated up to a cap), refuses any document
containing ``<!DOCTYPE`` or ``<!ENTITY`` (entity-expansion bombs, external entities) with a
:class:`monitor.model.ParseError`, and only then hands the *text* to ``xml.etree``, so the
parser never sees a declaration and never reads a file or a URL.

What counts (PLATFORMS.md "Official websites"): ``<lastmod>`` is optional and is a
*modification* time; a news sitemap's ``<news:publication_date>`` is a publication time and is
preferred when present. Only post sitemaps are followed (:func:`is_post_sitemap`): never page,
category, tag, author, attachment or user sitemaps.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, Literal, Protocol
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree

from monitor.model import ParseError, Post
from plugins.dates import parse_date
from plugins.wordpress import same_site

__all__ = [
    "MAX_INFLATED",
    "Fetched",
    "Sitemap",
    "SitemapEntry",
    "SitemapWalk",
    "is_post_sitemap",
    "newest_first",
    "parse_sitemap",
    "parse_xml",
    "robots_sitemaps",
    "sitemap_kind",
]

#: Largest inflated size of a gzip sitemap (the protocol's own limit is 50 MB uncompressed).
MAX_INFLATED = 16 * 1024 * 1024

_DECLARATION = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
_HTML = re.compile(
    r"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.IGNORECASE | re.DOTALL
)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)

# Name tokens (split on - _ . and digits) of sitemaps that never list posts.
_NOT_POSTS = frozenset({
    "page", "pages", "category", "categories", "cat", "tag", "tags", "author", "authors",
    "user", "users", "attachment", "attachments", "media", "taxonomy", "taxonomies", "tax",
    "product", "products", "format", "misc", "archives", "archive", "image", "images",
    "video", "videos", "kategori", "halaman", "penulis", "locations", "geo",
})
# Name tokens of sitemaps that list posts or news articles.
_POSTS = frozenset({
    "post", "posts", "news", "berita", "artikel", "article", "articles", "blog",
})
# WordPress core: wp-sitemap-posts-<post type>-<n>.xml; Google XML Sitemaps: sitemap-pt-<type>-...
_WP_CORE = re.compile(r"^wp-sitemap-posts-(?P<type>.+?)-\d+$")
_PT = re.compile(r"^sitemap-pt-(?P<type>[a-z0-9_]+?)(?:-\d{4}-\d{2})?$")


@dataclass(frozen=True, slots=True)
class SitemapEntry:
    """One ``<url>`` or ``<sitemap>`` element: its location and its dates (aware, or None).

    ``lastmod`` is a modification time; ``published`` is a news sitemap's publication date.
    """

    loc: str
    lastmod: datetime | None = None
    published: datetime | None = None

    @property
    def date(self) -> datetime | None:
        """The best post time of the entry: the publication date, else ``lastmod``."""
        return self.published or self.lastmod


@dataclass(frozen=True, slots=True)
class Sitemap:
    """A parsed sitemap document: an index of sitemaps, or a set of URLs."""

    kind: Literal["index", "urlset"]
    entries: tuple[SitemapEntry, ...]


def parse_xml(body: bytes) -> ElementTree.Element:
    """The root element of an XML document, parsed without any DTD, entity or external fetch.

    Raises ParseError for an empty, undecodable or malformed body, and for any document that
    contains a ``<!DOCTYPE`` or ``<!ENTITY`` declaration.
    """
    return _parse_text(_decode(_inflate(body)))


def _parse_text(text: str) -> ElementTree.Element:
    if not text.strip():
        raise ParseError("not XML: the body is empty")
    if _DECLARATION.search(text):
        raise ParseError("refused XML with a DOCTYPE or ENTITY declaration (entity expansion/XXE)")
    try:
        # A str (not bytes) makes the parser ignore the declared encoding: we decoded it.
        return ElementTree.fromstring(_XML_DECL.sub("", text, count=1))
    except ElementTree.ParseError as exc:
        raise ParseError(f"malformed XML: {exc}") from None


def parse_sitemap(body: bytes, *, base_url: str, default_tz: tzinfo) -> Sitemap:
    """A sitemap index or url set. Relative ``<loc>`` values resolve against ``base_url``;
    entries without an http(s) ``<loc>`` are skipped; unreadable dates become None.

    Raises ParseError when the body is not XML or its root is neither ``sitemapindex`` nor
    ``urlset`` (an HTML page, a feed).
    """
    text = _decode(_inflate(body))
    if _HTML.match(text):
        raise ParseError("not a sitemap: got an HTML page")
    root = _parse_text(text)
    kind = _local(root.tag)
    if kind == "sitemapindex":
        child = "sitemap"
    elif kind == "urlset":
        child = "url"
    else:
        raise ParseError(f"not a sitemap: the document is <{kind}>, not <urlset> or <sitemapindex>")
    entries: list[SitemapEntry] = []
    for element in root:
        if _local(element.tag) != child:
            continue
        loc = lastmod = published = None
        for part in element.iter():
            name = _local(part.tag)
            if name == "loc" and loc is None:
                loc = (part.text or "").strip()
            elif name == "lastmod" and lastmod is None:
                lastmod = _date(part.text, default_tz)
            elif name == "publication_date" and published is None:
                published = _date(part.text, default_tz)
        if not loc:
            continue
        loc = urljoin(base_url, loc)
        if urlsplit(loc).scheme not in ("http", "https"):
            continue
        entries.append(SitemapEntry(loc=loc, lastmod=lastmod, published=published))
    return Sitemap(kind="index" if kind == "sitemapindex" else "urlset", entries=tuple(entries))


def robots_sitemaps(text: str, base_url: str) -> list[str]:
    """The http(s) URLs of the ``Sitemap:`` lines of a robots.txt, in order, without repeats."""
    found: list[str] = []
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep or key.strip().lower() != "sitemap":
            continue
        url = urljoin(base_url, value.split("#", 1)[0].strip())
        if urlsplit(url).scheme in ("http", "https") and url not in found:
            found.append(url)
    return found


def sitemap_kind(url: str) -> Literal["posts", "other", "unknown"]:
    """What a sitemap lists, judged by its file name.

    ``"posts"``: posts or news articles — ``post-sitemap.xml``, ``post-sitemap2.xml`` (Yoast),
    ``wp-sitemap-posts-post-1.xml`` (core), ``sitemap-posts-2024-10.xml``,
    ``sitemap-pt-post-2024-10.xml``, ``news-sitemap.xml``, ``berita-sitemap.xml``.
    ``"other"``: page, category, tag, author, attachment, user, taxonomy sitemaps.
    ``"unknown"``: a name that says neither (``sitemap.xml``, ``sitemap-1.xml``).
    """
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix in (".gz", ".xml"):
        name = name.removesuffix(suffix)
    for pattern in (_WP_CORE, _PT):
        match = pattern.match(name)
        if match:
            return "posts" if _type_is_post(match["type"]) else "other"
    tokens = set(re.split(r"[-_.\d]+", name)) - {""}
    if tokens & _NOT_POSTS:
        return "other"
    return "posts" if tokens & _POSTS else "unknown"


def is_post_sitemap(url: str) -> bool:
    """Whether a child sitemap lists posts (see :func:`sitemap_kind`); unknown names do not."""
    return sitemap_kind(url) == "posts"


def newest_first(entries: tuple[SitemapEntry, ...] | list[SitemapEntry]) -> list[SitemapEntry]:
    """Child sitemaps in the order to fetch them: by ``lastmod``, newest first; those without
    a ``lastmod`` after, last listed first (WordPress core and Yoast put the newest posts in
    the highest-numbered file)."""
    dated = sorted((e for e in entries if e.lastmod), key=lambda e: e.lastmod, reverse=True)
    undated = [e for e in reversed(entries) if not e.lastmod]
    return dated + undated


def _type_is_post(post_type: str) -> bool:
    tokens = set(re.split(r"[-_]+", post_type.lower())) - {""}
    return not tokens & _NOT_POSTS and bool(tokens & _POSTS)


def _date(text: str | None, default_tz: tzinfo) -> datetime | None:
    value = (text or "").strip()
    return parse_date(value, default_tz) if value else None


def _local(tag: object) -> str:
    """An element's name without its namespace (sitemap namespaces vary in the wild)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _inflate(body: bytes) -> bytes:
    """A gzip body (``sitemap.xml.gz`` served as a file) inflated, at most MAX_INFLATED bytes."""
    if not body.startswith(b"\x1f\x8b"):
        return body
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_INFLATED + 1)
    except zlib.error:
        raise ParseError("not a sitemap: a broken gzip body") from None
    if len(data) > MAX_INFLATED or inflater.unconsumed_tail:
        raise ParseError(f"gzip sitemap inflates to more than {MAX_INFLATED // 2**20} MiB")
    return data


def _decode(body: bytes) -> str:
    """UTF-16/32 by BOM, else UTF-8 (the sitemap protocol's encoding), errors replaced."""
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(codec, errors="replace")
    return body.decode("utf-8-sig", errors="replace")


class Fetched(Protocol):
    """What :class:`SitemapWalk` needs of an HTTP answer (``monitor.http.Response`` fits)."""

    url: str
    status: int
    body: bytes

    def text(self) -> str: ...


@dataclass
class SitemapWalk:
    """One check's walk over a site's sitemaps to the newest post, fetching at most
    ``budget`` sitemap files (robots.txt is not counted).

    Roots, in order: ``remembered`` ones, robots.txt ``Sitemap:`` lines, then
    ``{site}/sitemap_index.xml`` (Yoast), ``/wp-sitemap.xml`` (core), ``/sitemap.xml``. A root
    that is a url set is read whole (unless its name says pages, categories...); an index is
    followed into its post sitemaps only, newest ``lastmod`` first (else last listed first),
    one level of nested index deep, stopping at the first that gives dates. A post sitemap
    without dated URLs, or that cannot be fetched, counts as its index entry's ``lastmod``:
    by the protocol that is when the sitemap last changed, i.e. the newest change of the
    posts it lists. The site's home URL is never a post. Only URLs on the site are fetched.

    ``fetch`` raises :mod:`monitor.model` errors; Timeout, Unreachable and RateLimited end
    the walk (the caller decides), a body over the size cap is a problem noted like a 404.
    ``run_cpu`` runs :func:`parse_sitemap` off the event loop (``CheckContext.run_cpu``: the
    core's worker processes); by default a thread.
    """

    site: str
    fetch: Callable[[str], Awaitable[Fetched]]
    budget: int
    default_tz: tzinfo
    latest_allowed: datetime
    problems: list[tuple[str, str]] = field(default_factory=list)
    fetched: set[str] = field(default_factory=set)
    run_cpu: Callable[..., Awaitable[Any]] | None = None

    async def run(self, remembered: list[str], *, robots_url: str) -> tuple[list[Post], str]:
        """The dated posts of the first root that gives any, and that root's URL
        (``([], "")`` when none does: see :meth:`summary`)."""
        for root in remembered:
            posts = await self._root(root)
            if posts:
                return posts, root
        guesses = [f"{self.site}/{name}" for name in _GUESSES]
        for root in [*await self._robots(robots_url), *guesses]:
            if root in self.fetched:
                continue
            posts = await self._root(root)
            if posts:
                return posts, root
        return [], ""

    def summary(self) -> str:
        """Why no date was found, e.g. ``/sitemap_index.xml, /sitemap.xml: HTTP 404``."""
        grouped: dict[str, list[str]] = {}
        for where, why in self.problems:
            grouped.setdefault(why, []).append(where)
        parts = [f"{', '.join(where)}: {why}" if where[0] else why
                 for why, where in grouped.items()]
        return "; ".join(parts) or "no sitemap found"

    async def _robots(self, url: str) -> list[str]:
        try:
            resp = await self.fetch(url)
        except ParseError as exc:
            self.problems.append(("/robots.txt", exc.message))
            return []
        if not 200 <= resp.status < 300 or resp.body.lstrip()[:1] == b"<":
            return []
        return [u for u in robots_sitemaps(resp.text(), resp.url) if self._ours(u)]

    async def _root(self, url: str) -> list[Post]:
        doc = await self._document(url)
        if doc is None:
            return []
        if doc.kind == "index":
            return await self._index(url, doc, nested=False)
        if sitemap_kind(url) == "other":
            self.problems.append((_path(url), "not a post sitemap"))
            return []
        return self._posts(url, doc)

    async def _index(self, url: str, doc: Sitemap, *, nested: bool) -> list[Post]:
        children = [e for e in doc.entries if is_post_sitemap(e.loc) and self._ours(e.loc)]
        if not children:
            self.problems.append((_path(url), "no post sitemap"))
            return []
        for child in newest_first(children):
            sub = await self._document(child.loc)
            posts: list[Post] = []
            if sub is not None and sub.kind == "urlset":
                posts = self._posts(child.loc, sub)
            elif sub is not None and not nested:
                posts = await self._index(child.loc, sub, nested=True)
            if not posts and child.lastmod is not None and child.lastmod <= self.latest_allowed:
                posts = [Post(child.lastmod, url=None)]
            if posts:
                return posts
            if sub is None and self.budget <= 0:
                break
        return []

    async def _document(self, url: str) -> Sitemap | None:
        if self.budget <= 0:
            spent = ("", "stopped: max_sitemaps files fetched")
            if spent not in self.problems:
                self.problems.append(spent)
            return None
        self.budget -= 1
        self.fetched.add(url)
        try:
            resp = await self.fetch(url)
        except ParseError as exc:
            self.problems.append((_path(url), exc.message))
            return None
        self.fetched.add(resp.url)
        if not 200 <= resp.status < 300:
            self.problems.append((_path(url), f"HTTP {resp.status}"))
            return None
        try:
            run = self.run_cpu or _in_thread
            return await run(
                parse_sitemap, resp.body, base_url=resp.url, default_tz=self.default_tz
            )
        except ParseError as exc:
            self.problems.append((_path(url), exc.message))
            return None

    def _posts(self, url: str, doc: Sitemap) -> list[Post]:
        posts = [
            Post(e.date, id=e.loc, url=e.loc)
            for e in doc.entries
            if e.date is not None and e.date <= self.latest_allowed and not self._is_home(e.loc)
        ]
        if not posts:
            self.problems.append((_path(url), "no dated post URL (lastmod missing)"))
        return posts

    def _ours(self, url: str) -> bool:
        return same_site(url, self.site)

    def _is_home(self, url: str) -> bool:
        parts, site = urlsplit(url), urlsplit(self.site)
        return (
            self._ours(url) and not parts.query
            and parts.path.rstrip("/") == site.path.rstrip("/")
        )


_GUESSES = ("sitemap_index.xml", "wp-sitemap.xml", "sitemap.xml")


async def _in_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(functools.partial(func, *args, **kwargs))


def _path(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

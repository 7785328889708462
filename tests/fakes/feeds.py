"""Realistic RSS 2.0, RSS 1.0 (RDF) and Atom bodies, hostile bodies, and a loopback feed server.

Builders return bytes shaped like what Indonesian government sites serve (WordPress feeds
with ``lastBuildDate`` and sticky posts, Atom from Blogger/YouTube, RDF with ``dc:date``).
:func:`make_app` serves :class:`FeedRoute` bodies and honours ``If-None-Match`` and
``If-Modified-Since`` like a real server, counting what it sent so tests can check politeness.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from xml.sax.saxutils import escape

from aiohttp import web

__all__ = [
    "HTML_LOGIN_PAGE",
    "HTML_MAINTENANCE_PAGE",
    "FeedFake",
    "FeedRoute",
    "atom",
    "atom_entry",
    "billion_laughs",
    "make_app",
    "rdf",
    "rdf_item",
    "rss",
    "rss_item",
    "xxe_feed",
]

SITE = "https://dinsos.example.go.id"


def _tag(name: str, value: str | None) -> str:
    return "" if value is None else f"<{name}>{escape(value)}</{name}>"


def rss_item(
    title: str,
    *,
    pub_date: str | None = None,
    link: str | None = None,
    guid: str | None = None,
    dc_date: str | None = None,
    extra: str = "",
) -> str:
    """One ``<item>``; ``link`` defaults to a post URL built from the title, ``guid`` to none."""
    link = link if link is not None else f"{SITE}/berita/{title.lower().replace(' ', '-')}/"
    guid_xml = "" if guid is None else f'<guid isPermaLink="false">{escape(guid)}</guid>'
    return (
        f"<item>{_tag('title', title)}{_tag('link', link or None)}{guid_xml}"
        f"{_tag('pubDate', pub_date)}{_tag('dc:date', dc_date)}"
        f"<description><![CDATA[<p>{escape(title)}</p>]]></description>{extra}</item>"
    )


def rss(
    items: list[str],
    *,
    last_build_date: str | None = None,
    channel_pub_date: str | None = None,
    title: str = "Dinas Sosial Kota Cilegon",
) -> bytes:
    """An RSS 2.0 document as WordPress writes it."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom">\n<channel>\n'
        f"{_tag('title', title)}\n"
        f'<atom:link href="{SITE}/feed/" rel="self" type="application/rss+xml" />\n'
        f"<link>{SITE}</link>\n<description>Berita dan informasi</description>\n"
        f"{_tag('lastBuildDate', last_build_date)}{_tag('pubDate', channel_pub_date)}\n"
        "<language>id-ID</language>\n<generator>https://wordpress.org/?v=6.5.3</generator>\n"
        + "\n".join(items)
        + "\n</channel>\n</rss>\n"
    ).encode()


def atom_entry(
    entry_id: str,
    *,
    published: str | None = None,
    updated: str | None = None,
    link: str | None = None,
    title: str = "Video kegiatan",
) -> str:
    """One Atom ``<entry>``."""
    link = link if link is not None else f"https://www.youtube.com/watch?v={entry_id}"
    return (
        f"<entry><id>yt:video:{escape(entry_id)}</id>{_tag('title', title)}"
        f'<link rel="alternate" href="{escape(link)}"/>'
        f"{_tag('published', published)}{_tag('updated', updated)}"
        "<author><name>Dinsos Cilegon</name></author></entry>"
    )


def atom(entries: list[str], *, updated: str | None = None, published: str | None = None) -> bytes:
    """An Atom 1.0 document; ``updated``/``published`` are feed-level (not post times)."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" '
        'xmlns:yt="http://www.youtube.com/xml/schemas/2015">\n'
        '<id>yt:channel:UC0000000000000000000000</id><title>Dinsos Cilegon</title>\n'
        '<link rel="alternate" href="https://www.youtube.com/channel/UC0000000000000000000000"/>\n'
        f"{_tag('updated', updated)}{_tag('published', published)}\n"
        + "\n".join(entries)
        + "\n</feed>\n"
    ).encode()


def rdf_item(about: str, *, dc_date: str | None = None, title: str = "Pengumuman") -> str:
    """One RSS 1.0 ``<item>`` (dates only as ``dc:date``)."""
    return (
        f'<item rdf:about="{escape(about)}">{_tag("title", title)}<link>{escape(about)}</link>'
        f"{_tag('dc:date', dc_date)}</item>"
    )


def rdf(items: list[str], *, channel_date: str | None = None) -> bytes:
    """An RSS 1.0 (RDF) document."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        'xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">\n'
        f'<channel rdf:about="{SITE}/rdf"><title>Kecamatan</title><link>{SITE}</link>'
        f"<description>Pengumuman</description>{_tag('dc:date', channel_date)}</channel>\n"
        + "\n".join(items)
        + "\n</rdf:RDF>\n"
    ).encode()


#: A single-sign-on login page served with 200 instead of the feed.
HTML_LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html lang=\"id\">\n<head><meta charset=\"utf-8\">\n"
    b"<title>Login - SSO Pemerintah Kota Cilegon</title></head>\n<body>\n"
    b"<form method=\"post\" action=\"/login\"><input name=\"username\">"
    b"<input type=\"password\" name=\"password\"><button>Masuk</button></form>\n"
    b"</body>\n</html>\n"
)

#: A maintenance page without a doctype, as some reverse proxies send it.
HTML_MAINTENANCE_PAGE = (
    b"\n  <html><head><title>Situs Sedang Dalam Perbaikan</title></head>"
    b"<body><h1>Mohon maaf, situs sedang dalam perbaikan.</h1></body></html>"
)


def xxe_feed(path: str) -> bytes:
    """An RSS feed whose DOCTYPE declares an external entity pointing at a local file."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{path}">]>\n'
        '<rss version="2.0"><channel><title>&xxe;</title><link>https://x.example/</link>'
        "<item><title>&xxe;</title><guid>&xxe;</guid><link>https://x.example/1</link>"
        "<pubDate>Mon, 20 May 2024 10:00:00 +0700</pubDate></item>"
        "</channel></rss>\n"
    ).encode()


def billion_laughs(levels: int = 10) -> bytes:
    """The classic entity-expansion bomb (10 levels of 10 = 10**10 'lol's if expanded)."""
    decls = ['<!ENTITY lol0 "lol">']
    for n in range(1, levels):
        decls.append(f'<!ENTITY lol{n} "' + f"&lol{n - 1};" * 10 + '">')
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + "\n".join(decls) + "\n]>\n"
        f'<rss version="2.0"><channel><title>&lol{levels - 1};</title>'
        f"<item><title>&lol{levels - 1};</title><link>https://x.example/1</link>"
        "<pubDate>Mon, 20 May 2024 10:00:00 +0700</pubDate></item></channel></rss>\n"
    ).encode()


# --- the loopback server ------------------------------------------------------------------


@dataclass
class FeedRoute:
    """What the fake serves at one path. ``etag``/``last_modified`` enable validators."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=UTF-8"
    etag: bool = True
    last_modified: str | None = "Mon, 20 May 2024 03:00:00 GMT"
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def etag_value(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


@dataclass
class FeedFake:
    """The fake's routes (by path) and what it saw and sent."""

    routes: dict[str, FeedRoute] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    bodies_sent: int = 0
    not_modified_sent: int = 0


FAKE = web.AppKey("fake", FeedFake)


def _not_modified(request: web.Request, route: FeedRoute) -> bool:
    if route.status != 200:
        return False
    if_none_match = request.headers.get("If-None-Match")
    if route.etag and if_none_match is not None:
        return route.etag_value in [t.strip() for t in if_none_match.split(",")]
    since = request.headers.get("If-Modified-Since")
    if route.last_modified and since:
        try:
            return parsedate_to_datetime(since) >= parsedate_to_datetime(route.last_modified)
        except (TypeError, ValueError):
            return False
    return False


async def _serve(request: web.Request) -> web.Response:
    fake = request.app[FAKE]
    fake.requests.append({"path": request.path_qs, **request.headers})
    route = fake.routes.get(request.path)
    if route is None:
        return web.Response(status=404, text="404 Not Found", content_type="text/html")
    headers = dict(route.headers)
    if route.status == 200:
        if route.etag:
            headers["ETag"] = route.etag_value
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
    if _not_modified(request, route):
        fake.not_modified_sent += 1
        return web.Response(status=304, headers=headers)
    if route.body:
        fake.bodies_sent += 1
    headers["Content-Type"] = route.content_type
    return web.Response(status=route.status, body=route.body, headers=headers)


def make_app(fake: FeedFake) -> web.Application:
    """An aiohttp app serving ``fake.routes``; unknown paths are 404."""
    app = web.Application()
    app[FAKE] = fake
    app.router.add_route("GET", "/{tail:.*}", _serve)
    return app

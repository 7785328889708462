"""A loopback fake of an official website (WordPress-ish or static), configurable per path.

:class:`SiteFake` maps a route key to a :class:`SiteRoute`: the key is the request path
(``/wp-json/wp/v2/posts``, ``/feed/``, ``/``) or, for WordPress's "plain permalinks" REST
form, ``?rest_route=<route>`` (``?rest_route=/wp/v2/posts``). Unknown keys answer a 404 HTML
page, as a WordPress theme does. Every request is counted per key (``hits``) and recorded
with its headers (``requests``) so that tests can check politeness. Routes honour
``If-None-Match`` / ``If-Modified-Since`` when they send validators, can redirect, and can
hang (until the test ends: :meth:`SiteFake.release`).

Builders return bodies shaped like what Indonesian government WordPress sites serve: REST
post lists (``date`` site-local, ``date_gmt`` without a zone), REST errors
(``rest_cannot_access``), home pages with ``<link rel="alternate">`` feeds, Yoast/core
sitemap indexes, url sets (optionally without ``lastmod`` or with news dates), robots.txt,
and hostile XML (XXE, entity bombs).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from html import escape
from typing import Any

from aiohttp import web

__all__ = [
    "LOGIN_PAGE",
    "SiteFake",
    "SiteRoute",
    "home_page",
    "html_route",
    "json_route",
    "make_site_app",
    "rest_error",
    "robots_txt",
    "sitemap_index",
    "urlset",
    "wp_post",
    "xml_route",
]


# --- bodies --------------------------------------------------------------------------------


def wp_post(
    post_id: int,
    date: str | None,
    date_gmt: str | None,
    *,
    link: str | None = None,
    sticky: bool = False,
    modified: str | None = None,
    modified_gmt: str | None = None,
) -> dict[str, Any]:
    """One item of ``/wp/v2/posts`` as ``_fields=id,date_gmt,date,link,sticky`` returns it;
    ``modified``/``modified_gmt`` are added when given (a server ignoring ``_fields``)."""
    item: dict[str, Any] = {
        "id": post_id,
        "date": date,
        "date_gmt": date_gmt,
        "link": link or f"https://dinsos.example.go.id/?p={post_id}",
        "sticky": sticky,
    }
    if modified is not None:
        item["modified"] = modified
    if modified_gmt is not None:
        item["modified_gmt"] = modified_gmt
    return item


def rest_error(code: str, message: str, status: int) -> dict[str, Any]:
    """A WordPress REST error body (``{"code": ..., "message": ..., "data": {"status": ...}}``)."""
    return {"code": code, "message": message, "data": {"status": status}}


def home_page(
    *,
    feeds: Sequence[tuple[str, str, str]] = (),
    body: str = "",
    title: str = "Dinas Sosial Kota Cilegon",
    head: str = "",
) -> bytes:
    """A home page whose ``<head>`` has ``<link rel="alternate">`` feeds ``(type, href, title)``."""
    links = "\n".join(
        f'<link rel="alternate" type="{escape(kind)}" title="{escape(name)}" '
        f'href="{escape(href)}" />'
        for kind, href, name in feeds
    )
    return (
        "<!DOCTYPE html>\n<html lang=\"id-ID\">\n<head>\n<meta charset=\"UTF-8\">\n"
        f"<title>{escape(title)}</title>\n{links}\n{head}\n</head>\n"
        f"<body class=\"home\">\n<header><h1>{escape(title)}</h1></header>\n{body}\n"
        "</body>\n</html>\n"
    ).encode()


#: A login page, where a blocked REST API or a members-only site redirects to.
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html lang=\"id-ID\"><head><meta charset=\"UTF-8\">"
    b"<title>Log In &lsaquo; Dinas Sosial &#8212; WordPress</title></head>"
    b"<body class=\"login\"><form name=\"loginform\" action=\"/wp-login.php\" method=\"post\">"
    b"<input type=\"text\" name=\"log\"><input type=\"password\" name=\"pwd\"></form>"
    b"</body></html>\n"
)


def sitemap_index(children: list[tuple[str, str | None]]) -> bytes:
    """A ``<sitemapindex>`` of ``(loc, lastmod or None)``."""
    items = "".join(
        f"<sitemap><loc>{escape(loc)}</loc>"
        + (f"<lastmod>{escape(lastmod)}</lastmod>" if lastmod else "")
        + "</sitemap>\n"
        for loc, lastmod in children
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<?xml-stylesheet type="text/xsl" href="//example.go.id/main-sitemap.xsl"?>\n'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">\n'
        f"{items}</sitemapindex>\n"
    ).encode()


def urlset(urls: list[tuple[str, str | None]], *, news: dict[str, str] | None = None) -> bytes:
    """A ``<urlset>`` of ``(loc, lastmod or None)``; ``news`` maps a loc to its
    ``<news:publication_date>`` (a Google News sitemap)."""
    news = news or {}
    items = []
    for loc, lastmod in urls:
        extra = ""
        if loc in news:
            extra = (
                "<news:news><news:publication><news:name>Dinsos</news:name>"
                "<news:language>id</news:language></news:publication>"
                f"<news:publication_date>{escape(news[loc])}</news:publication_date>"
                "<news:title>Berita</news:title></news:news>"
            )
        items.append(
            f"<url><loc>{escape(loc)}</loc>"
            + (f"<lastmod>{escape(lastmod)}</lastmod>" if lastmod else "")
            + f"{extra}</url>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9" '
        'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
        + "".join(items)
        + "</urlset>\n"
    ).encode()


def robots_txt(sitemaps: list[str]) -> bytes:
    """A WordPress-like robots.txt listing ``sitemaps``."""
    lines = ["User-agent: *", "Disallow: /wp-admin/", "Allow: /wp-admin/admin-ajax.php", ""]
    lines += [f"Sitemap: {url}" for url in sitemaps]
    return ("\n".join(lines) + "\n").encode()


# --- routes and the server -----------------------------------------------------------------


@dataclass
class SiteRoute:
    """What the fake answers for one key.

    ``etag``/``last_modified`` send validators (and then honour conditional requests);
    ``redirect`` answers ``redirect_status`` with that Location; ``hang`` never answers
    until the fake is released.
    """

    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = False
    last_modified: str | None = None
    redirect: str | None = None
    redirect_status: int = 302
    hang: bool = False

    @property
    def etag_value(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


def json_route(data: Any, status: int = 200, **kwargs: Any) -> SiteRoute:
    """A JSON answer (WordPress sends ``application/json; charset=UTF-8``)."""
    return SiteRoute(json.dumps(data).encode(), status, "application/json; charset=UTF-8", **kwargs)


def html_route(body: bytes, status: int = 200, **kwargs: Any) -> SiteRoute:
    """An HTML answer."""
    return SiteRoute(body, status, "text/html; charset=UTF-8", **kwargs)


def xml_route(body: bytes, status: int = 200, **kwargs: Any) -> SiteRoute:
    """An XML answer (sitemaps); feeds pass their own content type."""
    return SiteRoute(body, status, "application/xml; charset=UTF-8", **kwargs)


@dataclass
class SiteFake:
    """The fake site's routes and what it saw."""

    routes: dict[str, SiteRoute] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, str]] = field(default_factory=list)
    not_modified_sent: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def total(self) -> int:
        """All requests received."""
        return sum(self.hits.values())

    def release(self) -> None:
        """Let hanging routes finish (call before the server closes)."""
        self.released.set()

    def reset_counts(self) -> None:
        """Forget what was seen so far (between checks of one test)."""
        self.hits.clear()
        self.requests.clear()
        self.not_modified_sent = 0


FAKE = web.AppKey("site_fake", SiteFake)


def route_key(request: web.Request) -> str:
    """``?rest_route=<route>`` for the plain-permalink REST form, else the path."""
    rest_route = request.query.get("rest_route")
    return f"?rest_route={rest_route}" if rest_route is not None else request.path


def _not_modified(request: web.Request, route: SiteRoute) -> bool:
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


async def _serve(request: web.Request) -> web.StreamResponse:
    fake = request.app[FAKE]
    key = route_key(request)
    fake.hits[key] += 1
    fake.requests.append({"key": key, "path": request.path_qs, **request.headers})
    route = fake.routes.get(key)
    if route is None:
        page = b"<!DOCTYPE html><html><head><title>Halaman tidak ditemukan</title></head></html>"
        return web.Response(status=404, body=page, content_type="text/html")
    if route.hang:
        await fake.released.wait()
    if route.redirect is not None:
        return web.Response(status=route.redirect_status, headers={"Location": route.redirect})
    headers = dict(route.headers)
    if route.status == 200:
        if route.etag:
            headers["ETag"] = route.etag_value
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
    if _not_modified(request, route):
        fake.not_modified_sent += 1
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = route.content_type
    return web.Response(status=route.status, body=route.body, headers=headers)


def make_site_app(fake: SiteFake) -> web.Application:
    """An aiohttp app serving ``fake.routes`` (unknown keys: a 404 HTML page)."""
    app = web.Application()
    app[FAKE] = fake
    app.router.add_route("GET", "/{tail:.*}", _serve)
    return app

"""A loopback server that serves, on demand, every way an upstream can fail.

One :class:`FaultServer` stands in for one platform's endpoints. Its :class:`Profile` knows
what the platform's *good* answers look like (an RSS feed, a YouTube channel feed, a WordPress
REST list, Business Discovery / web-profile JSON, a Facebook page's posts) and how that
platform writes a date. A test serves good answers first (so a last known post exists), then
sets ``server.fault`` to one of :data:`FAULTS`, and counts what the server received.

Faults have a *scope*: ``all`` faults replace every answer of the server (a dead host, a login
wall, a 50 MiB body); ``data`` faults change only the platform's data answers (its feed or API
endpoint), leaving the rest of the site as it was (a REST API whose dates are unreadable).

``refused`` is served by closing the listening socket (:meth:`FaultServer.refuse`); every
answer carries ``Connection: close``, so no pooled connection outlives it and a refused
connection is really refused. ``redirect-other-host`` sends the client to an :class:`OtherHost`
(another loopback address) that serves a login page and records whatever reaches it, so tests
can check that no token follows a redirect.

Also here: :class:`SkippingClock`, a clock on real time whose ``sleep`` returns at once and
skips its monotonic time ahead: the HTTP client's backoff costs no real time, while a server
that never answers still uses up the check's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import socket
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

from aiohttp import web

from fakes.feeds import HTML_LOGIN_PAGE, atom, atom_entry, rss, rss_item

__all__ = [
    "CHANNEL_ID",
    "FAULTS",
    "FAULT_BY_ID",
    "FB_PAGE",
    "FUTURE",
    "IG_ACCOUNT",
    "IG_USER_ID",
    "PAST",
    "PROFILES",
    "XXE_MARKER",
    "Fault",
    "FaultServer",
    "OtherHost",
    "Profile",
    "Reply",
    "Seen",
    "SkippingClock",
    "gzip_bomb",
]

CHANNEL_ID = "UCfaultInjection000000ab"
IG_USER_ID = "17841400000000000"
IG_ACCOUNT = "dinsos.cilegon"
#: Where the YouTube Data API is served (``api_url`` = base + "/youtube/v3").
API_PATH = "/youtube/v3/"
FB_PAGE = "pemkotcilegon"
#: Far-future and far-past post dates served by the date faults.
FUTURE = datetime(2100, 1, 1, tzinfo=UTC)
PAST = datetime(1970, 1, 1, tzinfo=UTC)
#: Replaced by invalid UTF-8 bytes in the ``invalid-utf8`` fault.
MARK = "Kegiatan MARK"
#: In post links and ids: replaced by the entities of the XML bombs, so an expanded entity
#: would show in a stored post URL.
LINK_MARK = "LINKMARK"
INVALID_UTF8 = b"\xff\xfe\xc3\x28\xa0\xa1"
HUGE_BYTES = 50 * 1024 * 1024
BOMB_MIB = 256
NESTING = 100_000
HEADER_NESTING = 2_000  # fits aiohttp's 8 KiB header limit, beyond Python's recursion limit
XML_NESTING = 2_000  # beyond Python's recursion limit (1,000); feedparser slows with depth
XXE_MARKER = "PANTAU-XXE-SECRET-FILE-CONTENT"
_CHUNK = b"A" * (64 * 1024)

_STATUS_TEXT = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 410: "Gone",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


# -- the faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One way to fail. ``label`` says what the server does (it goes into the docs)."""

    id: str
    label: str
    scope: Literal["all", "data"] = "all"
    status: int | None = None
    retry_after: str | None = None


FAULTS: tuple[Fault, ...] = (
    Fault("refused", "connection refused: nothing listens on the port"),
    Fault("reset", "connection reset (RST) in the middle of the body"),
    Fault("hang", "no answer: the request is read, no header is ever sent"),
    Fault("drip", "slow drip: headers, then 1 byte per second"),
    Fault("redirect-loop", "302 redirect to itself, forever"),
    Fault("redirect-other-host", "302 to a login page on another host"),
    Fault("http-401", "HTTP 401 with an HTML error page", status=401),
    Fault("http-403", "HTTP 403 with an HTML error page", status=403),
    Fault("http-404", "HTTP 404 with an HTML error page", status=404),
    Fault("http-410", "HTTP 410 with an HTML error page", status=410),
    Fault("http-429", "HTTP 429 without Retry-After", status=429),
    Fault("http-429-seconds", "HTTP 429 with Retry-After: 120", status=429, retry_after="120"),
    Fault("http-429-date", "HTTP 429 with Retry-After as an HTTP-date 300 s ahead", status=429,
          retry_after="date+300"),
    Fault("http-500", "HTTP 500", status=500),
    Fault("http-502", "HTTP 502", status=502),
    Fault("http-503", "HTTP 503", status=503),
    Fault("http-503-retry-after", "HTTP 503 with Retry-After: 2", status=503, retry_after="2"),
    Fault("http-504", "HTTP 504", status=504),
    Fault("wrong-content-type", "a valid answer with a newer post, labelled text/html",
          scope="data"),
    Fault("empty", "HTTP 200 with an empty body"),
    Fault("truncated-json", "a JSON answer cut off at half its length"),
    Fault("truncated-xml", "an XML answer cut off at half its length (inside its first post)"),
    Fault("invalid-utf8", "a valid answer with a newer post, invalid UTF-8 bytes in a title",
          scope="data"),
    Fault("huge", "a 50 MiB body, chunked (no Content-Length)"),
    Fault("gzip-bomb", f"gzip body of about 260 KiB inflating to {BOMB_MIB} MiB"),
    Fault("billion-laughs", "XML entity-expansion bomb (10 levels of 10)"),
    Fault("xxe", "XML external entities: a local file and a URL on another host"),
    Fault("nested-json", f"JSON arrays nested {NESTING:,} levels deep (and {HEADER_NESTING:,} "
          "deep in an X-App-Usage header)"),
    Fault("nested-xml", f"XML elements nested {XML_NESTING:,} levels deep in a newer post"),
    Fault("future-dates", "the known post plus one dated 2100-01-01", scope="data"),
    Fault("past-dates", "only a post dated 1970-01-01", scope="data"),
    Fault("invalid-dates", "every post date unreadable", scope="data"),
    Fault("login-wall", "an HTML login page with status 200"),
)
FAULT_BY_ID = {fault.id: fault for fault in FAULTS}


# -- answers --------------------------------------------------------------------------------


@dataclass
class Reply:
    """A canned answer."""

    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _html_error(status: int) -> Reply:
    text = f"{status} {_STATUS_TEXT.get(status, 'Error')}"
    body = (f"<html>\r\n<head><title>{text}</title></head>\r\n<body>\r\n<center><h1>{text}"
            "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
    return Reply(body.encode(), status=status)


NOT_FOUND = _html_error(404)

DateValue = datetime | str | int


def _cut(body: bytes, at: float = 0.5) -> bytes:
    return body[: int(len(body) * at)]


def billion_laughs(document: bytes) -> bytes:
    """``document`` (XML) with an entity-expansion bomb declared and used in a title."""
    decls = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{n} "' + f"&lol{n - 1};" * 10 + '">' for n in range(1, 10)
    ]
    return _with_doctype(document, "\n".join(decls), "&lol9;")


def xxe(document: bytes, path: str, url: str) -> bytes:
    """``document`` (XML) with external entities (a local file, a URL) used in a title."""
    decls = f'<!ENTITY xxe SYSTEM "file://{path}">\n<!ENTITY xxu SYSTEM "{url}">'
    return _with_doctype(document, decls, "&xxe;&xxu;")


def _with_doctype(document: bytes, decls: str, use: str) -> bytes:
    text = document.decode()
    head, sep, rest = text.partition("?>")
    if not sep:
        head, rest = "", text
    root = rest.lstrip().split(None, 1)[0].lstrip("<").rstrip(">")
    doctype = f"\n<!DOCTYPE {root} [\n{decls}\n]>"
    return (head + sep + doctype + rest).replace(MARK, use).replace(LINK_MARK, use).encode()


@functools.cache
def gzip_bomb(mib: int = BOMB_MIB) -> bytes:
    """A valid gzip member inflating to ``mib`` MiB of zeros, about 1 KiB per MiB on the wire.

    Built from one compressed MiB ending in a full flush (byte-aligned, no back-references),
    repeated: cheap to make, and any inflater reads it.
    """
    zeros = bytes(1 << 20)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = deflate.compress(zeros) + deflate.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = b"\x03\x00" + struct.pack("<II", crc, (mib << 20) & 0xFFFFFFFF)
    return header + segment * mib + trailer


def nested_json(depth: int = NESTING) -> bytes:
    return b"[" * depth + b"]" * depth


# -- profiles: what each platform's good answers look like --------------------------------


class Profile:
    """A platform's answers. ``fmt`` is the format of its data answers."""

    name = ""
    fmt: Literal["xml", "json"] = "json"
    content_type = "application/json; charset=UTF-8"
    data_prefixes: tuple[str, ...] = ()
    invalid_date: DateValue = "not-a-date"

    def is_data(self, path: str) -> bool:
        return path.startswith(self.data_prefixes)

    def fmt_of(self, path: str) -> Literal["xml", "json"]:
        """The format of the data answer at ``path``."""
        return self.fmt

    def content_type_of(self, path: str) -> str:
        """The Content-Type of the data answer at ``path``."""
        if self.fmt_of(path) == self.fmt:
            return self.content_type
        return "application/json; charset=UTF-8" if self.fmt_of(path) == "json" else (
            "application/xml; charset=UTF-8")

    def date(self, value: DateValue) -> Any:
        """``value`` written as the platform writes dates (raw values as they are)."""
        return value.isoformat() if isinstance(value, datetime) else value

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        """The data answer at ``path`` listing posts with these dates (titles carry MARK)."""
        raise NotImplementedError

    def good(self, path: str, dates: Sequence[DateValue]) -> Reply:
        """The good answer at ``path``."""
        if self.is_data(path):
            return Reply(self.document(path, dates), content_type=self.content_type_of(path))
        return NOT_FOUND

    def xml_document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        """An XML document of these dates (its own format, else an RSS feed)."""
        if self.fmt_of(path) == "xml":
            return self.document(path, dates)
        return RssProfile().document(path, dates)

    def json_document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        """A JSON document of these dates (its own format, else a JSON list of items)."""
        if self.fmt_of(path) == "json":
            return self.document(path, dates)
        items = [{"id": str(i), "date": self.date(d), "title": MARK} for i, d in enumerate(dates)]
        return json.dumps({"items": items}).encode()


class RssProfile(Profile):
    """``rss``: an RSS 2.0 feed at ``/feed.xml``."""

    name = "rss"
    fmt = "xml"
    content_type = "application/rss+xml; charset=UTF-8"
    data_prefixes = ("/feed.xml",)
    invalid_date = "Tanggal tidak diketahui"

    def date(self, value: DateValue) -> Any:
        return format_datetime(value) if isinstance(value, datetime) else value

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        items = [
            rss_item(MARK, pub_date=str(self.date(d)), guid=f"post-{i}-{LINK_MARK}",
                     link=f"https://dinsos.example.go.id/berita/{i}/{LINK_MARK}")
            for i, d in enumerate(dates)
        ]
        return rss(items)


class YoutubeProfile(Profile):
    """``youtube``: the channel feed at ``/feeds/videos.xml``, the channel page, and the
    Data API (``/youtube/v3/channels``, ``/youtube/v3/playlistItems``)."""

    name = "youtube"
    fmt = "xml"
    content_type = "application/atom+xml; charset=UTF-8"
    data_prefixes = ("/feeds/", API_PATH)
    invalid_date = "kemarin sore"

    def fmt_of(self, path: str) -> Literal["xml", "json"]:
        return "json" if path.startswith(API_PATH) else "xml"

    def date(self, value: DateValue) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    def good(self, path: str, dates: Sequence[DateValue]) -> Reply:
        if path == f"/channel/{CHANNEL_ID}":
            page = (f'<html><head><link rel="canonical" href="https://www.youtube.com/channel/'
                    f'{CHANNEL_ID}"></head><body>Dinsos Cilegon</body></html>')
            return Reply(page.encode())
        return super().good(path, dates)

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        if path.startswith(f"{API_PATH}channels"):
            item = {"id": CHANNEL_ID, "snippet": {"title": MARK},
                    "contentDetails": {"relatedPlaylists": {"uploads": "UU" + CHANNEL_ID[2:]}}}
            return json.dumps({"pageInfo": {"totalResults": 1}, "items": [item]}).encode()
        if path.startswith(API_PATH):
            items = [
                {"snippet": {"title": MARK},
                 "contentDetails": {"videoId": f"VIDEO{i:06d}", "videoPublishedAt": self.date(d)}}
                for i, d in enumerate(dates)
            ]
            return json.dumps({"pageInfo": {"totalResults": len(items)}, "items": items}).encode()
        entries = [
            atom_entry(f"VIDEO{i:06d}", published=str(self.date(d)), title=MARK,
                       link=f"https://www.youtube.com/watch?v=VIDEO{i:06d}&x={LINK_MARK}")
            for i, d in enumerate(dates)
        ]
        return atom(entries, published="2015-03-02T04:15:33+00:00")


class WebsiteProfile(Profile):
    """``website``: WordPress, REST API at ``/wp-json/wp/v2/posts``, a plain home page."""

    name = "website"
    data_prefixes = ("/wp-json/",)
    invalid_date = "0000-00-00T00:00:00"

    def date(self, value: DateValue) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return value

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        posts = [
            {"id": 100 + i, "date_gmt": self.date(d), "sticky": False,
             "link": f"https://dinsos.example.go.id/berita/{i}/", "title": {"rendered": MARK}}
            for i, d in enumerate(dates)
        ]
        return json.dumps(posts).encode()

    def good(self, path: str, dates: Sequence[DateValue]) -> Reply:
        if path == "/":
            return Reply(b"<!DOCTYPE html><html><head><title>Dinas Sosial</title></head>"
                         b"<body><h1>Dinas Sosial</h1><p>Selamat datang.</p></body></html>")
        return super().good(path, dates)


class InstagramProfile(Profile):
    """``instagram``: Business Discovery under ``/graph/``, the web endpoint under ``/web/``."""

    name = "instagram"
    data_prefixes = ("/graph/", "/web/api/")

    def date(self, value: DateValue) -> Any:
        return value.strftime("%Y-%m-%dT%H:%M:%S+0000") if isinstance(value, datetime) else value

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        if path.startswith("/web/"):
            return self._web(dates)
        media = [
            {"id": f"1790{i}", "media_type": "IMAGE", "timestamp": self.date(d),
             "permalink": f"https://www.instagram.com/p/C{i}/", "caption": MARK}
            for i, d in enumerate(dates)
        ]
        found = {"username": IG_ACCOUNT, "id": "17841405309211844", "media_count": len(media),
                 "media": {"data": media}}
        return json.dumps({"business_discovery": found, "id": IG_USER_ID}).encode()

    def _web(self, dates: Sequence[DateValue]) -> bytes:
        edges = [
            {"node": {"__typename": "GraphImage", "id": f"30{i}", "shortcode": f"C{i}",
                      "taken_at_timestamp": int(d.timestamp()) if isinstance(d, datetime) else d,
                      "accessibility_caption": MARK, "pinned_for_users": []}}
            for i, d in enumerate(dates)
        ]
        user = {"id": "5012345678", "username": IG_ACCOUNT, "is_private": False,
                "edge_owner_to_timeline_media": {"count": len(edges), "edges": edges},
                "edge_felix_video_timeline": {"count": 0, "edges": []}}
        return json.dumps({"data": {"user": user}, "status": "ok"}).encode()


class FacebookProfile(Profile):
    """``facebook``: a page's posts under ``/graph/``."""

    name = "facebook"
    data_prefixes = ("/graph/",)

    def date(self, value: DateValue) -> Any:
        return value.strftime("%Y-%m-%dT%H:%M:%S+0000") if isinstance(value, datetime) else value

    def document(self, path: str, dates: Sequence[DateValue]) -> bytes:
        posts = [
            {"id": f"1046_{i}", "created_time": self.date(d), "message": MARK,
             "permalink_url": f"https://www.facebook.com/1046/posts/{i}"}
            for i, d in enumerate(dates)
        ]
        return json.dumps({"data": posts, "paging": {}}).encode()


PROFILES: dict[str, type[Profile]] = {
    "rss": RssProfile, "youtube": YoutubeProfile, "website": WebsiteProfile,
    "instagram": InstagramProfile, "facebook": FacebookProfile,
}


# -- the servers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request received."""

    method: str
    path_qs: str
    headers: dict[str, str]


def _free_loopback(host: str) -> str:
    """``host`` if a socket can be bound to it, else 127.0.0.1."""
    try:
        with socket.socket() as probe:
            probe.bind((host, 0))
    except OSError:
        return "127.0.0.1"
    return host


class _Server:
    """An aiohttp app on a loopback port that it can close and open again."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[Seen] = []
        self.released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._sock: socket.socket | None = None

    @property
    def base(self) -> str:
        """The server's base URL, ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Serve on a free port."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0,
                                     access_log=None)
        await self._runner.setup()
        await self.listen()

    async def listen(self) -> None:
        """Accept connections (again, on the same port)."""
        assert self._runner is not None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._site = web.SockSite(self._runner, sock)
        await self._site.start()

    async def refuse(self) -> None:
        """Stop listening: connections to the port are refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def close(self) -> None:
        """Release every held request, stop listening and shut the app down."""
        self.released.set()
        await self.refuse()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _record(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Seen(request.method, request.path_qs, dict(request.headers)))
        response = await self.handle(request)
        response.force_close()
        return response

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The answer to ``request`` (subclasses)."""
        raise NotImplementedError


class OtherHost(_Server):
    """Another host (127.0.0.2 where it can be bound): a login page at every path."""

    def __init__(self) -> None:
        super().__init__(_free_loopback("127.0.0.2"))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        return _response(Reply(HTML_LOGIN_PAGE))


def _response(reply: Reply) -> web.Response:
    headers = {"Content-Type": reply.content_type, **reply.headers}
    return web.Response(status=reply.status, body=reply.body, headers=headers)


class FaultServer(_Server):
    """One platform's endpoints: good answers from ``profile``, or ``fault`` when set.

    ``dates`` are the post dates of the good answers, ``newer`` those of the faults that
    carry a newer post (a valid answer with a wrong type, cut-off documents); ``now`` gives
    the time for Retry-After dates; ``other`` is where ``redirect-other-host`` and ``xxe`` point;
    ``secret_path`` is the local file the ``xxe`` fault's entity names.
    """

    def __init__(
        self,
        profile: Profile,
        *,
        dates: Sequence[DateValue],
        newer: Sequence[DateValue],
        now: Callable[[], datetime],
        other: OtherHost,
        secret_path: str = "/etc/hostname",
    ) -> None:
        super().__init__()
        self.profile = profile
        self.dates = list(dates)
        self.newer = list(newer)
        self.now = now
        self.other = other
        self.secret_path = secret_path
        self.fault: Fault | None = None

    async def set_fault(self, fault: Fault | None) -> None:
        """Serve ``fault`` from now on (None: good answers again); refuse or listen as needed."""
        was, self.fault = self.fault, fault
        if fault is not None and fault.id == "refused":
            await self.refuse()
        elif was is not None and was.id == "refused":
            await self.listen()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fault, path = self.fault, request.path
        if fault is None or (fault.scope == "data" and not self.profile.is_data(path)):
            return _response(self.profile.good(path, self.dates))
        if fault.status is not None:
            return _response(self._status(fault))
        special = {
            "reset": self._reset, "hang": self._hang, "drip": self._drip,
            "huge": self._huge,
        }.get(fault.id)
        if special is not None:
            return await special(request)
        return _response(self._content(fault, request))

    def _status(self, fault: Fault) -> Reply:
        assert fault.status is not None
        reply = _html_error(fault.status)
        if fault.retry_after == "date+300":
            when = self.now() + timedelta(seconds=300)
            reply.headers["Retry-After"] = format_datetime(when.astimezone(UTC), usegmt=True)
        elif fault.retry_after is not None:
            reply.headers["Retry-After"] = fault.retry_after
        return reply

    def _content(self, fault: Fault, request: web.Request) -> Reply:
        profile, path = self.profile, request.path
        newer = self.newer
        own = profile.content_type_of(path)
        if fault.id == "redirect-loop":
            return Reply(b"", status=302, headers={"Location": request.path_qs})
        if fault.id == "redirect-other-host":
            target = f"{self.other.base}/accounts/login/?next={request.path}"
            return Reply(b"", status=302, headers={"Location": target})
        if fault.id == "wrong-content-type":
            return Reply(profile.document(path, newer), content_type="text/html; charset=utf-8")
        if fault.id == "empty":
            return Reply(b"", content_type=own)
        if fault.id == "truncated-json":
            return Reply(_cut(profile.json_document(path, newer)),
                         content_type="application/json; charset=UTF-8")
        if fault.id == "truncated-xml":
            return Reply(_cut(profile.xml_document(path, newer)),
                         content_type="application/xml; charset=UTF-8")
        if fault.id == "invalid-utf8":
            body = profile.document(path, newer).replace(MARK.encode(), INVALID_UTF8)
            return Reply(body, content_type=own)
        if fault.id == "gzip-bomb":
            return Reply(gzip_bomb(), content_type=own, headers={"Content-Encoding": "gzip"})
        if fault.id == "billion-laughs":
            return Reply(billion_laughs(profile.xml_document(path, newer)),
                         content_type="application/xml")
        if fault.id == "xxe":
            body = xxe(profile.xml_document(path, newer), self.secret_path,
                       f"{self.other.base}/xxe")
            return Reply(body, content_type="application/xml")
        if fault.id == "nested-json":
            return Reply(nested_json(), content_type="application/json",
                         headers={"X-App-Usage": "[" * HEADER_NESTING})
        if fault.id == "nested-xml":
            deep = "<a>" * XML_NESTING + "x" + "</a>" * XML_NESTING
            body = profile.xml_document(path, newer).replace(MARK.encode(), deep.encode())
            return Reply(body, content_type="application/xml")
        if fault.id == "future-dates":
            return Reply(profile.document(path, [FUTURE, *self.dates]), content_type=own)
        if fault.id == "past-dates":
            return Reply(profile.document(path, [PAST]), content_type=own)
        if fault.id == "invalid-dates":
            invalid = [profile.invalid_date] * 2
            return Reply(profile.document(path, invalid), content_type=own)
        if fault.id == "login-wall":
            return Reply(HTML_LOGIN_PAGE)
        raise AssertionError(f"no content for fault {fault.id}")

    async def _reset(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": self.profile.content_type_of(request.path)})
        response.content_length = 100_000
        response.force_close()
        await response.prepare(request)
        await response.write(b"<" * 2000)
        if request.transport is not None:
            request.transport.abort()  # RST: the body stops at 2,000 of 100,000 bytes
        return response

    async def _hang(self, request: web.Request) -> web.StreamResponse:
        await self.released.wait()
        return _response(_html_error(503))

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": self.profile.content_type_of(request.path)})
        response.content_length = 3600
        response.force_close()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(3600):
                await response.write(b" ")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.released.wait(), 1.0)
                if self.released.is_set():
                    break
        return response

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": self.profile.content_type_of(request.path)})
        response.enable_chunked_encoding()
        response.force_close()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(HUGE_BYTES // len(_CHUNK)):
                await response.write(_CHUNK)
        return response


# -- the clock -----------------------------------------------------------------------------


class SkippingClock:
    """Real time that starts at ``start``; ``sleep`` returns at once and skips ahead.

    ``monotonic()`` is the process's monotonic time plus every second slept, so a deadline
    runs out in real time (a server that never answers) and in skipped time (backoff).
    ``sleeps`` records every sleep asked for; ``overshoot`` seconds are skipped on top of
    each (a loaded machine wakes late).
    """

    def __init__(self, start: datetime, overshoot: float = 0.0) -> None:
        self.overshoot = overshoot
        self._start = start
        self._t0 = time.monotonic()
        self._skipped = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return time.monotonic() + self._skipped

    def now(self) -> datetime:
        return self._start + timedelta(seconds=self.monotonic() - self._t0)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._skipped += max(0.0, seconds) + self.overshoot
        await asyncio.sleep(0)

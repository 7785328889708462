"""A loopback fake of YouTube: the channel feed, the channel web pages and the Data API v3.

One aiohttp app serves all three, so a test points ``feed_url`` at ``{base}/feeds/videos.xml``,
``web_url`` at ``{base}`` and ``api_url`` at ``{base}/youtube/v3``. The bodies have the real
shapes (PLATFORMS.md "YouTube"), traps included: feed entries out of order, ``updated`` later
than ``published``, the feed-level ``published`` (channel creation), scheduled premieres in the
future, channel pages listing other channels' ``"channelId"``, playlist items whose
``snippet.publishedAt`` (added to the playlist) differs from ``videoPublishedAt``. And the
failure shapes: Google's HTML "Error 404 (Not Found)!!1" / "Error 500" pages for feed outages,
the EU redirect to ``consent.youtube.com`` (avoided by a ``SOCS`` cookie unless
``page_mode="consent_always"``), a 200 consent page, a 404 for an unknown handle, and the Data
API's error bodies (:data:`API_ERRORS`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

__all__ = [
    "API_ERRORS",
    "Channel",
    "Seen",
    "Video",
    "YoutubeFake",
    "google_error_page",
    "make_app",
]

PUBLIC = "https://www.youtube.com"
FAKE: web.AppKey[YoutubeFake] = web.AppKey("youtube_fake")
CARRIERS = frozenset({"canonical", "rss", "external", "og", "channelId"})


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()  # "2024-10-09T02:30:00+00:00", as the feed writes


def _zulu(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # as the Data API writes


@dataclass
class Video:
    """One upload. ``added_at`` is when it entered the uploads playlist (snippet.publishedAt)."""

    video_id: str
    published: datetime
    updated: datetime | None = None
    title: str = "Kegiatan Dinas"
    short: bool = False
    added_at: datetime | None = None
    private: bool = False


@dataclass
class Channel:
    channel_id: str
    handle: str | None = None  # without '@', any case
    custom: str | None = None  # /c/<custom>
    username: str | None = None  # /user/<username>
    title: str = "Dinas Sosial Kota Cilegon"
    created: datetime = datetime(2015, 3, 2, 4, 15, 33, tzinfo=UTC)
    videos: list[Video] = field(default_factory=list)
    featured: list[str] = field(default_factory=list)  # other channels' ids shown on the page

    @property
    def uploads(self) -> str:
        return "UU" + self.channel_id[2:]


@dataclass
class Seen:
    """One request the fake received."""

    kind: Literal["feed", "page", "api"]
    path: str
    query: dict[str, str]
    headers: dict[str, str]


def _api_error(
    status: int, reason: str, message: str, domain: str = "global", *, modern: str | None = None,
    grpc_status: str | None = None,
) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {
        "code": status,
        "message": message,
        "errors": [{"message": message, "domain": domain, "reason": reason}],
    }
    if grpc_status:
        body["status"] = grpc_status
    if modern:
        body["details"] = [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": modern,
            "domain": "googleapis.com",
            "metadata": {"service": "youtube.googleapis.com"},
        }]
    return status, {"error": body}


_QUOTA_MSG = (
    'The request cannot be completed because you have exceeded your '
    '<a href="/youtube/v3/getting-started#quota">quota</a>.'
)
#: The Data API's error answers, by name: (HTTP status, JSON body).
API_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "quotaExceeded": _api_error(403, "quotaExceeded", _QUOTA_MSG, "youtube.quota"),
    "rateLimitExceeded": _api_error(
        403, "rateLimitExceeded", "The request cannot be completed because you have exceeded "
        "your rate limit.", "usageLimits"),
    "dailyLimitExceeded": _api_error(
        403, "dailyLimitExceeded", "Daily Limit Exceeded. The quota will be reset at midnight "
        "Pacific Time (PT).", "usageLimits"),
    "RATE_LIMIT_EXCEEDED": _api_error(
        429, "rateLimitExceeded", "Quota exceeded for quota metric 'Queries' and limit "
        "'Queries per minute' of service 'youtube.googleapis.com'.", "global",
        modern="RATE_LIMIT_EXCEEDED", grpc_status="RESOURCE_EXHAUSTED"),
    "keyInvalid": _api_error(400, "keyInvalid", "Bad Request", "usageLimits"),
    "API_KEY_INVALID": _api_error(
        400, "badRequest", "API key not valid. Please pass a valid API key.", "global",
        modern="API_KEY_INVALID", grpc_status="INVALID_ARGUMENT"),
    "accessNotConfigured": _api_error(
        403, "accessNotConfigured", "YouTube Data API v3 has not been used in project "
        "123456789 before or it is disabled.", "usageLimits",
        modern="SERVICE_DISABLED", grpc_status="PERMISSION_DENIED"),
    "backendError": _api_error(500, "backendError", "Backend Error", "global"),
}


def google_error_page(status: int, path: str) -> bytes:
    """Google's bare HTML error page ("Error 404 (Not Found)!!1"), as the feed serves it."""
    title, text = {
        404: ("Error 404 (Not Found)!!1",
              f"The requested URL <code>{escape(path)}</code> was not found on this server."),
        500: ("Error 500 (Server Error)!!1",
              "There was an error. Please try again later."),
    }.get(status, (f"Error {status}!!1", "Something went wrong."))
    return (
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
        '  <meta name=viewport content="initial-scale=1, minimum-scale=1, width=device-width">\n'
        f"  <title>{title}</title>\n  <style>*{{margin:0;padding:0}}html,code{{font:15px/22px "
        "arial,sans-serif}}</style>\n  <a href=//www.google.com/><span id=logo "
        "aria-label=Google></span></a>\n"
        f"  <p><b>{status}.</b> <ins>That\u2019s an error.</ins>\n  <p>{text}  "
        "<ins>That\u2019s all we know.</ins>\n"
    ).encode()


YOUTUBE_404_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><title>404 Not Found</title></head><body>'
    b'<div id="error-page"><p>This page isn\'t available. Sorry about that.</p>'
    b"<p>Try searching for something else.</p></div></body></html>"
)

CONSENT_PAGE = (
    b'<!DOCTYPE html><html lang="en"><head><title>Before you continue to YouTube</title></head>'
    b'<body><div><h1>Before you continue to YouTube</h1><p>We use cookies and data to deliver '
    b'and maintain Google services</p><form action="https://consent.youtube.com/save" '
    b'method="POST"><input type="hidden" name="gl" value="DE"><input type="hidden" name="set_'
    b'ytc" value="true"><button>Reject all</button><button>Accept all</button></form></div>'
    b"</body></html>"
)


@dataclass
class YoutubeFake:
    """What the fake serves; tests change these fields between checks."""

    channels: list[Channel] = field(default_factory=list)
    api_key: str = "AIzaSyFAKE-test-key-0123456789abcdefgh"
    #: None: normal; 404 / 500: every feed request answers Google's error page (an outage)
    feed_outage: int | None = None
    #: None: normal; "eu": consent redirect without a SOCS cookie; "consent_always": redirect
    #: even with it; "consent_page": a 200 consent page; "outage": 500
    page_mode: str | None = None
    #: which id carriers the channel pages include
    page_carriers: frozenset[str] = CARRIERS
    #: None or a key of API_ERRORS: every Data API request answers that
    api_error: str | None = None
    #: put the request's key into API error messages (a hostile server)
    echo_key: bool = False
    retry_after: str | None = None
    requests: list[Seen] = field(default_factory=list)
    feed_bodies_sent: int = 0
    feed_not_modified_sent: int = 0
    api_calls: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str) -> int:
        """Requests received of one kind (feed, page, api)."""
        return sum(1 for r in self.requests if r.kind == kind)

    def channel(self, *, channel_id: str | None = None, handle: str | None = None,
                custom: str | None = None, username: str | None = None,
                playlist: str | None = None) -> Channel | None:
        for c in self.channels:
            if channel_id is not None and c.channel_id == channel_id:
                return c
            if handle is not None and c.handle and c.handle.lower() == handle.lower():
                return c
            if custom is not None and c.custom == custom:
                return c
            if username is not None and c.username and c.username.lower() == username.lower():
                return c
            if playlist is not None and playlist.startswith("UU") and (
                    playlist[-22:] == c.channel_id[2:]):
                return c
        return None


# -- feed --------------------------------------------------------------------------------------
def feed_xml(channel: Channel, videos: list[Video], self_query: str) -> bytes:
    """A channel feed exactly as YouTube writes it (at most 15 entries, the given order)."""
    cid = channel.channel_id
    entries = []
    for v in videos[:15]:
        link = f"{PUBLIC}/shorts/{v.video_id}" if v.short else f"{PUBLIC}/watch?v={v.video_id}"
        updated = v.updated or v.published
        entries.append(
            f" <entry>\n  <id>yt:video:{v.video_id}</id>\n  <yt:videoId>{v.video_id}</yt:videoId>\n"
            f"  <yt:channelId>{cid}</yt:channelId>\n  <title>{escape(v.title)}</title>\n"
            f'  <link rel="alternate" href="{link}"/>\n'
            f"  <author>\n   <name>{escape(channel.title)}</name>\n"
            f"   <uri>{PUBLIC}/channel/{cid}</uri>\n  </author>\n"
            f"  <published>{_iso(v.published)}</published>\n  <updated>{_iso(updated)}</updated>\n"
            f"  <media:group>\n   <media:title>{escape(v.title)}</media:title>\n"
            f'   <media:content url="https://www.youtube.com/v/{v.video_id}?version=3" '
            'type="application/x-shockwave-flash" width="640" height="390"/>\n'
            f'   <media:thumbnail url="https://i1.ytimg.com/vi/{v.video_id}/hqdefault.jpg" '
            'width="480" height="360"/>\n   <media:description></media:description>\n'
            '   <media:community>\n    <media:starRating count="12" average="5.00" min="1" '
            'max="5"/>\n    <media:statistics views="345"/>\n   </media:community>\n'
            "  </media:group>\n </entry>\n"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" '
        'xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">\n'
        f' <link rel="self" href="http://www.youtube.com/feeds/videos.xml?{self_query}"/>\n'
        f" <id>yt:channel:{cid[2:]}</id>\n <yt:channelId>{cid}</yt:channelId>\n"
        f" <title>{escape(channel.title)}</title>\n"
        f' <link rel="alternate" href="{PUBLIC}/channel/{cid}"/>\n'
        f" <author>\n  <name>{escape(channel.title)}</name>\n"
        f"  <uri>{PUBLIC}/channel/{cid}</uri>\n </author>\n"
        f" <published>{_iso(channel.created)}</published>\n"
        + "".join(entries)
        + "</feed>\n"
    ).encode()


async def _feed(request: web.Request) -> web.StreamResponse:
    fake: YoutubeFake = request.app[FAKE]
    fake.requests.append(Seen("feed", request.path, dict(request.query), dict(request.headers)))
    if fake.feed_outage is not None:
        return web.Response(status=fake.feed_outage, body=google_error_page(
            fake.feed_outage, request.path_qs), content_type="text/html", charset="UTF-8")
    channel_id, playlist = request.query.get("channel_id"), request.query.get("playlist_id")
    channel = (fake.channel(channel_id=channel_id) if channel_id
               else fake.channel(playlist=playlist) if playlist else None)
    if channel is None:
        return web.Response(status=404, body=google_error_page(404, request.path_qs),
                            content_type="text/html", charset="UTF-8")
    videos = [v for v in channel.videos if not v.private]
    if playlist and playlist.startswith("UULF"):
        videos = [v for v in videos if not v.short]
    elif playlist and playlist.startswith("UUSH"):
        videos = [v for v in videos if v.short]
    body = feed_xml(channel, videos, request.query_string)
    etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
    if request.headers.get("If-None-Match") == etag:
        fake.feed_not_modified_sent += 1
        return web.Response(status=304, headers={"ETag": etag})
    fake.feed_bodies_sent += 1
    return web.Response(body=body, headers={"ETag": etag},
                        content_type="text/xml", charset="UTF-8")


# -- channel pages -----------------------------------------------------------------------------
def channel_page(channel: Channel, carriers: frozenset[str] = CARRIERS) -> bytes:
    """A channel page in YouTube's shape, with only the chosen id ``carriers``."""
    cid = channel.channel_id
    head = [f"<title>{escape(channel.title)} - YouTube</title>"]
    if "canonical" in carriers:
        head.append(f'<link rel="canonical" href="{PUBLIC}/channel/{cid}">')
    if "rss" in carriers:
        head.append(f'<link rel="alternate" type="application/rss+xml" title="RSS" '
                    f'href="{PUBLIC}/feeds/videos.xml?channel_id={cid}">')
    head.append(f'<meta property="og:title" content={quoteattr(channel.title)}>')
    if "og" in carriers:
        head.append(f'<meta property="og:url" content="{PUBLIC}/channel/{cid}">')
    # Other channels come first in the page JSON (featured channels, recommendations).
    contents = [{"gridChannelRenderer": {"channelId": other, "title": {"simpleText": "Lain"}}}
                for other in channel.featured]
    metadata: dict[str, Any] = {"title": channel.title, "channelUrl": f"{PUBLIC}/channel/{cid}",
                                "rssUrl": f"{PUBLIC}/feeds/videos.xml?channel_id={cid}"}
    if "external" in carriers:
        metadata["externalId"] = cid
    if channel.handle:
        metadata["vanityChannelUrl"] = f"http://www.youtube.com/@{channel.handle}"
    data: dict[str, Any] = {
        "responseContext": {"serviceTrackingParams": [{"service": "GFEEDBACK"}]},
        "contents": {"twoColumnBrowseResultsRenderer": {"tabs": contents}},
        "metadata": {"channelMetadataRenderer": metadata},
    }
    if "channelId" in carriers:
        data["header"] = {"pageHeaderRenderer": {"channelId": cid}}
    return (
        '<!DOCTYPE html><html style="font-size: 10px;font-family: Roboto, Arial, sans-serif;" '
        'lang="en" darker-dark-theme system-icons typography><head>'
        '<script nonce="n0nce">var ytcfg={"INNERTUBE_API_KEY":"AIzaSyAO_public_web_key"};</script>'
        + "".join(head)
        + '</head><body><div id="content"></div><script nonce="n0nce">var ytInitialData = '
        + json.dumps(data, separators=(",", ":"))
        + ";</script></body></html>"
    ).encode()


async def _page(request: web.Request) -> web.StreamResponse:
    fake: YoutubeFake = request.app[FAKE]
    fake.requests.append(Seen("page", request.path, dict(request.query), dict(request.headers)))
    cookie = request.headers.get("Cookie", "")
    if fake.page_mode == "consent_always" or (fake.page_mode == "eu" and "SOCS=" not in cookie):
        raise web.HTTPFound(
            "https://consent.youtube.com/m?continue=https%3A%2F%2Fwww.youtube.com"
            "%2F%40x%3Fcbrd%3D1&gl=DE&m=0&pc=yt&cm=2&hl=en&src=1")
    if fake.page_mode == "consent_page":
        return web.Response(body=CONSENT_PAGE, content_type="text/html", charset="utf-8")
    if fake.page_mode == "outage":
        return web.Response(status=500, body=google_error_page(500, request.path),
                            content_type="text/html", charset="UTF-8")
    kind, _, name = request.match_info["rest"].partition("/")
    channel = None
    if kind.startswith("@") and not name:
        channel = fake.channel(handle=kind[1:])
    elif kind == "channel":
        channel = fake.channel(channel_id=name)
    elif kind == "c":
        channel = fake.channel(custom=name)
    elif kind == "user":
        channel = fake.channel(username=name)
    if channel is None:
        return web.Response(status=404, body=YOUTUBE_404_PAGE, content_type="text/html",
                            charset="utf-8")
    return web.Response(body=channel_page(channel, fake.page_carriers),
                        content_type="text/html", charset="utf-8")


# -- Data API v3 -------------------------------------------------------------------------------
def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, indent=2),
                        content_type="application/json", charset="UTF-8")


async def _api(request: web.Request) -> web.StreamResponse:
    fake: YoutubeFake = request.app[FAKE]
    endpoint = request.match_info["endpoint"]
    fake.requests.append(Seen("api", request.path, dict(request.query), dict(request.headers)))
    fake.api_calls[endpoint] += 1
    key = request.query.get("key", "")
    error = fake.api_error
    if error is None and key != fake.api_key:
        error = "keyInvalid"
    if error is not None:
        status, body = API_ERRORS[error]
        if fake.echo_key:
            body = json.loads(json.dumps(body))
            body["error"]["message"] += f" (key {key})"
            body["error"]["errors"][0]["reason"] += f" {key}"
        headers = {"Retry-After": fake.retry_after} if fake.retry_after else {}
        response = _json(status, body)
        response.headers.update(headers)
        return response
    parts = set(request.query.get("part", "").split(","))
    if endpoint == "channels":
        return _json(200, _channels(fake, request.query, parts))
    if endpoint == "playlistItems":
        return _playlist_items(fake, request.query, parts)
    return _json(404, {"error": {"code": 404, "message": "Not Found", "errors": [
        {"message": "Not Found", "domain": "global", "reason": "notFound"}]}})


def _channels(fake: YoutubeFake, query: Any, parts: set[str]) -> dict[str, Any]:
    if "forHandle" in query:
        channel = fake.channel(handle=query["forHandle"].removeprefix("@"))
    elif "forUsername" in query:
        channel = fake.channel(username=query["forUsername"])
    else:
        channel = fake.channel(channel_id=query.get("id", ""))
    out: dict[str, Any] = {"kind": "youtube#channelListResponse", "etag": "e-channels"}
    if channel is None:
        out["pageInfo"] = {"totalResults": 0, "resultsPerPage": 5}
        return out
    item: dict[str, Any] = {"kind": "youtube#channel", "etag": "e1", "id": channel.channel_id}
    if "contentDetails" in parts:
        item["contentDetails"] = {"relatedPlaylists": {"likes": "", "uploads": channel.uploads}}
    out["pageInfo"] = {"totalResults": 1, "resultsPerPage": 5}
    out["items"] = [item]
    return out


def _playlist_items(fake: YoutubeFake, query: Any, parts: set[str]) -> web.Response:
    playlist = query.get("playlistId", "")
    channel = next((c for c in fake.channels if c.uploads == playlist), None)
    if channel is None:
        status, body = _api_error(
            404, "playlistNotFound", "The playlist identified with the request's "
            "<code>playlistId</code> parameter cannot be found.", "youtube.playlistItem")
        return _json(status, body)
    limit = min(50, int(query.get("maxResults", "5")))
    # Uploads playlists are ordered by upload (added_at), newest first, not by publish time.
    ordered = sorted(channel.videos, key=lambda v: v.added_at or v.published, reverse=True)
    items = []
    for n, v in enumerate(ordered[:limit]):
        item: dict[str, Any] = {"kind": "youtube#playlistItem", "etag": f"e{n}",
                                "id": f"VVV{v.video_id}"}
        if "contentDetails" in parts:
            details: dict[str, Any] = {"videoId": v.video_id}
            if not v.private:
                details["videoPublishedAt"] = _zulu(v.published)
            item["contentDetails"] = details
        if "snippet" in parts:
            item["snippet"] = {"publishedAt": _zulu(v.added_at or v.published),
                               "channelId": channel.channel_id, "title": v.title,
                               "resourceId": {"kind": "youtube#video", "videoId": v.video_id}}
        items.append(item)
    body: dict[str, Any] = {"kind": "youtube#playlistItemListResponse", "etag": "e-items",
                            "items": items,
                            "pageInfo": {"totalResults": len(ordered), "resultsPerPage": limit}}
    if len(ordered) > limit:
        body["nextPageToken"] = "EAAaBlBUOkNESQ"
    return _json(200, body)


def make_app(fake: YoutubeFake) -> web.Application:
    """The fake YouTube: ``/feeds/videos.xml``, ``/youtube/v3/{endpoint}``, channel pages."""
    app = web.Application()
    app[FAKE] = fake
    app.router.add_get("/feeds/videos.xml", _feed)
    app.router.add_get("/youtube/v3/{endpoint}", _api)
    app.router.add_get("/{rest:.+}", _page)
    return app

"""Loopback fakes of the Meta Graph API and of instagram.com's ``web_profile_info`` endpoint.

One aiohttp app (:func:`make_app`) serves both, from a :class:`MetaFake` the test fills:

- ``GET /v25.0/{ig_user_id}?fields=business_discovery.username(NAME){...}`` answers
  ``fake.instagram[NAME]`` (default: the personal-account error 110/2207013);
- ``GET /v25.0/{page}/{edge}`` answers ``fake.pages[page]`` (default: 803 alias error);
- ``GET /api/v1/users/web_profile_info/?username=NAME`` answers ``fake.web[NAME]``
  (default: ``{"data": {"user": null}}``), and ``/accounts/login/`` a login page.

Like Meta, the Graph side checks ``Authorization: Bearer`` (190 otherwise) and, when
``fake.app_secret`` is set, ``appsecret_proof`` (a code-100 error otherwise), and adds the
usage headers of ``fake.usage`` to every answer. The web side refuses requests without the
web app id or a browser User-Agent, as instagram.com does. Each builder below returns a
:class:`Reply` with a shape from PLATFORMS.md (success and failure).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from fakes.clock import FakeClock
from monitor.http import HttpClient
from monitor.model import Account, Observation
from monitor.platform import CheckContext, Platform, PlatformSettings
from monitor.secrets import Secret
from plugins.facebook import FacebookSettings
from plugins.instagram import InstagramSettings
from plugins.meta import MetaHub

VERSION = "v25.0"
#: Looks like a real user token: the scrubber must catch it even when echoed.
TOKEN = "EAAGm0PX4ZCpsBAFakeTokenForPantauTests0123456789abcdefZZ"
APP_SECRET = "9f0c1e2d3b4a59687766554433221100"
IG_USER_ID = "17841400000000000"
IG_APP_ID = "936619743392459"

USAGE_LOW = {"X-App-Usage": json.dumps({"call_count": 3, "total_time": 2, "total_cputime": 1})}


@dataclass
class Reply:
    """One canned answer: a JSON value (dict/list) or raw text, status and headers."""

    body: Any = None
    status: int = 200
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """A request as the fake received it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class MetaFake:
    token: str = TOKEN
    app_secret: str | None = None
    ig_user_id: str = IG_USER_ID
    instagram: dict[str, Reply] = field(default_factory=dict)
    pages: dict[str, Reply] = field(default_factory=dict)
    web: dict[str, Reply] = field(default_factory=dict)
    usage: dict[str, str] = field(default_factory=lambda: dict(USAGE_LOW))
    requests: list[Seen] = field(default_factory=list)

    @property
    def graph_calls(self) -> int:
        return sum(1 for r in self.requests if r.path.startswith(f"/{VERSION}/"))

    @property
    def web_calls(self) -> int:
        return sum(1 for r in self.requests if r.path.startswith("/api/v1/"))


# -- Graph API shapes ----------------------------------------------------------------------


def graph_error(code: int, message: str, *, status: int = 400, subcode: int | None = None,
                kind: str = "OAuthException", is_transient: bool = False,
                headers: dict[str, str] | None = None, **extra: Any) -> Reply:
    """``{"error": {...}}`` as the Graph API sends it."""
    error: dict[str, Any] = {"message": message, "type": kind, "code": code,
                             "is_transient": is_transient, "fbtrace_id": "AbCdEfGhIjK", **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    return Reply({"error": error}, status=status, headers=dict(headers or {}))


def ig_media(timestamp: str, media_id: str, media_type: str = "IMAGE") -> dict[str, Any]:
    return {"id": media_id, "media_type": media_type, "timestamp": timestamp,
            "permalink": f"https://www.instagram.com/p/{media_id}/"}


def business_discovery(username: str, media: list[dict[str, Any]],
                       media_count: int | None = None) -> Reply:
    """A Business Discovery answer (12 newest media, pinned ones first)."""
    found: dict[str, Any] = {"username": username, "id": "17841405309211844",
                             "media_count": len(media) if media_count is None else media_count}
    if media or media_count:
        found["media"] = {"data": media, "paging": {"cursors": {"after": "QVFIUmx1"}}}
    return Reply({"business_discovery": found, "id": IG_USER_ID})


def ig_not_found(username: str) -> Reply:
    """A personal or missing account: 110 / 2207013."""
    return graph_error(110, "Invalid user id", subcode=2207013,
                       error_user_title="Cannot find User",
                       error_user_msg=f"The user with username: {username} cannot be found.")


def fb_post(created_time: str, post_id: str) -> dict[str, Any]:
    return {"id": post_id, "created_time": created_time,
            "permalink_url": f"https://www.facebook.com/{post_id.replace('_', '/posts/')}"}


def fb_posts(posts: list[dict[str, Any]]) -> Reply:
    return Reply({"data": posts, "paging": {"previous": "https://graph.facebook.com/prev",
                                           "next": "https://graph.facebook.com/next"}})


def alias_missing(name: str) -> Reply:
    return graph_error(803, f"(#803) Some of the aliases you requested do not exist: {name}",
                       status=404)


TOKEN_EXPIRED = graph_error(
    190, "Error validating access token: Session has expired on Friday, 31-Jan-27 "
    "00:00:00 PST. The current time is Saturday, 01-Feb-27 01:00:00 PST.", subcode=463)
TOKEN_INVALID = graph_error(190, "Invalid OAuth access token - Cannot parse access token")
TOKEN_ECHOED = graph_error(190, f"Malformed access token {TOKEN}")
PERMISSION_10 = graph_error(10, "(#10) Application does not have permission for this action",
                            status=403)
PERMISSION_200 = graph_error(200, "(#200) Requires pages_read_engagement permission to manage "
                             "the object", status=403)
FEATURE_100 = graph_error(
    100, "(#100) Object does not exist, cannot be loaded due to missing permission or "
    "reviewable feature, or does not support this operation. This endpoint requires the "
    "'pages_read_engagement' permission or the 'Page Public Content Access' feature.",
    kind="GraphMethodException")
OBJECT_MISSING_100 = graph_error(100, "(#100) The requested object does not exist",
                                 kind="GraphMethodException")
NONEXISTING_FIELD = graph_error(100, "(#100) Tried accessing nonexisting field "
                                "(business_discovery) on node type (Page)")
BAD_PROOF = graph_error(100, "Invalid appsecret_proof provided in the API argument",
                        kind="GraphMethodException")
TRANSIENT_400 = graph_error(1, "An unknown error occurred", is_transient=True)
SERVER_ERROR = graph_error(2, "An unexpected error has occurred. Please retry your request "
                           "later.", status=500, is_transient=True)
HTML_200 = Reply("<!DOCTYPE html><html><body>Sorry, something went wrong.</body></html>",
                 content_type="text/html")


def buc_usage(percent: int, regain_minutes: int = 0, kind: str = "instagram") -> dict[str, str]:
    """An ``X-Business-Use-Case-Usage`` header at ``percent``."""
    entry = {"type": kind, "call_count": percent, "total_cputime": 5, "total_time": 7,
             "estimated_time_to_regain_access": regain_minutes}
    return {"X-Business-Use-Case-Usage": json.dumps({IG_USER_ID: [entry]})}


def throttled(code: int, regain_minutes: int = 0) -> Reply:
    """A throttling error (4, 17, 32 or 613), with the BUC header saying when access returns."""
    messages = {4: "(#4) Application request limit reached", 17: "(#17) User request limit "
                "reached", 32: "(#32) Page request limit reached", 613: "(#613) Calls to this "
                "api have exceeded the rate limit."}
    return graph_error(code, messages.get(code, f"(#{code}) throttled"), status=403 if code == 4
                       else 400, headers=buc_usage(100, regain_minutes))


# -- instagram.com web shapes --------------------------------------------------------------


def web_node(taken_at: int, shortcode: str, *, pinned: bool = False,
             typename: str = "GraphImage") -> dict[str, Any]:
    return {"node": {"__typename": typename, "id": f"3{taken_at}", "shortcode": shortcode,
                     "taken_at_timestamp": taken_at, "is_video": typename == "GraphVideo",
                     "pinned_for_users": [{"id": "1", "username": "x"}] if pinned else [],
                     "edge_liked_by": {"count": 12}}}


def web_profile(username: str, timeline: list[dict[str, Any]],
                felix: list[dict[str, Any]] | None = None, *, is_private: bool = False,
                count: int | None = None) -> Reply:
    """A ``web_profile_info`` answer (pinned posts first, no reliable flag)."""
    user = {
        "id": "5012345678", "username": username, "full_name": username.upper(),
        "is_business_account": False, "is_private": is_private,
        "edge_owner_to_timeline_media": {
            "count": len(timeline) if count is None else count,
            "page_info": {"has_next_page": True, "end_cursor": "QVFE"},
            "edges": timeline,
        },
        "edge_felix_video_timeline": {"count": len(felix or []), "edges": felix or []},
    }
    return Reply({"data": {"user": user}, "status": "ok"})


WEB_REQUIRE_LOGIN = Reply({"message": "Please wait a few minutes and then try again.",
                           "require_login": True, "status": "fail"}, status=401)
WEB_RATE_LIMITED = Reply("Too Many Requests", status=429, content_type="text/plain",
                         headers={"Retry-After": "600"})
WEB_LOGIN_REDIRECT = Reply("", status=302, content_type="text/html",
                           headers={"Location": "/accounts/login/?next=%2Fapi%2Fv1%2Fusers%2F"})
WEB_LOGIN_HTML = Reply("<!DOCTYPE html><html lang=\"en\"><head><title>Login • Instagram"
                       "</title></head><body><form id=\"loginForm\"></form></body></html>",
                       content_type="text/html; charset=utf-8")
WEB_USER_NULL = Reply({"data": {"user": None}, "status": "ok"})
WEB_UA_MISMATCH = Reply({"message": "useragent mismatch", "status": "fail"}, status=400)


# -- the app -------------------------------------------------------------------------------


def _respond(reply: Reply, extra: dict[str, str] | None = None) -> web.Response:
    headers = {**(extra or {}), **reply.headers}
    if isinstance(reply.body, dict | list) or reply.body is None:
        text = json.dumps(reply.body if reply.body is not None else {})
        content_type = reply.content_type or "application/json"
    else:
        text, content_type = str(reply.body), reply.content_type or "text/plain"
    return web.Response(status=reply.status, text=text, headers=headers,
                        content_type=content_type.split(";")[0])


def _record(fake: MetaFake, request: web.Request) -> None:
    fake.requests.append(Seen(request.path, dict(request.query), dict(request.headers)))


def make_app(fake: MetaFake) -> web.Application:
    """The aiohttp app serving ``fake`` (Graph API under ``/v25.0``, instagram.com at ``/``)."""

    async def graph(request: web.Request) -> web.Response:
        _record(fake, request)
        usage = dict(fake.usage)
        if request.headers.get("Authorization") != f"Bearer {fake.token}":
            return _respond(TOKEN_INVALID, usage)
        if fake.app_secret is not None:
            proof = hmac.new(fake.app_secret.encode(), fake.token.encode(),
                             hashlib.sha256).hexdigest()
            if request.query.get("appsecret_proof") != proof:
                return _respond(BAD_PROOF, usage)
        node, edge = request.match_info["node"], request.match_info.get("edge")
        if edge is None:
            if node != fake.ig_user_id:
                return _respond(NONEXISTING_FIELD, usage)
            match = re.match(r"business_discovery\.username\(([^)]*)\)",
                             request.query.get("fields", ""))
            if match is None:
                return _respond(graph_error(100, "(#100) Missing fields"), usage)
            name = match.group(1)
            return _respond(fake.instagram.get(name) or ig_not_found(name), usage)
        if edge not in ("posts", "published_posts", "feed"):
            return _respond(graph_error(100, f"(#100) Unknown path components: /{edge}"), usage)
        return _respond(fake.pages.get(node.lower()) or alias_missing(node), usage)

    async def profile(request: web.Request) -> web.Response:
        _record(fake, request)
        if (request.headers.get("X-IG-App-ID") != IG_APP_ID
                or "Mozilla/5.0" not in request.headers.get("User-Agent", "")):
            return _respond(WEB_UA_MISMATCH)
        return _respond(fake.web.get(request.query.get("username", "")) or WEB_USER_NULL)

    async def login(request: web.Request) -> web.Response:
        _record(fake, request)
        return _respond(WEB_LOGIN_HTML)

    app = web.Application()
    app.router.add_get(f"/{VERSION}/{{node}}", graph)
    app.router.add_get(f"/{VERSION}/{{node}}/{{edge}}", graph)
    app.router.add_get("/api/v1/users/web_profile_info/", profile)
    app.router.add_get("/accounts/login/", login)
    return app


# -- running checks against the fake -------------------------------------------------------


class Memo:
    """A dict-backed AccountMemo (persisting across checks, like the store)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value


class NoValidators:
    def get_validators(self, url: str) -> None:
        return None


def secret(value: str = TOKEN, source: str = "env PANTAU_META_TOKEN") -> Secret:
    return Secret(value, source)


@dataclass
class MetaEnv:
    """A started HttpClient on a fake clock, a private MetaHub and the fake server."""

    fake: MetaFake
    base: str
    clock: Any
    hub: MetaHub
    client: HttpClient
    memos: dict[str, Memo] = field(default_factory=dict)

    @property
    def graph_url(self) -> str:
        return f"{self.base}/{VERSION}"

    def instagram(self, **settings: Any) -> InstagramSettings:
        """Instagram settings pointed at the fake (graph configured unless overridden)."""
        values: dict[str, Any] = {"graph_url": self.graph_url, "web_url": self.base,
                                  "access_token": secret(), "ig_user_id": IG_USER_ID}
        values.update(settings)
        return InstagramSettings(**values)

    def facebook(self, **settings: Any) -> FacebookSettings:
        values: dict[str, Any] = {"graph_url": self.graph_url, "access_token": secret()}
        values.update(settings)
        return FacebookSettings(**values)

    async def check(self, platform: Platform, account: str,
                    settings: PlatformSettings) -> Observation:
        """One check of ``account`` (normalised first), as the core runs it."""
        name = platform.normalize(account)
        memo = self.memos.setdefault(f"{platform.name}/{name}", Memo())
        ctx = CheckContext(
            http=self.client.bind(platform.name, timeout=5),
            settings=settings,
            log=structlog.get_logger().bind(platform=platform.name, account=name),
            clock=self.clock,
            memo=memo,
            account=Account(agency="dinsos", platform=platform.name, account=name,
                            url=platform.url(name), interval=7200.0, timeout=5.0,
                            silence_after=7 * 86400.0),
        )
        return await platform.latest(name, ctx)


@contextlib.asynccontextmanager
async def meta_env(aiohttp_server: Any, now: datetime) -> AsyncIterator[MetaEnv]:
    """A :class:`MetaEnv` around a fresh fake on loopback."""
    fake = MetaFake()
    server = await aiohttp_server(make_app(fake))
    clock = FakeClock(now)
    async with HttpClient(user_agent="pantau-test", validators=NoValidators(), clock=clock,
                          rng=random.Random(7)) as client:
        yield MetaEnv(fake=fake, base=str(server.make_url("/")).rstrip("/"), clock=clock,
                      hub=MetaHub(), client=client)

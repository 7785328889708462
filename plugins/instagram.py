"""The ``instagram`` platform: Graph API Business Discovery, with the public web endpoint.

Two methods:

- ``graph-api`` (with ``access_token`` and ``ig_user_id``, the operator's own professional
  account): ``GET {graph_url}/{ig_user_id}?fields=business_discovery.username(NAME){...}``
  through :func:`plugins.meta.graph_get` (budget, usage headers, error mapping). It sees only
  Business and Creator accounts.
- ``web`` (no token, or ``method: web``): ``GET {web_url}/api/v1/users/web_profile_info/``
  with instagram.com's web app id and a browser User-Agent. Best effort: it is often answered
  with a login wall from server addresses, and Instagram may retire it.

``method: auto`` (the default) uses the Graph API when it is configured. When Business
Discovery cannot see an account (a personal account, or none at all) it falls back to the web
endpoint for that account, and remembers the miss (``ctx.memo``) so that for the next day the
account goes straight to the web endpoint without spending Graph API budget. A failure of the
fallback is reported as ``not_found`` (with both explanations), never as ``rate_limited`` or
``blocked``: those would pause every Instagram check, the Graph API ones included.

Newest post: the maximum time over everything returned (pinned posts come first and carry no
reliable flag): the 12 newest media (Graph API), or every edge of both timelines (web).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from monitor import hookimpl
from monitor.http import Response
from monitor.model import (
    Account,
    AuthError,
    Blocked,
    CheckError,
    NotFound,
    Observation,
    ParseError,
    Post,
)
from monitor.platform import CheckContext, Platform, PlatformSettings
from plugins.meta import MetaPlatform, MetaSettings, graph_get, graph_posts, http_url

__all__ = ["InstagramPlatform", "InstagramSettings", "register_platforms"]

WEB_URL = "https://www.instagram.com"
#: The id instagram.com's own web app sends; the endpoint refuses requests without it.
IG_APP_ID = "936619743392459"
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
#: After Business Discovery missed an account, the web endpoint alone is used this long.
GRAPH_RECHECK = timedelta(days=1)
MEDIA_FIELDS = "{username,media_count,media.limit(12){id,timestamp,permalink,media_type}}"

_NAME = re.compile(r"[a-z0-9._]{1,30}")
_HOSTS = {"instagram.com", "www.instagram.com", "m.instagram.com", "instagr.am"}
_NOT_PROFILES = {"p", "reel", "reels", "tv", "explore", "stories", "accounts", "direct"}
_MISS = "graph_miss_at"


class InstagramSettings(MetaSettings):
    """``platforms.instagram`` in the config."""

    web_url: str = Field(default=WEB_URL, description="instagram.com, for the web endpoint")
    ig_user_id: str | None = Field(
        default=None, description="the operator's own Instagram professional account id"
    )
    method: Literal["auto", "graph", "web"] = Field(
        default="auto", description="auto: Graph API when configured, else the web endpoint"
    )

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("ig_user_id", mode="before")
    @classmethod
    def _ig_user_id(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(
                "ig_user_id is the numeric id of your own Instagram professional account "
                "(GET /me/accounts?fields=instagram_business_account)"
            )
        return value.strip() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _graph_needs_both(self) -> InstagramSettings:
        if (self.access_token is None) != (self.ig_user_id is None):
            raise ValueError(
                "Business Discovery needs both access_token and ig_user_id (the id of your own "
                "professional account); set both, or neither to use the web endpoint"
            )
        if self.method == "graph" and self.access_token is None:
            raise ValueError("method graph needs access_token and ig_user_id")
        return self

    @property
    def uses_graph(self) -> bool:
        """Whether checks go to the Graph API first."""
        return self.method != "web" and self.access_token is not None


class InstagramPlatform(MetaPlatform):
    """An Instagram username; the newest post's ``timestamp`` / ``taken_at_timestamp``."""

    name = "instagram"
    settings_model = InstagramSettings

    def normalize(self, account: str) -> str:
        """``@Dinsos.Cilegon``, ``dinsos.cilegon`` or ``https://www.instagram.com/dinsos.cilegon/``
        -> ``dinsos.cilegon``; a clear ``ValueError`` for anything else."""
        value = account.strip()
        if "/" in value:
            value = _name_from_url(value, account)
        name = value.removeprefix("@").lower()
        if not _NAME.fullmatch(name):
            raise ValueError(
                f"not an Instagram username: {account!r} (expected at most 30 letters, digits, "
                "'.' or '_', e.g. dinsos.cilegon, @dinsos.cilegon or "
                "https://www.instagram.com/dinsos.cilegon/)"
            )
        return name

    def url(self, account: str) -> str:
        """The profile page."""
        return f"{WEB_URL}/{account}/"

    def graph_calls_per_check(self, settings: PlatformSettings) -> int:
        """One Business Discovery call when the Graph API is used (the web fallback is free)."""
        return 1 if isinstance(settings, InstagramSettings) and settings.uses_graph else 0

    def budget_report(
        self, accounts: Sequence[Account], settings: PlatformSettings
    ) -> list[tuple[str, bool]]:
        """The Graph API budget, or a note that only the web endpoint is used."""
        lines = super().budget_report(accounts, settings)
        if isinstance(settings, InstagramSettings) and not settings.uses_graph and accounts:
            per_hour = sum(3600.0 / a.interval for a in accounts)
            lines.append((
                f"no Graph API token in use: {len(accounts)} accounts through the public web "
                f"endpoint only (about {per_hour:.1f} requests/hour to instagram.com); it is "
                "often blocked from servers: configure access_token and ig_user_id",
                False,
            ))
        return lines

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """Business Discovery, the web endpoint, or both (see the module doc)."""
        settings = ctx.settings
        if not isinstance(settings, InstagramSettings):
            settings = InstagramSettings()
        self.hub.track(self.name, settings, ctx)
        if not settings.uses_graph:
            return await self._web(account, ctx, settings)
        if settings.method == "auto" and self._missed_recently(ctx):
            return await self._fallback(account, ctx, settings, "recently")
        try:
            observation = await self._graph(account, ctx, settings)
        except NotFound:
            if settings.method != "auto":
                raise
            ctx.memo.set(_MISS, ctx.clock.now().isoformat())
            return await self._fallback(account, ctx, settings, "now")
        if ctx.memo.get(_MISS) is not None:
            ctx.memo.set(_MISS, None)  # seen again: e.g. converted to a business account
        return observation

    # -- Graph API --------------------------------------------------------------------------

    async def _graph(
        self, account: str, ctx: CheckContext, settings: InstagramSettings
    ) -> Observation:
        fields = f"business_discovery.username({account}){MEDIA_FIELDS}"
        if settings.ig_user_id is None:  # the settings refuse a token without it
            raise AuthError("Business Discovery needs ig_user_id")
        try:
            payload = await graph_get(ctx, settings, settings.ig_user_id, {"fields": fields},
                                      platform=self.name, hub=self.hub)
        except NotFound as error:
            raise NotFound(
                f"Instagram Business Discovery cannot see @{account}: no such account, or a "
                f"personal (not Business/Creator) account ({error.message})"
            ) from None
        except ParseError as error:
            if "nonexisting field" in error.message:
                raise AuthError(
                    f"ig_user_id {settings.ig_user_id} is not an Instagram professional account "
                    f"id ({error.message}); look it up with "
                    "/me/accounts?fields=instagram_business_account"
                ) from None
            raise
        found = payload.get("business_discovery")
        if not isinstance(found, dict):
            raise ParseError("the Graph API answer has no business_discovery object")
        media = found.get("media")
        items = media.get("data") if isinstance(media, dict) else None
        if items is None and not found.get("media_count"):
            items = []
        if not isinstance(items, list):
            raise ParseError("the Graph API answer has no media list")
        posts = graph_posts(items, time_key="timestamp", url_key="permalink",
                            horizon=self.horizon(ctx))
        ctx.log.debug("business discovery", media=len(items), posts=len(posts))
        return Observation.from_posts(posts, method="graph-api")

    def _missed_recently(self, ctx: CheckContext) -> bool:
        value = ctx.memo.get(_MISS)
        try:
            missed = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            return False
        return missed is not None and ctx.clock.now() - missed < GRAPH_RECHECK

    async def _fallback(
        self, account: str, ctx: CheckContext, settings: InstagramSettings, when: str
    ) -> Observation:
        """The web endpoint for an account Business Discovery cannot see; its failures become
        ``not_found`` so that they never pause the Graph API checks."""
        try:
            return await self._web(account, ctx, settings)
        except CheckError as error:
            seen = "cannot see" if when == "now" else "could not see (within the last day)"
            if isinstance(error, NotFound):
                raise NotFound(
                    f"no Instagram account @{account}: Business Discovery {seen} it and the web "
                    f"endpoint says it does not exist ({error.message})"
                ) from None
            raise NotFound(
                f"Instagram Business Discovery {seen} @{account} (a personal account, or no "
                f"such account), and the web fallback failed: {error.reason}: {error.message}"
            ) from None

    # -- the web endpoint -------------------------------------------------------------------

    async def _web(
        self, account: str, ctx: CheckContext, settings: InstagramSettings
    ) -> Observation:
        headers = {
            "X-IG-App-ID": IG_APP_ID,
            "User-Agent": settings.user_agent or BROWSER_UA,
            "Accept": "*/*",
            "Accept-Language": "id-ID,id;q=0.9,en-US;q=0.8,en;q=0.7",
            "Referer": f"{settings.web_url}/{account}/",
            "X-Requested-With": "XMLHttpRequest",
        }
        response = await ctx.http.get(
            f"{settings.web_url}/api/v1/users/web_profile_info/",
            params={"username": account},
            headers=headers,
            allow_redirects=False,
        )
        user = _web_user(response, account)
        posts = _web_posts(user, self.horizon(ctx))
        if not posts and user.get("is_private") and _count(user) > 0:
            raise NotFound(f"@{account} is a private account: its posts are not visible")
        ctx.log.debug("web profile", posts=len(posts))
        return Observation.from_posts(posts, method="web")


def _name_from_url(value: str, account: str) -> str:
    url = value if "://" in value else f"https://{value}"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host not in _HOSTS or not segments:
        raise ValueError(f"not an Instagram profile URL: {account!r}")
    if segments[0].lower() in _NOT_PROFILES:
        raise ValueError(
            f"{account!r} is a post or page of Instagram, not a profile: use "
            "https://www.instagram.com/USERNAME/"
        )
    return segments[0]


def _web_user(response: Response, account: str) -> dict[str, Any]:
    """The ``data.user`` object, or the error for the failure shape served instead."""
    status = response.status
    if 300 <= status < 400:
        target = urlsplit(response.headers.get("Location", "")).path or "elsewhere"
        if "/accounts/login" in target or "/challenge" in target:
            raise Blocked("instagram.com redirected to its login page instead of answering: "
                          "configure a Graph API token (see the README)")
        raise Blocked(f"instagram.com redirected to {target} instead of answering")
    if status in (404, 410):
        raise NotFound(f"no Instagram account @{account} (HTTP {status})")
    if "/accounts/login" in urlsplit(response.url).path or _is_html(response):
        raise Blocked("instagram.com served a login page instead of data: configure a Graph "
                      "API token (see the README)")
    try:
        payload: Any = response.json()
    except ParseError:
        if status < 400:
            raise
        payload = None
    if isinstance(payload, dict) and payload.get("status") == "fail":
        said = str(payload.get("message") or "refused")[:120]
        wall = " (login required)" if payload.get("require_login") else ""
        raise Blocked(f"instagram.com refused the anonymous request (HTTP {status}: "
                      f"{said!r}){wall}")
    if status in (401, 403):
        raise Blocked(f"instagram.com refused the anonymous request (HTTP {status})")
    response.raise_for_status()
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or "user" not in data:
        raise ParseError("instagram.com's answer has no data.user")
    user = data["user"]
    if user is None:
        raise NotFound(f"no Instagram account @{account}")
    if not isinstance(user, dict):
        raise ParseError("instagram.com's data.user is not an object")
    return user


def _is_html(response: Response) -> bool:
    """An HTML page (a login wall): by its start, or by its type unless the body is JSON."""
    start = response.body.lstrip()[:64].lower()
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return True
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type and start[:1] not in (b"{", b"[")


def _timelines(user: dict[str, Any]) -> list[dict[str, Any]]:
    names = ("edge_owner_to_timeline_media", "edge_felix_video_timeline")
    return [user[n] for n in names if isinstance(user.get(n), dict)]


def _count(user: dict[str, Any]) -> int:
    counts = [t.get("count") for t in _timelines(user)]
    return max((c for c in counts if isinstance(c, int)), default=0)


def _web_posts(user: dict[str, Any], horizon: datetime) -> list[Post]:
    """Every dated node of both timelines, once each (a video can be in both)."""
    posts: dict[str, Post] = {}
    nodes = undated = 0
    for timeline in _timelines(user):
        edges = timeline.get("edges")
        for edge in edges if isinstance(edges, list) else []:
            node = edge.get("node") if isinstance(edge, dict) else None
            if not isinstance(node, dict):
                continue
            nodes += 1
            stamp = node.get("taken_at_timestamp")
            try:
                if isinstance(stamp, bool) or not isinstance(stamp, int | float):
                    raise ValueError(stamp)
                published = datetime.fromtimestamp(stamp, UTC)
            except (OverflowError, OSError, ValueError):
                undated += 1
                continue
            if published > horizon:
                continue
            shortcode = node.get("shortcode")
            key = str(node.get("id") or shortcode)
            url = f"{WEB_URL}/p/{shortcode}/" if isinstance(shortcode, str) else None
            posts[key] = Post(published, id=key, url=url)
    if nodes and undated == nodes:
        raise ParseError(f"none of the {nodes} posts has a readable taken_at_timestamp")
    return list(posts.values())


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Provide the ``instagram`` platform."""
    register(InstagramPlatform())

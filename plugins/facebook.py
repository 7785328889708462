"""The ``facebook`` platform: a Facebook Page through the Graph API.

``GET {graph_url}/{page}/{edge}?fields=created_time,permalink_url&limit=10`` through
:func:`plugins.meta.graph_get` (budget, usage headers, error mapping); the newest post is the
maximum ``created_time`` over the page (pinned posts come first). ``edge`` is ``posts``
(default), ``published_posts`` or ``feed``.

There is no anonymous fallback (mbasic.facebook.com is gone, scraping breaks constantly):
without a token every check fails with reason ``auth`` — without sending anything — and the
message says what token is needed, or how to watch the page through an RSS bridge instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field

from monitor import hookimpl
from monitor.model import AuthError, NotFound, Observation, ParseError
from monitor.platform import CheckContext, Platform
from plugins.meta import MetaPlatform, MetaSettings, graph_get, graph_posts

__all__ = ["NO_TOKEN", "FacebookPlatform", "FacebookSettings", "register_platforms"]

WEB_URL = "https://www.facebook.com"
FIELDS = "created_time,permalink_url"
LIMIT = "10"

NO_TOKEN = (
    "no access token for facebook: set platforms.facebook.access_token to a Page access token, "
    "or to a user or system-user token with pages_read_engagement (pages you do not manage "
    "also need an app approved for the Page Public Content Access feature); or watch the page "
    "through an RSS bridge (RSSHub, RSS-Bridge) with the rss platform instead"
)

_USERNAME = re.compile(r"[a-z0-9.]{1,50}")
_HOSTS = {"facebook.com", "www.facebook.com", "m.facebook.com", "web.facebook.com",
          "mbasic.facebook.com", "business.facebook.com", "fb.com", "www.fb.com"}
_NOT_PAGES = {"groups", "events", "watch", "share", "sharer", "sharer.php", "story.php",
              "permalink.php", "photo.php", "photos", "login", "marketplace", "hashtag",
              "gaming", "reel", "stories", "help", "privacy", "policies"}
_LEGACY = re.compile(r".+-(\d{5,})")  # /Dinas-Sosial-Cilegon-123456789012345/


class FacebookSettings(MetaSettings):
    """``platforms.facebook`` in the config."""

    edge: Literal["posts", "published_posts", "feed"] = Field(
        default="posts", description="the Page edge to read"
    )


class FacebookPlatform(MetaPlatform):
    """A Facebook Page (username or numeric id); the newest ``created_time``."""

    name = "facebook"
    settings_model = FacebookSettings

    def normalize(self, account: str) -> str:
        """A page username (lower-case) or numeric id, from the name, the id or a page URL:
        ``/NAME``, ``/profile.php?id=123``, ``/pages/x/123``, ``/people/x/123``,
        ``/p/Name-123``."""
        value = account.strip()
        page = _page_from_url(value, account) if "/" in value else value.removeprefix("@")
        page = page.lower()
        if page.isdigit() or _USERNAME.fullmatch(page):
            return page
        raise ValueError(
            f"not a Facebook page: {account!r} (expected a page username, a numeric page id "
            "or a page URL such as https://www.facebook.com/NAME or "
            "https://www.facebook.com/profile.php?id=123)"
        )

    def url(self, account: str) -> str:
        """The page on facebook.com."""
        if account.isdigit():
            return f"{WEB_URL}/profile.php?id={account}"
        return f"{WEB_URL}/{account}"

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """The page's newest post, or ``AuthError`` (no request at all) without a token."""
        settings = ctx.settings
        if not isinstance(settings, FacebookSettings):
            settings = FacebookSettings()
        self.hub.track(self.name, settings, ctx)
        if settings.access_token is None:
            raise AuthError(NO_TOKEN)
        try:
            payload = await graph_get(ctx, settings, f"{account}/{settings.edge}",
                                      {"fields": FIELDS, "limit": LIMIT},
                                      platform=self.name, hub=self.hub)
        except NotFound as error:
            raise NotFound(f"no Facebook page {account!r}: {error.message}") from None
        items = payload.get("data")
        if not isinstance(items, list):
            raise ParseError("the Graph API answer has no data list")
        posts = graph_posts(items, time_key="created_time", url_key="permalink_url",
                            horizon=self.horizon(ctx))
        ctx.log.debug("page posts", items=len(items), posts=len(posts))
        return Observation.from_posts(posts, method="graph-api")


def _page_from_url(value: str, account: str) -> str:
    url = value if "://" in value else f"https://{value}"
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    segments = [s for s in parts.path.split("/") if s]
    if host not in _HOSTS or not segments:
        raise ValueError(f"not a Facebook page URL: {account!r}")
    first = segments[0].lower()
    if first == "profile.php":
        ids = parse_qs(parts.query).get("id", [""])
        if ids[0].isdigit():
            return ids[0]
        raise ValueError(f"no numeric id= in {account!r}")
    if first in ("pages", "people", "pg"):
        numeric = [s for s in segments[1:] if s.isdigit()]
        if first == "pg" and len(segments) > 1:
            return segments[1]
        if numeric:
            return numeric[-1]
        raise ValueError(f"no numeric page id in {account!r}")
    if first == "p" and len(segments) > 1 and (legacy := _LEGACY.fullmatch(segments[1])):
        return legacy.group(1)
    if first in _NOT_PAGES:
        raise ValueError(
            f"{account!r} is a Facebook {first} link, not a page: use the page's URL"
        )
    if legacy := _LEGACY.fullmatch(segments[0]):
        return legacy.group(1)
    return segments[0]


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Provide the ``facebook`` platform."""
    register(FacebookPlatform())

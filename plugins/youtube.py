"""The ``youtube`` platform: a channel's newest upload, from its Atom feed (no key needed).

Accounts: a channel id (``UC`` + 22 characters), an ``@handle`` (case-insensitive, kept
lower-case), or a channel URL (``https://www.youtube.com/@x``, ``/channel/UC…``, ``/c/name``,
legacy ``/user/name``). Canonical forms: ``UC…``, ``@handle``, ``c/name``, ``user/name``.

A check:

1. Channel id: the account itself, or the id resolved earlier (``ctx.memo``), or resolved now
   from the channel page at ``web_url`` (canonical link, RSS link, ``"externalId"``, ``og:url``,
   a lone ``"channelId"``), sent with a ``SOCS`` consent cookie; a redirect to
   ``consent.youtube.com`` is ``blocked``, a 404 page is ``not_found``. With an API key, a
   page that fails otherwise falls back to ``channels?forHandle=`` (or ``forUsername=``).
2. ``GET {feed_url}?channel_id=UC…`` (conditional: 304 or the same body is "unchanged").
   Newest = the maximum entry ``published`` (never ``updated``, never the feed-level dates);
   entries more than ``future_skew`` ahead (premieres, scheduled lives) are ignored.
   ``method: feed``; post id = ``yt:videoId``, URL = the entry's alternate link.
3. When the feed fails and ``api_key`` is set: the Data API (:mod:`plugins.youtube_api`),
   ``method: data-api``.

The feed endpoint has long outages answering 404 or 500 for every channel. A feed 404 is
therefore ``not_found`` only when the channel itself is shown not to exist; otherwise
``unreachable``:

- a channel known to exist (the feed, its page or the API confirmed it before: ``ctx.memo``)
  -> ``unreachable``; every 3rd consecutive 404 its page is fetched again: a 404 page then
  means the channel is gone (``not_found``) and a handle that now names another channel id
  is followed (the feed is tried again with the new id);
- a channel never confirmed (a new ``UC…`` account during an outage) -> its page is fetched
  to tell: 404 -> ``not_found``; the page shows the channel -> ``unreachable``; the page
  cannot tell (consent, outage) -> ``unreachable``, saying so.

A spent Data API budget, or a quota error, pauses only the fallback (until midnight Pacific
time): the check then reports the feed's own failure with a note, and the free feed keeps
being checked for every channel. The API's ``not_found`` and ``auth`` answers are reported
as such.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pydantic import Field, field_validator
from yarl import URL

from monitor import hookimpl
from monitor.durations import Duration
from monitor.http import Response
from monitor.model import (
    Account,
    AuthError,
    Blocked,
    CheckError,
    Deferred,
    NotFound,
    Observation,
    ParseError,
    Post,
    RateLimited,
    Unreachable,
)
from monitor.platform import CheckContext, Platform, PlatformSettings
from monitor.secrets import SecretField
from plugins.dates import parse_date
from plugins.feeds import load_feed
from plugins.youtube_api import DataApi, QuotaLedger

__all__ = [
    "ChannelRef",
    "YoutubePlatform",
    "YoutubeSettings",
    "extract_channel_id",
    "parse_account",
    "parse_channel_feed",
    "register_platforms",
]

FEED_URL = "https://www.youtube.com/feeds/videos.xml"
WEB_URL = "https://www.youtube.com"
API_URL = "https://www.googleapis.com/youtube/v3"
PUBLIC_URL = "https://www.youtube.com"
#: Every N-th consecutive feed 404, the channel page is fetched again (re-resolve / gone?).
REVERIFY_EVERY = 3
MAX_REDIRECTS = 5
ACCEPT_FEED = "application/atom+xml, application/xml;q=0.9, */*;q=0.5"
ACCEPT_PAGE = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

# ctx.memo keys
_ID = "channel_id"  # the id resolved for a handle / c / user account
_KNOWN = "known"  # the channel id last confirmed to exist (feed, page or API)
_404S = "feed_404s"  # consecutive feed 404s
_UPLOADS = "uploads"  # [channel id, its uploads playlist] from the Data API

_CHANNEL_ID = re.compile(r"UC[A-Za-z0-9_-]{22}")
_HANDLE = re.compile(r"[\w.\-\u00b7]{3,30}")
_NAME = re.compile(r"[\w.\-]{1,100}")
_HOSTS = frozenset({"youtube.com", "www.youtube.com", "m.youtube.com"})
_NOT_CHANNELS = frozenset({"watch", "shorts", "playlist", "live", "embed", "results", "v"})
_FORMS = (
    "a channel id (UC…), an @handle or a channel URL "
    "(https://www.youtube.com/@name, /channel/UC…, /c/name)"
)


# -- accounts ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A parsed account: ``kind`` is ``id``, ``handle``, ``c`` or ``user``."""

    kind: Literal["id", "handle", "c", "user"]
    value: str

    @property
    def canonical(self) -> str:
        """``UC…``, ``@handle``, ``c/name`` or ``user/name``."""
        return {"id": "", "handle": "@", "c": "c/", "user": "user/"}[self.kind] + self.value

    @property
    def path(self) -> str:
        """The channel page's path on the web site, percent-encoded."""
        if self.kind == "id":
            return f"/channel/{self.value}"
        return "/" + quote(self.canonical, safe="@/._-")

    @property
    def channel_id(self) -> str | None:
        return self.value if self.kind == "id" else None


def parse_account(account: str) -> ChannelRef:
    """Parse an account string (see the module docstring), or ``ValueError`` saying why."""
    value = account.strip()
    if not value:
        raise ValueError(f"the YouTube account is empty: expected {_FORMS}")
    if _CHANNEL_ID.fullmatch(value):
        return ChannelRef("id", value)
    if value.startswith("@"):
        return _handle(value[1:], account)
    for prefix, kind in (("c/", "c"), ("user/", "user"), ("channel/", "id")):
        if value.startswith(prefix):
            return _named(kind, value[len(prefix):], account)
    lowered = value.lower()
    if "://" in value or lowered.startswith(tuple(f"{h}/" for h in _HOSTS)):
        return _from_url(value, account)
    if value.startswith("UC") and len(value) != 24:
        raise ValueError(
            f"{account!r} looks like a channel id, but a channel id is 'UC' followed by exactly "
            f"22 letters, digits, '-' or '_' (24 characters)"
        )
    hint = f" (a handle is written with '@': '@{value}')" if _HANDLE.fullmatch(value) else ""
    raise ValueError(f"expected {_FORMS}, got {account!r}{hint}")


def _handle(name: str, account: str) -> ChannelRef:
    if not _HANDLE.fullmatch(name):
        raise ValueError(
            f"invalid YouTube handle {account!r}: 3 to 30 letters, digits, '_', '-' or '.' "
            "after the '@'"
        )
    return ChannelRef("handle", name.lower())


def _named(kind: Literal["id", "c", "user"], name: str, account: str) -> ChannelRef:
    name = name.strip("/")
    if kind == "id":
        if not _CHANNEL_ID.fullmatch(name):
            raise ValueError(f"invalid channel id in {account!r}: expected UC + 22 characters")
        return ChannelRef("id", name)
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid YouTube channel name in {account!r}")
    return ChannelRef(kind, name)


def _from_url(value: str, account: str) -> ChannelRef:
    text = value if "://" in value else "https://" + value
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ValueError(f"expected {_FORMS}, got {account!r}") from None
    host = (parts.hostname or "").lower()
    if host == "youtu.be":
        raise ValueError(f"{account!r} is a video link, not a channel; expected {_FORMS}")
    if parts.scheme.lower() not in ("http", "https") or host not in _HOSTS:
        raise ValueError(f"not a YouTube URL: {account!r}; expected {_FORMS}")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    first = segments[0] if segments else ""
    if first.startswith("@"):
        return _handle(first[1:], account)
    if first in ("channel", "c", "user") and len(segments) > 1:
        kind: Literal["id", "c", "user"] = "id" if first == "channel" else first  # type: ignore[assignment]
        return _named(kind, segments[1], account)
    if first == "feeds":
        ids = parse_qs(parts.query).get("channel_id", [])
        if ids and _CHANNEL_ID.fullmatch(ids[0]):
            return ChannelRef("id", ids[0])
    if first in _NOT_CHANNELS:
        raise ValueError(
            f"{account!r} is a video or playlist URL, not a channel; expected {_FORMS}"
        )
    raise ValueError(f"not a YouTube channel URL: {account!r}; expected {_FORMS}")


# -- settings ---------------------------------------------------------------------------------
class YoutubeSettings(PlatformSettings):
    """``platforms.youtube`` in the config."""

    feed_url: str = Field(default=FEED_URL, description="the channel feed endpoint")
    web_url: str = Field(default=WEB_URL, description="the web site (channel pages)")
    api_url: str = Field(default=API_URL, description="the Data API v3 base URL")
    api_key: SecretField | None = Field(
        default=None, description="Data API key: enables the fallback when the feed fails"
    )
    quota_budget: int = Field(
        default=10_000, ge=0, description="Data API units to spend per day (Pacific day)"
    )
    future_skew: Duration = Field(
        default="1d", validate_default=True,
        description="videos dated further ahead (premieres, scheduled lives) are ignored",
    )
    feed_variant: Literal["channel", "uploads", "videos"] = Field(
        default="channel",
        description="channel: ?channel_id=UC…; uploads: the UU… playlist; videos: UULF… (no "
        "shorts, no lives)",
    )
    consent_cookie: str = Field(
        default="SOCS=CAI", description="Cookie header sent to channel pages (EU consent)"
    )

    @field_validator("feed_url", "web_url", "api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an absolute http(s) URL, got {value!r}")
        return value.strip().rstrip("/")

    def feed_params(self, channel_id: str) -> dict[str, str]:
        """The feed's query for a channel id, by ``feed_variant``."""
        if self.feed_variant == "channel":
            return {"channel_id": channel_id}
        prefix = "UU" if self.feed_variant == "uploads" else "UULF"
        return {"playlist_id": prefix + channel_id[2:]}


# -- parsing ----------------------------------------------------------------------------------
_TAG = re.compile(r"<(?:link|meta)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""([a-zA-Z:_-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))""")
_ID_IN = r"(UC[A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])"
_ID_IN_PATH = re.compile(r"/channel/" + _ID_IN)
_ID_IN_QUERY = re.compile(r"channel_id=" + _ID_IN)
_EXTERNAL_ID = re.compile(r'"externalId"\s*:\s*"' + _ID_IN)
_CHANNEL_ID_JSON = re.compile(r'"channelId"\s*:\s*"' + _ID_IN)
_CONSENT_MARKS = ("consent.youtube.com", "consent.google.com")


def extract_channel_id(html: str) -> str | None:
    """The channel id a channel page is about, or None.

    In order: ``<link rel=canonical>``, the RSS ``<link rel=alternate>``, ``"externalId"``,
    ``og:url`` (or ``itemprop=channelId``), and ``"channelId"`` only when the page names a
    single one (pages list other channels' ids too).
    """
    found: dict[str, str] = {}
    for tag in _TAG.finditer(html):
        attrs = {m[1].lower(): m[2] or m[3] or m[4] or "" for m in _ATTR.finditer(tag[0])}
        rel = attrs.get("rel", "").lower().split()
        href, content = attrs.get("href", ""), attrs.get("content", "")
        if "canonical" in rel and (m := _ID_IN_PATH.search(href)):
            found.setdefault("canonical", m[1])
        elif "alternate" in rel and (m := _ID_IN_QUERY.search(href)):
            found.setdefault("rss", m[1])
        elif attrs.get("property") == "og:url" and (m := _ID_IN_PATH.search(content)):
            found.setdefault("og", m[1])
        elif attrs.get("itemprop") in ("channelId", "identifier") and _CHANNEL_ID.fullmatch(
            content
        ):
            found.setdefault("og", content)
    if m := _EXTERNAL_ID.search(html):
        found["external"] = m[1]
    for source in ("canonical", "rss", "external", "og"):
        if source in found:
            return found[source]
    ids = set(_CHANNEL_ID_JSON.findall(html))
    return ids.pop() if len(ids) == 1 else None


def parse_channel_feed(
    body: bytes,
    *,
    now: datetime,
    future_skew: timedelta,
    content_type: str | None = None,
    base_url: str | None = None,
) -> list[Post]:
    """The videos of a YouTube channel feed, dated by each entry's ``published`` only.

    ``updated`` and the feed-level dates are never post times; entries dated more than
    ``future_skew`` ahead of ``now`` are skipped. A feed without entries gives ``[]``; entries
    that all lack a readable ``published`` are a :class:`ParseError`.
    """
    feed = load_feed(body, content_type=content_type, base_url=base_url)
    entries: list[Any] = list(feed.get("entries") or [])
    latest_allowed = now + future_skew
    posts: list[Post] = []
    undated = 0
    for entry in entries:
        raw = dict.get(entry, "published")
        when = parse_date(raw, UTC) if isinstance(raw, str) and raw.strip() else None
        if when is None:
            undated += 1
            continue
        if when > latest_allowed:
            continue  # a scheduled premiere or live
        video = dict.get(entry, "yt_videoid") or str(dict.get(entry, "id", "")).removeprefix(
            "yt:video:"
        )
        posts.append(Post(when, id=video or None, url=_alternate(entry)))
    if entries and undated == len(entries):
        raise ParseError(f"no entry of the YouTube feed has a readable published date "
                         f"({len(entries)} entries)")
    return posts


def _alternate(entry: Any) -> str | None:
    for link in dict.get(entry, "links") or []:
        if isinstance(link, dict) and link.get("rel", "alternate") == "alternate":
            href = link.get("href")
            if isinstance(href, str) and href:
                return href
    link = dict.get(entry, "link")
    return link if isinstance(link, str) and link else None


def _is_consent(url: URL) -> bool:
    return (url.host or "").lower().startswith("consent.")


def _with_note(error: CheckError, note: str) -> CheckError:
    """The same kind of error with ``note`` appended to its message."""
    message = f"{error.message}; {note}" if note else error.message
    if isinstance(error, RateLimited):
        return RateLimited(message, retry_after=error.retry_after)
    return type(error)(message)


# -- the platform -----------------------------------------------------------------------------
class YoutubePlatform(Platform):
    """A YouTube channel; see the module docstring."""

    name = "youtube"
    settings_model = YoutubeSettings

    def __init__(self) -> None:
        self.ledger = QuotaLedger()

    def normalize(self, account: str) -> str:
        """``UC…``, ``@handle`` (lower-case), ``c/name`` or ``user/name``; else ValueError."""
        return parse_account(account).canonical

    def url(self, account: str) -> str:
        """The channel's public page."""
        return PUBLIC_URL + parse_account(account).path

    def collectors(self) -> Iterable[Any]:
        """The Data API quota metrics (see :class:`plugins.youtube_api.QuotaLedger`)."""
        return (self.ledger,)

    def budget_report(
        self, accounts: Sequence[Account], settings: PlatformSettings
    ) -> list[tuple[str, bool]]:
        """Data API units needed if the feed were down all day, against ``quota_budget``."""
        s = settings if isinstance(settings, YoutubeSettings) else YoutubeSettings()
        if s.api_key is None:
            return [(f"feed only (no API key): {len(accounts)} accounts", False)]
        checks = sum(86400.0 / a.interval for a in accounts if a.interval > 0)
        # 1 unit per check (playlistItems) + 1 channels lookup per account (then memoised).
        units = math.ceil(checks) + len(accounts)
        lines = [(
            f"{len(accounts)} accounts with the Data API fallback: up to {units} units/day "
            f"if the feed is down all day (budget {s.quota_budget})",
            False,
        )]
        if units > s.quota_budget:
            lines.append((
                f"the fallback would need {units} units/day, over the budget of "
                f"{s.quota_budget}: it stops for the rest of the Pacific day when the budget is "
                "spent (lengthen the interval or raise quota_budget)",
                True,
            ))
        return lines

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """Resolve the channel id if needed, read the feed, fall back to the Data API."""
        settings = ctx.settings if isinstance(ctx.settings, YoutubeSettings) else YoutubeSettings()
        self.ledger.budget, self.ledger.clock = settings.quota_budget, ctx.clock
        return await _Check(parse_account(account), ctx, settings, self.ledger).run()


class _Check:
    """One check of one channel: the steps of the module docstring, with their notes."""

    def __init__(
        self, ref: ChannelRef, ctx: CheckContext, settings: YoutubeSettings, ledger: QuotaLedger
    ) -> None:
        self.ref, self.ctx, self.settings, self.memo = ref, ctx, settings, ctx.memo
        key = settings.api_key
        self.api = DataApi(ctx, settings.api_url, key.get(), ledger) if key is not None else None
        self.confirmed = False  # the channel was shown to exist during this check

    async def run(self) -> Observation:
        channel_id = self.ref.channel_id or self.memo.get(_ID)
        if not isinstance(channel_id, str) or not _CHANNEL_ID.fullmatch(channel_id):
            channel_id = await self._resolve()
        try:
            return await self._feed(channel_id)
        except CheckError as error:
            return await self._recover(channel_id, error)

    # -- resolving ------------------------------------------------------------------------
    async def _resolve(self) -> str:
        """The channel id of a handle / c / user account, from its page (or the API)."""
        try:
            found = await self._page_id()
        except NotFound:
            raise NotFound(
                f"no YouTube channel {self.ref.canonical}: its channel page answers HTTP 404"
            ) from None
        except CheckError as page_error:
            found = await self._resolve_by_api(page_error)
        self._learn(found)
        self.ctx.log.info("channel id resolved", channel_id=found)
        return found

    async def _resolve_by_api(self, page_error: CheckError) -> str:
        if self.api is None or self.ref.kind not in ("handle", "user"):
            raise page_error
        try:
            if self.ref.kind == "handle":
                channel = await self.api.channel(handle=self.ref.canonical)
            else:
                channel = await self.api.channel(username=self.ref.value)
        except (NotFound, AuthError):
            raise
        except (CheckError, Deferred) as api_error:
            raise _with_note(page_error, f"Data API lookup not possible: {api_error}") from None
        self.memo.set(_UPLOADS, [channel.channel_id, channel.uploads])
        return channel.channel_id

    def _learn(self, channel_id: str) -> None:
        """Remember a channel id shown to exist now (a UC… account stays its own id)."""
        if self.ref.kind == "id":
            channel_id = self.ref.value
        elif self.memo.get(_ID) != channel_id:
            self.memo.set(_ID, channel_id)
            self.memo.set(_404S, 0)
        self.memo.set(_KNOWN, channel_id)
        self.confirmed = True

    async def _page_id(self) -> str:
        """The channel id shown on the account's channel page; errors as the page says."""
        what = f"the channel page of {self.ref.canonical}"
        resp = await self._get(
            self.settings.web_url + self.ref.path,
            headers={"Cookie": self.settings.consent_cookie, "Accept": ACCEPT_PAGE},
            what=what,
        )
        if resp.status in (404, 410):
            raise NotFound(f"{what} answers HTTP {resp.status}")
        if resp.status in (401, 403):
            raise Blocked(f"{what} answers HTTP {resp.status} (a bot check?)")
        resp.raise_for_status()
        text = resp.text()
        found = await self.ctx.run_cpu(extract_channel_id, text)
        if found is not None:
            return found
        if any(mark in text for mark in _CONSENT_MARKS):
            raise Blocked(f"{what} is YouTube's cookie consent page (an EU consent wall)")
        raise ParseError(
            f"{what} shows no channel id (canonical link, RSS link, externalId, og:url)"
        )

    # -- the feed -------------------------------------------------------------------------
    async def _feed(self, channel_id: str) -> Observation:
        resp = await self._get(
            self.settings.feed_url,
            params=self.settings.feed_params(channel_id),
            headers={"Accept": ACCEPT_FEED},
            conditional=True,
            what="the YouTube feed",
        )
        if resp.status in (404, 410):
            raise NotFound(f"the YouTube feed answered HTTP {resp.status} for channel {channel_id}")
        if resp.status in (401, 403):  # the feed needs no credentials: a bot check
            raise Blocked(f"the YouTube feed answered HTTP {resp.status} for channel "
                          f"{channel_id} (a bot check?)")
        resp.raise_for_status()
        if resp.unchanged:
            observation = Observation.not_modified("feed")
        else:
            posts = await self.ctx.run_cpu(
                parse_channel_feed,
                resp.body,
                now=self.ctx.clock.now(),
                future_skew=timedelta(seconds=self.settings.future_skew),
                content_type=resp.headers.get("Content-Type"),
                base_url=resp.url,
            )
            observation = Observation.from_posts(posts, method="feed")
        self.memo.set(_KNOWN, channel_id)
        self.memo.set(_404S, 0)
        return observation

    async def _recover(self, channel_id: str, error: CheckError) -> Observation:
        """After a feed failure: re-verify, re-resolve, fall back, or say what failed."""
        notes: list[str] = []
        if isinstance(error, NotFound):
            count = int(self.memo.get(_404S, 0) or 0) + 1
            self.memo.set(_404S, count)
            known = self.memo.get(_KNOWN) == channel_id
            if not self.confirmed and (not known or count % REVERIFY_EVERY == 0):
                fresh = await self._reverify(notes)
                if fresh is not None and fresh != channel_id and self.ref.kind != "id":
                    self.ctx.log.info("channel id changed", old=channel_id, new=fresh)
                    channel_id = fresh
                    try:
                        return await self._feed(fresh)
                    except CheckError as again:
                        error = again
        observation = await self._fallback(channel_id, error, notes)
        if observation is not None:
            return observation
        raise self._final(channel_id, error, notes)

    async def _reverify(self, notes: list[str]) -> str | None:
        """Fetch the channel page again: its id, NotFound if it is gone, None if it cannot tell."""
        try:
            found = await self._page_id()
        except NotFound:
            raise NotFound(
                f"the YouTube feed answers 404 for {self.ref.canonical} and its channel page "
                "answers HTTP 404: the channel does not exist (or was deleted)"
            ) from None
        except CheckError as exc:
            notes.append(f"its channel page could not tell whether it exists ({exc.message})")
            return None
        self._learn(found)
        return found

    async def _fallback(
        self, channel_id: str, feed_error: CheckError, notes: list[str]
    ) -> Observation | None:
        """The Data API's observation, or None (with a note) when it cannot give one."""
        if self.api is None:
            return None
        try:
            cached = self.memo.get(_UPLOADS)
            if isinstance(cached, list) and len(cached) == 2 and cached[0] == channel_id:
                uploads = str(cached[1])
            else:
                uploads = (await self.api.channel(channel_id=channel_id)).uploads
                self.memo.set(_UPLOADS, [channel_id, uploads])
            posts = await self.api.uploads(
                uploads, future_skew=timedelta(seconds=self.settings.future_skew)
            )
        except (NotFound, AuthError) as exc:
            raise type(exc)(f"{exc.message} (the Data API was asked because {feed_error.message})"
                            ) from None
        except Deferred as exc:
            notes.append(f"Data API fallback not used: {exc.message}")
            return None
        except CheckError as exc:
            self.ctx.log.warning("data api fallback failed", reason=exc.reason, error=exc.message)
            notes.append(f"Data API fallback failed: {exc.message}")
            return None
        self.memo.set(_KNOWN, channel_id)
        self.ctx.log.info("feed failed; data api answered", feed_error=feed_error.message)
        return Observation.from_posts(posts, method="data-api")

    def _final(self, channel_id: str, error: CheckError, notes: list[str]) -> CheckError:
        note = "; ".join(notes)
        if not isinstance(error, NotFound):
            return _with_note(error, note)
        if self.confirmed or self.memo.get(_KNOWN) == channel_id:
            message = (
                f"{error.message}, but the channel exists: the feed endpoint has outages; "
                "the last known post is kept"
            )
        else:
            message = f"{error.message}; treated as a feed outage"
        return Unreachable(f"{message}; {note}" if note else message)

    # -- HTTP -----------------------------------------------------------------------------
    async def _get(
        self,
        url: str,
        *,
        what: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        conditional: bool = False,
    ) -> Response:
        """GET following redirects by hand, so that a consent redirect is seen, not followed."""
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self.ctx.http.get(
                url, params=params, headers=headers, conditional=conditional,
                allow_redirects=False,
            )
            location = resp.headers.get("Location")
            if resp.status not in (301, 302, 303, 307, 308) or not location:
                return resp
            try:
                target = URL(resp.url).join(URL(location))
            except (ValueError, TypeError):
                raise Unreachable(f"{what} redirected to an invalid URL") from None
            if _is_consent(target):
                raise Blocked(
                    f"{what} redirected to YouTube's cookie consent page ({target.host}); "
                    "the consent_cookie setting did not avoid it"
                )
            if target.scheme not in ("http", "https"):
                raise Unreachable(f"{what} redirected to a non-HTTP URL")
            url, params = str(target), None
        raise Unreachable(f"{what}: too many redirects")


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Provide the ``youtube`` platform."""
    register(YoutubePlatform())

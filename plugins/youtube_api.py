"""The YouTube Data API v3 fallback of the ``youtube`` platform, and its quota ledger.

Two calls, 1 quota unit each::

    GET {api_url}/channels?part=contentDetails&forHandle=@x   (or id=UC…, forUsername=name)
        -> items[0].contentDetails.relatedPlaylists.uploads   ("UU…")
    GET {api_url}/playlistItems?part=contentDetails&playlistId=UU…&maxResults=50
        -> max of items[].contentDetails.videoPublishedAt     (never snippet.publishedAt)

Quota is counted per Pacific day (Google resets it at midnight America/Los_Angeles) by a
:class:`QuotaLedger` shared by every check of the platform. Before a call, a spent budget (or
a quota error seen earlier today) raises :class:`monitor.model.Deferred` until Pacific
midnight; the call is not sent. Google's answers map to errors as follows: ``quotaExceeded``,
``dailyLimitExceeded``, ``rateLimitExceeded``, ``userRateLimitExceeded`` and HTTP 429
(``RATE_LIMIT_EXCEEDED``) -> :class:`RateLimited` until Pacific midnight (or the 429's
``Retry-After``); ``keyInvalid``, ``API_KEY_INVALID``, expired keys and a disabled API ->
:class:`AuthError`; ``pageInfo.totalResults`` 0 or ``playlistNotFound`` -> :class:`NotFound`.

The key is sent as the ``key`` query parameter, which the HTTP client redacts in its logs.
No message built here contains a URL or a response body (Google's error texts are not
trusted not to echo the request): only HTTP statuses and reason codes.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from monitor.clock import Clock
from monitor.model import (
    AuthError,
    Deferred,
    NotFound,
    ParseError,
    Post,
    RateLimited,
)
from monitor.platform import CheckContext
from plugins.dates import parse_date

__all__ = [
    "ENDPOINTS",
    "PACIFIC",
    "ApiChannel",
    "DataApi",
    "QuotaLedger",
    "next_pacific_midnight",
    "watch_url",
]

#: Google's quota day runs from midnight to midnight in this zone.
PACIFIC = ZoneInfo("America/Los_Angeles")
#: The endpoints called, each costing 1 unit.
ENDPOINTS = ("channels", "playlistItems")
#: Human video URLs always point at the public site, whatever ``web_url`` is.
WATCH_URL = "https://www.youtube.com/watch?v="

_QUOTA_REASONS = frozenset(
    {
        "quotaExceeded",
        "dailyLimitExceeded",
        "dailyLimitExceededUnreg",
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "RATE_LIMIT_EXCEEDED",
        "RESOURCE_EXHAUSTED",
    }
)
_KEY_REASONS = frozenset(
    {"keyInvalid", "API_KEY_INVALID", "keyExpired", "API_KEY_EXPIRED", "API_KEY_SERVICE_BLOCKED"}
)
_DISABLED_REASONS = frozenset({"accessNotConfigured", "SERVICE_DISABLED"})
_NOT_FOUND_REASONS = frozenset({"playlistNotFound", "channelNotFound"})
_SAFE_REASON = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,63}")
_CHANNEL_ID = re.compile(r"UC[A-Za-z0-9_-]{22}")
_VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{6,20}")


def next_pacific_midnight(now: datetime) -> datetime:
    """The next midnight in America/Los_Angeles after ``now``: when Google's quota resets."""
    local = now.astimezone(PACIFIC)
    return datetime.combine(local.date() + timedelta(days=1), time(), tzinfo=PACIFIC)


def pacific_day(now: datetime) -> date:
    """The quota day ``now`` falls in."""
    return now.astimezone(PACIFIC).date()


def watch_url(video_id: str) -> str:
    """The public URL of a video."""
    return WATCH_URL + video_id


def _hours(seconds: float) -> str:
    minutes = max(0, round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


@dataclass(eq=False)  # hashable by identity: a prometheus_client registry keys collectors
class QuotaLedger:
    """Data API units spent per Pacific day, shared by every check of one platform instance.

    Also a prometheus_client collector (``collect()``): ``pantau_youtube_quota_units_total``
    (counter, label ``endpoint``), ``pantau_youtube_quota_units_today`` and
    ``pantau_youtube_quota_budget_units`` (gauges). Kept in memory: a restart forgets today's
    count (Google still enforces the real quota; its errors stop the fallback then).
    """

    budget: int = 10_000
    clock: Clock | None = None
    day: date | None = None
    used_today: int = 0
    totals: Counter[str] = field(default_factory=Counter)
    held_until: datetime | None = None
    held_because: str = ""

    def _roll(self, now: datetime) -> None:
        today = pacific_day(now)
        if self.day != today:
            self.day, self.used_today = today, 0
        if self.held_until is not None and now >= self.held_until:
            self.held_until, self.held_because = None, ""

    def require(self, now: datetime) -> None:
        """Raise :class:`Deferred` (until Pacific midnight) when no call may be sent now."""
        self._roll(now)
        if self.held_until is not None:
            wait = (self.held_until - now).total_seconds()
            raise Deferred(
                f"the Data API is paused for {_hours(wait)} after {self.held_because}", wait
            )
        if self.used_today >= self.budget:
            wait = (next_pacific_midnight(now) - now).total_seconds()
            raise Deferred(
                f"today's Data API budget of {self.budget} units is spent "
                f"(resets at midnight Pacific time, in {_hours(wait)})",
                wait,
            )

    def spend(self, now: datetime, endpoint: str, units: int = 1) -> None:
        """Count ``units`` for a call to ``endpoint`` about to be sent."""
        self._roll(now)
        self.used_today += units
        self.totals[endpoint] += units

    def hold(self, now: datetime, until: datetime, because: str) -> None:
        """Send no call before ``until`` (a quota error said so)."""
        self._roll(now)
        if self.held_until is None or until > self.held_until:
            self.held_until, self.held_because = until, because

    def collect(self) -> Iterator[Metric]:
        """The quota metrics, built fresh on each scrape."""
        if self.clock is not None:
            self._roll(self.clock.now())
        total = CounterMetricFamily(
            "pantau_youtube_quota_units",
            "YouTube Data API quota units spent (1 per call), per endpoint.",
            labels=["endpoint"],
        )
        for endpoint in sorted({*ENDPOINTS, *self.totals}):
            total.add_metric([endpoint], float(self.totals[endpoint]))
        yield total
        yield GaugeMetricFamily(
            "pantau_youtube_quota_units_today",
            "YouTube Data API units spent since midnight Pacific time (Google's quota day).",
            value=float(self.used_today),
        )
        yield GaugeMetricFamily(
            "pantau_youtube_quota_budget_units",
            "The configured daily budget of YouTube Data API units (quota_budget).",
            value=float(self.budget),
        )


@dataclass(frozen=True, slots=True)
class ApiChannel:
    """A channel as the Data API describes it: its id and its uploads playlist."""

    channel_id: str
    uploads: str


class DataApi:
    """The two Data API calls, made through ``ctx.http`` with the ``key`` query parameter."""

    def __init__(self, ctx: CheckContext, api_url: str, key: str, ledger: QuotaLedger) -> None:
        self.ctx = ctx
        self.api_url = api_url.rstrip("/")
        self._key = key
        self.ledger = ledger

    async def channel(
        self,
        *,
        handle: str | None = None,
        channel_id: str | None = None,
        username: str | None = None,
    ) -> ApiChannel:
        """Look a channel up by exactly one of ``@handle``, channel id or legacy user name."""
        if handle is not None:
            query, what = {"forHandle": handle}, handle
        elif channel_id is not None:
            query, what = {"id": channel_id}, f"with id {channel_id}"
        elif username is not None:
            query, what = {"forUsername": username}, f"for user name {username}"
        else:
            raise ValueError("channel() needs handle, channel_id or username")
        data = await self._call("channels", {"part": "contentDetails", **query})
        items = data.get("items")
        if not isinstance(items, list) or not items:
            raise NotFound(f"no YouTube channel {what} (the Data API found 0 results)")
        item = items[0] if isinstance(items[0], dict) else {}
        found = item.get("id")
        uploads = _dig(item, "contentDetails", "relatedPlaylists", "uploads")
        if not isinstance(found, str) or not _CHANNEL_ID.fullmatch(found):
            raise ParseError("the Data API's channel has no valid id")
        if not isinstance(uploads, str) or not uploads.startswith("UU"):
            raise ParseError(f"the Data API gave no uploads playlist for channel {found}")
        return ApiChannel(found, uploads)

    async def uploads(self, playlist_id: str, *, future_skew: timedelta) -> list[Post]:
        """The dated videos of an uploads playlist (first page of 50): ``videoPublishedAt``."""
        data = await self._call(
            "playlistItems",
            {"part": "contentDetails", "playlistId": playlist_id, "maxResults": "50"},
        )
        items = data.get("items", [])
        if not isinstance(items, list):
            raise ParseError("the Data API's playlistItems answer has no items list")
        latest_allowed = self.ctx.clock.now() + future_skew
        posts: list[Post] = []
        unreadable = 0
        for item in items:
            details = item.get("contentDetails") if isinstance(item, dict) else None
            if not isinstance(details, dict):
                continue
            stamp, video = details.get("videoPublishedAt"), details.get("videoId")
            # Private and deleted videos have no videoPublishedAt; premieres may be ahead.
            when = parse_date(stamp, UTC) if isinstance(stamp, str) else None
            if when is None and stamp is not None:
                unreadable += 1
            if when is None or when > latest_allowed:
                continue
            good_id = isinstance(video, str) and _VIDEO_ID.fullmatch(video)
            posts.append(
                Post(when, id=video if good_id else None, url=watch_url(video) if good_id else None)
            )
        if unreadable and not posts:
            raise ParseError(f"no readable videoPublishedAt in the uploads playlist "
                             f"({unreadable} unreadable)")
        return posts

    async def _call(self, endpoint: str, params: Mapping[str, str]) -> dict[str, Any]:
        now = self.ctx.clock.now()
        self.ledger.require(now)
        self.ledger.spend(now, endpoint)
        try:
            resp = await self.ctx.http.get(
                f"{self.api_url}/{endpoint}",
                params={**params, "key": self._key},
                headers={"Accept": "application/json"},
                allow_redirects=False,
            )
        except RateLimited as exc:  # HTTP 429: the client does not hand us the body
            until = self._until(now, exc.retry_after)
            self.ledger.hold(now, until, "HTTP 429 (RATE_LIMIT_EXCEEDED)")
            raise RateLimited(
                f"the Data API answered HTTP 429 (rate limit); paused for "
                f"{_hours((until - now).total_seconds())}",
                retry_after=(until - now).total_seconds(),
            ) from None
        if resp.status == 200:
            data = resp.json()
            if not isinstance(data, dict):
                raise ParseError(f"the Data API's {endpoint} answer is not a JSON object")
            return data
        raise self._error(now, endpoint, resp.status, _reasons(resp.body))

    def _until(self, now: datetime, retry_after: float | None) -> datetime:
        if retry_after is not None and retry_after > 0:
            return now + timedelta(seconds=retry_after)
        return next_pacific_midnight(now)

    def _error(
        self, now: datetime, endpoint: str, status: int, reasons: list[str]
    ) -> Exception:
        shown = ", ".join(reasons) or "no reason given"
        where = f"the Data API ({endpoint}) answered HTTP {status} ({shown})"
        if _QUOTA_REASONS.intersection(reasons):
            until = next_pacific_midnight(now)
            self.ledger.hold(now, until, f"a quota error ({shown})")
            wait = (until - now).total_seconds()
            return RateLimited(
                f"{where}: quota exhausted; it resets at midnight Pacific time, in {_hours(wait)}",
                retry_after=wait,
            )
        if _KEY_REASONS.intersection(reasons):
            return AuthError(f"{where}: the API key is not valid; check platforms.youtube.api_key")
        if _DISABLED_REASONS.intersection(reasons):
            return AuthError(
                f"{where}: the YouTube Data API v3 is not enabled for the key's project"
            )
        if status in (401, 403):
            return AuthError(f"{where}: access denied")
        if _NOT_FOUND_REASONS.intersection(reasons) or (status in (404, 410) and reasons):
            return NotFound(f"{where}: not found")
        if status in (404, 410):  # no Google error body: a wrong api_url or an outage page
            return ParseError(f"{where}: not a Data API answer (check platforms.youtube.api_url)")
        return ParseError(f"{where}: the request was not understood")


def _reasons(body: bytes) -> list[str]:
    """Google's reason codes from an error body (``error.errors[].reason``,
    ``error.details[].reason``, ``error.status``), only when they look like codes."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return []
    found: list[str] = []
    for group in ("errors", "details"):
        entries = error.get(group)
        if isinstance(entries, list):
            found += [e.get("reason") for e in entries if isinstance(e, dict)]
    found.append(error.get("status"))
    unique: list[str] = []
    for reason in found:
        if isinstance(reason, str) and _SAFE_REASON.fullmatch(reason) and reason not in unique:
            unique.append(reason)
    return unique


def _dig(value: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value

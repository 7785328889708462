"""The Meta Graph API client shared by the ``instagram`` and ``facebook`` platforms.

One Graph API GET (:func:`graph_get`) does, in order:

1. asks the token's :class:`TokenBudget` for a slot *before* sending anything: when the
   hourly budget is spent, or Meta's usage headers said the app is close to its limit, it
   raises :class:`monitor.model.Deferred` (the daemon pauses the platform; nothing fails);
2. sends the token as ``Authorization: Bearer`` (never in the URL) and, when the operator
   gave ``app_secret``, ``appsecret_proof`` = HMAC-SHA256(token, key=app secret) as a query
   parameter (the HTTP client redacts it in logs);
3. reads ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` (and ``X-Page-Usage``) and slows
   down when the highest percentage reaches ``usage_threshold``;
4. maps Graph API errors to pantau's reasons (:func:`graph_error`), with messages that never
   carry the token, the app secret or the raw body.

Budgets live in a process-wide :class:`MetaHub`, keyed by a SHA-256 prefix of the token (never
the token): Instagram and Facebook configured with the same token share one budget. The hub
also feeds one collector (``pantau_meta_api_usage_ratio``, ``pantau_api_requests_total``,
``pantau_token_expiry_timestamp_seconds``) that both platforms return from ``collectors()``;
a registry keeps a collector object once, so each family is served once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from pydantic import Field, field_validator

from monitor.durations import Duration
from monitor.http import redact_url
from monitor.model import (
    Account,
    AuthError,
    CheckError,
    Deferred,
    NotFound,
    ParseError,
    Post,
    RateLimited,
    Unreachable,
)
from monitor.platform import CheckContext, Platform, PlatformSettings
from monitor.secrets import Secret, SecretField

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_RATE_WAIT",
    "GRAPH_URL",
    "HUB",
    "MetaHub",
    "MetaPlatform",
    "MetaSettings",
    "TokenBudget",
    "Usage",
    "appsecret_proof",
    "budget_lines",
    "clean_message",
    "graph_error",
    "graph_get",
    "graph_posts",
    "http_url",
    "parse_graph_time",
    "read_usage",
    "token_key",
]

GRAPH_URL = "https://graph.facebook.com/v25.0"
#: Hourly budgets are counted over a sliding window of this many seconds.
WINDOW = 3600.0
#: Wait after a throttling error that does not say how long (15 minutes).
DEFAULT_RATE_WAIT = 900.0
#: Wait when usage crossed the threshold and Meta gave no ``estimated_time_to_regain_access``.
DEFAULT_COOLDOWN = 300.0
#: ``pantau validate`` warns when the token expires within this many days.
EXPIRY_WARNING_DAYS = 14

#: Throttling: app (4), user (17), page (32), custom (613), business use case (80001-80014).
RATE_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
_USAGE_HEADERS = ("X-App-Usage", "X-Page-Usage")
_BUC_HEADER = "X-Business-Use-Case-Usage"
_USAGE_KEYS = ("call_count", "total_time", "total_cputime")
_NAMES_ACCESS = re.compile(r"permission|feature|public content access", re.IGNORECASE)
_TOKENISH = re.compile(r"\b(?:EAA|IGQ|IGAA)[A-Za-z0-9_\-]{12,}|[A-Za-z0-9_\-]{48,}")
_MESSAGE_MAX = 300


# -- settings --------------------------------------------------------------------------------


def http_url(value: str) -> str:
    """``value`` without a trailing slash, or ``ValueError`` unless it is an http(s) URL."""
    text = value.strip().rstrip("/")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text):
        raise ValueError(f"expected an http(s) URL without query, got {value!r}")
    return text


class MetaSettings(PlatformSettings):
    """What every Meta platform accepts under ``platforms.<name>``."""

    graph_url: str = Field(default=GRAPH_URL, description="Graph API base URL, with the version")
    access_token: SecretField | None = Field(default=None, description="Graph API token")
    app_secret: SecretField | None = Field(
        default=None, description="the app's secret: adds appsecret_proof to every call"
    )
    token_expires: date | None = Field(
        default=None, description="when the token expires (exported as a metric)"
    )
    hourly_budget: int = Field(default=200, ge=1, description="Graph API calls per token per hour")
    usage_threshold: float = Field(
        default=90, gt=0, le=100, description="defer when Meta's usage headers reach this %"
    )
    future_skew: Duration = Field(
        default="1d", validate_default=True, description="posts dated further ahead are ignored"
    )

    @field_validator("graph_url")
    @classmethod
    def _graph_url(cls, value: str) -> str:
        return http_url(value)


# -- secrets in messages ---------------------------------------------------------------------


def appsecret_proof(token: str, app_secret: str) -> str:
    """HMAC-SHA256 of the token keyed by the app secret, hex (Meta's ``appsecret_proof``)."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def token_key(token: str) -> str:
    """The key of a token's budget: a SHA-256 prefix, safe to keep and to log."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def clean_message(text: object, secrets: Iterable[str] = ()) -> str:
    """A Graph API message fit for operators: known secrets, anything token-like and secret
    query parameters removed, whitespace collapsed, at most 300 characters."""
    message = str(text) if text not in (None, "") else "no message"
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    message = _TOKENISH.sub("***", redact_url(message))
    message = " ".join(message.split())
    return message if len(message) <= _MESSAGE_MAX else message[: _MESSAGE_MAX - 1] + "…"


# -- usage headers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """What Meta's usage headers said: the highest percentage as a ratio (0..1), and the
    longest ``estimated_time_to_regain_access`` in seconds (0 when none)."""

    ratio: float | None = None
    regain: float = 0.0


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _header_json(headers: Mapping[str, str], name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None  # unreadable usage is no usage: never a reason to fail a check


def read_usage(headers: Mapping[str, str]) -> Usage:
    """:class:`Usage` from ``X-App-Usage``/``X-Page-Usage`` (``{"call_count": 28, ...}``,
    percentages) and ``X-Business-Use-Case-Usage`` (``{id: [{"call_count": ..,
    "estimated_time_to_regain_access": minutes, ...}]}``). Malformed headers are ignored."""
    percents: list[float] = []
    regain = 0.0
    entries: list[Any] = [_header_json(headers, name) for name in _USAGE_HEADERS]
    buc = _header_json(headers, _BUC_HEADER)
    if isinstance(buc, dict):
        for value in buc.values():
            if isinstance(value, list):
                entries.extend(value)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        values = (_number(entry.get(key)) for key in _USAGE_KEYS)
        percents.extend(value for value in values if value is not None)
        minutes = _number(entry.get("estimated_time_to_regain_access"))
        if minutes:
            regain = max(regain, minutes * 60.0)
    ratio = min(1.0, max(percents) / 100.0) if percents else None
    return Usage(ratio=ratio, regain=regain)


# -- the budget ------------------------------------------------------------------------------


def _human(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60.0))
    return f"{minutes}m" if minutes < 120 else f"{minutes / 60:.1f}h"


@dataclass
class TokenBudget:
    """One token's hourly budget (sliding window), usage-based slow-down and last usage.

    ``source`` names where the token came from (``env PANTAU_META_TOKEN``), never its value.
    Times are the clock's monotonic seconds.
    """

    key: str
    source: str
    calls: deque[float] = field(default_factory=deque)
    hold_until: float = 0.0
    hold_reason: str = ""
    usage_ratio: float | None = None

    def used(self, now: float) -> int:
        """Calls in the window ending at ``now``."""
        while self.calls and self.calls[0] <= now - WINDOW:
            self.calls.popleft()
        return len(self.calls)

    def acquire(self, now: float, limit: int) -> None:
        """Take one call, or raise :class:`Deferred` (nothing was sent) with the wait."""
        if self.hold_until > now:
            wait = self.hold_until - now
            raise Deferred(f"{self.hold_reason}; Graph API checks wait {_human(wait)}", wait)
        used = self.used(now)
        if used >= limit:
            wait = max(1.0, self.calls[used - limit] + WINDOW - now)
            raise Deferred(
                f"the hourly budget of {limit} Graph API calls for the Meta token from "
                f"{self.source} is spent; checks wait {_human(wait)} for the next window",
                wait,
            )
        self.calls.append(now)

    def hold(self, until: float, reason: str) -> None:
        """Defer every call of this token until ``until`` (extends, never shortens)."""
        if until > self.hold_until:
            self.hold_until, self.hold_reason = until, reason

    def observe(self, usage: Usage, now: float, threshold: float) -> None:
        """Remember the usage; hold when it reached ``threshold`` % or Meta says to wait."""
        if usage.ratio is not None:
            self.usage_ratio = usage.ratio
        over = usage.ratio is not None and usage.ratio * 100.0 >= threshold
        if over or usage.regain > 0:
            wait = usage.regain or DEFAULT_COOLDOWN
            percent = f"{(usage.ratio or 0) * 100:.0f}%"
            self.hold(
                now + wait,
                f"Meta API usage for the token from {self.source} is at {percent} "
                f"(threshold {threshold:g}%)",
            )


class MetaHub:
    """Process-wide Meta state: budgets by token key, calls and token expiry per platform."""

    def __init__(self) -> None:
        self.collector = MetaCollector(self)
        self.reset()

    def reset(self) -> None:
        """Forget every budget, count and expiry (tests); the collector stays."""
        self.budgets: dict[str, TokenBudget] = {}
        self.requests: Counter[str] = Counter()
        self.token_of: dict[str, str] = {}
        self.expiry: dict[str, float] = {}
        self.platforms: set[str] = set()
        self._expiry_warned: dict[str, date] = {}

    def budget(self, secret: Secret) -> TokenBudget:
        """The budget of the token held by ``secret`` (created on first use)."""
        key = token_key(secret.get())
        budget = self.budgets.get(key)
        if budget is None:
            budget = self.budgets[key] = TokenBudget(key=key, source=secret.source)
        return budget

    def configure(self, platform: str, settings: MetaSettings) -> None:
        """Note which token and expiry ``platform`` uses (at start, after reloads, and at each
        check), so the expiry metric is there before the first check."""
        self.platforms.add(platform)
        if settings.access_token is None:
            self.token_of.pop(platform, None)
            self.expiry.pop(platform, None)
            return
        self.token_of[platform] = self.budget(settings.access_token).key
        expires = settings.token_expires
        if expires is None:
            self.expiry.pop(platform, None)
            return
        self.expiry[platform] = datetime(expires.year, expires.month, expires.day,
                                         tzinfo=UTC).timestamp()

    def track(self, platform: str, settings: MetaSettings, ctx: CheckContext) -> None:
        """:meth:`configure` at each check, and log once a day when the token expires within
        two weeks."""
        self.configure(platform, settings)
        expires = settings.token_expires
        if settings.access_token is None or expires is None:
            return
        today = ctx.clock.now().date()
        days = (expires - today).days
        if days <= EXPIRY_WARNING_DAYS and self._expiry_warned.get(platform) != today:
            self._expiry_warned[platform] = today
            ctx.log.warning("Meta access token expires soon; create a new one",
                            token=settings.access_token.source, expires=expires.isoformat(),
                            days=days)


class MetaCollector:
    """The Meta platforms' own series, built fresh on every scrape::

        # TYPE pantau_meta_api_usage_ratio gauge
        pantau_meta_api_usage_ratio{platform="instagram"} 0.28
        # TYPE pantau_api_requests_total counter
        pantau_api_requests_total{platform="instagram"} 17.0
        # TYPE pantau_token_expiry_timestamp_seconds gauge
        pantau_token_expiry_timestamp_seconds{platform="instagram"} 1.8017856e+09
    """

    def __init__(self, hub: MetaHub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Any]:
        hub = self.hub
        usage = GaugeMetricFamily(
            "pantau_meta_api_usage_ratio",
            "Highest usage percentage in Meta's X-App-Usage / X-Business-Use-Case-Usage "
            "headers for the platform's token, as a ratio (1 = throttled).",
            labels=["platform"],
        )
        for platform, key in sorted(hub.token_of.items()):
            ratio = hub.budgets[key].usage_ratio if key in hub.budgets else None
            if ratio is not None:
                usage.add_metric([platform], ratio)
        requests = CounterMetricFamily(
            "pantau_api_requests", "Meta Graph API calls made, per platform.", labels=["platform"]
        )
        for platform in sorted(hub.platforms | set(hub.requests)):
            requests.add_metric([platform], float(hub.requests[platform]))
        expiry = GaugeMetricFamily(
            "pantau_token_expiry_timestamp_seconds",
            "When the platform's access token expires (from the token_expires setting).",
            labels=["platform"],
        )
        for platform, when in sorted(hub.expiry.items()):
            expiry.add_metric([platform], when)
        for family in (usage, requests, expiry):
            if family.samples:
                yield family


#: The process's hub: Meta platforms share budgets through it.
HUB = MetaHub()


# -- errors ----------------------------------------------------------------------------------


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def graph_error(
    error: Mapping[str, Any],
    *,
    status: int,
    headers: Mapping[str, str],
    secrets: Iterable[str] = (),
) -> CheckError:
    """The pantau error for a Graph API ``{"error": {...}}`` object (see PLATFORMS.md)."""
    code = _int(error.get("code"))
    subcode = _int(error.get("error_subcode"))
    message = clean_message(error.get("message"), secrets)
    text = message if message.startswith("(#") or code is None else f"(#{code}) {message}"
    lower = message.lower()
    if code in RATE_CODES:
        wait = read_usage(headers).regain or DEFAULT_RATE_WAIT
        return RateLimited(f"Meta Graph API throttling: {text}", retry_after=wait)
    if error.get("is_transient") is True or status >= 500:
        return Unreachable(f"Meta Graph API temporary error: {text}")
    if "appsecret_proof" in lower:
        return AuthError(f"{text}: app_secret must be the secret of the app that issued the token")
    if code in (190, 102):
        return AuthError(
            f"the Meta access token is invalid or expired: {text}; create a new long-lived or "
            "system-user token"
        )
    if code == 10 or (code is not None and 200 <= code < 300):
        return AuthError(f"the Meta access token lacks a permission: {text}")
    if code == 100 and _NAMES_ACCESS.search(message):
        return AuthError(
            f"{text} -- either the object does not exist, or the token lacks a permission or "
            "feature needed to read it (pages you do not manage need pages_read_engagement "
            "and the Page Public Content Access feature)"
        )
    if code == 803 or code == 110 or subcode == 2207013 or (
        code == 100 and "does not exist" in lower
    ):
        return NotFound(text)
    if status in (401, 403):
        return AuthError(f"Meta Graph API refused access: {text}")
    if status in (404, 410):
        return NotFound(text)
    return ParseError(f"Meta Graph API error: {text}")


# -- one call --------------------------------------------------------------------------------


async def graph_get(
    ctx: CheckContext,
    settings: MetaSettings,
    path: str,
    params: Mapping[str, str],
    *,
    platform: str,
    hub: MetaHub = HUB,
) -> dict[str, Any]:
    """GET ``{graph_url}/{path}`` and return the JSON object, or raise (see the module doc).

    Raises :class:`Deferred` before sending when the token's budget is spent or held.
    ``settings.access_token`` must be set (the caller reports a missing token itself).
    """
    secret = settings.access_token
    if secret is None:
        raise AuthError("no Meta access token configured")
    token = secret.get()
    budget = hub.budget(secret)
    budget.acquire(ctx.clock.monotonic(), settings.hourly_budget)
    hub.requests[platform] += 1
    query = dict(params)
    secrets = [token]
    if settings.app_secret is not None:
        query["appsecret_proof"] = appsecret_proof(token, settings.app_secret.get())
        secrets += [settings.app_secret.get(), query["appsecret_proof"]]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        response = await ctx.http.get(f"{settings.graph_url}/{path}", params=query,
                                      headers=headers)
    except RateLimited as error:  # a bare HTTP 429: no Graph error object to read
        wait = error.retry_after or DEFAULT_RATE_WAIT
        budget.hold(ctx.clock.monotonic() + wait, "the Graph API answered HTTP 429")
        raise RateLimited(error.message, retry_after=wait) from None
    usage = read_usage(response.headers)
    budget.observe(usage, ctx.clock.monotonic(), settings.usage_threshold)
    ctx.log.debug("graph api call", path=path, status=response.status, usage=usage.ratio)
    try:
        payload = response.json()
    except ParseError as error:
        problem = f"HTTP {response.status}, not JSON: {error.message}"
    else:
        problem = None
    if problem is not None:
        # A proxy's or server's own error page: the status says what happened.
        if response.status >= 400:
            response.raise_for_status()
        raise ParseError(problem)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        error = graph_error(payload["error"], status=response.status, headers=response.headers,
                            secrets=secrets)
        if isinstance(error, RateLimited) and error.retry_after:
            budget.hold(ctx.clock.monotonic() + error.retry_after, error.message)
        raise error
    if response.status >= 400:
        response.raise_for_status()
    if not isinstance(payload, dict):
        raise ParseError(f"the Graph API answered {type(payload).__name__}, not a JSON object")
    return payload


def parse_graph_time(value: object) -> datetime | None:
    """``2019-12-27T00:20:34+0000`` (Graph API style) as aware UTC, or None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else None


def graph_posts(
    items: Sequence[Any], *, time_key: str, url_key: str, horizon: datetime
) -> list[Post]:
    """Posts from Graph API items (``{"id", time_key, url_key}``), skipping undated items and
    items dated after ``horizon`` (scheduled or a wrong clock). Items none of which has a
    readable ``time_key`` are a :class:`ParseError` (not "no posts")."""
    posts: list[Post] = []
    undated = 0
    for item in items:
        if not isinstance(item, dict):
            continue
        published = parse_graph_time(item.get(time_key))
        if published is None:
            undated += 1
            continue
        if published > horizon:
            continue
        url = item.get(url_key)
        posts.append(Post(published, id=str(item.get("id")) if item.get("id") else None,
                          url=url if isinstance(url, str) else None))
    if undated and not posts and undated == sum(isinstance(i, dict) for i in items):
        raise ParseError(f"none of the {undated} items has a readable {time_key}")
    return posts


# -- validate --------------------------------------------------------------------------------


def budget_lines(
    platform: str,
    accounts: Sequence[Account],
    settings: MetaSettings,
    calls_per_check: int,
    today: date | None = None,
) -> list[tuple[str, bool]]:
    """``pantau validate`` lines for one Meta platform: the hourly Graph API calls its
    accounts need against ``hourly_budget``, naming the token by its source (never its
    value). ``validate`` calls each platform alone, so platforms sharing a token print one
    line each: the note says their needs add up against one budget."""
    secret = settings.access_token
    if secret is None or calls_per_check == 0 or not accounts:
        return []
    need = sum(3600.0 / a.interval for a in accounts) * calls_per_check
    budget = settings.hourly_budget
    line = (
        f"Meta token {secret.source}: {len(accounts)} accounts need about {need:.1f} Graph API "
        f"calls/hour of its hourly_budget {budget} (one budget per token: add the lines of "
        "every Meta platform using the same token)"
    )
    lines = [(line, need > budget)]
    if need > budget:
        interval = math.ceil(3600.0 * len(accounts) * calls_per_check / budget / 60.0)
        lines.append((
            f"Meta token {secret.source}: {need:.1f} calls/hour exceed hourly_budget {budget}; "
            f"checks will be deferred: set platforms.{platform}.interval to at least {interval}m",
            True,
        ))
    if settings.token_expires is not None:
        today = today or datetime.now(UTC).date()
        days = (settings.token_expires - today).days
        when = settings.token_expires.isoformat()
        if days < 0:
            lines.append((f"Meta token {secret.source} expired on {when}", True))
        else:
            lines.append((f"Meta token {secret.source} expires on {when} (in {days} days)",
                          days <= EXPIRY_WARNING_DAYS))
    return lines


# -- the base platform -----------------------------------------------------------------------


class MetaPlatform(Platform):
    """What the Meta platforms share: the hub, its collector and the budget report."""

    settings_model = MetaSettings

    def __init__(self, hub: MetaHub | None = None) -> None:
        self.hub = hub if hub is not None else HUB

    def configure(self, settings: PlatformSettings) -> None:
        """Export the token's expiry at start and after reloads, before any check."""
        if isinstance(settings, MetaSettings):
            self.hub.configure(self.name, settings)

    def collectors(self) -> Iterable[Any]:
        """The hub's one collector (the same object from every Meta platform)."""
        self.hub.platforms.add(self.name)
        return [self.hub.collector]

    def graph_calls_per_check(self, settings: PlatformSettings) -> int:
        """Graph API calls one check costs with these settings."""
        return 1

    def budget_report(
        self, accounts: Sequence[Account], settings: PlatformSettings
    ) -> list[tuple[str, bool]]:
        """Hourly Graph API calls needed against the token's budget (see :func:`budget_lines`)."""
        if not isinstance(settings, MetaSettings):
            return []
        return budget_lines(self.name, accounts, settings, self.graph_calls_per_check(settings))

    def horizon(self, ctx: CheckContext) -> datetime:
        """Posts dated after this are ignored."""
        skew = getattr(ctx.settings, "future_skew", 86400.0)
        return ctx.clock.now() + timedelta(seconds=skew)

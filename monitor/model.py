"""The values that flow through pantau: accounts, observations, posts and check errors.

Data flows one way: config -> scheduler -> platform plugin -> :class:`Observation` ->
store -> in-memory state -> metrics. Everything here is immutable and free of I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

__all__ = [
    "REASONS",
    "Account",
    "AuthError",
    "Blocked",
    "CheckError",
    "CheckResult",
    "Deferred",
    "InternalError",
    "NotFound",
    "Observation",
    "ParseError",
    "Post",
    "RateLimited",
    "Timeout",
    "Unreachable",
    "error_for_reason",
]


@dataclass(frozen=True, slots=True)
class Account:
    """One watched account of one agency on one platform, with its effective settings.

    ``account`` is the platform's normalised form (``Platform.normalize``). Durations are
    seconds, already resolved with the precedence account > agency > platform > global.
    """

    agency: str
    platform: str
    account: str
    url: str
    interval: float
    timeout: float
    silence_after: float

    @property
    def key(self) -> tuple[str, str, str]:
        """The identity of the account: ``(agency, platform, account)``."""
        return (self.agency, self.platform, self.account)


@dataclass(frozen=True, slots=True)
class Post:
    """One post seen at the source: when it was published, and its id (and URL if known)."""

    published_at: datetime
    id: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        _require_aware(self.published_at, "Post.published_at")


@dataclass(frozen=True, slots=True)
class Observation:
    """What one successful check saw.

    ``latest_post_at`` is the newest post's time (timezone-aware, normalised to UTC) or
    ``None`` when the account has no posts. ``posts`` are the recent posts seen (for posting
    frequency). ``method`` names what produced it (``feed``, ``graph-api``, ``wp-json``...).

    ``unchanged`` means the source said nothing changed since the last successful check
    (HTTP 304, or the same body): the core then keeps the last known values and counts the
    check as a success. Build one with :meth:`Observation.not_modified`.
    """

    latest_post_at: datetime | None
    post_url: str | None = None
    post_id: str | None = None
    posts: tuple[Post, ...] = ()
    method: str = ""
    unchanged: bool = False

    def __post_init__(self) -> None:
        if self.latest_post_at is not None:
            _require_aware(self.latest_post_at, "Observation.latest_post_at")
            object.__setattr__(self, "latest_post_at", self.latest_post_at.astimezone(UTC))

    @classmethod
    def from_posts(cls, posts: list[Post] | tuple[Post, ...], method: str) -> Observation:
        """The observation for these posts: the newest is the maximum time, never the first."""
        ordered = tuple(sorted(posts, key=lambda p: p.published_at, reverse=True))
        if not ordered:
            return cls(latest_post_at=None, posts=(), method=method)
        newest = ordered[0]
        return cls(
            latest_post_at=newest.published_at,
            post_url=newest.url,
            post_id=newest.id,
            posts=ordered,
            method=method,
        )

    @classmethod
    def not_modified(cls, method: str) -> Observation:
        """The source answered "nothing changed" (304 or identical body)."""
        return cls(latest_post_at=None, method=method, unchanged=True)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check, as the core records it in the store and in memory.

    ``observation`` is set when ``ok``; ``reason``/``message`` when not. ``duration`` is
    in seconds. ``retry_after`` (seconds) is set for ``rate_limited`` when known.
    """

    account: Account
    checked_at: datetime
    ok: bool
    duration: float
    observation: Observation | None = None
    reason: str | None = None
    message: str | None = None
    retry_after: float | None = None

    @classmethod
    def failure(
        cls, account: Account, checked_at: datetime, duration: float, error: CheckError
    ) -> CheckResult:
        return cls(
            account=account,
            checked_at=checked_at,
            ok=False,
            duration=duration,
            reason=error.reason,
            message=str(error),
            retry_after=getattr(error, "retry_after", None),
        )


class CheckError(Exception):
    """A failed check. Each subclass has a fixed ``reason`` (see DESIGN.md).

    The message must be human text that never contains a secret.
    """

    reason: ClassVar[str] = "internal"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Timeout(CheckError):
    """No answer in time."""

    reason = "timeout"
    retryable = True


class Unreachable(CheckError):
    """DNS, connection, TLS failure or HTTP 5xx."""

    reason = "unreachable"
    retryable = True


class RateLimited(CheckError):
    """429 or a platform throttling code. The whole platform pauses for ``retry_after`` s."""

    reason = "rate_limited"

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(CheckError):
    """Missing, invalid or expired token, or a missing permission."""

    reason = "auth"


class NotFound(CheckError):
    """The account does not exist, or is not visible to this method."""

    reason = "not_found"


class Blocked(CheckError):
    """A login wall, consent page, captcha or bot challenge was served instead of data."""

    reason = "blocked"


class ParseError(CheckError):
    """The answer could not be understood, or was too large."""

    reason = "parse"


class InternalError(CheckError):
    """A bug in a plugin: any other exception, or a plugin that overran the check timeout."""

    reason = "internal"


class Deferred(Exception):  # noqa: N818 - not an error: the check did not happen
    """Raised by a plugin *before* it sends anything when its request budget is spent.

    This is not a failed check: nothing is recorded, the platform pauses for ``retry_after``
    seconds (until the budget's next window) and the account is checked then. ``pantau check``
    (one shot) reports it as ``rate_limited``.
    """

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


_ERRORS: dict[str, type[CheckError]] = {
    cls.reason: cls
    for cls in (Timeout, Unreachable, RateLimited, AuthError, NotFound, Blocked, ParseError,
                InternalError)
}

#: Every reason a failed check can carry, in DESIGN.md's order.
REASONS: tuple[str, ...] = tuple(_ERRORS)


def error_for_reason(reason: str) -> type[CheckError]:
    """The error class for a reason string (``KeyError`` for an unknown reason)."""
    return _ERRORS[reason]


def _require_aware(value: datetime, what: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {value.isoformat()}")


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


"""Runs one check of one account, isolating the plugin: whatever it does, a CheckResult comes back.

The caller (the engine) owns the deadline, the duration and the reason, as blackbox_exporter's
prober callers do: a plugin that raises something unexpected, returns garbage or hangs past the
check timeout becomes reason ``internal`` for that one check, and nothing else is disturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from monitor.clock import Clock
from monitor.http import HttpClient, Validators
from monitor.logs import scrub
from monitor.model import (
    Account,
    CheckError,
    CheckResult,
    Deferred,
    InternalError,
    Observation,
)
from monitor.platform import CheckContext, CpuRunner, Platform, PlatformSettings, ThreadRunner

__all__ = ["GRACE", "CheckLog", "CheckOutcome", "Checker", "Memo"]

#: Seconds a plugin may run past the check timeout before the core stops it as ``internal``.
#: The HTTP client already stops at the deadline; the grace covers parsing after the last byte.
GRACE = 5.0

log = structlog.get_logger("pantau.check")
_bind_contextvars = structlog.contextvars.bind_contextvars
try:  # what make_filtering_bound_logger puts in place of a filtered level's method
    from structlog._native import _nop as _STRUCTLOG_NOP
except ImportError:  # pragma: no cover - another structlog: every call binds and logs
    _STRUCTLOG_NOP = None
_reset_contextvars = structlog.contextvars.reset_contextvars


def _nop(*args: Any, **kwargs: Any) -> None:
    return None


class CheckLog:
    """``ctx.log``: ``pantau.check``'s logger bound to the check's agency, platform and account.

    The binding is made at the first line actually written: a level that the configured
    wrapper class filters out (``debug`` at the default ``info``) answers with a no-op without
    binding anything, so that a check that logs nothing costs no logger. Any other attribute
    (``info``, ``bind``, ``new``...) is the bound logger's own.
    """

    __slots__ = ("_bound", "_context")

    def __init__(self, **context: Any) -> None:
        self._context = context
        self._bound: Any = None

    @property
    def bound(self) -> Any:
        """The structlog logger bound to the check's context (made on first use)."""
        if self._bound is None:
            self._bound = log.bind(**self._context)
        return self._bound

    def __getattr__(self, name: str) -> Any:
        if self._bound is None and _filtered(name):
            return _nop
        return getattr(self.bound, name)


def _filtered(name: str) -> bool:
    """Whether the configured wrapper class turns the log method ``name`` into a no-op."""
    wrapper = structlog.get_config()["wrapper_class"]
    return _STRUCTLOG_NOP is not None and getattr(wrapper, name, None) is _STRUCTLOG_NOP


_MISSING = object()


class Memo:
    """Per-account plugin notes; a copy is edited during the check and committed with it."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        # The stored notes are copied at the first write (most checks write none).
        self._data: Mapping[str, Any] = data if data is not None else {}
        self._own = False
        self.changed = False

    @property
    def data(self) -> dict[str, Any]:
        """The notes as edited (a copy of the stored ones: these are never changed)."""
        if not self._own:
            self._data, self._own = dict(self._data), True
        return self._data  # type: ignore[return-value]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self._data.get(key, _MISSING) != value:
            self.data[key] = value
            self.changed = True


@dataclass
class CheckOutcome:
    """A result plus what must be committed with it (validators only after a success)."""

    result: CheckResult
    validators: dict[str, Validators] = field(default_factory=dict)
    memo: dict[str, Any] | None = None


class Checker:
    """Calls ``Platform.latest`` for an account with a fresh context, bounded and isolated."""

    def __init__(
        self,
        http: HttpClient,
        platforms: Mapping[str, Platform],
        settings: Mapping[str, PlatformSettings],
        clock: Clock,
        grace: float = GRACE,
        cpu: CpuRunner | None = None,
    ) -> None:
        self.grace = grace
        #: Where plugins' CPU-heavy work runs (``CheckContext.cpu``); the engine's pool.
        self.cpu: CpuRunner = cpu if cpu is not None else ThreadRunner()
        self.http = http
        self.platforms = platforms
        self.settings = settings
        self.clock = clock

    async def check(self, account: Account, memo: Mapping[str, Any] | None = None) -> CheckOutcome:
        platform = self.platforms[account.platform]
        settings = self.settings[account.platform]
        http = self.http.bind(
            account.platform,
            timeout=account.timeout,
            user_agent=settings.user_agent,
            concurrency=settings.concurrency,
        )
        notes = Memo(memo)
        bound = CheckLog(agency=account.agency, platform=account.platform, account=account.account)
        ctx = CheckContext(
            http=http, settings=settings, log=bound, clock=self.clock, memo=notes,
            account=account, cpu=self.cpu,
        )
        checked_at = self.clock.now()
        started = self.clock.monotonic()
        # Every line logged during the check carries them (merge_contextvars); put back as
        # they were afterwards (tokens: cheaper than bound_contextvars' copy of the context).
        tokens = _bind_contextvars(
            agency=account.agency, platform=account.platform, account=account.account
        )
        try:
            try:
                async with asyncio.timeout(account.timeout + self.grace):
                    observation = await platform.latest(account.account, ctx)
                if not isinstance(observation, Observation):
                    raise InternalError(
                        f"plugin returned {type(observation).__name__}, not an Observation"
                    )
            except Deferred:
                raise  # not a check: the caller reschedules it
            except CheckError as exc:
                error: CheckError = exc
            except TimeoutError:
                error = InternalError(
                    f"plugin did not finish within the check timeout ({account.timeout:g}s)"
                )
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - a plugin bug is one failed check
                error = InternalError(f"plugin error: {type(exc).__name__}: {exc}")
                bound.error("plugin raised", exc_info=True)
            else:
                duration = self.clock.monotonic() - started
                result = CheckResult(account, checked_at, True, duration, observation=observation)
                return CheckOutcome(
                    result,
                    validators=http.pending_validators,  # the check's own: no one else has it
                    memo=notes.data if notes.changed else None,
                )
        finally:
            _reset_contextvars(**tokens)
        duration = self.clock.monotonic() - started
        error.message = scrub(error.message)
        error.args = (error.message,)
        result = CheckResult.failure(account, checked_at, duration, error)
        return CheckOutcome(result, memo=notes.data if notes.changed else None)

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

__all__ = ["GRACE", "CheckOutcome", "Checker", "Memo"]

#: Seconds a plugin may run past the check timeout before the core stops it as ``internal``.
#: The HTTP client already stops at the deadline; the grace covers parsing after the last byte.
GRACE = 5.0

log = structlog.get_logger("pantau.check")


class Memo:
    """Per-account plugin notes; a copy is edited during the check and committed with it."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.changed = False

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if self.data.get(key, object()) != value:
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
        bound = log.bind(agency=account.agency, platform=account.platform, account=account.account)
        ctx = CheckContext(
            http=http, settings=settings, log=bound, clock=self.clock, memo=notes,
            account=account, cpu=self.cpu,
        )
        checked_at = self.clock.now()
        started = self.clock.monotonic()
        with structlog.contextvars.bound_contextvars(
            agency=account.agency, platform=account.platform, account=account.account
        ):
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
                    validators=dict(http.pending_validators),
                    memo=notes.data if notes.changed else None,
                )
        duration = self.clock.monotonic() - started
        error.message = scrub(error.message)
        error.args = (error.message,)
        result = CheckResult.failure(account, checked_at, duration, error)
        return CheckOutcome(result, memo=notes.data if notes.changed else None)

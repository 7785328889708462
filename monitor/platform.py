"""What a platform plugin implements (:class:`Platform`) and is handed (:class:`CheckContext`).

A plugin subclasses :class:`Platform`, optionally declares its settings as a subclass of
:class:`PlatformSettings` (every endpoint it calls must be a setting, so tests can point it
at a loopback fake), and registers an instance through the ``register_platforms`` hook.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from monitor.durations import Duration
from monitor.model import Account, Observation

if TYPE_CHECKING:
    from monitor.clock import Clock
    from monitor.http import PlatformHttp

__all__ = [
    "AccountMemo",
    "CheckContext",
    "CpuRunner",
    "Platform",
    "PlatformSettings",
    "ThreadRunner",
]

T = TypeVar("T")


class PlatformSettings(BaseModel):
    """Settings every platform accepts under ``platforms.<name>`` in the config.

    Subclass it to add a platform's own fields (endpoints, secrets as
    :data:`monitor.secrets.SecretField`). Unknown keys are errors.
    ``interval``, ``timeout`` and ``silence_after`` override the global values for every
    account of the platform (an agency or an account may override them again).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Duration | None = None
    timeout: Duration | None = None
    silence_after: Duration | None = None
    concurrency: int = Field(default=4, ge=1, le=256, description="checks of this platform at once")
    user_agent: str | None = Field(default=None, description="overrides pantau's User-Agent")


class AccountMemo(Protocol):
    """Small persistent per-account notes for a plugin (a resolved channel id, the method that
    worked last time). Values are JSON-serialisable. Writes are committed with the check."""

    def get(self, key: str, default: Any = None) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class CpuRunner(Protocol):
    """Runs CPU-heavy work (parsing a response) away from the event loop."""

    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T: ...


class ThreadRunner:
    """The fallback :class:`CpuRunner`: a thread of the default executor (holds the GIL)."""

    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(functools.partial(func, *args, **kwargs))


@dataclass(frozen=True, slots=True)
class CheckContext:
    """Everything a plugin may use during one check.

    - ``http``: the shared HTTP client bound to this platform and this check (User-Agent,
      timeouts, body cap, retries, conditional GET, per-platform concurrency);
    - ``settings``: this platform's settings, secrets already resolved;
    - ``log``: a structlog logger bound to agency, platform and account;
    - ``clock``: the clock (use ``clock.now()``, never ``datetime.now()``);
    - ``memo``: persistent per-account notes;
    - ``account``: the account being checked, with its effective settings;
    - ``cpu``: where CPU-heavy work runs (see :meth:`run_cpu`).
    """

    http: PlatformHttp
    settings: PlatformSettings
    log: Any
    clock: Clock
    memo: AccountMemo
    account: Account
    cpu: CpuRunner = field(default_factory=ThreadRunner)

    async def run_cpu(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` off the event loop: in the core's worker processes
        when the daemon has them (``check.workers``), else in a thread. ``func`` must be a
        module-level function and its arguments and result picklable (bytes, str, numbers,
        datetimes, tzinfo, model objects); exceptions it raises are re-raised here."""
        return await self.cpu.run(func, *args, **kwargs)


class Platform:
    """Base class of a platform. Subclasses set ``name`` and implement :meth:`latest`."""

    #: The platform's name as used in configs, metrics and output: lower-case, e.g. ``"rss"``.
    name: ClassVar[str] = ""
    #: The model of ``platforms.<name>`` in the config.
    settings_model: ClassVar[type[PlatformSettings]] = PlatformSettings

    def normalize(self, account: str) -> str:
        """The canonical form of an account string, or ``ValueError`` with a clear message.

        ``"@Dinsos.Cilegon "`` -> ``"dinsos.cilegon"`` on Instagram. The default strips spaces.
        """
        value = account.strip()
        if not value:
            raise ValueError("account is empty")
        return value

    def url(self, account: str) -> str:
        """A human URL for the (normalised) account, for dashboards and the board."""
        return account

    def configure(self, settings: PlatformSettings) -> None:
        """Called with this platform's settings when the daemon starts and after each reload,
        before any check (e.g. to export a token's expiry at once). Default: nothing."""

    def collectors(self) -> Iterable[Any]:
        """prometheus_client collectors of this platform's own metrics (quota used, API
        usage...), registered on pantau's registry by the daemon. Default: none."""
        return ()

    def budget_report(
        self, accounts: Sequence[Account], settings: PlatformSettings
    ) -> list[tuple[str, bool]]:
        """Lines for ``pantau validate`` about this platform's request budget, each with
        ``True`` when it is a warning (the configured accounts need more than the budget)."""
        return []

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """Find the newest post of ``account``. Raise a :class:`monitor.model.CheckError`
        subclass on failure; any other exception is recorded as ``internal``."""
        raise NotImplementedError

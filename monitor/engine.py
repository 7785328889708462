"""What ``pantau check`` and ``pantau run`` share: config, store, HTTP client, checker, state.

:meth:`Engine.check` is the one path of a check: run it (isolated), apply the result to the
account's state, commit it to the store, and only then report it (in memory, to metrics).

The engine owns the worker pool where plugins parse (``CheckContext.cpu``, sized by
``check.workers``): created with the engine, its processes started only when a plugin first
calls ``run_cpu``, closed by :meth:`Engine.close`. A reload that changes ``check.workers``
takes effect at once: new checks use a new pool, the old one is closed when the checks
still using it are done.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import structlog

from monitor.checker import Checker, CheckOutcome
from monitor.clock import Clock
from monitor.config import AgencyInfo, Config
from monitor.http import HttpClient, Validators, default_user_agent
from monitor.logs import register_secrets
from monitor.model import Account, CheckResult, Deferred, RateLimited
from monitor.platform import CpuRunner
from monitor.plugins import Plugins
from monitor.secrets import Secret
from monitor.state import AccountState
from monitor.store import Store, StoreError
from monitor.workers import CpuPool, make_cpu_runner

__all__ = ["Engine"]

log = structlog.get_logger("pantau.engine")
Key = tuple[str, str, str]


class Engine:
    """Holds the live pieces. It is also the metrics view (accounts, states, now)."""

    def __init__(
        self,
        config: Config,
        plugins: Plugins,
        store: Store,
        clock: Clock,
        rng: random.Random | None = None,
    ) -> None:
        self.plugins = plugins
        self.store = store
        self.clock = clock
        self.rng = rng or random.Random()
        self.states: dict[Key, AccountState] = {}
        self.validators: dict[str, Validators] = {}
        self.memos: dict[Key, dict[str, Any]] = {}
        self.http = HttpClient(
            user_agent=default_user_agent(), validators=self, clock=clock, rng=self.rng
        )
        self.config = config
        # The plugins' modules, imported by each worker before its first parse.
        self._preload = sorted({type(p).__module__ for p in plugins.platforms.values()})
        self.cpu: CpuRunner = make_cpu_runner(config.check.worker_count, self._preload)
        self._retiring: dict[CpuPool, asyncio.Task[None]] = {}
        self.checker = Checker(self.http, plugins.platforms, config.platforms, clock,
                               cpu=self.cpu)
        self.observers: list[Callable[[CheckResult], None]] = []
        self.store_error: str | None = None
        #: memory and store may differ (a store write failed): the daemon then writes no
        #: start snapshot
        self.diverged = False
        self._late: set[asyncio.Future[Any]] = set()  # records whose checks were cancelled
        self.apply_config(config)

    @classmethod
    async def open(
        cls, config: Config, plugins: Plugins, clock: Clock, rng: random.Random | None = None
    ) -> Engine:
        """Open the store named by the config and load the last known state from it."""
        store = await Store.open(config.state)
        engine = cls(config, plugins, store, clock, rng)
        stored = await store.load()
        engine.states.update(stored.accounts)
        engine.validators.update(stored.validators)
        engine.memos.update(stored.memos)
        return engine

    async def __aenter__(self) -> Engine:
        await self.http.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._close_cpu()
        finally:
            try:
                await self.http.close()
            finally:
                await self.store.close()

    async def _close_cpu(self) -> None:
        """Stop the worker processes (bounded: running tasks are killed after a moment)."""
        pools = [pool for pool in (self.cpu, *self._retiring) if isinstance(pool, CpuPool)]
        for task in self._retiring.values():
            task.cancel()
        self._retiring.clear()
        for pool in pools:
            await pool.aclose()

    def _replace_cpu(self, workers: int) -> None:
        """``check.workers`` changed: new checks use a new runner; the old pool is closed
        once the checks still using it are done."""
        old = self.cpu
        self.cpu = make_cpu_runner(workers, self._preload)
        self.checker.cpu = self.cpu
        log.info("check.workers changed; new checks use the new worker pool", workers=workers)
        if not isinstance(old, CpuPool):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing can be using it
            old.close()
            return
        task = loop.create_task(old.retire())
        self._retiring[old] = task
        task.add_done_callback(lambda _: self._retiring.pop(old, None))

    # -- configuration --------------------------------------------------------------------
    def apply_config(self, config: Config) -> None:
        """Switch to a (validated) config. Secrets in it are registered for log scrubbing."""
        if config.check.worker_count != self.config.check.worker_count:
            self._replace_cpu(config.check.worker_count)
        self.config = config
        self.checker.settings = config.platforms
        register_secrets(
            value.get()
            for settings in config.platforms.values()
            for value in dict(settings).values()
            if isinstance(value, Secret)
        )

    def _landed(self, key: Key, before: AccountState | None, state: AccountState,
                outcome: CheckOutcome, record: asyncio.Future[Any]) -> None:
        """A cancelled check's record finished: bring memory to what the store holds."""
        self._late.discard(record)
        if record.cancelled() or record.exception() is not None:
            self.diverged = True
            return
        if self.states.get(key) is not before:  # another check of it landed meanwhile
            self.diverged = True
            return
        self._remember(key, state, outcome)

    def _remember(self, key: Key, state: AccountState, outcome: CheckOutcome) -> None:
        """Memory after a committed (or, in a store outage, uncommittable) check."""
        self.states[key] = state
        self.validators.update(outcome.validators)
        if outcome.memo is not None:
            self.memos[key] = outcome.memo

    async def settle(self) -> None:
        """Wait for the records of cancelled checks (the store commits them anyway), so that
        memory and store agree before a start snapshot is taken."""
        while self._late:
            await asyncio.gather(*self._late, return_exceptions=True)
            await asyncio.sleep(0)  # their done-callbacks (_landed) run first

    # -- the MetricsView protocol ---------------------------------------------------------
    @property
    def accounts(self) -> Sequence[Account]:
        return self.config.accounts

    @property
    def agencies(self) -> Sequence[AgencyInfo]:
        return self.config.agencies

    @property
    def missing(self) -> Sequence[tuple[str, str]]:
        return self.config.missing

    def now(self) -> datetime:
        return self.clock.now()

    # -- the ValidatorSource protocol -----------------------------------------------------
    def get_validators(self, url: str) -> Validators | None:
        return self.validators.get(url)

    # -- readiness ------------------------------------------------------------------------
    def ready(self) -> tuple[bool, dict[str, bool]]:
        parts = {
            "store": self.store_error is None,
            "config": self.config is not None,
            "plugins": bool(self.plugins.platforms),
        }
        return all(parts.values()), parts

    # -- checking -------------------------------------------------------------------------
    async def check(self, account: Account, *, allow_defer: bool = False) -> CheckResult:
        """Check one account, commit the result, then update memory and tell the observers.

        A plugin whose request budget is spent raises :class:`Deferred`: with
        ``allow_defer`` (the daemon) it propagates and nothing is recorded; without it (a
        one-shot ``check``) it is recorded as ``rate_limited``.
        """
        key = account.key
        try:
            outcome = await self.checker.check(account, self.memos.get(key))
        except Deferred as deferred:
            if allow_defer:
                raise
            error = RateLimited(deferred.message, retry_after=deferred.retry_after)
            outcome = CheckOutcome(CheckResult.failure(account, self.clock.now(), 0.0, error))
        result = outcome.result
        before = self.states.get(key)
        state = (before or AccountState()).apply(result)
        record = asyncio.ensure_future(
            self.store.record(result, state, validators=outcome.validators, memo=outcome.memo)
        )
        try:
            await asyncio.shield(record)
        except asyncio.CancelledError:
            # The store commits it anyway (see Store.record): memory follows when it lands,
            # so that the two still agree at a stop (the start snapshot needs it; settle()).
            self._late.add(record)
            record.add_done_callback(
                functools.partial(self._landed, key, before, state, outcome)
            )
            raise
        except StoreError as exc:
            self.diverged = True
            if self.store_error is None:
                log.error("state store write failed; serving last values", error=str(exc))
            self.store_error = str(exc)
        else:
            if self.store_error is not None:
                log.info("state store writable again")
            self.store_error = None
        _log_transition(self.states.get(key), result)
        self._remember(key, state, outcome)
        for observe in self.observers:
            observe(result)
        return result



def _log_transition(before: AccountState | None, result: CheckResult) -> None:
    """One log line when an account starts failing (or fails with another reason), and one
    when it recovers, so that journalctl shows what changed without a line per check."""
    if result.ok and (before is None or before.ok is not False):
        return  # the common case: nothing to say
    account = result.account
    where = {"agency": account.agency, "platform": account.platform, "account": account.account}
    if not result.ok:
        if before is None or before.ok is not False or before.reason != result.reason:
            log.warning("check failing", reason=result.reason, error=result.message, **where)
        else:
            log.debug("check still failing", reason=result.reason, error=result.message, **where)
    else:
        log.info("check recovered", after_failures=before.consecutive_failures, **where)

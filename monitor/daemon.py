"""The daemon: wires config, engine, scheduler, metrics and server, and runs until told to stop.

Lifecycle:
- start: serve the snapshot of the last clean stop at once when it is still valid (see
  :mod:`monitor.snapshot`: with 100,000 accounts the next steps take seconds), load the config,
  open the store and load the last known state, serve ``/metrics`` with those values, then
  start checking (READY=1 to systemd);
- SIGHUP: reload the config; a bad new config is logged and the old one kept;
- SIGTERM/SIGINT: stop scheduling, cancel in-flight checks, write the snapshot, close the
  store, exit 0 (bounded by :data:`STOP_TIMEOUT`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from pathlib import Path

import structlog

from monitor import __version__, gctune, snapshot
from monitor.clock import Clock, SystemClock
from monitor.config import Config, ConfigError, load_config
from monitor.early import EarlyServer, serve_snapshot
from monitor.engine import Engine
from monitor.metrics import Metrics, gzip_segments
from monitor.model import Account, Deferred
from monitor.plugins import Plugins
from monitor.scheduler import Scheduler
from monitor.sdnotify import notify, watchdog_interval
from monitor.server import ServerThread, make_app

__all__ = ["PRUNE_EVERY", "STOP_TIMEOUT", "Daemon"]

log = structlog.get_logger("pantau.daemon")

STOP_TIMEOUT = 8.0
PRUNE_EVERY = 3600.0
MAX_WAIT = 60.0


class Daemon:
    def __init__(
        self,
        config_path: str | Path,
        plugins: Plugins,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        environ: dict[str, str] | None = None,
        scheduler: Scheduler | None = None,
        grace: float | None = None,
        tune_gc: bool = False,
    ) -> None:
        self.config_path = Path(config_path)
        self.plugins = plugins
        self.clock = clock or SystemClock()
        self.rng = rng or random.Random()
        self.environ = environ
        self.scheduler = scheduler if scheduler is not None else Scheduler(self.rng)
        self.grace = grace
        #: Freeze the loaded heap and make collections rarer (:mod:`monitor.gctune`);
        #: `pantau run` sets it, tests in one process do not.
        self.tune_gc = tune_gc
        self.engine: Engine | None = None
        self.metrics: Metrics | None = None
        self.port: int | None = None
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._reload = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem = asyncio.Semaphore(1)
        self._next_prune = 0.0
        self._config_text = b""

    # -- control (signal handlers call these) ---------------------------------------------
    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload = True
        self._wake.set()

    # -- main -----------------------------------------------------------------------------
    async def run(self) -> None:
        """Run until stopped. Raises ConfigError or StoreError if it cannot start."""
        early = await self._serve_snapshot()
        sock = None
        try:
            config = await asyncio.to_thread(self._load_config)
            engine = await Engine.open(config, self.plugins, self.clock, self.rng)
            try:
                metrics = self._make_metrics(engine, config)
                # the first render of many accounts takes seconds: build it off the loop
                # (while the snapshot, if any, is still being served), before any check runs,
                # so the first scrape finds the cache warm
                await asyncio.to_thread(metrics.render_gzip)
                if self.tune_gc:
                    gctune.tune()
                if (early is not None and early.host == config.listen_host
                        and config.listen_port in (0, early.port)):
                    sock = early.sock
                server = ServerThread()
                await server.start(
                    make_app(metrics, engine, clock=self.clock, board=engine),
                    config.listen_host, config.listen_port, sock=sock,
                )
            except BaseException:
                await engine.close()
                raise
        finally:
            if early is not None:
                await early.close()  # the real server (if any) has the socket already
                if sock is None:
                    early.release()
        self.port = server.port
        self._sem = asyncio.Semaphore(config.check.concurrency)
        self._install_signals()
        try:
            async with engine:
                self.scheduler.plan(config.accounts, engine.states, self.clock.now())
                log.info("pantau started", version=__version__, accounts=len(config.accounts),
                         listen=f"{config.listen_host}:{self.port}", state=str(config.state))
                notify("READY=1", self.environ)
                self.started.set()
                watchdog = watchdog_interval(self.environ)
                if watchdog:
                    task = asyncio.create_task(self._watchdog(watchdog))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                await self._loop()
                notify("STOPPING=1", self.environ)
                log.info("stopping", in_flight=len(self._tasks))
                await self._cancel_checks()
                await self._write_snapshot()
        finally:
            self._remove_signals()
            await server.close()
            log.info("pantau stopped")

    def _load_config(self) -> Config:
        """Load the config and keep its text (the snapshot is tied to it). The text is read
        just before the parse: an edit between the two reads only makes the next start's
        snapshot check fail, never serve a wrong one."""
        try:
            text = self.config_path.read_bytes()
        except OSError:
            text = b""  # load_config reports the problem
        config = load_config(self.config_path, self.plugins.platforms, self.environ)
        self._config_text = text
        return config

    def _make_metrics(self, engine: Engine, config: Config) -> Metrics:
        self.engine = engine
        if self.grace is not None:
            engine.checker.grace = self.grace
        metrics = Metrics(engine, __version__)
        metrics.init_platforms(sorted({a.platform for a in config.accounts}))
        engine.observers.append(metrics.observe_check)
        self._register_platform_collectors(metrics)
        self._configure_platforms(config)
        self.metrics = metrics
        return metrics

    async def _serve_snapshot(self) -> EarlyServer | None:
        """Serve the last clean stop's snapshot while starting, when it is still valid."""
        environ = self.environ if self.environ is not None else dict(os.environ)
        found = await asyncio.to_thread(snapshot.find, self.config_path, environ)
        if found is None:
            return None
        try:
            return await serve_snapshot(found)
        except Exception as exc:  # noqa: BLE001 - the snapshot is an optimisation only
            log.warning("snapshot not served", error=f"{type(exc).__name__}: {exc}")
            return None

    async def _write_snapshot(self) -> None:
        """At a clean stop: save what /metrics shows, tied to the store's generation, so the
        next start serves it at once. Skipped when memory may differ from the store."""
        engine, metrics = self.engine, self.metrics
        if engine is None or metrics is None:
            return
        config = engine.config
        try:
            await asyncio.wait_for(engine.settle(), STOP_TIMEOUT)
        except TimeoutError:
            engine.diverged = True
        if engine.store_error is not None or engine.diverged:
            snapshot.discard(config.state)
            log.info("no snapshot written: memory may differ from the store")
            return
        started = time.monotonic()

        def build_and_write() -> None:
            body = gzip_segments(metrics.core_segments())
            snapshot.write(config.state, generation=engine.store.generation,
                           config_text=self._config_text, listen_host=config.listen_host,
                           listen_port=self.port or config.listen_port, gzip_body=body)

        try:
            await asyncio.to_thread(build_and_write)
        except Exception as exc:  # noqa: BLE001 - a missing snapshot only slows the next start
            log.warning("snapshot not written", error=f"{type(exc).__name__}: {exc}")
            snapshot.discard(config.state)
        else:
            log.info("snapshot written", seconds=round(time.monotonic() - started, 3))

    def _configure_platforms(self, config: Config) -> None:
        for name, platform in self.plugins.platforms.items():
            try:
                platform.configure(config.platforms[name])
            except Exception as exc:  # noqa: BLE001 - a plugin bug never stops the daemon
                log.error("platform could not be configured", platform=name,
                          error=f"{type(exc).__name__}: {exc}")

    def _register_platform_collectors(self, metrics: Metrics) -> None:
        for name, platform in self.plugins.platforms.items():
            try:
                for collector in platform.collectors():
                    metrics.register(collector)
            except Exception as exc:  # noqa: BLE001 - a plugin's metrics never stop the daemon
                log.error("platform metrics could not be registered", platform=name,
                          error=f"{type(exc).__name__}: {exc}")

    async def _watchdog(self, interval: float) -> None:
        """Ping systemd's watchdog from the event loop: a stuck loop stops the pings."""
        while True:
            notify("WATCHDOG=1", self.environ)
            await asyncio.sleep(interval)

    async def _loop(self) -> None:
        engine = self.engine
        assert engine is not None
        while not self._stop.is_set():
            if self._reload:
                self._reload = False
                await self.reload()
            now = self.clock.now()
            for account in self.scheduler.take_due(now):
                task = asyncio.create_task(self._check(account))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if now.timestamp() >= self._next_prune:
                self._next_prune = now.timestamp() + PRUNE_EVERY
                self._spawn_prune()
            next_due = self.scheduler.next_due()
            wait = MAX_WAIT if next_due is None else next_due - now.timestamp()
            await self._sleep(min(MAX_WAIT, max(0.0, wait)))

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if self._stop.is_set() or self._reload:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, waker):
                fut.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def _check(self, account: Account) -> None:
        engine = self.engine
        assert engine is not None
        async with self._sem:
            if self._stop.is_set():
                return
            try:
                result = await engine.check(account, allow_defer=True)
            except Deferred as exc:
                result, deferred = None, exc
        now = self.clock.now()
        if result is None:  # the platform's budget is spent: wait for its next window
            until = self.scheduler.pause(account.platform, now, deferred.retry_after)
            self.scheduler.defer(account, until)
            log.info("request budget spent; checks wait", platform=account.platform,
                     until=until, reason=deferred.message)
            self._wake.set()
            return
        if result.reason == "rate_limited":
            until = self.scheduler.pause(account.platform, now, result.retry_after)
            log.warning("platform rate limited; pausing", platform=account.platform,
                        until=until)
        state = engine.states.get(account.key)
        if state is not None:
            self.scheduler.done(account, state, now)
        self._wake.set()

    def _spawn_prune(self) -> None:
        engine = self.engine
        assert engine is not None

        async def prune() -> None:
            try:
                removed = await engine.store.prune(self.clock.now(), engine.config.retention)
            except Exception as exc:  # noqa: BLE001 - pruning is housekeeping, never fatal
                log.warning("pruning history failed", error=str(exc))
            else:
                if removed:
                    log.info("pruned old check history", rows=removed)

        task = asyncio.create_task(prune())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reload(self) -> bool:
        """Load the config again; keep the old one if the new one is invalid."""
        engine = self.engine
        assert engine is not None
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}", self.environ)
        try:
            try:
                config = self._load_config()
            except ConfigError as exc:
                log.error("reload failed; keeping the previous config", error=str(exc))
                return False
            old = engine.config
            if (config.listen_host, config.listen_port) != (old.listen_host, old.listen_port):
                log.warning("listen address changed; it takes effect at the next restart")
            if config.state != old.state:
                log.warning("state path changed; it takes effect at the next restart")
            engine.apply_config(config)
            self._configure_platforms(config)
            if self.metrics is not None:
                self.metrics.init_platforms(sorted({a.platform for a in config.accounts}))
            self._sem = asyncio.Semaphore(config.check.concurrency)
            self.scheduler.plan(config.accounts, engine.states, self.clock.now())
            if self.tune_gc:
                gctune.refreeze()
            log.info("config reloaded", accounts=len(config.accounts))
            return True
        finally:
            notify("READY=1", self.environ)

    async def _cancel_checks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)

    # -- signals --------------------------------------------------------------------------
    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_reload)

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

"""The bodies of the CLI commands. Each returns an exit code; results go to stdout."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import structlog

from monitor.clock import Clock
from monitor.config import Config
from monitor.daemon import Daemon
from monitor.durations import format_duration
from monitor.engine import Engine
from monitor.model import Account, CheckResult
from monitor.plugins import Plugins
from monitor.state import AccountState
from monitor.store import Store

__all__ = ["check", "discover", "plugins", "report", "rfc3339", "run", "status", "validate"]

log = structlog.get_logger("pantau.cli")


def rfc3339(value: datetime | None) -> str | None:
    """``2026-11-20T03:15:00Z`` (UTC, whole seconds), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "-"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d ago"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h ago"
    return f"{int(seconds // 60)}m ago"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


# -- plugins -------------------------------------------------------------------------------
def plugins(loaded: Plugins, fmt: str, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    items = [
        {"name": p.name, "version": p.version, "platforms": p.platforms, "error": p.error}
        for p in loaded.loaded
    ]
    if fmt == "json":
        json.dump(items, out, indent=2)
        out.write("\n")
        return 0
    rows = [["PLUGIN", "VERSION", "PLATFORMS", "STATUS"]]
    rows += [[i["name"], i["version"] or "-", ",".join(i["platforms"]) or "-",
              "failed: " + i["error"] if i["error"] else "ok"] for i in items]
    _table(rows, out)
    return 0


# -- validate ------------------------------------------------------------------------------
def validate(config: Config, loaded: Plugins, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    per_platform = Counter(a.platform for a in config.accounts)
    checks_per_hour: dict[str, float] = {}
    for account in config.accounts:
        checks_per_hour[account.platform] = (
            checks_per_hour.get(account.platform, 0.0) + 3600.0 / account.interval
        )
    out.write(f"{config.source}: OK\n")
    out.write(f"  agencies: {len(config.agencies)}\n")
    out.write(f"  accounts: {len(config.accounts)}\n")
    for name in sorted(per_platform):
        out.write(
            f"    {name}: {per_platform[name]} accounts, "
            f"about {checks_per_hour[name]:.1f} checks/hour "
            f"({checks_per_hour[name] * 24:.0f}/day)\n"
        )
    for name in sorted(per_platform):
        platform = loaded.platforms[name]
        accounts = [a for a in config.accounts if a.platform == name]
        try:
            lines = platform.budget_report(accounts, config.platforms[name])
        except Exception as exc:  # noqa: BLE001 - a plugin bug must not break validate
            lines = [(f"budget report failed: {type(exc).__name__}: {exc}", True)]
        for text, warning in lines:
            out.write(f"    {'WARNING: ' if warning else ''}{name}: {text}\n")
    out.write(f"  expected platforms: {', '.join(config.expect) or '-'}\n")
    out.write(f"  missing accounts (agency/platform): {len(config.missing)}\n")
    for agency, platform in config.missing:
        out.write(f"    {agency}/{platform}\n")
    not_installed = sorted(set(config.expect) - set(loaded.platforms))
    if not_installed:
        out.write(f"  expected but no plugin installed: {', '.join(not_installed)}\n")
    out.write(
        f"  check: every {format_duration(config.check.interval)}, "
        f"timeout {format_duration(config.check.timeout)}, "
        f"{config.check.concurrency} at once; silence after "
        f"{format_duration(config.silence_after)}\n"
    )
    workers = config.check.worker_count
    where = f"{workers} worker process{'es' if workers != 1 else ''}" if workers else "threads"
    out.write(f"  parsing: in {where} (check.workers: {config.check.workers})\n")
    out.write(f"  listen: {config.listen}   state: {config.state}\n")
    return 0


# -- status --------------------------------------------------------------------------------
def _record(account: Account, state: AccountState | None) -> dict[str, Any]:
    """One account's JSON object (DESIGN.md's shape) from its last known state."""
    state = state or AccountState()
    error = None
    if state.ok is False:
        error = {"reason": state.reason, "message": state.message}
    return {
        "agency": account.agency,
        "platform": account.platform,
        "account": account.account,
        "ok": bool(state.ok),
        "latest_post_at": rfc3339(state.last_post_at),
        "post_url": state.post_url,
        "method": state.method,
        "error": error,
    }


def _rows(
    accounts: Sequence[Account], states: dict[tuple[str, str, str], AccountState], now: datetime
) -> list[list[str]]:
    rows = [["AGENCY", "PLATFORM", "ACCOUNT", "STATUS", "LAST POST", "SILENCE", "DETAIL"]]
    for account in accounts:
        state = states.get(account.key) or AccountState()
        if state.ok is None:
            status = "unchecked"
        else:
            status = "ok" if state.ok else f"FAILED ({state.reason})"
        silent = "-"
        if state.last_post_at is not None:
            quiet = (now - state.last_post_at).total_seconds()
            silent = "SILENT" if quiet > account.silence_after else "fine"
        detail = (state.message or "") if state.ok is False else (state.method or "")
        rows.append([account.agency, account.platform, account.account, status,
                     _age(now, state.last_post_at), silent, detail[:80]])
    return rows


async def status(config: Config, loaded: Plugins, fmt: str, clock: Clock,
                 out: TextIO | None = None) -> int:
    out = out or sys.stdout
    store = await Store.open(config.state)
    try:
        stored = await store.load()
    finally:
        await store.close()
    if fmt == "json":
        json.dump([_record(a, stored.accounts.get(a.key)) for a in config.accounts], out, indent=2)
        out.write("\n")
    else:
        _table(_rows(config.accounts, stored.accounts, clock.now()), out)
    return 0


# -- check ---------------------------------------------------------------------------------
def select(config: Config, agencies: Sequence[str] | None,
           platforms: Sequence[str] | None) -> list[Account]:
    """The accounts picked by --agency/--platform; ValueError names an unknown one."""
    known_agencies = {a.id for a in config.agencies}
    for agency in agencies or ():
        if agency not in known_agencies:
            raise ValueError(f"no agency {agency!r} in {config.source}")
    known_platforms = set(config.platforms)
    for platform in platforms or ():
        if platform not in known_platforms:
            raise ValueError(
                f"no platform {platform!r}; installed: {', '.join(sorted(known_platforms))}"
            )
    return [
        a for a in config.accounts
        if (not agencies or a.agency in agencies) and (not platforms or a.platform in platforms)
    ]


async def check(
    config: Config,
    loaded: Plugins,
    fmt: str,
    clock: Clock,
    *,
    agencies: Sequence[str] | None = None,
    platforms: Sequence[str] | None = None,
    out: TextIO | None = None,
    progress: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    try:
        accounts = select(config, agencies, platforms)
    except ValueError as exc:
        print(f"pantau check: {exc}", file=sys.stderr)
        return 2
    progress = progress if progress is not None else (sys.stderr if sys.stderr.isatty() else None)
    engine = await Engine.open(config, loaded, clock)
    results: list[CheckResult] = []
    async with engine:
        sem = asyncio.Semaphore(config.check.concurrency)

        async def one(account: Account) -> None:
            async with sem:
                result = await engine.check(account)  # a deferral is reported as rate_limited
            results.append(result)
            if progress is not None:
                progress.write(f"\rchecked {len(results)}/{len(accounts)} "
                               f"({sum(not r.ok for r in results)} failed)")
                progress.flush()

        await asyncio.gather(*(one(a) for a in accounts))
        if progress is not None and accounts:
            progress.write("\n")
        states = dict(engine.states)
    if fmt == "json":
        json.dump([_record(a, states.get(a.key)) for a in accounts], out, indent=2)
        out.write("\n")
    elif accounts:
        _table(_rows(accounts, states, clock.now()), out)
    else:
        out.write("no accounts selected\n")
    return 1 if any(not r.ok for r in results) else 0


# -- run -----------------------------------------------------------------------------------
async def run(config_path: str, loaded: Plugins) -> int:
    daemon = Daemon(config_path, loaded, tune_gc=True)
    try:
        await daemon.run()
    except OSError as exc:
        print(f"pantau: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


# -- report, discover ----------------------------------------------------------------------
async def report(config: Config, month: str | None, fmt: str, clock: Clock, *,
                 timezone: str = "Asia/Jakarta", out: TextIO | None = None) -> int:
    from monitor.report import report_command

    return await report_command(config, month, fmt, clock, timezone=timezone, out=out)


async def discover(urls: Sequence[str], loaded: Plugins, clock: Clock, *, fmt: str = "text",
                   timeout: float = 20.0, out: TextIO | None = None) -> int:
    from monitor.discover import discover_command

    return await discover_command(urls, loaded.platforms, clock, fmt=fmt, timeout=timeout,
                                  out=out)

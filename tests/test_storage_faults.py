"""Storage faults: a state store that cannot be written at start, or stops being writable.

At start (`pantau run` and `pantau check`): exit 74, and the message names the path and the
problem. During a run: the daemon logs it once, keeps serving the last values, answers 503
on /readyz naming the store, and recovers by itself when the store is writable again.

The tests run as root here, where chmod does not stop writes, so the faults are made honestly
by other means, each skipped with a message saying what is NOT tested when the means is
missing: a state path whose parent is a file; a directory or file made immutable with
``chattr +i`` (root; chmod 0555 otherwise); a full disk as a tiny tmpfs filled up (needs
``mount``); and, everywhere, SQLite's own ``PRAGMA query_only`` through the store's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from fakes.scripted import ScriptedPlatform, plugin_module
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor.cli import EXIT_STORE, main
from monitor.daemon import Daemon
from monitor.plugins import Plugins, load_plugins
from monitor.scheduler import Scheduler
from monitor.store import Store

ACCOUNT = ("dinsos", "scripted", "ok-a")


def _config(tmp_path: Path, state: Path, *, interval: str = "30m") -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: 127.0.0.1:0\nstate: {state}\n"
        f"check: {{interval: {interval}, timeout: 2s, concurrency: 2}}\n"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n"
        "    accounts: {scripted: [ok-a, ok-b]}\n"
    )
    return path


@pytest.fixture
def scripted(monkeypatch) -> tuple[ScriptedPlatform, Plugins]:
    """The scripted platform, also for main() (which loads plugins itself)."""
    platform = ScriptedPlatform()
    plugins = load_plugins(environ={}, entry_points=[],
                           extra=[("scripted", plugin_module(platform))])
    monkeypatch.setattr("monitor.cli.load_plugins", lambda: plugins)
    return platform, plugins


def _exits_74(config: Path, capsys) -> list[str]:  # noqa: ANN001
    """Run `run` and `check` on ``config``; both must exit 74. Returns their messages."""
    messages = []
    for argv in (["run", "-c", str(config)], ["check", "-c", str(config)]):
        assert main(argv) == EXIT_STORE, argv
        err = capsys.readouterr().err
        assert err.startswith("pantau: state store error: "), err
        messages.append(err)
    return messages


# -- the means to make a fault ---------------------------------------------------------------

def _skip(message: str) -> None:
    """Skip, loudly: what is not tested is said on stderr and in the summary (-ra)."""
    print(f"\nWARNING: {message}", file=sys.stderr)
    pytest.skip(message)


def _require(binary: str, package: str) -> None:
    """A missing tool skips loudly, and fails in CI (CI=true), where it must be installed."""
    if shutil.which(binary):
        return
    message = f"NOT TESTED: `{binary}` is not installed (Debian package {package})"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(message + "; in CI it must be installed")
    _skip(message)


def _chattr(path: Path, flag: str) -> None:
    _require("chattr", "e2fsprogs")
    result = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if result.returncode != 0:  # not root, or a filesystem without the attribute
        _skip(f"NOT TESTED (immutable {path.name}): chattr {flag} failed: "
              f"{result.stderr.strip() or result.returncode}")


@contextlib.contextmanager
def _unwritable(path: Path) -> Iterator[None]:
    """``path`` (a file or directory) cannot be written: chattr +i as root, chmod otherwise."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            path.chmod(mode)
        return
    _chattr(path, "+i")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str = "1m") -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (skipped, loudly, where mounting is not allowed)."""
    _require("mount", "mount")
    where.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:  # not root, or a container without CAP_SYS_ADMIN
        _skip("NOT TESTED (a really full disk): mounting a small tmpfs failed: "
              f"{result.stderr.strip() or result.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


# -- at start: exit 74 naming the path and the problem ---------------------------------------

def test_state_parent_is_a_file_exits_74(tmp_path, scripted, capsys):
    """A state path under a regular file: exit 74 saying that it is not a directory."""
    not_a_dir = tmp_path / "state"
    not_a_dir.write_text("a file where a directory should be\n")
    config = _config(tmp_path, not_a_dir / "pantau.db")
    for message in _exits_74(config, capsys):
        assert f"{not_a_dir} is not a directory" in message
        assert str(not_a_dir / "pantau.db") in message


def test_read_only_state_directory_exits_74(tmp_path, scripted, capsys):
    """A state directory that cannot be written (immutable): exit 74 naming the directory."""
    directory = tmp_path / "state"
    directory.mkdir()
    config = _config(tmp_path, directory / "pantau.db")
    with _unwritable(directory):
        messages = _exits_74(config, capsys)
    for message in messages:
        assert f"directory {directory} is not writable" in message
    assert not (directory / "pantau.db").exists()


def test_read_only_state_file_exits_74(tmp_path, scripted, capsys):
    """An existing state file that cannot be written: exit 74 saying it is read-only."""
    state = tmp_path / "pantau.db"
    asyncio.run(_create(state))
    config = _config(tmp_path, state)
    with _unwritable(state):
        for message in _exits_74(config, capsys):
            assert f"state store {state} is read-only" in message


async def _create(state: Path) -> None:
    store = await Store.open(state)
    await store.close()


def test_full_disk_at_start_exits_74(tmp_path, scripted, capsys):
    """A full filesystem, for a new and for an existing store: exit 74, "the disk is full"."""
    with _tmpfs(tmp_path / "mnt") as mnt:
        existing = mnt / "old.db"
        asyncio.run(_create(existing))
        filler = _fill(mnt)
        for state in (mnt / "new.db", existing):
            for message in _exits_74(_config(tmp_path, state), capsys):
                assert str(state) in message and "the disk is full" in message, message
        filler.unlink()
        assert main(["check", "-c", str(_config(tmp_path, existing))]) == 0  # room again


# -- during a run: log once, keep serving, not ready, recover by itself ----------------------

@contextlib.asynccontextmanager
async def _running(config: Path, plugins: Plugins) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, plugins, rng=random.Random(1),
                    scheduler=Scheduler(random.Random(1), spread=0.01))
    task = asyncio.create_task(daemon.run())
    started = asyncio.create_task(daemon.started.wait())
    await asyncio.wait({task, started}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()
    try:
        yield daemon
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, timeout=10)


async def _get(daemon: Daemon, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{daemon.port}{path}"
    ) as resp:
        return resp.status, await resp.text()


async def _readyz_until(daemon: Daemon, status: int, timeout: float = 10.0) -> str:
    async with asyncio.timeout(timeout):
        while True:
            code, body = await _get(daemon, "/readyz")
            if code == status:
                return body
            await asyncio.sleep(0.02)


def _value(text: str, metric: str, account: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == metric and sample.labels.get("account") == account:
                return sample.value
    return None


def _rows(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(state)) as db:
        return db.execute("SELECT count(*) FROM checks").fetchone()[0]


async def _call(action: Callable[[], object]) -> None:
    result = action()
    if asyncio.iscoroutine(result):
        await result


async def _fault_and_recovery(
    daemon: Daemon, platform: ScriptedPlatform, state: Path,
    inject: Callable[[], object], remove: Callable[[], object], problem: str,
) -> None:
    """Inject a write fault into a running daemon, check what it serves, remove the fault."""
    async with asyncio.timeout(10):
        while ACCOUNT not in daemon.engine.states:
            await asyncio.sleep(0.01)
    await _readyz_until(daemon, 200)
    _, before = await _get(daemon, "/metrics")
    last_post = _value(before, "pantau_last_post_timestamp_seconds", "ok-a")
    assert last_post == platform.newest.timestamp()
    with capture_logs() as logs:
        await _call(inject)
        calls = sum(platform.calls.values())
        body = await _readyz_until(daemon, 503)
        assert '"store": false' in body and '"failing": ["store"]' in body
        assert '"config": true' in body and '"plugins": true' in body
        async with asyncio.timeout(10):  # more checks fail to commit while the fault lasts
            while sum(platform.calls.values()) < calls + 3:
                await asyncio.sleep(0.01)
        code, during = await _get(daemon, "/metrics")
        assert code == 200
        assert _value(during, "pantau_last_post_timestamp_seconds", "ok-a") == last_post
        assert _value(during, "pantau_check_success", "ok-a") == 1.0
        assert (await _get(daemon, "/healthz"))[0] == 200
        assert (await _get(daemon, "/readyz"))[0] == 503
        rows = _rows(state)  # nothing more is committed until the fault is gone
        await _call(remove)
        await _readyz_until(daemon, 200)
    failed = [e for e in logs if e["event"] == "state store write failed; serving last values"]
    assert len(failed) == 1, "logged once per outage, not once per check"
    assert failed[0]["log_level"] == "error"
    assert str(state) in failed[0]["error"] and problem in failed[0]["error"], failed[0]
    assert [e["log_level"] for e in logs if e["event"] == "state store writable again"] == [
        "info"]
    assert _rows(state) > rows  # the checks after the recovery are committed again
    with contextlib.closing(sqlite3.connect(state)) as db:  # the failed writes broke nothing
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_read_only_store_during_run_is_served_not_ready_and_recovers(tmp_path, scripted):
    """SQLite refuses writes (query_only): logged once, last values served, /readyz 503
    naming the store, ready again by itself once writes work."""
    platform, plugins = scripted
    state = tmp_path / "pantau.db"
    async with _running(_config(tmp_path, state, interval="0.2s"), plugins) as daemon:
        store = daemon.engine.store

        async def pragma(on: str) -> None:
            await store._run(lambda: store._db.execute(f"PRAGMA query_only = {on}"))

        await _fault_and_recovery(
            daemon, platform, state,
            lambda: pragma("ON"), lambda: pragma("OFF"), "read-only")


async def test_immutable_wal_during_run_is_served_not_ready_and_recovers(tmp_path, scripted):
    """The WAL becomes unwritable under the running daemon (chattr +i): the same, and the
    message names the file instead of a bare "disk I/O error"."""
    if os.geteuid() != 0:
        _skip("NOT TESTED (unwritable WAL during a run): needs root for chattr +i")
    platform, plugins = scripted
    state = tmp_path / "pantau.db"
    wal = Path(f"{state}-wal")
    async with _running(_config(tmp_path, state, interval="0.2s"), plugins) as daemon:
        await _fault_and_recovery(
            daemon, platform, state,
            lambda: _chattr(wal, "+i"), lambda: _chattr(wal, "-i"), f"{wal} is not writable")


async def test_full_disk_during_run_is_served_not_ready_and_recovers(tmp_path, scripted):
    """The disk fills up under the running daemon (a tmpfs): the same, "the disk is full",
    and it recovers once space is freed."""
    platform, plugins = scripted
    with _tmpfs(tmp_path / "mnt") as mnt:
        state = mnt / "pantau.db"
        async with _running(_config(tmp_path, state, interval="0.2s"), plugins) as daemon:
            filler: list[Path] = []
            await _fault_and_recovery(
                daemon, platform, state,
                lambda: filler.append(_fill(mnt)), lambda: filler[0].unlink(),
                "the disk is full")

"""The worker pool where plugins parse (monitor.workers.CpuPool), alone and through the engine.

The functions run in workers are in ``fakes/cpu.py``, a module light to import (each worker
imports it). Every wait on a process has a generous bound; no test depends on how fast the
machine is.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import threading
import time
from pathlib import Path

import pytest
from fakes.cpu import (
    NOW,
    CpuPlatform,
    TwoArgs,
    die,
    echo,
    exit_politely,
    hang,
    nap,
    raise_local,
    raise_parse_error,
    raise_rate_limited,
    raise_two_args,
    raise_value_error,
    unreadable,
    unsendable,
    work,
)

from monitor import hookimpl
from monitor.clock import SystemClock
from monitor.commands import check as check_command
from monitor.config import load_config
from monitor.engine import Engine
from monitor.model import ParseError, Post, RateLimited
from monitor.platform import ThreadRunner
from monitor.plugins import Plugins, load_plugins
from monitor.workers import CpuPool, RemoteError, RemoteTraceback, WorkerCrashed, auto_workers

WAIT = 20.0  # seconds: the bound of every wait on a process (generous on purpose)


# --- helpers --------------------------------------------------------------------------------


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before open, or between open and read
        return True


async def wait_gone(pids: list[int]) -> list[int]:
    """The pids still alive after waiting up to WAIT seconds for all to go."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        alive = [p for p in pids if not gone(p)]
        if not alive:
            return []
        await asyncio.sleep(0.05)
    return [p for p in pids if not gone(p)]


async def started(marker: Path) -> int:
    """The pid a task wrote to ``marker`` once it is running (waiting up to WAIT s)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = marker.read_text() if marker.exists() else ""
        if text.isdigit():
            return int(text)
        await asyncio.sleep(0.02)
    raise AssertionError(f"the task did not start within {WAIT:g}s")


def descendants() -> set[int]:
    """Every live process below this one (by a /proc scan), zombies excluded."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def multiprocessing_servers() -> set[int]:
    """The fork server and resource tracker: one each per daemon, idle, gone when it exits."""
    return {pid for pid in (multiprocessing.forkserver._forkserver._forkserver_pid,  # noqa: SLF001
                            multiprocessing.resource_tracker._resource_tracker._pid)  # noqa: SLF001
            if pid}


@pytest.fixture
async def pool():
    pool = CpuPool(2, hang_grace=0.2, kill_after=2.0)
    try:
        yield pool
    finally:
        await pool.aclose()


@pytest.fixture
def plugins() -> Plugins:
    class Module:
        @hookimpl
        def register_platforms(self, register) -> None:  # noqa: ANN001
            register(CpuPlatform())

    return load_plugins(environ={}, entry_points=[], extra=[("cpu-test", Module())])


def write_config(tmp_path: Path, accounts: list[str], workers: str | None = "1") -> Path:
    path = tmp_path / "pantau.yaml"
    check = "{timeout: 1s" + (f", workers: {workers}" if workers is not None else "") + "}"
    items = "\n".join(f"        - {a}" for a in accounts)
    path.write_text(f"state: {tmp_path / 'pantau.db'}\ncheck: {check}\nagencies:\n"
                    f"  - id: dinsos\n    name: Dinas Sosial\n    accounts:\n      cpu:\n{items}\n")
    return path


async def open_engine(tmp_path: Path, plugins: Plugins, accounts: list[str],
                      workers: str | None = "1") -> Engine:
    config = load_config(write_config(tmp_path, accounts, workers), plugins.platforms, {})
    engine = await Engine.open(config, plugins, SystemClock())
    engine.checker.grace = 0.2
    if isinstance(engine.cpu, CpuPool):
        engine.cpu.hang_grace = 0.2
    return engine


def account(engine: Engine, name: str):  # noqa: ANN201
    return next(a for a in engine.config.accounts if a.account == name)


# --- the pool alone -------------------------------------------------------------------------


async def test_results_and_exceptions_round_trip(pool: CpuPool) -> None:
    """Results come back as returned; exceptions as raised (type, args, attributes), with
    the worker's traceback as their cause; what cannot travel or must not reach the loop
    becomes a RemoteError naming it."""
    pid, args, kwargs = await pool.run(echo, b"\x00body", NOW, when=NOW.astimezone())
    assert pid != os.getpid()
    assert args == (b"\x00body", NOW) and kwargs == {"when": NOW}
    assert await pool.run(work, "ok", "") == [Post(NOW, id=str(pid))]

    with pytest.raises(ParseError) as info:
        await pool.run(raise_parse_error, "this feed")
    assert (info.value.reason, info.value.message) == ("parse", "cannot understand this feed")
    assert str(info.value) == "cannot understand this feed"
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "raise_parse_error" in str(info.value.__cause__)

    with pytest.raises(RateLimited) as limited:
        await pool.run(raise_rate_limited)
    assert (limited.value.reason, limited.value.retry_after) == ("rate_limited", 30.0)

    with pytest.raises(ValueError, match="^plain bug$"):
        await pool.run(raise_value_error)
    with pytest.raises(TwoArgs) as two:
        await pool.run(raise_two_args)
    assert (two.value.args, two.value.code) == (("two",), 7)
    with pytest.raises(RemoteError, match="Local raised in a worker process: defined in a"):
        await pool.run(raise_local)
    with pytest.raises(RemoteError, match="SystemExit raised in a worker process: 4"):
        await pool.run(exit_politely)
    with pytest.raises(RemoteError, match="result of fakes.cpu.unsendable cannot be sent back"):
        await pool.run(unsendable)
    with pytest.raises(RemoteError, match="result of fakes.cpu.unreadable cannot be read back"):
        await pool.run(unreadable)
    with pytest.raises(TypeError, match="pickle"):  # an argument that cannot be sent
        await pool.run(echo, threading.Lock())
    assert pool.crashes == 0 and pool.started == 1  # none of that hurt a worker


async def test_pool_starts_no_process_until_used(tmp_path: Path, plugins: Plugins) -> None:
    """The default config has a pool, but checks that never call run_cpu start nothing."""
    engine = await open_engine(tmp_path, plugins, ["none"], workers=None)
    async with engine:
        assert isinstance(engine.cpu, CpuPool)
        assert engine.cpu.workers == auto_workers() == engine.config.check.worker_count
        result = await engine.check(account(engine, "none"))
        assert result.ok
        assert engine.cpu.started == 0 and engine.cpu.pids() == []


async def test_killed_worker_fails_its_task_and_retries_the_others(pool: CpuPool) -> None:
    """os._exit in a task: that call raises WorkerCrashed (reason internal); the calls
    running or queued beside it in the broken executor are run again and succeed."""
    first = (await pool.run(echo))[0]
    results = await asyncio.gather(pool.run(die), pool.run(nap, 0.3), pool.run(nap, 0.1),
                                   pool.run(echo, "queued"), return_exceptions=True)
    crashed, *others = results
    assert isinstance(crashed, WorkerCrashed)
    assert crashed.reason == "internal"
    assert "fakes.cpu.die died (exit code 3)" in str(crashed)
    assert others[:2] == [0.3, 0.1]
    assert others[2][1] == ("queued",)
    assert pool.crashes == 1 and pool.started == 2
    assert await wait_gone([first]) == []
    assert (await pool.run(echo))[0] not in (first, os.getpid())


async def test_hanging_task_is_killed_when_its_caller_gave_up(tmp_path: Path,
                                                              pool: CpuPool) -> None:
    """A task still running hang_grace after its caller was cancelled has its worker
    killed; a task running beside it is run again and succeeds; the pool goes on."""
    marker = tmp_path / "hang.pid"
    caller = asyncio.ensure_future(pool.run(hang, str(marker)))
    hung = await started(marker)
    caller.cancel()  # as the checker's timeout does
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert await pool.run(nap, 0.5) == 0.5  # runs beside it, across the kill
    assert pool.hangs == 1
    assert await wait_gone([hung]) == []
    assert (await pool.run(echo))[0] != hung


async def test_close_stops_every_worker_even_a_hung_one(tmp_path: Path) -> None:
    """close() returns within its bound with a task hanging, and leaves no worker behind:
    below this process only the fork server and the resource tracker remain."""
    before = descendants()
    pool = CpuPool(2, kill_after=0.5)
    marker = tmp_path / "hang.pid"
    hanging = asyncio.ensure_future(pool.run(hang, str(marker)))
    await pool.run(echo)
    hung = await started(marker)
    workers = pool.pids()
    assert len(workers) == 2 and hung in workers

    closing = time.monotonic()
    await pool.aclose()
    assert time.monotonic() - closing < WAIT
    with pytest.raises(WorkerCrashed, match="closed"):
        await hanging
    with pytest.raises(WorkerCrashed, match="closed"):
        await pool.run(echo)
    assert await wait_gone(workers) == []
    assert multiprocessing.active_children() == []
    assert descendants() - before <= multiprocessing_servers()


# --- through the checker and the engine -----------------------------------------------------


async def test_check_error_in_a_worker_reaches_the_checker_with_its_reason(
        tmp_path: Path, plugins: Plugins) -> None:
    engine = await open_engine(tmp_path, plugins, ["ok", "parse-this"])
    async with engine:
        ok = await engine.check(account(engine, "ok"))
        failed = await engine.check(account(engine, "parse-this"))
        assert ok.ok and ok.observation.post_id in [str(p) for p in engine.cpu.pids()]
        assert (failed.ok, failed.reason, failed.message) == (
            False, "parse", "cannot understand this")


async def test_crashed_parse_fails_that_check_as_internal_and_the_next_succeeds(
        tmp_path: Path, plugins: Plugins) -> None:
    engine = await open_engine(tmp_path, plugins, ["crash", "ok"])
    async with engine:
        crashed = await engine.check(account(engine, "crash"))
        assert (crashed.ok, crashed.reason) == (False, "internal")
        assert "died (exit code 3)" in crashed.message
        assert (await engine.check(account(engine, "ok"))).ok
        assert engine.cpu.crashes == 1


async def test_hung_parse_times_the_check_out_and_its_worker_is_killed(
        tmp_path: Path, plugins: Plugins) -> None:
    marker = tmp_path / "hang.pid"
    engine = await open_engine(tmp_path, plugins, [f"hang-{marker}", "ok"])
    async with engine:
        hung = await engine.check(account(engine, f"hang-{marker}"))
        assert (hung.ok, hung.reason) == (False, "internal")
        assert "did not finish within the check timeout" in hung.message
        assert await wait_gone([int(marker.read_text())]) == []
        assert engine.cpu.hangs == 1
        assert (await engine.check(account(engine, "ok"))).ok


async def test_system_exit_in_a_plugin_is_one_failed_check(tmp_path: Path,
                                                            plugins: Plugins) -> None:
    """sys.exit() in a plugin (or in a parse, see the round trip) never stops the daemon."""
    engine = await open_engine(tmp_path, plugins, ["exit", "ok"])
    async with engine:
        failed = await engine.check(account(engine, "exit"))
        assert (failed.ok, failed.reason, failed.message) == (
            False, "internal", "plugin error: SystemExit: 2")
        assert (await engine.check(account(engine, "ok"))).ok


async def test_workers_zero_parses_in_threads(tmp_path: Path, plugins: Plugins) -> None:
    engine = await open_engine(tmp_path, plugins, ["ok"], workers="0")
    async with engine:
        assert isinstance(engine.cpu, ThreadRunner)
        result = await engine.check(account(engine, "ok"))
        assert result.ok and result.observation.post_id == str(os.getpid())


async def test_reload_changing_workers_replaces_the_pool(tmp_path: Path,
                                                         plugins: Plugins) -> None:
    """A reload that changes check.workers takes effect for the next check; the old pool's
    workers stop."""
    engine = await open_engine(tmp_path, plugins, ["ok"], workers="1")
    async with engine:
        old = engine.cpu
        assert (await engine.check(account(engine, "ok"))).ok
        workers = old.pids()
        engine.apply_config(load_config(write_config(tmp_path, ["ok"], "0"),
                                        plugins.platforms, {}))
        assert isinstance(engine.cpu, ThreadRunner) and engine.checker.cpu is engine.cpu
        result = await engine.check(account(engine, "ok"))
        assert result.observation.post_id == str(os.getpid())
        assert await wait_gone(workers) == []
        assert old.closed


async def test_one_shot_check_parses_in_workers_and_stops_them(
        tmp_path: Path, plugins: Plugins, capsys: pytest.CaptureFixture[str]) -> None:
    """``pantau check`` uses the pool like the daemon, and leaves no worker behind."""
    before = descendants()
    config = load_config(write_config(tmp_path, ["ok", "parse-x"], "2"), plugins.platforms, {})
    assert await check_command(config, plugins, "json", SystemClock()) == 1
    out = capsys.readouterr().out
    assert '"ok": true' in out and '"reason": "parse"' in out
    assert str(os.getpid()) not in out
    assert multiprocessing.active_children() == []
    assert descendants() - before <= multiprocessing_servers()


_OWNER = """
import asyncio, multiprocessing.forkserver as fs, multiprocessing.resource_tracker as rt, sys
from fakes.cpu import echo
from monitor.workers import CpuPool

async def main():
    pool = CpuPool(2)
    await pool.run(echo, 21)
    print("PIDS", *pool.pids(), fs._forkserver._forkserver_pid, flush=True)
    await asyncio.sleep(3600)

if __name__ == "__main__":
    asyncio.run(main())
"""


async def test_workers_and_fork_server_end_when_the_daemon_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed daemon closes nothing; its workers notice and exit, and with them the
    fork server (no orphans left running after a crash, as under systemd's cgroup kill)."""
    import signal
    import subprocess
    import sys

    tests = str(Path(__file__).parent)
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.getcwd()])},
    )
    try:
        line = ""
        while not line.startswith("PIDS"):  # structlog's default output goes to stdout too
            line = await asyncio.wait_for(asyncio.to_thread(owner.stdout.readline), 60)
            assert line, "the owner process ended early"
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) >= 2, line
        assert not any(gone(p) for p in pids)
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert await wait_gone(pids) == []

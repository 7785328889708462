"""Worker processes for CPU-heavy plugin work (parsing), away from the event loop and its GIL.

:class:`CpuPool` is the :class:`monitor.platform.CpuRunner` the engine hands to plugins as
``CheckContext.cpu`` when ``check.workers`` is above 0: ``await pool.run(func, *args)`` runs
``func`` in a ``ProcessPoolExecutor`` of ``forkserver`` processes (never plain ``fork``: the
daemon has threads) and returns its result, or raises what it raised. The processes are
started on first use, so a daemon whose plugins never call ``run_cpu`` starts none.

Nothing a platform sends may crash or hang the daemon, so the pool survives its workers:

- a worker that dies (segfault, out-of-memory kill, ``os._exit``) breaks a
  ``ProcessPoolExecutor`` for every task in it. The pool starts a new executor; the task that
  was running in the dead worker raises :class:`WorkerCrashed` (reason ``internal``, see
  there), and every other task caught by the same breakage is run again on the new executor
  (once if it had started; queued ones, which never ran, up to :data:`MAX_REQUEUES` times).
  Which task was running where is known from a small shared array the workers write their
  task number to, and the dead worker from the exit codes: the executor ends the others with
  ``SIGTERM``;
- a task whose caller stopped waiting (the check timed out, so the caller was cancelled) but
  which still runs :attr:`CpuPool.hang_grace` seconds later would hold a worker forever: the
  pool kills that executor's workers (``SIGKILL``) and starts a new one, and the tasks of
  other callers caught by it are run again as above;
- an exception raised by ``func`` is raised in the caller unchanged (type, arguments and
  attributes, e.g. a :class:`monitor.model.ParseError` with its reason and message), with the
  worker's traceback as its ``__cause__``. One that cannot be pickled is rebuilt without
  calling its ``__init__``, or else replaced by a :class:`RemoteError` naming it (a
  ``CheckError`` keeps its reason). ``SystemExit`` and ``KeyboardInterrupt`` raised by
  ``func`` become a :class:`RemoteError`: they must never reach the event loop;
- workers ignore ``SIGINT`` (a Ctrl-C reaches the whole process group; the daemon stops the
  pool itself) and lower their priority (nice +5), so that the event loop serving
  ``/metrics`` wins the CPU when parsing saturates the cores. Where that is refused (the
  systemd unit's ``SystemCallFilter=~@resources`` denies ``setpriority``) they run as is.

A result that cannot be pickled in the worker, or unpickled in the daemon, fails that call
with a :class:`RemoteError` (the worker pickles the outcome itself and the daemon unpickles
it in :meth:`CpuPool.run`, so the executor only ever carries bytes and never breaks on it).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib
import itertools
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import structlog

from monitor.model import CheckError, InternalError, error_for_reason
from monitor.platform import CpuRunner, ThreadRunner

__all__ = [
    "DEFAULT_HANG_GRACE",
    "DEFAULT_KILL_AFTER",
    "MAX_AUTO_WORKERS",
    "MAX_REQUEUES",
    "CpuPool",
    "RemoteError",
    "RemoteTraceback",
    "WorkerCrashed",
    "auto_workers",
    "make_cpu_runner",
]

T = TypeVar("T")
log = structlog.get_logger("pantau.workers")

#: ``check.workers: auto`` uses the CPUs this process may run on, at most this many.
MAX_AUTO_WORKERS = 4
#: Seconds a task may go on running after its caller stopped waiting before its executor's
#: workers are killed (the check timeout already passed: its result is of no use).
DEFAULT_HANG_GRACE = 5.0
#: Seconds :meth:`CpuPool.close` (and the pool after a breakage) waits for workers to exit
#: before it kills them.
DEFAULT_KILL_AFTER = 2.0
#: A task that had not started when its executor broke is queued again at most this often.
MAX_REQUEUES = 3
#: Workers' nice value increment: parsing yields the CPU to the event loop.
WORKER_NICE = 5

_SIGTERM_EXIT = -signal.SIGTERM


def auto_workers() -> int:
    """What ``check.workers: auto`` means here: the CPUs this process may use, 1 to 4."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cpus))


def make_cpu_runner(workers: int, preload: Iterable[str] = ()) -> CpuRunner:
    """A :class:`CpuPool` of ``workers`` processes, or the :class:`ThreadRunner` for 0."""
    if workers <= 0:
        return ThreadRunner()
    return CpuPool(workers, preload)


class WorkerCrashed(InternalError):  # noqa: N818 - a CheckError, named like its siblings
    """The worker process running the task died (or the pool was closed under it).

    Its reason is ``internal``, not ``parse``: DESIGN.md records a plugin that "crashes" as
    ``internal``, and a dead worker proves no fault in the answer (the kernel's OOM killer
    picks a victim for the whole machine's memory; a segfault is a bug in a C extension).
    ``parse`` stays what it means: a parser refused the answer. The message names the
    function and how the worker ended (exit code or signal).
    """


class RemoteError(Exception):
    """Stands in for an exception raised in a worker that could not be sent back as it was
    (it does not pickle), or that must not reach the event loop (``SystemExit``), and for a
    result that cannot travel between the processes. Its message names what it replaces."""


class RemoteTraceback(Exception):  # noqa: N818 - not raised: the __cause__ of a remote error
    """The worker's formatted traceback, attached as ``__cause__`` of a re-raised exception."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


# --- the worker side ------------------------------------------------------------------------

_slots: Any = None  # this worker's view of the shared [pid, task] array
_slot = -1


def _init_worker(slots: Any, counter: Any, preload: tuple[str, ...], owner: int) -> None:
    """Runs once in each worker process before its first task."""
    global _slots, _slot
    # Ctrl-C in a terminal reaches every process of the group: the daemon stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(owner)
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICE)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if 2 * index + 1 < len(slots):
        _slots, _slot = slots, index
        slots[2 * index] = os.getpid()
    for name in preload:
        # Only to make the first task fast: the task imports what it needs anyway.
        with contextlib.suppress(Exception):
            importlib.import_module(name)


def _exit_with(owner: int) -> None:
    """End this worker when the daemon ``owner`` ends, however it ends. A SIGKILLed daemon
    closes nothing, and the fork server waits for EOF on its "alive" pipe, whose write end
    every worker inherits: the workers would wait for work forever and keep the fork server
    (and the resource tracker) alive with them. So each worker closes its copy of that pipe
    (workers start no processes) and asks the kernel for SIGKILL when its parent, the fork
    server, exits: the daemon's death ends the fork server, which ends the workers."""
    from multiprocessing import forkserver

    alive = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)  # noqa: SLF001
    if alive is not None:
        with contextlib.suppress(OSError):
            os.close(alive)
        forkserver._forkserver._forkserver_alive_fd = None  # noqa: SLF001
    parent = os.getppid()
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: a crashed daemon may leave its workers behind
    if os.getppid() != parent:  # the fork server ended before the request took effect
        os._exit(0)


def _invoke(task: int, func: Callable[..., Any], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> bytes:
    """Run one task; the pickled ``(True, result, None)`` or ``(False, exception, traceback
    text)``. Pickled here, so that what cannot be pickled or unpickled fails this one call
    (in the daemon, where it is unpickled) and never the executor's result channel."""
    slots, index = _slots, _slot
    if slots is not None:
        slots[2 * index + 1] = task
    try:
        outcome: tuple[bool, Any, str | None] = (True, func(*args, **kwargs), None)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
        outcome = (False, _portable(exc), "".join(traceback.format_exception(exc)))
    finally:
        if slots is not None:
            slots[2 * index + 1] = 0
    try:
        return pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - a result that does not pickle
        error = RemoteError(f"the result of {_name(func)} cannot be sent back from the worker "
                            f"process: {type(exc).__name__}: {exc}")
        return pickle.dumps((False, error, None), pickle.HIGHEST_PROTOCOL)


class _Rebuilt:
    """Pickles an exception by type, ``args`` and attributes, without calling ``__init__``
    (exceptions whose ``__init__`` takes other arguments than ``args`` do not unpickle)."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        return _rebuild_exception, (type(exc), exc.args, dict(getattr(exc, "__dict__", {})))


def _rebuild_exception(cls: type[BaseException], args: tuple[Any, ...],
                       state: dict[str, Any]) -> BaseException:
    exc = cls.__new__(cls, *args)
    exc.args = args
    if state:
        exc.__dict__.update(state)
    return exc


def _round_trips(value: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(value))  # noqa: S301 - our own bytes, just made
    except Exception:  # noqa: BLE001 - any failure means "not like this"
        return False
    return True


def _portable(exc: BaseException) -> Any:
    """``exc`` itself if it survives pickling, else an equivalent that does."""
    if isinstance(exc, Exception):
        if _round_trips(exc):
            return exc
        rebuilt = _Rebuilt(exc)
        if _round_trips(rebuilt):
            return rebuilt
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__
        text = "(no message)"
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, CheckError):
        try:
            return error_for_reason(exc.reason)(text)
        except KeyError:
            pass
    return RemoteError(f"{name} raised in a worker process: {text}")


# --- the daemon side ------------------------------------------------------------------------


def _exited(process: Any) -> bool:
    """Whether a worker has exited, without reaping it (the executor's thread does that)."""
    popen = getattr(process, "_popen", None)
    if popen is None or getattr(popen, "returncode", None) is not None:
        return True
    try:
        return bool(multiprocessing.connection.wait([process.sentinel], 0))
    except (OSError, ValueError):
        return True


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _name(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', type(func).__name__)}"


class _Generation:
    """One ``ProcessPoolExecutor`` and what the pool knows about it. A broken or killed
    generation is never used again; the pool starts a new one."""

    def __init__(self, number: int, workers: int, preload: tuple[str, ...]) -> None:
        context = multiprocessing.get_context("forkserver")
        self.number = number
        self.workers = workers
        # [pid, task] per worker; workers claim an index from the counter.
        self.slots = context.RawArray("q", 2 * workers)
        counter = context.Value("i", 0)
        self.executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker,
            initargs=(self.slots, counter, preload, os.getpid()),
        )
        # The executor's own dict of worker processes (it sets its attribute to None at
        # shutdown; the dict lives on in its manager thread, and here).
        self.processes: dict[int, Any] = self.executor._processes  # noqa: SLF001
        self.manager: threading.Thread | None = None
        self.dead = False  # broken, killed or shut down: take no more tasks
        self.killed_for_hang = False
        self.crash_counted = False  # one breakage counts (and is logged) once
        self.verdict: asyncio.Future[dict[int, int | None]] | None = None

    def submit(self, task: int, func: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> concurrent.futures.Future[Any]:
        future = self.executor.submit(_invoke, task, func, args, kwargs)
        if self.manager is None:
            self.manager = self.executor._executor_manager_thread  # noqa: SLF001
        return future

    def running(self) -> dict[int, int]:
        """``{task: pid}`` of the tasks running in a worker now."""
        slots = self.slots
        return {slots[2 * i + 1]: slots[2 * i] for i in range(self.workers) if slots[2 * i + 1]}

    def pids(self) -> list[int]:
        return [pid for pid, process in list(self.processes.items()) if not _exited(process)]

    def kill(self) -> None:
        """SIGKILL every worker still running (not reaped yet, so the pid is still ours)."""
        for pid, process in list(self.processes.items()):
            if not _exited(process):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)

    def wait_ended(self, timeout: float) -> bool:
        """Wait for the executor's manager thread, which reaps the workers once they are all
        gone; kill them if they take longer than ``timeout``. Blocking: call it in a thread."""
        manager = self.manager
        if manager is None:
            return True
        manager.join(timeout)
        if manager.is_alive():
            self.kill()
            manager.join(timeout)
        return not manager.is_alive()

    def postmortem(self, timeout: float) -> dict[int, int | None]:
        """After a breakage: ``{task: exit code of its worker}`` for the tasks that were
        running (``None`` when unknown). Blocking: call it in a thread."""
        reaped = self.wait_ended(timeout)
        out: dict[int, int | None] = {}
        for task, pid in self.running().items():
            process = self.processes.get(pid)
            code = None
            if reaped and process is not None:
                code = process.exitcode  # set by the manager thread's join: no read here
            out[task] = code
        return out

    def shutdown(self) -> None:
        self.dead = True
        with contextlib.suppress(Exception):
            self.executor.shutdown(wait=False, cancel_futures=True)


class CpuPool:
    """Runs functions in worker processes; a :class:`monitor.platform.CpuRunner`.

    ``workers`` processes at most; started on the first :meth:`run`. ``preload`` names
    modules each worker imports before its first task (the modules of the functions run
    are added as they are seen). Call :meth:`close` (or ``await`` :meth:`aclose`) when done.
    """

    def __init__(self, workers: int, preload: Iterable[str] = (), *,
                 hang_grace: float = DEFAULT_HANG_GRACE,
                 kill_after: float = DEFAULT_KILL_AFTER) -> None:
        if workers < 1:
            raise ValueError("a CpuPool needs at least one worker (use ThreadRunner for 0)")
        self.workers = workers
        self.hang_grace = hang_grace
        self.kill_after = kill_after
        self.preload: list[str] = list(dict.fromkeys(preload))
        self.closed = False
        #: Counters, for logs and tests: executors started, workers that died, hung tasks
        #: killed, and calls run in a thread because no process could be started.
        self.started = 0
        self.crashes = 0
        self.hangs = 0
        self.thread_fallbacks = 0
        self._generation: _Generation | None = None
        self._old: list[_Generation] = []
        self._numbers = itertools.count(1)
        self._tasks = itertools.count(1)
        self._spawn_failed = False
        self._threads = ThreadRunner()
        #: Calls of :meth:`run` not finished yet.
        self.inflight = 0
        self._idle: asyncio.Event | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("running" if self._generation else "idle")
        return f"<CpuPool workers={self.workers} {state}>"

    # -- running tasks ----------------------------------------------------------------------
    async def run(self, func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``func(*args, **kwargs)`` in a worker process; its result, or what it raised."""
        self.inflight += 1
        try:
            return await self._run(func, args, kwargs)
        finally:
            self.inflight -= 1
            if not self.inflight and self._idle is not None:
                self._idle.set()

    async def _run(self, func: Callable[..., T], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> T:
        task = next(self._tasks)
        name = _name(func)
        retried = False
        requeues = 0
        while True:
            if self.closed:
                raise WorkerCrashed(f"the worker pool is closed; {name} was not run")
            generation = self._current(func)
            try:
                future = generation.submit(task, func, args, kwargs)
            except BrokenProcessPool:
                # Broken since the last task (a worker died idle): nothing of ours ran in it.
                if not generation.dead and not generation.crash_counted:
                    generation.crash_counted = True
                    self.crashes += 1
                    log.warning("a worker process died; worker pool restarted",
                                generation=generation.number)
                self._retire(generation)
                requeues += 1
                if requeues > MAX_REQUEUES:
                    raise WorkerCrashed(f"the worker processes keep failing; {name} "
                                        "was not run") from None
                continue
            except RuntimeError:  # shut down under us: close() ran
                raise WorkerCrashed(f"the worker pool is closed; {name} was not run") from None
            except (OSError, EOFError) as exc:  # no process could start (fork limit, memory)
                return await self._in_thread(generation, exc, func, args, kwargs)
            if self._spawn_failed:
                self._spawn_failed = False
                log.info("worker processes start again")
            try:
                payload = await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                if future.cancel() or future.done():
                    if future.cancelled() and not _being_cancelled():
                        # cancel_futures of close(), not our caller: not a cancellation
                        raise WorkerCrashed(f"the worker pool was closed while {name} waited "
                                            "to run") from None
                else:  # running in a worker: it must not hold it forever
                    self._abandoned(generation, task, future, name)
                raise
            except BrokenProcessPool:
                self._retire(generation)
                verdict = await self._verdict(generation)
                if self.closed:
                    raise WorkerCrashed(f"the worker pool was closed while running {name}"
                                        ) from None
                started = task in verdict
                code = verdict.get(task)
                # The executor ends the other workers with SIGTERM; an unknown status
                # (workers that would not die) blames no one.
                culprit = code is not None and code != _SIGTERM_EXIT
                if started and culprit and not generation.killed_for_hang:
                    raise WorkerCrashed(f"the worker process running {name} died "
                                        f"({_describe_exit(code)})") from None
                if started:
                    if retried:
                        raise WorkerCrashed(f"the worker processes failed twice while running "
                                            f"{name}") from None
                    retried = True
                else:
                    requeues += 1
                    if requeues > MAX_REQUEUES:
                        raise WorkerCrashed(f"the worker processes keep failing; {name} "
                                            "was not run") from None
                continue
            try:
                ok, value, text = pickle.loads(payload)  # noqa: S301 - from our own worker
            except Exception as exc:  # noqa: BLE001 - e.g. a class whose __reduce__ fails
                raise RemoteError(f"the result of {name} cannot be read back from the worker "
                                  f"process: {type(exc).__name__}: {exc}") from None
            if ok:
                return value  # type: ignore[no-any-return]
            if text is not None:
                value.__cause__ = RemoteTraceback(text)
            raise value

    def _current(self, func: Callable[..., Any]) -> _Generation:
        module = getattr(func, "__module__", None)
        if module and module not in self.preload and module != "__main__":
            self.preload.append(module)
        generation = self._generation
        if generation is None or generation.dead:
            generation = self._start()
        return generation

    def _start(self) -> _Generation:
        if self.closed:
            raise WorkerCrashed("the worker pool is closed")
        _open_pools.add(self)
        preload = ("monitor.workers", *self.preload)
        _set_forkserver_preload(preload)
        generation = _Generation(next(self._numbers), self.workers, preload)
        self._generation = generation
        self.started += 1
        log.debug("worker pool started", workers=self.workers, generation=generation.number)
        return generation

    def _retire(self, generation: _Generation) -> None:
        """Stop using a broken generation (the next task starts a new one)."""
        if generation.dead:
            return
        generation.shutdown()
        if self._generation is generation:
            self._generation = None
        self._keep(generation)

    def _keep(self, generation: _Generation) -> None:
        """Remember an old generation until its executor has wound down, for close()."""
        self._old = [g for g in self._old if g.manager is not None and g.manager.is_alive()]
        self._old.append(generation)

    async def _verdict(self, generation: _Generation) -> dict[int, int | None]:
        """Who was running what when ``generation`` broke (computed once, shared)."""
        if generation.verdict is None:
            generation.verdict = asyncio.ensure_future(
                asyncio.to_thread(generation.postmortem, self.kill_after))
            generation.verdict.add_done_callback(
                lambda done: self._report_breakage(generation, done))
        return await asyncio.shield(generation.verdict)

    def _report_breakage(self, generation: _Generation,
                         done: asyncio.Future[dict[int, int | None]]) -> None:
        if done.cancelled() or done.exception() is not None or generation.killed_for_hang:
            return
        codes = sorted({_describe_exit(c) for c in done.result().values() if c != _SIGTERM_EXIT})
        if self.closed or generation.crash_counted:
            return
        generation.crash_counted = True
        self.crashes += 1
        log.warning("a worker process died; worker pool restarted",
                    generation=generation.number, exits=codes or ["unknown"])

    def _abandoned(self, generation: _Generation, task: int,
                   future: concurrent.futures.Future[Any], name: str) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(self.hang_grace, self._check_hang, generation, task, future, name)

    def _check_hang(self, generation: _Generation, task: int,
                    future: concurrent.futures.Future[Any], name: str) -> None:
        if future.done() or generation.dead:
            return
        if task not in generation.running():  # queued behind others: look again later
            asyncio.get_running_loop().call_later(
                self.hang_grace, self._check_hang, generation, task, future, name)
            return
        self.hangs += 1
        log.warning("a worker task outlived its caller; killing the worker processes",
                    task=name, grace=self.hang_grace, generation=generation.number)
        generation.killed_for_hang = True
        if self._generation is generation:
            self._generation = None
        generation.dead = True
        generation.kill()
        # The executor's thread sees the workers die and fails the other tasks in it with
        # BrokenProcessPool: their callers run them again on the next generation.
        self._keep(generation)

    async def _in_thread(self, generation: _Generation, exc: OSError,
                         func: Callable[..., T], args: tuple[Any, ...],
                         kwargs: dict[str, Any]) -> T:
        """No worker could be started: run this call in a thread rather than fail it."""
        self._retire(generation)
        self.thread_fallbacks += 1
        if not self._spawn_failed:
            log.error("cannot start worker processes; running in a thread meanwhile",
                      error=f"{type(exc).__name__}: {exc}")
        self._spawn_failed = True
        result = await self._threads.run(func, *args, **kwargs)
        return result

    # -- introspection and lifecycle ----------------------------------------------------------
    def pids(self) -> list[int]:
        """The pids of the current executor's live workers (none before the first task)."""
        generation = self._generation
        return generation.pids() if generation is not None else []

    def close(self) -> None:
        """Stop every worker: queued tasks are cancelled, running ones get
        :attr:`kill_after` seconds to finish, then their workers are killed. Blocking but
        bounded (about twice ``kill_after`` at worst); idempotent. From a coroutine, use
        :meth:`aclose`."""
        self._finish_close(self._begin_close())

    async def aclose(self) -> None:
        """:meth:`close`, waiting in a thread so that the event loop keeps running."""
        generations = self._begin_close()  # on the loop: no run() starts a generation after
        await asyncio.to_thread(self._finish_close, generations)

    def _begin_close(self) -> list[_Generation]:
        self.closed = True
        _open_pools.discard(self)
        generations = [g for g in (self._generation, *self._old) if g is not None]
        self._generation = None
        self._old = []
        for generation in generations:
            generation.shutdown()
        return generations

    def _finish_close(self, generations: list[_Generation]) -> None:
        deadline = time.monotonic() + self.kill_after
        for generation in generations:
            sentinels = [p.sentinel for p in list(generation.processes.values())
                         if not _exited(p)]
            remaining = deadline - time.monotonic()
            if sentinels and remaining > 0:
                with contextlib.suppress(OSError, ValueError):
                    multiprocessing.connection.wait(sentinels, remaining)
            generation.kill()
        for generation in generations:
            generation.wait_ended(self.kill_after)

    async def retire(self) -> None:
        """Close once the calls in flight are done (a config reload replaced the pool;
        checks that started before it may still use this one)."""
        if self.inflight:
            self._idle = asyncio.Event()
            await self._idle.wait()
        await self.aclose()


_open_pools: weakref.WeakSet[CpuPool] = weakref.WeakSet()


def _close_open_pools() -> None:
    """At interpreter exit, before concurrent.futures waits for its executors (forever, if
    a worker hangs): close the pools nobody closed."""
    for pool in list(_open_pools):
        with contextlib.suppress(Exception):
            pool.close()


# threading's exit hooks run before atexit's, in reverse order of registration: this one
# runs before the one concurrent.futures.process registered when it was imported above.
_register_exit = getattr(threading, "_register_atexit", None)
if _register_exit is not None:
    _register_exit(_close_open_pools)
else:  # pragma: no cover - every supported Python has it
    atexit.register(_close_open_pools)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _set_forkserver_preload(modules: Iterable[str]) -> None:
    """Have the fork server import, before it forks any worker, the modules of the packages
    of ``modules`` that this process has imported (say ``plugins.rss``: every ``plugins.*``
    loaded), so that workers start with them. It takes effect when the fork server starts;
    it then lives until the daemon exits. Only modules this process imported, so that a
    plugin module failing at import cannot break it."""
    packages = {name.partition(".")[0] for name in modules}
    names = ["__main__", *sorted(m for m in list(sys.modules)
                                 if m.partition(".")[0] in packages and "__main__" not in m)]
    with contextlib.suppress(Exception):
        multiprocessing.get_context("forkserver").set_forkserver_preload(names)

"""pantau's state store: SQLite history and last known values, committed before reported.

All database work runs in one dedicated worker thread that owns the only connection, so the
event loop never waits on disk. Work is done in the order it was asked for, one piece at a
time, through one queue; the SQL itself is in :mod:`monitor.store_sql`.

Group commit: a :meth:`Store.record` that arrives while the worker is busy waits in the queue
and goes, with every other record waiting behind it (up to :data:`BATCH_MAX`), into the next
transaction: one ``BEGIN IMMEDIATE ... COMMIT`` and one fsync for the batch. Each caller
still returns only once its own check is committed. A failure that is about one check (a
value SQLite refuses, a constraint, a bug) costs only that check: the batch is rolled back and
written again in one transaction with a savepoint around each check, so only the bad check's
caller gets the :class:`StoreError`. A failure of the storage itself (disk full, read-only,
I/O error, locked, damaged) fails every check of the batch, each caller with the same
:class:`StoreError` as a lone record gets, naming its own account.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import structlog

from monitor import store_sql as sql
from monitor.http import Validators
from monitor.model import CheckResult
from monitor.state import AccountState
from monitor.store_sql import SCHEMA_VERSION, CheckRow, StoredState, read_generation

__all__ = [
    "BATCH_MAX", "SCHEMA_VERSION", "CheckRow", "Store", "StoreError", "StoredState",
    "read_generation",
]

log = structlog.get_logger("pantau.store")
Key = tuple[str, str, str]
T = TypeVar("T")

#: At most this many checks are committed in one transaction.
BATCH_MAX = 512
_BUSY_TIMEOUT_S = 10.0
#: SQLite result codes (``sqlite_errorname`` prefixes) that say the storage itself failed:
#: every write would fail the same way, so a batch is not retried check by check.
_STORAGE_ERRORS = (
    "SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_BUSY",
    "SQLITE_LOCKED", "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_NOMEM", "SQLITE_PERM",
    "SQLITE_PROTOCOL", "SQLITE_INTERRUPT", "SQLITE_NOLFS", "SQLITE_AUTH", "SQLITE_ABORT",
)


class StoreError(Exception):
    """The state store cannot be opened, read or written. The message is for the operator."""


@dataclass(slots=True, eq=False)
class _Record:
    """One check waiting for its commit."""

    key: Key
    args: tuple[CheckResult, AccountState, dict[str, Validators], str | None]
    waiter: asyncio.Future[int]


@dataclass(slots=True, eq=False)
class _Call:
    """Any other piece of work: ``fn(*args)`` in the worker thread, alone."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    waiter: asyncio.Future[Any]
    always: bool = False  # run it even if its caller stopped waiting (close)


@dataclass(slots=True)
class _Batch:
    """What became of a batch of records, as the worker hands it back."""

    errors: list[BaseException | None] | None = None  # per record, when the batch committed
    failure: BaseException | None = None  # the whole batch failed with this
    generation: int = 0


class Store:
    """The SQLite state store. Create it with ``await Store.open(path)``; close it when done.

    ``generation`` is the store's generation after the last commit: a number kept in the
    database and raised by one in every transaction that changes what ``/metrics`` would
    show after a restart (a batch of records; a prune that deleted posts; a forget that
    deleted anything). Another process reads it with :func:`read_generation`.
    ``commits`` counts the write transactions committed since open (a batch is one).
    """

    def __init__(self, path: Path, executor: ThreadPoolExecutor) -> None:
        self.path = path
        #: False after a write failed; True again after a later write succeeds. A batch in
        #: which only some checks failed (their own fault) leaves it True.
        self.healthy = True
        self.generation = 0
        self.commits = 0
        self._executor = executor
        self._conn: sqlite3.Connection | None = None  # only ever touched in the worker thread
        self._queue: deque[_Record | _Call] = deque()
        self._busy = False  # a piece of work is in the worker thread
        self._closing = False  # close() was called: nothing new is accepted
        self._closed = False
        self._close_done: asyncio.Future[None] | None = None
        self._new_generation: int | None = None  # bumped in the open transaction

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | Path) -> Store:
        """Open (creating or migrating) the store at ``path``; its directory must exist."""
        path = Path(path)
        _check_location(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pantau-store")
        store = cls(path, executor)
        try:
            await store._run(store._connect)
        except BaseException:
            store._closing = store._closed = True
            executor.shutdown(wait=False)
            raise
        return store

    async def close(self) -> None:
        """Commit every record still waiting, close the connection and stop the worker
        thread. Calling it again (even while the first call runs) waits for the first."""
        loop = asyncio.get_running_loop()
        if self._closing:
            if self._close_done is not None and not self._close_done.done():
                await asyncio.shield(self._close_done)
            return
        self._closing = True
        self._close_done = loop.create_future()
        waiter: asyncio.Future[None] = loop.create_future()
        self._queue.append(_Call(self._disconnect, (), waiter, always=True))
        self._kick()
        try:
            await waiter
        finally:
            self._closed = True
            if not self._busy:
                self._executor.shutdown(wait=False)
            if not self._close_done.done():
                self._close_done.set_result(None)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- writes ---------------------------------------------------------------------------
    async def record(
        self,
        result: CheckResult,
        state: AccountState,
        *,
        validators: Mapping[str, Validators] = {},  # noqa: B006 - read only, never mutated
        memo: Mapping[str, Any] | None = None,
    ) -> int:
        """Commit one check: the history row, the account's new ``state`` (``state`` is the
        state after applying ``result``), the posts it saw, the validators and, when given,
        the account's memo (replaced), all in one transaction (shared with the other checks
        recorded meanwhile). Committed before it returns; returns the generation it was
        committed at.

        Checks are committed in the order ``record`` was called. A check handed to
        ``record`` is committed even if its caller is cancelled while it waits (a shutdown
        cancels checks, then :meth:`close` commits what they recorded). Raises
        :class:`StoreError` if this check could not be committed."""
        key = result.account.key
        memo_json = None if memo is None else sql.memo_json(key, memo)
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._submit(_Record(key, (result, state, dict(validators), memo_json), waiter))
        return await waiter

    async def prune(self, now: datetime, retention: float) -> int:
        """Delete checks older than ``now - retention`` seconds, and posts older than that
        (but never posts inside the longest ``pantau_posts`` window). Returns rows deleted.
        The current state of accounts is never touched."""
        if retention < 0:
            raise ValueError(f"retention must not be negative, got {retention}")
        return await self._write("cannot prune old history", self._prune, sql.ts(now), retention)

    async def forget(self, keys: Iterable[Key]) -> None:
        """Drop everything stored about these accounts (state, posts, memo, history)."""
        rows = [tuple(key) for key in keys]
        await self._write("cannot forget accounts", self._forget, rows)

    # -- reads ----------------------------------------------------------------------------
    async def load(self) -> StoredState:
        """The last known state of every account (with its posts of the last 30 days before
        its last check), all validators and all memos."""
        return await self._read("cannot load the state", self._in_db, sql.load)

    async def history(self, key: Key, since: datetime | None = None) -> list[CheckRow]:
        """The checks of one account (at or after ``since``), oldest first."""
        return await self._read(
            "cannot read history", self._in_db, sql.history, tuple(key), sql.ts(since)
        )

    async def posts(
        self, key: Key, since: datetime | None = None
    ) -> list[tuple[datetime, str | None]]:
        """``(published_at, post_id)`` of the posts of one account (at or after ``since``),
        oldest first."""
        return await self._read(
            "cannot read posts", self._in_db, sql.posts, tuple(key), sql.ts(since)
        )

    # -- the queue (on the loop) ----------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread, after everything asked for before it.
        If the caller stops waiting before it started, it does not run."""
        waiter: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._submit(_Call(fn, args, waiter))
        return await waiter

    def _submit(self, op: _Record | _Call) -> None:
        if self._closing:
            raise StoreError(f"state store {self.path} is closed")
        self._queue.append(op)
        self._kick()

    def _kick(self) -> None:
        """Hand the next piece of work to the worker thread, unless it is busy."""
        loop = asyncio.get_running_loop()
        while not self._busy and self._queue:
            head = self._queue[0]
            ops: list[_Record | _Call]
            if isinstance(head, _Call):
                self._queue.popleft()
                if head.waiter.cancelled() and not head.always:
                    continue
                ops, job = [head], partial(head.fn, *head.args)
            else:
                batch: list[_Record] = []
                while self._queue and isinstance(self._queue[0], _Record) and (
                    len(batch) < BATCH_MAX
                ):
                    batch.append(self._queue.popleft())  # type: ignore[arg-type]
                ops, job = list(batch), partial(self._commit_records, batch)
            try:
                future = loop.run_in_executor(self._executor, job)
            except RuntimeError:  # the worker is gone (a close that was cancelled)
                self._finish(ops, None, StoreError(f"state store {self.path} is closed"))
                continue
            self._busy = True
            future.add_done_callback(partial(self._done, ops))

    def _done(self, ops: list[_Record | _Call], future: asyncio.Future[Any]) -> None:
        self._busy = False
        try:
            if future.cancelled():
                self._finish(ops, None, StoreError(f"state store {self.path}: work was lost"))
            else:
                error = future.exception()
                self._finish(ops, None if error else future.result(), error)
        finally:
            if self._queue:
                self._kick()
            elif self._closed:
                self._executor.shutdown(wait=False)

    def _finish(
        self, ops: list[_Record | _Call], value: Any, error: BaseException | None
    ) -> None:
        """Tell the callers of ``ops`` how their work went."""
        if isinstance(ops[0], _Call):
            waiter = ops[0].waiter
            if not waiter.done():
                if error is None:
                    waiter.set_result(value)
                else:
                    waiter.set_exception(error)
            return
        outcome = value if isinstance(value, _Batch) else _Batch(failure=error)
        records: list[_Record] = ops  # type: ignore[assignment]
        if outcome.failure is not None:
            self.healthy = False
            reason = _explain(outcome.failure, self.path)
            for item in records:
                self._fail(item, reason, outcome.failure)
            return
        assert outcome.errors is not None
        committed = False
        for item, err in zip(records, outcome.errors, strict=True):
            if err is None:
                committed = True
                if not item.waiter.done():
                    item.waiter.set_result(outcome.generation)
            else:
                self._fail(item, _explain(err, self.path), err)
        self.healthy = committed

    def _fail(self, item: _Record, reason: str, cause: BaseException) -> None:
        if item.waiter.done():  # its caller was cancelled
            return
        error = StoreError(
            f"state store {self.path}: cannot record the check of {'/'.join(item.key)}: {reason}"
        )
        error.__cause__ = cause
        item.waiter.set_exception(error)

    async def _write(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            result = await self._run(self._transaction, fn, *args)
        except (sqlite3.Error, OSError) as exc:
            self.healthy = False
            raise StoreError(
                f"state store {self.path}: {what}: {_explain(exc, self.path)}"
            ) from exc
        self.healthy = True
        return result

    async def _read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await self._run(fn, *args)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"state store {self.path}: {what}: {_explain(exc, self.path)}"
            ) from exc

    # -- in the worker thread -------------------------------------------------------------
    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"state store {self.path} is not open")
        return self._conn

    def _in_db(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(self._db, *args)

    def _connect(self) -> None:
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(
                f"state store {self.path}: cannot open: {_explain(exc, self.path)}"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL, not NORMAL: in WAL mode NORMAL does not sync the WAL at each commit, so a
            # power loss or OS crash may undo the last commits. DESIGN.md promises that a crash
            # loses no committed observation; group commit makes it one fsync per batch.
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
            self.generation = sql.generation(conn)
        except sqlite3.Error as exc:
            conn.close()
            if _errname(exc).startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
                raise StoreError(
                    f"state store {self.path} is not a pantau state database "
                    f"(not SQLite, or damaged): {exc}"
                ) from exc
            raise StoreError(
                f"state store {self.path}: cannot open: {_explain(exc, self.path)}"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if self._version(conn) == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")  # read again under the write lock: another may migrate
        try:
            sql.migrate(conn, self._version(conn))
            conn.execute("COMMIT")
        except BaseException:
            sql.rollback(conn)
            raise

    def _version(self, conn: sqlite3.Connection) -> int:
        version = sql.user_version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"state store {self.path} was written by a newer pantau (schema {version}); "
                f"this version knows {SCHEMA_VERSION}"
            )
        return version

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA optimize")
            self._conn.close()
            self._conn = None

    def _transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in one write transaction; it may call :meth:`_bump`."""
        conn = self._db
        self._new_generation = None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            sql.rollback(conn)
            raise
        finally:
            new, self._new_generation = self._new_generation, None
        self.commits += 1
        if new is not None:
            self.generation = new
        return result

    def _bump(self, conn: sqlite3.Connection) -> int:
        """Raise the generation in the open transaction (published when it commits)."""
        self._new_generation = sql.bump_generation(conn)
        return self._new_generation

    def _commit_records(self, batch: list[_Record]) -> _Batch:
        """Commit a batch of records in one transaction. If a record fails for a reason of
        its own, write the batch again with a savepoint around each record: the others are
        committed, the bad one is reported. A storage failure fails the whole batch."""
        try:
            return self._transaction(self._write_records, batch, False)
        except Exception as exc:  # noqa: BLE001 - sorted below, handed to the callers
            if len(batch) == 1 or _storage_failure(exc):
                return _Batch(failure=exc)
            log.warning("a check could not be committed with others; committing one by one",
                        batch=len(batch), error=f"{type(exc).__name__}: {exc}")
        try:
            return self._transaction(self._write_records, batch, True)
        except _NothingToCommit as nothing:
            return _Batch(errors=nothing.errors)
        except Exception as exc:  # noqa: BLE001 - the storage failed meanwhile
            return _Batch(failure=exc)

    def _write_records(
        self, conn: sqlite3.Connection, batch: list[_Record], isolate: bool
    ) -> _Batch:
        errors: list[BaseException | None] = [None] * len(batch)
        if not isolate:  # the whole batch at once: a few statements (sql.record_many)
            sql.record_many(conn, [item.args for item in batch])
            return _Batch(errors=errors, generation=self._bump(conn))
        for i, item in enumerate(batch):
            conn.execute("SAVEPOINT record")
            try:
                sql.record(conn, *item.args)
            except Exception as exc:
                if _storage_failure(exc):
                    raise
                conn.execute("ROLLBACK TO record")
                errors[i] = exc
            conn.execute("RELEASE record")
        if all(err is not None for err in errors):
            raise _NothingToCommit(errors)
        return _Batch(errors=errors, generation=self._bump(conn))

    def _prune(self, conn: sqlite3.Connection, now: float, retention: float) -> int:
        checks, posts = sql.prune(conn, now, retention)
        if posts:
            self._bump(conn)
        return checks + posts

    def _forget(self, conn: sqlite3.Connection, keys: list[Key]) -> None:
        if sql.forget(conn, keys):
            self._bump(conn)


class _NothingToCommit(Exception):
    """Every record of a batch failed on its own (raised to roll the transaction back)."""

    def __init__(self, errors: list[BaseException | None]) -> None:
        super().__init__("every record failed")
        self.errors = errors


def _storage_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the storage failed (so every write would), not one record."""
    if isinstance(exc, (OSError, MemoryError, StoreError)):
        return True
    return isinstance(exc, sqlite3.Error) and _errname(exc).startswith(_STORAGE_ERRORS)


def _check_location(path: Path) -> None:
    """Clear errors for the usual deployment mistakes, before SQLite gives a vague one."""
    parent = path.parent
    if not parent.is_dir():
        if parent.exists():
            raise StoreError(
                f"state store {path}: {parent} is not a directory "
                "(point `state:` at a file in an existing directory)"
            )
        raise StoreError(
            f"state store {path}: directory {parent} does not exist "
            "(create it, or point `state:` at a file in an existing directory)"
        )
    if path.is_dir():
        raise StoreError(f"state store {path} is a directory; `state:` must name a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(
            f"state store {path}: directory {parent} is not writable by this user "
            "(SQLite needs to create its -wal and -shm files next to the database)"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"state store {path} is read-only or unreadable for this user")


def _errname(exc: BaseException) -> str:
    return getattr(exc, "sqlite_errorname", "") or ""


def _explain(exc: BaseException, path: Path | None = None) -> str:
    """What went wrong, in words an operator acts on, with SQLite's own message.

    SQLite reports a failed write to its -wal or -shm file as a bare "disk I/O error"; with
    ``path`` a full filesystem or a file that cannot be written is named instead.
    """
    name = _errname(exc)
    io_error = name.startswith("SQLITE_IOERR") or (
        isinstance(exc, OSError) and exc.errno != errno.ENOSPC
    )
    cause = _io_cause(path) if io_error and path is not None else None
    if cause is not None:
        hint = cause
    elif name.startswith("SQLITE_FULL") or (
        isinstance(exc, OSError) and exc.errno == errno.ENOSPC
    ):
        hint = "the disk is full"
    elif name.startswith("SQLITE_READONLY"):
        hint = "the database is read-only (check the file and directory permissions)"
    elif name.startswith("SQLITE_CANTOPEN"):
        hint = "the file cannot be opened (check the directory exists and is writable)"
    elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        hint = f"the database stayed locked by another process for {_BUSY_TIMEOUT_S:g}s"
    elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        hint = "the file is not a pantau state database or is damaged"
    elif name.startswith("SQLITE_IOERR") or isinstance(exc, OSError):
        hint = "an I/O error (failing disk or filesystem?)"
    elif isinstance(exc, (sqlite3.Error, StoreError)):
        return str(exc)
    else:  # not SQLite's: a value it could not take, or a bug
        return f"{type(exc).__name__}: {exc}"
    return f"{hint} ({exc})"


#: Less free space than this on the store's filesystem counts as a full disk.
_FULL_BELOW = 64 * 1024


def _io_cause(path: Path) -> str | None:
    """Why a write next to ``path`` failed, when it can be told: no space left, or a database
    file that cannot be written (read-only or immutable)."""
    with contextlib.suppress(OSError):
        stat = os.statvfs(path.parent)
        free = (stat.f_bfree if os.geteuid() == 0 else stat.f_bavail) * stat.f_frsize
        if free < _FULL_BELOW:
            return f"the disk is full ({free // 1024} KiB free on the filesystem of {path.parent})"
    for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if file.exists() and not os.access(file, os.W_OK):
            return f"{file} is not writable (read-only file or filesystem, or immutable)"
    return None

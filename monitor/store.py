"""pantau's state store: SQLite history and last known values, committed before reported.

All database work runs in one dedicated worker thread that owns the only connection, so
calls are serialised and the event loop never waits on disk. Times are stored as REAL UTC
epoch seconds and always come back as timezone-aware UTC datetimes.

Tables: ``checks`` (append-only history), ``accounts`` (current state, one row per account),
``posts`` (posts seen, for the posting-frequency windows and rankings), ``validators``
(conditional-GET validators per URL) and ``memos`` (per-account plugin notes, JSON).
The schema is versioned with ``PRAGMA user_version``; migration N is ``_MIGRATIONS[N - 1]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from monitor.http import Validators
from monitor.model import CheckResult
from monitor.state import POST_WINDOWS, AccountState, post_key

__all__ = ["SCHEMA_VERSION", "CheckRow", "Store", "StoreError", "StoredState"]

log = structlog.get_logger("pantau.store")
Key = tuple[str, str, str]
T = TypeVar("T")

_KEY = "agency TEXT NOT NULL, platform TEXT NOT NULL, account TEXT NOT NULL"
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: everything
        f"""CREATE TABLE checks (id INTEGER PRIMARY KEY, {_KEY}, checked_at REAL NOT NULL,
            ok INTEGER NOT NULL, reason TEXT, message TEXT, latest_post_at REAL, post_url TEXT,
            post_id TEXT, method TEXT, duration REAL NOT NULL,
            unchanged INTEGER NOT NULL DEFAULT 0, retry_after REAL)""",
        "CREATE INDEX checks_by_account ON checks (agency, platform, account, checked_at)",
        "CREATE INDEX checks_by_time ON checks (checked_at)",
        f"""CREATE TABLE accounts ({_KEY}, last_post_at REAL, post_url TEXT, post_id TEXT,
            method TEXT, last_check_at REAL, last_success_at REAL, ok INTEGER, reason TEXT,
            message TEXT, consecutive_failures INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (agency, platform, account)) WITHOUT ROWID""",
        f"""CREATE TABLE posts ({_KEY}, post_key TEXT NOT NULL, post_id TEXT,
            published_at REAL NOT NULL,
            PRIMARY KEY (agency, platform, account, post_key)) WITHOUT ROWID""",
        "CREATE INDEX posts_by_time ON posts (published_at)",
        """CREATE TABLE validators (url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT,
            body_hash TEXT)""",
        f"""CREATE TABLE memos ({_KEY}, json TEXT NOT NULL,
            PRIMARY KEY (agency, platform, account)) WITHOUT ROWID""",
    ),
)
#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION: int = len(_MIGRATIONS)

_BUSY_TIMEOUT_S = 10.0
#: Posts are kept at least this long, whatever the retention, so the windows stay right.
_KEEP_POSTS_S = max(POST_WINDOWS.values()).total_seconds()
_ACCOUNT_COLUMNS = (
    "last_post_at, post_url, post_id, method, last_check_at, last_success_at, ok, reason, "
    "message, consecutive_failures"
)
_CHECK_COLUMNS = (
    "checked_at, ok, reason, message, latest_post_at, post_url, post_id, method, duration, "
    "unchanged, retry_after"
)


class StoreError(Exception):
    """The state store cannot be opened, read or written. The message is for the operator."""


@dataclass(frozen=True, slots=True)
class CheckRow:
    """One recorded check, as :meth:`Store.history` returns it."""

    key: Key
    checked_at: datetime
    ok: bool
    reason: str | None
    message: str | None
    latest_post_at: datetime | None
    post_url: str | None
    post_id: str | None
    method: str | None
    duration: float
    unchanged: bool = False
    retry_after: float | None = None


@dataclass
class StoredState:
    """Everything :meth:`Store.load` brings back at start."""

    accounts: dict[Key, AccountState]
    validators: dict[str, Validators]
    memos: dict[Key, dict[str, Any]]


class Store:
    """The SQLite state store. Create it with ``await Store.open(path)``; close it when done."""

    def __init__(self, path: Path, executor: ThreadPoolExecutor) -> None:
        self.path = path
        #: False after a write failed; True again after a later write succeeds.
        self.healthy = True
        self._executor = executor
        self._conn: sqlite3.Connection | None = None  # only ever touched in the worker thread
        self._closed = False

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
            executor.shutdown(wait=False)
            raise
        return store

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Calling it again does nothing."""
        if self._closed:
            return
        try:
            await self._run(self._disconnect)
        finally:
            self._closed = True
            self._executor.shutdown(wait=False)

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
    ) -> None:
        """Commit one check in one transaction: the history row, the account's new ``state``
        (``state`` is the state after applying ``result``), the posts it saw, the validators
        and, when given, the account's memo (replaced). Committed before it returns."""
        key = result.account.key
        memo_json = None if memo is None else _memo_json(key, memo)
        await self._write(
            f"cannot record the check of {'/'.join(key)}",
            self._record, result, state, dict(validators), memo_json,
        )

    async def prune(self, now: datetime, retention: float) -> int:
        """Delete checks older than ``now - retention`` seconds, and posts older than that
        (but never posts inside the longest ``pantau_posts`` window). Returns rows deleted.
        The current state of accounts is never touched."""
        if retention < 0:
            raise ValueError(f"retention must not be negative, got {retention}")
        return await self._write("cannot prune old history", self._prune, _ts(now), retention)

    async def forget(self, keys: Iterable[Key]) -> None:
        """Drop everything stored about these accounts (state, posts, memo, history)."""
        rows = [tuple(key) for key in keys]
        await self._write("cannot forget accounts", self._forget, rows)

    # -- reads ----------------------------------------------------------------------------
    async def load(self) -> StoredState:
        """The last known state of every account (with its posts of the last 30 days before
        its last check), all validators and all memos."""
        return await self._read("cannot load the state", self._load)

    async def history(self, key: Key, since: datetime | None = None) -> list[CheckRow]:
        """The checks of one account (at or after ``since``), oldest first."""
        return await self._read("cannot read history", self._history, tuple(key), _ts(since))

    async def posts(
        self, key: Key, since: datetime | None = None
    ) -> list[tuple[datetime, str | None]]:
        """``(published_at, post_id)`` of the posts of one account (at or after ``since``),
        oldest first."""
        return await self._read("cannot read posts", self._posts, tuple(key), _ts(since))

    # -- plumbing (on the loop) -----------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the worker thread."""
        if self._closed:
            raise StoreError(f"state store {self.path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

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
            # loses no committed observation; one fsync per check is cheap at our write rate.
            conn.execute("PRAGMA synchronous = FULL")
            self._migrate(conn)
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
            version = self._version(conn)
            for number in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[number - 1]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _version(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
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
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn, *args)
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        return result

    def _record(
        self,
        conn: sqlite3.Connection,
        result: CheckResult,
        state: AccountState,
        validators: dict[str, Validators],
        memo_json: str | None,
    ) -> None:
        key = result.account.key
        obs = result.observation if result.ok else None
        changed = obs is not None and not obs.unchanged
        conn.execute(
            f"INSERT INTO checks (agency, platform, account, {_CHECK_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key, _ts(result.checked_at), int(result.ok), result.reason, result.message,
                _ts(obs.latest_post_at) if changed else None,
                obs.post_url if changed else None,
                obs.post_id if changed else None,
                obs.method if obs is not None else None,
                result.duration, int(obs is not None and obs.unchanged), result.retry_after,
            ),
        )
        conn.execute(
            f"INSERT OR REPLACE INTO accounts (agency, platform, account, {_ACCOUNT_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                *key, _ts(state.last_post_at), state.post_url, state.post_id, state.method,
                _ts(state.last_check_at), _ts(state.last_success_at),
                None if state.ok is None else int(state.ok), state.reason, state.message,
                state.consecutive_failures,
            ),
        )
        if changed:
            conn.executemany(
                "INSERT INTO posts (agency, platform, account, post_key, post_id, published_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agency, platform, account, post_key) "
                "DO UPDATE SET post_id = excluded.post_id, published_at = excluded.published_at",
                (
                    (*key, post_key(p.id, p.published_at), p.id, _ts(p.published_at))
                    for p in obs.posts
                ),
            )
        conn.executemany(
            "INSERT OR REPLACE INTO validators (url, etag, last_modified, body_hash) "
            "VALUES (?, ?, ?, ?)",
            ((url, v.etag, v.last_modified, v.body_hash) for url, v in validators.items()),
        )
        if memo_json is not None:
            conn.execute(
                "INSERT OR REPLACE INTO memos (agency, platform, account, json) "
                "VALUES (?, ?, ?, ?)",
                (*key, memo_json),
            )

    def _prune(self, conn: sqlite3.Connection, now: float, retention: float) -> int:
        checks = conn.execute("DELETE FROM checks WHERE checked_at < ?", (now - retention,))
        posts = conn.execute(
            "DELETE FROM posts WHERE published_at < ?", (now - max(retention, _KEEP_POSTS_S),)
        )
        return checks.rowcount + posts.rowcount

    def _forget(self, conn: sqlite3.Connection, keys: list[Key]) -> None:
        for table in ("accounts", "posts", "memos", "checks"):
            conn.executemany(
                f"DELETE FROM {table} WHERE agency = ? AND platform = ? AND account = ?", keys
            )

    def _load(self) -> StoredState:
        conn = self._db
        accounts: dict[Key, AccountState] = {}
        rows = conn.execute(f"SELECT agency, platform, account, {_ACCOUNT_COLUMNS} FROM accounts")
        for row in rows:
            last_post, url, pid, method, checked, success, ok, reason, message, failures = row[3:]
            accounts[row[:3]] = AccountState(
                last_post_at=_dt(last_post), post_url=url, post_id=pid, method=method,
                last_check_at=_dt(checked), last_success_at=_dt(success),
                ok=None if ok is None else bool(ok), reason=reason, message=message,
                consecutive_failures=failures,
            )
        posts = conn.execute(
            "SELECT p.agency, p.platform, p.account, p.post_key, p.published_at FROM posts p "
            "JOIN accounts a USING (agency, platform, account) "
            "WHERE a.last_check_at IS NULL OR p.published_at >= a.last_check_at - ? "
            "ORDER BY p.published_at",
            (_KEEP_POSTS_S,),
        )
        for agency, platform, account, pkey, published in posts:
            accounts[(agency, platform, account)].posts[pkey] = _dt(published)
        validators = {
            url: Validators(etag=etag, last_modified=modified, body_hash=body_hash)
            for url, etag, modified, body_hash in conn.execute(
                "SELECT url, etag, last_modified, body_hash FROM validators"
            )
        }
        memos = {
            (agency, platform, account): json.loads(text)
            for agency, platform, account, text in conn.execute(
                "SELECT agency, platform, account, json FROM memos"
            )
        }
        return StoredState(accounts=accounts, validators=validators, memos=memos)

    def _history(self, key: Key, since: float | None) -> list[CheckRow]:
        rows = self._db.execute(
            f"SELECT {_CHECK_COLUMNS} FROM checks "
            "WHERE agency = ? AND platform = ? AND account = ? AND checked_at >= ? "
            "ORDER BY checked_at, id",
            (*key, float("-inf") if since is None else since),
        )
        return [
            CheckRow(
                key=key, checked_at=_dt(checked), ok=bool(ok), reason=reason, message=message,
                latest_post_at=_dt(latest), post_url=url, post_id=pid, method=method,
                duration=duration, unchanged=bool(unchanged), retry_after=retry_after,
            )
            for (checked, ok, reason, message, latest, url, pid, method, duration, unchanged,
                 retry_after) in rows
        ]

    def _posts(self, key: Key, since: float | None) -> list[tuple[datetime, str | None]]:
        rows = self._db.execute(
            "SELECT published_at, post_id FROM posts "
            "WHERE agency = ? AND platform = ? AND account = ? AND published_at >= ? "
            "ORDER BY published_at, post_key",
            (*key, float("-inf") if since is None else since),
        )
        return [(_dt(published), pid) for published, pid in rows]


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


def _memo_json(key: Key, memo: Mapping[str, Any]) -> str | None:
    """The memo as JSON, or None (memo not saved, logged) when a plugin put a non-JSON value
    in it: a plugin's bad note must not cost the check its durability."""
    try:
        return json.dumps(dict(memo), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        log.error("memo is not JSON; not saved", account="/".join(key), error=str(exc))
        return None


def _ts(value: datetime | None) -> float | None:
    """A datetime as UTC epoch seconds (naive datetimes are refused, never guessed)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
    return value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


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
    else:
        return str(exc)
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

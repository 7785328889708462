"""The SQL of the state store: schema, migrations and the statements its worker runs.

Everything here takes a ``sqlite3.Connection`` and runs in the thread that owns it (the
store's worker thread); nothing here knows asyncio. :mod:`monitor.store` decides when and in
which transaction each function runs. Times are stored as REAL UTC epoch seconds and always
come back as timezone-aware UTC datetimes.

Tables: ``checks`` (append-only history), ``accounts`` (current state, one row per account),
``posts`` (posts seen, for the posting-frequency windows and rankings), ``validators``
(conditional-GET validators per URL), ``memos`` (per-account plugin notes, JSON) and
``meta`` (``generation``: bumped by every transaction that changes what ``/metrics`` shows).
The schema is versioned with ``PRAGMA user_version``; migration N is ``MIGRATIONS[N - 1]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

import structlog

from monitor.http import Validators
from monitor.model import CheckResult
from monitor.state import POST_WINDOWS, AccountState, post_key

__all__ = ["SCHEMA_VERSION", "CheckRow", "StoredState", "read_generation"]

log = structlog.get_logger("pantau.store")
Key = tuple[str, str, str]

_KEY = "agency TEXT NOT NULL, platform TEXT NOT NULL, account TEXT NOT NULL"
MIGRATIONS: tuple[tuple[str, ...], ...] = (
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
    (  # 2: the generation, for the start snapshot (see read_generation)
        "CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
        # A random start (48 bits, exact in a float or JSON) so that a store deleted and
        # created again never meets a snapshot of the old one at the same generation.
        "INSERT INTO meta (name, value) VALUES ('generation', random() & 281474976710655)",
    ),
)
#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION: int = len(MIGRATIONS)

#: Posts are kept at least this long, whatever the retention, so the windows stay right.
KEEP_POSTS_S = max(POST_WINDOWS.values()).total_seconds()
_ACCOUNT_COLUMNS = (
    "last_post_at, post_url, post_id, method, last_check_at, last_success_at, ok, reason, "
    "message, consecutive_failures"
)
_CHECK_COLUMNS = (
    "checked_at, ok, reason, message, latest_post_at, post_url, post_id, method, duration, "
    "unchanged, retry_after"
)
_GENERATION = "SELECT value FROM meta WHERE name = 'generation'"


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


# -- schema ---------------------------------------------------------------------------------
def user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Run the migrations after ``version`` (the caller holds the write lock)."""
    for number in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[number - 1]:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def generation(conn: sqlite3.Connection) -> int:
    return conn.execute(_GENERATION).fetchone()[0]


def bump_generation(conn: sqlite3.Connection) -> int:
    """Add one to the generation, in the caller's transaction; the new value."""
    conn.execute("UPDATE meta SET value = value + 1 WHERE name = 'generation'")
    return generation(conn)


def read_generation(path: str | os.PathLike[str]) -> int | None:
    """The generation of the store at ``path``, read without writing anything: the file is
    opened read-only (never created, never migrated). ``None`` when there is no such file,
    it is not a pantau store of schema 2 or later, or it cannot be read. Takes a
    millisecond or so; it waits at most 1 s for a store that another process is recovering.

    A store closed cleanly has no ``-wal`` file, and everything is in the database file:
    it is then read as immutable, since a read-only connection to a WAL database would
    otherwise create the ``-wal`` and ``-shm`` files (owned by whoever reads)."""
    try:
        path = Path(path).absolute()
        mode = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
        conn = sqlite3.connect(f"{path.as_uri()}?{mode}", uri=True, timeout=1.0,
                               isolation_level=None)
    except (sqlite3.Error, OSError, ValueError):
        return None
    try:
        row = conn.execute(_GENERATION).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row is not None and type(row[0]) is int else None


# -- writes (in the caller's transaction) ---------------------------------------------------
_INSERT_CHECK = (
    f"INSERT INTO checks (agency, platform, account, {_CHECK_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_ACCOUNT = (
    f"INSERT OR REPLACE INTO accounts (agency, platform, account, {_ACCOUNT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The same rows for the usual shapes, with the columns that are NULL in them written as NULL
# in the SQL: each None bound to a parameter costs the sqlite3 module an adapter lookup.
_INSERT_UNCHANGED_CHECK = (
    "INSERT INTO checks (agency, platform, account, checked_at, ok, reason, message, "
    "latest_post_at, post_url, post_id, method, duration, unchanged, retry_after) "
    "VALUES (?, ?, ?, ?, 1, NULL, NULL, NULL, NULL, NULL, ?, ?, 1, NULL)"
)
_UPSERT_OK_ACCOUNT = (
    f"INSERT OR REPLACE INTO accounts (agency, platform, account, {_ACCOUNT_COLUMNS}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, NULL, ?)"
)
_UPSERT_POST = (
    "INSERT INTO posts (agency, platform, account, post_key, post_id, published_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agency, platform, account, post_key) "
    "DO UPDATE SET post_id = excluded.post_id, published_at = excluded.published_at"
)
_UPSERT_VALIDATORS = (
    "INSERT OR REPLACE INTO validators (url, etag, last_modified, body_hash) VALUES (?, ?, ?, ?)"
)
_UPSERT_MEMO = "INSERT OR REPLACE INTO memos (agency, platform, account, json) VALUES (?, ?, ?, ?)"


def record(
    conn: sqlite3.Connection,
    result: CheckResult,
    state: AccountState,
    validators: dict[str, Validators],
    memo_json: str | None,
) -> None:
    """Write one check: its history row, the account's state, its posts, the validators and
    the memo (when not None)."""
    record_many(conn, [(result, state, validators, memo_json)])


def record_many(
    conn: sqlite3.Connection,
    items: Sequence[tuple[CheckResult, AccountState, dict[str, Validators], str | None]],
) -> None:
    """Write checks as :func:`record` writes each, in order, with few statements: the rows
    of each table go in runs of one statement (executemany), in the order of ``items``, so
    that the rows, their ids and the final content are those of :func:`record` called for
    each in turn (the tables are independent: only the order within a table matters)."""
    checks = _Runs()
    accounts = _Runs()
    posts: list[tuple[Any, ...]] = []
    validators: list[tuple[Any, ...]] = []
    memos: list[tuple[Any, ...]] = []
    for result, state, seen, memo_json in items:
        key = result.account.key
        obs = result.observation if result.ok else None
        changed = obs is not None and not obs.unchanged
        if (
            obs is not None and obs.unchanged and result.reason is None
            and result.message is None and result.retry_after is None
        ):  # ok and unchanged: the usual check
            checks.add(_INSERT_UNCHANGED_CHECK,
                       (*key, ts(result.checked_at), obs.method, result.duration))
        else:
            checks.add(_INSERT_CHECK, (
                *key, ts(result.checked_at), int(result.ok), result.reason, result.message,
                ts(obs.latest_post_at) if changed else None,
                obs.post_url if changed else None,
                obs.post_id if changed else None,
                obs.method if obs is not None else None,
                result.duration, int(obs is not None and obs.unchanged), result.retry_after,
            ))
        if state.ok is True and state.reason is None and state.message is None:
            accounts.add(_UPSERT_OK_ACCOUNT, (
                *key, ts(state.last_post_at), state.post_url, state.post_id, state.method,
                ts(state.last_check_at), ts(state.last_success_at),
                state.consecutive_failures,
            ))
        else:
            accounts.add(_UPSERT_ACCOUNT, (
                *key, ts(state.last_post_at), state.post_url, state.post_id, state.method,
                ts(state.last_check_at), ts(state.last_success_at),
                None if state.ok is None else int(state.ok), state.reason, state.message,
                state.consecutive_failures,
            ))
        if changed:
            posts.extend(
                (*key, post_key(p.id, p.published_at), p.id, ts(p.published_at))
                for p in obs.posts
            )
        if seen:
            validators.extend(
                (url, v.etag, v.last_modified, v.body_hash) for url, v in seen.items()
            )
        if memo_json is not None:
            memos.append((*key, memo_json))
    checks.run(conn)
    accounts.run(conn)
    if posts:
        conn.executemany(_UPSERT_POST, posts)
    if validators:
        conn.executemany(_UPSERT_VALIDATORS, validators)
    if memos:
        conn.executemany(_UPSERT_MEMO, memos)


class _Runs:
    """Rows for one table, as runs of consecutive rows written by the same statement."""

    __slots__ = ("runs",)

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[tuple[Any, ...]]]] = []

    def add(self, statement: str, row: tuple[Any, ...]) -> None:
        if not self.runs or self.runs[-1][0] is not statement:
            self.runs.append((statement, []))
        self.runs[-1][1].append(row)

    def run(self, conn: sqlite3.Connection) -> None:
        for statement, rows in self.runs:
            conn.executemany(statement, rows)


def prune(conn: sqlite3.Connection, now: float, retention: float) -> tuple[int, int]:
    """Delete old checks and old posts; ``(checks, posts)`` deleted."""
    checks = conn.execute("DELETE FROM checks WHERE checked_at < ?", (now - retention,))
    posts = conn.execute(
        "DELETE FROM posts WHERE published_at < ?", (now - max(retention, KEEP_POSTS_S),)
    )
    return checks.rowcount, posts.rowcount


def forget(conn: sqlite3.Connection, keys: list[Key]) -> int:
    """Delete everything about these accounts; rows deleted."""
    before = conn.total_changes
    for table in ("accounts", "posts", "memos", "checks"):
        conn.executemany(
            f"DELETE FROM {table} WHERE agency = ? AND platform = ? AND account = ?", keys
        )
    return conn.total_changes - before


# -- reads ----------------------------------------------------------------------------------
def load(conn: sqlite3.Connection) -> StoredState:
    """Every account's state with its posts of the 30 days before its last check (all its
    posts if it was never checked), every validator and every memo: one consistent read."""
    conn.execute("BEGIN")  # one snapshot for the four queries, whatever other processes do
    try:
        accounts = _load_accounts(conn)
        _load_posts(conn, accounts)
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
    finally:
        rollback(conn)
    return StoredState(accounts=accounts, validators=validators, memos=memos)


def _load_accounts(conn: sqlite3.Connection) -> dict[Key, AccountState]:
    accounts: dict[Key, AccountState] = {}
    rows = conn.execute(f"SELECT agency, platform, account, {_ACCOUNT_COLUMNS} FROM accounts")
    for row in rows:
        last_post, url, pid, method, checked, success, ok, reason, message, failures = row[3:]
        accounts[row[:3]] = AccountState(
            last_post_at=dt(last_post), post_url=url, post_id=pid, method=method,
            last_check_at=dt(checked), last_success_at=dt(success),
            ok=None if ok is None else bool(ok), reason=reason, message=message,
            consecutive_failures=failures,
        )
    return accounts


def _load_posts(conn: sqlite3.Connection, accounts: dict[Key, AccountState]) -> None:
    """Fill ``posts`` of each account. The rows come account by account in primary-key
    order (a scan of ``accounts`` and a range of ``posts`` each: no sort, no lookup per
    post), filtered in SQL as before; each account's dict is in ``published_at`` order
    (ties by key), as the query ordered by ``published_at`` used to build it."""
    rows = conn.execute(
        "SELECT a.agency, a.platform, a.account, p.post_key, p.published_at FROM accounts a "
        "JOIN posts p ON p.agency = a.agency AND p.platform = a.platform "
        "AND p.account = a.account "
        "WHERE a.last_check_at IS NULL OR p.published_at >= a.last_check_at - ? "
        "ORDER BY a.agency, a.platform, a.account",
        (KEEP_POSTS_S,),
    )
    fromtimestamp = datetime.fromtimestamp
    time_then_key = itemgetter(4, 3)
    for key, group in groupby(rows, itemgetter(0, 1, 2)):
        accounts[key].posts = {
            pkey: fromtimestamp(published, UTC)
            for published, pkey in sorted(map(time_then_key, group))
        }


def history(conn: sqlite3.Connection, key: Key, since: float | None) -> list[CheckRow]:
    rows = conn.execute(
        f"SELECT {_CHECK_COLUMNS} FROM checks "
        "WHERE agency = ? AND platform = ? AND account = ? AND checked_at >= ? "
        "ORDER BY checked_at, id",
        (*key, float("-inf") if since is None else since),
    )
    return [
        CheckRow(
            key=key, checked_at=dt(checked), ok=bool(ok), reason=reason, message=message,
            latest_post_at=dt(latest), post_url=url, post_id=pid, method=method,
            duration=duration, unchanged=bool(unchanged), retry_after=retry_after,
        )
        for (checked, ok, reason, message, latest, url, pid, method, duration, unchanged,
             retry_after) in rows
    ]


def posts(
    conn: sqlite3.Connection, key: Key, since: float | None
) -> list[tuple[datetime, str | None]]:
    rows = conn.execute(
        "SELECT published_at, post_id FROM posts "
        "WHERE agency = ? AND platform = ? AND account = ? AND published_at >= ? "
        "ORDER BY published_at, post_key",
        (*key, float("-inf") if since is None else since),
    )
    return [(dt(published), pid) for published, pid in rows]


# -- helpers --------------------------------------------------------------------------------
def memo_json(key: Key, memo: Mapping[str, Any]) -> str | None:
    """The memo as JSON, or None (memo not saved, logged) when a plugin put a non-JSON value
    in it: a plugin's bad note must not cost the check its durability."""
    try:
        return json.dumps(dict(memo), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        log.error("memo is not JSON; not saved", account="/".join(key), error=str(exc))
        return None


def ts(value: datetime | None) -> float | None:
    """A datetime as UTC epoch seconds (naive datetimes are refused, never guessed)."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value.isoformat()} cannot be stored")
    return value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")

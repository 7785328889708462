"""The SQLite state store: durable, versioned, honest about failures, off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor import store as store_module
from monitor.http import Validators
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import AccountState
from monitor.store import SCHEMA_VERSION, Store, StoreError

T0 = datetime(2026, 11, 20, 3, 0, 0, 123456, tzinfo=UTC)
WIB = timezone(timedelta(hours=7))
DINSOS = Account("dinsos", "instagram", "dinsos.cilegon", "https://x.test/d", 1800, 20, 604800)
DISHUB = Account("dishub", "rss", "https://dishub.test/feed", "https://dishub.test/", 1800, 20,
                 604800)


def success(at: datetime, *posts: Post, account: Account = DINSOS) -> CheckResult:
    return CheckResult(account, at, True, 0.25, Observation.from_posts(list(posts), "feed"))


def failure(at: datetime, account: Account = DINSOS) -> CheckResult:
    return CheckResult.failure(account, at, 20.0, Timeout("no answer in 20s"))


def unchanged(at: datetime, account: Account = DINSOS) -> CheckResult:
    return CheckResult(account, at, True, 0.05, Observation.not_modified("feed"))


class Recorder:
    """Applies results to in-memory states and records them, as the engine does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.states: dict[tuple[str, str, str], AccountState] = {}

    async def __call__(self, result: CheckResult, **kwargs: object) -> AccountState:
        key = result.account.key
        state = self.states.get(key, AccountState()).apply(result)
        await self.store.record(result, state, **kwargs)  # type: ignore[arg-type]
        self.states[key] = state
        return state


@pytest.fixture
async def store(tmp_path: Path):
    opened = await Store.open(tmp_path / "pantau.db")
    yield opened
    await opened.close()


async def reopen(store: Store) -> Store:
    await store.close()
    return await Store.open(store.path)


def assert_utc(value: datetime | None) -> None:
    assert value is not None and value.tzinfo is UTC


# -- round trips ---------------------------------------------------------------------------


async def test_round_trip_gives_the_same_state(store: Store) -> None:
    """record -> close -> reopen -> load gives the same AccountState, in aware UTC."""
    record = Recorder(store)
    await record(success(T0, Post(T0 - timedelta(hours=2), "a", "https://x.test/a"),
                         Post((T0 - timedelta(hours=1)).astimezone(WIB), None, "https://x.test/b")))
    await record(success(T0, Post(T0 - timedelta(days=3), "c"), account=DISHUB))
    await record(failure(T0 + timedelta(minutes=30), account=DISHUB))
    store = await reopen(store)
    try:
        loaded = (await store.load()).accounts
    finally:
        await store.close()
    assert loaded == record.states
    state = loaded[DINSOS.key]
    assert state.post_url == "https://x.test/b" and state.post_id is None
    for value in (state.last_post_at, state.last_check_at, state.last_success_at,
                  *state.posts.values()):
        assert_utc(value)
    assert state.last_check_at == T0  # microseconds survive
    assert loaded[DISHUB.key].ok is False and loaded[DISHUB.key].consecutive_failures == 1


async def test_failed_check_keeps_last_post_after_reload(store: Store) -> None:
    """A failed check after a success keeps last_post_at in memory and in the store."""
    record = Recorder(store)
    await record(success(T0, Post(T0 - timedelta(hours=1), "a", "https://x.test/a")))
    after = await record(failure(T0 + timedelta(hours=1)))
    assert after.last_post_at == T0 - timedelta(hours=1)
    store = await reopen(store)
    try:
        state = (await store.load()).accounts[DINSOS.key]
        rows = await store.history(DINSOS.key)
    finally:
        await store.close()
    assert state.last_post_at == T0 - timedelta(hours=1) and state.post_id == "a"
    assert (state.ok, state.reason, state.message) == (False, "timeout", "no answer in 20s")
    assert state.last_success_at == T0
    assert rows[-1].ok is False and rows[-1].latest_post_at is None and rows[-1].reason == "timeout"


async def test_unchanged_keeps_last_post_after_reload(store: Store) -> None:
    """An unchanged answer keeps the last post, and its history row says it was unchanged."""
    record = Recorder(store)
    await record(success(T0, Post(T0 - timedelta(hours=1), "a")))
    await record(unchanged(T0 + timedelta(hours=1)))
    store = await reopen(store)
    try:
        state = (await store.load()).accounts[DINSOS.key]
        rows = await store.history(DINSOS.key)
    finally:
        await store.close()
    assert state.last_post_at == T0 - timedelta(hours=1)
    assert state.last_success_at == T0 + timedelta(hours=1)
    assert [row.unchanged for row in rows] == [False, True]
    assert rows[1].latest_post_at is None and rows[1].method == "feed"


async def test_last_post_never_moves_backwards_after_reload(store: Store) -> None:
    """An older newest post seen later does not move the stored last post back."""
    record = Recorder(store)
    await record(success(T0, Post(T0 - timedelta(hours=1), "new")))
    await record(success(T0 + timedelta(hours=1), Post(T0 - timedelta(days=2), "old")))
    store = await reopen(store)
    try:
        state = (await store.load()).accounts[DINSOS.key]
    finally:
        await store.close()
    assert state.last_post_at == T0 - timedelta(hours=1) and state.post_id == "new"
    assert set(state.posts) == {"new", "old"}


async def test_validators_and_memos_persist(store: Store) -> None:
    """Validators and memos survive a reopen; a memo is replaced only when given."""
    record = Recorder(store)
    feed = "https://dinsos.test/feed"
    await record(success(T0), validators={feed: Validators(etag='"v1"', body_hash="h1")},
                 memo={"channel_id": "UC123", "tries": [1, 2]})
    await record(success(T0 + timedelta(hours=1)),
                 validators={feed: Validators(etag='"v2"', last_modified="Fri, 20 Nov 2026")})
    await record(success(T0, account=DISHUB), memo={"method": "wp-json"})
    await record(success(T0 + timedelta(hours=1), account=DISHUB), memo={})
    store = await reopen(store)
    try:
        stored = await store.load()
    finally:
        await store.close()
    assert stored.validators == {feed: Validators(etag='"v2"', last_modified="Fri, 20 Nov 2026")}
    assert stored.memos == {DINSOS.key: {"channel_id": "UC123", "tries": [1, 2]}, DISHUB.key: {}}


async def test_non_json_memo_does_not_lose_the_check(store: Store) -> None:
    """A memo that is not JSON is not saved, but the check itself is still committed."""
    await store.record(success(T0), AccountState().apply(success(T0)), memo={"when": T0})
    assert len(await store.history(DINSOS.key)) == 1
    assert (await store.load()).memos == {}


async def test_record_is_committed_before_it_returns(store: Store) -> None:
    """Once record returns, another connection already sees the check (nothing pending)."""
    await Recorder(store)(success(T0, Post(T0, "a")))
    other = sqlite3.connect(store.path)
    try:
        assert other.execute("SELECT count(*) FROM checks").fetchone() == (1,)
        assert other.execute("SELECT count(*) FROM posts").fetchone() == (1,)
    finally:
        other.close()


# -- history, posts, prune, forget ---------------------------------------------------------


async def test_history_is_oldest_first_and_honours_since(store: Store) -> None:
    """history returns one account's checks oldest first, from ``since`` inclusive."""
    record = Recorder(store)
    for hours in (2, 0, 1):
        await record(success(T0 + timedelta(hours=hours)))
    await record(success(T0 + timedelta(hours=5), account=DISHUB))
    rows = await store.history(DINSOS.key)
    assert [row.checked_at for row in rows] == [T0 + timedelta(hours=h) for h in (0, 1, 2)]
    assert all(row.key == DINSOS.key and row.duration == 0.25 for row in rows)
    since = await store.history(DINSOS.key, since=(T0 + timedelta(hours=1)).astimezone(WIB))
    assert [row.checked_at for row in since] == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert_utc(since[0].checked_at)


async def test_posts_are_unique_and_ordered(store: Store) -> None:
    """posts lists each post once (by identity), oldest first, from ``since`` inclusive."""
    record = Recorder(store)
    first, second = T0 - timedelta(days=2), T0 - timedelta(hours=1)
    await record(success(T0, Post(second, "b"), Post(first, "a")))
    await record(success(T0 + timedelta(hours=1), Post(second, "b"), Post(first.astimezone(WIB))))
    assert await store.posts(DINSOS.key) == [(first, None), (first, "a"), (second, "b")]
    assert await store.posts(DINSOS.key, since=second) == [(second, "b")]
    assert await store.posts(DISHUB.key) == []


async def test_prune_removes_old_history_and_keeps_state(store: Store) -> None:
    """prune deletes old checks and old posts, keeps recent ones, never touches accounts."""
    record = Recorder(store)
    now = T0 + timedelta(days=100)
    await record(success(T0, Post(T0 - timedelta(days=1), "ancient")))
    await record(failure(now - timedelta(days=10)))
    await record(success(now - timedelta(days=1), Post(now - timedelta(days=20), "recent")))
    before = (await store.load()).accounts
    removed = await store.prune(now, timedelta(days=15).total_seconds())
    assert removed == 2  # the first check and the ancient post
    assert [row.checked_at for row in await store.history(DINSOS.key)] == [
        now - timedelta(days=10), now - timedelta(days=1)]
    # posts inside the 30-day window survive even a shorter retention
    assert [pid for _, pid in await store.posts(DINSOS.key)] == ["recent"]
    assert (await store.load()).accounts == before
    assert await store.prune(now, timedelta(days=15).total_seconds()) == 0


async def test_forget_drops_only_the_given_accounts(store: Store) -> None:
    """forget removes an account's state, posts, memo and history and nothing else."""
    record = Recorder(store)
    await record(success(T0, Post(T0, "a")), memo={"x": 1})
    await record(success(T0, Post(T0, "b"), account=DISHUB), memo={"y": 2})
    await store.forget([DINSOS.key])
    stored = await store.load()
    assert set(stored.accounts) == {DISHUB.key} and set(stored.memos) == {DISHUB.key}
    assert await store.history(DINSOS.key) == [] and await store.posts(DINSOS.key) == []
    assert len(await store.history(DISHUB.key)) == 1


# -- opening -------------------------------------------------------------------------------


async def test_schema_version_and_wal(store: Store) -> None:
    """A new store has the current user_version, WAL journaling and synchronous=FULL."""
    assert SCHEMA_VERSION >= 1
    pragmas = await store._run(lambda: tuple(
        store._db.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("user_version", "journal_mode", "synchronous", "busy_timeout")))
    assert pragmas[:3] == (SCHEMA_VERSION, "wal", 2)  # 2 = FULL
    assert pragmas[3] > 0


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer pantau is refused, naming both versions."""
    path = tmp_path / "pantau.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError) as info:
        await Store.open(path)
    assert str(info.value) == (
        f"state store {path} was written by a newer pantau (schema {SCHEMA_VERSION + 1}); "
        f"this version knows {SCHEMA_VERSION}")


async def test_non_sqlite_file_is_refused(tmp_path: Path) -> None:
    """A file that is not SQLite is refused with a message naming the path."""
    path = tmp_path / "pantau.yaml"
    path.write_text("listen: 127.0.0.1:9864\n" * 100)
    with pytest.raises(StoreError, match="not a pantau state database") as info:
        await Store.open(path)
    assert str(path) in str(info.value)
    assert path.read_text().startswith("listen:")  # left as it was


async def test_missing_directory_is_refused(tmp_path: Path) -> None:
    """A path in a directory that does not exist is refused; the directory is not created."""
    path = tmp_path / "nope" / "pantau.db"
    with pytest.raises(StoreError, match="does not exist") as info:
        await Store.open(path)
    assert str(tmp_path / "nope") in str(info.value)
    assert not path.parent.exists()


async def test_unwritable_directory_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A directory this user cannot write is refused with a clear message."""
    monkeypatch.setattr(store_module.os, "access", lambda *args, **kwargs: False)
    with pytest.raises(StoreError, match="not writable by this user"):
        await Store.open(tmp_path / "pantau.db")


async def test_reopen_keeps_data_and_schema(tmp_path: Path) -> None:
    """Opening an existing store again migrates nothing and loses nothing."""
    path = tmp_path / "pantau.db"
    async with await Store.open(path) as first:
        await Recorder(first)(success(T0))
    async with await Store.open(path) as second:
        assert len(await second.history(DINSOS.key)) == 1


# -- failures ------------------------------------------------------------------------------


async def test_read_only_write_fails_then_recovers(store: Store) -> None:
    """A write to a read-only database raises StoreError, sets healthy=False, and the next
    successful write sets healthy=True; the failed check left nothing half-written."""
    record = Recorder(store)
    await record(success(T0))
    await store._run(lambda: store._db.execute("PRAGMA query_only = ON"))
    with pytest.raises(StoreError, match="read-only") as info:
        await record(failure(T0 + timedelta(hours=1)))
    message = str(info.value)
    assert str(store.path) in message and "dinsos/instagram/dinsos.cilegon" in message
    assert store.healthy is False
    assert len(await store.history(DINSOS.key)) == 1
    await store._run(lambda: store._db.execute("PRAGMA query_only = OFF"))
    await record(success(T0 + timedelta(hours=2)))
    assert store.healthy is True
    assert len(await store.history(DINSOS.key)) == 2


async def test_disk_full_fails_then_recovers(store: Store) -> None:
    """A full disk raises StoreError saying so, sets healthy=False, and the store recovers."""
    record = Recorder(store)
    await record(success(T0))
    size = await store._run(lambda: store._db.execute("PRAGMA page_count").fetchone()[0])
    await store._run(lambda: store._db.execute(f"PRAGMA max_page_count = {size}"))
    posts = [Post(T0 - timedelta(seconds=i), f"post-{i:05d}-" + "x" * 100) for i in range(2000)]
    with pytest.raises(StoreError, match="disk is full"):
        await record(success(T0 + timedelta(hours=1), *posts))
    assert store.healthy is False
    assert await store.posts(DINSOS.key) == []
    await store._run(lambda: store._db.execute("PRAGMA max_page_count = 1000000"))
    await record(success(T0 + timedelta(hours=2), *posts))
    assert store.healthy is True
    assert len(await store.posts(DINSOS.key)) == 2000


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    """After close (which may be called twice), calls raise StoreError, not a thread error."""
    store = await Store.open(tmp_path / "pantau.db")
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.load()


# -- concurrency ---------------------------------------------------------------------------


async def test_database_work_runs_in_one_worker_thread(store: Store) -> None:
    """All database work happens in one thread that is not the event loop's."""
    idents = {await store._run(threading.get_ident) for _ in range(5)}
    assert len(idents) == 1 and threading.get_ident() not in idents


async def test_event_loop_keeps_running_during_a_large_record(store: Store) -> None:
    """A concurrent task keeps ticking while a large batch is written."""
    posts = [Post(T0 - timedelta(seconds=i), f"p{i}") for i in range(20000)]
    done = False
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    await Recorder(store)(success(T0, *posts))
    done = True
    await task
    assert ticks > started + 1
    assert len(await store.posts(DINSOS.key)) == 20000


async def test_concurrent_records_are_all_committed(store: Store) -> None:
    """Many records at once are serialised by the worker and all committed."""
    results = [success(T0 + timedelta(minutes=i)) for i in range(50)]
    await asyncio.gather(*(store.record(r, AccountState().apply(r)) for r in results))
    assert len(await store.history(DINSOS.key)) == 50

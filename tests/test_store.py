"""The SQLite state store: durable, versioned, honest about failures, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import shutil
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from monitor import store as store_module
from monitor import store_sql
from monitor.http import Validators
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import AccountState
from monitor.store import SCHEMA_VERSION, Store, StoreError, read_generation

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


# -- the generation --------------------------------------------------------------------------


async def test_generation_rises_with_each_write_that_shows(store: Store) -> None:
    """Every transaction that changes what /metrics would show after a restart raises the
    generation by one (a record; a prune that deleted posts; a forget that deleted rows),
    and read_generation reads the same number from another connection."""
    path = store.path
    start = store.generation
    assert read_generation(path) == start
    result = success(T0, Post(T0, "new"))
    assert await store.record(result, AccountState().apply(result)) == start + 1
    assert store.generation == read_generation(path) == start + 1
    await store.record(failure(T0 + timedelta(hours=1)), AccountState())
    assert store.generation == start + 2
    assert await store.prune(T0, timedelta(days=400).total_seconds()) == 0
    assert store.generation == start + 2
    assert await store.prune(T0 + timedelta(hours=2), 60.0) == 2  # history only
    assert store.generation == start + 2
    result = success(T0 + timedelta(hours=3), Post(T0 - timedelta(days=40), "old"))
    await store.record(result, AccountState().apply(result))
    assert await store.prune(T0 + timedelta(hours=3), 0.0) == 1  # the 40-day-old post
    assert store.generation == start + 4 == read_generation(path)
    await store.forget([DISHUB.key])  # nothing stored
    assert store.generation == start + 4
    await store.forget([DINSOS.key])
    assert store.generation == start + 5
    store = await reopen(store)
    try:
        assert store.generation == start + 5 == read_generation(path)
    finally:
        await store.close()
    assert read_generation(path) == start + 5


async def test_generation_is_not_raised_by_a_failed_write(store: Store) -> None:
    """A record that could not be committed leaves the generation where it was."""
    start = store.generation
    await store._run(lambda: store._db.execute("PRAGMA query_only = ON"))
    with pytest.raises(StoreError):
        await store.record(success(T0), AccountState().apply(success(T0)))
    assert store.generation == start == read_generation(store.path)


async def test_new_stores_start_at_different_generations(tmp_path: Path) -> None:
    """A store deleted and created again does not start where the old one did (a snapshot
    of the old store must not match the new one)."""
    starts = set()
    for name in ("a.db", "b.db", "c.db"):
        async with await Store.open(tmp_path / name) as opened:
            starts.add(opened.generation)
    assert len(starts) == 3 and all(0 <= g < 2**48 for g in starts)


async def test_read_generation_writes_nothing(tmp_path: Path) -> None:
    """read_generation creates no file: not the database, not its -wal or -shm; and is
    None for a missing file, a directory, a file that is not SQLite, a schema 1 store."""
    missing = tmp_path / "missing.db"
    assert read_generation(missing) is None
    assert read_generation(str(missing)) is None
    assert list(tmp_path.iterdir()) == []
    assert read_generation(tmp_path) is None
    text = tmp_path / "pantau.yaml"
    text.write_text("listen: 127.0.0.1:9864\n" * 100)
    assert read_generation(text) is None
    (tmp_path / "empty.db").touch()
    assert read_generation(tmp_path / "empty.db") is None
    old = tmp_path / "v1.db"
    with contextlib.closing(sqlite3.connect(old)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        for statement in store_sql.MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
    assert read_generation(old) is None
    closed = tmp_path / "odd name?#%.db"
    async with await Store.open(closed) as opened:
        generation = opened.generation
    before = sorted(p.name for p in tmp_path.iterdir())
    started = time.perf_counter()
    for _ in range(20):
        assert read_generation(closed) == generation
    assert (time.perf_counter() - started) / 20 < 0.05  # about a millisecond
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no -wal, no -shm


async def test_read_generation_of_a_crashed_store(store: Store, tmp_path: Path) -> None:
    """What a crash leaves (database + WAL not checkpointed) is read with its last commit;
    and a store being written by another process is read without waiting."""
    await store.record(success(T0), AccountState().apply(success(T0)))
    crash = tmp_path / "crash"
    crash.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copy(f"{store.path}{suffix}", crash / f"pantau.db{suffix}")
    assert read_generation(crash / "pantau.db") == store.generation
    with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE meta SET value = value + 1")
        assert read_generation(store.path) == store.generation  # not the uncommitted one
        writer.execute("ROLLBACK")


async def test_schema_1_store_is_migrated_keeping_its_data(tmp_path: Path) -> None:
    """A store written by the previous schema gets the generation table; nothing is lost."""
    path = tmp_path / "pantau.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        for statement in store_sql.MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO accounts (agency, platform, account, last_post_at, last_check_at, ok) "
            "VALUES ('dinsos', 'instagram', 'dinsos.cilegon', ?, ?, 1)",
            (T0.timestamp() - 3600, T0.timestamp()))
        db.commit()
    async with await Store.open(path) as opened:
        assert (await opened.load()).accounts[DINSOS.key].last_post_at == T0 - timedelta(
            hours=1)
        generation = opened.generation
    assert read_generation(path) == generation
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


# -- the fast load -----------------------------------------------------------------------------


def _old_load(path: Path) -> dict[tuple[str, str, str], AccountState]:
    """The accounts as Store.load built them before the one-row-per-account loader: the
    posts query joined accounts for each post, in published_at order."""
    dt = store_sql.dt
    accounts: dict[tuple[str, str, str], AccountState] = {}
    with contextlib.closing(sqlite3.connect(path)) as conn:
        for row in conn.execute(
            "SELECT agency, platform, account, last_post_at, post_url, post_id, method, "
            "last_check_at, last_success_at, ok, reason, message, consecutive_failures "
            "FROM accounts"
        ):
            last_post, url, pid, method, checked, success_, ok, reason, message, failures = (
                row[3:])
            accounts[row[:3]] = AccountState(
                last_post_at=dt(last_post), post_url=url, post_id=pid, method=method,
                last_check_at=dt(checked), last_success_at=dt(success_),
                ok=None if ok is None else bool(ok), reason=reason, message=message,
                consecutive_failures=failures,
            )
        for agency, platform, account, pkey, published in conn.execute(
            "SELECT p.agency, p.platform, p.account, p.post_key, p.published_at FROM posts p "
            "JOIN accounts a USING (agency, platform, account) "
            "WHERE a.last_check_at IS NULL OR p.published_at >= a.last_check_at - ? "
            "ORDER BY p.published_at",
            (store_sql.KEEP_POSTS_S,),
        ):
            accounts[(agency, platform, account)].posts[pkey] = dt(published)
    return accounts


def _random_store(path: Path, rng: random.Random) -> None:
    """Accounts with and without posts, never checked, posts older than the window and at
    its very edge, posts of no account, ties in time, odd keys, times off the microsecond."""
    keep = store_sql.KEEP_POSTS_S
    odd = ["", ",", "\x1f", '"', "'", "é", "🙂", " ", "\\", "|", "\n"]

    def word() -> str:
        return "".join(rng.choice([*"abcxyz019._-", *odd]) for _ in range(rng.randint(1, 12)))

    now = T0.timestamp()
    accounts, posts = [], []
    for i in range(400):
        key = (rng.choice(["dinsos", "dishub", "kec-ciwandan", word()]),
               rng.choice(["rss", "instagram", "website"]), f"{word()}{i}")
        roll = rng.random()
        if roll < 0.15:
            checked = None  # never checked
        elif roll < 0.5:
            checked = round(now - rng.uniform(0, 90 * 86400), 6)  # microsecond exact
        else:
            checked = now - rng.uniform(0, 90 * 86400)  # any float
        accounts.append((*key, None if checked is None else checked - 3600, "https://x.test/",
                         word(), "feed", checked, checked, rng.choice([None, 0, 1]),
                         rng.choice([None, "timeout"]), None, rng.randint(0, 3)))
        base = now if checked is None else checked
        times: list[float] = []
        for _ in range(rng.choice([0, 0, 1, 3, 10, 25])):
            kind = rng.random()
            if kind < 0.1 and checked is not None:
                t = checked - keep  # exactly at the edge: kept
            elif kind < 0.15 and checked is not None:
                t = math.nextafter(checked - keep, -math.inf)  # just past it: dropped
            elif kind < 0.3 and times:
                t = rng.choice(times)  # a tie
            else:
                t = base - rng.uniform(-86400, 60 * 86400)
            times.append(t)
        for n, t in enumerate(times):
            posts.append((*key, f"{word()}#{n}", rng.choice([None, word()]), t))
    for i in range(30):  # posts of accounts the store does not have
        posts.append(("gone", "rss", f"{word()}{i}", word(), None, now - rng.uniform(0, 1e6)))
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO accounts (agency, platform, account, last_post_at, post_url, post_id, "
            "method, last_check_at, last_success_at, ok, reason, message, "
            "consecutive_failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", accounts)
        db.executemany(
            "INSERT INTO posts (agency, platform, account, post_key, post_id, published_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", posts)
        db.commit()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_load_builds_what_the_old_query_built(tmp_path: Path, seed: int) -> None:
    """On a random store, load() gives the same accounts as the old posts query, each
    account's posts in the same (published_at) order."""
    path = tmp_path / "pantau.db"
    async with await Store.open(path):
        pass
    _random_store(path, random.Random(seed))
    expected = _old_load(path)
    async with await Store.open(path) as opened:
        loaded = (await opened.load()).accounts
    assert loaded == expected
    assert list(loaded) == list(expected)
    for key, state in expected.items():
        assert list(loaded[key].posts.items()) == list(state.posts.items()), key
    counts = [len(state.posts) for state in loaded.values()]
    assert counts.count(0) > 50 and max(counts) >= 20  # the store had both kinds
    assert any(s.last_check_at is None and s.posts for s in loaded.values())

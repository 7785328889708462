"""Group commit: records waiting while a commit runs share the next transaction.

Deterministic: ``asyncio.gather`` starts every record in the same turn of the loop, so the
first one is committed alone and all the others wait for it and go together into the next
transaction (the worker's answer reaches the loop only after those turns). No sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import store as store_module
from monitor import store_sql
from monitor.model import Account, CheckResult, Observation, Post
from monitor.state import AccountState
from monitor.store import BATCH_MAX, Store, StoreError

T0 = datetime(2026, 11, 20, 3, 0, 0, tzinfo=UTC)


def account(i: int) -> Account:
    return Account(f"agency{i % 7}", "rss", f"https://a{i}.test/feed", f"https://a{i}.test/",
                   1800, 20, 604800)


def success(acc: Account, at: datetime, *posts: Post) -> CheckResult:
    return CheckResult(acc, at, True, 0.25, Observation.from_posts(list(posts), "feed"))


def bad(acc: Account, at: datetime) -> CheckResult:
    """A check SQLite refuses on its own: checks.duration is NOT NULL."""
    return CheckResult(acc, at, True, None, Observation.not_modified("feed"))  # type: ignore[arg-type]


def state_of(result: CheckResult) -> AccountState:
    return AccountState().apply(result)


@pytest.fixture
async def store(tmp_path: Path):
    opened = await Store.open(tmp_path / "pantau.db")
    yield opened
    await opened.close()


def rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


async def test_concurrent_records_share_few_transactions(store: Store) -> None:
    """300 concurrent records: 2 commits (the first alone, then the rest), all durable and
    readable after close and reopen, one history row each."""
    n = 300
    results = [success(account(i), T0 + timedelta(seconds=i),
                       Post(T0 - timedelta(hours=i % 24), f"p{i}")) for i in range(n)]
    before = store.commits
    generations = await asyncio.gather(*(store.record(r, state_of(r)) for r in results))
    assert store.commits - before == 2, "one commit for the first, one for the 299 waiting"
    assert set(generations) == {store.generation - 1, store.generation}
    path = store.path
    await store.close()
    async with await Store.open(path) as reopened:
        loaded = (await reopened.load()).accounts
    assert loaded == {r.account.key: state_of(r) for r in results}
    assert rows(path, "SELECT count(*) FROM checks") == [(n,)]
    assert rows(path, "SELECT count(*) FROM posts") == [(n,)]


async def test_a_batch_is_capped(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """No transaction holds more than BATCH_MAX records; the rest wait for the next one."""
    assert BATCH_MAX >= 64
    monkeypatch.setattr(store_module, "BATCH_MAX", 8)
    sizes: list[int] = []
    commit = store._commit_records

    def spy(batch):  # noqa: ANN001, ANN202
        sizes.append(len(batch))
        return commit(batch)

    monkeypatch.setattr(store, "_commit_records", spy)
    results = [success(account(i), T0) for i in range(41)]
    await asyncio.gather(*(store.record(r, state_of(r)) for r in results))
    assert sizes == [1, 8, 8, 8, 8, 8]
    assert rows(store.path, "SELECT count(*) FROM checks") == [(41,)]


async def test_records_of_one_account_keep_their_order(store: Store) -> None:
    """Records are written in the order record() was called, within and across batches:
    the account ends with the state of the last call, history rows in call order."""
    acc = account(1)
    times = [T0 + timedelta(minutes=m) for m in (5, 1, 9, 3, 7, 2)]
    states, state = [], AccountState()
    for at in times:
        state = state.apply(success(acc, at, Post(at - timedelta(hours=1), f"p{at.minute}")))
        states.append(state)
    await asyncio.gather(*(
        store.record(success(acc, at, Post(at - timedelta(hours=1), f"p{at.minute}")), st)
        for at, st in zip(times, states, strict=True)))
    assert [row[0] for row in rows(store.path, "SELECT checked_at FROM checks ORDER BY id")] == [
        at.timestamp() for at in times]
    assert (await store.load()).accounts[acc.key] == states[-1]


async def test_a_bad_record_fails_only_its_caller(store: Store) -> None:
    """One record SQLite refuses (a NOT NULL column) and one it cannot bind (an object as a
    post id), amid good ones: only their callers get a StoreError naming their account;
    the others are committed, in one transaction, and the store stays healthy."""
    results = [success(account(i), T0) for i in range(20)]
    results[5] = bad(account(5), T0)
    results[11] = success(account(11), T0, Post(T0, object()))  # type: ignore[arg-type]
    before = store.commits
    outcomes = await asyncio.gather(
        *(store.record(r, state_of(r)) for r in results), return_exceptions=True)
    failed = {i: o for i, o in enumerate(outcomes) if isinstance(o, BaseException)}
    assert set(failed) == {5, 11}
    for i, error in failed.items():
        assert isinstance(error, StoreError)
        assert str(error).startswith(
            f"state store {store.path}: cannot record the check of {'/'.join(account(i).key)}: ")
    assert isinstance(failed[5].__cause__, sqlite3.IntegrityError)
    assert "NOT NULL" in str(failed[5])
    assert store.commits - before == 2  # the first alone; the other 19 together (again)
    assert store.healthy is True
    stored = (await store.load()).accounts
    assert set(stored) == {r.account.key for i, r in enumerate(results) if i not in failed}
    assert rows(store.path, "SELECT count(*) FROM checks") == [(18,)]
    assert rows(store.path, "SELECT count(*) FROM posts") == [(0,)]  # 11's post rolled back


async def test_a_lone_bad_record_fails_like_before(store: Store) -> None:
    """A bad record alone in its transaction: StoreError naming it, healthy False, and the
    next good record makes the store healthy again."""
    with pytest.raises(StoreError, match="cannot record the check of agency3/rss/"):
        await store.record(bad(account(3), T0), AccountState())
    assert store.healthy is False
    good = success(account(3), T0)
    await store.record(good, state_of(good))
    assert store.healthy is True


async def test_every_record_of_a_batch_failing_on_its_own(store: Store) -> None:
    """A batch whose every record is bad commits nothing and fails each caller."""
    first = success(account(0), T0)
    generation = store.generation
    outcomes = await asyncio.gather(
        store.record(first, state_of(first)),
        *(store.record(bad(account(i), T0), AccountState()) for i in range(1, 6)),
        return_exceptions=True)
    assert isinstance(outcomes[0], int)
    assert all(isinstance(o, StoreError) for o in outcomes[1:])
    assert store.generation == generation + 1 and store.healthy is False


async def test_a_storage_failure_fails_every_caller(store: Store) -> None:
    """The database turns read-only under a batch: every caller gets the StoreError a lone
    record would get ("read-only", naming its own account), nothing is half written, the
    store is unhealthy; once writable again, records commit and it is healthy."""
    first = success(account(0), T0)
    await store.record(first, state_of(first))
    generation = store.generation
    await store._run(lambda: store._db.execute("PRAGMA query_only = ON"))
    results = [success(account(i), T0 + timedelta(hours=1)) for i in range(10)]
    outcomes = await asyncio.gather(
        *(store.record(r, state_of(r)) for r in results), return_exceptions=True)
    for r, outcome in zip(results, outcomes, strict=True):
        assert isinstance(outcome, StoreError), outcome
        message = str(outcome)
        assert message.startswith(
            f"state store {store.path}: cannot record the check of {'/'.join(r.account.key)}: "
            "the database is read-only")
    assert store.healthy is False and store.generation == generation
    await store._run(lambda: store._db.execute("PRAGMA query_only = OFF"))
    await asyncio.gather(*(store.record(r, state_of(r)) for r in results))
    assert store.healthy is True
    assert rows(store.path, "SELECT count(*) FROM checks") == [(11,)]


async def test_a_storage_failure_while_isolating_fails_the_rest(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad record makes the batch go again record by record; if the disk then fills up,
    every record of the batch fails with "the disk is full", none is committed."""
    real = store_sql.record
    full = {"on": False}

    def record(conn, result, *args):  # noqa: ANN001, ANN202
        if result.duration is None:
            full["on"] = True  # the bad record is reported; then the disk is full
        elif full["on"]:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorname = "SQLITE_FULL"
            raise error
        return real(conn, result, *args)

    monkeypatch.setattr(store_sql, "record", record)
    results = [success(account(i), T0) for i in range(6)]
    results[2] = bad(account(2), T0)
    outcomes = await asyncio.gather(
        *(store.record(r, state_of(r)) for r in results), return_exceptions=True)
    assert isinstance(outcomes[0], int)
    for outcome in outcomes[1:]:
        assert isinstance(outcome, StoreError) and "the disk is full" in str(outcome)
    assert store.healthy is False
    assert rows(store.path, "SELECT count(*) FROM checks") == [(1,)]


async def test_a_cancelled_caller_does_not_lose_its_record_or_others(store: Store) -> None:
    """A caller cancelled while it waits: its record is still committed (it was handed to
    the store), the others are committed and answered, nothing complains."""
    results = [success(account(i), T0) for i in range(10)]
    tasks = [asyncio.create_task(store.record(r, state_of(r))) for r in results]
    await asyncio.sleep(0)  # every task has queued its record and waits
    tasks[0].cancel()  # in the running commit
    tasks[6].cancel()  # waiting for the next one
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert isinstance(done[6], asyncio.CancelledError)
    assert all(isinstance(d, int) for i, d in enumerate(done) if i not in (0, 6))
    assert rows(store.path, "SELECT count(*) FROM checks") == [(10,)]


async def test_a_cancelled_bad_record_harms_nobody(store: Store) -> None:
    """A bad record whose caller went away: the others are committed, no stray error."""
    results = [success(account(i), T0) for i in range(5)]
    results[3] = bad(account(3), T0)
    tasks = [asyncio.create_task(store.record(r, state_of(r))) for r in results]
    await asyncio.sleep(0)
    tasks[3].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(d) for d in done] == [int, int, int, asyncio.CancelledError, int]
    assert rows(store.path, "SELECT count(*) FROM checks") == [(4,)]


async def test_close_commits_what_is_waiting(tmp_path: Path) -> None:
    """close() while records wait: they are committed first, their callers answered; a
    record after close() began is refused."""
    store = await Store.open(tmp_path / "pantau.db")
    results = [success(account(i), T0) for i in range(50)]
    tasks = [asyncio.create_task(store.record(r, state_of(r))) for r in results]
    await asyncio.sleep(0)
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    with pytest.raises(StoreError, match="closed"):
        await store.record(results[0], state_of(results[0]))
    await asyncio.gather(closing, store.close())  # a second close waits for the first
    assert all(isinstance(t.result(), int) for t in tasks)
    assert rows(store.path, "SELECT count(*) FROM checks") == [(50,)]


async def test_other_work_keeps_its_place_in_line(store: Store) -> None:
    """A forget asked for after records runs after them; a load after them sees them."""
    results = [success(account(i), T0) for i in range(6)]
    records = [asyncio.create_task(store.record(r, state_of(r))) for r in results]
    await asyncio.sleep(0)
    forget = asyncio.create_task(store.forget([account(2).key]))
    loaded = asyncio.create_task(store.load())
    await asyncio.gather(*records, forget)
    assert account(2).key not in (await loaded).accounts
    assert len((await loaded).accounts) == 5


async def test_a_cancelled_read_does_not_run(store: Store) -> None:
    """Work other than a record whose caller stopped waiting before it started is skipped,
    as a job not yet started in an executor is."""
    ran: list[int] = []
    first = success(account(0), T0)
    recording = asyncio.create_task(store.record(first, state_of(first)))
    await asyncio.sleep(0)
    skipped = asyncio.create_task(store._run(ran.append, 1))
    await asyncio.sleep(0)
    skipped.cancel()
    await recording
    assert await store._run(ran.append, 2) is None
    assert ran == [2]

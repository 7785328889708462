"""The cheaper steady path (an unchanged check): the same rows, the same logs, the same links.

- ``store_sql.record_many`` writes a batch with a few statements; the tables must end up as
  ``record`` called for each check in turn leaves them (ids and order included);
- ``CheckLog`` binds the check's logger only for a line that is written;
- the checker's context variables are put back as they were after the check;
- ``Memo`` copies the stored notes only when a plugin writes one;
- ``fastfeed._join`` answers as feedparser's ``_urljoin`` for any base and link.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from feedparser.urls import _urljoin
from structlog.testing import capture_logs

from monitor import store_sql
from monitor.checker import Checker, CheckLog, Memo
from monitor.http import HttpClient, Validators
from monitor.model import Account, CheckResult, Observation, ParseError, Post, RateLimited
from monitor.platform import CheckContext, Platform, PlatformSettings
from monitor.state import AccountState
from plugins.fastfeed import _JOINED_AS_IS, _join

T0 = datetime(2026, 11, 20, 3, 0, 0, tzinfo=UTC)
TABLES = {
    "checks": "SELECT * FROM checks ORDER BY id",
    "accounts": "SELECT * FROM accounts ORDER BY agency, platform, account",
    "posts": "SELECT * FROM posts ORDER BY agency, platform, account, post_key",
    "validators": "SELECT * FROM validators ORDER BY url",
    "memos": "SELECT * FROM memos ORDER BY agency, platform, account",
}


def _account(i: int) -> Account:
    return Account(f"agency{i % 3}", "rss", f"https://a{i}.test/feed", f"https://a{i}.test/",
                   1800, 20, 604800)


def _random_checks(rng: random.Random, count: int) -> list[tuple[Any, ...]]:
    """Checks of a few accounts (so that one account comes back within a batch), each with
    the state it leaves: unchanged, changed, failed, rate limited; validators and memos."""
    states: dict[tuple[str, str, str], AccountState] = {}
    items = []
    for n in range(count):
        acc = _account(rng.randrange(6))
        at = T0 + timedelta(minutes=n // 2)  # two checks may share a time
        kind = rng.choice(["unchanged", "unchanged", "changed", "failed", "limited", "none"])
        if kind == "unchanged":
            result = CheckResult(acc, at, True, rng.random(),
                                 Observation.not_modified(rng.choice(["feed", ""])))
        elif kind == "changed":
            posts = [
                Post(at - timedelta(hours=rng.randrange(1, 400)), rng.choice([None, f"p{k}"]),
                     rng.choice([None, f"https://x.test/{k}"]))
                for k in range(rng.randrange(4))
            ]
            result = CheckResult(acc, at, True, rng.random(), Observation.from_posts(posts, "feed"))
        elif kind == "failed":
            result = CheckResult.failure(acc, at, rng.random(), ParseError("not a feed"))
        elif kind == "limited":
            result = CheckResult.failure(acc, at, 0.1, RateLimited("429", retry_after=60.0))
        else:
            result = CheckResult(acc, at, True, 0.5, None)
        state = states.get(acc.key, AccountState()).apply(result)
        states[acc.key] = state
        seen = {acc.account: Validators(etag=f'"{n}"', body_hash="ab" * 32)}
        if rng.random() < 0.7:
            seen = {}
        memo = store_sql.memo_json(acc.key, {"n": n}) if rng.random() < 0.2 else None
        items.append((result, state, seen, memo))
    return items


def _dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {table: conn.execute(query).fetchall() for table, query in TABLES.items()}


def _fresh(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    store_sql.migrate(conn, 0)
    return conn


@pytest.mark.parametrize("seed", range(20))
def test_record_many_writes_what_record_writes_one_by_one(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    batches = [_random_checks(rng, rng.randrange(1, 40)) for _ in range(3)]
    with contextlib.closing(_fresh(tmp_path / "one.db")) as one, \
            contextlib.closing(_fresh(tmp_path / "many.db")) as many:
        for batch in batches:
            for item in batch:
                store_sql.record(one, *item)
            store_sql.record_many(many, batch)
        assert _dump(many) == _dump(one)
        assert _dump(one)["checks"]  # something was written


def test_an_unchanged_check_writes_its_nulls(tmp_path: Path) -> None:
    """The statement for the usual unchanged check leaves NULL exactly where the general
    one writes None."""
    acc = _account(1)
    result = CheckResult(acc, T0, True, 0.25, Observation.not_modified("feed"))
    state = AccountState().apply(result)
    with contextlib.closing(_fresh(tmp_path / "s.db")) as conn:
        store_sql.record_many(conn, [(result, state, {}, None)])
        [row] = conn.execute("SELECT * FROM checks").fetchall()
        assert row[1:] == (*acc.key, T0.timestamp(), 1, None, None, None, None, None, "feed",
                           0.25, 1, None)
        [account_row] = conn.execute("SELECT * FROM accounts").fetchall()
        assert account_row == (*acc.key, None, None, None, "feed", T0.timestamp(),
                               T0.timestamp(), 1, None, None, 0)


# -- logging ----------------------------------------------------------------------------------
def test_check_log_binds_only_for_a_line_that_is_written() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(20))  # info
    try:
        ctx_log = CheckLog(agency="dinsos", platform="rss", account="https://a.test/feed")
        with capture_logs() as logs:
            ctx_log.debug("filtered", x=1)
            assert ctx_log._bound is None  # nothing was bound for a filtered line
            ctx_log.info("kept", x=2)
        assert ctx_log._bound is not None
        assert logs == [{"agency": "dinsos", "platform": "rss", "account": "https://a.test/feed",
                         "x": 2, "event": "kept", "log_level": "info"}]
    finally:
        structlog.reset_defaults()


def test_check_log_at_debug_level_writes_debug_lines() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(10))  # debug
    try:
        ctx_log = CheckLog(agency="a", platform="rss", account="u")
        with capture_logs() as logs:
            ctx_log.debug("seen")
            bound = ctx_log.bind(extra=1)
            bound.info("more")
        assert [entry["event"] for entry in logs] == ["seen", "more"]
        assert logs[1]["extra"] == 1 and logs[1]["agency"] == "a"
    finally:
        structlog.reset_defaults()


class _Logs(Platform):
    name = "logs"

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        structlog.get_logger("x").info("inside", seen=structlog.contextvars.get_contextvars())
        return Observation.not_modified("feed")


class _Clock:
    def now(self) -> datetime:
        return T0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


async def test_the_check_context_variables_are_put_back_after_the_check() -> None:
    http = HttpClient(user_agent="t", validators=_NoValidators(), clock=_Clock())
    checker = Checker(http, {"logs": _Logs()}, {"logs": PlatformSettings()}, _Clock())
    acc = Account("dinsos", "logs", "a1", "a1", 60, 5, 600)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(agency="outer", request="r1")
    try:
        with capture_logs() as logs:
            outcome = await checker.check(acc)
        assert outcome.result.ok
        assert logs[0]["seen"] == {"agency": "dinsos", "platform": "logs", "account": "a1",
                                   "request": "r1"}
        assert structlog.contextvars.get_contextvars() == {"agency": "outer", "request": "r1"}
    finally:
        structlog.contextvars.clear_contextvars()
    with capture_logs():
        await checker.check(acc)
    assert structlog.contextvars.get_contextvars() == {}


class _NoValidators:
    def get_validators(self, url: str) -> Validators | None:
        return None


# -- memo ---------------------------------------------------------------------------------------
def test_memo_copies_the_stored_notes_only_when_written() -> None:
    stored = {"channel": "UC1", "method": "feed"}
    memo = Memo(stored)
    assert memo.get("channel") == "UC1" and not memo.changed
    memo.set("method", "feed")  # the same value: not a change
    assert not memo.changed
    memo.set("method", "api")
    assert memo.changed and memo.data == {"channel": "UC1", "method": "api"}
    assert stored == {"channel": "UC1", "method": "feed"}  # never edited in place
    assert Memo().data == {} and Memo(None).get("x", 1) == 1


# -- links ------------------------------------------------------------------------------------
def test_join_is_feedparsers_join() -> None:
    rng = random.Random(7)
    alphabet = "abXZ09.-_~/%!$&'()*+,=:@?#;[] \t\\é"
    bases = ["http://a.test/c/d", "https://x.go.id/", "", "http://[::1]/", "ftp://q/"]
    plain = 0
    for _ in range(5000):
        scheme = rng.choice(["http://", "https://", "HTTP://", "http:///", "ftp://", "", "//",
                             "http:"])
        host = "".join(rng.choice("ab09.-:") for _ in range(rng.randrange(8)))
        rest = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        for value in (scheme + host + rest, f"{scheme}{host}/{rest}"):
            plain += _JOINED_AS_IS.fullmatch(value) is not None
            for base in bases:
                assert _join(base, value) == _urljoin(base, value), (base, value)
    assert plain > 100  # the fast answer was exercised
    for value in ("https://x.go.id/2026/11/berita-1/", "http://x.go.id/?p=12",
                  "https://x.go.id/a/../b", "https://x.go.id/a;p", "https://X.go.id/a?",
                  "https://x.go.id/a#f", "/relative", "https://x.go.id:8080/a b"):
        for base in bases:
            assert _join(base, value) == _urljoin(base, value), (base, value)

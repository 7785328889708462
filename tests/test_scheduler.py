"""Scheduling: intervals with ±10% jitter, a spread start, resume after restart, backoff, pauses."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from monitor.model import Account
from monitor.scheduler import BACKOFF_CAP, DEFAULT_PAUSE, SPREAD, Scheduler
from monitor.state import AccountState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _account(name: str = "a", platform: str = "rss", interval: float = 1800.0) -> Account:
    return Account("dinsos", platform, name, name, interval, 20.0, 7 * 86400.0)


def test_first_checks_are_spread_over_the_first_minute():
    """Accounts never checked are due within SPREAD seconds of start, not all at once."""
    s = Scheduler(random.Random(1))
    accounts = [_account(str(i)) for i in range(200)]
    s.plan(accounts, {}, NOW)
    dues = [s.due_at(a.key) - NOW.timestamp() for a in accounts]
    assert all(0 <= d <= SPREAD for d in dues)
    assert len({round(d, 3) for d in dues}) > 150  # really spread, not a single instant
    assert max(dues) - min(dues) > SPREAD * 0.9


def test_restart_resumes_from_stored_last_check():
    """After a restart an account is due one interval after its stored last check."""
    s = Scheduler(random.Random(2))
    account = _account()
    state = AccountState(last_check_at=NOW - timedelta(minutes=10), ok=True)
    s.plan([account], {account.key: state}, NOW)
    remaining = s.due_at(account.key) - NOW.timestamp()
    # 30 min interval ±10% minus the 10 minutes already passed
    assert 1800 * 0.9 - 600 <= remaining <= 1800 * 1.1 - 600


def test_overdue_after_restart_is_spread_not_immediate_burst():
    """Accounts overdue at restart are spread over the first minute."""
    s = Scheduler(random.Random(3))
    accounts = [_account(str(i)) for i in range(50)]
    states = {a.key: AccountState(last_check_at=NOW - timedelta(days=2), ok=True) for a in accounts}
    s.plan(accounts, states, NOW)
    dues = [s.due_at(a.key) - NOW.timestamp() for a in accounts]
    assert all(0 <= d <= SPREAD for d in dues) and max(dues) - min(dues) > 30


def test_interval_jitter_is_within_ten_percent_and_varies():
    """Successive delays stay within interval ±10% and are not all equal."""
    s = Scheduler(random.Random(4))
    account = _account()
    delays = [s.delay(account, AccountState(ok=True)) for _ in range(500)]
    assert min(delays) >= 1800 * 0.9 and max(delays) <= 1800 * 1.1
    assert max(delays) - min(delays) > 1800 * 0.15


def test_failing_account_backs_off_exponentially_with_cap_and_recovers():
    """n failures in a row wait interval×2^(n-1), capped at 6h; success returns to interval."""
    s = Scheduler(random.Random(5))
    s.rng.uniform = lambda a, b: 1.0  # type: ignore[method-assign] - no jitter for exact figures
    account = _account(interval=1800)
    waits = [s.delay(account, AccountState(consecutive_failures=n)) for n in range(0, 8)]
    assert waits == [1800, 1800, 3600, 7200, 14400, BACKOFF_CAP, BACKOFF_CAP, BACKOFF_CAP]
    assert s.delay(account, AccountState(consecutive_failures=0, ok=True)) == 1800
    slow = _account(interval=12 * 3600)  # an interval above the cap is never shortened
    assert s.delay(slow, AccountState(consecutive_failures=5)) == 12 * 3600


def test_take_due_pops_only_due_accounts_in_order():
    """take_due returns accounts whose time has come, earliest first, once."""
    s = Scheduler(random.Random(6))
    a, b = _account("a"), _account("b")
    s.plan([a, b], {a.key: AccountState(last_check_at=NOW - timedelta(minutes=29), ok=True),
                    b.key: AccountState(last_check_at=NOW - timedelta(minutes=1), ok=True)}, NOW)
    assert s.take_due(NOW) == []
    later = NOW + timedelta(minutes=2) + timedelta(seconds=200)
    first = s.take_due(later)
    assert first == [a]
    assert s.take_due(later) == []  # popped once
    assert s.due_at(a.key) is None  # in flight until done()
    s.done(a, AccountState(ok=True, last_check_at=later), later)
    assert s.due_at(a.key) > later.timestamp() + 1600


def test_rate_limited_platform_pauses_until_retry_after():
    """Accounts of a paused platform wait for the pause; other platforms go on."""
    s = Scheduler(random.Random(7))
    ig, rss = _account("ig", platform="instagram"), _account("feed")
    s.plan([ig, rss], {}, NOW)
    until = s.pause("instagram", NOW, 600)
    assert until == NOW.timestamp() + 600
    due = s.take_due(NOW + timedelta(seconds=61))
    assert due == [rss]
    assert until <= s.due_at(ig.key) <= until + SPREAD
    assert s.take_due(datetime.fromtimestamp(until + SPREAD + 1, UTC)) == [ig]


def test_pause_without_retry_after_uses_default():
    """A rate limit without retry-after pauses DEFAULT_PAUSE seconds."""
    s = Scheduler(random.Random(8))
    assert s.pause("facebook", NOW, None) == NOW.timestamp() + DEFAULT_PAUSE


def test_replan_keeps_due_times_adds_new_and_drops_removed():
    """A reload keeps existing schedules, plans new accounts and forgets removed ones."""
    s = Scheduler(random.Random(9))
    a, b, c = _account("a"), _account("b"), _account("c")
    s.plan([a, b], {}, NOW)
    due_a = s.due_at(a.key)
    s.plan([a, c], {}, NOW + timedelta(seconds=5))
    assert s.due_at(a.key) == due_a
    assert s.due_at(b.key) is None and s.due_at(c.key) is not None
    assert len(s) == 2
    # a removed account that finishes a check in flight is not rescheduled
    s.done(b, AccountState(ok=True), NOW)
    assert s.due_at(b.key) is None

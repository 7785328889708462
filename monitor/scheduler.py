"""When each account is checked. Pure bookkeeping: no I/O, no sleeping; the daemon drives it.

- Every account is checked every ``interval``, jittered by ±10% so checks never march in step.
- First checks are spread over the first minute; after a restart an account resumes from its
  stored last check time instead (an account that is overdue is spread over the first minute).
- A failing account backs off: after ``n`` failures in a row the next check waits
  ``interval × 2^(n-1)``, capped at ``max(interval, BACKOFF_CAP)`` (6 hours). A success returns
  it to its interval.
- A platform that answered ``rate_limited`` pauses until its retry-after (default 15 minutes):
  its accounts that come due meanwhile wait for the end of the pause, spread over a minute.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Mapping
from datetime import datetime

from monitor.model import Account
from monitor.state import AccountState

__all__ = ["BACKOFF_CAP", "DEFAULT_PAUSE", "JITTER", "SPREAD", "Scheduler"]

JITTER = 0.10
SPREAD = 60.0
BACKOFF_CAP = 6 * 3600.0
DEFAULT_PAUSE = 15 * 60.0

Key = tuple[str, str, str]


class Scheduler:
    """A heap of (due time, key). Times are POSIX seconds from the injected clock."""

    def __init__(self, rng: random.Random | None = None, spread: float = SPREAD) -> None:
        self.rng = rng or random.Random()
        self.spread = spread
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._accounts: dict[Key, Account] = {}
        self._paused: dict[str, float] = {}
        self._seq = 0

    # -- planning -------------------------------------------------------------------------
    def plan(
        self, accounts: Iterable[Account], states: Mapping[Key, AccountState], now: datetime
    ) -> None:
        """(Re)plan a set of accounts. Accounts already planned keep their due time; new ones
        are placed from their stored state; accounts no longer given are dropped."""
        t = now.timestamp()
        wanted = {a.key: a for a in accounts}
        for key in list(self._accounts):
            if key not in wanted:
                del self._accounts[key]
                self._due.pop(key, None)
        for key, account in wanted.items():
            known = key in self._accounts
            self._accounts[key] = account
            if known and key in self._due:
                continue
            if known:  # in flight: the result will schedule it
                continue
            state = states.get(key)
            if state is None or state.last_check_at is None:
                self._push(key, t + self.rng.uniform(0, self.spread))
                continue
            due = state.last_check_at.timestamp() + self.delay(account, state)
            if due <= t:
                due = t + self.rng.uniform(0, self.spread)
            self._push(key, due)

    def delay(self, account: Account, state: AccountState | None) -> float:
        """Seconds until the next check after a check that left ``state``, jittered."""
        base = account.interval
        failures = state.consecutive_failures if state else 0
        if failures > 1:
            cap = max(account.interval, BACKOFF_CAP)
            base = min(cap, account.interval * 2 ** min(failures - 1, 32))
        return base * self.rng.uniform(1 - JITTER, 1 + JITTER)

    def done(self, account: Account, state: AccountState, now: datetime) -> None:
        """Schedule the next check of an account whose check just finished."""
        if account.key in self._accounts:
            self._push(account.key, now.timestamp() + self.delay(account, state))

    def pause(self, platform: str, now: datetime, retry_after: float | None) -> float:
        """Pause a platform; returns the POSIX time the pause ends."""
        wait = retry_after if retry_after and retry_after > 0 else DEFAULT_PAUSE
        until = now.timestamp() + wait
        self._paused[platform] = max(self._paused.get(platform, 0.0), until)
        return self._paused[platform]

    def defer(self, account: Account, until: float) -> None:
        """Plan an account whose check was deferred (budget spent) for ``until`` + a spread."""
        if account.key in self._accounts:
            self._push(account.key, until + self.rng.uniform(0, self.spread))

    def paused_until(self, platform: str) -> float | None:
        return self._paused.get(platform)

    # -- taking work ----------------------------------------------------------------------
    def take_due(self, now: datetime) -> list[Account]:
        """Pop every account due at ``now`` (moving those of paused platforms past the pause)."""
        t = now.timestamp()
        ready: list[Account] = []
        while self._heap and self._heap[0][0] <= t:
            due, _, key = heapq.heappop(self._heap)
            if self._due.get(key) != due:
                continue  # stale heap entry
            account = self._accounts[key]
            until = self._paused.get(account.platform, 0.0)
            if until > t:
                self._push(key, until + self.rng.uniform(0, self.spread))
                continue
            del self._due[key]
            ready.append(account)
        return ready

    def next_due(self) -> float | None:
        """POSIX time of the earliest planned check, or None."""
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def due_at(self, key: Key) -> float | None:
        return self._due.get(key)

    def __len__(self) -> int:
        return len(self._accounts)

    def _push(self, key: Key, due: float) -> None:
        self._seq += 1
        self._due[key] = due
        heapq.heappush(self._heap, (due, self._seq, key))

"""AccountState.apply decides what a check changes; post_count counts the posting windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import POST_WINDOWS, AccountState, post_key

T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
ACCOUNT = Account("dinsos", "instagram", "dinsos.cilegon", "https://x.test/d", 1800, 20, 604800)
WIB = timezone(timedelta(hours=7))


def success(at: datetime, *posts: Post, method: str = "feed") -> CheckResult:
    return CheckResult(ACCOUNT, at, True, 0.5, Observation.from_posts(list(posts), method))


def failure(at: datetime) -> CheckResult:
    return CheckResult.failure(ACCOUNT, at, 20.0, Timeout("no answer in 20s"))


def unchanged(at: datetime, method: str = "feed") -> CheckResult:
    return CheckResult(ACCOUNT, at, True, 0.1, Observation.not_modified(method))


def test_success_sets_last_post_and_check_times() -> None:
    """A successful check records the newest post (max time, not the first) and the times."""
    older = Post(T0 - timedelta(hours=5), "a", "https://x.test/a")
    newer = Post(T0 - timedelta(hours=1), "b", "https://x.test/b")
    state = AccountState().apply(success(T0, older, newer, method="graph-api"))
    assert state.last_post_at == newer.published_at
    assert (state.post_url, state.post_id, state.method) == ("https://x.test/b", "b", "graph-api")
    assert state.last_check_at == state.last_success_at == T0
    assert state.ok is True and state.consecutive_failures == 0
    assert set(state.posts) == {"a", "b"}


def test_failure_keeps_last_post_and_counts_failures() -> None:
    """A failed check after a success keeps the last post and counts consecutive failures."""
    good = AccountState().apply(success(T0, Post(T0 - timedelta(hours=1), "a", "https://x.test/a")))
    bad = good.apply(failure(T0 + timedelta(minutes=30))).apply(failure(T0 + timedelta(hours=1)))
    assert bad.last_post_at == T0 - timedelta(hours=1)
    assert (bad.post_url, bad.post_id, bad.method) == ("https://x.test/a", "a", "feed")
    assert bad.ok is False and bad.reason == "timeout" and bad.message == "no answer in 20s"
    assert bad.consecutive_failures == 2
    assert bad.last_check_at == T0 + timedelta(hours=1)
    assert bad.last_success_at == T0
    assert bad.posts == good.posts


def test_success_after_failures_resets_them() -> None:
    """A success after failures clears the reason, the message and the failure count."""
    state = AccountState().apply(failure(T0)).apply(success(T0 + timedelta(hours=1)))
    assert state.ok is True and state.reason is None and state.message is None
    assert state.consecutive_failures == 0


def test_unchanged_keeps_last_post() -> None:
    """An "unchanged" answer is a success that keeps the last known post."""
    good = AccountState().apply(success(T0, Post(T0 - timedelta(hours=1), "a")))
    same = good.apply(unchanged(T0 + timedelta(hours=1), method="feed-304"))
    assert same.last_post_at == T0 - timedelta(hours=1) and same.post_id == "a"
    assert same.last_success_at == T0 + timedelta(hours=1) and same.ok is True
    assert same.method == "feed-304"
    assert same.posts == good.posts


def test_no_posts_now_keeps_last_post() -> None:
    """A success that sees no posts at all does not erase the last known post."""
    good = AccountState().apply(success(T0, Post(T0 - timedelta(days=2), "a")))
    empty = good.apply(success(T0 + timedelta(hours=1)))
    assert empty.last_post_at == T0 - timedelta(days=2) and empty.post_id == "a"


def test_last_post_never_moves_backwards() -> None:
    """An older newest post (partial page, deleted post) does not undo a post already seen."""
    good = AccountState().apply(success(T0, Post(T0 - timedelta(hours=1), "new", "https://x.test/new")))
    later = good.apply(success(T0 + timedelta(hours=1), Post(T0 - timedelta(days=3), "old")))
    assert later.last_post_at == T0 - timedelta(hours=1)
    assert (later.post_id, later.post_url) == ("new", "https://x.test/new")
    assert set(later.posts) == {"new", "old"}


def test_apply_does_not_change_the_original() -> None:
    """apply returns a new state and leaves the old one (and its posts) as they were."""
    before = AccountState()
    after = before.apply(success(T0, Post(T0 - timedelta(hours=1), "a")))
    assert before == AccountState() and before.posts == {}
    assert after.posts == {"a": T0 - timedelta(hours=1)}


def test_posts_older_than_30_days_are_forgotten() -> None:
    """Posts older than the longest window are dropped from the state at the next success."""
    state = AccountState().apply(
        success(T0, Post(T0 - timedelta(days=30), "edge"), Post(T0 - timedelta(days=31), "gone"))
    )
    assert set(state.posts) == {"edge"}


def test_post_count_window_boundaries() -> None:
    """post_count counts (now - window, now]: the start is excluded, now is included."""
    now = T0
    times = {
        "at-now": now,
        "future": now + timedelta(seconds=1),
        "inside-7d": now - timedelta(days=7) + timedelta(microseconds=1),
        "at-7d": now - timedelta(days=7),
        "inside-30d": now - timedelta(days=30) + timedelta(microseconds=1),
        "at-30d": now - timedelta(days=30),
    }
    state = AccountState(posts=dict(times))
    assert state.post_count(now, POST_WINDOWS["7d"]) == 2
    assert state.post_count(now, POST_WINDOWS["30d"]) == 4
    assert state.post_count(now + timedelta(seconds=1), POST_WINDOWS["7d"]) == 2


def test_post_windows_are_7d_and_30d() -> None:
    """The windows are exactly the ``pantau_posts`` labels 7d and 30d."""
    assert set(POST_WINDOWS) == {"7d", "30d"}
    assert POST_WINDOWS["7d"] == timedelta(days=7) and POST_WINDOWS["30d"] == timedelta(days=30)


def test_same_post_seen_twice_counts_once() -> None:
    """A post seen by two checks (by id, or by time when it has no id) is counted once."""
    at = T0 - timedelta(hours=3)
    first = AccountState().apply(success(T0, Post(at, "a"), Post(at)))
    again = first.apply(success(T0 + timedelta(hours=1), Post(at, "a"), Post(at.astimezone(WIB))))
    assert again.post_count(T0 + timedelta(hours=1), POST_WINDOWS["7d"]) == 2


def test_post_key_prefers_id_and_falls_back_to_utc_time() -> None:
    """post_key is the id when there is one, else the time in UTC whatever its offset."""
    at = datetime(2026, 11, 20, 10, 15, tzinfo=WIB)
    assert post_key("123", at) == "123"
    assert post_key(None, at) == post_key("", at.astimezone(UTC)) == "@2026-11-20T03:15:00+00:00"

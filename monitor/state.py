"""The last known state of each account, kept in memory and mirrored in the store.

:meth:`AccountState.apply` is the one place that decides what a check result changes:
a failed check never erases the last known post; an "unchanged" answer keeps it too; and
the newest post time never moves backwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from monitor.model import CheckResult

__all__ = ["AccountState", "POST_WINDOWS", "post_key"]

#: The windows of ``pantau_posts``: label -> length.
POST_WINDOWS: dict[str, timedelta] = {"7d": timedelta(days=7), "30d": timedelta(days=30)}
_KEEP_POSTS = max(POST_WINDOWS.values())


def post_key(post_id: str | None, published_at: datetime) -> str:
    """The identity of a post for counting: its id, else its time (in UTC, so that the same
    instant written with another offset is the same post)."""
    return post_id if post_id else "@" + published_at.astimezone(UTC).isoformat()


@dataclass
class AccountState:
    """What pantau knows about one account. ``posts`` maps :func:`post_key` -> time."""

    last_post_at: datetime | None = None
    post_url: str | None = None
    post_id: str | None = None
    method: str | None = None
    last_check_at: datetime | None = None
    last_success_at: datetime | None = None
    ok: bool | None = None
    reason: str | None = None
    message: str | None = None
    consecutive_failures: int = 0
    posts: dict[str, datetime] = field(default_factory=dict)

    def apply(self, result: CheckResult) -> AccountState:
        """The state after ``result`` (a new object; ``self`` is not changed)."""
        # A field-for-field copy, as dataclasses.replace() makes, without its per-field work
        # (it runs once per check).
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.posts = dict(self.posts)
        new.last_check_at, new.ok = result.checked_at, result.ok
        if not result.ok:
            new.reason, new.message = result.reason, result.message
            new.consecutive_failures = self.consecutive_failures + 1
            return new
        new.reason = new.message = None
        new.consecutive_failures = 0
        new.last_success_at = result.checked_at
        obs = result.observation
        if obs is None or obs.unchanged:
            if obs is not None and obs.method:
                new.method = obs.method
            return new
        new.method = obs.method
        newest = obs.latest_post_at
        # The newest post time never moves backwards: a source that returns fewer posts this
        # time (a partial page, a deleted post, another method) does not undo a post seen.
        if newest is not None and (self.last_post_at is None or newest >= self.last_post_at):
            new.last_post_at, new.post_url, new.post_id = newest, obs.post_url, obs.post_id
        for post in obs.posts:
            new.posts[post_key(post.id, post.published_at)] = post.published_at
        new.prune_posts(result.checked_at)
        return new

    def prune_posts(self, now: datetime) -> None:
        """Forget posts older than the longest window."""
        horizon = now - _KEEP_POSTS
        self.posts = {k: t for k, t in self.posts.items() if t >= horizon}

    def post_count(self, now: datetime, window: timedelta) -> int:
        """Posts published in ``(now - window, now]``."""
        start = now - window
        return sum(1 for t in self.posts.values() if start < t <= now)

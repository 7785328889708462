"""A platform whose behaviour per account is scripted by the test (for core tests).

Account strings name the behaviour: ``ok-<anything>`` returns the posts set in
``ScriptedPlatform.posts`` (default: one post at ``ScriptedPlatform.newest``); ``raise-…``
raises a RuntimeError; ``hang-…`` never returns; ``garbage-…`` returns a string;
``fail-<reason>-…`` raises the CheckError of that reason; ``ratelimit-…`` raises RateLimited
with ``retry_after`` 120; ``defer-…`` raises Deferred (budget spent) with ``retry_after`` 300.
The platform exports ``pantau_scripted_calls_total`` and reports a budget of 10 accounts.
"""

from __future__ import annotations

import asyncio
import types
from collections import Counter
from datetime import UTC, datetime

from prometheus_client.core import CounterMetricFamily

from monitor import hookimpl
from monitor.model import Deferred, Observation, Post, RateLimited, error_for_reason
from monitor.platform import Platform


class ScriptedPlatform(Platform):
    name = "scripted"

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.newest = datetime(2026, 11, 20, 3, 15, tzinfo=UTC)
        self.posts: dict[str, list[Post]] = {}
        self.called = asyncio.Event()

    def collectors(self):  # noqa: ANN201
        platform = self

        class Calls:
            def collect(self):  # noqa: ANN202
                family = CounterMetricFamily("pantau_scripted_calls", "calls to the plugin")
                family.add_metric([], sum(platform.calls.values()))
                yield family

        return [Calls()]

    def budget_report(self, accounts, settings):  # noqa: ANN001, ANN201
        return [(f"{len(accounts)} of 10 accounts", len(accounts) > 10)]

    def url(self, account: str) -> str:
        return f"https://scripted.example/{account}"

    async def latest(self, account: str, ctx):  # noqa: ANN001, ANN201
        self.calls[account] += 1
        self.called.set()
        kind = account.split("-", 1)[0]
        if kind == "raise":
            raise RuntimeError("plugin bug")
        if kind == "hang":
            await asyncio.Event().wait()
        if kind == "garbage":
            return "not an observation"
        if kind == "fail":
            reason = account.split("-")[1]
            raise error_for_reason(reason)(f"scripted {reason}")
        if kind == "defer":
            raise Deferred("scripted budget spent", retry_after=300)
        if kind == "ratelimit":
            raise RateLimited("scripted throttle", retry_after=120)
        posts = self.posts.get(account) or [Post(self.newest, id=f"{account}-1",
                                                 url=f"https://scripted.example/{account}/1")]
        return Observation.from_posts(posts, method="scripted")


def plugin_module(platform: ScriptedPlatform) -> types.ModuleType:
    """A module-like plugin object registering ``platform``."""
    module = types.ModuleType("pantau_scripted")

    @hookimpl
    def register_platforms(register):  # noqa: ANN001, ANN202
        register(platform)

    module.register_platforms = register_platforms  # type: ignore[attr-defined]
    return module

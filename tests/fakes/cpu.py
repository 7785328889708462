"""Functions run in the worker processes of tests/test_workers.py, and a platform calling them.

Workers import this module by name (``tests/`` is on their ``sys.path``, like the parent's),
so it stays light: nothing here imports the daemon's heavier modules.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

from monitor.model import Observation, ParseError, Post, RateLimited
from monitor.platform import CheckContext, Platform

NOW = datetime(2026, 11, 20, 3, 15, tzinfo=UTC)


def echo(*args: object, **kwargs: object) -> tuple[object, ...]:
    return (os.getpid(), args, kwargs)


def raise_parse_error(text: str) -> None:
    raise ParseError(f"cannot understand {text}")


def raise_rate_limited() -> None:
    raise RateLimited("slow down", retry_after=30.0)


def raise_value_error() -> None:
    raise ValueError("plain bug")


class TwoArgs(Exception):  # noqa: N818 - a test double
    """Its __init__ takes other arguments than its args: plain pickling cannot rebuild it."""

    def __init__(self, text: str, code: int) -> None:
        super().__init__(text)
        self.code = code


def raise_two_args() -> None:
    raise TwoArgs("two", 7)


def raise_local() -> None:
    class Local(Exception):
        pass

    raise Local("defined in a function")


def exit_politely() -> None:
    raise SystemExit(4)


def die() -> None:
    os._exit(3)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def hang(path: str) -> None:
    Path(path).write_text(str(os.getpid()))
    time.sleep(3600)


def work(kind: str, arg: str) -> list[Post]:
    """What :class:`CpuPlatform`'s accounts ask for."""
    if kind == "parse":
        raise ParseError(f"cannot understand {arg}")
    if kind == "crash":
        os._exit(3)
    if kind == "hang":
        hang(arg)
    return [Post(NOW, id=str(os.getpid()))]


class CpuPlatform(Platform):
    """Accounts name what the parse does: ``ok``, ``parse-X``, ``crash``, ``hang-PATH``;
    ``none`` never calls ``run_cpu``; ``exit`` raises SystemExit in the plugin itself. The
    post id is the pid of the process that parsed."""

    name = "cpu"

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        kind, _, arg = account.partition("-")
        if kind == "none":
            return Observation.from_posts([Post(NOW, id=str(os.getpid()))], method="none")
        if kind == "exit":  # sys.exit() in a plugin, in the daemon's own process
            raise SystemExit(2)
        posts = await ctx.run_cpu(work, kind, arg)
        return Observation.from_posts(posts, method="cpu")


def unsendable() -> object:
    """A result that cannot be pickled in the worker."""
    return (i for i in range(3))


class _Unreadable:
    def __reduce__(self) -> tuple[object, ...]:
        return (_refuse, ())


def _refuse() -> None:
    raise RuntimeError("cannot be rebuilt")


def unreadable() -> object:
    """A result that pickles in the worker but cannot be unpickled in the daemon."""
    return _Unreadable()

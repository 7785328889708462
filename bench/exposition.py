"""Times one ``/metrics`` exposition at N accounts: render and gzip, warm and after changes.

Not part of the test suite and not a phase of ``bench.run``: a quick check of the render
cache (:mod:`monitor.exposition`) against the uncached render, in one process, no network::

    python -m bench.exposition            # N = 10,000 accounts, 5% of the states changed
    python -m bench.exposition --n 100000 --changed 0.01

It prints the median CPU time over ``--rounds`` of a raw scrape (``Metrics.render()``) and
of a gzip scrape (``Metrics.render_gzip()``; before the cache: ``render()`` then
``gzip.compress`` at level 6, as ``server.py`` did), for a warm scrape (nothing changed since
the last one) and for a scrape after ``--changed`` of the accounts got a new state object (a
check each); the gzip scrape minus the raw one is the gzip's share. It also checks every
changed scrape against the uncached render and prints what the cache keeps in memory.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # python bench/exposition.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.config import AgencyInfo
from monitor.metrics import Metrics
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import AccountState

START = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)


@dataclass
class View:
    """A MetricsView over plain fields, with a clock the script moves."""

    accounts: list[Account] = field(default_factory=list)
    agencies: list[AgencyInfo] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str, str], AccountState] = field(default_factory=dict)
    at: datetime = START

    def now(self) -> datetime:
        return self.at


def build(n: int, rng: random.Random, **options: int) -> tuple[View, Metrics]:
    """N rss accounts (as the benchmark's: one feed per agency), each checked once, with 20
    posts spread over the last 40 days."""
    view = View()
    for i in range(n):
        agency = f"opd-{i:06d}"
        view.agencies.append(AgencyInfo(agency, f"Dinas Nomor {i} Kota Cilegon", "dinas"))
        view.missing.append((agency, "instagram"))
        view.accounts.append(Account(
            agency=agency, platform="rss", account=f"http://127.0.0.1:43567/feed/{i}",
            url=f"http://127.0.0.1:43567/feed/{i}", interval=1800.0, timeout=20.0,
            silence_after=7 * 86400.0,
        ))
    for acc in view.accounts:
        view.states[acc.key] = AccountState().apply(check(acc, START, rng))
    metrics = Metrics(view, "0.1.0", **options)
    metrics.init_platforms(["rss"])
    return view, metrics


def check(acc: Account, at: datetime, rng: random.Random) -> CheckResult:
    if rng.random() < 0.05:
        return CheckResult.failure(acc, at, 20.0, Timeout("no answer in 20s"))
    posts = [Post(published_at=at - timedelta(seconds=rng.uniform(0, 40 * 86400)), id=f"p{k}")
             for k in range(20)]
    obs = Observation.from_posts(posts, method="feed")
    return CheckResult(account=acc, checked_at=at, ok=True, duration=0.3, observation=obs)


def ms(fn: Callable[[], object]) -> tuple[float, object]:
    """CPU milliseconds of ``fn()`` in this thread (steadier than wall time on a shared
    machine; the scrape does not wait on anything), and its result."""
    start = time.thread_time()
    out = fn()
    return 1000 * (time.thread_time() - start), out


def change(view: View, fraction: float, rng: random.Random, mix: str) -> None:
    """A check of ``fraction`` of the accounts, a second later: new state objects.

    ``mix`` "steady": as a steady sweep's checks (70% unchanged, 25% a new post, 5% failed);
    "new": as a cold sweep's (20 posts the account had not shown: every family changes).
    """
    view.at += timedelta(seconds=1)
    for acc in rng.sample(view.accounts, int(len(view.accounts) * fraction)):
        if mix == "new":
            result = check(acc, view.at, rng)
            view.states[acc.key] = AccountState().apply(result)
            continue
        draw = rng.random()
        if draw < 0.05:
            result = CheckResult.failure(acc, view.at, 20.0, Timeout("no answer in 20s"))
        elif draw < 0.75:
            obs = Observation.not_modified("feed")
            result = CheckResult(account=acc, checked_at=view.at, ok=True, duration=0.01,
                                 observation=obs)
        else:
            post = Post(published_at=view.at - timedelta(minutes=5), id=f"n{rng.random()}")
            obs = Observation.from_posts([post], method="feed")
            result = CheckResult(account=acc, checked_at=view.at, ok=True, duration=0.3,
                                 observation=obs)
        view.states[acc.key] = view.states[acc.key].apply(result)


def raw_scrape(metrics: Metrics) -> bytes:
    """What /metrics serves a client that does not take gzip."""
    return metrics.render()


def gzip_scrape(metrics: Metrics) -> bytes:
    """What /metrics serves Prometheus (Accept-Encoding: gzip)."""
    if hasattr(metrics, "render_gzip"):
        return metrics.render_gzip()
    return gzip.compress(metrics.render(), compresslevel=6)  # before the cache (server.py)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--changed", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--block-size", type=int, default=None,
                        help="accounts per block of the cache (default: its BLOCK_SIZE)")
    parser.add_argument("--mix", choices=("steady", "new"), default="steady",
                        help="what the changed accounts' checks found (see change())")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    options = {"block_size": args.block_size} if args.block_size else {}
    view, metrics = build(args.n, rng, **options)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    packed = gzip_scrape(metrics)
    raw = raw_scrape(metrics)
    sizes = len(raw), len(packed)
    if gzip.decompress(packed) != raw:
        raise SystemExit("gzip does not decompress to the raw text")
    del raw, packed
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    times: dict[str, list[float]] = {
        "warm raw": [], "warm gzip": [], "changed raw": [], "changed gzip": [], "uncached": [],
    }
    for _ in range(args.rounds):
        times["warm raw"].append(ms(lambda: raw_scrape(metrics))[0])
        times["warm gzip"].append(ms(lambda: gzip_scrape(metrics))[0])
        change(view, args.changed, rng, args.mix)
        times["changed raw"].append(ms(lambda: raw_scrape(metrics))[0])
        gzip_scrape(metrics)  # the next change starts from deflated blocks, as in the daemon
        change(view, args.changed, rng, args.mix)
        spent, packed = ms(lambda: gzip_scrape(metrics))
        times["changed gzip"].append(spent)
        raw = raw_scrape(metrics)
        if gzip.decompress(packed) != raw:  # type: ignore[arg-type]
            raise SystemExit("gzip does not decompress to the raw text")
        if hasattr(metrics, "segments"):
            from prometheus_client import generate_latest

            spent, fresh = ms(lambda: generate_latest(metrics.registry))
            if fresh != raw:
                raise SystemExit("the cached render differs from the uncached one")
            times["uncached"].append(spent)
    print(f"N = {args.n} accounts, {sizes[0] / 1e6:.2f} MB raw, {sizes[1] / 1e6:.2f} MB gzip; "
          f"{args.changed:.0%} changed ({args.mix}); CPU ms, median of {args.rounds}")
    print(f"kept after the first scrape (tracemalloc): {held / 1e6:.1f} MB, "
          f"{held / args.n:.0f} B/account")
    median = {name: statistics.median(values) for name, values in times.items() if values}
    for case in ("warm", "changed"):
        raw_ms, gzip_ms = median[f"{case} raw"], median[f"{case} gzip"]
        print(f"{case:>8}: raw scrape {raw_ms:6.1f} ms, gzip scrape {gzip_ms:6.1f} ms "
              f"(render {raw_ms:.1f} + gzip {gzip_ms - raw_ms:.1f})")
    if "uncached" in median:
        print(f"uncached (collect() + generate_latest, the test reference): "
              f"{median['uncached']:.0f} ms")


if __name__ == "__main__":
    main()

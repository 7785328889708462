"""The measured phases of the benchmark. Each runs in a fresh process of its own
(``python -m bench.phases PHASE --args JSON``) so that its CPU time and peak memory are its own:
the fake server and the orchestrator (which scrapes ``/metrics``) are other processes.

A phase prints progress lines and, last, ``RESULT <json>``. Phases:

- ``floor_plain``: a bare aiohttp loop, plain GET of every feed, body read, nothing else;
- ``floor_conditional``: the same after a first sweep taught it the validators, with
  ``If-None-Match``/``If-Modified-Since``, once a fraction of the feeds changed;
- ``feedparser``: ``feedparser.parse`` alone (and pantau's ``parse_feed``) on the same bodies;
- ``naive``: a cron script's sequential ``feedparser.parse(url)`` on a sample of the feeds;
- ``pantau``: pantau's real path (:class:`monitor.engine.Engine` with the rss plugin, the
  HTTP client, the SQLite store, the state, the metrics and the /metrics server), driven as
  the daemon drives it, for a cold sweep then a steady sweep;
- ``mkstore``: a config and a state store holding many accounts, written directly (setup);
- ``startup_breakdown``: where the start time of the daemon goes (config, store, first render).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import os
import queue
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench import corpus

__all__ = ["PHASES", "cpu_seconds", "main", "peak_rss_mb", "write_config"]

#: Feeds per agency in the generated configs (an agency with a site, a news feed, ...).
FEEDS_PER_AGENCY = 5


# -- accounting ---------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    """Live descendant processes of ``pid`` (worker pools), from /proc."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            continue
        for kid in kids:
            found.append(kid)
            found.extend(_children(kid))
    return found


def _proc_cpu(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, all its threads, and its worker
    processes (live ones from /proc, reaped ones from ``RUSAGE_CHILDREN``)."""
    own = time.process_time()
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = sum(_proc_cpu(pid) for pid in _children(os.getpid()))
    return own + reaped.ru_utime + reaped.ru_stime + live


def peak_rss_mb() -> float:
    """Peak resident memory of this process (``ru_maxrss``), in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_peak_rss_mb() -> float:
    total = 0.0
    for pid in _children(os.getpid()):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def _say(*parts: object) -> None:
    print(*parts, flush=True)


def _control(port: int, path: str) -> dict[str, Any]:
    """A request to the fake server's control endpoints (outside any measured window)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _urls(port: int, n: int) -> list[str]:
    return [f"http://127.0.0.1:{port}/feed/{i}" for i in range(n)]


class _Window:
    """CPU, wall time and bytes sent by the fake server over one measured sweep."""

    def __init__(self, port: int) -> None:
        self.port = port

    def __enter__(self) -> _Window:
        _control(self.port, "/_reset")
        self.cpu0, self.wall0 = cpu_seconds(), time.perf_counter()
        self.own0 = time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = cpu_seconds() - self.cpu0
        self.own = time.process_time() - self.own0
        self.wall = time.perf_counter() - self.wall0
        self.served = _control(self.port, "/_stats")

    def result(self, checks: int, **extra: Any) -> dict[str, Any]:
        return {
            "checks": checks,
            "cpu_seconds": self.cpu,
            "wall_seconds": self.wall,
            "cpu_per_check_ms": 1000 * self.cpu / checks,
            "main_process_cpu_seconds": self.own,
            "bytes_received": self.served["bytes"],
            "bytes_per_check": self.served["bytes"] / checks,
            "answers": {k: self.served[k] for k in ("ok", "not_modified", "other")},
            **extra,
        }


# -- the floor ----------------------------------------------------------------------------
async def _bare_sweep(
    urls: list[str], concurrency: int, headers_for: Callable[[str], dict[str, str]] | None,
    learn: dict[str, dict[str, str]] | None,
    then: Callable[[str, int, bytes], Awaitable[None]] | None = None,
) -> Counter[int]:
    """Fetch every URL with ``concurrency`` workers on one aiohttp session; bodies read and
    dropped (or handed to ``then``). ``learn`` collects ETag/Last-Modified of 200 answers."""
    import aiohttp

    statuses: Counter[int] = Counter()
    pending = iter(urls)
    connector = aiohttp.TCPConnector(limit=100, ttl_dns_cache=300)
    async with aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar()
    ) as session:

        async def worker() -> None:
            for url in pending:
                headers = headers_for(url) if headers_for else None
                async with session.get(url, headers=headers) as resp:
                    body = await resp.read()
                    statuses[resp.status] += 1
                    if learn is not None and resp.status == 200:
                        learn[url] = {
                            "If-None-Match": resp.headers["ETag"],
                            "If-Modified-Since": resp.headers["Last-Modified"],
                        }
                if then is not None:
                    await then(url, resp.status, body)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median CPU per check, with every round's CPU per check attached
    (a busy neighbour on the machine shows up as spread between rounds)."""
    chosen = dict(sorted(rounds, key=lambda r: r["cpu_per_check_ms"])[len(rounds) // 2])
    chosen["rounds_cpu_per_check_ms"] = [r["cpu_per_check_ms"] for r in rounds]
    return chosen


def floor_plain(args: dict[str, Any]) -> dict[str, Any]:
    """Plain GET of every feed, bodies read, no parsing, no store (median of the rounds)."""
    urls = _urls(args["port"], args["n"])
    rounds = []
    for _ in range(args.get("rounds", 3)):
        with _Window(args["port"]) as window:
            statuses = asyncio.run(_bare_sweep(urls, args["concurrency"], None, None))
        rounds.append(window.result(len(urls), statuses=dict(statuses)))
    return {**_median_round(rounds), "peak_rss_mb": peak_rss_mb()}


def floor_conditional(args: dict[str, Any]) -> dict[str, Any]:
    """Conditional GET of every feed after a fraction changed, validators learned from a first
    (unmeasured) sweep and kept up to date; median of the rounds.

    Each round also sweeps, in turn, as the least a durable checker must do (see
    :class:`_Minimal`): + the fast RSS parse of what changed, + a SQLite row per check, and
    both; their CPU per check is reported with the floor's (``minimal``)."""
    port = args["port"]
    urls = _urls(port, args["n"])
    learned: dict[str, dict[str, str]] = {}
    asyncio.run(_bare_sweep(urls, args["concurrency"], None, learned))
    rounds = []
    minimal: dict[str, list[float]] = {"parse": [], "store": [], "both": []}
    with tempfile.TemporaryDirectory(prefix="pantau-bench-minimal-") as tmp, \
            _Minimal(Path(tmp) / "minimal.db") as least:
        for number in range(args.get("rounds", 3)):
            seed = args["seed"] * 1000 + number
            changed = _control(port, f"/_advance?fraction={args['changed']}&seed={seed}")
            with _Window(port) as window:
                statuses = asyncio.run(
                    _bare_sweep(urls, args["concurrency"], lambda url: learned[url], learned)
                )
            rounds.append(window.result(len(urls), statuses=dict(statuses),
                                        changed=changed["changed"]))
            for part, (name, parse, store) in enumerate(
                (("parse", True, False), ("store", False, True), ("both", True, True))
            ):
                _control(port, f"/_advance?fraction={args['changed']}&seed={seed}{part + 1}")
                then = least.step(parse=parse, store=store)
                with _Window(port) as window:
                    asyncio.run(_bare_sweep(urls, args["concurrency"], lambda url: learned[url],
                                            learned, then))
                minimal[name].append(1000 * window.cpu / len(urls))
    return {**_median_round(rounds), "peak_rss_mb": peak_rss_mb(),
            "minimal": {k: statistics.median(v) for k, v in minimal.items()},
            "minimal_rounds": minimal}


class _Minimal:
    """The least a durable checker does beyond the conditional GET: for a feed that changed
    (200), the fast RSS parse (pantau's own, :func:`plugins.fastfeed.fast_rss_posts`) and its
    newest post time; for every check, a history row and the account's row written by a
    writer thread in group commits (WAL, synchronous=NORMAL, as pantau's store), the check
    waiting for its commit. No scheduler, state, metrics, logging, timeouts or retries: what
    is left when everything pantau adds is taken away."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def __enter__(self) -> _Minimal:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE checks (account TEXT, checked_at REAL, ok INTEGER, "
                     "latest_post_at REAL, unchanged INTEGER, duration REAL)")
        conn.execute("CREATE TABLE accounts (account TEXT PRIMARY KEY, checked_at REAL, "
                     "latest_post_at REAL)")
        self.thread = threading.Thread(target=self._write, args=(conn,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queue.put(None)
        self.thread.join()

    def _write(self, conn: sqlite3.Connection) -> None:
        while (first := self.queue.get()) is not None:
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while (item := self.queue.get_nowait()) is not None:
                    batch.append(item)
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO checks VALUES (?, ?, 1, ?, ?, 0.01)",
                             [item[:4] for item in batch])
            conn.executemany(
                "INSERT INTO accounts VALUES (?, ?, ?) ON CONFLICT(account) DO UPDATE SET "
                "checked_at = excluded.checked_at, "
                "latest_post_at = coalesce(excluded.latest_post_at, accounts.latest_post_at)",
                [(url, at, latest) for url, at, latest, *_ in batch])
            conn.execute("COMMIT")
            for *_, future, loop in batch:
                loop.call_soon_threadsafe(future.set_result, None)
        conn.close()

    def step(self, *, parse: bool, store: bool) -> Callable[[str, int, bytes], Awaitable[None]]:
        from plugins.fastfeed import fast_rss_posts

        wib = ZoneInfo("Asia/Jakarta")

        async def then(url: str, status: int, body: bytes) -> None:
            latest = None
            if parse and status == 200:
                posts = fast_rss_posts(body, now=datetime.now(UTC), default_tz=wib,
                                       future_skew=timedelta(days=1),
                                       content_type="application/rss+xml", base_url=url)
                if posts is None:
                    raise RuntimeError(f"{url}: not read by the fast path")
                latest = max(post.published_at for post in posts).timestamp()
            if store:
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self.queue.put((url, time.time(), latest, status == 304, future, loop))
                await future

        return then


def feedparser_alone(args: dict[str, Any]) -> dict[str, Any]:
    """feedparser on the same bodies the fake serves (a sample), with pantau's options; and
    pantau's ``parse_feed`` (feedparser plus its own date reading) on them. Each is timed in
    several rounds over the sample; the median round counts."""
    import feedparser

    from plugins.feeds import parse_feed

    rng = random.Random(args["seed"])
    sample = rng.sample(range(args["n"]), min(args["sample"], args["n"]))
    bodies = [corpus.body(i, 0) for i in sample]
    now, tz = datetime.now(UTC), ZoneInfo("Asia/Jakarta")

    def alone(body: bytes) -> None:
        feed = feedparser.parse(
            io.BytesIO(body), resolve_relative_uris=False, sanitize_html=False
        )
        assert len(feed.entries) == corpus.ITEMS, feed.get("bozo_exception")

    def pantau(body: bytes) -> None:
        posts = parse_feed(body, now=now, default_tz=tz, future_skew=timedelta(days=1),
                           content_type="application/rss+xml; charset=UTF-8")
        assert len(posts) == corpus.ITEMS

    # Interleaved body by body, so that both see the same machine speed (it drifts on a
    # shared VM).
    raw: list[float] = []
    ours: list[float] = []
    for body in bodies[:3]:
        alone(body)
        pantau(body)
    for _ in range(args.get("rounds", 3)):
        spent = [0.0, 0.0]
        for body in bodies:
            for index, fn in enumerate((alone, pantau)):
                t0 = time.process_time()
                fn(body)
                spent[index] += time.process_time() - t0
        raw.append(1000 * spent[0] / len(bodies))
        ours.append(1000 * spent[1] / len(bodies))
    return {
        "bodies": len(bodies),
        "mean_body_bytes": statistics.mean(len(b) for b in bodies),
        "feedparser_ms": statistics.median(raw),
        "parse_feed_ms": statistics.median(ours),
        "rounds_feedparser_ms": raw,
        "rounds_parse_feed_ms": ours,
    }


def naive(args: dict[str, Any]) -> dict[str, Any]:
    """A cron script: ``for url in urls: feedparser.parse(url)``, on a sample, extrapolated."""
    import feedparser

    port = args["port"]
    rng = random.Random(args["seed"])
    sample = sorted(rng.sample(range(args["n"]), min(args["sample"], args["n"])))
    urls = [f"http://127.0.0.1:{port}/feed/{i}" for i in sample]
    with _Window(port) as window:
        for url in urls:
            feed = feedparser.parse(url)
            assert feed.entries, feed.get("bozo_exception")
    result = window.result(len(urls))
    result["extrapolated_wall_seconds"] = window.wall / len(urls) * args["n"]
    result["extrapolated_cpu_seconds"] = window.cpu / len(urls) * args["n"]
    return result


# -- pantau's real path -------------------------------------------------------------------
def write_config(
    path: Path, *, urls: list[str], state: Path, concurrency: int, listen: str = "127.0.0.1:0",
    interval: str = "1h",
) -> None:
    """A pantau config: agencies of :data:`FEEDS_PER_AGENCY` rss accounts each."""
    lines = [
        f"listen: {listen}",
        f"state: {state}",
        f"check: {{interval: {interval}, timeout: 20s, concurrency: {concurrency}}}",
        "silence_after: 7d",
        "expect: [rss]",
        "platforms:",
        f"  rss: {{concurrency: {concurrency}, default_timezone: Asia/Jakarta}}",
        "agencies:",
    ]
    for a in range(0, len(urls), FEEDS_PER_AGENCY):
        slug, name = corpus.agency_of(a // FEEDS_PER_AGENCY)
        lines += [
            f"  - id: {slug}",
            f"    name: {name}",
            f"    group: {'kecamatan' if 'kec-' in slug else 'dinas'}",
            "    accounts:",
            "      rss:",
        ]
        lines += [f"        - {url}" for url in urls[a:a + FEEDS_PER_AGENCY]]
    path.write_text("\n".join(lines) + "\n")


def speed_check(count: int = 20) -> float:
    """ms of CPU per ``feedparser.parse`` of a corpus body, single-threaded: taken before and
    after the sweeps to see whether the machine's speed drifted during the run (a shared VM's
    does), which would skew the ratios to a floor measured earlier."""
    import feedparser

    bodies = [corpus.body(i, 0) for i in range(count)]
    for body in bodies[:3]:  # feedparser's first parses import and compile things lazily
        feedparser.parse(io.BytesIO(body), resolve_relative_uris=False, sanitize_html=False)
    start = time.thread_time()
    for body in bodies:
        feedparser.parse(io.BytesIO(body), resolve_relative_uris=False, sanitize_html=False)
    return 1000 * (time.thread_time() - start) / count


class _LoopLag:
    """Measures how late a 10 ms timer fires: how long the event loop was held."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.lags.append(loop.time() - start - 0.01)

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return {
            "p50_ms": 1000 * _percentile(self.lags, 50),
            "p99_ms": 1000 * _percentile(self.lags, 99),
            "max_ms": 1000 * max(self.lags, default=float("nan")),
        }


async def _pantau(args: dict[str, Any]) -> dict[str, Any]:
    from aiohttp import web

    import plugins.rss
    from monitor import __version__, gctune
    from monitor.clock import SystemClock
    from monitor.config import load_config
    from monitor.engine import Engine
    from monitor.logs import configure_logging
    from monitor.metrics import Metrics
    from monitor.model import Account
    from monitor.plugins import load_plugins
    from monitor.scheduler import Scheduler
    from monitor.server import ServerThread, make_app

    configure_logging("info", stream=sys.stderr, json=True)  # as `pantau run` does
    port, n, workdir = args["port"], args["n"], Path(args["workdir"])
    config_path = workdir / "pantau.yaml"
    write_config(config_path, urls=_urls(port, n), state=workdir / "pantau.db",
                 concurrency=args["concurrency"])
    loaded = load_plugins(environ={}, entry_points=[], extra=[("rss", plugins.rss)])
    t0 = time.perf_counter()
    config = load_config(config_path, loaded.platforms, environ={})
    config_seconds = time.perf_counter() - t0
    clock = SystemClock()
    engine = await Engine.open(config, loaded, clock)
    metrics = Metrics(engine, __version__)
    metrics.init_platforms(sorted({a.platform for a in config.accounts}))
    engine.observers.append(metrics.observe_check)
    # What the /metrics answers cost, so the sweep's CPU can be reported without the scrapes:
    # thread_time() of the server thread around the handler (exact while the handler does not
    # await, as today). The compression the deflater thread does after the answers is left
    # in the sweep's CPU (pessimistic for pantau: scrapes cause it).
    scrape_cpu = [0.0]

    @web.middleware
    async def count_cpu(request: web.Request, handler: Any) -> web.StreamResponse:
        start = time.thread_time()
        try:
            return await handler(request)
        finally:
            scrape_cpu[0] += time.thread_time() - start

    app = make_app(metrics, engine, clock=clock)
    app.middlewares.append(count_cpu)
    server = ServerThread()  # as the daemon serves: its own thread and event loop
    await server.start(app, "127.0.0.1", 0)
    # spread 0: the cold sweep starts every check at once (the worst case); the daemon spreads
    # first checks over Scheduler's SPREAD (60 s): --spread 60 sweeps as it does.
    scheduler = Scheduler(random.Random(1), spread=float(args.get("spread", 0.0)))
    gate = asyncio.Semaphore(config.check.concurrency)
    outcomes: Counter[str] = Counter()

    async def check(account: Account) -> None:  # Daemon._check, minus the deferral branch
        async with gate:
            result = await engine.check(account, allow_defer=True)
        if not result.ok:
            outcomes[f"error:{result.reason}"] += 1
        elif result.observation is not None and result.observation.unchanged:
            outcomes["unchanged"] += 1
        else:
            outcomes["changed"] += 1
        state = engine.states.get(account.key)
        if state is not None:
            scheduler.done(account, state, clock.now())

    async def sweep(at: datetime | None) -> dict[str, Any]:
        """Check every account once: all those due at ``at``, or (None) each as it comes
        due, as the daemon's loop takes them."""
        outcomes.clear()
        lag = _LoopLag()
        lag.start()
        cpu_before = scrape_cpu[0]
        with _Window(port) as window:
            if at is not None:
                due = scheduler.take_due(at)
                tasks = [asyncio.create_task(check(account)) for account in due]
            else:
                due, tasks = [], []
                while len(due) < len(config.accounts):
                    for account in scheduler.take_due(clock.now()):
                        due.append(account)
                        tasks.append(asyncio.create_task(check(account)))
                    await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)
        loop_lag = await lag.stop()
        scrapes = scrape_cpu[0] - cpu_before
        result = window.result(len(due), outcomes=dict(outcomes), loop_lag=loop_lag)
        result["scrape_cpu_seconds"] = scrapes
        result["cpu_per_check_ms"] = 1000 * (window.cpu - scrapes) / len(due)
        result["cpu_per_check_with_scrapes_ms"] = 1000 * window.cpu / len(due)
        return result

    async def wait_for_go() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    try:
        async with engine:
            scheduler.plan(config.accounts, engine.states, clock.now())
            speed = [speed_check()]
            # as `pantau run` starts: the first render built before serving, then the loaded
            # heap frozen and collections made rarer (monitor.gctune)
            await asyncio.to_thread(metrics.render_gzip)
            gctune.tune()
            _say("READY", server.port)
            await wait_for_go()
            cold = await sweep(None if args.get("spread") else clock.now())
            _say("COLD_END")
            changed = _control(port, f"/_advance?fraction={args['changed']}&seed={args['seed']}")
            steady = await sweep(clock.now() + timedelta(days=1))
            steady["changed"] = changed["changed"]
            speed.append(speed_check())
            workers_peak = _children_peak_rss_mb()  # while the engine's workers still run
            _say("IDLE")
            await wait_for_go()
            # A scrape as the server answers it: raw text, or gzip (Accept-Encoding: gzip,
            # as Prometheus sends). Round 0 follows the steady sweep's changes; then warm.
            renders, sizes = [], []
            for _ in range(6):
                t0 = time.perf_counter()
                packed = metrics.render_gzip()
                t1 = time.perf_counter()
                body = metrics.render()
                renders.append((time.perf_counter() - t1, t1 - t0))
                sizes = [len(body), len(packed)]
            after_sweep, renders = renders[0], renders[1:]
    finally:
        await server.close()
    return {
        "accounts": n,
        "config_load_seconds": config_seconds,
        "cold": cold,
        "steady": steady,
        "render": {
            "render_ms": 1000 * statistics.median(r for r, _ in renders),
            "gzip_ms": 1000 * statistics.median(g for _, g in renders),
            "gzip_after_steady_sweep_ms": 1000 * after_sweep[1],
            "bytes": sizes[0],
            "gzip_bytes": sizes[1],
        },
        "peak_rss_mb": peak_rss_mb(),
        "workers_peak_rss_mb": workers_peak,
        "speed_check_ms": speed,
    }


def pantau(args: dict[str, Any]) -> dict[str, Any]:
    """pantau's real path for a cold then a steady sweep (see :func:`_pantau`)."""
    return asyncio.run(_pantau(args))


# -- start with a large store -------------------------------------------------------------
def mkstore(args: dict[str, Any]) -> dict[str, Any]:
    """A config with ``accounts`` rss accounts and a store holding their state: last checked
    in the last 50 minutes (none due at start with a 1h interval), ``posts`` posts each in the
    last 30 days, validators and a few history rows. Written with SQL, not checked."""
    from monitor.store import Store

    workdir, n, port = Path(args["workdir"]), args["accounts"], args["port"]
    db = workdir / "big.db"
    urls = _urls(port, n)
    write_config(workdir / "big.yaml", urls=urls, state=db, concurrency=args["concurrency"],
                 listen=f"127.0.0.1:{args['listen_port']}")

    async def create() -> None:
        store = await Store.open(db)
        await store.close()

    asyncio.run(create())
    rng = random.Random(args["seed"])
    now = time.time()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    accounts, posts, validators, checks = [], [], [], []
    for i, url in enumerate(urls):
        agency = corpus.agency_of(i // FEEDS_PER_AGENCY)[0]
        key = (agency, "rss", url)
        checked = now - rng.uniform(60, 50 * 60)
        newest = checked - rng.uniform(0, 10 * 86400)
        post_url = f"https://x{i}.go.id/{int(newest)}/berita/"
        accounts.append((*key, newest, post_url, f"p{i}-0", "feed", checked, checked, 1,
                         None, None, 0))
        for p in range(args["posts"]):
            when = newest - p * rng.uniform(0, 3 * 86400)
            posts.append((*key, f"p{i}-{p}", f"p{i}-{p}", when))
        validators.append((url, f'"{i:x}-0"', "Fri, 20 Nov 2026 03:00:00 GMT", "0" * 64))
        for c in range(3):
            checks.append((*key, checked - c * 3600, 1, None, None, newest, post_url,
                           f"p{i}-0", "feed", 0.05, int(c > 0), None))
    conn.executemany("INSERT INTO accounts VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", accounts)
    conn.executemany("INSERT INTO posts VALUES (?,?,?,?,?,?)", posts)
    conn.executemany("INSERT INTO validators VALUES (?,?,?,?)", validators)
    conn.executemany(
        "INSERT INTO checks (agency, platform, account, checked_at, ok, reason, message, "
        "latest_post_at, post_url, post_id, method, duration, unchanged, retry_after) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", checks,
    )
    conn.execute("COMMIT")
    conn.close()
    return {
        "accounts": n, "posts": len(posts), "config": str(workdir / "big.yaml"),
        "store": str(db), "store_bytes": db.stat().st_size,
        "config_bytes": (workdir / "big.yaml").stat().st_size,
    }


def startup_breakdown(args: dict[str, Any]) -> dict[str, Any]:
    """The steps of the daemon's start, timed one by one in this process."""
    t0 = time.perf_counter()
    import plugins.rss
    from monitor import __version__
    from monitor.clock import SystemClock
    from monitor.config import load_config
    from monitor.engine import Engine
    from monitor.metrics import Metrics
    from monitor.plugins import load_plugins

    imported = time.perf_counter()
    loaded = load_plugins(environ={}, entry_points=[], extra=[("rss", plugins.rss)])
    t1 = time.perf_counter()
    config = load_config(args["config"], loaded.platforms, environ={})
    t2 = time.perf_counter()

    async def rest() -> tuple[float, float, float, int, int]:
        a = time.perf_counter()
        engine = await Engine.open(config, loaded, SystemClock())
        b = time.perf_counter()
        metrics = Metrics(engine, __version__)
        body = metrics.render()
        c = time.perf_counter()
        packed = metrics.render_gzip()  # deflates the segments render() just built
        d = time.perf_counter()
        await engine.close()
        return b - a, c - b, d - c, len(body), len(packed)

    store_s, render_s, gzip_s, size, packed_size = asyncio.run(rest())
    return {
        "accounts": len(config.accounts),
        "metrics_bytes": size,
        "metrics_gzip_bytes": packed_size,
        "import_seconds": imported - t0,
        "plugins_seconds": t1 - imported,
        "config_seconds": t2 - t1,
        "store_load_seconds": store_s,
        "first_render_seconds": render_s,
        "first_gzip_seconds": gzip_s,
        "peak_rss_mb": peak_rss_mb(),
    }


PHASES: dict[str, Callable[[dict[str, Any]], dict[str, Any] | Awaitable[Any]]] = {
    "floor_plain": floor_plain,
    "floor_conditional": floor_conditional,
    "feedparser": feedparser_alone,
    "naive": naive,
    "pantau": pantau,
    "mkstore": mkstore,
    "startup_breakdown": startup_breakdown,
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one benchmark phase (see bench/run.py).")
    parser.add_argument("phase", choices=sorted(PHASES))
    parser.add_argument("--args", default="{}", help="the phase's arguments, as JSON")
    ns = parser.parse_args(argv)
    result = PHASES[ns.phase](json.loads(ns.args))
    # All the CPU this process and its workers used, start to end (imports included): lets the
    # orchestrator tell its own CPU from other processes' when workers are not reaped by it.
    result["process_tree_cpu_seconds"] = cpu_seconds()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

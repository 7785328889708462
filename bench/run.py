"""pantau's benchmark: can one machine watch a whole country's agencies?

    python -m bench.run            # N=10,000 feeds (about 10 minutes on 2 cores)
    python -m bench.run --quick    # N=1,000, smaller samples: for iterating
    python -m bench.run --n 20000 --concurrency 64

Starts a loopback fake of N feed servers in a separate process (:mod:`bench.fakeserver`), then
runs each measured phase in a fresh process of its own (:mod:`bench.phases`): the floor (a bare
aiohttp loop, plain and conditional GET; feedparser alone; a naive cron script), pantau's real
path for a cold and a steady sweep while this process scrapes ``/metrics`` every 100 ms, and the
start of ``pantau run`` with 100,000 accounts in the store. Prints a table with the ratios to
the floor and writes everything, with the machine, to ``bench/results/``. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # `python bench/run.py`
    sys.path.insert(0, str(ROOT))

from bench.phases import _percentile  # noqa: E402

__all__ = ["TARGETS", "main"]

#: The issue's targets: name -> (limit, what the ratio or value is).
TARGETS: dict[str, tuple[float, str]] = {
    "steady_cpu": (1.5, "steady sweep CPU per check / conditional-GET floor"),
    "cold_cpu": (1.3, "cold sweep CPU per check / (plain-GET floor + feedparser)"),
    "metrics_p99": (50.0, "/metrics p99 during the cold sweep, ms"),
    "peak_rss": (200.0, "peak resident memory of pantau (+ workers) at N accounts, MB"),
    "startup": (3.0, "restart -> stored values served with the store full, s"),
}
SCRAPE_EVERY = 0.1


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env else "")
    env.pop("PANTAU_PLUGINS", None)
    env.pop("PANTAU_DISABLE_PLUGINS", None)
    return env


def machine() -> dict[str, Any]:
    """The machine, the software and the date of the run."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as fh:
        mem = round(int(fh.readline().split()[1]) / 1024 / 1024, 1)

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gb": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {n: ver(n) for n in ("pantau", "aiohttp", "feedparser", "prometheus-client")},
        "source": str(ROOT),
        "commit": _commit(),
    }


def _commit() -> str | None:
    """The checked-out commit, read from .git without running git (the tree may differ)."""
    git = ROOT / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).exists():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


class Load:
    """CPU used on the whole machine vs by this benchmark's processes, so that a busy
    neighbour (other work on the same cores) is visible next to the numbers it disturbs."""

    def __init__(self, fake_pid: int | None = None) -> None:
        self.fake_pid = fake_pid

    @staticmethod
    def _machine_busy() -> float:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def _ours(self) -> tuple[float, float]:
        """(CPU of this process and the fake server, CPU of reaped children)."""
        import resource

        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total = own.ru_utime + own.ru_stime
        if self.fake_pid is not None:
            from bench.phases import _proc_cpu

            total += _proc_cpu(self.fake_pid)
        return total, kids.ru_utime + kids.ru_stime

    def __enter__(self) -> Load:
        self.busy0, self.ours0, self.wall0 = self._machine_busy(), self._ours(), time.time()
        self.reported = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        busy = self._machine_busy() - self.busy0
        own, kids = self._ours()
        # A phase's worker processes are not always reaped by it (a forkserver's are not):
        # then only the CPU the phase reported for its process tree accounts for them.
        ours = own - self.ours0[0] + max(kids - self.ours0[1], self.reported)
        wall = time.time() - self.wall0
        self.result = {
            "wall_seconds": wall,
            "machine_busy_cpu_seconds": busy,
            "benchmark_cpu_seconds": ours,
            "other_cpu_seconds": max(0.0, busy - ours),
            "other_share_of_machine": max(0.0, busy - ours) / (wall * (os.cpu_count() or 1)),
        }


# -- processes ----------------------------------------------------------------------------
class FakeServer:
    """The fake feed server, a child process; stops when its stdin closes."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0

    async def __aenter__(self) -> FakeServer:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.fakeserver", "--n", str(self.n),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=_env(),
        )
        assert self.proc.stdout is not None
        line = (await self.proc.stdout.readline()).decode()
        if not line.startswith("PORT "):
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def run_phase(
    name: str,
    args: dict[str, Any],
    logdir: Path,
    on_line: Callable[[str, asyncio.subprocess.Process], Any] | None = None,
) -> dict[str, Any]:
    """Run ``bench.phases NAME`` in a fresh process; return its RESULT."""
    log = logdir / f"{name}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.phases", name, "--args", json.dumps(args),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            cwd=ROOT, env=_env(),
        )
        assert proc.stdout is not None
        result: dict[str, Any] | None = None
        async for raw in proc.stdout:
            line = raw.decode().rstrip("\n")
            if line.startswith("RESULT "):
                result = json.loads(line[7:])
            elif on_line is not None:
                outcome = on_line(line, proc)
                if asyncio.iscoroutine(outcome):
                    await outcome
        code = await proc.wait()
    if code != 0 or result is None:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"phase {name} failed (exit {code}); log {log}:\n{tail}")
    return result


class Scraper:
    """Scrapes /metrics as Prometheus does (keep-alive, ``Accept-Encoding: gzip``) every
    100 ms from this process; records each scrape's latency (request to last byte)."""

    def __init__(self, port: int, window: float | None = None) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.window = window
        self.latencies: list[float] = []
        self.failures = 0
        self.sizes: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _loop(self, count: int | None) -> None:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(auto_decompress=False, timeout=timeout) as session:
            next_at = began = time.perf_counter()
            while count is None or len(self.latencies) + self.failures < count:
                if self.window is not None and time.perf_counter() - began > self.window:
                    return
                start = time.perf_counter()
                try:
                    async with session.get(self.url, headers={"Accept-Encoding": "gzip"}) as r:
                        body = await r.read()
                        ok = r.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    self.latencies.append(time.perf_counter() - start)
                    self.sizes.append(len(body))
                else:
                    self.failures += 1
                next_at += SCRAPE_EVERY
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at = max(next_at, time.perf_counter() - SCRAPE_EVERY)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(None))

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def run(self, count: int) -> None:
        await self._loop(count)

    def summary(self) -> dict[str, float]:
        ms = [1000 * x for x in self.latencies]
        return {
            "scrapes": len(ms),
            "failures": self.failures,
            "p50_ms": _percentile(ms, 50),
            "p99_ms": _percentile(ms, 99),
            "max_ms": max(ms, default=float("nan")),
            "gzip_bytes": self.sizes[-1] if self.sizes else 0,
        }


async def pantau_phase(
    args: dict[str, Any], logdir: Path, scrape_seconds: float
) -> dict[str, Any]:
    """pantau's sweeps, with /metrics scraped every 100 ms during (the first
    ``scrape_seconds`` of) the cold one."""
    scrapers: dict[str, Scraper] = {}

    async def on_line(line: str, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdin is not None
        print(f"    pantau: {line}", flush=True)
        if line.startswith("READY "):
            port = int(line.split()[1])
            scrapers["cold"] = Scraper(port, scrape_seconds)
            scrapers["idle"] = Scraper(port)
            scrapers["cold"].start()
            proc.stdin.write(b"GO\n")
        elif line == "COLD_END":
            await scrapers["cold"].stop()
        elif line == "IDLE":
            await scrapers["idle"].run(10)
            proc.stdin.write(b"GO\n")

    result = await run_phase("pantau", args, logdir, on_line)
    result["metrics_during_cold"] = scrapers["cold"].summary()
    result["metrics_idle"] = scrapers["idle"].summary()
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve_once(config: str, port: int, log: Any) -> dict[str, Any]:
    """Spawn ``pantau run``; seconds to the first /metrics answer carrying the stored values;
    then SIGTERM (a clean stop, which writes the snapshot the next start serves)."""
    import aiohttp

    code = "import sys; from monitor.cli import main; sys.exit(main(sys.argv[1:]))"
    env = _env()
    env["PANTAU_PLUGINS"] = "rss"
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "run", "-c", config,
        stdout=log, stderr=log, cwd=ROOT, env=env,
    )
    served = live = None
    size = 0
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        while time.perf_counter() - started < 180 and proc.returncode is None:
            try:
                async with session.get(
                    f"http://127.0.0.1:{port}/metrics", headers={"Accept-Encoding": "gzip"}
                ) as resp:
                    body = await resp.read()
                    at = time.perf_counter() - started
                    if resp.headers.get("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    if resp.status == 200 and b"pantau_last_post_timestamp_seconds{" in body:
                        if served is None:
                            served, size = at, len(body)
                        # the live render carries the histogram; a snapshot does not
                        if b"pantau_check_duration_seconds" in body:
                            live = at
                            break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    stop_started = time.perf_counter()
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        exit_code = await asyncio.wait_for(proc.wait(), 60)
    except TimeoutError:
        proc.kill()
        exit_code = await proc.wait()
    return {
        "served_seconds": served,
        "live_seconds": live,
        "metrics_bytes": size,
        "stop_seconds": time.perf_counter() - stop_started,
        "exit_code": exit_code,
    }


async def startup_phase(args: dict[str, Any], logdir: Path) -> dict[str, Any]:
    """``pantau run`` on a store holding many accounts, twice: a first start (the store was
    written by the benchmark, so there is no snapshot) and a restart after a clean stop."""
    store = await run_phase("mkstore", args, logdir)
    port = args["listen_port"]
    with (logdir / "startup.log").open("wb") as log:
        first = await _serve_once(store["config"], port, log)
        restart = await _serve_once(store["config"], port, log)
    for name, run in (("first start", first), ("restart", restart)):
        if run["served_seconds"] is None:
            tail = (logdir / "startup.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"pantau run never served the stored values ({name}):\n{tail}")
    breakdown = await run_phase("startup_breakdown", {"config": store["config"]}, logdir)
    return {
        "accounts": args["accounts"],
        "store": store,
        "served_seconds": restart["served_seconds"],
        "first_start": first,
        "restart": restart,
        "breakdown": breakdown,
    }


# -- report -------------------------------------------------------------------------------
def feedparser_floor(results: dict[str, Any]) -> float:
    """feedparser's CPU per body for the floor: the median of every time it was measured in
    the run (the rounds of the ``feedparser`` phase, and the ``pantau`` phase's checks before
    and after its sweeps), so that a machine whose speed drifts during the run (a shared VM's
    does) skews the ratio less than one measurement taken minutes before the sweeps."""
    fp = results["feedparser"]
    values = list(fp.get("rounds_feedparser_ms") or [fp["feedparser_ms"]])
    p = results.get("pantau")
    if p and p.get("speed_check_ms"):
        values += p["speed_check_ms"]
    return statistics.median(values)


def verdicts(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target's measured value and whether it holds."""
    out: dict[str, dict[str, Any]] = {}
    p = results.get("pantau")
    plain, cond = results.get("floor_plain"), results.get("floor_conditional")
    fp = results.get("feedparser")
    if p and cond:
        out["steady_cpu"] = {"value": p["steady"]["cpu_per_check_ms"] / cond["cpu_per_check_ms"]}
    if p and plain and fp:
        floor = plain["cpu_per_check_ms"] + feedparser_floor(results)
        out["cold_cpu"] = {"value": p["cold"]["cpu_per_check_ms"] / floor}
    if p:
        out["metrics_p99"] = {"value": p["metrics_during_cold"]["p99_ms"]}
        # pantau's own process plus its parse workers (their peaks, shared pages counted
        # in each: an upper bound)
        out["peak_rss"] = {"value": p["peak_rss_mb"] + (p.get("workers_peak_rss_mb") or 0)}
    if results.get("startup"):
        out["startup"] = {"value": results["startup"]["served_seconds"]}
    for name, row in out.items():
        limit, what = TARGETS[name]
        if name == "startup":
            what = what.replace("the store full", f"{results['startup']['accounts']:,} accounts")
        if name == "peak_rss":
            what = what.replace("N accounts", f"{results['config']['n']:,} accounts")
        row.update(limit=limit, what=what, holds=row["value"] <= limit)
    return out


def table(results: dict[str, Any]) -> str:
    """The printed (and documented) table: measures, floors, ratios, targets."""
    lines: list[str] = []
    n = results["config"]["n"]
    p = results.get("pantau")
    plain, cond = results.get("floor_plain"), results.get("floor_conditional")
    fp, naive = results.get("feedparser"), results.get("naive")

    def row(*cells: str) -> None:
        lines.append("| " + " | ".join(cells) + " |")

    row("measure", "pantau", "floor", "ratio", "target")
    row("---", "---:", "---:", "---:", "---")
    v = verdicts(results)

    def mark(name: str) -> str:
        if name not in v:
            return ""
        ok = v[name]["holds"]
        return f"<= {v[name]['limit']:g} {'PASS' if ok else 'FAIL'}"

    if p and cond:
        row("steady sweep CPU/check, ms (vs conditional GET)",
            f"{p['steady']['cpu_per_check_ms']:.3f}", f"{cond['cpu_per_check_ms']:.3f}",
            f"{v['steady_cpu']['value']:.2f}x", mark("steady_cpu"))
    if p and plain and fp:
        parse = feedparser_floor(results)
        floor = plain["cpu_per_check_ms"] + parse
        row("cold sweep CPU/check, ms (vs plain GET + feedparser)",
            f"{p['cold']['cpu_per_check_ms']:.3f}",
            f"{floor:.3f} ({plain['cpu_per_check_ms']:.3f} + {parse:.3f})",
            f"{v['cold_cpu']['value']:.2f}x", mark("cold_cpu"))
    if cond and cond.get("minimal"):
        least, base = cond["minimal"], cond["cpu_per_check_ms"]
        row("least a durable checker does per steady check, ms: conditional GET + fast parse of "
            "the changed / + SQLite rows / both (bench.phases._Minimal)",
            f"{least['parse']:.3f} / {least['store']:.3f} / {least['both']:.3f}",
            f"{base:.3f}",
            f"{least['parse'] / base:.2f}x / {least['store'] / base:.2f}x / "
            f"{least['both'] / base:.2f}x", "(context)")
    if p and cond and fp:
        changed = p["steady"]["changed"] / n
        floor = cond["cpu_per_check_ms"] + changed * feedparser_floor(results)
        row(f"steady CPU/check, ms (vs conditional GET + {changed:.0%} feedparser)",
            f"{p['steady']['cpu_per_check_ms']:.3f}", f"{floor:.3f}",
            f"{p['steady']['cpu_per_check_ms'] / floor:.2f}x", "(context)")
    if p:
        m = p["metrics_during_cold"]
        row("/metrics during cold sweep, p50 / p99 / max ms",
            f"{m['p50_ms']:.1f} / {m['p99_ms']:.1f} / {m['max_ms']:.1f}", "", "",
            mark("metrics_p99"))
        idle = p["metrics_idle"]
        row("/metrics idle, p50 / p99 ms", f"{idle['p50_ms']:.1f} / {idle['p99_ms']:.1f}",
            "", "", "")
        r = p["render"]
        row(f"/metrics scrape at {n:,} accounts (warm cache), raw / gzip, ms",
            f"{r['render_ms']:.1f} / {r['gzip_ms']:.1f}", "", "", "")
        if "gzip_after_steady_sweep_ms" in r:
            row("/metrics gzip scrape right after the steady sweep, ms",
                f"{r['gzip_after_steady_sweep_ms']:.1f}", "", "", "")
        row("/metrics size, MB raw / gzip", f"{r['bytes'] / 1e6:.2f} / {r['gzip_bytes'] / 1e6:.2f}",
            "", "", "")
        workers = p.get("workers_peak_rss_mb") or 0
        rss = f"{p['peak_rss_mb']:.0f}" + (f" (+{workers:.0f} workers)" if workers else "")
        row(f"peak resident memory at {n:,} accounts, MB", rss,
            f"{plain['peak_rss_mb']:.0f}" if plain else "", "", mark("peak_rss"))
        for sweep, floor_phase in (("cold", plain), ("steady", cond)):
            s = p[sweep]
            floor_wall = f"{floor_phase['wall_seconds']:.1f}" if floor_phase else ""
            ratio = f"{s['wall_seconds'] / floor_phase['wall_seconds']:.2f}x" if floor_phase else ""
            row(f"{sweep} sweep wall time, s", f"{s['wall_seconds']:.1f}", floor_wall, ratio, "")
            row(f"{sweep} sweep bytes received per check",
                f"{s['bytes_per_check']:,.0f}",
                f"{floor_phase['bytes_per_check']:,.0f}" if floor_phase else "", "", "")
            lag = s["loop_lag"]
            row(f"{sweep} sweep event-loop lag (10 ms timer), p99 / max ms",
                f"{lag['p99_ms']:.1f} / {lag['max_ms']:.1f}", "", "", "")
    if fp and p and p.get("speed_check_ms"):
        before, after = p["speed_check_ms"]
        row("machine speed: feedparser ms/body, floor phase / before / after the sweeps",
            f"{fp['feedparser_ms']:.1f} / {before:.1f} / {after:.1f}", "", "", "")
    if fp:
        row("pantau parse_feed vs feedparser alone, ms/body",
            f"{fp['parse_feed_ms']:.2f}", f"{fp['feedparser_ms']:.2f}",
            f"{fp['parse_feed_ms'] / fp['feedparser_ms']:.2f}x", "")
    if naive:
        row(f"naive cron loop (feedparser.parse(url)), {naive['checks']} feeds: CPU/feed ms",
            f"{naive['cpu_per_check_ms']:.2f}", "", "", "")
        row(f"naive cron loop extrapolated to {n:,} feeds: wall / CPU s",
            f"{naive['extrapolated_wall_seconds']:.0f} / {naive['extrapolated_cpu_seconds']:.0f}",
            "", "", "")
    s = results.get("startup")
    if s:
        b = s["breakdown"]
        first, again = s.get("first_start"), s.get("restart")
        row(f"restart -> stored values served, {s['accounts']:,} accounts, s",
            f"{s['served_seconds']:.2f}", "", "", mark("startup"))
        if first and again:
            row("  first start (no snapshot) -> stored values served / live render, s",
                f"{first['served_seconds']:.2f} / {first['live_seconds'] or float('nan'):.2f}",
                "", "", "")
            row("  restart -> live render, s", f"{again['live_seconds'] or float('nan'):.2f}",
                "", "", "")
        row("  of which (in-process): imports / config / store load / render / gzip, s",
            f"{b['import_seconds']:.2f} / {b['config_seconds']:.2f} / "
            f"{b['store_load_seconds']:.2f} / {b['first_render_seconds']:.2f} / "
            f"{b['first_gzip_seconds']:.2f}", "", "", "")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------
async def run(opts: argparse.Namespace) -> dict[str, Any]:
    n = opts.n
    config = {
        "n": n, "concurrency": opts.concurrency, "changed": opts.changed, "rounds": opts.rounds,
        "spread_seconds": opts.spread,
        "naive_sample": opts.sample, "parse_sample": opts.parse_sample,
        "startup_accounts": opts.startup_accounts, "posts_per_account": opts.posts,
        "scrape_every_seconds": SCRAPE_EVERY, "scrape_seconds": opts.scrape_seconds,
        "quick": opts.quick, "label": opts.label,
    }
    results: dict[str, Any] = {"machine": machine(), "config": config}
    skip = set(opts.skip)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pantau-bench-") as tmp:
        work = Path(tmp)
        logdir = Path(opts.logs) if opts.logs else work
        logdir.mkdir(parents=True, exist_ok=True)
        async with FakeServer(n) as fake:
            common = {"port": fake.port, "n": n, "concurrency": opts.concurrency,
                      "changed": opts.changed, "seed": opts.seed, "rounds": opts.rounds}
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("floor_plain", lambda: run_phase("floor_plain", common, logdir)),
                ("floor_conditional",
                 lambda: run_phase("floor_conditional", {**common, "seed": opts.seed + 1},
                                   logdir)),
                ("feedparser",
                 lambda: run_phase("feedparser", {**common, "sample": opts.parse_sample},
                                   logdir)),
                ("naive", lambda: run_phase("naive", {**common, "sample": opts.sample}, logdir)),
                ("pantau",
                 lambda: pantau_phase({**common, "seed": opts.seed + 2, "workdir": tmp,
                                       "spread": opts.spread}, logdir,
                                      opts.scrape_seconds)),
                ("startup",
                 lambda: startup_phase(
                     {**common, "accounts": opts.startup_accounts, "posts": opts.posts,
                      "workdir": tmp, "listen_port": _free_port()}, logdir)),
            ]
            load: dict[str, Any] = {}
            for name, step in steps:
                if name in skip:
                    continue
                print(f"  {name} ...", flush=True)
                assert fake.proc is not None
                with Load(fake.proc.pid) as phase_load:
                    results[name] = await step()
                    phase_load.reported = results[name].get("process_tree_cpu_seconds", 0.0)
                load[name] = phase_load.result
                print(f"  {name} done in {phase_load.result['wall_seconds']:.1f}s "
                      f"(other processes used {phase_load.result['other_share_of_machine']:.0%}"
                      " of the machine meanwhile)", flush=True)
            results["load"] = load
    results["verdicts"] = verdicts(results)
    results["total_seconds"] = time.perf_counter() - began
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--n", type=int, help="feeds / accounts (default 10000; --quick 1000)")
    parser.add_argument("--quick", action="store_true",
                        help="N=1000, small samples, 20,000 accounts at start: for iterating")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="checks and requests at once, pantau and floor alike (default 64)")
    parser.add_argument("--changed", type=float, default=0.05,
                        help="fraction of feeds changing between sweeps (default 0.05)")
    parser.add_argument("--sample", type=int, help="feeds of the naive loop (default 500)")
    parser.add_argument("--parse-sample", type=int, help="bodies parsed alone (default 200)")
    parser.add_argument("--startup-accounts", type=int,
                        help="accounts in the store at start (default 100000)")
    parser.add_argument("--posts", type=int, default=10,
                        help="stored posts per account in the last 30 days (default 10)")
    parser.add_argument("--scrape-seconds", type=float, default=60.0,
                        help="scrape /metrics during at most the first S seconds of the cold "
                        "sweep (default 60)")
    parser.add_argument("--spread", type=float, default=0.0,
                        help="spread the cold sweep's checks over S seconds as the daemon "
                        "spreads first checks (it uses 60); default 0: all at once")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of each floor measurement; the median counts (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["floor_plain", "floor_conditional", "feedparser", "naive",
                                 "pantau", "startup"], help="phases to leave out")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"),
                        help="directory of the JSON results (default bench/results)")
    parser.add_argument("--logs", help="keep the phases' stderr in this directory")
    parser.add_argument("--label", default="", help="a note stored with the results")
    opts = parser.parse_args(argv)
    quick = opts.quick
    opts.n = opts.n or (1000 if quick else 10_000)
    opts.sample = opts.sample or (100 if quick else 500)
    opts.parse_sample = opts.parse_sample or (50 if quick else 200)
    opts.startup_accounts = opts.startup_accounts or (20_000 if quick else 100_000)
    print(f"pantau benchmark: N={opts.n:,} feeds, concurrency {opts.concurrency}, "
          f"{opts.changed:.0%} changed between sweeps", flush=True)
    results = asyncio.run(run(opts))
    text = table(results)
    results["table"] = text
    m = results["machine"]
    print()
    print(f"{m['date']}  {m['cpu_model']}, {m['usable_cores']} cores, Python {m['python']}")
    print(text)
    print()
    for row in results["verdicts"].values():
        print(f"{'PASS' if row['holds'] else 'FAIL'}  {row['what']}: {row['value']:.2f} "
              f"(target <= {row['limit']:g})")
    p, fp = results.get("pantau"), results.get("feedparser")
    if p and fp and p.get("speed_check_ms"):
        before, after = p["speed_check_ms"]
        drift = max(before, after) / fp["feedparser_ms"]
        if drift > 1.15 or min(before, after) / fp["feedparser_ms"] < 1 / 1.15:
            print("\nWARNING: the machine's speed drifted: feedparser took "
                  f"{fp['feedparser_ms']:.1f} ms per body in the floor phase, {before:.1f} "
                  f"before and {after:.1f} after"
                  " pantau's sweeps: the ratios are skewed by as much.")
    busy = {k: v["other_share_of_machine"] for k, v in results.get("load", {}).items()}
    if busy and max(busy.values()) > 0.1:
        print("\nWARNING: other processes used "
              + ", ".join(f"{v:.0%} during {k}" for k, v in busy.items() if v > 0.1)
              + " of the machine: wall times and latencies are disturbed, CPU times less so.")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = m["date"].replace(":", "").replace("-", "")
    path = out / f"{stamp}-n{opts.n}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {path}  ({results['total_seconds']:.0f}s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

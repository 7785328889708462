"""pantau's soak test: the daemon against a faulty loopback server, memory and fds must not grow.

    python bench/soak.py                 # 10 minutes (the documented run)
    python bench/soak.py --minutes 1     # a quick check

Starts a loopback server in this process whose every answer is drawn from a seeded mix: good
answers (RSS feeds, YouTube channel feeds, WordPress REST posts, HTML pages, sometimes a 304),
HTTP 500s, 404s, a rare 429 (``Retry-After: 1``), slow answers (past the check timeout, or a
body trickled byte by byte), oversized answers (a streamed body past the 10 MiB cap, or a lying
``Content-Length``), dropped connections, redirect loops and garbage (HTML where a feed should
be). Then runs ``python -m monitor.cli run -c <config>`` as a subprocess with rss, website and
youtube accounts checked every few seconds, and samples the daemon's resident memory
(``VmRSS`` in ``/proc/<pid>/status``) and open file descriptors (``/proc/<pid>/fd``) every few
seconds, scraping ``/metrics`` and ``/healthz`` as Prometheus would.

The daemon runs with ``MALLOC_MMAP_THRESHOLD_=262144`` unless ``--malloc-mmap-threshold 0``:
glibc otherwise raises its mmap threshold after the first 10 MiB body is freed, and from then
on keeps up to twice that much freed heap for reuse, so resident memory climbs in steps of up
to ~20 MiB whenever several oversized answers happen to be read at once, and never comes down;
with a fixed threshold large buffers go back to the system when freed and resident memory
follows what the daemon holds (bench/SOAK.md has both measurements).

A ``pantau check`` of the same config runs first, so that the daemon starts from stored state
in its steady rhythm. Memory is judged from the end of a warm-up (a fifth of the run, 30 to
120 s; lazy imports, the connection pool and the first oversized answers) to the end of the
run, on the *floor* of each window (the lowest sample over the last minute, at most half the
warm-up): a 10 MiB answer being read swings resident memory by tens of MiB for a moment, and a
leak raises the floor, a transient does not. The medians are printed too. PASS needs, floor to
floor, resident memory and open fds growth within 10% (for fds, two descriptors more are
always tolerated: there are only a dozen); the daemon alive and answering
throughout; every fault class served (runs of 5 minutes or more); exit 0 on SIGTERM; and no
asyncio leak warning or traceback in its log. Exit status 0 on PASS, 1 on FAIL. The samples
are written to ``samples.csv`` in the work dir (kept with ``--keep`` or on FAIL). Loopback
only; nothing touches the network.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["FaultyServer", "main"]

#: (fault, weight): how the faulty server answers, drawn per request.
MIX: tuple[tuple[str, int], ...] = (
    ("good", 52),
    ("not_modified", 8),
    ("error_500", 9),
    ("not_found", 5),
    ("garbage", 5),
    ("slow", 5),
    ("trickle", 2),
    ("drop", 5),
    ("redirect_loop", 3),
    ("oversized_stream", 2),
    ("oversized_declared", 3),
    ("rate_limited", 1),
)
CHECK_TIMEOUT = 3.0
BODY_CAP = 10 * 1024 * 1024
GROWTH_LIMIT = 0.10
#: Open fds are a dozen: one keep-alive connection more is 8%. A leak over thousands of checks
#: is tens or hundreds, so a growth of at most this many descriptors is never a FAIL.
FD_SLACK = 2
LEAK_MARKERS = ("Unclosed", "Task exception was never retrieved", "Task was destroyed",
                "Exception in callback", "Traceback")


# -- the faulty server ------------------------------------------------------------------------

def _rfc822(when: datetime) -> str:
    return format_datetime(when.astimezone(UTC), usegmt=True)


def _rss(name: str, newest: datetime, items: int = 20) -> bytes:
    entries = "".join(
        f"<item><title>{name} {i}</title><link>http://example.invalid/{name}/{i}</link>"
        f"<guid>{name}-{i}</guid><pubDate>{_rfc822(newest - timedelta(hours=7 * i))}</pubDate>"
        f"<description>{'Kegiatan dinas hari ini. ' * 20}</description></item>"
        for i in range(items)
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
            f"<title>{name}</title><link>http://example.invalid/</link>{entries}"
            f"</channel></rss>").encode()


def _atom(channel: str, newest: datetime, items: int = 15) -> bytes:
    entries = "".join(
        f"<entry><id>yt:video:{channel[2:13]}{i:02d}</id><yt:videoId>{channel[2:13]}{i:02d}"
        f"</yt:videoId><yt:channelId>{channel}</yt:channelId><title>Video {i}</title>"
        f'<link rel="alternate" href="https://www.youtube.com/watch?v={channel[2:13]}{i:02d}"/>'
        f"<published>{(newest - timedelta(days=i)).isoformat()}</published>"
        f"<updated>{(newest - timedelta(days=i) + timedelta(hours=1)).isoformat()}</updated>"
        f"</entry>"
        for i in range(items)
    )
    return (f'<?xml version="1.0" encoding="UTF-8"?><feed xmlns:yt="http://www.youtube.com/'
            f'xml/schemas/2015" xmlns="http://www.w3.org/2005/Atom"><id>yt:channel:{channel}'
            f"</id><yt:channelId>{channel}</yt:channelId><title>Channel</title>"
            f"<published>2015-01-01T00:00:00+00:00</published>{entries}</feed>").encode()


def _wp_posts(newest: datetime) -> bytes:
    return json.dumps([
        {"id": 100 - i, "date_gmt": (newest - timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%S"),
         "date": (newest - timedelta(days=i)).strftime("%Y-%m-%dT%H:%M:%S"),
         "link": f"http://example.invalid/p/{100 - i}", "title": {"rendered": "Berita"}}
        for i in range(5)
    ]).encode()


def _home(newest: datetime) -> bytes:
    return (f"<html><head><title>Dinas</title>"
            f'<meta property="article:published_time" content="{newest.isoformat()}"></head>'
            f"<body><h1>Berita</h1><p>{newest:%d-%m-%Y}</p></body></html>").encode()


@dataclass
class FaultyServer:
    """Answers every path; what it answers is drawn from :data:`MIX` with a seeded RNG."""

    seed: int = 1
    served: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._faults = [name for name, _ in MIX]
        self._weights = [weight for _, weight in MIX]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def _good(self, request: web.Request) -> tuple[bytes, str]:
        path = request.path
        # A post every ten minutes: newest moves, so good answers change over the run.
        newest = datetime.now(UTC).replace(second=0, microsecond=0)
        newest -= timedelta(minutes=newest.minute % 10)
        if path.endswith("/feeds/videos.xml"):
            channel = request.query.get("channel_id", "UC" + "x" * 22)
            return _atom(channel, newest), "application/atom+xml"
        if "wp-json" in path or "rest_route" in request.query_string:
            return _wp_posts(newest), "application/json"
        if path.startswith("/rss/") or path.endswith("/feed/"):
            return _rss(path.strip("/").replace("/", "-"), newest), "application/rss+xml"
        if "sitemap" in path or path.endswith("robots.txt"):
            return b"not here", "text/plain"
        return _home(newest), "text/html"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fault = self.rng.choices(self._faults, self._weights)[0]
        if fault == "not_modified" and not request.headers.get("If-None-Match"):
            fault = "good"
        self.served[fault] += 1
        try:
            return await self._answer(fault, request)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - a client that went away mid-answer
            return web.Response(status=500)

    async def _answer(self, fault: str, request: web.Request) -> web.StreamResponse:
        if fault in ("good", "not_modified"):
            body, content_type = self._good(request)
            etag = f'"{hash(body) & 0xFFFFFFFF:x}"'
            if fault == "not_modified" or request.headers.get("If-None-Match") == etag:
                return web.Response(status=304, headers={"ETag": etag})
            if request.path.endswith("robots.txt") or "sitemap" in request.path:
                return web.Response(status=404, text="not found")
            return web.Response(body=body, content_type=content_type.split(";")[0],
                                headers={"ETag": etag})
        if fault == "error_500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "not_found":
            return web.Response(status=404, text="<html>Not Found</html>",
                                content_type="text/html")
        if fault == "garbage":
            return web.Response(text="<html><body>Please log in</body></html>",
                                content_type="text/html")
        if fault == "rate_limited":
            return web.Response(status=429, headers={"Retry-After": "1"})
        if fault == "redirect_loop":
            raise web.HTTPFound(request.path_qs)
        if fault == "slow":
            await asyncio.sleep(CHECK_TIMEOUT + 2)
            body, content_type = self._good(request)
            return web.Response(body=body, content_type=content_type.split(";")[0])
        response = web.StreamResponse()
        if fault == "trickle":
            response.content_type = "application/rss+xml"
            await response.prepare(request)
            for _ in range(int(CHECK_TIMEOUT * 2) + 2):
                await response.write(b"<")
                await asyncio.sleep(0.5)
            return response
        if fault == "drop":
            response.content_length = 100_000
            response.content_type = "application/rss+xml"
            await response.prepare(request)
            await response.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            if request.transport is not None:
                request.transport.close()
            return response
        if fault == "oversized_declared":
            response.content_length = 50 * BODY_CAP
            response.content_type = "application/rss+xml"
            await response.prepare(request)
            await response.write(b"<rss>" + b" " * 65536)
            if request.transport is not None:
                request.transport.close()
            return response
        # oversized_stream: a chunked body that goes past the client's cap
        response.content_type = "application/rss+xml"
        await response.prepare(request)
        chunk = b"<item>" + b"x" * (256 * 1024 - 6)
        for _ in range(BODY_CAP // len(chunk) + 4):
            await response.write(chunk)
        return response


# -- the daemon -------------------------------------------------------------------------------

def write_config(directory: Path, base: str, *, rss: int, websites: int, youtube: int,
                 interval: str) -> Path:
    """A config of ``rss + websites + youtube`` accounts spread over agencies of 10."""
    accounts: list[tuple[str, str]] = []
    accounts += [("rss", f"{base}/rss/{i}") for i in range(rss)]
    accounts += [("website", f"{base}/site/{i}") for i in range(websites)]
    accounts += [("youtube", "UC" + f"{i:022d}") for i in range(youtube)]
    lines = [
        "listen: 127.0.0.1:0",
        f"state: {directory / 'pantau.db'}",
        f"check: {{interval: {interval}, timeout: {CHECK_TIMEOUT:g}s, concurrency: 16}}",
        "expect: [rss, website, youtube]",
        "platforms:",
        "  youtube:",
        f"    feed_url: {base}/feeds/videos.xml",
        f"    web_url: {base}/yt",
        "agencies:",
    ]
    for start in range(0, len(accounts), 10):
        chunk = accounts[start:start + 10]
        lines += [f"  - id: agency-{start // 10}", f"    name: Agency {start // 10}",
                  "    accounts:"]
        by_platform: dict[str, list[str]] = {}
        for platform, account in chunk:
            by_platform.setdefault(platform, []).append(account)
        for platform, items in by_platform.items():
            lines.append(f"      {platform}: {json.dumps(items)}")
    path = directory / "pantau.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Sample:
    """One look at the daemon."""

    at: float
    rss_kib: int
    fds: int
    scrape_ms: float
    healthy: bool


def proc_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def proc_fds(pid: int) -> int:
    """The number of open file descriptors of ``pid``, from /proc/<pid>/fd."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as resp:
        return resp.status, resp.read()


def _port_from_log(log_path: Path, proc: subprocess.Popen[bytes], timeout: float) -> int:
    """The port the daemon serves on, from its "serving" log line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        for line in log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "serving" and "port" in event:
                    return int(event["port"])
        time.sleep(0.1)
    raise RuntimeError("the daemon did not start serving in time")


def _metric_totals(text: str) -> tuple[Counter[str], Counter[str]]:
    """Checks per platform and errors per reason, from an exposition."""
    checks: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("pantau_check_duration_seconds_count{"):
            platform = line.split('platform="', 1)[1].split('"', 1)[0]
            checks[platform] += int(float(line.rsplit(" ", 1)[1]))
        elif line.startswith("pantau_check_errors_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            errors[reason] += int(float(line.rsplit(" ", 1)[1]))
    return checks, errors


def _median(samples: list[Sample], attr: str) -> float:
    return statistics.median(getattr(s, attr) for s in samples)


def _floor(samples: list[Sample], attr: str) -> float:
    return min(getattr(s, attr) for s in samples)


def _growth(before: float, after: float) -> float:
    return (after - before) / before if before else 0.0


async def soak(args: argparse.Namespace) -> int:
    """Run the soak; print the report; return 0 on PASS, 1 on FAIL."""
    logging.getLogger("aiohttp").setLevel(logging.CRITICAL)
    duration = args.minutes * 60.0
    warmup = args.warmup if args.warmup is not None else min(120.0, max(30.0, duration / 5))
    warmup = min(warmup, duration / 2)
    server = FaultyServer(seed=args.seed)
    runner = web.AppRunner(server.app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    workdir = Path(tempfile.mkdtemp(prefix="pantau-soak-"))
    config = write_config(workdir, f"http://127.0.0.1:{port}", rss=args.rss,
                          websites=args.websites, youtube=args.youtube, interval=args.interval)
    log_path = workdir / "daemon.log"
    env = {**os.environ, "PANTAU_PLUGINS": "rss,website,youtube"}
    if args.malloc_mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.malloc_mmap_threshold)
    # One `pantau check` first, so the daemon starts from stored state in its steady rhythm
    # (without state it spreads first checks over a minute, and the first minute is a ramp).
    precheck = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.cli", "check", "-c", str(config), "--format", "json",
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    checked = json.loads((await precheck.communicate())[0] or b"[]")
    print(f"soak: `pantau check` first: {len(checked)} accounts, "
          f"{sum(not item['ok'] for item in checked)} failed (exit {precheck.returncode})",
          flush=True)
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", "run", "-c", str(config),
             "--log-level", "info"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=log_file, env=env,
        )
    failures: list[str] = []
    samples: list[Sample] = []
    metrics_text = ""
    try:
        daemon_port = await asyncio.to_thread(_port_from_log, log_path, proc, 30.0)
        started = time.monotonic()
        print(f"soak: {args.minutes:g} min, pid {proc.pid}, {args.rss} rss + {args.websites} "
              f"website + {args.youtube} youtube accounts every {args.interval}, faulty server "
              f"on :{port}, daemon on :{daemon_port}, warm-up {warmup:.0f} s, work dir {workdir}",
              flush=True)
        print("soak: glibc malloc: " + (
            f"MALLOC_MMAP_THRESHOLD_={args.malloc_mmap_threshold} (fixed)"
            if args.malloc_mmap_threshold else "as shipped (dynamic mmap threshold)"), flush=True)
        next_report = started
        while (elapsed := time.monotonic() - started) < duration:
            if proc.poll() is not None:
                failures.append(f"the daemon died (exit {proc.returncode}) at {elapsed:.0f} s")
                break
            t0 = time.monotonic()
            try:
                status, body = await asyncio.to_thread(_get, daemon_port, "/metrics")
                scrape_ms = (time.monotonic() - t0) * 1000
                metrics_text = body.decode()
                healthy = (await asyncio.to_thread(_get, daemon_port, "/healthz"))[0] == 200
            except OSError as exc:
                scrape_ms, healthy = float("nan"), False
                failures.append(f"scrape failed at {elapsed:.0f} s: {exc}")
            samples.append(Sample(elapsed, proc_rss_kib(proc.pid), proc_fds(proc.pid),
                                  scrape_ms, healthy))
            if time.monotonic() >= next_report:
                s = samples[-1]
                print(f"  {s.at:6.0f} s  rss {s.rss_kib / 1024:6.1f} MiB  fds {s.fds:3d}  "
                      f"scrape {s.scrape_ms:6.1f} ms  answers {sum(server.served.values())}",
                      flush=True)
                next_report += max(30.0, duration / 20)
            await asyncio.sleep(args.sample_every)
    finally:
        stopped_at = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        stop_seconds = time.monotonic() - stopped_at
        await runner.cleanup()

    log_text = log_path.read_text(errors="replace")
    levels = Counter()
    for line in log_text.splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            levels[json.loads(line).get("level", "?")] += 1
    leaks = [m for m in LEAK_MARKERS if m in log_text]

    with (workdir / "samples.csv").open("w") as out:
        out.write("seconds,rss_kib,fds,scrape_ms,healthy\n")
        for s in samples:
            out.write(f"{s.at:.1f},{s.rss_kib},{s.fds},{s.scrape_ms:.1f},{int(s.healthy)}\n")
    span = min(60.0, warmup / 2)
    base = [s for s in samples if warmup - span <= s.at <= warmup]
    end = [s for s in samples if s.at >= samples[-1].at - span] if samples else []
    checks, errors = _metric_totals(metrics_text)
    print()
    print(f"(floor = the lowest sample, median = the middle one, over {span:.0f} s windows)")
    print("                     start     warm-up floor/median     end floor/median    growth")
    if samples and base and end:
        for label, attr, scale, unit in (("resident memory", "rss_kib", 1024, "MiB"),
                                         ("open fds", "fds", 1, "")):
            first = getattr(samples[0], attr) / scale
            b_floor, b_mid = _floor(base, attr) / scale, _median(base, attr) / scale
            e_floor, e_mid = _floor(end, attr) / scale, _median(end, attr) / scale
            growth = _growth(b_floor, e_floor)
            print(f"{label:16} {first:7.1f} {unit:3}  {b_floor:7.1f} / {b_mid:7.1f} {unit:3}  "
                  f"{e_floor:7.1f} / {e_mid:7.1f} {unit:3}  {growth:+.1%} (median "
                  f"{_growth(b_mid, e_mid):+.1%})")
            slack = FD_SLACK if attr == "fds" else 0
            if growth > GROWTH_LIMIT and e_floor - b_floor > slack:
                failures.append(f"{label} grew {growth:.1%} after warm-up (floor to floor)")
        peak = max(samples, key=lambda s: s.rss_kib)
        print(f"peak memory {peak.rss_kib / 1024:.1f} MiB at {peak.at:.0f} s; fds between "
              f"{min(s.fds for s in samples)} and {max(s.fds for s in samples)}")
    else:
        failures.append("too few samples")
    scrapes = sorted(s.scrape_ms for s in samples if s.scrape_ms == s.scrape_ms)
    if scrapes:
        print(f"/metrics scrapes: {len(scrapes)}, median {statistics.median(scrapes):.1f} ms, "
              f"max {scrapes[-1]:.1f} ms; /healthz failed {sum(not s.healthy for s in samples)}"
              " times")
    per_platform = ", ".join(f"{k} {v}" for k, v in sorted(checks.items()))
    print(f"checks by the daemon: {sum(checks.values())} ({per_platform})")
    print(f"errors by reason: {', '.join(f'{k} {v}' for k, v in sorted(errors.items()) if v)}")
    print(f"answers by kind: {', '.join(f'{k} {v}' for k, v in sorted(server.served.items()))}")
    print(f"daemon log lines by level: {dict(levels)}; stop: exit {code} in {stop_seconds:.1f} s")
    if any(not s.healthy for s in samples):
        failures.append("/healthz failed during the run")
    missing = [name for name, _ in MIX if name != "not_modified" and not server.served[name]]
    if missing and duration >= 300:
        failures.append(f"fault classes never served: {', '.join(missing)}")
    if not checks:
        failures.append("no check was counted in /metrics")
    if code != 0:
        failures.append(f"SIGTERM: exit code {code}, expected 0")
    if leaks:
        failures.append(f"asyncio leak warnings in the daemon log: {', '.join(leaks)}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("FAIL" if failures else "PASS")
    if not failures and not args.keep:
        for path in sorted(workdir.iterdir()):
            path.unlink()
        workdir.rmdir()
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--rss", type=int, default=150, help="rss accounts (default 150)")
    parser.add_argument("--websites", type=int, default=20, help="website accounts (default 20)")
    parser.add_argument("--youtube", type=int, default=30, help="youtube accounts (default 30)")
    parser.add_argument("--interval", default="10s", help="check interval (default 10s)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds before the baseline (default: a fifth of the run, "
                        "60 to 120 s)")
    parser.add_argument("--sample-every", type=float, default=2.0,
                        help="seconds between samples (default 2)")
    parser.add_argument("--seed", type=int, default=1, help="the faulty server's seed")
    parser.add_argument("--malloc-mmap-threshold", type=int, default=256 * 1024, metavar="BYTES",
                        help="MALLOC_MMAP_THRESHOLD_ for the daemon (default 262144; 0: the "
                        "allocator as shipped, see bench/SOAK.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (config, log, db)")
    args = parser.parse_args(argv)
    if not Path("/proc/self/status").exists():
        print("soak: needs /proc (Linux)", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())

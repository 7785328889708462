"""Prometheus: the shipped rules and scrape config pass promtool, the rule unit tests pass and
bite, pantau's /metrics passes `promtool check metrics`, and, end to end, a real Prometheus
scraping a real pantau on loopback fakes answers every dashboard query and raises AgencySilent
for the silent agency.

promtool and prometheus come from the Debian package `prometheus` (.ci/apt-packages). Where
they are missing these tests are skipped with a loud reason, except in CI (CI=true), where a
missing binary is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from fakes.feeds import FeedFake, FeedRoute, make_app, rss, rss_item
from test_ops_grafana import panel_queries, substitute, variable_queries

from monitor.metrics import AgencyInfo, Metrics
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import AccountState

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
RULES = PROMETHEUS_DIR / "pantau-rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "pantau-rules.test.yml"
SCRAPE_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
RUNBOOK = "https://github.com/pantau-monitor/pantau/blob/main/docs/operations.md#"

#: Alerts about one agency: they must name it by its human name (joined from agency_info).
AGENCY_ALERTS = {"AgencySilent", "AccountCheckFailing", "AccountMissing"}
ALL_ALERTS = AGENCY_ALERTS | {"PantauDown", "TokenExpiringSoon", "PluginErrors"}
SEVERITIES = {"critical", "warning", "info"}

#: The whole end-to-end test must finish well within a minute.
E2E_DEADLINE = 50.0


def in_ci() -> bool:
    """CI sets CI=true: there a missing binary fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(binary: str) -> str:
    """The path of ``binary``; skip loudly outside CI when it is missing, fail in CI."""
    path = shutil.which(binary)
    if path:
        return path
    message = (f"`{binary}` IS NOT INSTALLED: this test did not run. Install the Debian package "
               "`prometheus` (listed in .ci/apt-packages).")
    if in_ci():
        pytest.fail(message + " In CI it must be installed.")
    print(f"\nWARNING: {message}", file=sys.stderr)
    pytest.skip(message)


def run(*args: str, stdin: str | None = None, cwd: Path | None = None,
        timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output."""
    return subprocess.run(args, input=stdin, capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False)


def rule_groups(path: Path = RULES) -> list[dict[str, Any]]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(path) for rule in group["rules"] if "alert" in rule]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub makes of a Markdown file's headings."""
    anchors = set()
    for line in markdown.splitlines():
        if match := re.match(r"#{1,6}\s+(.*)", line):
            text = match[1].strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            anchors.add(text.replace(" ", "-"))
    return anchors


# -- rules: structure --------------------------------------------------------------------


def test_rules_define_every_alert_with_severity_and_runbook():
    """Each alert has a severity, summary, description and a runbook link to its own section."""
    rules = alert_rules()
    assert {r["alert"] for r in rules} == ALL_ALERTS
    anchors = github_anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert notes["runbook_url"] == RUNBOOK + name.lower(), name
        assert name.lower() in anchors, f"docs/operations.md has no section for {name}"


def test_agency_alerts_name_the_agency():
    """Agency alerts join pantau_agency_info and say the agency's human name."""
    for rule in alert_rules():
        if rule["alert"] in AGENCY_ALERTS:
            assert "group_left(name, group) pantau_agency_info" in rule["expr"], rule["alert"]
            assert "{{ $labels.name }}" in rule["annotations"]["summary"], rule["alert"]


def test_silence_rule_is_the_generic_one_with_a_for():
    """AgencySilent compares time since the last post with each account's own threshold."""
    [silent] = [r for r in alert_rules() if r["labels"].get("kind") == "over_threshold"]
    expr = " ".join(silent["expr"].split())
    assert ("time() - pantau_last_post_timestamp_seconds > on(agency, platform, account) "
            "group_left pantau_silence_threshold_seconds") in expr
    assert silent["for"]


def test_unit_tests_cover_every_alert_firing_and_quiet():
    """The promtool unit tests expect every alert (each variant) to fire, and to stay quiet."""
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    fired: set[tuple[str, str | None]] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            if check["exp_alerts"]:
                fired.update((check["alertname"], a["exp_labels"].get("kind"))
                             for a in check["exp_alerts"])
            else:
                quiet.add(check["alertname"])
    variants = {(r["alert"], r["labels"].get("kind")) for r in alert_rules()}
    assert variants <= fired, f"never expected to fire: {variants - fired}"
    assert quiet == ALL_ALERTS


# -- promtool ----------------------------------------------------------------------------


def test_promtool_check_rules():
    """`promtool check rules` accepts the rule file (syntax, templates, lint)."""
    promtool = require("promtool")
    result = run(promtool, "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_test_rules():
    """The rule unit tests pass."""
    promtool = require("promtool")
    result = run(promtool, "test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_fail_when_any_rule_is_removed(tmp_path):
    """The unit tests bite: without any one of the rules, `promtool test rules` fails."""
    promtool = require("promtool")
    groups = rule_groups()
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    runs: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        for g, group in enumerate(groups):
            for r in range(len(group["rules"])):
                mutated = json.loads(json.dumps(groups))
                removed = mutated[g]["rules"].pop(r)["alert"]
                directory = tmp_path / f"without-{g}-{r}"
                directory.mkdir()
                (directory / RULES.name).write_text(yaml.safe_dump({"groups": mutated}))
                # Only the test cases about this alert, to keep the runs short.
                cases = [c for c in tests["tests"]
                         if any(t["alertname"] == removed for t in c["alert_rule_test"])]
                (directory / RULE_TESTS.name).write_text(yaml.safe_dump({**tests, "tests": cases}))
                runs.append((removed, subprocess.Popen(
                    [promtool, "test", "rules", RULE_TESTS.name], cwd=directory,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))
        for removed, proc in runs:
            assert proc.wait(timeout=30) != 0, f"no unit test notices that {removed} is gone"
    finally:
        for _, proc in runs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_promtool_check_config_accepts_the_scrape_example():
    """The example prometheus.yml is valid, loads the rules, and scrapes job "pantau"."""
    promtool = require("promtool")
    result = run(promtool, "check", "config", str(SCRAPE_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert "pantau" in jobs  # PantauDown looks for up{job="pantau"}


@dataclass
class _View:
    accounts: list[Account] = field(default_factory=list)
    agencies: list[AgencyInfo] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str, str], AccountState] = field(default_factory=dict)
    at: datetime = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


def _filled_metrics() -> Metrics:
    """pantau's registry with every family populated: posts, failures, missing, odd labels."""
    now = _View.at
    good = Account("dinsos", "rss", 'https://dinsos.example.go.id/feed/?q="x"\\y', "https://x/",
                   1800.0, 20.0, 7 * 86400.0)
    bad = Account("satpolpp", "instagram", "satpolpp.cilegon", "https://x/", 1800.0, 20.0,
                  14 * 86400.0)
    view = _View(
        accounts=[good, bad],
        agencies=[AgencyInfo("dinsos", "Dinas Sosial Kota Cilegon", "dinas"),
                  AgencyInfo("satpolpp", "Satuan Polisi Pamong Praja", "")],
        missing=[("dinsos", "youtube"), ("satpolpp", "youtube")],
    )
    metrics = Metrics(view, "0.1.0")
    metrics.init_platforms(["rss", "instagram"])
    posts = [Post(published_at=now - timedelta(days=d), id=f"p{d}") for d in (1, 3, 20)]
    ok = CheckResult(account=good, checked_at=now, ok=True, duration=0.4,
                     observation=Observation.from_posts(posts, method="feed"))
    failed = CheckResult.failure(bad, now, 20.0, Timeout("no answer"))
    for result in (ok, failed):
        view.states[result.account.key] = AccountState().apply(result)
        metrics.observe_check(result)
    return metrics


def test_promtool_check_metrics_finds_no_problem():
    """pantau's exposition, every family filled, passes `promtool check metrics` silently."""
    promtool = require("promtool")
    text = _filled_metrics().render().decode()
    for family in ("pantau_last_post_timestamp_seconds", "pantau_posts", "pantau_account_missing",
                   "pantau_agency_info", "pantau_check_duration_seconds_bucket",
                   "pantau_check_errors_total", "pantau_build_info"):
        assert family in text
    result = run(promtool, "check", "metrics", stdin=text)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


# -- end to end --------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rfc822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _feeds(now: datetime) -> FeedFake:
    """A fresh agency (posted an hour ago), a silent one (30 days ago), a broken feed (404)."""
    fresh = rss([rss_item("Penyaluran bansos", pub_date=_rfc822(now - timedelta(hours=1))),
                 rss_item("Rapat koordinasi", pub_date=_rfc822(now - timedelta(days=2)))])
    silent = rss([rss_item("Kerja bakti", pub_date=_rfc822(now - timedelta(days=30))),
                  rss_item("Posyandu", pub_date=_rfc822(now - timedelta(days=45)))])
    return FeedFake(routes={
        "/dinsos/feed/": FeedRoute(body=fresh),
        "/cibeber/feed/": FeedRoute(body=silent),
        "/satpolpp/feed/": FeedRoute(status=404, body=b"gone", content_type="text/html"),
    })


def _pantau_config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        f"state: {tmp_path / 'pantau.db'}\n"
        # A short interval: the daemon checks again ~10 s after `pantau check`, so the
        # duration histogram and the error counter (which live in the process) move.
        "check: {interval: 10s, timeout: 3s, concurrency: 4}\n"
        "silence_after: 7d\n"
        "expect: [rss, youtube]\n"
        "agencies:\n"
        "  - id: dinsos\n    name: Dinas Sosial Kota Cilegon\n    group: dinas\n"
        f"    accounts:\n      rss: {base}/dinsos/feed/\n"
        "  - id: kel-cibeber\n    name: Kelurahan Cibeber\n    group: kelurahan\n"
        f"    silence_after: 7d\n    accounts:\n      rss: {base}/cibeber/feed/\n"
        "  - id: satpolpp\n    name: Satuan Polisi Pamong Praja Kota Cilegon\n    group: dinas\n"
        f"    accounts:\n      rss: {base}/satpolpp/feed/\n"
    )
    return path


def _prometheus_config(tmp_path: Path, pantau_port: int) -> Path:
    """The shipped scrape config, pointed at the test's pantau, scraping every second."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config.pop("alerting", None)  # no Alertmanager here
    config["rule_files"] = [str(RULES)]
    [job] = [j for j in config["scrape_configs"] if j["job_name"] == "pantau"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{pantau_port}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _environment() -> dict[str, str]:
    """The test's environment without anything systemd would have set for a service."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY",
                        "CREDENTIALS_DIRECTORY", "PANTAU_CONFIG", "PANTAU_DISABLE_PLUGINS"}}
    env["PANTAU_PLUGINS"] = "rss"
    return env


@contextlib.asynccontextmanager
async def _process(*args: str, log: Path, env: dict[str, str]
                   ) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start a process with its output in ``log``; SIGTERM (then SIGKILL) it on the way out."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*args, stdout=out, stderr=out, env=env,
                                                    cwd=ROOT)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _started_port(log: Path, proc: asyncio.subprocess.Process) -> int:
    """The port pantau reports in its "pantau started" log line (it listens on port 0)."""
    while True:
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "pantau started":
                    return int(event["listen"].rsplit(":", 1)[1])
        assert proc.returncode is None, f"pantau exited {proc.returncode}:\n{log.read_text()}"
        await asyncio.sleep(0.1)


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with session.get(f"{base}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body.get("status") == "success", f"{expr}: {body}"
    return body["data"]["result"]


async def _until_ready(session: aiohttp.ClientSession, base: str,
                       proc: asyncio.subprocess.Process, log: Path) -> None:
    """Wait for Prometheus's /-/ready (it answers 503 while it starts)."""
    while True:
        assert proc.returncode is None, f"prometheus exited:\n{log.read_text()}"
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(f"{base}/-/ready") as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)


def _finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(item["value"][1])) for item in result)


async def test_end_to_end_on_a_real_prometheus(tmp_path, aiohttp_server):
    """Real pantau + real Prometheus: dashboard queries all answer, AgencySilent is raised."""
    promtool = require("promtool")
    prometheus = require("prometheus")
    started = time.monotonic()
    server = await aiohttp_server(make_app(_feeds(datetime.now(UTC))))
    config = _pantau_config(tmp_path, str(server.make_url("")).rstrip("/"))
    env = _environment()
    pantau = (sys.executable, "-m", "monitor.cli")

    # 1. `pantau check` fills the state store now (the daemon's first checks would be spread
    #    over a minute); the daemon serves the stored values at once.
    check = await asyncio.create_subprocess_exec(
        *pantau, "check", "-c", str(config), "--format", "json", env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(check.communicate(), 20)
    assert check.returncode == 1, err.decode()  # the 404 feed fails
    results = {r["agency"]: r for r in json.loads(out)}
    assert results["dinsos"]["ok"] and results["kel-cibeber"]["ok"]
    assert results["satpolpp"]["error"]["reason"] == "not_found"

    async with contextlib.AsyncExitStack() as stack:
        daemon = await stack.enter_async_context(
            _process(*pantau, "run", "-c", str(config), log=tmp_path / "pantau.log", env=env))
        port = await asyncio.wait_for(_started_port(tmp_path / "pantau.log", daemon), 15)
        prom_port = _free_port()
        prom = await stack.enter_async_context(_process(
            prometheus, f"--config.file={_prometheus_config(tmp_path, port)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn",
            log=tmp_path / "prometheus.log", env=env))
        base = f"http://127.0.0.1:{prom_port}"
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)))

        await asyncio.wait_for(
            _until_ready(session, base, prom, tmp_path / "prometheus.log"), 20)

        # 2. pantau's own exposition passes promtool as served by the daemon.
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            exposition = await resp.text()
        lint = run(promtool, "check", "metrics", stdin=exposition)
        assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), lint.stdout

        # 3. Wait (bounded) until every dashboard query answers and the alert is raised.
        queries = panel_queries()
        variables = variable_queries()
        missing: list[str] = ["nothing asked yet"]
        alerts: list[dict[str, Any]] = []
        deadline = started + E2E_DEADLINE
        while time.monotonic() < deadline:
            missing = []
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                for q in queries:
                    if not _finite(await _query(session, base, substitute(q.expr))):
                        missing.append(f"{q.panel} [{q.ref_id}]")
                for v in variables:
                    result = await _query(session, base, substitute(v.expr))
                    if not result or (v.label and v.label not in result[0]["metric"]):
                        missing.append(f"variable {v.name}")
                async with session.get(f"{base}/api/v1/alerts") as resp:
                    alerts = (await resp.json())["data"]["alerts"]
                silent = [a for a in alerts if a["labels"]["alertname"] == "AgencySilent"]
                if not missing and any(a["labels"].get("agency") == "kel-cibeber"
                                       for a in silent):
                    break
            if daemon.returncode is not None:
                break
            await asyncio.sleep(0.5)
        else:
            missing.append("(deadline)")
        assert daemon.returncode is None, (tmp_path / "pantau.log").read_text()
        logs = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
        assert not missing, f"dashboard queries without data: {missing}\nprometheus: {logs}"

        # The silent agency is pending or firing, named by its human name; the fresh one is not.
        silent = [a for a in alerts if a["labels"]["alertname"] == "AgencySilent"]
        assert [a["labels"]["agency"] for a in silent] == ["kel-cibeber"], silent
        [alert] = silent
        assert alert["state"] in {"pending", "firing"}
        assert alert["labels"]["name"] == "Kelurahan Cibeber"
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"].startswith(
            "Kelurahan Cibeber has not posted on rss for 30d")
        assert not [a for a in alerts if a["labels"]["alertname"] == "PantauDown"]

        # The stat panels count what the fakes set up.
        stats = {q.panel: q for q in queries}
        expected = {"Silent agencies": 1, "Silent accounts": 1, "Accounts missing": 3,
                    "Checks failing": 1, "Agencies watched": 3, "pantau up": 1}
        for title, value in expected.items():
            [item] = await _query(session, base, substitute(stats[title].expr))
            assert float(item["value"][1]) == value, title

        # Every rule evaluates without error against real data (no bad joins).
        async with session.get(f"{base}/api/v1/rules") as resp:
            groups = (await resp.json())["data"]["groups"]
        health = {(r["name"], r.get("lastError", "")) for g in groups for r in g["rules"]
                  if r["health"] != "ok"}
        assert not health, health
        assert len([r for g in groups for r in g["rules"]]) == len(alert_rules())

        # SIGTERM: the daemon stops cleanly, exit 0.
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 10) == 0
    assert time.monotonic() - started < 60

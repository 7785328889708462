"""The command line: check (JSON and table), validate, status, exit codes, signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fakes.feeds import FeedFake, FeedRoute, make_app, rss, rss_item

from monitor.cli import main

ROOT = Path(__file__).resolve().parent.parent

FEED = rss([
    rss_item("Sticky lama", pub_date="Mon, 09 Jan 2023 08:00:00 +0700"),
    rss_item("Rakor", pub_date="Rab, 09 Okt 2024 09:30:00 WIB", link="https://x.example/rakor"),
])


def _write_config(tmp_path: Path, feed_url: str, *, listen: str = "127.0.0.1:0",
                  extra: str = "") -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: {listen}\nstate: {tmp_path / 'state.db'}\n"
        "check: {interval: 30m, timeout: 3s}\n"
        "expect: [rss, youtube]\n"
        "agencies:\n"
        "  - id: dinsos\n    name: Dinas Sosial\n    group: dinas\n"
        f"    accounts:\n      rss: {feed_url}\n"
        f"{extra}"
    )
    return path


@pytest.fixture
async def feed_server(aiohttp_server):
    fake = FeedFake(routes={"/feed/": FeedRoute(body=FEED)})
    server = await aiohttp_server(make_app(fake))
    return fake, server


async def _main_in_thread(argv: list[str]) -> int:
    """Run the CLI (which calls asyncio.run) in a thread, as the test loop serves the fake."""
    import asyncio

    return await asyncio.to_thread(main, argv)


async def test_check_json_has_exactly_the_design_shape(tmp_path, feed_server, capsys):
    """`check --format json` prints one array with DESIGN.md's keys; exit 0 when all pass."""
    _, server = feed_server
    url = str(server.make_url("/feed/"))
    path = _write_config(tmp_path, url)
    code = await _main_in_thread(["check", "-c", str(path), "--format", "json"])
    out = capsys.readouterr().out
    assert code == 0
    [item] = json.loads(out)
    assert item == {
        "agency": "dinsos", "platform": "rss", "account": url, "ok": True,
        "latest_post_at": "2024-10-09T02:30:00Z", "post_url": "https://x.example/rakor",
        "method": "feed", "error": None,
    }


async def test_failed_check_exits_1_and_keeps_last_known_post(tmp_path, feed_server, capsys):
    """A failing source: ok false, error reason, latest_post_at from the store, exit 1."""
    fake, server = feed_server
    path = _write_config(tmp_path, str(server.make_url("/feed/")))
    assert await _main_in_thread(["check", "-c", str(path), "--format", "json"]) == 0
    capsys.readouterr()
    fake.routes["/feed/"] = FeedRoute(status=404, body=b"gone", content_type="text/html")
    code = await _main_in_thread(["check", "-c", str(path), "--format", "json"])
    [item] = json.loads(capsys.readouterr().out)
    assert code == 1
    assert item["ok"] is False
    assert item["error"]["reason"] == "not_found" and item["error"]["message"]
    assert item["latest_post_at"] == "2024-10-09T02:30:00Z"


async def test_check_table_and_status(tmp_path, feed_server, capsys):
    """The table names the account and its state; `status` shows it from the store."""
    _, server = feed_server
    path = _write_config(tmp_path, str(server.make_url("/feed/")))
    assert await _main_in_thread(["check", "-c", str(path)]) == 0
    table = capsys.readouterr().out
    assert "dinsos" in table and " ok " in table and "SILENT" in table  # a 2024 post is silent
    await server.close()  # status must not need the network
    assert await _main_in_thread(["status", "-c", str(path), "--format", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["latest_post_at"] == "2024-10-09T02:30:00Z" and item["ok"] is True


def test_check_unknown_agency_is_usage_error(tmp_path, capsys):
    """--agency naming no agency exits 2 with a message."""
    path = _write_config(tmp_path, "https://dinsos.example.go.id/feed/")
    assert main(["check", "-c", str(path), "--agency", "nope"]) == 2
    assert "no agency 'nope'" in capsys.readouterr().err


def test_validate_prints_summary(tmp_path, capsys):
    """validate prints agencies, accounts per platform, budget and missing accounts."""
    path = _write_config(tmp_path, "https://dinsos.example.go.id/feed/")
    assert main(["validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "agencies: 1" in out and "rss: 1 accounts" in out
    assert "2.0 checks/hour" in out and "dinsos/youtube" in out


def test_bad_config_exits_78_with_field_path(tmp_path, capsys):
    """A bad config names the file and the field path, and exits 78."""
    path = _write_config(tmp_path, "ftp://nope")
    assert main(["validate", "-c", str(path)]) == 78
    err = capsys.readouterr().err
    assert str(path) in err and "agencies[0].accounts.rss" in err


def test_usage_errors_exit_2(capsys):
    """Unknown commands and a missing config are usage errors (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
    env = os.environ.pop("PANTAU_CONFIG", None)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["check"])
        assert exc.value.code == 2
    finally:
        if env is not None:
            os.environ["PANTAU_CONFIG"] = env


def test_version(capsys):
    """--version prints the version."""
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("pantau ")


def test_store_error_exits_74(tmp_path, capsys):
    """A state path in a missing directory is a clear store error (exit 74)."""
    path = _write_config(tmp_path, "https://dinsos.example.go.id/feed/")
    path.write_text(path.read_text().replace(str(tmp_path / "state.db"),
                                             str(tmp_path / "no" / "such" / "state.db")))
    assert main(["status", "-c", str(path)]) == 74
    assert "state store error" in capsys.readouterr().err


def test_cilegon_example_offline_fails_cleanly(tmp_path):
    """`pantau check -c config/cilegon.yaml` without internet: unreachable/timeout, exit 1."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "check", "-c", str(ROOT / "config/cilegon.yaml"),
         "--format", "json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    items = json.loads(proc.stdout)
    assert items and all(not i["ok"] for i in items)
    assert {i["error"]["reason"] for i in items} <= {"unreachable", "timeout"}


# -- the daemon as a process: signals --------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
        return resp.read().decode()


def _wait_for(predicate, timeout: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _start(tmp_path: Path, config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "run", "-c", str(config)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=open(tmp_path / "daemon.log", "w"),  # noqa: SIM115
        text=True,
    )


def test_sigterm_exits_0_promptly(tmp_path):
    """SIGTERM to the running daemon: exit 0 within 10 s, logs on stderr only.

    (Cancelling a check in flight is tested in-process in test_daemon.py.)"""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(5)  # accepts connections, never answers
    port = _free_port()
    config = _write_config(tmp_path, f"http://127.0.0.1:{silent.getsockname()[1]}/feed/",
                           listen=f"127.0.0.1:{port}")
    config.write_text(config.read_text().replace("timeout: 3s", "timeout: 60s"))
    proc = _start(tmp_path, config)
    try:
        _wait_for(lambda: _get(port, "/healthz").strip() == "ok")
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 10
    finally:
        proc.kill()
        silent.close()
    assert proc.stdout.read() == ""  # logs never go to stdout
    assert "pantau stopped" in (tmp_path / "daemon.log").read_text()


def test_sighup_reloads_and_bad_reload_keeps_old_config(tmp_path):
    """SIGHUP applies a new config; a bad one is logged and the old one keeps serving."""
    port = _free_port()
    config = _write_config(tmp_path, "https://dinsos.example.go.id/feed/",
                           listen=f"127.0.0.1:{port}")
    config.write_text(config.read_text().replace("timeout: 3s", "timeout: 1s"))
    proc = _start(tmp_path, config)
    try:
        _wait_for(lambda: "pantau_agency_info" in _get(port, "/metrics"))
        config.write_text(config.read_text() + (
            "  - id: satpolpp\n    name: Satpol PP\n    group: dinas\n    accounts: {}\n"))
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: 'agency="satpolpp"' in _get(port, "/metrics"))
        config.write_text("agencies: [this is: not valid")
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: "reload failed" in (tmp_path / "daemon.log").read_text())
        metrics = _get(port, "/metrics")
        assert 'agency="satpolpp"' in metrics and 'agency="dinsos"' in metrics
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_validate_prints_platform_budget_reports(tmp_path, capsys):
    """validate prints each platform's budget lines, warnings marked."""
    from fakes.scripted import ScriptedPlatform, plugin_module

    from monitor import commands
    from monitor.config import load_config
    from monitor.plugins import load_plugins

    loaded = load_plugins(environ={}, entry_points=[],
                          extra=[("scripted", plugin_module(ScriptedPlatform()))])
    path = tmp_path / "c.yaml"
    accounts = ", ".join(f"ok-{i}" for i in range(12))
    path.write_text(
        f"agencies:\n  - id: a\n    name: A\n    accounts: {{scripted: [{accounts}]}}\n")
    assert commands.validate(load_config(path, loaded.platforms), loaded) == 0
    assert "WARNING: scripted: 12 of 10 accounts" in capsys.readouterr().out

"""Config faults through the command line and through a reload.

tests/test_config.py checks that each ``tests/testdata/config/invalid-*.yml`` fixture fails
with its declared field path and problem. Here every one of them goes through
``pantau validate`` and ``pantau run`` (exit 78, the message on stderr, nothing on stdout)
and through ``Daemon.reload()`` of a running daemon, which must refuse it and keep the old
config running. The fixtures are written for the ``rss`` and ``instagram`` platforms of
test_config.py, which the CLI gets in place of the installed plugins.
"""

from __future__ import annotations

import asyncio
import random
import shutil
from pathlib import Path

import aiohttp
import pytest
from structlog.testing import capture_logs
from test_config import INVALID, PLATFORMS, expectation

from monitor import hookimpl
from monitor.cli import EXIT_CONFIG, main
from monitor.daemon import Daemon
from monitor.plugins import Plugins, load_plugins
from monitor.scheduler import Scheduler
from monitor.secrets import world_readable_warnings

TOKEN = "tok-world-readable-0123456789"


class _Module:
    """A plugin module registering the test_config platforms."""

    @hookimpl
    def register_platforms(self, register) -> None:  # noqa: ANN001
        for platform in PLATFORMS.values():
            register(platform)


@pytest.fixture
def plugins(monkeypatch) -> Plugins:
    """rss and instagram as in test_config.py, for main() too; no secret in the environment."""
    loaded = load_plugins(environ={}, entry_points=[], extra=[("config-test", _Module())])
    monkeypatch.setattr("monitor.cli.load_plugins", lambda: loaded)
    for name in ("PANTAU_IG_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    return loaded


def _expected_line(fixture: Path) -> str:
    path, _ = expectation(fixture)
    return f"{fixture}: {path}: " if path else f"{fixture}: "


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_config_exits_78_naming_file_path_and_problem(fixture, command, plugins,
                                                              capsys):
    """validate and run exit 78; stderr names the file, the field path and the problem."""
    _, phrase = expectation(fixture)
    assert main([command, "-c", str(fixture)]) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"pantau: configuration error: {_expected_line(fixture)}"), err
    assert phrase in err.splitlines()[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["validate", "run", "check", "status"])
def test_missing_config_file_exits_78(tmp_path, command, plugins, capsys):
    """A config path that does not exist: exit 78, "file not found", for every command."""
    path = tmp_path / "nope.yaml"
    assert main([command, "-c", str(path)]) == EXIT_CONFIG
    assert capsys.readouterr().err == f"pantau: configuration error: {path}: file not found\n"


def test_world_readable_secret_file_warns_and_validates(tmp_path, plugins, capsys):
    """A secret file others can read: validate still exits 0; stderr warns with the path, once,
    and never shows the secret."""
    secret = tmp_path / "meta-token"
    secret.write_text(TOKEN + "\n")
    secret.chmod(0o644)
    config = tmp_path / "pantau.yaml"
    config.write_text(
        f"platforms:\n  instagram:\n    access_token: {{file: {secret}}}\n"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n    accounts: {instagram: dinsos}\n")
    assert main(["validate", "-c", str(config)]) == 0
    out, err = capsys.readouterr()
    assert f"{config}: OK" in out
    warnings = [line for line in err.splitlines() if "readable by other users" in line]
    assert len(warnings) == 1 and str(secret) in warnings[0] and "chmod 600" in warnings[0]
    assert TOKEN not in out + err
    secret.chmod(0o600)
    assert main(["validate", "-c", str(config)]) == 0
    assert "readable by other users" not in capsys.readouterr().err


# -- reload: a bad new config never replaces the running one ---------------------------------

GOOD = """\
listen: 127.0.0.1:0
state: {state}
check: {{interval: 1h}}
expect: [instagram]
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts:
      rss: https://dinsos.example.go.id/feed/
"""


async def _start(config: Path, plugins: Plugins) -> tuple[Daemon, asyncio.Task[None]]:
    # Spread first checks over an hour: nothing is checked (the platforms here cannot check).
    daemon = Daemon(config, plugins, environ={}, rng=random.Random(1),
                    scheduler=Scheduler(random.Random(1), spread=3600))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.started.wait(), 10)
    return daemon, task


async def _metrics(daemon: Daemon) -> str:
    async with aiohttp.ClientSession() as session, session.get(
        f"http://127.0.0.1:{daemon.port}/metrics"
    ) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_reload_keeps_the_running_config_for_every_invalid_kind(tmp_path, plugins):
    """Each invalid fixture (and a deleted or unreadable config) is refused by reload with the
    file, path and problem logged; the old config keeps running, served and scheduled."""
    config = tmp_path / "pantau.yaml"
    good = GOOD.format(state=tmp_path / "pantau.db")
    config.write_text(good)
    daemon, task = await _start(config, plugins)
    try:
        running = daemon.engine.config
        due = daemon.scheduler.next_due()
        before = await _metrics(daemon)
        assert 'agency="dinsos"' in before
        cases = [(f, *expectation(f)) for f in INVALID]
        cases += [("deleted", "", "file not found"), ("directory", "", "is a directory")]
        refused = []
        for fixture, path, phrase in cases:
            config.unlink(missing_ok=True)
            if fixture == "directory":
                config.mkdir()
            elif fixture != "deleted":
                shutil.copyfile(fixture, config)
            with capture_logs() as logs:
                ok = await daemon.reload()
            if config.is_dir():
                config.rmdir()
            errors = [e for e in logs if e["event"] == "reload failed; keeping the previous config"]
            name = getattr(fixture, "stem", fixture)
            if ok or len(errors) != 1:
                refused.append(f"{name}: reload returned {ok}, {len(errors)} error lines")
                continue
            expected = f"{config}: {path}: " if path else f"{config}: "
            if not (errors[0]["error"].startswith(expected) and phrase in errors[0]["error"]):
                refused.append(f"{name}: logged {errors[0]['error']!r}")
            if daemon.engine.config is not running:
                refused.append(f"{name}: the running config was replaced")
        assert refused == []
        assert daemon.scheduler.next_due() == due  # the schedule was not touched
        assert len(daemon.scheduler) == 1
        assert await _metrics(daemon) == before  # same series, same values
        assert not task.done()
        config.write_text(good.replace("id: dinsos", "id: dinkes"))
        assert await daemon.reload() is True  # and a good config is still taken afterwards
        assert 'agency="dinkes"' in await _metrics(daemon)
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)


async def test_reload_with_world_readable_secret_warns_each_time_without_growth(tmp_path,
                                                                               plugins):
    """A world-readable secret file is a warning, not an error: the reload applies, warns
    each time, and the list of pending warnings does not grow with every reload."""
    secret = tmp_path / "meta-token"
    secret.write_text(TOKEN)
    secret.chmod(0o644)
    config = tmp_path / "pantau.yaml"
    config.write_text(GOOD.format(state=tmp_path / "pantau.db").replace(
        "agencies:", f"platforms:\n  instagram:\n    access_token: {{file: {secret}}}\n"
                     "agencies:"))
    daemon, task = await _start(config, plugins)
    try:
        size = len(world_readable_warnings)
        for _ in range(3):
            with capture_logs() as logs:
                assert await daemon.reload() is True
            [warning] = [e for e in logs if "readable by other users" in e["event"]]
            assert warning["path"] == str(secret) and warning["log_level"] == "warning"
            assert TOKEN not in repr(logs)
        assert len(world_readable_warnings) == size
        assert daemon.engine.config.platforms["instagram"].access_token.get() == TOKEN
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)

"""The plugin manager: one door for built-ins and third-party plugins, failures isolated."""

from __future__ import annotations

import importlib.metadata
import json
import sys
import types

import pytest

from monitor import hookimpl
from monitor.commands import plugins as plugins_command
from monitor.model import Observation
from monitor.platform import Platform
from monitor.plugins import load_plugins


class _Fake(Platform):
    def __init__(self, name: str) -> None:
        self.name = name  # type: ignore[misc]

    async def latest(self, account, ctx):  # noqa: ANN001, ANN201
        return Observation(latest_post_at=None, method="fake")


def _module(name: str, *platforms: str) -> types.ModuleType:
    module = types.ModuleType(name)

    @hookimpl
    def register_platforms(register):  # noqa: ANN001, ANN202
        for platform in platforms:
            register(_Fake(platform))

    module.register_platforms = register_platforms  # type: ignore[attr-defined]
    return module


def _missing_ep(module: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name="broken", value=module, group="pantau")


@pytest.fixture
def fake_modules():
    """Install throwaway plugin modules importable by entry points; remove them afterwards."""
    added: list[str] = []

    def add(name: str, module: types.ModuleType) -> importlib.metadata.EntryPoint:
        sys.modules[name] = module
        added.append(name)
        return importlib.metadata.EntryPoint(name=name, value=name, group="pantau")

    try:
        yield add
    finally:
        for name in added:
            sys.modules.pop(name, None)


def test_builtin_rss_comes_through_the_entry_point_group():
    """The installed distribution registers the rss platform through the 'pantau' group."""
    loaded = load_plugins(environ={})
    assert "rss" in loaded.platforms
    rss = next(p for p in loaded.loaded if p.name == "rss")
    assert rss.platforms == ["rss"] and rss.error is None and rss.version


def test_third_party_entry_point_loads(fake_modules):
    """A third-party entry point registers its platforms next to the built-ins."""
    ep = fake_modules("pantau_tiktok_test", _module("pantau_tiktok_test", "tiktok"))
    loaded = load_plugins(environ={}, entry_points=[ep])
    assert list(loaded.platforms) == ["tiktok"]


def test_import_failure_is_isolated(fake_modules):
    """A plugin that cannot be imported is reported and the others still load."""
    good = fake_modules("pantau_good_test", _module("pantau_good_test", "good"))
    bad = _missing_ep("pantau_no_such_module_x")
    loaded = load_plugins(environ={}, entry_points=[bad, good])
    assert "good" in loaded.platforms
    [failed] = loaded.failed
    assert failed.name == "broken" and "ModuleNotFoundError" in failed.error


def test_register_failure_is_isolated(fake_modules):
    """A plugin whose register_platforms raises is skipped; others keep their platforms."""
    broken = types.ModuleType("pantau_raises_test")

    @hookimpl
    def register_platforms(register):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    broken.register_platforms = register_platforms  # type: ignore[attr-defined]
    eps = [fake_modules("pantau_raises_test", broken),
           fake_modules("pantau_ok_test", _module("pantau_ok_test", "okplat"))]
    loaded = load_plugins(environ={}, entry_points=eps)
    assert list(loaded.platforms) == ["okplat"]
    assert "RuntimeError: boom" in loaded.failed[0].error


def test_register_rejects_non_platform_and_bad_names(fake_modules):
    """register() takes Platform instances with lower-case identifier names only."""
    bad = types.ModuleType("pantau_badname_test")

    @hookimpl
    def register_platforms(register):  # noqa: ANN001, ANN202
        register(_Fake("Bad Name"))

    bad.register_platforms = register_platforms  # type: ignore[attr-defined]
    loaded = load_plugins(environ={}, entry_points=[fake_modules("pantau_badname_test", bad)])
    assert loaded.platforms == {}
    assert "lower-case identifier" in loaded.failed[0].error


def test_misspelled_hook_is_caught_by_check_pending(fake_modules):
    """A hookimpl with a name that is not a hook is reported, not silently ignored."""
    typo = types.ModuleType("pantau_typo_test")

    @hookimpl
    def register_platform(register):  # noqa: ANN001, ANN202 - missing "s": a typo
        register(_Fake("typo"))

    typo.register_platform = register_platform  # type: ignore[attr-defined]
    eps = [fake_modules("pantau_typo_test", typo),
           fake_modules("pantau_fine_test", _module("pantau_fine_test", "fine"))]
    loaded = load_plugins(environ={}, entry_points=eps)
    assert list(loaded.platforms) == ["fine"]
    assert "unknown hook" in loaded.failed[0].error


def test_duplicate_platform_name_first_wins(fake_modules):
    """Two plugins offering the same platform: the first (by entry-point name) keeps it."""
    eps = [fake_modules("pantau_a_test", _module("pantau_a_test", "same")),
           fake_modules("pantau_b_test", _module("pantau_b_test", "same"))]
    loaded = load_plugins(environ={}, entry_points=eps)
    assert list(loaded.platforms) == ["same"]
    owners = {p.name: p.platforms for p in loaded.loaded}
    assert owners == {"pantau_a_test": ["same"], "pantau_b_test": []}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, {"one", "two"}),
        ({"PANTAU_PLUGINS": "pantau_one_test"}, {"one"}),
        ({"PANTAU_PLUGINS": " pantau_two_test , nothing"}, {"two"}),
        ({"PANTAU_DISABLE_PLUGINS": "pantau_one_test"}, {"two"}),
        ({"PANTAU_PLUGINS": "pantau_one_test", "PANTAU_DISABLE_PLUGINS": "pantau_one_test"}, set()),
    ],
)
def test_environment_restricts_and_blocks(fake_modules, environ, expected):
    """PANTAU_PLUGINS restricts loading to a list; PANTAU_DISABLE_PLUGINS blocks names."""
    eps = [fake_modules("pantau_one_test", _module("pantau_one_test", "one")),
           fake_modules("pantau_two_test", _module("pantau_two_test", "two"))]
    loaded = load_plugins(environ=environ, entry_points=eps)
    assert set(loaded.platforms) == expected


def test_plugins_command_json_lists_versions_and_platforms(capsys):
    """`pantau plugins --format json` prints name, version, platforms and error per plugin."""
    from monitor.cli import main

    assert main(["plugins", "--format", "json"]) == 0
    items = json.loads(capsys.readouterr().out)
    rss = next(i for i in items if i["name"] == "rss")
    assert rss["platforms"] == ["rss"] and rss["error"] is None and rss["version"]


def test_plugins_command_table_shows_failures(fake_modules):
    """The table marks a failed plugin with its error."""
    import io

    bad = _missing_ep("pantau_no_such_module_y")
    out = io.StringIO()
    plugins_command(load_plugins(environ={}, entry_points=[bad]), "table", out)
    assert "broken" in out.getvalue() and "failed: import" in out.getvalue()

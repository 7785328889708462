"""Tests for monitor.config: loading, validation rules, precedence and the example configs.

Each ``tests/testdata/config/invalid-*.yml`` breaks exactly one rule and says in its header
which path and which problem the error must name (``# path:`` and ``# problem:``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from monitor.config import (
    DEFAULT_LISTEN,
    AgencyInfo,
    CheckSettings,
    Config,
    ConfigError,
    load_config,
    parse_listen,
)
from monitor.platform import Platform, PlatformSettings
from monitor.secrets import SecretField

TESTDATA = Path(__file__).parent / "testdata" / "config"
REPO = Path(__file__).parent.parent
DAY = 86400.0


class FakeRss(Platform):
    """A feed platform: the account is an http(s) URL."""

    name = "rss"

    def normalize(self, account: str) -> str:
        value = account.strip()
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


class InstagramSettings(PlatformSettings):
    graph_url: str = "https://graph.facebook.com/v25.0"
    access_token: SecretField | None = None


class FakeInstagram(Platform):
    """A handle platform: strips @, lower-cases, validates the username."""

    name = "instagram"
    settings_model = InstagramSettings

    def normalize(self, account: str) -> str:
        value = account.strip().lstrip("@").lower()
        if not re.fullmatch(r"[a-z0-9._]{1,30}", value):
            raise ValueError(f"{account!r} is not an Instagram username (a-z, 0-9, '.', '_')")
        return value

    def url(self, account: str) -> str:
        return f"https://www.instagram.com/{account}/"


PLATFORMS: dict[str, Platform] = {"rss": FakeRss(), "instagram": FakeInstagram()}
ENV = {"PANTAU_TEST_META_TOKEN": "tok-full-fixture"}


def load(
    name: str, environ: dict[str, str] | None = None, platforms: dict[str, Platform] = PLATFORMS
) -> Config:
    """Load a valid fixture (with an empty environment unless given)."""
    return load_config(TESTDATA / name, platforms, {} if environ is None else environ)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def expectation(path: Path) -> tuple[str, str]:
    header = dict(
        line[2:].split(":", 1)
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(("# path:", "# problem:"))
    )
    return header["path"].strip(), header["problem"].strip()


INVALID = sorted(TESTDATA.glob("invalid-*.yml"))


def test_there_is_a_fixture_per_rule() -> None:
    """The invalid fixtures exist (a broken glob would make the parametrised test vacuous)."""
    assert len(INVALID) >= 40


@pytest.mark.parametrize("fixture", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_names_path_and_problem(fixture: Path) -> None:
    """Each invalid fixture fails with exactly one error at its declared path and problem."""
    path, phrase = expectation(fixture)
    with pytest.raises(ConfigError) as info:
        load_config(fixture, PLATFORMS, {})
    err = info.value
    assert err.errors == [(err.path, err.problem)]
    assert err.file == str(fixture)
    assert err.path == path
    assert phrase in err.problem
    expected = f"{fixture}: {path}: {err.problem}" if path else f"{fixture}: {err.problem}"
    assert str(err) == expected
    assert "input_value" not in str(err)
    assert "Value error" not in str(err)


def test_missing_file(tmp_path: Path) -> None:
    """A config file that does not exist is a ConfigError naming the file."""
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    assert info.value.path == ""
    assert str(info.value) == f"{path}: file not found"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    """A directory given as config is rejected with a clear message."""
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, PLATFORMS, {})


def test_several_problems_are_all_reported(tmp_path: Path) -> None:
    """All problems are collected, in file order, one per line of str()."""
    path = write(tmp_path, """
listen: nowhere
check: {interval: often}
agencies:
  - id: Bad Id
    name: Dinas
  - id: ok
    name: OK
    accounts:
      instagram: "not valid!"
      rss: [https://a.example/feed/, gopher://b.example/]
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    paths = [p for p, _ in info.value.errors]
    assert paths == [
        "listen",
        "check.interval",
        "agencies[0].id",
        "agencies[1].accounts.instagram",
        "agencies[1].accounts.rss[1]",
    ]
    lines = str(info.value).splitlines()
    assert len(lines) == 5
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert (info.value.path, info.value.problem) == info.value.errors[0]


def test_config_error_str_without_path() -> None:
    """ConfigError with no path reads FILE: PROBLEM; with a path FILE: PATH: PROBLEM."""
    assert str(ConfigError("a.yaml", "", "file not found")) == "a.yaml: file not found"
    err = ConfigError("a.yaml", "agencies[3].accounts.instagram", "bad handle")
    assert str(err) == "a.yaml: agencies[3].accounts.instagram: bad handle"
    assert (err.file, err.path, err.problem) == ("a.yaml", "agencies[3].accounts.instagram",
                                                 "bad handle")


def test_minimal_defaults() -> None:
    """A minimal config takes every documented default."""
    config = load("valid-minimal.yml")
    assert config.source == TESTDATA / "valid-minimal.yml"
    assert config.listen == DEFAULT_LISTEN == "127.0.0.1:9864"
    assert (config.listen_host, config.listen_port) == ("127.0.0.1", 9864)
    assert config.state == Path("pantau.db")
    assert config.check == CheckSettings()
    assert (config.check.interval, config.check.timeout, config.check.concurrency) == (
        1800.0, 20.0, 16)
    assert config.silence_after == 7 * DAY
    assert config.retention == 90 * DAY
    assert config.expect == []
    assert config.missing == []
    assert config.agencies == [AgencyInfo("dinsos", "Dinas Sosial", "")]
    (account,) = config.accounts
    assert account.key == ("dinsos", "rss", "https://dinsos.example.go.id/feed/")
    assert (account.interval, account.timeout, account.silence_after) == (1800.0, 20.0, 7 * DAY)


def test_every_loaded_platform_has_settings() -> None:
    """platforms holds an entry for every loaded platform, with that platform's model."""
    config = load("valid-minimal.yml")
    assert set(config.platforms) == {"rss", "instagram"}
    assert isinstance(config.platforms["instagram"], InstagramSettings)
    assert config.platforms["instagram"].access_token is None
    assert type(config.platforms["rss"]) is PlatformSettings


def test_state_directory_from_environ() -> None:
    """Without state:, $STATE_DIRECTORY (first entry if several) holds pantau.db."""
    config = load("valid-minimal.yml", {"STATE_DIRECTORY": "/var/lib/pantau:/var/lib/other"})
    assert config.state == Path("/var/lib/pantau/pantau.db")


def test_state_in_file_beats_state_directory() -> None:
    """An explicit state: wins over $STATE_DIRECTORY."""
    config = load("valid-full.yml", {**ENV, "STATE_DIRECTORY": "/var/lib/pantau"})
    assert config.state == Path("/var/lib/pantau-test/state.db")


def test_full_config() -> None:
    """Every section is read: listen, check, durations, expect, platform settings, accounts."""
    config = load("valid-full.yml", ENV)
    assert config.listen == "[::1]:9999"
    assert (config.listen_host, config.listen_port) == ("::1", 9999)
    assert config.check == CheckSettings(interval=5400, timeout=45, concurrency=32)
    assert config.silence_after == 10 * DAY
    assert config.retention == 30 * DAY
    assert config.expect == ["instagram", "rss"]
    instagram = config.platforms["instagram"]
    assert isinstance(instagram, InstagramSettings)
    assert instagram.graph_url == "http://127.0.0.1:1/graph"
    assert instagram.access_token is not None
    assert instagram.access_token.get() == "tok-full-fixture"
    assert instagram.concurrency == 2
    assert config.platforms["rss"].user_agent == "pantau-test"
    assert config.agencies == [
        AgencyInfo("dinsos", "Dinas Sosial Kota Cilegon", "dinas"),
        AgencyInfo("kel-deringo", "Kelurahan Deringo", "kelurahan"),
    ]
    by_account = {a.account: a for a in config.accounts}
    assert list(by_account) == [
        "dinsos.cilegon",
        "https://dinsos.example.go.id/feed/",
        "https://dinsos.example.go.id/berita/feed/",
        "https://kel-deringo.example.go.id/feed/",
    ]
    assert by_account["dinsos.cilegon"].url == "https://www.instagram.com/dinsos.cilegon/"
    assert by_account["https://dinsos.example.go.id/berita/feed/"].interval == 6 * 3600
    assert by_account["https://dinsos.example.go.id/feed/"].interval == 5400
    assert config.missing == [("kel-deringo", "instagram")]


PRECEDENCE = [
    # (agency, platform, account): (interval, timeout, silence_after), with the level each wins at
    (("plain", "rss", "https://plain.example.go.id/feed/"), (1800, 20, 7 * DAY)),  # global
    (("plain", "instagram", "plain.agency"), (7200, 40, 3 * DAY)),  # platform > global
    (("tuned", "rss", "https://tuned.example.go.id/feed/"), (3600, 15, 14 * DAY)),  # agency
    (("tuned", "instagram", "tuned.agency"), (3600, 15, 14 * DAY)),  # agency > platform
    (("tuned", "instagram", "tuned.special"), (600, 5, 1 * DAY)),  # account > agency
    (("mixed", "instagram", "mixed.agency"), (7200, 60, 30 * DAY)),  # one field from each level
]


@pytest.mark.parametrize(("key", "effective"), PRECEDENCE, ids=lambda v: "/".join(map(str, v)))
def test_precedence(key: tuple[str, str, str], effective: tuple[float, float, float]) -> None:
    """Effective settings follow account > agency > platform > global, field by field."""
    config = load("valid-precedence.yml")
    accounts = {a.key: a for a in config.accounts}
    account = accounts[key]
    assert (account.interval, account.timeout, account.silence_after) == effective


def test_precedence_covers_every_account() -> None:
    """The precedence table checks every account of its fixture."""
    config = load("valid-precedence.yml")
    assert sorted(a.key for a in config.accounts) == sorted(key for key, _ in PRECEDENCE)


def test_agencies_without_accounts_are_missing() -> None:
    """Null, empty, absent and empty-list accounts all count as missing for expected platforms."""
    with capture_logs() as logs:
        config = load("valid-empty-accounts.yml")
    assert [a.id for a in config.agencies] == [
        "kel-cibeber", "kel-bagendung", "kel-deringo", "diskominfo"]
    assert config.missing == [
        ("kel-cibeber", "instagram"), ("kel-cibeber", "rss"), ("kel-cibeber", "tiktok"),
        ("kel-bagendung", "instagram"), ("kel-bagendung", "rss"), ("kel-bagendung", "tiktok"),
        ("kel-deringo", "instagram"), ("kel-deringo", "rss"), ("kel-deringo", "tiktok"),
        ("diskominfo", "instagram"), ("diskominfo", "tiktok"),
    ]
    notes = [e for e in logs if "no plugin" in e["event"]]
    assert [n["platform"] for n in notes] == ["tiktok"]
    assert notes[0]["log_level"] == "info"  # validate reports it; runs need not shout


def test_commented_out_sections_take_defaults(tmp_path: Path) -> None:
    """Sections whose lines are all commented out (null) take their defaults."""
    path = write(tmp_path, """
check:
  # interval: 1h
expect:
platforms:
  # instagram: {}
agencies:
  - id: dinsos
    name: Dinas Sosial
    interval:
    accounts:
      rss: {id: https://a.example/feed/, timeout: null}
""")
    config = load_config(path, PLATFORMS, {})
    assert config.check == CheckSettings()
    assert config.expect == []
    assert isinstance(config.platforms["instagram"], InstagramSettings)
    (account,) = config.accounts
    assert (account.interval, account.timeout) == (1800.0, 20.0)


def test_concurrency_must_be_an_integer(tmp_path: Path) -> None:
    """check.concurrency: true is not silently taken as 1."""
    path = write(tmp_path, "check: {concurrency: true}\nagencies: [{id: a, name: A}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    assert info.value.errors == [("check.concurrency", "Input should be a valid integer")]


@pytest.mark.parametrize(("written", "workers", "count"), [
    (None, "auto", None), ("auto", "auto", None), ("Auto", "auto", None),
    ("0", 0, 0), ("3", 3, 3), ("256", 256, 256),
])
def test_check_workers(tmp_path: Path, written: str | None, workers: int | str,
                       count: int | None) -> None:
    """check.workers: a number of processes (0: threads) or auto, the CPUs capped at 4."""
    check = f"check: {{workers: {written}}}\n" if written is not None else ""
    config = load_config(write(tmp_path, check + "agencies: [{id: a, name: A}]\n"), PLATFORMS, {})
    assert config.check.workers == workers
    if count is None:
        assert 1 <= config.check.worker_count <= 4
        assert config.check.worker_count <= (os.cpu_count() or 1)
    else:
        assert config.check.worker_count == count


@pytest.mark.parametrize("written", ["-1", "257", "2.5", "true", "'4'", "many", "null"])
def test_check_workers_rejects(tmp_path: Path, written: str) -> None:
    """Anything but auto or a whole number from 0 to 256 names the field (exit 78 in the CLI)."""
    path = write(tmp_path, f"check: {{workers: {written}}}\nagencies: [{{id: a, name: A}}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    assert [p for p, _ in info.value.errors] == ["check.workers"]
    assert info.value.problem.startswith("must be auto or a whole number of worker processes")


def test_yaml_is_read_with_libyaml_and_reports_errors_as_pyyaml_does(tmp_path: Path) -> None:
    """libyaml's parser reads the file when PyYAML has it; a syntax error is still worded by
    PyYAML's own parser (libyaml words them differently), at the same line and column."""
    from monitor import config as module

    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    assert module._CLoader is not None and issubclass(module._CLoader, yaml.CSafeLoader)
    text = (TESTDATA / "valid-full.yml").read_text(encoding="utf-8")
    assert module._parse_yaml(text) == yaml.load(text, Loader=module._Loader)  # noqa: S506
    with pytest.raises(ConfigError) as info:
        load_config(TESTDATA / "invalid-yaml-syntax.yml", PLATFORMS, {})
    assert info.value.problem == ("invalid YAML at line 8, column 4: expected <block end>, "
                                  "but found '<block mapping start>'")
    path = write(tmp_path, "agencies:\n  - id: a\n    name: A\n    id: b\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, PLATFORMS, {})
    assert info.value.problem == ("invalid YAML at line 4, column 5: duplicate key 'id' "
                                  "(first at line 2)")


def test_numeric_account_is_text(tmp_path: Path) -> None:
    """A YAML number as account (numeric page ids) is taken as its text."""
    path = write(tmp_path, """
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts:
      instagram: [12345, {id: 678}]
""")
    config = load_config(path, PLATFORMS, {})
    assert [a.account for a in config.accounts] == ["12345", "678"]


def test_plugin_bug_in_normalize_is_a_config_error(tmp_path: Path) -> None:
    """A normalize() that raises something other than ValueError is reported, not propagated."""

    class Broken(Platform):
        name = "broken"

        def normalize(self, account: str) -> str:
            raise KeyError(account)

    path = write(tmp_path, """
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts: {broken: secret-looking-value}
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"broken": Broken()}, {})
    assert info.value.path == "agencies[0].accounts.broken"
    assert "platform broken failed to check the account (KeyError)" in info.value.problem


class NeedsKeySettings(PlatformSettings):
    api_key: SecretField


class NeedsKey(Platform):
    name = "needskey"
    settings_model = NeedsKeySettings


def test_required_setting_only_matters_when_platform_is_used(tmp_path: Path) -> None:
    """A platform with a required setting loads unconfigured if unused; used, it is an error."""
    platforms = {**PLATFORMS, "needskey": NeedsKey()}
    config = load("valid-minimal.yml", platforms=platforms)
    assert "needskey" in config.platforms
    path = write(tmp_path, """
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts: {needskey: some-account}
""")
    with pytest.raises(ConfigError) as info:
        load_config(path, platforms, {})
    assert info.value.errors == [("platforms.needskey.api_key", "required but missing")]


def test_no_platforms_installed(tmp_path: Path) -> None:
    """With no plugin at all, an account names that fact; agencies without accounts still load."""
    path = write(tmp_path, """
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts: {rss: https://a.example/feed/}
""")
    with pytest.raises(ConfigError, match="no platform plugins are installed"):
        load_config(path, {}, {})
    path.write_text("agencies: [{id: dinsos, name: Dinas Sosial}]\n")
    assert load_config(path, {}, {}).agencies == [AgencyInfo("dinsos", "Dinas Sosial", "")]


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9864", ("127.0.0.1", 9864)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:9864", ("localhost", 9864)),
    ("[::1]:9864", ("::1", 9864)),
    ("[::]:65535", ("::", 65535)),
])
def test_parse_listen_accepts(text: str, expected: tuple[str, int]) -> None:
    """host:port, hostnames and bracketed IPv6 are accepted and split."""
    assert parse_listen(text) == expected


@pytest.mark.parametrize(("text", "phrase"), [
    ("127.0.0.1", "missing port"),
    (":9864", "missing host"),
    ("::1:9864", "in brackets"),
    ("[::1]9864", "expected [IPv6]:port"),
    ("[1.2.3.4]:9864", "not an IPv6 address"),
    ("127.0.0.1:99999", "to 65535"),
    ("127.0.0.1:http", "to 65535"),
    ("bad host:9864", "invalid host"),
])
def test_parse_listen_rejects(text: str, phrase: str) -> None:
    """Malformed listen addresses are rejected with a specific reason."""
    with pytest.raises(ValueError, match=re.escape(phrase)):
        parse_listen(text)


# --- the example configs -------------------------------------------------------------------

CILEGON_AGENCIES = {
    "dinsos": "dinas", "satpolpp": "dinas", "dputr": "dinas", "disdukcapil": "dinas",
    "bkpsdm": "badan", "diskominfo": "dinas",
    "kel-cibeber": "kelurahan", "kel-karangasem": "kelurahan", "kel-bagendung": "kelurahan",
    "kel-deringo": "kelurahan", "kel-kebonsari": "kelurahan",
}


def test_cilegon_example_loads_with_only_rss() -> None:
    """config/cilegon.yaml loads with only rss and no environment, with 11 agencies."""
    config = load_config(REPO / "config" / "cilegon.yaml", {"rss": FakeRss()}, {})
    assert {a.id: a.group for a in config.agencies} == CILEGON_AGENCIES
    assert config.expect == ["instagram", "facebook", "youtube", "website"]
    assert [a.key for a in config.accounts] == [
        ("diskominfo", "rss", "https://cilegon.go.id/feed/")]
    assert config.missing == [
        (agency, platform) for agency in CILEGON_AGENCIES for platform in config.expect
    ]


def test_cilegon_example_marks_every_handle_as_placeholder() -> None:
    """Every commented-out social account line carries the PLACEHOLDER marker."""
    text = (REPO / "config" / "cilegon.yaml").read_text(encoding="utf-8")
    handles = [line for line in text.splitlines()
               if re.match(r"\s*#\s*(instagram|facebook|youtube):\s*\"", line)]
    assert len(handles) >= 11
    assert all("PLACEHOLDER: replace with the real handle" in line for line in handles)
    assert "assumed WordPress feed path; verify" in text


def test_minimal_example_loads() -> None:
    """config/minimal.yaml loads: one agency, one rss feed, all defaults."""
    config = load_config(REPO / "config" / "minimal.yaml", {"rss": FakeRss()}, {})
    assert len(config.agencies) == 1
    assert [(a.platform, a.interval) for a in config.accounts] == [("rss", 1800.0)]

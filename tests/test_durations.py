"""Tests for durations (monitor.durations) as operators write them in the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.config import CheckSettings, ConfigError, load_config
from monitor.durations import format_duration, parse_duration

GOOD = [
    ("90s", 90.0),
    ("15m", 900.0),
    ("2h", 7200.0),
    ("7d", 604800.0),
    ("1h30m", 5400.0),
    ("1w", 604800.0),
    (" 2H ", 7200.0),
    ("0.5h", 1800.0),
    (45, 45.0),
    (2.5, 2.5),
]
BAD = [
    ("", "use a number with a unit"),
    ("7 days", "use a number with a unit"),
    ("-5m", "use a number with a unit"),
    ("0s", "must be greater than zero"),
    (0, "must be greater than zero"),
    (True, "use a number with a unit"),
    ("15", "use a number with a unit"),
    ("m", "use a number with a unit"),
    (None, "use a number with a unit"),
]


@pytest.mark.parametrize(("text", "seconds"), GOOD, ids=repr)
def test_parse_duration_accepts(text: object, seconds: float) -> None:
    """The documented forms (and combinations, and bare numbers) give seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "phrase"), BAD, ids=repr)
def test_parse_duration_rejects(text: object, phrase: str) -> None:
    """Empty, worded, negative, zero, unit-less and boolean durations are rejected."""
    with pytest.raises(ValueError, match=phrase):
        parse_duration(text)


@pytest.mark.parametrize(("seconds", "text"), [
    (604800, "7d"), (86400 * 3, "3d"), (7200, "2h"), (5400, "90m"), (90, "90s"), (1.5, "1.5s"),
])
def test_format_duration_is_exact_and_short(seconds: float, text: str) -> None:
    """format_duration gives the shortest exact form, and it parses back to the same value."""
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_check_settings_take_durations() -> None:
    """CheckSettings parses its durations and keeps the documented defaults."""
    assert CheckSettings(interval="1h30m", timeout="90s").interval == 5400.0
    assert CheckSettings(interval="1h30m", timeout="90s").timeout == 90.0
    assert (CheckSettings().interval, CheckSettings().timeout) == (1800.0, 20.0)


def yaml_value(value: object) -> str:
    """``value`` as YAML (JSON is YAML): strings quoted, true, null, numbers."""
    return json.dumps(value)


@pytest.mark.parametrize(("text", "seconds"), GOOD, ids=repr)
def test_durations_in_config(tmp_path: Path, text: object, seconds: float) -> None:
    """A duration written in the config reaches the account's effective settings."""
    path = tmp_path / "pantau.yaml"
    path.write_text(f"agencies:\n  - id: a\n    name: A\n    accounts: {{}}\n"
                    f"silence_after: {yaml_value(text)}\n")
    assert load_config(path, {}, {}).silence_after == seconds


@pytest.mark.parametrize(("text", "phrase"), BAD, ids=repr)
def test_bad_durations_in_config_name_the_field(tmp_path: Path, text: object, phrase: str) -> None:
    """A bad duration is a ConfigError at the field's path, without pydantic's prefixes."""
    path = tmp_path / "pantau.yaml"
    path.write_text(f"check:\n  timeout: {yaml_value(text)}\n"
                    "agencies: [{id: a, name: A}]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert info.value.path == "check.timeout"
    assert phrase in info.value.problem
    assert not info.value.problem.startswith("Value error")

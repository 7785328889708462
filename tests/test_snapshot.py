"""The start snapshot: finding the state path without parsing, validity, atomic writes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from monitor import snapshot
from monitor.snapshot import find, snapshot_path, state_path, write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("listen: 127.0.0.1:1\nstate: /var/lib/pantau/p.db\n", "/var/lib/pantau/p.db"),
        ("state: ./pantau.db   # the store\n", "pantau.db"),
        ("state: 'with space.db'\n", "with space.db"),
        ('state: "x.db"\nagencies: []\n', "x.db"),
        ("agencies:\n  - id: a\n    state: nested.db\n", "pantau.db"),  # not top-level
        ("listen: 127.0.0.1:1\n", "pantau.db"),
    ],
)
def test_state_path_from_plain_top_level_key(text: str, expected: str) -> None:
    assert state_path(text, {}) == Path(expected)


def test_state_path_default_under_systemd() -> None:
    assert state_path("listen: 127.0.0.1:1\n", {"STATE_DIRECTORY": "/var/lib/p:/x"}) == Path(
        "/var/lib/p/pantau.db"
    )


@pytest.mark.parametrize(
    "text",
    [
        "state: a.db\nstate: b.db\n",  # duplicate: the config parser will refuse it
        "state: &anchor a.db\n",
        "state: *alias\n",
        "state: !!str a.db\n",
        "state: |\n  a.db\n",
        "state: 'it''s.db'\n",
        'state: "a\\tb.db"\n',
        "state: {file: x}\n",
        "state:\n",
        "state: null\n",
        "state: ~\n",
    ],
)
def test_state_path_gives_up_on_anything_unusual(text: str) -> None:
    assert state_path(text, {}) is None


def _setup(tmp_path: Path, generation: int | None) -> tuple[Path, Path]:
    config = tmp_path / "pantau.yaml"
    state = tmp_path / "pantau.db"
    config.write_text(f"listen: 127.0.0.1:0\nstate: {state}\nagencies: []\n")
    if generation is not None:
        write(state, generation=generation, config_text=config.read_bytes(),
              listen_host="127.0.0.1", listen_port=9999,
              gzip_body=gzip.compress(b"pantau_build_info 1.0\n"))
    return config, state


def test_find_returns_a_snapshot_that_matches_config_and_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, state = _setup(tmp_path, 7)
    monkeypatch.setattr("monitor.store.read_generation", lambda path: 7 if path == state else None)
    found = find(config, {})
    assert found is not None
    assert (found.listen_host, found.listen_port, found.generation) == ("127.0.0.1", 9999, 7)
    assert found.raw() == b"pantau_build_info 1.0\n"


def test_find_refuses_a_stale_store_generation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = _setup(tmp_path, 7)
    monkeypatch.setattr("monitor.store.read_generation", lambda path: 8)
    assert find(config, {}) is None
    monkeypatch.setattr("monitor.store.read_generation", lambda path: None)
    assert find(config, {}) is None


def test_find_refuses_a_changed_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config, _ = _setup(tmp_path, 7)
    monkeypatch.setattr("monitor.store.read_generation", lambda path: 7)
    config.write_text(config.read_text() + "# edited\n")
    assert find(config, {}) is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"something else\n" + data,
        lambda data: data[: len(snapshot.MAGIC) + 5],  # header cut
        lambda data: data.replace(b'"generation"', b'"generaton"'),
        lambda data: data[:-40] + b"not gzip",
        lambda data: data.split(b"\n", 2)[0] + b"\n" + data.split(b"\n", 2)[1] + b"\nXX",
    ],
)
def test_find_refuses_a_damaged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage
) -> None:
    config, state = _setup(tmp_path, 7)
    monkeypatch.setattr("monitor.store.read_generation", lambda path: 7)
    path = snapshot_path(state)
    path.write_bytes(damage(path.read_bytes()))
    assert find(config, {}) is None


def test_find_without_snapshot_or_config(tmp_path: Path) -> None:
    config, _ = _setup(tmp_path, None)
    assert find(config, {}) is None
    assert find(tmp_path / "missing.yaml", {}) is None


def test_write_is_atomic_and_leaves_no_temporary(tmp_path: Path) -> None:
    _, state = _setup(tmp_path, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pantau.db.snapshot", "pantau.yaml",
    ]

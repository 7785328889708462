"""The last exposition, kept next to the store, so that a restart serves stored values at once.

With 100,000 accounts, parsing the config and loading the store take seconds. At a clean
stop the daemon writes the core metrics (the per-account series, ``account_missing``,
``agency_info``, ``build_info``; not the counters and histograms, which restart at zero) as
one gzip member to ``<state>.snapshot``, headed by the store's generation, the config's
SHA-256 and the listen address. At start, before the config is parsed, :func:`find` locates
the state file with a line scan of the config's top-level ``state:`` key and returns the
snapshot only if the config is byte-identical and the store's generation is the one the
snapshot was taken at: a check committed since (another ``pantau check``, a crash after new
commits) makes it stale, and then the daemon starts the slow way. The snapshot is served on
``/metrics`` until the live render takes over; ``/readyz`` answers 503 meanwhile.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from monitor.config import resolve_state_path

__all__ = ["MAGIC", "Snapshot", "config_digest", "discard", "find", "snapshot_path", "state_path",
           "write"]

log = structlog.get_logger("pantau.snapshot")

MAGIC = b"pantau-snapshot 1\n"
_MAX_HEADER = 4096
_TOP_STATE = re.compile(r"^state[ \t]*:(.*)$", re.MULTILINE)
_PLAIN = re.compile(r"[^\s#'\"{}\[\]&*!|>%@`,][^#]*")


@dataclass(frozen=True)
class Snapshot:
    """A snapshot read back: where to listen and what to serve (gzip-compressed)."""

    listen_host: str
    listen_port: int
    generation: int
    gzip_body: bytes

    def raw(self) -> bytes:
        """The exposition uncompressed (for a client that does not accept gzip)."""
        return gzip.decompress(self.gzip_body)


def snapshot_path(state: Path) -> Path:
    """``/var/lib/pantau/pantau.db`` -> ``/var/lib/pantau/pantau.db.snapshot``."""
    return state.with_name(state.name + ".snapshot")


def config_digest(text: bytes) -> str:
    return hashlib.sha256(text).hexdigest()


def state_path(config_text: str, environ: Mapping[str, str]) -> Path | None:
    """The state path the config names, read without parsing the YAML: a top-level
    ``state:`` with a plain or simply quoted value, or the default when there is none.
    ``None`` when the file is anything less simple (the caller then parses it properly)."""
    found = _TOP_STATE.findall(config_text)
    if len(found) > 1:
        return None
    if not found:
        return resolve_state_path(None, environ)
    value = found[0].strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if "\\" in inner or value[0] in inner:
            return None
        value = inner
    else:
        value = re.sub(r"\s+#.*$", "", value)
        if not _PLAIN.fullmatch(value):
            return None
    value = value.strip()
    if not value or value in ("null", "~", "Null", "NULL"):
        return None
    return resolve_state_path(value, environ)


def write(state: Path, *, generation: int, config_text: bytes, listen_host: str,
          listen_port: int, gzip_body: bytes) -> Path:
    """Write the snapshot atomically (temporary file, fsync, rename). Returns its path."""
    path = snapshot_path(state)
    header = json.dumps({
        "generation": generation,
        "config_sha256": config_digest(config_text),
        "listen_host": listen_host,
        "listen_port": listen_port,
        "body_sha256": hashlib.sha256(gzip_body).hexdigest(),
    }, sort_keys=True).encode()
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(MAGIC + header + b"\n" + gzip_body)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def discard(state: Path) -> None:
    """Remove the snapshot (it would be stale). Never raises: at worst the generation check
    refuses the file at the next start."""
    try:
        snapshot_path(state).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("stale snapshot not removed", error=str(exc))


def find(config_path: Path, environ: Mapping[str, str]) -> Snapshot | None:
    """The snapshot to serve while starting, or ``None`` (not there, stale, unreadable)."""
    try:
        config_text = config_path.read_bytes()
        state = state_path(config_text.decode("utf-8"), environ)
        if state is None:
            return None
        data = snapshot_path(state).read_bytes()
    except (OSError, UnicodeDecodeError):
        return None
    if not data.startswith(MAGIC):
        return None
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if end < 0:
        return None
    try:
        header = json.loads(data[len(MAGIC):end])
        generation = int(header["generation"])
        host = str(header["listen_host"])
        port = int(header["listen_port"])
        digest = str(header["config_sha256"])
        body_digest = str(header["body_sha256"])
    except (ValueError, KeyError, TypeError):
        return None
    if digest != config_digest(config_text):
        log.info("snapshot not used: the config changed since it was written")
        return None
    from monitor.store import read_generation  # the store's own reader, read-only

    current = read_generation(state)
    if current != generation:
        log.info("snapshot not used: the store changed since it was written",
                 snapshot=generation, store=current)
        return None
    body = data[end + 1:]
    if hashlib.sha256(body).hexdigest() != body_digest:
        log.warning("snapshot not used: damaged")
        return None
    return Snapshot(host, port, generation, body)

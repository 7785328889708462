"""Secret references: ``{env: NAME}``, ``{file: PATH}`` or ``{credential: NAME}``.

A secret is never written in the config text. A field typed :data:`SecretField` accepts
only a reference, resolves it while the config is validated, and holds a :class:`Secret`
whose ``repr`` and ``str`` never show the value. A literal string is rejected with a
message that says how to pass it instead.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["Secret", "SecretField", "resolve_secret", "world_readable_warnings"]

#: Paths of secret files that other users can read; the CLI warns about each (not fatal).
world_readable_warnings: list[str] = []

_HOW = (
    "secrets are never written in the config: use {env: NAME} (an environment variable), "
    "{file: /path/to/file} or {credential: NAME} (systemd LoadCredential=)"
)


class Secret:
    """A resolved secret. ``get()`` returns the value; nothing else ever shows it."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # e.g. "env PANTAU_META_TOKEN": safe to log

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<from {self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            resolve_secret,
            serialization=core_schema.plain_serializer_function_ser_schema(repr),
        )


def resolve_secret(value: Any, environ: os._Environ[str] | dict[str, str] | None = None) -> Secret:
    """Resolve a secret reference. Raises ``ValueError`` with an operator-facing message."""
    if isinstance(value, Secret):
        return value
    env = os.environ if environ is None else environ
    if isinstance(value, str | int | float):
        raise ValueError(f"a literal secret is not allowed here; {_HOW}")
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"expected exactly one of env, file or credential; {_HOW}")
    (kind, ref), = value.items()
    if not isinstance(ref, str) or not ref:
        raise ValueError(f"{kind}: expected a non-empty string")
    if kind == "env":
        if ref not in env:
            raise ValueError(f"environment variable {ref} is not set")
        secret = env[ref].strip()
        if not secret:
            raise ValueError(f"environment variable {ref} is empty")
        return Secret(secret, f"env {ref}")
    if kind == "file":
        return Secret(_read_file(Path(ref)), f"file {ref}")
    if kind == "credential":
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ValueError(
                f"credential {ref}: $CREDENTIALS_DIRECTORY is not set "
                "(credentials are available when running under systemd with LoadCredential=)"
            )
        if "/" in ref:
            raise ValueError(f"credential {ref}: a credential name cannot contain '/'")
        return Secret(_read_file(Path(directory) / ref), f"credential {ref}")
    raise ValueError(f"unknown secret source {kind!r}; {_HOW}")


def _read_file(path: Path) -> str:
    try:
        data = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ValueError(f"secret file {path} does not exist") from None
    except PermissionError:
        raise ValueError(f"secret file {path} is not readable by this user") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"secret file {path} cannot be read: {type(exc).__name__}") from None
    if not data:
        raise ValueError(f"secret file {path} is empty")
    if mode & stat.S_IROTH:
        world_readable_warnings.append(str(path))
    return data


#: The pydantic field type for secrets: accepts only a reference, holds a :class:`Secret`.
SecretField = Secret

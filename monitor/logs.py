"""Logging: structlog to stderr, JSON lines when stderr is not a TTY, console when it is.

Standard-library loggers (aiohttp, asyncio) go through the same renderer. A processor scrubs
every known secret value from every event, and the rendered line is scrubbed again (tracebacks
as the console draws them, values of any type), so that a token that slipped into an exception
message (a URL with ``access_token=``) never reaches a log line.
"""

from __future__ import annotations

import html
import json as jsonlib
import logging
import re
import string
import sys
from collections.abc import Callable, Iterable
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "register_secrets", "scrub"]

_SECRETS: set[str] = set()
_PATTERN: re.Pattern[str] | None = None
_MASK = "***"
#: Characters that stay as they are in URLs and JSON: matched literally.
_PLAIN = frozenset(string.ascii_letters + string.digits + "-._~")


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that :func:`scrub` removes them from text and logs.

    A secret is also found in the forms a URL, JSON or HTML gives it, however mixed: each
    character other than ``A-Z a-z 0-9 - . _ ~`` may appear as is, percent-encoded (``|`` as
    ``%7C``; a Meta app token ``1234|abc`` sits in a query string as ``1234%7Cabc``),
    JSON-escaped or HTML-escaped, and ``+`` and space stand for each other.
    """
    global _PATTERN
    fresh = {value for value in values if value and len(value) >= 4} - _SECRETS
    if not fresh:
        return
    _SECRETS.update(fresh)
    ordered = sorted(_SECRETS, key=len, reverse=True)  # a secret containing another: whole
    _PATTERN = re.compile("|".join(_pattern(secret) for secret in ordered))


def _pattern(secret: str) -> str:
    parts = []
    for char in secret:
        if char in _PLAIN:
            parts.append(re.escape(char))
            continue
        encoded = "".join(f"%{byte:02X}" for byte in char.encode())
        forms = {char, encoded, encoded.lower(), jsonlib.dumps(char)[1:-1], html.escape(char)}
        if char == "/":
            forms.add("\\/")
        if char in "+ ":
            forms.update({"+", " ", "%20", "%2B", "%2b"})
        parts.append("(?:" + "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
                     + ")")
    return "".join(parts)


def scrub(text: str) -> str:
    """``text`` with every registered secret value (in any of its forms) replaced by ``***``."""
    if _PATTERN is None:
        return text
    return _PATTERN.sub(_MASK, text)


def _scrub_event(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    if not _SECRETS:
        return event
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
        elif isinstance(value, BaseException | list | tuple | dict):
            event[key] = scrub(repr(value) if not isinstance(value, BaseException) else str(value))
    return event


def _scrubbing(renderer: Callable[..., Any]) -> Callable[..., Any]:
    """``renderer`` whose output line is scrubbed: whatever a value was (an exception and its
    traceback as the console renderer draws it, a URL object, a nested structure), the secret
    never reaches the stream."""

    def render(logger: Any, name: str, event: dict[str, Any]) -> Any:
        line = renderer(logger, name, event)
        return scrub(line) if isinstance(line, str) else line

    return render


def configure_logging(
    level: str = "info", stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configure structlog and the standard library to write to ``stream`` (stderr)."""
    stream = stream or sys.stderr
    if json is None:
        json = not stream.isatty()
    numeric = logging.getLevelNamesMapping()[level.upper()]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info if json else structlog.processors.StackInfoRenderer(),
        _scrub_event,
    ]
    renderer: Any = _scrubbing(
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access log is noise at info level; keep it for debug.
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))
    # Libraries that log at error level about any odd page they are given (htmldate on a
    # hostile page): a failed check already says what went wrong.
    for noisy in ("htmldate", "charset_normalizer", "dateparser"):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if numeric <= logging.DEBUG else logging.CRITICAL
        )

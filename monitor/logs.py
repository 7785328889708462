"""Logging: structlog to stderr, JSON lines when stderr is not a TTY, console when it is.

Standard-library loggers (aiohttp, asyncio) go through the same renderer. A last processor
scrubs every known secret value from every event, so that a token that slipped into an
exception message (a URL with ``access_token=``) never reaches a log line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "register_secrets", "scrub"]

_SECRETS: set[str] = set()
_MASK = "***"


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so that :func:`scrub` removes them from text and logs."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def _scrub_event(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    if not _SECRETS:
        return event
    for key, value in event.items():
        if isinstance(value, str):
            event[key] = scrub(value)
        elif isinstance(value, BaseException | list | tuple | dict):
            event[key] = scrub(repr(value) if not isinstance(value, BaseException) else str(value))
    return event


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
    renderer: Any = (
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

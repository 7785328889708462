"""Shared test setup: every test starts with structlog's defaults and the root logger as found.

The CLI's configure_logging() changes process-wide logging; without this, a test that runs
`main()` would silence the log capture of every later test.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _isolated_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    structlog.reset_defaults()
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)

"""Durations as operators write them: ``90s``, ``15m``, ``2h``, ``7d`` (and ``1w``).

A bare number is seconds. Combined forms such as ``1h30m`` are accepted. Zero and negative
durations are rejected: every duration in pantau is an interval, a timeout or a threshold.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["Duration", "format_duration", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_FORMS = "use a number with a unit, e.g. 90s, 15m, 2h, 7d"
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(value: Any) -> float:
    """Seconds for ``value`` (``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1h30m"`` or a number).

    Raises ``ValueError`` with a message that shows the accepted forms.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: {_FORMS}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if not _WHOLE.fullmatch(text):
            raise ValueError(f"invalid duration {value!r}: {_FORMS}")
        seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    else:
        raise ValueError(f"invalid duration {value!r}: {_FORMS}")
    if seconds <= 0:
        raise ValueError(f"invalid duration {value!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact form: 604800 -> ``7d``, 5400 -> ``90m``, 90 -> ``90s``."""
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


#: A pydantic field type: accepts the forms above, holds seconds as a float.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]

"""Dates as Indonesian feeds and pages write them, read into aware UTC datetimes.

feedparser reads only English month names, turns ``WIB``/``WITA``/``WIT`` into +0000 and a
date without a zone into UTC: a 7-hour error for Cilegon. :func:`parse_date` reads

- RFC 822/2822 and their loose variants, with English or Indonesian day and month names
  (``Sen, 20 Mei 2024 10:00:00 WIB``, ``17 Agustus 2025 08:00 WIB``, ``May 20, 2024 10:00 AM``);
- ISO 8601 / RFC 3339 (``2024-10-02T09:00:00Z``, ``+07:00``, ``+0700`` or no zone; also
  week dates ``2024-W40-3`` and ordinal dates ``2024-276``, which feedparser gets wrong);
- zones ``WIB`` (+07:00), ``WITA`` (+08:00), ``WIT`` (+09:00), ``GMT``/``UTC``/``Z``, the US
  names feedparser knows (``EST``, ``PDT``...), numeric offsets, ``GMT+7`` and IANA names.

A date without a zone is in ``default_tz`` (the source's zone), never silently UTC; a date
without a time is midnight there. Anything unreadable gives ``None``: the parser is strict
and never guesses from a partial match.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from monitor.durations import Duration
from monitor.platform import PlatformSettings

__all__ = ["MONTHS", "ZONES", "parse_date"]

#: Month names and abbreviations, English and Indonesian (with old spellings), lower-case.
MONTHS: dict[str, int] = {
    "jan": 1, "january": 1, "januari": 1,
    "feb": 2, "february": 2, "februari": 2, "peb": 2, "pebruari": 2,
    "mar": 3, "march": 3, "maret": 3,
    "apr": 4, "april": 4,
    "may": 5, "mei": 5,
    "jun": 6, "june": 6, "juni": 6,
    "jul": 7, "july": 7, "juli": 7,
    "aug": 8, "august": 8, "agu": 8, "agt": 8, "ags": 8, "agus": 8, "agustus": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "okt": 10, "oktober": 10,
    "nov": 11, "november": 11, "nop": 11, "nopember": 11,
    "dec": 12, "december": 12, "des": 12, "desember": 12,
}

_DAYS = frozenset({
    "mon", "monday", "tue", "tues", "tuesday", "wed", "wednesday", "thu", "thur", "thurs",
    "thursday", "fri", "friday", "sat", "saturday", "sun", "sunday",
    "sen", "senin", "sel", "selasa", "rab", "rabu", "kam", "kamis",
    "jum", "jumat", "jum'at", "jum\u2019at", "sab", "sabtu", "min", "minggu", "ahad",
})

#: Zone names, lower-case, as offsets in hours (feedparser's US names plus Indonesia's).
ZONES: dict[str, float] = {
    "z": 0, "ut": 0, "utc": 0, "gmt": 0,
    "wib": 7, "wita": 8, "wit": 9,
    "adt": -3, "ast": -4,
    "edt": -4, "est": -5, "et": -5,
    "cdt": -5, "cst": -6, "ct": -6,
    "mdt": -6, "mst": -7, "mt": -7,
    "pdt": -7, "pst": -8, "pt": -8,
    "met": 1, "mest": 2,
}

# Words that may sit between the parts of a date and carry no information.
_FILLERS = frozenset({"at", "pukul", "jam", "pkl", "-", "|", "/", "@"})

_OFFSET = r"[+-]\d{1,2}(?::?\d{2})?"
_ISO = re.compile(
    r"""(?:(?P<y>\d{4})-?(?P<mo>\d{2})-?(?P<d>\d{2})      # 2024-10-02, 20241002
          |(?P<wy>\d{4})-?W(?P<w>\d{2})-?(?P<wd>[1-7])   # 2024-W40-3 (week date)
          |(?P<oy>\d{4})-(?P<od>\d{3}))                  # 2024-276 (ordinal date)
        (?:[Tt\s]+(?P<h>\d{1,2}):?(?P<mi>\d{2})(?::?(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?
        \s*(?P<z>[Zz]|[+-]\d{2}(?::?\d{2})?|[A-Za-z][A-Za-z/_]*(?:[+-]\d{1,2}(?::?\d{2})?)?)?""",
    re.VERBOSE,
)
_TIME = re.compile(
    rf"(?P<h>\d{{1,2}})[:.](?P<mi>\d{{2}})(?::(?P<s>\d{{2}})(?:[.,]\d+)?)?(?P<z>[Zz]|{_OFFSET})?"
)
_ZONE_OFFSET = re.compile(rf"(?:gmt|utc|ut)?(?P<o>{_OFFSET})", re.IGNORECASE)
_DAY = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\.?")
# "20-Mei-2024" and "20/Mei/2024": split where a number meets a word.
_GLUE = re.compile(r"(?<=\d)[-/.](?=[A-Za-z])|(?<=[A-Za-z])[-/.](?=\d)")


def parse_date(text: str, default_tz: tzinfo) -> datetime | None:
    """The instant ``text`` names, aware and in UTC, or ``None`` when it cannot be read.

    ``default_tz`` is the zone of a date written without one (``Asia/Jakarta`` for most
    Indonesian sources); a date without a time is midnight in that zone.
    """
    if not isinstance(text, str):
        return None
    value = " ".join(text.split())
    if not value or len(value) > 200:
        return None
    try:
        found = _parse_iso(value, default_tz)
        if found is None:
            found = _parse_words(value, default_tz)
    except (ValueError, OverflowError):
        return None
    return None if found is None else found.astimezone(UTC)


def _parse_iso(value: str, default_tz: tzinfo) -> datetime | None:
    match = _ISO.fullmatch(value)
    if match is None:
        return None
    zone = _zone(match["z"], default_tz) if match["z"] else default_tz
    if zone is None:
        return None
    if match["y"]:
        day = date(int(match["y"]), int(match["mo"]), int(match["d"]))
    elif match["wy"]:
        day = date.fromisocalendar(int(match["wy"]), int(match["w"]), int(match["wd"]))
    else:
        day = date(int(match["oy"]), 1, 1) + timedelta(days=int(match["od"]) - 1)
        if day.year != int(match["oy"]) or match["od"] == "000":
            return None
    fraction = (match["f"] or "")[:6].ljust(6, "0")
    second = min(int(match["s"] or 0), 59)  # a leap second is read as :59
    return datetime(
        day.year, day.month, day.day,
        int(match["h"] or 0), int(match["mi"] or 0), second, int(fraction),
        tzinfo=zone,
    )


def _parse_words(value: str, default_tz: tzinfo) -> datetime | None:
    """RFC 822 and its loose relatives: every token must be understood, in any order."""
    tokens = _GLUE.sub(" ", value.replace(",", " ")).split()
    month = day = year = None
    clock: tuple[int, int, int] | None = None
    zone: tzinfo | None = None
    meridiem: str | None = None
    numbers: list[str] = []
    for token in tokens:
        word = token.lower().rstrip(".") or token
        if word in _DAYS or word in _FILLERS:
            continue
        if word in MONTHS and month is None:
            month = MONTHS[word]
        elif word in ("am", "pm", "a.m", "p.m") and meridiem is None:
            meridiem = word[0]
        elif (time_match := _TIME.fullmatch(token)) and clock is None:
            clock = (int(time_match["h"]), int(time_match["mi"]), int(time_match["s"] or 0))
            if time_match["z"]:
                if zone is not None:
                    return None
                zone = _zone(time_match["z"], default_tz)
        elif token.isdigit() and len(token) == 4:
            if year is not None:
                return None
            year = int(token)
        elif _DAY.fullmatch(token):
            numbers.append(_DAY.fullmatch(token).group(1))
        elif zone is None and (candidate := _zone(token, default_tz)) is not None:
            zone = candidate
        else:
            return None
    if month is None:
        return None
    # One number is the day; a second one, when the year is not 4 digits, is a 2-digit year.
    if year is None and len(numbers) == 2 and len(numbers[1]) == 2:
        two = int(numbers.pop())
        year = two + (2000 if two < 90 else 1900)
    if year is None or len(numbers) != 1:
        return None
    day = int(numbers[0])
    hour, minute, second = clock or (0, 0, 0)
    if meridiem is not None:
        if clock is None or not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if meridiem == "p" else 0)
    return datetime(year, month, day, hour, minute, min(second, 59), tzinfo=zone or default_tz)


def _zone(token: str, default_tz: tzinfo) -> tzinfo | None:
    """The zone a token names: a known name, a numeric offset, ``GMT+7``, or an IANA name."""
    name = token.lower()
    if name in ZONES:
        return timezone(timedelta(hours=ZONES[name]))
    match = _ZONE_OFFSET.fullmatch(token)
    if match is not None:
        return _offset(match["o"])
    if "/" in token and not token.startswith("/"):
        try:
            return ZoneInfo(token)
        except (ZoneInfoNotFoundError, ValueError):
            return None
    return None


def _offset(text: str) -> tzinfo | None:
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    if len(digits) <= 2:
        hours, minutes = int(digits), 0
    elif len(digits) in (3, 4):
        hours, minutes = int(digits[:-2]), int(digits[-2:])
    else:
        return None
    if hours > 14 or minutes >= 60:
        return None
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


class DatedSettings(PlatformSettings):
    """Settings of platforms that read dates written by people: how far in the future a date
    may be, and the zone of dates written without one."""

    future_skew: Duration = Field(
        default="1d",
        validate_default=True,
        description="posts dated further than this in the future are ignored",
    )
    default_timezone: str = Field(
        default="Asia/Jakarta", description="IANA zone of dates written without a zone"
    )

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}: use an IANA name such as Asia/Jakarta"
            ) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        """The default zone as a tzinfo."""
        return ZoneInfo(self.default_timezone)

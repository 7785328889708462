"""Tests for plugins.dates: English and Indonesian dates and zones read into exact UTC times."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from plugins.dates import parse_date

JAKARTA = ZoneInfo("Asia/Jakarta")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # RFC 822 with Indonesian day and month names and Indonesian zones
        ("Sen, 20 Mei 2024 10:00:00 WIB", utc(2024, 5, 20, 3, 0)),
        ("17 Agustus 2025 08:00 WIB", utc(2025, 8, 17, 1, 0)),
        ("Rab, 04 Des 2024 13:15:00 +0700", utc(2024, 12, 4, 6, 15)),
        ("Tue, 01 Oct 2024 10:00:00 WITA", utc(2024, 10, 1, 2, 0)),
        ("Tue, 01 Oct 2024 10:00:00 WIT", utc(2024, 10, 1, 1, 0)),
        ("Kamis, 3 Oktober 2024 19:30 WITA", utc(2024, 10, 3, 11, 30)),
        ("Jum'at, 16 Agu 2024 14:00:00 WIB", utc(2024, 8, 16, 7, 0)),
        ("Jumat, 16 Agt 2024 14:00:00 WIB", utc(2024, 8, 16, 7, 0)),
        ("Sabtu, 17 Ags 2024 07:00 WIB", utc(2024, 8, 17, 0, 0)),
        ("Minggu, 01 Des 2024 00:00:00 +0700", utc(2024, 11, 30, 17, 0)),
        ("Selasa, 12 Nopember 2024 09:00 WIB", utc(2024, 11, 12, 2, 0)),
        ("Rabu, 14 Pebruari 2024 09:00 WIB", utc(2024, 2, 14, 2, 0)),
        ("Sel, 05 Mar 2024 09:00:00 +0800", utc(2024, 3, 5, 1, 0)),
        ("12 Okt. 2024 10:00 WIB", utc(2024, 10, 12, 3, 0)),
        ("Senin, 20 Mei 2024 pukul 10.00 WIB", utc(2024, 5, 20, 3, 0)),
        ("20-Mei-2024 10:00", utc(2024, 5, 20, 3, 0)),
        # RFC 822 in English, with the zones feedparser knows
        ("Mon, 20 May 2024 10:00:00 GMT", utc(2024, 5, 20, 10, 0)),
        ("Mon, 20 May 2024 10:00:00 UTC", utc(2024, 5, 20, 10, 0)),
        ("Mon, 20 May 2024 10:00:00 +0000", utc(2024, 5, 20, 10, 0)),
        ("Mon, 20 May 2024 10:00:00 -0500", utc(2024, 5, 20, 15, 0)),
        ("Mon, 20 May 2024 10:00:00 EST", utc(2024, 5, 20, 15, 0)),
        ("Mon, 20 May 2024 10:00:00 PDT", utc(2024, 5, 20, 17, 0)),
        ("Mon, 20 May 24 10:00:00 GMT", utc(2024, 5, 20, 10, 0)),
        ("Mon, 20 May 2024 10:00 +07:00", utc(2024, 5, 20, 3, 0)),
        ("Mon, 20 May 2024 10:00:00 GMT+7", utc(2024, 5, 20, 3, 0)),
        ("20 May 2024 10:00:00 UTC+07:00", utc(2024, 5, 20, 3, 0)),
        ("May 20, 2024 10:00 PM", utc(2024, 5, 20, 15, 0)),
        ("May 20, 2024 12:05 AM WIB", utc(2024, 5, 19, 17, 5)),
        ("Monday, May 20th, 2024 at 10:00 UTC", utc(2024, 5, 20, 10, 0)),
        ("Mon May 20 10:00:00 2024", utc(2024, 5, 20, 3, 0)),
        ("  Mon,\n 20 May 2024\t10:00:00 GMT  ", utc(2024, 5, 20, 10, 0)),
        # ISO 8601 / RFC 3339
        ("2024-10-02T09:00:00Z", utc(2024, 10, 2, 9, 0)),
        ("2024-10-02T09:00:00z", utc(2024, 10, 2, 9, 0)),
        ("2024-10-02T09:00:00+07:00", utc(2024, 10, 2, 2, 0)),
        ("2024-10-02T09:00:00+0700", utc(2024, 10, 2, 2, 0)),
        ("2024-10-02T09:00:00-03:30", utc(2024, 10, 2, 12, 30)),
        ("2024-10-02T09:00:00.123456+07:00", utc(2024, 10, 2, 2, 0, 0, 123456)),
        ("2024-10-02T09:00:00.5Z", utc(2024, 10, 2, 9, 0, 0, 500000)),
        ("2024-10-02 09:00:00 WIB", utc(2024, 10, 2, 2, 0)),
        ("2024-10-02T09:00 Asia/Makassar", utc(2024, 10, 2, 1, 0)),
        ("20241002T090000Z", utc(2024, 10, 2, 9, 0)),
        # no zone: the default zone (Jakarta), never UTC; no time: midnight there
        ("2024-10-02T09:00:00", utc(2024, 10, 2, 2, 0)),
        ("2024-10-02 09:00", utc(2024, 10, 2, 2, 0)),
        ("2024-10-02", utc(2024, 10, 1, 17, 0)),
        ("20 Mei 2024 10:00:00", utc(2024, 5, 20, 3, 0)),
        ("20 Mei 2024", utc(2024, 5, 19, 17, 0)),
        ("Mon, 20 May 2024 10:00:00", utc(2024, 5, 20, 3, 0)),
    ],
)
def test_reads_real_world_dates(text: str, expected: datetime) -> None:
    """Each string is read to the exact instant, returned aware in UTC."""
    result = parse_date(text, JAKARTA)
    assert result == expected
    assert result is not None and result.utcoffset() is not None
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "garbage",
        "kemarin",  # "yesterday"
        "2 jam yang lalu",  # "2 hours ago": relative dates are not guessed
        "20 Mei",  # no year
        "Mei 2024",  # no day
        "1 2 3",
        "31 Feb 2024",
        "2024-13-01",
        "2024-10-02T25:00:00Z",
        "Mon, 20 May 2024 10:00:00 +2500",
        "Mon, 20 May 2024 10:00:00 XYZ",
        "20 May 2024 June 2024",
        "13:00 PM 20 May 2024",
        "2024-10-02T09:00:00 Mars/Olympus",
        "x" * 500,
    ],
)
def test_unreadable_gives_none(text: str) -> None:
    """Anything that is not a complete date gives None rather than a guess."""
    assert parse_date(text, JAKARTA) is None


def test_no_zone_uses_the_given_default_zone() -> None:
    """A zoneless date is read in the default zone passed in, e.g. WITA for Makassar."""
    assert parse_date("2024-10-02T09:00:00", ZoneInfo("Asia/Makassar")) == utc(2024, 10, 2, 1)
    assert parse_date("2024-10-02T09:00:00", UTC) == utc(2024, 10, 2, 9)


def test_explicit_zone_wins_over_default() -> None:
    """An explicit zone is used even when the default zone differs."""
    assert parse_date("2024-10-02T09:00:00Z", JAKARTA) == utc(2024, 10, 2, 9)
    assert parse_date("Tue, 01 Oct 2024 10:00:00 WIT", UTC) == utc(2024, 10, 1, 1)


def test_default_zone_with_daylight_saving() -> None:
    """A zoneless date in a zone with DST uses that date's offset."""
    berlin = ZoneInfo("Europe/Berlin")
    assert parse_date("2024-07-01T12:00:00", berlin) == utc(2024, 7, 1, 10)
    assert parse_date("2024-01-15T12:00:00", berlin) == utc(2024, 1, 15, 11)


def test_non_string_gives_none() -> None:
    """A non-string value (feedparser may hand over None) gives None."""
    assert parse_date(None, JAKARTA) is None  # type: ignore[arg-type]

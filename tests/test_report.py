"""The monthly ranking: days within threshold, longest silence, posts, score and rank."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fakes.clock import FakeClock

from monitor import commands
from monitor.cli import main
from monitor.config import AgencyInfo, Config, load_config
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.platform import Platform
from monitor.report import (
    PlatformStats,
    Series,
    build_report,
    month_days,
    parse_month,
    platform_stats,
    previous_month,
    rank_agencies,
    render_csv,
    render_html,
    render_markdown,
)
from monitor.state import AccountState
from monitor.store import Store

WIB = ZoneInfo("Asia/Jakarta")
DAY = 86400.0
AFTER = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)  # November 2026 is complete


def wib(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=WIB)


class _Named(Platform):
    def url(self, account: str) -> str:
        return f"https://{self.name}.example/{account}"


PLATFORMS = {n: type(f"P_{n}", (_Named,), {"name": n})() for n in ("instagram", "facebook", "rss")}

CONFIG = """\
state: {state}
silence_after: 7d
expect: [instagram, facebook]
agencies:
  - id: dinsos
    name: Dinas Sosial
    group: dinas
    accounts:
      instagram: dinsos.ig
      facebook: {{id: dinsos.fb, silence_after: 3d}}
      rss: https://dinsos.example/feed/
  - id: dputr
    name: Dinas PUTR
    group: dinas
    accounts:
      instagram: dputr.ig
  - id: kel-x
    name: Kelurahan X
    group: kelurahan
  - id: dzeta
    name: Dinas Zeta
    group: dinas
    accounts:
      instagram: dzeta.ig
"""

# The synthetic history, in WIB. dinsos/instagram: a post before the month, three inside.
IG_POSTS = [wib(10, 28, 10), wib(11, 10, 12), wib(11, 12, 8), wib(11, 25, 20)]
FB_POSTS = [wib(11, day, 9) for day in range(1, 30, 2)]  # every other day, 15 posts
RSS_LATEST = [wib(11, 5, 10), wib(11, 20, 10)]  # known only as each check's newest post
DPUTR_POSTS = [wib(9, 1, 12), wib(11, 15, 12)]

# What the report must say: (agency, platform) -> (scored, accounts, posts, longest silence,
# days within the threshold, days counted, share). Worked out by hand in the comments.
EXPECTED = {
    # A day counts at its end (day 1 ends Nov 2 00:00). Within: days 1-3 (the Oct 28 10:00
    # post is then 4.6-6.6 d old), 10-18, 25-30 = 18 days; longest: Nov 12 08:00 to
    # Nov 25 20:00 = 13.5 d (the silence from Oct 28 to Nov 10 12:00 is 13.08 d)
    ("dinsos", "instagram"): ("1", "1", "3", "13.5", "18", "30", "0.6000"),
    # a post every 2 days, 3-day threshold: every day within; longest gap 2.0 d
    ("dinsos", "facebook"): ("1", "1", "15", "2.0", "30", "30", "1.0000"),
    # not expected: reported, not scored. Days 5-11 and 20-26 within; Nov 5 to Nov 20 = 15 d
    ("dinsos", "rss"): ("0", "1", "2", "15.0", "14", "30", "0.4667"),
    # Sep 1 12:00 to Nov 15 12:00 = 75 d of silence; days 15-21 within
    ("dputr", "instagram"): ("1", "1", "1", "75.0", "7", "30", "0.2333"),
    ("dputr", "facebook"): ("1", "0", "0", "", "0", "30", "0.0000"),
    # checked, never posted: silent the whole month
    ("dzeta", "instagram"): ("1", "1", "0", "30.0", "0", "30", "0.0000"),
    ("dzeta", "facebook"): ("1", "0", "0", "", "0", "30", "0.0000"),
    ("kel-x", "instagram"): ("1", "0", "0", "", "0", "30", "0.0000"),
    ("kel-x", "facebook"): ("1", "0", "0", "", "0", "30", "0.0000"),
}
# score = 100 x mean(share over instagram, facebook): (18/30 + 1) / 2 = 80.0; 7/30 / 2 = 11.67
RANKING = [("1", "dinsos", "80.0"), ("2", "dputr", "11.7"), ("3", "dzeta", "0.0"),
           ("3", "kel-x", "0.0")]


def _config(tmp_path: Path) -> Config:
    path = tmp_path / "pantau.yaml"
    path.write_text(CONFIG.format(state=tmp_path / "pantau.db"))
    return load_config(path, PLATFORMS, environ={})


async def _record(store: Store, account: Account, at: datetime,
                  observation: Observation | None = None, error: Exception | None = None) -> None:
    if error is not None:
        result = CheckResult.failure(account, at, 0.1, error)
    else:
        result = CheckResult(account, at, True, 0.1, observation=observation)
    await store.record(result, AccountState().apply(result))


def _posts(times: list[datetime], prefix: str) -> list[Post]:
    return [Post(t, id=f"{prefix}-{t:%m%d%H}") for t in times]


async def _history(config: Config) -> None:
    """Writes the synthetic history through the store's own API (as the engine does)."""
    acc = {(a.agency, a.platform): a for a in config.accounts}
    store = await Store.open(config.state)
    try:
        ig = acc[("dinsos", "instagram")]
        # Two checks that overlap (Nov 10 is seen twice): each post counts once.
        await _record(store, ig, wib(11, 11), Observation.from_posts(_posts(IG_POSTS[:2], "ig"),
                                                                     "fake"))
        await _record(store, ig, wib(11, 20), error=Timeout("no answer"))
        await _record(store, ig, wib(11, 26), Observation.from_posts(_posts(IG_POSTS[1:], "ig"),
                                                                     "fake"))
        await _record(store, ig, wib(11, 27), Observation.not_modified("fake"))
        fb = acc[("dinsos", "facebook")]
        await _record(store, fb, wib(11, 30), Observation.from_posts(_posts(FB_POSTS, "fb"),
                                                                     "fake"))
        rss = acc[("dinsos", "rss")]
        for at in RSS_LATEST:
            await _record(store, rss, at + timedelta(hours=2),
                          Observation(latest_post_at=at, post_id=f"rss-{at:%d}", method="feed"))
        dputr = acc[("dputr", "instagram")]
        await _record(store, dputr, wib(11, 16), Observation.from_posts(
            _posts(DPUTR_POSTS, "pu"), "fake"))
        await _record(store, acc[("dzeta", "instagram")], wib(11, 2),
                      Observation.from_posts([], "fake"))
    finally:
        await store.close()


# -- the arithmetic --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-11", "november", "1969-12", ""])
def test_parse_month_rejects_bad_months(text: str) -> None:
    """Only YYYY-MM with a real month is a month."""
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(text)


def test_parse_month_and_previous_month() -> None:
    """2026-11 parses; the default month is the last complete one in Jakarta."""
    assert parse_month(" 2026-11 ") == (2026, 11)
    assert previous_month(datetime(2026, 12, 3, tzinfo=UTC)) == "2026-11"
    assert previous_month(datetime(2026, 1, 31, 18, tzinfo=UTC)) == "2026-01"  # Feb 1 in WIB
    assert previous_month(datetime(2026, 1, 15, tzinfo=UTC)) == "2025-12"


def test_month_days_full_partial_and_future() -> None:
    """A past month has all its days; a running one stops at now; a future one is refused."""
    full = month_days(2026, 11, WIB, AFTER)
    assert len(full) == 30 and full[0] == wib(11, 2) and full[-1] == wib(12, 1)
    now = wib(11, 20, 12)
    partial = month_days(2026, 11, WIB, now)
    assert len(partial) == 20 and partial[-2] == wib(11, 20) and partial[-1] == now
    assert len(month_days(2026, 2, WIB, AFTER)) == 28
    with pytest.raises(ValueError, match="not begun"):
        month_days(2026, 12, WIB, wib(11, 30, 23, 59))


def test_platform_stats_in_a_running_month() -> None:
    """Counted up to now: days 1-3 and 10-18 of 20 within, longest 13.1 d, 2 posts so far."""
    now = wib(11, 20, 12)
    series = [Series(7 * DAY, tuple(t for t in IG_POSTS if t <= now))]
    stats = platform_stats("instagram", series, wib(11, 1), month_days(2026, 11, WIB, now),
                           scored=True)
    assert (stats.posts, stats.days_within, stats.days) == (2, 12, 20)
    assert stats.share == pytest.approx(0.6)
    assert stats.longest_silence == pytest.approx(13 + 2 / 24)


def test_any_account_within_its_own_threshold_counts() -> None:
    """Two accounts on one platform: a day counts when either is within its own threshold."""
    days = month_days(2026, 11, WIB, AFTER)
    loose = Series(30 * DAY, (wib(11, 1, 1),))   # within all month
    tight = Series(1 * DAY, (wib(11, 29, 12),))  # within on days 29 and 30 only
    assert platform_stats("rss", [tight], wib(11, 1), days, scored=True).days_within == 1
    both = platform_stats("rss", [tight, loose], wib(11, 1), days, scored=True)
    assert (both.days_within, both.posts, both.accounts) == (30, 2, 2)
    assert both.longest_silence == pytest.approx(28 + 11 / 24)


def test_rank_shares_places_on_equal_scores() -> None:
    """Equal scores share a rank (1, 2, 2, 4), listed by name; unscored platforms don't count."""
    def line(agency: str, *shares: float, extra: float = 0.0):  # noqa: ANN202
        stats = tuple(PlatformStats(f"p{i}", True, 1, 0, 0.0, round(s * 10), 10)
                      for i, s in enumerate(shares))
        stats += (PlatformStats("rss", False, 1, 0, 0.0, round(extra * 10), 10),)
        return AgencyInfo(agency, agency.upper(), "g"), stats

    ranked = rank_agencies([line("c", 0.5, 0.5), line("b", 1.0, 0.0, extra=1.0),
                            line("a", 0.2, 0.1), line("d", 1.0, 1.0)])
    assert [(r.rank, r.agency.id, r.score) for r in ranked] == [
        (1, "d", 100.0), (2, "b", 50.0), (2, "c", 50.0), (4, "a", 15.0)]


# -- from the store ---------------------------------------------------------------------------


async def test_report_from_synthetic_history_checks_every_number(tmp_path: Path) -> None:
    """Every number of every (agency, platform) row, the scores and the ranks."""
    config = _config(tmp_path)
    await _history(config)
    store = await Store.open(config.state)
    try:
        report = await build_report(config, store, 2026, 11, AFTER)
    finally:
        await store.close()
    assert (report.days, report.partial, report.scored) == (30, False, ("instagram", "facebook"))
    rows = list(csv.DictReader(io.StringIO(render_csv(report))))
    got = {(r["agency"], r["platform"]): (r["scored"], r["accounts"], r["posts"],
                                          r["longest_silence_days"], r["days_within"],
                                          r["days"], r["share_within"]) for r in rows}
    assert got == EXPECTED
    ranking = list(dict.fromkeys((r["rank"], r["agency"], r["score"]) for r in rows))
    assert ranking == RANKING
    assert {r["month"] for r in rows} == {"2026-11"}
    md = render_markdown(report)
    assert "| 1 | Dinas Sosial | dinas | 80.0 | 60.0% | 100.0% |" in md
    assert "| 3 | Kelurahan X | kelurahan | 0.0 | no account | no account |" in md
    assert "| dinsos | rss | no | 1 | 2 | 15.0 | 14/30 | 46.7% |" in md
    assert "2026-11-01 to 2026-11-30 (Asia/Jakarta), 30 days" in md


async def test_report_command_formats_and_errors(tmp_path: Path) -> None:
    """md/csv/html on stdout; a month not begun is a usage error; html is escaped."""
    config = _config(tmp_path)
    await _history(config)
    clock = FakeClock(AFTER)
    out = io.StringIO()
    assert await commands.report(config, "2026-11", "html", clock, out=out) == 0
    page = out.getvalue()
    assert "<script" not in page and "<td>dinsos</td><td>rss</td>" in page
    assert '<td class="n">80.0</td>' in page
    out = io.StringIO()
    assert await commands.report(config, None, "csv", clock, out=out) == 0  # default: 2026-11
    assert out.getvalue().splitlines()[1].startswith("2026-11,1,dinsos,Dinas Sosial,dinas,80.0,")
    assert await commands.report(config, "2026-12", "md", FakeClock(wib(11, 30)),
                                 out=io.StringIO()) == 2


def test_html_escapes_names() -> None:
    """Agency names and groups are escaped in the HTML report."""
    stats = (PlatformStats("instagram", True, 1, 2, 1.0, 3, 3),)
    report = rank_agencies([(AgencyInfo("x", "<b>X & Y</b>", "<i>"), stats)])
    from monitor.report import MonthlyReport

    page = render_html(MonthlyReport("2026-11", "Asia/Jakarta", wib(11, 1), wib(12, 1), 30,
                                     False, ("instagram",), ("instagram",), report))
    assert "<b>X" not in page and "&lt;b&gt;X &amp; Y&lt;/b&gt;" in page and "<i>" not in page


async def test_cli_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`pantau report` prints the ranking; bad month 2; missing store 74 (never created)."""
    config = _config(tmp_path)
    path = str(config.source)
    code = await asyncio.to_thread(main, ["report", "-c", path, "--month", "2020-01"])
    assert code == 74 and "does not exist" in capsys.readouterr().err
    assert not config.state.exists()
    await _history(config)
    code = await asyncio.to_thread(main, ["report", "-c", path, "--month", "2020-01",
                                          "--format", "md"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("# pantau monthly ranking: 2020-01")
    assert "| 1 | Dinas PUTR | dinas | 0.0 |" in out  # nothing known then: all tie at 0
    assert await asyncio.to_thread(main, ["report", "-c", path, "--month", "2020-13"]) == 2
    assert "invalid month" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["report", "-c", path, "--timezone", "Mars/Base"]) == 2

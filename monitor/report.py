"""The monthly ranking: who published, who stayed silent, from the state store's history.

For each agency and platform, over one calendar month in a time zone (Asia/Jakarta by default;
a month still running is counted up to now):

- **posts**: distinct posts published in the month (every post pantau saw, from
  :meth:`Store.posts`, plus the newest post of each check, from :meth:`Store.history`);
- **longest silence** (days): the longest stretch without a post inside the month, counted
  from the last post before the month when one is known (else from the month's start) and up
  to the month's end (or now);
- **days within threshold**: the days at whose end the last post was no older than the
  account's ``silence_after``. A day before any known post counts as outside. With several
  accounts on one platform a day counts when any of them is within its own threshold;
- **share** = days within threshold / days counted.

An agency's **score** = 100 x the mean of its shares over the expected platforms (``expect``;
when ``expect`` is empty, over the platforms it has accounts on), a missing account counting 0;
rounded to one decimal. **Rank**: by score, highest first; equal scores share a rank
(1, 2, 2, 4); ties are listed by name. Other platforms are reported but not scored.
"""

from __future__ import annotations

import calendar
import csv
import html
import io
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from monitor.clock import Clock
from monitor.config import AgencyInfo, Config
from monitor.state import post_key
from monitor.store import Store, StoreError

__all__ = [
    "DEFAULT_TIMEZONE",
    "FORMATS",
    "AgencyRank",
    "MonthlyReport",
    "PlatformStats",
    "Series",
    "build_report",
    "month_days",
    "parse_month",
    "platform_stats",
    "previous_month",
    "rank_agencies",
    "render",
    "render_csv",
    "render_html",
    "render_markdown",
    "report_command",
    "score",
]

_DAY = 86400.0
_MONTH = re.compile(r"(\d{4})-(\d{2})")
DEFAULT_TIMEZONE = "Asia/Jakarta"


@dataclass(frozen=True)
class Series:
    """One account's known post times (sorted) and its silence threshold in seconds."""

    silence_after: float
    posts: tuple[datetime, ...]


@dataclass(frozen=True)
class PlatformStats:
    """One agency on one platform for the month. ``longest_silence`` is None when missing."""

    platform: str
    scored: bool
    accounts: int
    posts: int
    longest_silence: float | None
    days_within: int
    days: int

    @property
    def share(self) -> float:
        """Days within the threshold / days counted (0 when no day is counted)."""
        return self.days_within / self.days if self.days else 0.0

    @property
    def missing(self) -> bool:
        return self.accounts == 0


@dataclass(frozen=True)
class AgencyRank:
    """One agency's line of the ranking."""

    agency: AgencyInfo
    platforms: tuple[PlatformStats, ...]
    score: float
    rank: int


@dataclass(frozen=True)
class MonthlyReport:
    """The ranking of one month. ``stop`` is the month's end, or now for a running month."""

    month: str
    timezone: str
    start: datetime
    stop: datetime
    days: int
    partial: bool
    scored: tuple[str, ...]
    platforms: tuple[str, ...]
    agencies: tuple[AgencyRank, ...]


# -- the arithmetic (pure) ---------------------------------------------------------------------


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-11"`` -> ``(2026, 11)``; ``ValueError`` for anything else."""
    match = _MONTH.fullmatch(text.strip())
    if not match or not 1 <= int(match[2]) <= 12 or int(match[1]) < 1970:
        raise ValueError(f"invalid month {text!r}: expected YYYY-MM, e.g. 2026-11")
    return int(match[1]), int(match[2])


def month_days(year: int, month: int, zone: ZoneInfo, now: datetime) -> list[datetime]:
    """The ends of the month's days that have begun by ``now`` (the last one capped at now).

    Raises ``ValueError`` when the month has not begun.
    """
    count = calendar.monthrange(year, month)[1]
    starts = [datetime(year, month, day, tzinfo=zone) for day in range(1, count + 1)]
    if starts[0] > now:
        raise ValueError(f"{year:04d}-{month:02d} has not begun yet")
    ends = [*starts[1:], _next_month(year, month, zone)]
    return [min(end, now) for start, end in zip(starts, ends, strict=True) if start < now]


def _next_month(year: int, month: int, zone: ZoneInfo) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)


def _last_before(posts: Sequence[datetime], instant: datetime) -> datetime | None:
    """The newest post strictly before ``instant`` (posts sorted)."""
    best = None
    for post in posts:
        if post >= instant:
            break
        best = post
    return best


def platform_stats(
    platform: str,
    series: Sequence[Series],
    start: datetime,
    day_ends: Sequence[datetime],
    *,
    scored: bool,
) -> PlatformStats:
    """The month's numbers for one agency on one platform (see the module docstring)."""
    if not series:
        return PlatformStats(platform, scored, 0, 0, None, 0, len(day_ends))
    stop = day_ends[-1]
    within = 0
    for end in day_ends:
        for account in series:
            last = _last_before(account.posts, end)
            if last is not None and (end - last).total_seconds() <= account.silence_after:
                within += 1
                break
    merged = sorted({p for account in series for p in account.posts})
    inside = [p for p in merged if start <= p < stop]
    anchor = _last_before(merged, start) or start
    points = [anchor, *inside, stop]
    longest = max((b - a).total_seconds() for a, b in zip(points, points[1:], strict=False))
    posts = sum(1 for account in series for p in account.posts if start <= p < stop)
    return PlatformStats(platform, scored, len(series), posts, longest / _DAY, within,
                         len(day_ends))


def score(stats: Iterable[PlatformStats]) -> float:
    """100 x the mean share over the scored platforms (0 when none is scored), 1 decimal."""
    shares = [s.share for s in stats if s.scored]
    return round(100.0 * sum(shares) / len(shares), 1) if shares else 0.0


def rank_agencies(
    lines: Iterable[tuple[AgencyInfo, tuple[PlatformStats, ...]]],
) -> tuple[AgencyRank, ...]:
    """Score and rank: highest score first; equal scores share a rank; ties by name."""
    scored = [(agency, stats, score(stats)) for agency, stats in lines]
    scored.sort(key=lambda item: (-item[2], item[0].name.casefold(), item[0].id))
    ranked: list[AgencyRank] = []
    for index, (agency, stats, value) in enumerate(scored):
        rank = ranked[-1].rank if ranked and ranked[-1].score == value else index + 1
        ranked.append(AgencyRank(agency, stats, value, rank))
    return tuple(ranked)


# -- reading the store ---------------------------------------------------------------------------


async def _series(store: Store, key: tuple[str, str, str], silence_after: float,
                  now: datetime) -> Series:
    """Every post time known for one account: posts seen, and each check's newest post."""
    known: dict[str, datetime] = {}
    for published, post_id in await store.posts(key):
        known[post_key(post_id, published)] = published
    for row in await store.history(key):
        if row.ok and row.latest_post_at is not None:
            known.setdefault(post_key(row.post_id, row.latest_post_at), row.latest_post_at)
    return Series(silence_after, tuple(sorted(t for t in known.values() if t <= now)))


async def build_report(
    config: Config, store: Store, year: int, month: int, now: datetime,
    timezone: str = DEFAULT_TIMEZONE,
) -> MonthlyReport:
    """The ranking of ``year-month`` from the store. ``ValueError`` for a month not begun."""
    zone = ZoneInfo(timezone)
    day_ends = month_days(year, month, zone, now)
    start = datetime(year, month, 1, tzinfo=zone)
    end = _next_month(year, month, zone)
    series: dict[tuple[str, str], list[Series]] = {}
    for account in config.accounts:
        one = await _series(store, account.key, account.silence_after, now)
        series.setdefault((account.agency, account.platform), []).append(one)
    extra = [a.platform for a in config.accounts if a.platform not in config.expect]
    platforms = tuple(dict.fromkeys([*config.expect, *extra]))
    lines = []
    for agency in config.agencies:
        mine = {p for (a, p) in series if a == agency.id}
        scored_set = set(config.expect) if config.expect else mine
        columns = [p for p in platforms if p in config.expect or p in mine]
        stats = tuple(
            platform_stats(p, series.get((agency.id, p), []), start, day_ends,
                           scored=p in scored_set)
            for p in columns
        )
        lines.append((agency, stats))
    return MonthlyReport(
        month=f"{year:04d}-{month:02d}", timezone=timezone, start=start, stop=day_ends[-1],
        days=len(day_ends), partial=day_ends[-1] < end,
        scored=tuple(config.expect) if config.expect else platforms, platforms=platforms,
        agencies=rank_agencies(lines),
    )


# -- rendering -----------------------------------------------------------------------------------


def _pct(stats: PlatformStats) -> str:
    return "no account" if stats.missing else f"{100 * stats.share:.1f}%"


def _longest(stats: PlatformStats) -> str:
    return "" if stats.longest_silence is None else f"{stats.longest_silence:.1f}"


def _period(report: MonthlyReport) -> str:
    text = (f"{report.start:%Y-%m-%d} to {report.start + timedelta(days=report.days - 1):%Y-%m-%d}"
            f" ({report.timezone}), {report.days} days")
    if report.partial:
        stop = report.stop.astimezone(ZoneInfo(report.timezone))
        text += f"; the month is still running: counted up to {stop:%Y-%m-%d %H:%M}"
    return text


def _formula(report: MonthlyReport) -> str:
    return ("Score = 100 x the mean, over the scored platforms "
            f"({', '.join(report.scored) or 'none'}), of the share of days within the silence "
            "threshold; a missing account counts 0. Equal scores share a rank.")


def _by_platform(line: AgencyRank) -> dict[str, PlatformStats]:
    return {s.platform: s for s in line.platforms}


def _md_cell(text: str) -> str:
    return " ".join(text.replace("\\", "\\\\").replace("|", "\\|").split())


def render_markdown(report: MonthlyReport) -> str:
    """The ranking and the per-platform numbers as Markdown tables."""
    out = [f"# pantau monthly ranking: {report.month}", "",
           f"Period: {_period(report)}.", "", _formula(report), "",
           "| Rank | Agency | Group | Score | " + " | ".join(report.scored) + " |",
           "|---:|---|---|---:|" + "---:|" * len(report.scored)]
    for line in report.agencies:
        stats = _by_platform(line)
        shares = [_pct(stats[p]) if p in stats else "" for p in report.scored]
        out.append(f"| {line.rank} | {_md_cell(line.agency.name)} | {_md_cell(line.agency.group)}"
                   f" | {line.score:.1f} | " + " | ".join(shares) + " |")
    out += ["", "## Per platform", "",
            "| Agency | Platform | Scored | Accounts | Posts | Longest silence (days) "
            "| Days within threshold | Share |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for line in report.agencies:
        for s in line.platforms:
            out.append(f"| {_md_cell(line.agency.id)} | {_md_cell(s.platform)} | "
                       f"{'yes' if s.scored else 'no'} | {s.accounts} | {s.posts} | "
                       f"{_longest(s) or '-'} | {s.days_within}/{s.days} | {_pct(s)} |")
    return "\n".join(out) + "\n"


CSV_COLUMNS = ("month", "rank", "agency", "name", "group", "score", "platform", "scored",
               "accounts", "posts", "longest_silence_days", "days_within", "days",
               "share_within")


def render_csv(report: MonthlyReport) -> str:
    """One row per (agency, platform), in rank order; ``share_within`` is a fraction."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for line in report.agencies:
        for s in line.platforms:
            writer.writerow([
                report.month, line.rank, line.agency.id, line.agency.name, line.agency.group,
                f"{line.score:.1f}", s.platform, int(s.scored), s.accounts, s.posts,
                _longest(s), s.days_within, s.days, f"{s.share:.4f}",
            ])
    return buffer.getvalue()


_HTML_CSS = (
    "body{font-family:'DejaVu Sans',system-ui,sans-serif;margin:1.2rem;color:#1b1f24}"
    "table{border-collapse:collapse;margin:.8rem 0}"
    "th,td{border:1px solid #d0d7de;padding:.25rem .5rem}thead th{background:#f6f8fa}"
    "td.n{text-align:right}"
)


def render_html(report: MonthlyReport) -> str:
    """A standalone HTML page (no script); every value escaped."""
    e = html.escape
    rows = []
    for line in report.agencies:
        stats = _by_platform(line)
        shares = "".join(
            f'<td class="n">{e(_pct(stats[p]) if p in stats else "")}</td>' for p in report.scored
        )
        rows.append(f'<tr><td class="n">{line.rank}</td><th scope="row">{e(line.agency.name)}'
                    f'</th><td>{e(line.agency.group)}</td><td class="n">{line.score:.1f}</td>'
                    f"{shares}</tr>")
    details = []
    for line in report.agencies:
        for s in line.platforms:
            details.append(
                f"<tr><td>{e(line.agency.id)}</td><td>{e(s.platform)}</td>"
                f"<td>{'yes' if s.scored else 'no'}</td><td class=\"n\">{s.accounts}</td>"
                f'<td class="n">{s.posts}</td><td class="n">{e(_longest(s) or "-")}</td>'
                f'<td class="n">{s.days_within}/{s.days}</td><td class="n">{e(_pct(s))}</td></tr>'
            )
    heads = "".join(f'<th scope="col">{e(p)}</th>' for p in report.scored)
    title = f"pantau monthly ranking: {report.month}"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>{e(title)}'
        f"</title><style>{_HTML_CSS}</style></head>\n<body>\n<h1>{e(title)}</h1>\n"
        f"<p>Period: {e(_period(report))}.</p>\n<p>{e(_formula(report))}</p>\n"
        '<table><thead><tr><th scope="col">Rank</th><th scope="col">Agency</th>'
        f'<th scope="col">Group</th><th scope="col">Score</th>{heads}</tr></thead>\n<tbody>\n'
        + "\n".join(rows) + "\n</tbody></table>\n<h2>Per platform</h2>\n"
        '<table><thead><tr><th scope="col">Agency</th><th scope="col">Platform</th>'
        '<th scope="col">Scored</th><th scope="col">Accounts</th><th scope="col">Posts</th>'
        '<th scope="col">Longest silence (days)</th><th scope="col">Days within threshold</th>'
        '<th scope="col">Share</th></tr></thead>\n<tbody>\n'
        + "\n".join(details) + "\n</tbody></table>\n</body>\n</html>\n"
    )


FORMATS: dict[str, Callable[[MonthlyReport], str]] = {
    "md": render_markdown, "csv": render_csv, "html": render_html,
}


def render(report: MonthlyReport, fmt: str) -> str:
    """The report in ``md``, ``csv`` or ``html``."""
    return FORMATS[fmt](report)


# -- the command ---------------------------------------------------------------------------------


def previous_month(now: datetime, timezone: str = DEFAULT_TIMEZONE) -> str:
    """The last complete month before ``now`` in ``timezone``, as ``YYYY-MM``."""
    local = now.astimezone(ZoneInfo(timezone))
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    return f"{year:04d}-{month:02d}"


async def report_command(
    config: Config, month: str | None, fmt: str, clock: Clock, *,
    timezone: str = DEFAULT_TIMEZONE, out: TextIO | None = None, err: TextIO | None = None,
) -> int:
    """``pantau report``: print the ranking of ``month`` (default: the last full month).

    Returns 0, or 2 for a bad month or time zone. A missing state store is a
    :class:`StoreError` (the CLI exits 74): a report never creates one.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    now = clock.now()
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"pantau report: unknown time zone {timezone!r}; use an IANA name such as "
              "Asia/Jakarta", file=err)
        return 2
    try:
        year, number = parse_month(month or previous_month(now, timezone))
        month_days(year, number, ZoneInfo(timezone), now)
    except ValueError as exc:
        print(f"pantau report: {exc}", file=err)
        return 2
    if not config.state.exists():
        raise StoreError(f"state store {config.state} does not exist: nothing has been "
                         "checked yet (run `pantau run` or `pantau check` first)")
    store = await Store.open(config.state)
    try:
        report = await build_report(config, store, year, number, now, timezone)
    finally:
        await store.close()
    out.write(render(report, fmt))
    return 0

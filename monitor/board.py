"""The public transparency board: who publishes, who is late, who is silent.

``GET /`` renders one server-side HTML page (no JavaScript): one row per agency, grouped by
the agency's ``group``, one column per platform (``expect`` first, then any other platform
that has accounts). Each cell shows the days since the last post and a state, by text, symbol
and colour together, and links to the account. ``GET /api/v1/agencies`` is the JSON twin.

A cell's state, for an account with silence threshold ``T`` and last post ``age`` ago:

- ``fresh``: ``age <= T / 2``;
- ``late``: ``T / 2 < age <= T``;
- ``silent``: ``age > T``, or a successful check found no post at all;
- ``failing``: the last check failed (the days still show the last known post);
- ``unchecked``: not checked yet since it was configured;
- ``missing``: the platform is expected (or used by other agencies) but the agency has no
  account on it.

With several accounts on one platform the cell shows the best one, in the order fresh, late,
silent, failing, unchecked (then the most recent post): the agency publishes there if any of
its accounts does. Days are whole days, rounded down, counted with the engine's clock.

Query parameters: ``lang=id|en`` (default from ``Accept-Language``, else Indonesian) and
``sort=group`` (config order, the default), ``sort=name``, ``sort=silence`` (the agency silent
longest on every platform first) or ``sort=silence:<platform>`` (longest silent on that
platform first; no account counts as the longest). Agencies stay grouped under every sort.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit
from zoneinfo import ZoneInfo

from aiohttp import hdrs, web

from monitor.config import AgencyInfo, Config
from monitor.model import Account
from monitor.state import AccountState

__all__ = [
    "BOARD_SOURCE_KEY",
    "LANGS",
    "SORTS",
    "STATES",
    "Board",
    "BoardSource",
    "Cell",
    "Row",
    "account_view",
    "add_board_routes",
    "board_json",
    "build_board",
    "negotiate_lang",
    "render_html",
]

Key = tuple[str, str, str]

#: Cell states, best first.
STATES: tuple[str, ...] = ("fresh", "late", "silent", "failing", "unchecked", "missing")
LANGS: tuple[str, ...] = ("id", "en")
#: Sorts besides ``silence:<platform>``.
SORTS: tuple[str, ...] = ("group", "name", "silence")
_DAY = 86400.0
_RANK = {state: i for i, state in enumerate(STATES)}
#: Board times are shown in Cilegon's zone (WIB).
_ZONE = ZoneInfo("Asia/Jakarta")
_ZONE_NAME = "WIB"
_REFRESH_SECONDS = 300

_PLATFORM_NAMES = {
    "instagram": "Instagram", "facebook": "Facebook", "youtube": "YouTube", "rss": "RSS",
    "tiktok": "TikTok", "x": "X", "twitter": "X", "threads": "Threads",
}
_SYMBOLS = {
    "fresh": "\u2713", "late": "\u25d4", "silent": "\u2715", "failing": "\u26a0",
    "unchecked": "\u2026", "missing": "\u25cb",
}

_LABELS: dict[str, dict[str, str]] = {
    "id": {
        "title": "Papan keterbukaan media sosial",
        "intro": "Berapa hari sejak setiap instansi terakhir memposting, per platform. "
                 "Diperbarui {time}.",
        "agency": "Instansi", "group_other": "Lainnya", "website": "Situs web",
        "sort": "Urutkan", "sort_group": "kelompok", "sort_name": "nama",
        "sort_silence": "paling lama diam",
        "fresh": "Aktif", "late": "Terlambat", "silent": "Tidak aktif",
        "failing": "Gagal dicek", "unchecked": "Belum dicek", "missing": "Tidak ada akun",
        "days_0": "hari ini", "days_1": "1 hari", "days_n": "{n} hari", "no_posts": "belum ada",
        "legend": "Keterangan",
        "legend_fresh": "posting terakhir dalam separuh batas diam",
        "legend_late": "lewat separuh batas diam, belum melewati batas",
        "legend_silent": "melewati batas diam, atau belum pernah memposting",
        "legend_failing": "pengecekan terakhir gagal; hari dihitung dari posting terakhir "
                          "yang diketahui",
        "legend_unchecked": "akun belum dicek sejak didaftarkan",
        "legend_missing": "instansi belum punya akun di platform ini",
        "threshold": "Batas diam bawaan: {days}; sebagian instansi atau akun punya batas "
                     "sendiri (lihat keterangan sel).",
        "last_post": "posting terakhir", "threshold_cell": "batas diam", "reason": "alasan",
        "summary": "Ringkasan", "accounts": "akun", "language": "Bahasa",
        "machine": "Data yang sama dalam JSON",
        "no_agencies": "Belum ada instansi dalam konfigurasi.",
    },
    "en": {
        "title": "Social media transparency board",
        "intro": "Days since each agency last posted, per platform. Updated {time}.",
        "agency": "Agency", "group_other": "Other", "website": "Website",
        "sort": "Sort", "sort_group": "group", "sort_name": "name",
        "sort_silence": "silent longest",
        "fresh": "Fresh", "late": "Late", "silent": "Silent",
        "failing": "Check failing", "unchecked": "Not checked yet", "missing": "No account",
        "days_0": "today", "days_1": "1 day", "days_n": "{n} days", "no_posts": "none yet",
        "legend": "Legend",
        "legend_fresh": "last post within half the silence threshold",
        "legend_late": "past half the silence threshold, not past it",
        "legend_silent": "past the silence threshold, or never posted",
        "legend_failing": "the last check failed; days count from the last known post",
        "legend_unchecked": "not checked yet since it was configured",
        "legend_missing": "the agency has no account on this platform",
        "threshold": "Default silence threshold: {days}; some agencies or accounts have "
                     "their own (see each cell's details).",
        "last_post": "last post", "threshold_cell": "threshold", "reason": "reason",
        "summary": "Summary", "accounts": "accounts", "language": "Language",
        "machine": "The same data as JSON",
        "no_agencies": "No agencies in the configuration yet.",
    },
}


class BoardSource(Protocol):
    """What the board reads on each request (the daemon's :class:`monitor.engine.Engine`)."""

    @property
    def config(self) -> Config:
        """The current configuration (agencies, accounts, expected platforms)."""

    @property
    def states(self) -> Mapping[Key, AccountState]:
        """The last known state of each account."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


@dataclass(frozen=True)
class AccountView:
    """One account as a cell shows it."""

    account: Account
    state: str
    days: int | None
    age: float | None
    last_post_at: datetime | None
    last_check_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class Cell:
    """One (agency, platform) cell. ``accounts`` is best first; empty when ``missing``."""

    platform: str
    state: str
    days: int | None
    accounts: tuple[AccountView, ...] = ()

    @property
    def best(self) -> AccountView | None:
        return self.accounts[0] if self.accounts else None


@dataclass(frozen=True)
class Row:
    """One agency. ``silence``: days (fractional) since its newest post anywhere (inf: none)."""

    agency: AgencyInfo
    cells: tuple[Cell, ...]
    silence: float


@dataclass(frozen=True)
class Board:
    """Everything one rendering shows."""

    generated_at: datetime
    platforms: tuple[str, ...]
    groups: tuple[tuple[str, tuple[Row, ...]], ...]
    sort: str
    silence_after: float
    counts: dict[str, int] = field(default_factory=dict)


# -- building ----------------------------------------------------------------------------------


def account_view(account: Account, state: AccountState | None, now: datetime) -> AccountView:
    """The state of one account at ``now`` (see the module docstring for the rules)."""
    state = state or AccountState()
    last = state.last_post_at
    age = None if last is None else max(0.0, (now - last).total_seconds())
    days = None if age is None else int(age // _DAY)
    if state.ok is None:
        kind = "unchecked"
    elif state.ok is False:
        kind = "failing"
    elif age is None or age > account.silence_after:
        kind = "silent"
    elif age > account.silence_after / 2:
        kind = "late"
    else:
        kind = "fresh"
    return AccountView(account, kind, days, age, last, state.last_check_at,
                       state.reason if state.ok is False else None)


def _cell(platform: str, views: list[AccountView]) -> Cell:
    if not views:
        return Cell(platform, "missing", None)
    ordered = sorted(views, key=lambda v: (_RANK[v.state], _age_key(v.age)))
    best = ordered[0]
    return Cell(platform, best.state, best.days, tuple(ordered))


def _age_key(age: float | None) -> float:
    return math.inf if age is None else age


def _columns(config: Config) -> tuple[str, ...]:
    extra = [a.platform for a in config.accounts if a.platform not in config.expect]
    return tuple(dict.fromkeys([*config.expect, *extra]))


def _parse_sort(sort: str | None, platforms: Sequence[str]) -> str:
    """A valid sort (unknown values fall back to ``group``)."""
    if sort in SORTS:
        return sort
    if sort and sort.startswith("silence:") and sort.partition(":")[2] in platforms:
        return sort
    return "group"


def build_board(source: BoardSource, sort: str | None = None) -> Board:
    """The board as it stands now (``source.now()``), agencies grouped and sorted."""
    config = source.config
    now = source.now()
    states = source.states
    platforms = _columns(config)
    sort = _parse_sort(sort, platforms)
    by_agency: dict[str, dict[str, list[AccountView]]] = {}
    for account in config.accounts:
        view = account_view(account, states.get(account.key), now)
        by_agency.setdefault(account.agency, {}).setdefault(account.platform, []).append(view)
    groups: dict[str, list[Row]] = {}
    counts = dict.fromkeys(STATES, 0)
    for agency in config.agencies:
        mine = by_agency.get(agency.id, {})
        cells = tuple(_cell(p, mine.get(p, [])) for p in platforms)
        for cell in cells:
            counts[cell.state] += 1
        ages = [v.age for views in mine.values() for v in views if v.age is not None]
        silence = min(ages) / _DAY if ages else math.inf
        groups.setdefault(agency.group, []).append(Row(agency, cells, silence))
    ordered = tuple(
        (group, tuple(_sorted(rows, sort, platforms)))
        for group, rows in sorted(groups.items(), key=lambda item: item[0] == "")
    )
    return Board(now, platforms, ordered, sort, config.silence_after, counts)


def _sorted(rows: list[Row], sort: str, platforms: Sequence[str]) -> list[Row]:
    if sort == "name":
        return sorted(rows, key=lambda r: (r.agency.name.casefold(), r.agency.id))
    if sort == "silence":
        return sorted(rows, key=lambda r: (-r.silence, -_bad(r), r.agency.name.casefold()))
    if sort.startswith("silence:"):
        index = platforms.index(sort.partition(":")[2])
        return sorted(rows, key=lambda r: (-_cell_silence(r.cells[index]),
                                           r.agency.name.casefold()))
    return rows


def _bad(row: Row) -> int:
    return sum(cell.state not in ("fresh", "late") for cell in row.cells)


def _cell_silence(cell: Cell) -> float:
    """Seconds of silence a cell stands for (missing or never posted: infinite)."""
    best = cell.best
    return _age_key(best.age if best is not None else None)


# -- JSON --------------------------------------------------------------------------------------


def _rfc3339(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def board_json(board: Board) -> dict[str, Any]:
    """The JSON twin of the board (``/api/v1/agencies``)."""
    agencies = []
    for _, rows in board.groups:
        for row in rows:
            agencies.append({
                "id": row.agency.id,
                "name": row.agency.name,
                "group": row.agency.group,
                "silence_days": None if math.isinf(row.silence) else math.floor(row.silence),
                "platforms": {
                    cell.platform: {
                        "state": cell.state,
                        "days": cell.days,
                        "accounts": [
                            {
                                "account": v.account.account,
                                "url": v.account.url,
                                "state": v.state,
                                "days": v.days,
                                "last_post_at": _rfc3339(v.last_post_at),
                                "last_check_at": _rfc3339(v.last_check_at),
                                "reason": v.reason,
                                "silence_after_seconds": v.account.silence_after,
                            }
                            for v in cell.accounts
                        ],
                    }
                    for cell in row.cells
                },
            })
    return {
        "generated_at": _rfc3339(board.generated_at),
        "sort": board.sort,
        "platforms": list(board.platforms),
        "states": list(STATES),
        "counts": board.counts,
        "agencies": agencies,
    }


# -- language ----------------------------------------------------------------------------------


def negotiate_lang(requested: str | None, accept_language: str | None) -> str:
    """``id`` or ``en``: the ``lang`` parameter if valid, else the best match in the
    ``Accept-Language`` header (by quality, then order), else Indonesian."""
    if requested in LANGS:
        return requested
    best: tuple[float, int, str] | None = None
    for index, part in enumerate((accept_language or "").split(",")):
        tag, *params = part.strip().split(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0:
            continue
        candidate = (-quality, index, primary)
        if best is None or candidate < best:
            best = candidate
    return best[2] if best is not None else "id"


# -- HTML --------------------------------------------------------------------------------------

_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de}
*{box-sizing:border-box}
body{font-family:"DejaVu Sans",system-ui,sans-serif;color:var(--fg);margin:1.2rem;font-size:15px}
h1{font-size:1.45rem;margin:0 0 .3rem}
p{margin:.3rem 0}
nav{margin:.6rem 0;color:var(--muted)}
nav a,th a{color:#0550ae}
.current{font-weight:bold;color:var(--fg)}
table{border-collapse:collapse;width:100%;margin:.6rem 0 1rem;table-layout:fixed}
caption{position:absolute;left:-9999px}
tr.group th{background:#fff;border-left:0;border-right:0;font-size:1.05rem;text-align:left;
 padding-top:.9rem}
th.agency{width:32%}
th,td{border:1px solid var(--line);padding:.3rem .45rem;vertical-align:top;
 overflow-wrap:anywhere}
thead th{background:#f6f8fa;text-align:left}
th[scope=row]{font-weight:normal;text-align:left}
td.cell a,td.cell .days{font-weight:bold;color:inherit}
td.cell .state{display:block;font-size:.85rem}
td.cell .more{font-size:.8rem;margin-left:.3rem}
.s-fresh{background:#dafbe1;color:#0f5323}
.s-late{background:#fff1c2;color:#6b4a00}
.s-silent{background:#ffd8d3;color:#86061d}
.s-failing{background:#e9ddff;color:#4c2889;background-image:repeating-linear-gradient(
 135deg,transparent 0 8px,rgba(76,40,137,.08) 8px 16px)}
.s-unchecked{background:#eef1f4;color:#424a53}
.s-missing{background:#fff;color:#57606a;border-style:dashed}
.legend{display:flex;flex-wrap:wrap;gap:.4rem;padding:0;list-style:none}
.legend li{padding:.25rem .5rem;border:1px solid var(--line);border-radius:4px}
footer{color:var(--muted);font-size:.85rem;margin-top:1rem}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _safe_url(url: str) -> str | None:
    """``url`` if it is an absolute http(s) URL (never ``javascript:`` and the like)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in ("http", "https") and parts.netloc:
        return url.strip()
    return None


def _days_text(days: int | None, labels: Mapping[str, str]) -> str:
    if days is None:
        return labels["no_posts"]
    if days == 0:
        return labels["days_0"]
    if days == 1:
        return labels["days_1"]
    return labels["days_n"].format(n=days)


def _duration_text(seconds: float, labels: Mapping[str, str]) -> str:
    days = seconds / _DAY
    if days >= 1 and days == int(days):
        return _days_text(int(days), labels)
    return labels["days_n"].format(n=f"{days:g}")


def _local(value: datetime) -> str:
    return value.astimezone(_ZONE).strftime("%Y-%m-%d %H:%M ") + _ZONE_NAME


def _platform_name(platform: str, labels: Mapping[str, str]) -> str:
    if platform == "website":
        return labels["website"]
    return _PLATFORM_NAMES.get(platform, platform.replace("_", " ").capitalize())


def _href(lang: str, sort: str) -> str:
    params = {"lang": lang}
    if sort != "group":
        params["sort"] = sort
    return "?" + urlencode(params)


def _cell_html(cell: Cell, agency: AgencyInfo, labels: Mapping[str, str]) -> str:
    best = cell.best
    symbol = _SYMBOLS[cell.state]
    state_text = labels[cell.state]
    if best is not None and best.reason:
        state_text += f" ({best.reason})"
    days_attr = "" if cell.days is None else f' data-days="{cell.days}"'
    attrs = (f'class="cell s-{cell.state}" data-agency="{_esc(agency.id)}" '
             f'data-platform="{_esc(cell.platform)}" data-state="{cell.state}"{days_attr}')
    if best is None:
        return (f"<td {attrs}><span class=\"state\"><span aria-hidden=\"true\">{symbol}</span> "
                f"{_esc(state_text)}</span></td>")
    details = [best.account.account]
    if best.last_post_at is not None:
        details.append(f"{labels['last_post']}: {_local(best.last_post_at)}")
    details.append(f"{labels['threshold_cell']}: "
                   f"{_duration_text(best.account.silence_after, labels)}")
    title = _esc(" \u00b7 ".join(details))
    unknown = cell.state == "unchecked" and cell.days is None
    days = "\u2014" if unknown else _esc(_days_text(cell.days, labels))
    url = _safe_url(best.account.url)
    main = (f'<a href="{_esc(url)}" title="{title}" rel="noopener noreferrer">{days}</a>'
            if url else f'<span class="days" title="{title}">{days}</span>')
    more = ""
    for index, other in enumerate(cell.accounts[1:], start=2):
        other_url = _safe_url(other.account.url)
        if other_url:
            more += (f'<a class="more" href="{_esc(other_url)}" rel="noopener noreferrer" '
                     f'title="{_esc(other.account.account)}: {_esc(labels[other.state])}">'
                     f"{index}</a>")
    return (f"<td {attrs}>{main}{more}<span class=\"state\"><span aria-hidden=\"true\">"
            f"{symbol}</span> {_esc(state_text)}</span></td>")


def render_html(board: Board, lang: str) -> str:
    """The board as one HTML page in ``lang`` (``id`` or ``en``). Every value is escaped."""
    labels = _LABELS[lang if lang in LANGS else "id"]
    out: list[str] = []
    add = out.append
    add(f'<!DOCTYPE html>\n<html lang="{_esc(lang)}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="refresh" content="{_REFRESH_SECONDS}">\n'
        f"<title>{_esc(labels['title'])} \u2014 pantau</title>\n<style>{_CSS}</style>\n"
        "</head>\n<body>\n<header>\n")
    add(f"<h1>{_esc(labels['title'])}</h1>\n")
    add(f"<p>{_esc(labels['intro'].format(time=_local(board.generated_at)))}</p>\n")
    add(f"<p>{_esc(labels['threshold'].format(days=_duration_text(board.silence_after, labels)))}"
        "</p>\n")
    sorts = [("group", labels["sort_group"]), ("name", labels["sort_name"]),
             ("silence", labels["sort_silence"])]
    links = " \u00b7 ".join(
        f'<span class="current" aria-current="true">{_esc(text)}</span>' if key == board.sort
        else f'<a href="{_esc(_href(lang, key))}">{_esc(text)}</a>'
        for key, text in sorts
    )
    langs = " \u00b7 ".join(
        f'<span class="current" aria-current="true">{name}</span>' if code == lang
        else f'<a href="{_esc(_href(code, board.sort))}" hreflang="{code}">{name}</a>'
        for code, name in (("id", "Bahasa Indonesia"), ("en", "English"))
    )
    add(f'<nav aria-label="{_esc(labels["sort"])}">{_esc(labels["sort"])}: {links}'
        f" &nbsp;|&nbsp; {_esc(labels['language'])}: {langs}</nav>\n")
    add(_legend_html(board, labels))
    add("</header>\n<main>\n")
    if board.groups:
        add(_table_html(board, lang, labels))
    else:
        add(f"<p>{_esc(labels['no_agencies'])}</p>\n")
    add("</main>\n<footer>\n")
    add(f'<p>pantau \u00b7 <a href="/api/v1/agencies">{_esc(labels["machine"])}</a> \u00b7 '
        '<a href="/metrics">/metrics</a></p>\n</footer>\n</body>\n</html>\n')
    return "".join(out)


def _legend_html(board: Board, labels: Mapping[str, str]) -> str:
    items = "".join(
        f'<li class="s-{state}" data-legend="{state}"><span aria-hidden="true">'
        f"{_SYMBOLS[state]}</span> <strong>{_esc(labels[state])}</strong> "
        f"({board.counts.get(state, 0)}): {_esc(labels['legend_' + state])}</li>"
        for state in STATES
    )
    return (f'<section aria-label="{_esc(labels["legend"])}"><ul class="legend">{items}</ul>'
            "</section>\n")


def _table_html(board: Board, lang: str, labels: Mapping[str, str]) -> str:
    """One table: the header once, then a ``tbody`` per group (so columns line up)."""
    agency_sort = 'aria-sort="ascending" ' if board.sort == "name" else ""
    head = [f'<th scope="col" class="agency" {agency_sort}><a href="{_esc(_href(lang, "name"))}">'
            f"{_esc(labels['agency'])}</a></th>"]
    for platform in board.platforms:
        key = f"silence:{platform}"
        aria = 'aria-sort="descending" ' if board.sort == key else ""
        head.append(f'<th scope="col" {aria}data-platform="{_esc(platform)}">'
                    f'<a href="{_esc(_href(lang, key))}">'
                    f"{_esc(_platform_name(platform, labels))}</a></th>")
    out = [f"<table>\n<caption>{_esc(labels['title'])}</caption>\n"
           f"<thead><tr>{''.join(head)}</tr></thead>\n"]
    span = len(board.platforms) + 1
    for group, rows in board.groups:
        name = group.capitalize() if group else labels["group_other"]
        out.append(f'<tbody data-group="{_esc(group)}">\n<tr class="group">'
                   f'<th scope="rowgroup" colspan="{span}">{_esc(name)} ({len(rows)})</th></tr>\n')
        for row in rows:
            cells = "".join(_cell_html(cell, row.agency, labels) for cell in row.cells)
            out.append(f'<tr data-agency="{_esc(row.agency.id)}"><th scope="row">'
                       f"{_esc(row.agency.name)}</th>{cells}</tr>\n")
        out.append("</tbody>\n")
    out.append("</table>\n")
    return "".join(out)


# -- aiohttp -----------------------------------------------------------------------------------

BOARD_SOURCE_KEY = web.AppKey("board_source", BoardSource)

_HEADERS = {
    # Inline styles only: no script, no frame, no form, nothing loaded from elsewhere.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    hdrs.CACHE_CONTROL: "no-cache",
}


async def _board_page(request: web.Request) -> web.Response:
    board = build_board(request.app[BOARD_SOURCE_KEY], request.query.get("sort"))
    lang = negotiate_lang(request.query.get("lang"), request.headers.get(hdrs.ACCEPT_LANGUAGE))
    headers = {**_HEADERS, hdrs.VARY: hdrs.ACCEPT_LANGUAGE, hdrs.CONTENT_LANGUAGE: lang}
    return web.Response(text=render_html(board, lang), content_type="text/html",
                        charset="utf-8", headers=headers)


async def _board_api(request: web.Request) -> web.Response:
    board = build_board(request.app[BOARD_SOURCE_KEY], request.query.get("sort"))
    return web.json_response(board_json(board), headers=_HEADERS)


def add_board_routes(app: web.Application, source: BoardSource) -> None:
    """Serve the board at ``GET /`` and its JSON twin at ``GET /api/v1/agencies``."""
    app[BOARD_SOURCE_KEY] = source
    app.router.add_get("/", _board_page)
    app.router.add_get("/api/v1/agencies", _board_api)

"""The core collector's exposition, kept between scrapes and brought up to date incrementally.

At 10,000 accounts the per-account families are 60,000 lines (about 10 MB); formatting them
afresh and gzipping them on every scrape took half a second of the event loop. This module
keeps their text instead, in blocks, and redoes only what changed:

- the accounts (configured order, duplicates dropped) are cut into blocks of
  :data:`BLOCK_SIZE`; a block keeps, per family, the raw text of its accounts' lines and,
  once asked for, that text as a raw-deflate segment (see :func:`deflate`);
- an account's lines are formatted again only when its :class:`AccountState` object is
  another one (the engine replaces a state on every check and never mutates a published
  one), its config changes (labels, ``silence_after``), or a post enters or leaves a
  ``pantau_posts`` window (the next instant this can happen is kept per account);
- a block family whose text came out the same keeps its deflated segment (a check changes
  ``pantau_last_check_timestamp_seconds`` and usually little else);
- ``pantau_account_missing``, ``pantau_agency_info`` and ``pantau_build_info`` are
  formatted again only when ``view.missing`` or ``view.agencies`` is another sequence (or
  grew or shrank) since the last scrape; ``view.accounts`` likewise decides when the blocks
  are laid out again (a config reload), keeping the text of the accounts that did not change.

To find the changed states without looking up every account, the cache keeps
``view.states`` as the last scrape saw it (keys, state objects, in the mapping's order): a
dict keeps a key in place when its value is replaced, so comparing the two in order finds
the replaced ones; keys added at the end are new ones; anything else (a key removed or
moved) falls back to looking every account up.

A scrape then joins block texts, or (gzip) chains the deflated segments into one gzip member
(:func:`gzip_segments`, as pigz does): only new or changed text is compressed, and the CRC-32
is chained from each cached segment's own (:class:`Deflated`, :mod:`monitor.crc`). The server
asks for no compression at all (``deflate=False``): changed text goes out *stored*
(:func:`stored`) and is compressed afterwards, outside the answer (:meth:`take_pending`,
:meth:`install`, :mod:`monitor.deflater`). The text is byte for byte what ``generate_latest``
writes for the same collector.

Memory: each account's text lives once, in its block (no per-account copy; about 0.8 KB per
account for an rss feed URL), and once deflated (about 60 bytes); besides, about 200 bytes
per account: its key, references to its ``Account`` and state, the next window edge, where
its lines start, its place in the layout and the last scrape's view of ``states``. Accounts
no longer configured are dropped at the next scrape after a reload.
"""

from __future__ import annotations

import functools
import operator
import struct
import zlib
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, chain, compress, count, islice
from typing import Protocol

from prometheus_client.utils import floatToGoString

from monitor.crc import Shift, crc32
from monitor.model import Account
from monitor.state import POST_WINDOWS, AccountState

__all__ = [
    "ACCOUNT_LABELS",
    "BLOCK_SIZE",
    "FAMILIES",
    "LEVEL",
    "ExpositionCache",
    "Pending",
    "Segment",
    "Deflated",
    "account_series",
    "deflate",
    "deflated",
    "gzip_segments",
    "label_text",
    "post_windows",
    "stored",
]

ACCOUNT_LABELS = ("agency", "platform", "account")

#: The per-account gauge families, in exposition order: (name, help).
FAMILIES: tuple[tuple[str, str], ...] = (
    ("pantau_last_post_timestamp_seconds",
     "Time of the newest post seen (Unix seconds); kept through failed checks."),
    ("pantau_last_check_timestamp_seconds", "When the account was last checked."),
    ("pantau_last_success_timestamp_seconds", "When a check of the account last succeeded."),
    ("pantau_check_success", "1 if the last check of the account succeeded, else 0."),
    ("pantau_silence_threshold_seconds",
     "Silence threshold configured for the account (seconds without a post)."),
    ("pantau_posts", "Posts seen in the window (label window: 7d or 30d)."),
)
LAST_POST, LAST_CHECK, LAST_SUCCESS, SUCCESS, THRESHOLD, POSTS = range(len(FAMILIES))

#: Accounts per block: a changed account costs re-deflating its block's changed families.
BLOCK_SIZE = 128
#: zlib level of the cached segments (each is compressed once, when it changes).
LEVEL = 1

#: ``(raw text, its raw-deflate segment or None)``: one piece of an exposition.
Segment = tuple[bytes, bytes | None]
Key = tuple[str, str, str]
#: A segment to deflate (see :meth:`ExpositionCache.take_pending`): where it is kept
#: (a block and its family, or a cached ``[raw, deflated]`` cell and 0), and its text.
Pending = tuple[object, int, bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NEVER = 2**63 - 1  # microseconds: no window edge ahead
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate; no flags, mtime; OS unknown
_FINAL_BLOCK = zlib.compressobj(LEVEL, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)
_STORED_MAX = 0xFFFF  # bytes in one stored deflate block


class StaticInputs(Protocol):
    """The parts of the metrics view the static families are made of."""

    @property
    def missing(self) -> Sequence[tuple[str, str]]: ...

    @property
    def agencies(self) -> Sequence[object]: ...


class CacheView(StaticInputs, Protocol):
    """What the cache reads on each scrape (a subset of :class:`monitor.metrics.MetricsView`)."""

    @property
    def accounts(self) -> Sequence[Account]: ...

    @property
    def states(self) -> Mapping[tuple[str, str, str], AccountState]: ...

    def now(self) -> datetime: ...


def label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """``a="1",b="2"``: labels sorted by name, values escaped, as in the text format."""
    return ",".join(
        f'{name}="{escape(value)}"' for name, value in sorted(zip(names, values, strict=True))
    )


def escape(value: str) -> str:
    """A label value escaped for the text format."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


def account_series(
    account: Account, state: AccountState | None, now: datetime
) -> tuple[list[tuple[int, str, float]], datetime | None]:
    """One account's series as ``(family index, window or "", value)``, and the first instant
    after ``now`` at which a ``pantau_posts`` value changes (None: not while the state stays).

    ``pantau_silence_threshold_seconds`` always; the timestamps and ``pantau_check_success``
    once known; ``pantau_posts`` (``window`` label) once the account had a successful check.
    """
    series: list[tuple[int, str, float]] = [(THRESHOLD, "", account.silence_after)]
    if state is None:
        return series, None
    edge = None
    if state.last_post_at is not None:
        series.append((LAST_POST, "", state.last_post_at.timestamp()))
    if state.last_check_at is not None:
        series.append((LAST_CHECK, "", state.last_check_at.timestamp()))
    if state.last_success_at is not None:
        series.append((LAST_SUCCESS, "", state.last_success_at.timestamp()))
        counts, edge = post_windows(state, now)
        series.extend((POSTS, window, count) for window, count in counts)
    if state.ok is not None:
        series.append((SUCCESS, "", 1.0 if state.ok else 0.0))
    return series, edge


def post_windows(
    state: AccountState, now: datetime
) -> tuple[list[tuple[str, int]], datetime | None]:
    """``(window, posts in (now - length, now])`` for each of :data:`POST_WINDOWS` (as
    :meth:`AccountState.post_count`), and the first instant after ``now`` at which one of
    these counts changes: a post enters the windows at its time and leaves each ``length``
    later. None when no count will change."""
    times = state.posts.values()
    edges = [t for t in times if t > now]
    nearest = min(edges) if edges else None
    counts = []
    for window, length in POST_WINDOWS.items():
        start = now - length
        inside = [t for t in times if start < t <= now]
        counts.append((window, len(inside)))
        if inside:
            leaves = min(inside) + length
            if nearest is None or leaves < nearest:
                nearest = leaves
    return counts, nearest


def deflate(raw: bytes, level: int = LEVEL) -> bytes:
    """``raw`` as a raw-deflate segment that ends on a byte boundary and refers to nothing
    before it (``Z_FULL_FLUSH``): segments compressed apart concatenate into one stream."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(raw) + compressor.flush(zlib.Z_FULL_FLUSH)


class Deflated(bytes):
    """A segment as :func:`deflate` makes it, that also knows its raw text's CRC-32 and a
    :class:`monitor.crc.Shift` for its length: :func:`gzip_segments` chains those instead
    of reading the text again."""

    crc: int
    shift: Shift


def deflated(raw: bytes, level: int = LEVEL) -> Deflated:
    """``deflate(raw, level)`` as a :class:`Deflated` (what the cache keeps)."""
    out = Deflated(deflate(raw, level))
    out.crc = zlib.crc32(raw)
    out.shift = Shift(len(raw))
    return out


def stored(raw: bytes) -> bytes:
    """``raw`` as raw-deflate *stored* blocks (not final, uncompressed): a segment like
    :func:`deflate`'s, made without zlib. For a scrape that cannot wait: every zlib call lets
    go of the GIL, and with the daemon's thread busy, taking it back costs up to the switch
    interval (5 ms) each time."""
    parts = []
    for start in range(0, len(raw), _STORED_MAX):
        piece = raw[start:start + _STORED_MAX]
        parts.append(struct.pack("<BHH", 0, len(piece), len(piece) ^ 0xFFFF))
        parts.append(piece)
    return b"".join(parts)


def gzip_segments(segments: Iterable[Segment], *, compress: bool = True) -> bytes:
    """One gzip member (RFC 1952) whose content is the segments' raw texts joined.

    A segment's deflated form is used as it is; runs of segments without one are compressed
    here, together, or (``compress`` False) stored uncompressed, without a zlib call (see
    :func:`stored`). The CRC-32 and the size are those of the raw texts: a :class:`Deflated`
    segment brings its CRC; any other text is read (:func:`monitor.crc.crc32`).
    """
    pack = deflate if compress else stored
    parts = [_GZIP_HEADER]
    pending: list[bytes] = []
    crc = size = 0
    for raw, packed in segments:
        if not raw:
            continue
        size += len(raw)
        if isinstance(packed, Deflated):
            crc = packed.shift.combine(crc, packed.crc)
        else:
            crc = crc32(raw, crc)
        if packed is None:
            pending.append(raw)
            continue
        if pending:
            parts.append(pack(b"".join(pending)))
            pending = []
        parts.append(packed)
    if pending:
        parts.append(pack(b"".join(pending)))
    parts.append(_FINAL_BLOCK)
    parts.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
    return b"".join(parts)


@dataclass
class CacheStats:
    """What the cache redid, counted since it was made (for tests and curiosity)."""

    scrapes: int = 0
    layouts: int = 0  #: times the blocks were laid out again (config changed)
    blocks_refreshed: int = 0  #: blocks in which some account changed
    accounts_formatted: int = 0  #: accounts whose lines were formatted
    segments_changed: int = 0  #: block families whose text changed
    segments_deflated: int = 0  #: segments compressed (blocks, heads, static families)
    static_renders: int = 0  #: times the static families were formatted


class _Block:
    """A run of accounts whose lines are kept together, per family."""

    __slots__ = ("accounts", "deflated", "keys", "offsets", "raw", "states", "until", "untils")

    def __init__(self, accounts: list[Account], keys: list[Key]) -> None:
        self.accounts = accounts
        self.keys = keys
        self.states: list[AccountState | None] = []
        #: Per account: the next window edge (microseconds since the epoch).
        self.untils = array("q")
        self.until = _NEVER
        #: Per family: the text of the block's lines, where each account's part starts
        #: (and, last, the end), and the deflated text once made.
        self.raw: list[bytes] = []
        self.offsets: list[array[int]] = []
        self.deflated: list[bytes | None] = []


class ExpositionCache:
    """The text of the core collector's families, updated per scrape from ``view``.

    ``static`` renders ``pantau_account_missing``, ``pantau_agency_info`` and
    ``pantau_build_info`` (called when the view's ``missing`` or ``agencies`` change).
    Not thread-safe: one caller at a time (the event loop).
    """

    def __init__(
        self,
        view: CacheView,
        static: Callable[[], bytes],
        *,
        block_size: int = BLOCK_SIZE,
        level: int = LEVEL,
    ) -> None:
        if block_size < 1:
            raise ValueError("block_size must be at least 1")
        self._view = view
        self._render_static = static
        self._block_size = block_size
        self.level = level  #: zlib level of the cached segments
        self._heads: list[list[bytes | None]] = [
            [f"# HELP {name} {_help(doc)}\n# TYPE {name} gauge\n".encode(), None]
            for name, doc in FAMILIES
        ]
        self._prefixes = [f"{name}{{" for name, _ in FAMILIES]
        self._suffixes = {w: f',window="{escape(w)}"' for w in POST_WINDOWS}
        self._configured = _Seen()  # view.accounts as laid out
        self._blocks: list[_Block] = []
        self._index: dict[Key, int] = {}  # key -> place in the layout
        # view.states as the last scrape left it (in its iteration order), and where each of
        # its keys is in the layout (-1: not configured), to find what changed without
        # looking every account up.
        self._seen_keys: list[Key] = []
        self._seen_states: list[AccountState] = []
        self._seen_at = array("q")
        self._now = -_NEVER
        self._static_inputs = (_Seen(), _Seen())
        self._static: list[bytes | None] = [b"", None]
        self.stats = CacheStats()

    def segments(self, *, deflate: bool = True) -> list[Segment]:
        """The exposition as segments, in order: each family's head, then its blocks, then
        the static families. With ``deflate``, every segment carries its deflated form."""
        view = self._view
        now = view.now()
        now_us = (now - _EPOCH) // _MICROSECOND
        if now_us < self._now:  # the clock went back: a window edge may be behind us
            self._blocks, self._index, self._configured = [], {}, _Seen()
        self._now = now_us
        # A copy (one C-level step under the GIL): the daemon's thread inserts states while
        # the server thread scrapes, and iterating a dict that grows raises.
        states = dict(view.states)
        accounts = view.accounts
        self.stats.scrapes += 1
        if not self._configured.matches(accounts):
            self._lay_out(accounts, states, now, now_us)
            self._remember(states)
        else:
            for block, places in self._changed(states, now_us).items():
                self._refresh(block, places, states, now)
        out: list[Segment] = []
        for family, head in enumerate(self._heads):
            out.append(self._segment(head, deflate))
            for block in self._blocks:
                raw = block.raw[family]
                if raw:
                    packed = block.deflated[family]
                    if packed is None and deflate:
                        packed = block.deflated[family] = self._deflate(raw)
                    out.append((raw, packed))
        out.append(self._segment(self._static_part(), deflate))
        return out

    def take_pending(self, limit: int | None = None) -> list[Pending]:
        """The segments (up to ``limit``; None: all) that have no deflated form yet (a scrape
        made with ``deflate=False`` leaves them so), in one pass, to deflate outside any lock
        and hand back to :meth:`install`. Lets a server answer first and compress
        afterwards."""
        if limit is None:
            limit = _NEVER
        out: list[Pending] = []
        for cell in (*self._heads, self._static):
            if len(out) >= limit:
                return out
            if cell[0] and cell[1] is None:
                out.append((cell, 0, cell[0]))
        for block in self._blocks:
            for family, packed in enumerate(block.deflated):
                if len(out) >= limit:
                    return out
                raw = block.raw[family]
                if raw and packed is None:
                    out.append((block, family, raw))
        return out

    def install(self, done: Iterable[tuple[Pending, Deflated]]) -> None:
        """Keep the deflated forms of segments from :meth:`take_pending`, unless their text
        changed meanwhile."""
        for (holder, family, raw), packed in done:
            self.stats.segments_deflated += 1
            if isinstance(holder, _Block):
                if holder.raw[family] is raw and holder.deflated[family] is None:
                    holder.deflated[family] = packed
            elif holder[0] is raw and holder[1] is None:
                holder[1] = packed

    # -- what changed ---------------------------------------------------------------------
    def _changed(
        self, states: Mapping[Key, AccountState], now_us: int
    ) -> dict[_Block, set[int]]:
        """The blocks to refresh, each with the places of the accounts that may have changed
        (another state object than at the last scrape, or a window edge passed); and
        remember ``states`` as it is now."""
        changed: dict[_Block, set[int]] = {}
        blocks, size = self._blocks, self._block_size
        seen = len(self._seen_keys)
        if len(states) >= seen and all(map(operator.is_, states.keys(), self._seen_keys)):
            # The same keys as last time, maybe some added at the end (a dict keeps a key's
            # place when its value is replaced): compare the states in place.
            differ = map(operator.is_not, states.values(), self._seen_states)
            moved = list(compress(self._seen_at, differ))
            added = self._remember(states, seen)
            for place in chain(moved, added):
                if place >= 0:
                    changed.setdefault(blocks[place // size], set()).add(place % size)
        else:  # keys went away or moved: look every account up
            for block in blocks:
                differ = map(operator.is_not, map(states.get, block.keys), block.states)
                places = set(compress(count(), differ))
                if places:
                    changed[block] = places
            self._remember(states)
        for block in blocks:
            if block.until <= now_us:
                passed = (i for i, until in enumerate(block.untils) if until <= now_us)
                changed.setdefault(block, set()).update(passed)
        return changed

    def _remember(self, states: Mapping[Key, AccountState], seen: int = 0) -> array[int]:
        """Keep ``states`` as this scrape sees it, for :meth:`_changed` next time; its first
        ``seen`` keys are known already. Returns the layout places of the others."""
        if not seen:
            self._seen_keys, self._seen_at = [], array("q")
        added = array("q")
        if len(states) > seen:
            keys = list(islice(states.keys(), seen, None))
            added.extend(self._index.get(key, -1) for key in keys)
            self._seen_keys.extend(keys)
            self._seen_at.extend(added)
        self._seen_states = list(states.values())
        return added

    # -- per-account lines ----------------------------------------------------------------
    def _format(
        self, account: Account, state: AccountState | None, now: datetime
    ) -> tuple[list[bytes], int]:
        """The account's line in each family (b"" where it has none), and its next edge."""
        self.stats.accounts_formatted += 1
        labels = label_text(ACCOUNT_LABELS, account.key)
        lines = [""] * len(FAMILIES)
        prefixes, suffixes = self._prefixes, self._suffixes
        series, edge = account_series(account, state, now)
        for family, window, value in series:
            extra = suffixes[window] if window else ""
            text = _go_float(value) if family in _REPEATING else floatToGoString(value)
            lines[family] += f"{prefixes[family]}{labels}{extra}}} {text}\n"
        until = _NEVER if edge is None else (edge - _EPOCH) // _MICROSECOND
        return [line.encode() for line in lines], until

    def _refresh(
        self,
        block: _Block,
        places: set[int],
        states: Mapping[Key, AccountState],
        now: datetime,
    ) -> None:
        """Format again the accounts of ``block`` at ``places`` and splice their lines in."""
        self.stats.blocks_refreshed += 1
        changed: dict[int, list[bytes]] = {}
        for index in sorted(places):
            state = states.get(block.keys[index])
            changed[index], block.untils[index] = self._format(
                block.accounts[index], state, now
            )
            block.states[index] = state
        block.until = min(block.untils, default=_NEVER)
        for family, raw in enumerate(block.raw):
            offsets = block.offsets[family]
            if all(raw[offsets[i]:offsets[i + 1]] == lines[family]
                   for i, lines in changed.items()):
                continue
            view = memoryview(raw)
            parts: list[bytes | memoryview] = []
            lengths = list(map(operator.sub, offsets[1:], offsets[:-1]))
            start = 0
            for index, lines in changed.items():
                parts.append(view[offsets[start]:offsets[index]])
                parts.append(lines[family])
                lengths[index] = len(lines[family])
                start = index + 1
            parts.append(view[offsets[start]:])
            block.raw[family] = b"".join(parts)
            block.offsets[family] = array("I", accumulate(lengths, initial=0))
            block.deflated[family] = None
            self.stats.segments_changed += 1

    def _lay_out(
        self,
        accounts: Sequence[Account],
        states: Mapping[Key, AccountState],
        now: datetime,
        now_us: int,
    ) -> None:
        """Cut the configured accounts into blocks again (first scrape, config changed).

        An account whose state, ``silence_after`` and window edge are as before keeps its
        lines (taken from its old block); a block whose text is as before keeps its
        deflated segments. Accounts no longer configured are forgotten.
        """
        self.stats.layouts += 1
        old_blocks, old_index, size = self._blocks, self._index, self._block_size
        first: dict[Key, Account] = {}
        for account in accounts:  # a duplicate would make the exposition invalid: keep one
            first.setdefault(account.key, account)
        unique, keys = list(first.values()), list(first)
        blocks = []
        for number, start in enumerate(range(0, len(unique), size)):
            block = _Block(unique[start:start + size], keys[start:start + size])
            texts: list[list[bytes]] = []
            for account, key in zip(block.accounts, block.keys, strict=True):
                state = states.get(key)
                place = old_index.get(key)
                if place is not None:
                    old, i = old_blocks[place // size], place % size
                    if (old.states[i] is state and old.untils[i] > now_us
                            and old.accounts[i].silence_after == account.silence_after):
                        cut = old.offsets
                        texts.append([raw[cut[f][i]:cut[f][i + 1]]
                                      for f, raw in enumerate(old.raw)])
                        block.states.append(state)
                        block.untils.append(old.untils[i])
                        continue
                lines, until = self._format(account, state, now)
                texts.append(lines)
                block.states.append(state)
                block.untils.append(until)
            block.until = min(block.untils, default=_NEVER)
            previous = old_blocks[number] if number < len(old_blocks) else None
            for family in range(len(FAMILIES)):
                parts = [lines[family] for lines in texts]
                raw = b"".join(parts)
                block.raw.append(raw)
                block.offsets.append(array("I", accumulate(map(len, parts), initial=0)))
                same = previous is not None and previous.raw[family] == raw
                block.deflated.append(previous.deflated[family] if same else None)
            blocks.append(block)
        self._blocks = blocks
        self._index = {key: place for place, key in enumerate(keys)}
        self._configured = _Seen(accounts)

    # -- the rest -------------------------------------------------------------------------
    def _static_part(self) -> list[bytes | None]:
        missing, agencies = self._view.missing, self._view.agencies
        known = self._static_inputs
        if not (self._static[0] and known[0].matches(missing) and known[1].matches(agencies)):
            self.stats.static_renders += 1
            self._static = [self._render_static(), None]
            self._static_inputs = (_Seen(missing), _Seen(agencies))
        return self._static

    def _segment(self, cached: list[bytes | None], deflate: bool) -> Segment:
        raw = cached[0]
        assert raw is not None
        if deflate and cached[1] is None:
            cached[1] = self._deflate(raw)
        return raw, cached[1]

    def _deflate(self, raw: bytes) -> Deflated:
        self.stats.segments_deflated += 1
        return deflated(raw, self.level)


class _Seen:
    """A sequence of the view as the cache last used it: the object, and its length.

    The view replaces a sequence when the config changes (a reload brings a new ``Config``);
    the length also catches one grown or shrunk in place. Holding the object keeps its
    identity from being reused.
    """

    __slots__ = ("items", "length")

    def __init__(self, items: Sequence[object] = ()) -> None:
        self.items = items
        self.length = len(items)

    def matches(self, items: Sequence[object]) -> bool:
        return items is self.items and len(items) == self.length


#: The families whose values repeat from account to account (thresholds, counts, 0 and 1),
#: formatted with ``floatToGoString`` (as ``generate_latest``) remembering recent values.
_REPEATING = frozenset((SUCCESS, THRESHOLD, POSTS))
_go_float = functools.lru_cache(maxsize=256)(floatToGoString)


def _help(doc: str) -> str:
    return doc.replace("\\", r"\\").replace("\n", r"\n")

"""Tests for monitor.exposition: the cached exposition equals a fresh one, byte for byte.

The reference is the uncached path: ``generate_latest(metrics.registry)`` runs the
collector's ``collect()``, which builds every family afresh. The clock is the view's
``now()``; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import gzip
import random
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from monitor.exposition import (
    FAMILIES,
    Deflated,
    ExpositionCache,
    account_series,
    deflate,
    deflated,
    post_windows,
    stored,
)
from monitor.metrics import AgencyInfo, Metrics, gzip_segments
from monitor.model import Account, CheckResult, Observation, Post, Timeout
from monitor.state import POST_WINDOWS, AccountState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
US = timedelta(microseconds=1)


def account(i: int, agency: str | None = None, silence_after: float = 7 * 86400.0) -> Account:
    name = f"https://dinas{i}.example.go.id/feed/?q=\"{i}\"\\"  # quotes and a backslash
    return Account(agency=agency or f"dinas-{i % 7}", platform=("rss", "youtube")[i % 2],
                   account=name, url=name, interval=1800.0, timeout=20.0,
                   silence_after=silence_after)


@dataclass
class View:
    """A MetricsView over plain fields; ``at`` is the clock."""

    accounts: list[Account] = field(default_factory=list)
    agencies: list[AgencyInfo] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str, str], AccountState] = field(default_factory=dict)
    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


def success(acc: Account, at: datetime, posts: list[datetime]) -> CheckResult:
    obs = Observation.from_posts(
        [Post(published_at=t, id=f"p{t.timestamp()}") for t in posts], method="feed")
    return CheckResult(account=acc, checked_at=at, ok=True, duration=0.2, observation=obs)


def unchanged(acc: Account, at: datetime) -> CheckResult:
    return CheckResult(account=acc, checked_at=at, ok=True, duration=0.01,
                       observation=Observation.not_modified("feed"))


def failure(acc: Account, at: datetime) -> CheckResult:
    return CheckResult.failure(acc, at, 20.0, Timeout("no answer in 20s"))


def fresh(metrics: Metrics) -> bytes:
    """The exposition formatted afresh, through collect() (no cache)."""
    return generate_latest(metrics.registry)


def assert_consistent(metrics: Metrics) -> None:
    raw = metrics.render()
    assert raw == fresh(metrics)
    packed = metrics.render_gzip()
    assert gzip.decompress(packed) == raw
    core = metrics.core_segments()
    assert all(zlib.decompressobj(-15).decompress(d) == r for r, d in core)
    assert raw.startswith(b"".join(r for r, _ in core))


def filled(n: int, block_size: int = 4) -> tuple[View, Metrics]:
    view = View(
        accounts=[account(i) for i in range(n)],
        agencies=[AgencyInfo(f"dinas-{a}", f"Dinas {a}", "dinas") for a in range(7)],
        missing=[(f"dinas-{a}", "instagram") for a in range(7)],
    )
    for i, acc in enumerate(view.accounts):
        if i % 5:
            view.states[acc.key] = AccountState().apply(
                success(acc, NOW, [NOW - k * DAY - i * timedelta(minutes=7) for k in range(3)]))
    metrics = Metrics(view, "1.2.3", block_size=block_size)
    metrics.init_platforms(["rss", "youtube"])
    return view, metrics


# -- property: any sequence of changes ---------------------------------------------------------


class Scenario:
    """Random changes to a view, as the daemon and its config make them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = [account(i) for i in range(40)]
        self.view, self.metrics = filled(0, block_size=self.rng.choice([1, 2, 3, 5, 128]))
        self.view.accounts = self.rng.sample(self.pool, 12)
        self.view.agencies = [AgencyInfo(f"dinas-{a}", f"Dinas {a}", "g") for a in range(7)]

    def post_time(self) -> datetime:
        """Mostly in the windows, sometimes in the future (entering later) or long ago."""
        now = self.view.at
        return now + self.rng.choice([
            -timedelta(seconds=self.rng.uniform(0, 35 * 86400)),
            timedelta(seconds=self.rng.uniform(0, 3 * 86400)),
            -7 * DAY, -30 * DAY, timedelta(0), timedelta(hours=1),
        ])

    def check(self) -> None:
        acc = self.rng.choice(self.pool)  # configured or not
        before = self.view.states.get(acc.key, AccountState())
        kind = self.rng.random()
        at = self.view.at
        if kind < 0.2:
            result = failure(acc, at)
        elif kind < 0.5:
            result = unchanged(acc, at)
        else:
            result = success(acc, at, [self.post_time() for _ in range(self.rng.randint(0, 4))])
        self.view.states[acc.key] = before.apply(result)

    def forget(self) -> None:
        """A state goes away or moves to the end of the dict (the fallback path)."""
        if self.view.states:
            key = self.rng.choice(list(self.view.states))
            state = self.view.states.pop(key)
            if self.rng.random() < 0.5:
                self.view.states[key] = state

    def reconfigure(self) -> None:
        view, rng = self.view, self.rng
        accounts = list(view.accounts)
        choice = rng.random()
        if choice < 0.25:
            accounts.insert(rng.randrange(len(accounts) + 1), rng.choice(self.pool))  # maybe dup
        elif choice < 0.45 and accounts:
            del accounts[rng.randrange(len(accounts))]
        elif choice < 0.7 and accounts:
            i = rng.randrange(len(accounts))
            accounts[i] = dataclasses.replace(
                accounts[i], silence_after=rng.choice([3600.0, 86400.0, 14 * 86400.0, 1.5]))
        elif choice < 0.8:
            rng.shuffle(accounts)
        elif choice < 0.9:
            agencies = list(view.agencies)
            i = rng.randrange(len(agencies))
            agencies[i] = AgencyInfo(agencies[i].id, f"Dinas \"{rng.random()}\"\n", "g")
            view.agencies = agencies
        else:
            view.missing = [(f"dinas-{rng.randrange(7)}", "facebook")
                            for _ in range(rng.randrange(4))]
        if rng.random() < 0.2 and accounts == view.accounts:
            view.accounts.append(rng.choice(self.pool))  # grown in place
        else:
            view.accounts = accounts

    def tick(self) -> None:
        """Move the clock: a little, a lot, or onto a window edge of some post (or 1 µs off)."""
        view, rng = self.view, self.rng
        edges = [t + length + jitter
                 for state in view.states.values() for t in state.posts.values()
                 for length in (timedelta(0), *POST_WINDOWS.values())
                 for jitter in (-US, timedelta(0), US)]
        ahead = [edge for edge in edges if edge > view.at]
        choice = rng.random()
        if choice < 0.5 and ahead:
            view.at = min(ahead) if rng.random() < 0.5 else rng.choice(ahead)
        elif choice < 0.8:
            view.at += timedelta(seconds=rng.uniform(0, 7200))
        elif choice < 0.95:
            view.at += timedelta(days=rng.uniform(0, 20))
        else:
            view.at -= timedelta(hours=rng.uniform(0, 48))  # a clock set back

    def step(self) -> None:
        action = self.rng.choices(
            [self.check, self.forget, self.reconfigure, self.tick], weights=[8, 1, 2, 4])[0]
        action()


@pytest.mark.parametrize("seed", range(20))
def test_cached_exposition_equals_a_fresh_one(seed):
    """Over random checks, forgotten states, config changes and clock moves across window
    edges, every scrape (raw, gzip, core segments) equals the uncached render."""
    scenario = Scenario(seed)
    metrics = scenario.metrics
    for _ in range(60):
        for _ in range(scenario.rng.randint(1, 4)):
            scenario.step()
        if scenario.rng.random() < 0.3:
            metrics.observe_check(failure(scenario.pool[0], scenario.view.at))
        assert_consistent(metrics)
    assert metrics.collector.cache.stats.layouts > 1


def test_cached_exposition_at_every_window_edge():
    """Posts entering from the future and leaving both windows: the count changes exactly at
    each edge, and the cache follows it to the microsecond."""
    view, metrics = filled(0)
    acc = account(1)
    view.accounts = [acc]
    posts = [NOW + DAY, NOW - 6 * DAY, NOW - 29 * DAY]
    view.states[acc.key] = AccountState().apply(success(acc, NOW, posts))
    edges = sorted({t + length for t in posts
                    for length in (timedelta(0), *POST_WINDOWS.values())})
    counts = []
    for edge in edges:
        for at in (edge - US, edge, edge + US):
            view.at = at
            assert_consistent(metrics)
            counts.append([view.states[acc.key].post_count(at, w)
                           for w in POST_WINDOWS.values()])
    assert len({tuple(c) for c in counts}) >= 4  # the windows did fill and empty


# -- what a scrape redoes --------------------------------------------------------------------


def test_warm_scrape_formats_and_compresses_nothing():
    view, metrics = filled(40)
    metrics.render_gzip()
    stats = dataclasses.replace(metrics.collector.cache.stats)
    assert metrics.render_gzip() == metrics.render_gzip()
    after = metrics.collector.cache.stats
    assert after.scrapes == stats.scrapes + 2
    assert (after.accounts_formatted, after.blocks_refreshed, after.segments_deflated,
            after.layouts, after.static_renders) == (
        stats.accounts_formatted, stats.blocks_refreshed, stats.segments_deflated,
        stats.layouts, stats.static_renders)


def test_one_changed_state_rebuilds_only_its_block():
    """A check of one account reformats that account only, and only the block families
    whose text changed are compressed again; the other blocks keep their very bytes."""
    view, metrics = filled(40, block_size=4)
    metrics.render_gzip()
    cache = metrics.collector.cache
    blocks = list(cache._blocks)
    before = [(list(b.raw), list(b.deflated)) for b in blocks]
    stats = dataclasses.replace(cache.stats)
    acc = view.accounts[13]  # block 3, place 1
    view.at = NOW + timedelta(minutes=1)
    view.states[acc.key] = view.states[acc.key].apply(unchanged(acc, view.at))
    assert gzip.decompress(metrics.render_gzip()) == fresh(metrics)
    after = cache.stats
    assert after.blocks_refreshed - stats.blocks_refreshed == 1
    assert after.accounts_formatted - stats.accounts_formatted == 1
    # last check and last success changed; success, posts, threshold, last post did not
    assert after.segments_changed - stats.segments_changed == 2
    assert after.segments_deflated - stats.segments_deflated == 2
    assert cache._blocks == blocks
    for number, (block, (raw, packed)) in enumerate(zip(blocks, before, strict=True)):
        same = [a is b for a, b in zip(block.raw, raw, strict=True)]
        kept = [a is b for a, b in zip(block.deflated, packed, strict=True)]
        if number == 3:
            assert same == kept == [True, False, False, True, True, True]
        else:
            assert all(same) and all(kept)


def test_new_states_are_found_without_a_full_lookup():
    """A first check (a key added to the states) refreshes just its block."""
    view, metrics = filled(40, block_size=4)
    never = view.accounts[5]  # i % 5 == 0: no state yet
    assert never.key not in view.states
    metrics.render()
    stats = dataclasses.replace(metrics.collector.cache.stats)
    view.states[never.key] = AccountState().apply(failure(never, NOW))
    assert metrics.render() == fresh(metrics)
    after = metrics.collector.cache.stats
    assert after.blocks_refreshed - stats.blocks_refreshed == 1
    assert after.accounts_formatted - stats.accounts_formatted == 1


def test_window_edge_reformats_only_that_account():
    view, metrics = filled(0, block_size=2)
    view.accounts = [account(i) for i in range(6)]
    for acc in view.accounts:
        view.states[acc.key] = AccountState().apply(success(acc, NOW, [NOW - 40 * DAY]))
    soon = view.accounts[3]
    view.states[soon.key] = AccountState().apply(success(soon, NOW, [NOW - 7 * DAY + DAY]))
    metrics.render()
    stats = dataclasses.replace(metrics.collector.cache.stats)
    view.at = NOW + DAY - US
    metrics.render()
    assert metrics.collector.cache.stats.accounts_formatted == stats.accounts_formatted
    view.at = NOW + DAY  # the post leaves the 7d window
    assert metrics.render() == fresh(metrics)
    assert b'window="7d"} 0.0' in metrics.render()
    after = metrics.collector.cache.stats
    assert after.accounts_formatted - stats.accounts_formatted == 1
    assert after.segments_changed - stats.segments_changed == 1  # pantau_posts only


def test_reload_keeps_unchanged_accounts_and_forgets_removed_ones():
    view, metrics = filled(40, block_size=8)
    metrics.render_gzip()
    cache = metrics.collector.cache
    stats = dataclasses.replace(cache.stats)
    # A reload: new Account objects, one threshold changed, ten accounts gone, one new.
    accounts = [dataclasses.replace(a) for a in view.accounts[:30]]
    accounts[4] = dataclasses.replace(accounts[4], silence_after=3600.0)
    accounts.append(account(99))
    view.accounts = accounts
    assert_consistent(metrics)
    after = cache.stats
    assert after.layouts == stats.layouts + 1
    assert after.accounts_formatted - stats.accounts_formatted == 2
    assert len(cache._index) == 31
    assert sum(len(block.keys) for block in cache._blocks) == 31
    assert b"dinas35." not in metrics.render()
    # The same config again: nothing is formatted, and equal blocks keep their deflate.
    stats = dataclasses.replace(cache.stats)
    view.accounts = list(view.accounts)
    metrics.render_gzip()
    assert cache.stats.accounts_formatted == stats.accounts_formatted
    assert cache.stats.segments_deflated == stats.segments_deflated


def test_static_families_follow_their_inputs():
    view, metrics = filled(3)
    metrics.render()
    cache = metrics.collector.cache
    renders = cache.stats.static_renders
    metrics.render()
    assert cache.stats.static_renders == renders
    view.agencies = [*view.agencies[:-1], AgencyInfo("dinas-6", "Dinas Enam", "kecamatan")]
    assert b'name="Dinas Enam"' in metrics.render()
    view.missing.append(("dinas-1", "tiktok"))  # grown in place
    assert b'platform="tiktok"' in metrics.render()
    assert cache.stats.static_renders == renders + 2
    assert metrics.render() == fresh(metrics)


def test_clock_set_back_is_served_right():
    view, metrics = filled(10)
    view.at = NOW + 8 * DAY
    assert metrics.render() == fresh(metrics)
    view.at = NOW
    assert metrics.render() == fresh(metrics)


# -- gzip --------------------------------------------------------------------------------------


def test_gzip_is_one_standard_member():
    _, metrics = filled(40)
    packed = metrics.render_gzip()
    assert packed[:4] == b"\x1f\x8b\x08\x00"
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the CRC-32 and the size
    assert member.decompress(packed) == metrics.render()
    assert member.eof and member.unused_data == b""


@pytest.mark.skipif(shutil.which("gzip") is None, reason="no gzip(1) here")
def test_gzip_tool_accepts_it():
    _, metrics = filled(40)
    packed = metrics.render_gzip()
    assert subprocess.run(["gzip", "-t"], input=packed, check=False).returncode == 0
    out = subprocess.run(["gzip", "-dc"], input=packed, capture_output=True, check=True)
    assert out.stdout == metrics.render()


def test_gzip_segments_joins_cached_and_fresh_pieces():
    pieces = [b"a" * 5000, b"", b"b\n" * 300, b"c", b"d" * 70000]
    segments = [(p, deflate(p) if i % 2 else None) for i, p in enumerate(pieces)]
    assert gzip.decompress(gzip_segments(segments)) == b"".join(pieces)
    assert gzip.decompress(gzip_segments([])) == b""


def test_stored_segments_need_no_zlib_and_decompress_alike():
    """compress=False: pieces without a deflated form go out as stored deflate blocks
    (including one longer than a stored block's 65,535 bytes), and the member is valid."""
    pieces = [b"a" * 5000, b"", b"b\n" * 300, b"c", b"d" * 140000, b"e" * 65535]
    segments = [(p, deflate(p) if i % 3 == 2 else None) for i, p in enumerate(pieces)]
    packed = gzip_segments(segments, compress=False)
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)  # checks the CRC-32 and the size
    assert member.decompress(packed) == b"".join(pieces)
    assert member.eof and member.unused_data == b""
    plain = gzip_segments([(p, None) for p in pieces], compress=False)
    assert len(plain) > len(b"".join(pieces))  # stored: not compressed
    assert gzip.decompress(plain) == b"".join(pieces)
    assert zlib.decompressobj(-15).decompress(stored(b"x" * 70000)) == b"x" * 70000


def test_deflated_segments_bring_their_crc():
    """A cached segment (Deflated) carries its text's CRC-32: gzip_segments chains it
    without reading the text, and the result still checks out."""
    raw = b"pantau_posts 1\n" * 900
    packed = deflated(raw)
    assert isinstance(packed, Deflated)
    assert packed.crc == zlib.crc32(raw) and packed.shift.length == len(raw)
    assert zlib.decompressobj(-15).decompress(packed) == raw
    body = gzip_segments([(b"head\n", None), (raw, packed), (b"tail\n", None)])
    assert gzip.decompress(body) == b"head\n" + raw + b"tail\n"
    # a Deflated segment whose CRC lied would break the member: proof the CRC is used
    liar = deflated(raw)
    liar.crc ^= 1
    with pytest.raises(gzip.BadGzipFile, match="CRC"):
        gzip.decompress(gzip_segments([(raw, liar)]))


def test_lazy_scrape_then_deflate_pending():
    """A scrape with deflate=False leaves changed segments pending; deflate_pending compresses
    them (a few at a time) and the next gzip needs no compression of its own."""
    view, metrics = filled(40, block_size=4)
    first = gzip_segments(metrics.segments(deflate=False), compress=False)
    assert gzip.decompress(first) == metrics.render()
    stats = metrics.collector.cache.stats
    assert stats.segments_deflated == 0
    rounds = 0
    while metrics.deflate_pending(5):
        rounds += 1
    assert rounds >= 3 and stats.segments_deflated > 15
    assert not metrics.deflate_pending(5)
    after = stats.segments_deflated
    core = metrics.collector.segments(deflate=False)
    assert all(isinstance(packed, Deflated) for raw, packed in core if raw)
    assert stats.segments_deflated == after
    second = gzip_segments(metrics.segments(deflate=False), compress=False)
    assert gzip.decompress(second) == metrics.render()
    assert len(second) < len(first) / 2


def test_a_segment_changed_while_deflating_is_not_installed():
    """take_pending hands out a text; if the block's text changed before install, the stale
    deflated form is dropped (the next scrape would otherwise serve old values)."""
    view, metrics = filled(8, block_size=4)
    cache = metrics.collector.cache
    cache.segments(deflate=False)
    pending = cache.take_pending(1000)
    assert pending
    done = [(item, deflated(item[2])) for item in pending]
    acc = view.accounts[1]
    view.at += timedelta(seconds=1)
    view.states[acc.key] = view.states[acc.key].apply(failure(acc, view.at))
    cache.segments(deflate=False)  # the block of account 1 is formatted again
    cache.install(done)
    assert gzip.decompress(gzip_segments(cache.segments(deflate=False), compress=False)) \
        == b"".join(raw for raw, _ in cache.segments(deflate=False))
    assert any(packed is None for raw, packed in cache.segments(deflate=False) if raw)
    assert_consistent(metrics)


def test_core_segments_hold_the_core_families_only():
    view, metrics = filled(10)
    metrics.observe_check(failure(view.accounts[0], NOW))
    core = metrics.core_segments()
    text = gzip.decompress(gzip_segments(core)).decode()
    assert text == b"".join(raw for raw, _ in core).decode()
    for name, _ in FAMILIES:
        assert f"# TYPE {name} gauge" in text
    assert "pantau_build_info" in text and "pantau_agency_info" in text
    assert "pantau_check_duration_seconds" not in text and "pantau_check_errors" not in text


# -- the registry around it ------------------------------------------------------------------


def test_foreign_collectors_keep_their_place():
    """Collectors registered on a given registry before pantau's keep their order."""

    class Before:
        def collect(self):
            yield GaugeMetricFamily("aaa_first", "Registered first.", value=1)

    registry = CollectorRegistry()
    registry.register(Before())
    view, metrics = filled(6)
    metrics = Metrics(view, "v", registry=registry, block_size=2)
    metrics.register(CollectorRegistry())
    text = metrics.render()
    assert text == generate_latest(registry)
    assert text.startswith(b"# HELP aaa_first")
    assert gzip.decompress(metrics.render_gzip()) == text


def test_collect_outside_a_scrape_is_the_real_families():
    """Readers of the registry (get_sample_value) see the real families, not a placeholder."""
    view, metrics = filled(6)
    metrics.render()
    acc = view.accounts[1]
    labels = {"agency": acc.agency, "platform": acc.platform, "account": acc.account}
    assert metrics.registry.get_sample_value("pantau_check_success", labels) == 1.0
    names = {family.name for family in metrics.registry.collect()}
    assert "pantau_posts" in names and "pantau_core_placeholder" not in names


def test_post_windows_match_post_count():
    rng = random.Random(7)
    acc = account(1)
    for _ in range(200):
        posts = [NOW + timedelta(seconds=rng.uniform(-40, 5) * 86400) for _ in range(6)]
        state = AccountState().apply(success(acc, NOW - 40 * DAY, posts))
        at = NOW + rng.choice([timedelta(0), timedelta(seconds=rng.uniform(-3, 3) * 86400)])
        counts, edge = post_windows(state, at)
        assert counts == [(w, state.post_count(at, n)) for w, n in POST_WINDOWS.items()]
        if edge is None:
            continue
        assert edge > at
        later = [(w, state.post_count(edge - US, n)) for w, n in POST_WINDOWS.items()]
        assert later == counts  # nothing changes before the edge
        assert post_windows(state, edge)[0] != counts  # ... and something does at it


def test_account_series_without_state_is_the_threshold_only():
    acc = account(1, silence_after=60.0)
    assert account_series(acc, None, NOW) == ([(4, "", 60.0)], None)


def test_block_size_must_be_positive():
    with pytest.raises(ValueError):
        ExpositionCache(View(), lambda: b"", block_size=0)

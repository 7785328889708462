"""Prometheus metrics: a collector over the current state, and the counters that accumulate.

:class:`PantauCollector` exports what a :class:`MetricsView` holds right now (and, after a
restart, what the store knew: the daemon fills the view before it serves). Its ``collect()``
builds the families afresh; a scrape (:meth:`Metrics.render`, :meth:`Metrics.render_gzip`)
instead takes its text from :class:`monitor.exposition.ExpositionCache`, which formats and
compresses only what changed since the last scrape, byte for byte the same text.
:class:`Metrics` owns a private registry holding that collector plus the check-duration
histogram and the error counter.

Only configured accounts are exported; a series appears only once its value is known, so
``time() - pantau_last_post_timestamp_seconds`` never compares against a made-up zero.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from monitor.config import AgencyInfo  # re-exported: the one agency record
from monitor.exposition import (
    ACCOUNT_LABELS,
    BLOCK_SIZE,
    FAMILIES,
    POSTS,
    ExpositionCache,
    Pending,
    Segment,
    account_series,
    deflated,
    gzip_segments,
    label_text,
)
from monitor.model import REASONS, Account, CheckResult
from monitor.state import AccountState

__all__ = [
    "DURATION_BUCKETS",
    "AgencyInfo",
    "AgencyLike",
    "Metrics",
    "MetricsView",
    "PantauCollector",
    "Segment",
    "gzip_segments",
]

#: Buckets of ``pantau_check_duration_seconds``: a fast feed (50 ms) up to a slow page (60 s).
DURATION_BUCKETS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, float("inf"),
)


class AgencyLike(Protocol):
    """Anything with an agency's ``id``, ``name`` and ``group`` (the config's agency model)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def group(self) -> str | None: ...


class MetricsView(Protocol):
    """What the collector reads on each scrape. The daemon implements it over its state.

    The scrape cache (:mod:`monitor.exposition`) relies on identity: a state that changes is
    a new object (an :class:`AccountState` is replaced in ``states``, never mutated once
    there), and so is a changed ``accounts``, ``agencies`` or ``missing`` sequence (a reload
    brings a new ``Config``; one grown or shrunk in place is seen too, an element replaced
    in place is not).
    """

    @property
    def accounts(self) -> Sequence[Account]:
        """Every configured account."""

    @property
    def agencies(self) -> Sequence[AgencyLike]:
        """Every configured agency."""

    @property
    def missing(self) -> Sequence[tuple[str, str]]:
        """``(agency, platform)`` pairs that are expected but have no account configured."""

    @property
    def states(self) -> Mapping[tuple[str, str, str], AccountState]:
        """The last known state of each account, by :attr:`Account.key`."""

    def now(self) -> datetime:
        """The current time (timezone-aware UTC), the end of the ``pantau_posts`` windows."""


class PantauCollector(Collector):
    """Exports the configured accounts and their last known state.

    ``collect()`` builds the families afresh (for ``get_sample_value`` and other readers of
    the registry); :meth:`segments` gives the same text from the cache, as a scrape wants it.

    A scrape looks like this (``# HELP`` lines left out; ``{...}`` stands for the account
    labels ``account="dinsos.cilegon",agency="dinsos",platform="instagram"``)::

        # TYPE pantau_last_post_timestamp_seconds gauge
        pantau_last_post_timestamp_seconds{...} 1.7636089e+09
        # TYPE pantau_last_check_timestamp_seconds gauge
        pantau_last_check_timestamp_seconds{...} 1.7637e+09
        # TYPE pantau_last_success_timestamp_seconds gauge
        pantau_last_success_timestamp_seconds{...} 1.7637e+09
        # TYPE pantau_check_success gauge
        pantau_check_success{account="dinsos.cilegon",agency="dinsos",platform="instagram"} 1.0
        # TYPE pantau_silence_threshold_seconds gauge
        pantau_silence_threshold_seconds{...} 1.2096e+06
        # TYPE pantau_posts gauge
        pantau_posts{...,window="7d"} 3.0
        pantau_posts{...,window="30d"} 11.0
        # TYPE pantau_account_missing gauge
        pantau_account_missing{agency="dinsos",platform="facebook"} 1.0
        # TYPE pantau_agency_info gauge
        pantau_agency_info{agency="dinsos",group="dinas",name="Dinas Sosial Kota Cilegon"} 1.0
        # TYPE pantau_build_info gauge
        pantau_build_info{version="0.1.0"} 1.0

    ``pantau_last_post_timestamp_seconds``, ``..._last_check_...``, ``..._last_success_...``
    and ``pantau_check_success`` appear only once known; ``pantau_posts`` once the account
    has had a successful check; ``pantau_silence_threshold_seconds`` always. The histogram
    and counter of :class:`Metrics` follow on the same registry.
    """

    def __init__(self, view: MetricsView, version: str, *, block_size: int = BLOCK_SIZE) -> None:
        self._view = view
        self._version = version
        self._cache = ExpositionCache(view, self._static_exposition, block_size=block_size)
        self._stand_in = threading.local()
        # The server thread scrapes while the daemon may build a snapshot in another thread.
        self._lock = threading.Lock()
        #: Segments found pending by the last scan and not yet deflated (deflate_pending);
        #: install() drops any whose text changed or that got deflated meanwhile.
        self._to_deflate: deque[Pending] = deque()

    @property
    def cache(self) -> ExpositionCache:
        """The cached exposition of these families (see :mod:`monitor.exposition`)."""
        return self._cache

    def segments(self, *, deflate: bool = True) -> list[Segment]:
        """The exposition of this collector as it is now, from the cache, as segments.
        Safe from any thread (one at a time)."""
        with self._lock:
            return self._cache.segments(deflate=deflate)

    def deflate_pending(self, limit: int) -> bool:
        """Deflate up to ``limit`` cached segments left without a deflated form (see
        :meth:`ExpositionCache.take_pending`); True if it found ``limit`` (others may
        remain). The cache is scanned once for all of them, and the calls that follow take
        from that list until it is used up (a scan per call made draining N segments cost
        N^2 / limit steps). The lock is held to take and to install, not while compressing:
        a scrape meanwhile is not held up. Safe from any thread."""
        with self._lock:
            if not self._to_deflate:
                self._to_deflate.extend(self._cache.take_pending())
            queue = self._to_deflate
            pending = [queue.popleft() for _ in range(min(limit, len(queue)))]
        if not pending:
            return False
        done = [(item, deflated(item[2], self._cache.level)) for item in pending]
        with self._lock:
            self._cache.install(done)
        return len(pending) >= limit

    @contextmanager
    def standing_in(self) -> Iterator[None]:
        """Within it (in this thread), ``collect()`` yields one placeholder family instead of
        the real ones: :meth:`Metrics.segments` puts the cached text in its place."""
        self._stand_in.active = True
        try:
            yield
        finally:
            self._stand_in.active = False

    def collect(self) -> Iterator[Metric]:
        """Yield the gauge families for the view as it is now (formatted afresh)."""
        if getattr(self._stand_in, "active", False):
            yield _Placeholder(self)
            return
        view = self._view
        gauges = [
            _Gauge(name, doc, (*ACCOUNT_LABELS, "window") if family == POSTS else ACCOUNT_LABELS)
            for family, (name, doc) in enumerate(FAMILIES)
        ]
        now = view.now()
        states = view.states
        seen: set[tuple[str, str, str]] = set()
        for account in view.accounts:
            key = account.key
            if key in seen:  # a duplicate would make the whole exposition invalid
                continue
            seen.add(key)
            text = label_text(ACCOUNT_LABELS, key)
            series, _ = account_series(account, states.get(key), now)
            for family, window, value in series:
                if window:
                    gauges[family].add([*key, window], f'{text},window="{window}"', value)
                else:
                    gauges[family].add(list(key), text, value)
        yield from gauges
        yield self._missing()
        yield self._agencies()
        yield self._build()

    def _static_exposition(self) -> bytes:
        """The text of the families that change only with the config (missing, agencies,
        build info)."""
        families = (self._missing(), self._agencies(), self._build())
        return "".join(family.exposition() for family in families).encode()

    def _build(self) -> _Gauge:
        build = _Gauge("pantau_build_info", "pantau's version; always 1.", ("version",))
        build.add([self._version], label_text(("version",), (self._version,)), 1.0)
        return build

    def _missing(self) -> _Gauge:
        family = _Gauge(
            "pantau_account_missing",
            "1 for each platform an agency is expected to use but has no account configured.",
            ("agency", "platform"),
        )
        for pair in dict.fromkeys(self._view.missing):
            family.add(list(pair), label_text(("agency", "platform"), pair), 1.0)
        return family

    def _agencies(self) -> _Gauge:
        names = ("agency", "name", "group")
        family = _Gauge(
            "pantau_agency_info", "Each configured agency, with its name and group; always 1.",
            names,
        )
        seen: set[str] = set()
        for agency in self._view.agencies:
            if agency.id in seen:
                continue
            seen.add(agency.id)
            values = (agency.id, agency.name, agency.group or "")
            family.add(list(values), label_text(names, values), 1.0)
        return family


class _Gauge(Metric):
    """A gauge family that keeps its text exposition, written as samples are added.

    The static families' text for the scrape cache comes from it (instead of formatting
    each sample again with ``generate_latest``), and the ``Sample`` objects are built only
    when someone reads :attr:`samples` (``get_sample_value``, other encoders). The text is
    byte-for-byte what ``generate_latest`` writes; a test holds it to that.
    """

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self._rows: list[tuple[list[str], float]] = []
        self._built: list[Sample] = []
        super().__init__(name, documentation, "gauge")
        self._labelnames = tuple(labels)
        self.lines: list[str] = []

    @property  # type: ignore[override]
    def samples(self) -> list[Sample]:
        """The samples, built from the rows added so far."""
        if len(self._built) < len(self._rows):
            names = self._labelnames
            self._built.extend(
                Sample(self.name, dict(zip(names, values, strict=True)), value)
                for values, value in self._rows[len(self._built):]
            )
        return self._built

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # Metric.__init__ starts with an empty list; samples are added with add() only, so the
        # text and the samples cannot disagree.
        if value:
            raise AttributeError("add samples to a _Gauge with add()")

    def add(self, labels: list[str], label_text: str, value: float) -> None:
        """Add a sample; ``label_text`` is :func:`monitor.exposition.label_text` of it."""
        self._rows.append((labels, value))
        self.lines.append(f"{self.name}{{{label_text}}} {floatToGoString(value)}\n")

    def exposition(self) -> str:
        """The family in Prometheus text format 0.0.4."""
        doc = self.documentation.replace("\\", r"\\").replace("\n", r"\n")
        return f"# HELP {self.name} {doc}\n# TYPE {self.name} gauge\n" + "".join(self.lines)


class _WithoutCreated(Collector):
    """Serves counters and histograms without their ``*_created`` series.

    prometheus_client adds a ``_created`` gauge per labelled child; pantau does not promise
    those names, and turning them off globally (``disable_created_metrics``) would reach
    beyond this registry.
    """

    def __init__(self, *collectors: Collector) -> None:
        self._collectors = collectors

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            for metric in collector.collect():
                created = metric.name + "_created"
                metric.samples = [s for s in metric.samples if s.name != created]
                yield metric


class Metrics:
    """Owns pantau's registry: the state collector plus the series that accumulate.

    ``registry`` is private (never prometheus_client's global ``REGISTRY``), so several
    daemons or tests in one process do not collide.
    """

    def __init__(
        self,
        view: MetricsView,
        version: str,
        registry: CollectorRegistry | None = None,
        *,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.collector = PantauCollector(view, version, block_size=block_size)
        self._durations = Histogram(
            "pantau_check_duration_seconds",
            "How long checks took, per platform.",
            labelnames=("platform",),
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self._errors = Counter(
            "pantau_check_errors",
            "Failed checks, per platform and reason.",
            labelnames=("platform", "reason"),
            registry=None,
        )
        self.registry.register(self.collector)
        self.registry.register(_WithoutCreated(self._durations, self._errors))

    def init_platforms(self, names: Iterable[str]) -> None:
        """Create the zero series of these platforms (every reason), so rate() works at once."""
        for name in names:
            self._durations.labels(name)
            for reason in REASONS:
                self._errors.labels(name, reason)

    def observe_check(self, result: CheckResult) -> None:
        """Record one check: its duration, and on failure one error of its reason.

        A reason outside :data:`monitor.model.REASONS` is counted as ``internal`` so the label
        set stays the documented one.
        """
        platform = result.account.platform
        self._durations.labels(platform).observe(max(0.0, result.duration))
        if not result.ok:
            reason = result.reason if result.reason in REASONS else "internal"
            self._errors.labels(platform, reason).inc()

    def register(self, collector: Collector) -> None:
        """Add another collector (from the core or a plugin) to pantau's registry."""
        self.registry.register(collector)

    def unregister(self, collector: Collector) -> None:
        """Remove a collector added with :meth:`register`."""
        self.registry.unregister(collector)

    def segments(self, *, deflate: bool = True) -> list[Segment]:
        """The registry's exposition as segments, in order (see :func:`gzip_segments`).

        The core collector's come from its cache and, with ``deflate``, carry their deflated
        form; every other family (histogram, counter, plugin collectors) is formatted with
        ``generate_latest`` now and carries None (it is small).
        """
        core = self.collector
        with core.standing_in():
            families = list(self.registry.collect())
        out: list[Segment] = []
        for metric in families:
            if isinstance(metric, _Placeholder):
                out.extend(metric.owner.segments(deflate=deflate))
            else:
                out.append((generate_latest(_One(metric)), None))
        return out

    def deflate_pending(self, limit: int) -> bool:
        """Deflate up to ``limit`` of the core collector's cached segments that have no
        deflated form yet; True while others remain. Safe from any thread."""
        return self.collector.deflate_pending(limit)

    def refresh_cache(self) -> None:
        """Bring the core collector's cache up to date with the view, as a scrape would
        (without compressing). Safe from any thread."""
        self.collector.segments(deflate=False)

    def render(self) -> bytes:
        """The exposition of the registry in Prometheus text format 0.0.4.

        Equal to ``generate_latest(self.registry)``, only faster: pantau's own gauges come
        from the cache; every other family goes through ``generate_latest``.
        """
        return b"".join(raw for raw, _ in self.segments(deflate=False))

    def render_gzip(self) -> bytes:
        """:meth:`render` as one gzip member, compressing only the text that changed."""
        return gzip_segments(self.segments())

    def core_segments(self) -> list[tuple[bytes, bytes]]:
        """The core collector's exposition (per-account and static families; not the
        histogram, the counter or plugin collectors) as ``(raw, deflated)`` segments, for
        :func:`gzip_segments`."""
        out = []
        for raw, packed in self.collector.segments(deflate=True):
            assert packed is not None  # deflate=True: every segment carries it
            out.append((raw, packed))
        return out


class _One(Collector):
    """A collector of one already collected family (to format it with ``generate_latest``)."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterator[Metric]:
        yield self._metric


class _Placeholder(Metric):
    """Where the core collector's families go in :meth:`Metrics.segments`."""

    def __init__(self, owner: PantauCollector) -> None:
        super().__init__("pantau_core_placeholder", "", "gauge")
        self.owner = owner

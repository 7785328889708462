"""Tests for monitor.metrics: the state collector and the accumulating series."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import AgencyInfo, Metrics
from monitor.model import (
    REASONS,
    Account,
    CheckResult,
    Observation,
    Post,
    RateLimited,
    Timeout,
)
from monitor.state import AccountState

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

ALL_METRICS = (
    "pantau_last_post_timestamp_seconds",
    "pantau_last_check_timestamp_seconds",
    "pantau_last_success_timestamp_seconds",
    "pantau_check_success",
    "pantau_silence_threshold_seconds",
    "pantau_posts",
    "pantau_account_missing",
    "pantau_agency_info",
    "pantau_check_duration_seconds",
    "pantau_check_errors",
    "pantau_build_info",
)


def account(agency: str = "dinsos", platform: str = "instagram", name: str = "dinsos.cilegon",
            silence_after: float = 14 * 86400.0) -> Account:
    return Account(agency=agency, platform=platform, account=name, url=f"https://x/{name}",
                   interval=1800.0, timeout=20.0, silence_after=silence_after)


@dataclass
class View:
    """A MetricsView for tests: plain fields and a fixed now."""

    accounts: list[Account] = field(default_factory=list)
    agencies: list[AgencyInfo] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    states: dict[tuple[str, str, str], AccountState] = field(default_factory=dict)
    at: datetime = NOW

    def now(self) -> datetime:
        return self.at


def labels(acc: Account, **extra: str) -> dict[str, str]:
    return {"agency": acc.agency, "platform": acc.platform, "account": acc.account, **extra}


def success(acc: Account, at: datetime, posts: list[datetime], duration: float = 0.3
            ) -> CheckResult:
    obs = Observation.from_posts(
        [Post(published_at=t, id=f"p{i}") for i, t in enumerate(posts)], method="feed"
    )
    return CheckResult(account=acc, checked_at=at, ok=True, duration=duration, observation=obs)


def value(metrics: Metrics, metric: str, /, **lbls: str) -> float | None:
    return metrics.registry.get_sample_value(metric, lbls)


@pytest.fixture
def filled() -> tuple[View, Metrics, Account]:
    acc = account()
    view = View(
        accounts=[acc],
        agencies=[AgencyInfo("dinsos", "Dinas Sosial Kota Cilegon", "dinas")],
        missing=[("dinsos", "facebook")],
    )
    posts = [
        NOW - timedelta(hours=1),
        NOW - 7 * DAY + timedelta(seconds=1),  # just inside 7d
        NOW - 7 * DAY,  # exactly 7d old: outside (now-7d, now], inside 30d
        NOW - 30 * DAY + timedelta(seconds=1),  # just inside 30d
    ]
    view.states[acc.key] = AccountState().apply(success(acc, NOW, posts))
    return view, Metrics(view, "1.2.3"), acc


def test_every_state_metric_has_its_labels_and_values(filled):
    """A checked account exports last post/check/success, success=1, threshold and posts."""
    _, metrics, acc = filled
    lb = labels(acc)
    newest = (NOW - timedelta(hours=1)).timestamp()
    assert value(metrics, "pantau_last_post_timestamp_seconds", **lb) == newest
    assert value(metrics, "pantau_last_check_timestamp_seconds", **lb) == NOW.timestamp()
    assert value(metrics, "pantau_last_success_timestamp_seconds", **lb) == NOW.timestamp()
    assert value(metrics, "pantau_check_success", **lb) == 1.0
    assert value(metrics, "pantau_silence_threshold_seconds", **lb) == 14 * 86400.0


def test_post_windows_count_up_to_their_boundary(filled):
    """pantau_posts counts (now-window, now]: a post exactly 7d old is in 30d but not 7d."""
    _, metrics, acc = filled
    assert value(metrics, "pantau_posts", **labels(acc, window="7d")) == 2.0
    assert value(metrics, "pantau_posts", **labels(acc, window="30d")) == 4.0


def test_post_windows_follow_the_view_clock(filled):
    """As the view's now advances, posts drop out of the 7d window."""
    view, metrics, acc = filled
    view.at = NOW + 2 * DAY
    assert value(metrics, "pantau_posts", **labels(acc, window="7d")) == 1.0
    assert value(metrics, "pantau_posts", **labels(acc, window="30d")) == 3.0


def test_missing_agency_and_build_info(filled):
    """Missing pairs, agency info and build info are exported as 1 with their labels."""
    _, metrics, _ = filled
    assert value(metrics, "pantau_account_missing", agency="dinsos", platform="facebook") == 1.0
    assert value(metrics, "pantau_account_missing", agency="dinsos", platform="youtube") is None
    assert value(metrics, "pantau_agency_info", agency="dinsos",
                 name="Dinas Sosial Kota Cilegon", group="dinas") == 1.0
    assert value(metrics, "pantau_build_info", version="1.2.3") == 1.0


def test_thresholds_differ_per_account():
    """Each configured account exports its own silence threshold."""
    a = account(name="a", silence_after=3600.0)
    b = account(platform="youtube", name="b", silence_after=7 * 86400.0)
    metrics = Metrics(View(accounts=[a, b]), "v")
    assert value(metrics, "pantau_silence_threshold_seconds", **labels(a)) == 3600.0
    assert value(metrics, "pantau_silence_threshold_seconds", **labels(b)) == 7 * 86400.0


def test_failed_check_keeps_last_post_and_sets_success_zero(filled):
    """A failed last check keeps the previous post time and exports check_success 0."""
    view, metrics, acc = filled
    later = NOW + timedelta(hours=1)
    failed = CheckResult.failure(acc, later, 20.0, Timeout("no answer in 20s"))
    view.states[acc.key] = view.states[acc.key].apply(failed)
    lb = labels(acc)
    assert value(metrics, "pantau_last_post_timestamp_seconds", **lb) == (
        NOW - timedelta(hours=1)).timestamp()
    assert value(metrics, "pantau_check_success", **lb) == 0.0
    assert value(metrics, "pantau_last_check_timestamp_seconds", **lb) == later.timestamp()
    assert value(metrics, "pantau_last_success_timestamp_seconds", **lb) == NOW.timestamp()


def test_never_checked_account_exports_only_threshold():
    """An account without state has a threshold series and nothing else."""
    acc = account()
    metrics = Metrics(View(accounts=[acc]), "v")
    lb = labels(acc)
    assert value(metrics, "pantau_silence_threshold_seconds", **lb) == 14 * 86400.0
    for name in ("pantau_last_post_timestamp_seconds", "pantau_last_check_timestamp_seconds",
                 "pantau_last_success_timestamp_seconds", "pantau_check_success"):
        assert value(metrics, name, **lb) is None, name
    assert value(metrics, "pantau_posts", **labels(acc, window="7d")) is None
    assert b'account="dinsos.cilegon"' in metrics.render()
    assert b"pantau_posts{" not in metrics.render()


def test_only_failed_checks_export_no_posts_or_last_post():
    """An account that has only failed has success 0 and last check, but no posts series."""
    acc = account()
    state = AccountState().apply(CheckResult.failure(acc, NOW, 1.0, Timeout("slow")))
    metrics = Metrics(View(accounts=[acc], states={acc.key: state}), "v")
    lb = labels(acc)
    assert value(metrics, "pantau_check_success", **lb) == 0.0
    assert value(metrics, "pantau_last_check_timestamp_seconds", **lb) == NOW.timestamp()
    assert value(metrics, "pantau_last_success_timestamp_seconds", **lb) is None
    assert value(metrics, "pantau_last_post_timestamp_seconds", **lb) is None
    assert value(metrics, "pantau_posts", **labels(acc, window="30d")) is None


def test_successful_account_without_posts_exports_zero_posts():
    """A successful check of an empty account exports posts 0 and no last post time."""
    acc = account()
    state = AccountState().apply(success(acc, NOW, []))
    metrics = Metrics(View(accounts=[acc], states={acc.key: state}), "v")
    assert value(metrics, "pantau_posts", **labels(acc, window="7d")) == 0.0
    assert value(metrics, "pantau_last_post_timestamp_seconds", **labels(acc)) is None


def test_accounts_no_longer_configured_are_not_exported(filled):
    """A state whose account left view.accounts is not exported."""
    view, metrics, acc = filled
    gone = account(name="old.account")
    view.states[gone.key] = AccountState().apply(success(gone, NOW, [NOW - DAY]))
    assert value(metrics, "pantau_last_post_timestamp_seconds", **labels(gone)) is None
    view.accounts = []
    assert value(metrics, "pantau_last_post_timestamp_seconds", **labels(acc)) is None
    assert value(metrics, "pantau_silence_threshold_seconds", **labels(acc)) is None
    assert b"dinsos.cilegon" not in metrics.render()


def test_duplicate_accounts_export_one_series():
    """A duplicated account is exported once, keeping the exposition valid."""
    acc = account()
    metrics = Metrics(View(accounts=[acc, acc], agencies=[AgencyInfo("a", "A", "g")] * 2,
                           missing=[("a", "x"), ("a", "x")]), "v")
    text = metrics.render().decode()
    assert text.count("pantau_silence_threshold_seconds{") == 1
    assert text.count("pantau_agency_info{") == 1
    assert text.count("pantau_account_missing{") == 1


def test_observe_check_counts_errors_and_durations():
    """observe_check feeds the histogram and counts failures by platform and reason."""
    acc = account()
    metrics = Metrics(View(accounts=[acc]), "v")
    metrics.observe_check(success(acc, NOW, [NOW], duration=0.07))
    metrics.observe_check(CheckResult.failure(acc, NOW, 2.0, RateLimited("429", 60.0)))
    metrics.observe_check(CheckResult.failure(acc, NOW, 3.0, RateLimited("429", 60.0)))
    p = {"platform": "instagram"}
    assert value(metrics, "pantau_check_duration_seconds_count", **p) == 3.0
    assert value(metrics, "pantau_check_duration_seconds_sum", **p) == pytest.approx(5.07)
    assert value(metrics, "pantau_check_duration_seconds_bucket", le="0.1", **p) == 1.0
    assert value(metrics, "pantau_check_duration_seconds_bucket", le="2.5", **p) == 2.0
    assert value(metrics, "pantau_check_duration_seconds_bucket", le="60.0", **p) == 3.0
    assert value(metrics, "pantau_check_errors_total", reason="rate_limited", **p) == 2.0
    assert value(metrics, "pantau_check_errors_total", reason="timeout", **p) is None


def test_observe_check_maps_unknown_reason_to_internal():
    """A failure with a reason outside REASONS is counted as internal."""
    acc = account()
    metrics = Metrics(View(), "v")
    bad = CheckResult(account=acc, checked_at=NOW, ok=False, duration=1.0, reason="weird")
    metrics.observe_check(bad)
    assert value(metrics, "pantau_check_errors_total", platform="instagram",
                 reason="internal") == 1.0
    assert value(metrics, "pantau_check_errors_total", platform="instagram",
                 reason="weird") is None


def test_init_platforms_creates_zero_series():
    """init_platforms pre-creates errors_total 0 for every reason and an empty histogram."""
    metrics = Metrics(View(), "v")
    metrics.init_platforms(["rss", "youtube"])
    for platform in ("rss", "youtube"):
        for reason in REASONS:
            assert value(metrics, "pantau_check_errors_total", platform=platform,
                         reason=reason) == 0.0
        assert value(metrics, "pantau_check_duration_seconds_count", platform=platform) == 0.0
    assert value(metrics, "pantau_check_errors_total", platform="tiktok",
                 reason="timeout") is None


def test_no_created_series_are_exported():
    """Counters and histograms do not add *_created series to the exposition."""
    metrics = Metrics(View(), "v")
    metrics.init_platforms(["rss"])
    assert b"_created" not in metrics.render()


def test_registry_is_private_and_extensible():
    """Two Metrics coexist (never the global REGISTRY) and register() adds a collector."""
    first, second = Metrics(View(), "a"), Metrics(View(), "b")
    assert first.registry is not REGISTRY
    assert REGISTRY.get_sample_value("pantau_build_info", {"version": "a"}) is None

    class Extra:
        def collect(self):
            from prometheus_client.core import GaugeMetricFamily
            yield GaugeMetricFamily("pantau_extra", "An extra gauge.", value=5)

    extra = Extra()
    first.register(extra)
    assert value(first, "pantau_extra") == 5.0
    assert value(second, "pantau_extra") is None
    first.unregister(extra)
    assert value(first, "pantau_extra") is None


def test_given_registry_is_used():
    """A registry passed in receives pantau's collectors."""
    registry = CollectorRegistry()
    Metrics(View(), "9.9", registry=registry)
    assert registry.get_sample_value("pantau_build_info", {"version": "9.9"}) == 1.0


def test_exposition_parses_with_help_and_type_for_every_metric(filled):
    """The exposition passes prometheus_client's parser and has HELP/TYPE for each metric."""
    _, metrics, acc = filled
    metrics.init_platforms(["instagram"])
    metrics.observe_check(CheckResult.failure(acc, NOW, 1.0, Timeout("slow")))
    text = metrics.render().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert set(families) == set(ALL_METRICS)
    assert families["pantau_check_errors"].type == "counter"
    assert families["pantau_check_duration_seconds"].type == "histogram"
    assert families["pantau_posts"].type == "gauge"
    for name in ALL_METRICS:
        exposed = name + "_total" if name == "pantau_check_errors" else name
        assert f"# HELP {exposed} " in text, name
        assert f"# TYPE {exposed} " in text, name


def test_label_values_are_escaped():
    """Quotes, backslashes and newlines in agency names survive the exposition round trip."""
    name = 'Dinas "Sosial"\\ Kota\nCilegon'
    metrics = Metrics(View(agencies=[AgencyInfo("dinsos", name, "dinas")]), "v")
    families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
    (sample,) = families["pantau_agency_info"].samples
    assert sample.labels["name"] == name


def test_render_equals_generate_latest(filled):
    """render()'s fast path writes exactly what prometheus_client's generate_latest writes."""
    view, metrics, acc = filled
    odd = account(agency='a"b', platform="rss", name="https://x/feed?a=1\\n", silence_after=1.5)
    failed = account(platform="youtube", name="@dinsos")
    view.accounts += [odd, failed, account(platform="website", name="never")]
    view.agencies.append(AgencyInfo("kec", "Kecamatan\nCilegon", ""))
    view.states[failed.key] = AccountState().apply(
        CheckResult.failure(failed, NOW, 1.0, Timeout("slow")))
    view.states[odd.key] = AccountState().apply(success(odd, NOW, [NOW]))
    metrics.init_platforms(["instagram", "rss"])
    metrics.observe_check(success(acc, NOW, [NOW], duration=123.0))
    metrics.register(CollectorRegistry())  # an empty extra collector
    assert metrics.render() == generate_latest(metrics.registry)
    assert b'agency="a\\"b"' in metrics.render()


def test_state_samples_cannot_be_replaced():
    """The pre-formatted gauges refuse replaced samples, so text and samples never differ."""
    metrics = Metrics(View(), "v")
    family = next(iter(metrics.collector.collect()))
    with pytest.raises(AttributeError):
        family.samples = [object()]

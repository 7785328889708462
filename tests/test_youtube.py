"""Tests for plugins.youtube end to end: the real plugin, the real HttpClient, a loopback fake
of the YouTube feed, channel pages and Data API v3 (tests/fakes/youtube.py)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import structlog
from fakes.clock import FakeClock
from fakes.youtube import Channel, Video, YoutubeFake, make_app
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from structlog.testing import capture_logs

from monitor.checker import Memo
from monitor.http import HttpClient, Validators
from monitor.model import (
    Account,
    AuthError,
    Blocked,
    CheckError,
    Deferred,
    NotFound,
    Observation,
    ParseError,
    RateLimited,
    Unreachable,
)
from monitor.platform import CheckContext
from monitor.secrets import Secret
from plugins.youtube import (
    YoutubePlatform,
    YoutubeSettings,
    extract_channel_id,
    parse_account,
    parse_channel_feed,
)
from plugins.youtube_api import DataApi, QuotaLedger, next_pacific_midnight

NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)  # 05:00 in Los Angeles (PDT)
TO_PACIFIC_MIDNIGHT = 19 * 3600.0  # 2024-10-11 00:00 PDT = 07:00 UTC
CID = "UCdinsosCilegonChannel01"
NEW_CID = "UCdinsosCilegonChannel02"
OTHER = "UCsomeOtherChannel000001"
KEY = "AIzaSyFAKE-test-key-0123456789abcdefgh"
NEWEST = datetime(2024, 10, 9, 2, 30, tzinfo=UTC)


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def dinsos_videos() -> list[Video]:
    """Out of order, with an edited video, a future premiere, a short and a late upload."""
    return [
        Video("OLDVIDEO001", t("2024-09-01T03:00:00"), added_at=t("2024-10-09T20:00:00")),
        Video("NEWEST00001", NEWEST, updated=t("2024-10-10T11:00:00"),
              added_at=t("2024-10-01T01:00:00")),
        Video("PREMIERE001", t("2024-10-14T08:00:00"), title="Premiere HUT Kota"),
        Video("SHORT000001", t("2024-10-05T06:00:00"), short=True),
        Video("PRIVATE0001", t("2024-10-09T23:00:00"), private=True),
    ]


def dinsos() -> Channel:
    return Channel(CID, handle="DinsosCilegon", custom="DinsosKotaCilegon",
                   username="dinsoscilegon", videos=dinsos_videos())


@dataclass
class Store:
    stored: dict[str, Validators] = field(default_factory=dict)

    def get_validators(self, url: str) -> Validators | None:
        return self.stored.get(url)


@dataclass
class Env:
    fake: YoutubeFake
    base: str
    clock: FakeClock
    platform: YoutubePlatform
    client: HttpClient
    store: Store = field(default_factory=Store)
    memos: dict[str, Memo] = field(default_factory=dict)
    key: bool = False

    def settings(self, **overrides: Any) -> YoutubeSettings:
        values: dict[str, Any] = {
            "feed_url": f"{self.base}/feeds/videos.xml",
            "web_url": self.base,
            "api_url": f"{self.base}/youtube/v3",
        }
        if self.key:
            values["api_key"] = Secret(KEY, "env PANTAU_YOUTUBE_KEY")
        return YoutubeSettings(**{**values, **overrides})

    def ctx(self, account: str, **overrides: Any) -> CheckContext:
        return CheckContext(
            http=self.client.bind("youtube", timeout=5),
            settings=self.settings(**overrides),
            log=structlog.get_logger(),
            clock=self.clock,
            memo=self.memos.setdefault(account, Memo()),
            account=Account(agency="dinsos", platform="youtube", account=account,
                            url=self.platform.url(account), interval=1800.0, timeout=5.0,
                            silence_after=7 * 86400.0),
        )

    async def check(self, account: str, **overrides: Any) -> Observation:
        """One check, as the core runs it: validators are committed only on success."""
        account = self.platform.normalize(account)
        ctx = self.ctx(account, **overrides)
        observation = await self.platform.latest(account, ctx)
        self.store.stored.update(ctx.http.pending_validators)
        return observation

    async def fails(self, account: str, error: type[CheckError], **overrides: Any) -> CheckError:
        with pytest.raises(error) as caught:
            await self.check(account, **overrides)
        return caught.value


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[Env]:
    """A fake YouTube with the dinsos channel, a started HttpClient on a fake clock."""
    fake = YoutubeFake(channels=[dinsos()], api_key=KEY)
    server = await aiohttp_server(make_app(fake))
    clock = FakeClock(NOW)
    store = Store()
    async with HttpClient(user_agent="pantau-test", validators=store, clock=clock,
                          rng=random.Random(7)) as client:
        yield Env(fake=fake, base=str(server.make_url("")).rstrip("/"), clock=clock,
                  platform=YoutubePlatform(), client=client, store=store)


@pytest.fixture
def keyed(env: Env) -> Env:
    """The same, with a Data API key configured."""
    env.key = True
    return env


# -- accounts and settings --------------------------------------------------------------------
@pytest.mark.parametrize(("given", "canonical"), [
    (CID, CID),
    ("  @DinsosCilegon ", "@dinsoscilegon"),
    ("https://www.youtube.com/@DinsosCilegon", "@dinsoscilegon"),
    ("https://www.youtube.com/@DinsosCilegon/videos?si=abc", "@dinsoscilegon"),
    ("youtube.com/@dinsoscilegon", "@dinsoscilegon"),
    (f"https://www.youtube.com/channel/{CID}", CID),
    (f"http://m.youtube.com/channel/{CID}/featured", CID),
    ("https://www.youtube.com/c/DinsosKotaCilegon", "c/DinsosKotaCilegon"),
    ("https://www.youtube.com/user/dinsoscilegon", "user/dinsoscilegon"),
    (f"https://www.youtube.com/feeds/videos.xml?channel_id={CID}", CID),
    ("c/DinsosKotaCilegon", "c/DinsosKotaCilegon"),
    ("https://www.youtube.com/@%D8%AF%D9%8A%D9%86%D8%B3", "@\u062f\u064a\u0646\u0633"),
])
def test_normalize_accepts_ids_handles_and_channel_urls(given: str, canonical: str) -> None:
    """Every accepted form normalises to UC…, a lower-case @handle, c/name or user/name."""
    platform = YoutubePlatform()
    assert platform.normalize(given) == canonical
    assert platform.normalize(canonical) == canonical  # idempotent


@pytest.mark.parametrize(("given", "says"), [
    ("dinsoscilegon", "'@dinsoscilegon'"),
    ("UCdinsos", "22"),
    ("@ab", "3 to 30"),
    ("https://www.youtube.com/watch?v=NEWEST00001", "not a channel"),
    ("https://youtu.be/NEWEST00001", "not a channel"),
    ("https://example.go.id/@dinsos", "not a YouTube URL"),
    ("https://www.youtube.com/", "not a YouTube channel URL"),
    ("ftp://www.youtube.com/@dinsos", "not a YouTube URL"),
    ("", "empty"),
])
def test_normalize_rejects_other_forms_with_a_clear_message(given: str, says: str) -> None:
    """Anything else is a ValueError whose message says what is accepted or what is wrong."""
    with pytest.raises(ValueError) as caught:
        YoutubePlatform().normalize(given)
    assert says in str(caught.value)


def test_url_is_the_public_channel_page() -> None:
    """url() gives the public page for each canonical form."""
    platform = YoutubePlatform()
    assert platform.url(CID) == f"https://www.youtube.com/channel/{CID}"
    assert platform.url("@dinsoscilegon") == "https://www.youtube.com/@dinsoscilegon"
    assert platform.url("c/DinsosKotaCilegon") == "https://www.youtube.com/c/DinsosKotaCilegon"


def test_settings_defaults_and_validation() -> None:
    """Defaults are YouTube's endpoints; bad URLs and literal keys are refused."""
    settings = YoutubeSettings()
    assert settings.feed_url == "https://www.youtube.com/feeds/videos.xml"
    assert settings.api_url == "https://www.googleapis.com/youtube/v3"
    assert (settings.api_key, settings.quota_budget, settings.future_skew) == (None, 10000, 86400)
    assert settings.feed_params(CID) == {"channel_id": CID}
    assert YoutubeSettings(feed_variant="videos").feed_params(CID) == {
        "playlist_id": "UULF" + CID[2:]}
    with pytest.raises(ValidationError, match="http"):
        YoutubeSettings(web_url="www.youtube.com")
    with pytest.raises(ValidationError, match="literal secret"):
        YoutubeSettings(api_key="AIzaSyLiteral")


# -- the feed ---------------------------------------------------------------------------------
async def test_feed_newest_is_max_published_with_method_feed(env: Env) -> None:
    """Max entry `published` over an unsorted feed; `updated`, the feed-level date and a
    future premiere are ignored; id = yt:videoId, url = the alternate link."""
    obs = await env.check(CID)
    assert obs.method == "feed"
    assert obs.latest_post_at == NEWEST
    assert obs.post_id == "NEWEST00001"
    assert obs.post_url == "https://www.youtube.com/watch?v=NEWEST00001"
    assert {p.id for p in obs.posts} == {"OLDVIDEO001", "NEWEST00001", "SHORT000001"}
    [request] = [r for r in env.fake.requests if r.kind == "feed"]
    assert request.query == {"channel_id": CID}


async def test_short_keeps_its_shorts_link(env: Env) -> None:
    """A short is a post too; its URL is the feed's alternate link (/shorts/…)."""
    env.fake.channels[0].videos = [Video("SHORT000001", NEWEST, short=True)]
    obs = await env.check(CID)
    assert obs.post_url == "https://www.youtube.com/shorts/SHORT000001"


async def test_videos_variant_asks_for_the_uulf_playlist(env: Env) -> None:
    """feed_variant=videos reads ?playlist_id=UULF…, which leaves shorts out."""
    env.fake.channels[0].videos.append(Video("SHORT000002", t("2024-10-10T01:00:00"), short=True))
    obs = await env.check(CID, feed_variant="videos")
    assert obs.latest_post_at == NEWEST
    assert env.fake.requests[-1].query == {"playlist_id": "UULF" + CID[2:]}


async def test_channel_without_videos_has_no_post_not_its_creation_date(env: Env) -> None:
    """An empty feed is "no posts": the feed-level published (channel creation) is not a post."""
    env.fake.channels[0].videos = []
    obs = await env.check(CID)
    assert obs == Observation(latest_post_at=None, method="feed")


async def test_feed_is_fetched_conditionally(env: Env) -> None:
    """The second check sends If-None-Match, gets 304 and reports unchanged."""
    first = await env.check(CID)
    second = await env.check(CID)
    assert first.latest_post_at == NEWEST
    assert second == Observation.not_modified("feed")
    assert env.fake.requests[-1].headers["If-None-Match"].startswith('"')
    assert (env.fake.feed_bodies_sent, env.fake.feed_not_modified_sent) == (1, 1)


def test_entries_updated_is_never_a_post_time() -> None:
    """A feed whose entries only have `updated` is a parse error, not a post at `updated`."""
    body = (b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom" '
            b'xmlns:yt="http://www.youtube.com/xml/schemas/2015"><title>x</title>'
            b"<entry><id>yt:video:A</id><yt:videoId>AAAAAAAAAAA</yt:videoId>"
            b"<updated>2024-10-09T02:30:00+00:00</updated></entry></feed>")
    with pytest.raises(ParseError, match="published"):
        parse_channel_feed(body, now=NOW, future_skew=timedelta(days=1))


async def test_html_answer_from_the_feed_is_parse(env: Env, monkeypatch) -> None:
    """A 200 HTML page instead of the feed is reason parse."""
    import fakes.youtube

    monkeypatch.setattr(fakes.youtube, "feed_xml", lambda *a: b"<!DOCTYPE html><html>no</html>")
    error = await env.fails(CID, ParseError)
    assert "HTML" in error.message


# -- resolving handles ------------------------------------------------------------------------
async def test_handle_is_resolved_once_with_a_consent_cookie(env: Env) -> None:
    """An @handle is resolved through its page (SOCS cookie sent, EU redirect avoided) and the
    id is kept in the memo: the next check goes straight to the feed."""
    env.fake.page_mode = "eu"
    obs = await env.check("@DinsosCilegon")
    assert obs.latest_post_at == NEWEST and obs.method == "feed"
    [page] = [r for r in env.fake.requests if r.kind == "page"]
    assert page.path == "/@dinsoscilegon" and "SOCS=" in page.headers["Cookie"]
    assert env.memos["@dinsoscilegon"].get("channel_id") == CID
    await env.check("@dinsoscilegon")
    assert env.fake.count("page") == 1 and env.fake.count("feed") == 2


@pytest.mark.parametrize("account", ["c/DinsosKotaCilegon", "user/dinsoscilegon"])
async def test_custom_and_user_urls_are_resolved_through_their_page(env: Env,
                                                                    account: str) -> None:
    """/c/ and /user/ accounts are resolved through their page too."""
    obs = await env.check(account)
    assert obs.latest_post_at == NEWEST
    assert env.fake.requests[0].path == "/" + account


@pytest.mark.parametrize("carrier", ["canonical", "rss", "external", "og", "channelId"])
async def test_each_id_carrier_of_the_page_is_enough(env: Env, carrier: str) -> None:
    """The canonical link, RSS link, externalId, og:url or a lone channelId each resolve."""
    env.fake.page_carriers = frozenset({carrier})
    obs = await env.check("@dinsoscilegon")
    assert obs.latest_post_at == NEWEST
    assert env.memos["@dinsoscilegon"].get("channel_id") == CID


async def test_other_channels_on_the_page_do_not_confuse_resolution(env: Env) -> None:
    """Featured channels' ids come first in the page JSON: the page's own id still wins, and
    with nothing but ambiguous channelIds the page is a parse error."""
    env.fake.channels[0].featured = [OTHER]
    await env.check("@dinsoscilegon")
    assert env.memos["@dinsoscilegon"].get("channel_id") == CID
    env.fake.page_carriers = frozenset({"channelId"})
    error = await env.fails("c/DinsosKotaCilegon", ParseError)
    assert "no channel id" in error.message


def test_extract_channel_id_reads_attributes_in_any_order() -> None:
    """Attribute order and quoting do not matter for the canonical link."""
    html = f"<head><link href='https://www.youtube.com/channel/{CID}' rel=canonical></head>"
    assert extract_channel_id(html) == CID
    assert extract_channel_id("<html><body>nothing</body></html>") is None


async def test_unknown_handle_is_not_found(env: Env) -> None:
    """A handle whose page answers 404 is reason not_found; the feed is never asked."""
    error = await env.fails("@tidakada", NotFound)
    assert "@tidakada" in error.message and "404" in error.message
    assert env.fake.count("feed") == 0


@pytest.mark.parametrize("mode", ["consent_always", "consent_page"])
async def test_consent_wall_is_blocked(env: Env, mode: str) -> None:
    """A redirect to consent.youtube.com (not followed) or a consent page is reason blocked."""
    env.fake.page_mode = mode
    error = await env.fails("@dinsoscilegon", Blocked)
    assert "consent" in error.message
    assert env.fake.count("page") == 1  # consent.youtube.com itself was never requested


async def test_channel_page_outage_is_unreachable(env: Env) -> None:
    """A 500 from the channel page (after retries) is reason unreachable."""
    env.fake.page_mode = "outage"
    await env.fails("@dinsoscilegon", Unreachable)


# -- feed failures ----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [404, 500])
async def test_feed_outage_after_success_is_unreachable(env: Env, status: int) -> None:
    """Google's 404/500 error page for a channel that worked before: unreachable, not
    not_found, and without fetching its page."""
    await env.check(CID)
    env.fake.feed_outage = status
    error = await env.fails(CID, Unreachable)
    assert str(status) in error.message
    if status == 404:
        assert "outage" in error.message
    assert env.fake.count("page") == 0


async def test_new_channel_id_during_an_outage_is_unreachable_after_page_check(env: Env) -> None:
    """A never-seen UC… with a feed 404: its page shows it exists -> unreachable; the memo
    remembers it, so the next outage check does not fetch the page again."""
    env.fake.feed_outage = 404
    error = await env.fails(CID, Unreachable)
    assert "exists" in error.message
    assert [r.path for r in env.fake.requests if r.kind == "page"] == [f"/channel/{CID}"]
    await env.fails(CID, Unreachable)
    assert env.fake.count("page") == 1


async def test_new_handle_during_an_outage_is_unreachable(env: Env) -> None:
    """A handle just resolved from its page, then a feed 404: the channel exists, so
    unreachable; the page is fetched once."""
    env.fake.feed_outage = 404
    await env.fails("@dinsoscilegon", Unreachable)
    assert env.fake.count("page") == 1


async def test_wrong_channel_id_is_not_found(env: Env) -> None:
    """A never-seen UC… whose feed and channel page both answer 404 is not_found."""
    error = await env.fails(OTHER, NotFound)
    assert "does not exist" in error.message


async def test_unverifiable_new_channel_is_unreachable_with_the_reason(env: Env) -> None:
    """Feed 404 and a consent wall on the page: cannot tell, so unreachable, saying why."""
    env.fake.feed_outage, env.fake.page_mode = 404, "consent_always"
    error = await env.fails(CID, Unreachable)
    assert "could not tell" in error.message and "consent" in error.message


async def test_moved_handle_is_re_resolved_after_three_feed_404s(env: Env) -> None:
    """The memo's id keeps 404ing (the handle now names another channel): the page is fetched
    again on the 3rd consecutive 404 and the feed answers for the new id."""
    await env.check("@dinsoscilegon")
    env.fake.channels = [Channel(NEW_CID, handle="dinsoscilegon", videos=dinsos_videos())]
    for _ in range(2):
        await env.fails("@dinsoscilegon", Unreachable)
    assert env.fake.count("page") == 1
    obs = await env.check("@dinsoscilegon")
    assert obs.latest_post_at == NEWEST
    assert env.fake.count("page") == 2
    assert env.fake.requests[-1].query == {"channel_id": NEW_CID}
    assert env.memos["@dinsoscilegon"].get("channel_id") == NEW_CID


async def test_deleted_channel_is_not_found_on_the_third_404(env: Env) -> None:
    """A channel that worked, then 404s with a 404 page: not_found once its page is
    checked again (3rd consecutive feed 404); unreachable before."""
    await env.check(CID)
    env.fake.channels = []
    for _ in range(2):
        await env.fails(CID, Unreachable)
    error = await env.fails(CID, NotFound)
    assert "deleted" in error.message


# -- the Data API fallback --------------------------------------------------------------------
async def test_fallback_uses_video_published_at_not_snippet(keyed: Env) -> None:
    """Feed down + key: channels -> uploads UU… -> playlistItems(contentDetails, 50); the
    newest is the max videoPublishedAt (not the first item, not snippet.publishedAt)."""
    keyed.fake.feed_outage = 500
    obs = await keyed.check(CID)
    assert obs.method == "data-api"
    assert obs.latest_post_at == NEWEST and obs.post_id == "NEWEST00001"
    assert obs.post_url == "https://www.youtube.com/watch?v=NEWEST00001"
    channels, items = [r.query for r in keyed.fake.requests if r.kind == "api"]
    assert channels["id"] == CID and channels["part"] == "contentDetails"
    assert items["playlistId"] == "UU" + CID[2:]
    assert (items["part"], items["maxResults"]) == ("contentDetails", "50")


async def test_uploads_playlist_is_memoised(keyed: Env) -> None:
    """The second fallback skips the channels call: 1 unit per check after the first."""
    keyed.fake.feed_outage = 404
    await keyed.check(CID)
    await keyed.check(CID)
    assert keyed.fake.api_calls == {"channels": 1, "playlistItems": 2}
    assert keyed.platform.ledger.used_today == 3


async def test_blocked_page_handle_is_resolved_through_the_api(keyed: Env) -> None:
    """A consent wall on the page + key: forHandle resolves the id; the feed answers."""
    keyed.fake.page_mode = "consent_always"
    obs = await keyed.check("@DinsosCilegon")
    assert obs.method == "feed" and obs.latest_post_at == NEWEST
    [lookup] = [r.query for r in keyed.fake.requests if r.kind == "api"]
    assert lookup["forHandle"] == "@dinsoscilegon"


async def test_unknown_handle_through_the_api_is_not_found(keyed: Env) -> None:
    """pageInfo.totalResults 0 from channels?forHandle is not_found."""
    keyed.fake.page_mode = "consent_always"
    error = await keyed.fails("@tidakada", NotFound)
    assert "0 results" in error.message


async def test_unknown_channel_id_through_the_api_is_not_found(keyed: Env) -> None:
    """Feed 404, page down, API totalResults 0 for id=UC…: not_found."""
    keyed.fake.page_mode = "outage"
    error = await keyed.fails(OTHER, NotFound)
    assert OTHER in error.message


@pytest.mark.parametrize("name", [
    "quotaExceeded", "rateLimitExceeded", "dailyLimitExceeded", "RATE_LIMIT_EXCEEDED"])
async def test_api_quota_errors_are_rate_limited_until_pacific_midnight(
        keyed: Env, name: str) -> None:
    """Each quota shape raises RateLimited from the Data API with retry_after = seconds to
    midnight Pacific time."""
    keyed.fake.api_error = name
    api = DataApi(keyed.ctx(CID), f"{keyed.base}/youtube/v3", KEY, keyed.platform.ledger)
    with pytest.raises(RateLimited) as caught:
        await api.channel(channel_id=CID)
    assert caught.value.retry_after == pytest.approx(TO_PACIFIC_MIDNIGHT, abs=60)


async def test_api_429_with_retry_after_pauses_the_api_that_long(keyed: Env) -> None:
    """A 429 carrying Retry-After holds the API for that long, not until midnight."""
    keyed.fake.api_error, keyed.fake.retry_after = "RATE_LIMIT_EXCEEDED", "120"
    api = DataApi(keyed.ctx(CID), f"{keyed.base}/youtube/v3", KEY, keyed.platform.ledger)
    with pytest.raises(RateLimited) as caught:
        await api.channel(channel_id=CID)
    assert caught.value.retry_after == 120
    with pytest.raises(Deferred) as deferred:
        keyed.platform.ledger.require(keyed.clock.now())
    assert deferred.value.retry_after == pytest.approx(120)


async def test_quota_error_keeps_checking_the_feed_and_pauses_only_the_api(keyed: Env) -> None:
    """During a feed outage a quota error makes the check report the feed's failure with a
    note (not rate_limited, which would pause every YouTube check); no API call is sent again
    before midnight Pacific, after which the fallback works again."""
    keyed.fake.feed_outage, keyed.fake.api_error = 500, "quotaExceeded"
    error = await keyed.fails(CID, Unreachable)
    assert "quotaExceeded" in error.message
    assert keyed.fake.api_calls.total() == 1
    error = await keyed.fails(CID, Unreachable)
    assert "paused" in error.message and keyed.fake.api_calls.total() == 1
    keyed.fake.api_error = None
    keyed.clock.advance(TO_PACIFIC_MIDNIGHT)
    obs = await keyed.check(CID)
    assert obs.method == "data-api" and keyed.platform.ledger.used_today == 2


@pytest.mark.parametrize("name", ["keyInvalid", "API_KEY_INVALID", "accessNotConfigured"])
async def test_key_errors_are_auth(keyed: Env, name: str) -> None:
    """A bad key (legacy keyInvalid or API_KEY_INVALID in details) or a disabled API: auth."""
    keyed.fake.feed_outage, keyed.fake.api_error = 404, name
    error = await keyed.fails(CID, AuthError)
    assert name in error.message and "feed" in error.message


async def test_api_server_error_reports_the_feed_failure(keyed: Env) -> None:
    """An API 500 (after retries) leaves the feed's reason, with a note."""
    await keyed.check(CID)
    keyed.fake.feed_outage, keyed.fake.api_error = 404, "backendError"
    error = await keyed.fails(CID, Unreachable)
    assert "exists" in error.message and "Data API fallback failed" in error.message


@pytest.mark.parametrize(("now", "hours"), [
    (datetime(2024, 10, 10, 12, 0, tzinfo=UTC), 19),  # PDT
    (datetime(2024, 11, 2, 12, 0, tzinfo=UTC), 19),  # PDT; that night has 25 hours
    (datetime(2024, 11, 3, 12, 0, tzinfo=UTC), 20),  # PST
    (datetime(2024, 3, 10, 8, 30, tzinfo=UTC), 22.5),  # 00:30 PST; a 23-hour day
])
def test_next_pacific_midnight_follows_daylight_saving(now: datetime, hours: float) -> None:
    """Midnight America/Los_Angeles, through both DST changes."""
    assert (next_pacific_midnight(now) - now).total_seconds() == hours * 3600


# -- quota counting and budget ----------------------------------------------------------------
async def test_quota_units_are_counted_and_exported(keyed: Env) -> None:
    """Every API call counts 1 unit, per endpoint, on a registry the daemon owns."""
    keyed.fake.feed_outage = 404
    await keyed.check(CID)
    registry = CollectorRegistry()
    for collector in keyed.platform.collectors():
        registry.register(collector)
    value = registry.get_sample_value
    assert value("pantau_youtube_quota_units_total", {"endpoint": "channels"}) == 1
    assert value("pantau_youtube_quota_units_total", {"endpoint": "playlistItems"}) == 1
    assert value("pantau_youtube_quota_units_today") == 2
    assert value("pantau_youtube_quota_budget_units") == 10000
    keyed.clock.advance(TO_PACIFIC_MIDNIGHT)  # a new quota day: today's count restarts
    assert value("pantau_youtube_quota_units_today") == 0
    assert value("pantau_youtube_quota_units_total", {"endpoint": "channels"}) == 1


async def test_spent_budget_defers_api_calls_until_pacific_midnight(keyed: Env) -> None:
    """At quota_budget units, the ledger raises Deferred (retry_after = to Pacific midnight)
    instead of calling; the check reports the feed failure saying so; a new Pacific day
    resets the count."""
    keyed.fake.feed_outage = 404
    await keyed.check(CID, quota_budget=3)  # channels + playlistItems
    await keyed.check(CID, quota_budget=3)  # playlistItems
    error = await keyed.fails(CID, Unreachable, quota_budget=3)
    assert "budget of 3 units is spent" in error.message
    assert keyed.fake.api_calls.total() == 3
    with pytest.raises(Deferred) as caught:
        keyed.platform.ledger.require(keyed.clock.now())
    assert caught.value.retry_after == pytest.approx(TO_PACIFIC_MIDNIGHT, abs=60)
    keyed.clock.advance(caught.value.retry_after)
    obs = await keyed.check(CID, quota_budget=3)
    assert obs.method == "data-api" and keyed.fake.api_calls.total() == 4


def test_ledger_budget_of_zero_never_calls() -> None:
    """quota_budget 0 turns the fallback off."""
    ledger = QuotaLedger(budget=0)
    with pytest.raises(Deferred):
        ledger.require(NOW)


def _accounts(n: int, interval: float) -> list[Account]:
    return [Account("a", "youtube", f"@akun{i:03d}", "u", interval, 20.0, 86400.0)
            for i in range(n)]


def test_budget_report_without_a_key_says_feed_only() -> None:
    """No key: one informational line."""
    lines = YoutubePlatform().budget_report(_accounts(3, 1800), YoutubeSettings())
    assert lines == [("feed only (no API key): 3 accounts", False)]


def test_budget_report_with_a_key_counts_units_and_warns_over_budget() -> None:
    """48 checks/day each + 1 lookup each; a warning line only when over the budget."""
    settings = YoutubeSettings(api_key=Secret(KEY, "test"))
    [(text, warning)] = YoutubePlatform().budget_report(_accounts(10, 1800), settings)
    assert text == ("10 accounts with the Data API fallback: up to 490 units/day if the feed "
                    "is down all day (budget 10000)")
    assert not warning
    lines = YoutubePlatform().budget_report(_accounts(300, 1800), settings)
    assert lines[0][0].startswith("300 accounts") and "14700 units/day" in lines[0][0]
    assert lines[1][1] is True and "over the budget" in lines[1][0]


# -- secrets ----------------------------------------------------------------------------------
async def test_api_key_never_appears_in_errors_logs_or_state(keyed: Env) -> None:
    """Even with a server that echoes the key in its error bodies, the key is in no error
    message, no log event (the HTTP client's debug lines included), no memo, no validator."""
    keyed.fake.feed_outage, keyed.fake.echo_key = 404, True
    messages: list[str] = []
    with capture_logs() as logs:
        for mode in ("keyInvalid", "quotaExceeded", "backendError", "RATE_LIMIT_EXCEEDED"):
            keyed.platform.ledger = QuotaLedger()
            keyed.fake.api_error = mode
            keyed.memos.clear()
            with pytest.raises(CheckError) as caught:
                await keyed.check(CID)
            messages.append(str(caught.value))
        keyed.fake.page_mode, keyed.fake.api_error = "consent_always", "API_KEY_INVALID"
        with pytest.raises(CheckError) as caught:
            await keyed.check("@dinsoscilegon")
        messages.append(str(caught.value))
    assert keyed.fake.api_calls.total() >= 5  # the key really was sent
    assert any(r.query.get("key") == KEY for r in keyed.fake.requests)
    assert any(e.get("url", "").endswith("key=REDACTED") for e in logs)
    everything = json.dumps([messages, logs, [m.data for m in keyed.memos.values()],
                             list(keyed.store.stored)], default=str)
    assert KEY not in everything


# -- end to end: config, engine, CLI ----------------------------------------------------------
def _config(tmp_path, base: str, account: str, extra: str = "") -> Any:
    path = tmp_path / "pantau.yaml"
    path.write_text(
        f"listen: 127.0.0.1:0\nstate: {tmp_path / 'pantau.db'}\n"
        "check: {interval: 30m, timeout: 5s}\n"
        "platforms:\n  youtube:\n"
        f"    feed_url: {base}/feeds/videos.xml\n    web_url: {base}\n"
        f"    api_url: {base}/youtube/v3\n{extra}"
        "agencies:\n  - id: dinsos\n    name: Dinas Sosial\n"
        f"    accounts: {{youtube: '{account}'}}\n")
    return path


async def test_engine_resolves_once_keeps_last_post_through_outage_and_restart(
        tmp_path, aiohttp_server) -> None:
    """Through config + engine: the handle is resolved once (memo survives a restart), a feed
    outage is unreachable and keeps the last known post."""
    from monitor.config import load_config
    from monitor.engine import Engine
    from monitor.plugins import load_plugins

    fake = YoutubeFake(channels=[dinsos()], api_key=KEY)
    server = await aiohttp_server(make_app(fake))
    base = str(server.make_url("")).rstrip("/")
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "youtube"})
    config = load_config(_config(tmp_path, base, "https://www.youtube.com/@DinsosCilegon"),
                         plugins.platforms, environ={})
    [account] = config.accounts
    assert account.account == "@dinsoscilegon"
    engine = await Engine.open(config, plugins, FakeClock(NOW))
    async with engine:
        first = await engine.check(account)
    fake.feed_outage = 404
    engine = await Engine.open(config, plugins, FakeClock(NOW + timedelta(hours=1)))
    async with engine:
        second = await engine.check(account)
    assert first.ok and first.observation.method == "feed"
    assert (second.ok, second.reason) == (False, "unreachable")
    assert engine.states[account.key].last_post_at == NEWEST
    assert fake.count("page") == 1  # the restarted engine used the stored channel id


async def test_check_json_reports_feed_and_data_api(tmp_path, aiohttp_server, capsys,
                                                    monkeypatch) -> None:
    """`pantau check --format json`: DESIGN.md's object, method feed, then data-api when the
    feed is down and a key is configured through {env: …}."""
    from monitor.cli import main

    channel = dinsos()  # the CLI runs on the real clock: no "future" premiere in 2024
    channel.videos = [v for v in channel.videos if v.video_id != "PREMIERE001"]
    fake = YoutubeFake(channels=[channel], api_key=KEY)
    server = await aiohttp_server(make_app(fake))
    base = str(server.make_url("")).rstrip("/")
    monkeypatch.setenv("PANTAU_PLUGINS", "youtube")
    monkeypatch.setenv("PANTAU_YOUTUBE_KEY", KEY)
    path = _config(tmp_path, base, "@DinsosCilegon", "    api_key: {env: PANTAU_YOUTUBE_KEY}\n")
    argv = ["check", "-c", str(path), "--format", "json"]
    assert await asyncio.to_thread(main, argv) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item == {
        "agency": "dinsos", "platform": "youtube", "account": "@dinsoscilegon", "ok": True,
        "latest_post_at": "2024-10-09T02:30:00Z",
        "post_url": "https://www.youtube.com/watch?v=NEWEST00001", "method": "feed",
        "error": None,
    }
    fake.feed_outage = 404  # (a 500 would be retried with real sleeps)
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    [item] = json.loads(out)
    assert (item["ok"], item["method"], item["latest_post_at"]) == (
        True, "data-api", "2024-10-09T02:30:00Z")
    assert KEY not in out + err


def test_parse_account_kinds() -> None:
    """parse_account tells the kinds apart and gives the page path."""
    assert parse_account("@Dinsos").path == "/@dinsos"
    assert parse_account(CID).channel_id == CID
    assert parse_account("c/X").channel_id is None

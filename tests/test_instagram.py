"""Tests for plugins.instagram: Business Discovery, the web endpoint and the fallback between
them, through the real HttpClient against the loopback Meta fake."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from fakes.meta import (
    FEATURE_100,
    HTML_200,
    IG_APP_ID,
    IG_USER_ID,
    PERMISSION_10,
    PERMISSION_200,
    SERVER_ERROR,
    TOKEN,
    TOKEN_EXPIRED,
    TRANSIENT_400,
    WEB_LOGIN_HTML,
    WEB_LOGIN_REDIRECT,
    WEB_RATE_LIMITED,
    WEB_REQUIRE_LOGIN,
    WEB_USER_NULL,
    MetaEnv,
    Reply,
    business_discovery,
    ig_media,
    ig_not_found,
    meta_env,
    secret,
    throttled,
    web_node,
    web_profile,
)
from pydantic import ValidationError

from monitor.model import CheckError, Deferred
from monitor.plugins import load_plugins
from plugins.instagram import InstagramPlatform, InstagramSettings

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PINNED = "2024-01-05T02:00:00+0000"
NEWEST = "2026-11-20T03:15:00+0000"
MEDIA = [
    ig_media(PINNED, "C1pinned"),  # pinned posts come first
    ig_media(NEWEST, "C3newest", "VIDEO"),
    ig_media("2026-11-18T09:00:00+0000", "C2older", "CAROUSEL_ALBUM"),
]
T_NEWEST = int(datetime(2026, 11, 21, 1, 0, tzinfo=UTC).timestamp())


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[MetaEnv]:
    """The Meta fake on loopback, a real HttpClient on a fake clock, a private hub."""
    async with meta_env(aiohttp_server, NOW) as value:
        yield value


@pytest.fixture
def ig(env: MetaEnv) -> InstagramPlatform:
    return InstagramPlatform(hub=env.hub)


async def _reason(env: MetaEnv, ig: InstagramPlatform, account: str, settings) -> CheckError:  # noqa: ANN001
    with pytest.raises(CheckError) as caught:
        await env.check(ig, account, settings)
    return caught.value


# -- accounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("given", [
    "dinsos.cilegon", "@Dinsos.Cilegon ", "https://www.instagram.com/dinsos.cilegon/",
    "https://instagram.com/Dinsos.Cilegon?igsh=abc", "instagram.com/dinsos.cilegon",
    "http://m.instagram.com/dinsos.cilegon/reels/",
])
def test_normalize_accepts_username_at_and_profile_url(given: str) -> None:
    """Usernames, @names and profile URLs normalise to the lower-case username."""
    assert InstagramPlatform().normalize(given) == "dinsos.cilegon"


@pytest.mark.parametrize(("given", "phrase"), [
    ("dinsos cilegon", "not an Instagram username"),
    ("a" * 31, "at most 30"),
    ("dinsos-cilegon", "letters, digits, '.' or '_'"),
    ("", "not an Instagram username"),
    ("https://www.instagram.com/p/C3newest/", "not a profile"),
    ("https://example.com/dinsos", "not an Instagram profile URL"),
])
def test_normalize_rejects_with_a_clear_message(given: str, phrase: str) -> None:
    """Invalid usernames and non-profile URLs are refused with a message saying why."""
    with pytest.raises(ValueError, match=phrase.replace("(", r"\(")):
        InstagramPlatform().normalize(given)


def test_url_is_the_profile_page() -> None:
    """The human URL is the profile on instagram.com."""
    assert InstagramPlatform().url("dinsos.cilegon") == "https://www.instagram.com/dinsos.cilegon/"


def test_settings_need_token_and_ig_user_id_together() -> None:
    """A token without ig_user_id (or the reverse) is a config error naming both."""
    with pytest.raises(ValidationError, match="both access_token and ig_user_id"):
        InstagramSettings(access_token=secret())
    with pytest.raises(ValidationError, match="method graph needs"):
        InstagramSettings(method="graph")
    with pytest.raises(ValidationError, match="numeric id"):
        InstagramSettings(access_token=secret(), ig_user_id="dinsos")
    assert InstagramSettings(access_token=secret(), ig_user_id=17841400000000000).ig_user_id == (
        "17841400000000000")


def test_entry_point_registers_the_platform() -> None:
    """The `instagram` entry point provides the platform."""
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "instagram"})
    assert isinstance(plugins.platforms["instagram"], InstagramPlatform)


# -- Business Discovery ------------------------------------------------------------------------

async def test_graph_newest_is_max_timestamp_not_the_pinned_first(env, ig) -> None:
    """Business Discovery: the newest media is the maximum timestamp, method graph-api."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", MEDIA)
    obs = await env.check(ig, "@Dinsos.Cilegon", env.instagram())
    assert obs.method == "graph-api"
    assert obs.latest_post_at == datetime(2026, 11, 20, 3, 15, tzinfo=UTC)
    assert obs.post_url == "https://www.instagram.com/p/C3newest/"
    assert obs.post_id == "C3newest" and len(obs.posts) == 3
    assert env.memos["instagram/dinsos.cilegon"].data == {}  # nothing to remember


async def test_graph_request_shape_bearer_and_fields(env, ig) -> None:
    """The call asks Business Discovery for the target with a Bearer token, none in the URL."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", MEDIA)
    await env.check(ig, "dinsos.cilegon", env.instagram())
    [seen] = env.fake.requests
    assert seen.path == f"/v25.0/{IG_USER_ID}"
    assert seen.query["fields"] == (
        "business_discovery.username(dinsos.cilegon){username,media_count,"
        "media.limit(12){id,timestamp,permalink,media_type}}")
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "access_token" not in seen.query and TOKEN not in str(seen.query)


async def test_graph_account_without_posts_has_no_latest(env, ig) -> None:
    """A business account with no media: latest_post_at is None, not a failure."""
    env.fake.instagram["kelurahan.baru"] = business_discovery("kelurahan.baru", [])
    obs = await env.check(ig, "kelurahan.baru", env.instagram())
    assert obs.latest_post_at is None and obs.method == "graph-api"


async def test_graph_future_media_is_ignored(env, ig) -> None:
    """A timestamp more than future_skew ahead is not taken as the newest post."""
    media = [*MEDIA, ig_media("2026-12-24T00:00:00+0000", "Cfuture")]
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", media)
    obs = await env.check(ig, "dinsos.cilegon", env.instagram())
    assert obs.post_id == "C3newest"


@pytest.mark.parametrize(("reply", "reason", "phrase"), [
    (TOKEN_EXPIRED, "auth", "invalid or expired"),
    (PERMISSION_10, "auth", "lacks a permission"),
    (PERMISSION_200, "auth", "lacks a permission"),
    (FEATURE_100, "auth", "either the object does not exist"),
    (throttled(4), "rate_limited", "(#4)"),
    (throttled(17), "rate_limited", "(#17)"),
    (throttled(32), "rate_limited", "(#32)"),
    (throttled(613, regain_minutes=7), "rate_limited", "(#613)"),
    (TRANSIENT_400, "unreachable", "temporary"),
    (SERVER_ERROR, "unreachable", "HTTP 500"),
    (HTML_200, "parse", "not JSON"),
    (Reply({"id": IG_USER_ID}), "parse", "no business_discovery"),
])
async def test_graph_failure_shapes_give_their_reason(env, ig, reply, reason, phrase) -> None:
    """Each Graph API failure shape of PLATFORMS.md maps to its reason (method graph)."""
    env.fake.instagram["dinsos.cilegon"] = reply
    error = await _reason(env, ig, "dinsos.cilegon", env.instagram(method="graph"))
    assert error.reason == reason
    assert phrase in error.message
    assert TOKEN not in error.message


async def test_graph_throttling_carries_the_buc_regain_time(env, ig) -> None:
    """613 with estimated_time_to_regain_access 7 (minutes): retry after 420 s."""
    env.fake.instagram["dinsos.cilegon"] = throttled(613, regain_minutes=7)
    error = await _reason(env, ig, "dinsos.cilegon", env.instagram())
    assert error.retry_after == 420


async def test_graph_only_personal_account_is_not_found(env, ig) -> None:
    """method graph: 110/2207013 is not_found, explained, and the web endpoint is not tried."""
    env.fake.instagram["warga.biasa"] = ig_not_found("warga.biasa")
    error = await _reason(env, ig, "warga.biasa", env.instagram(method="graph"))
    assert error.reason == "not_found"
    assert "personal (not Business/Creator)" in error.message
    assert env.fake.web_calls == 0


async def test_wrong_ig_user_id_is_auth_with_a_hint(env, ig) -> None:
    """An ig_user_id that is not an Instagram account id: auth, saying how to look it up."""
    error = await _reason(env, ig, "dinsos.cilegon", env.instagram(ig_user_id="123"))
    assert error.reason == "auth" and "instagram_business_account" in error.message
    assert "nonexisting field" in error.message


# -- the web endpoint --------------------------------------------------------------------------

WEB_OK = web_profile(
    "kecamatan.cibeber",
    [web_node(1_600_000_000, "Bpinned", pinned=True), web_node(T_NEWEST - 86400, "Bolder")],
    [web_node(T_NEWEST, "Breel", typename="GraphVideo")],
)


async def test_web_newest_is_max_over_both_timelines(env, ig) -> None:
    """Web: the newest is the maximum taken_at_timestamp over both timelines, method web."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    obs = await env.check(ig, "kecamatan.cibeber", env.instagram(access_token=None,
                                                               ig_user_id=None))
    assert obs.method == "web"
    assert obs.latest_post_at == datetime.fromtimestamp(T_NEWEST, UTC)
    assert obs.post_url == "https://www.instagram.com/p/Breel/"
    assert len(obs.posts) == 3
    assert env.fake.graph_calls == 0


async def test_web_request_has_app_id_and_browser_user_agent(env, ig) -> None:
    """The web request carries X-IG-App-ID and a browser User-Agent."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    await env.check(ig, "kecamatan.cibeber", env.instagram(method="web"))
    [seen] = env.fake.requests
    assert seen.path == "/api/v1/users/web_profile_info/"
    assert seen.query == {"username": "kecamatan.cibeber"}
    assert seen.headers["X-IG-App-ID"] == IG_APP_ID
    assert seen.headers["User-Agent"].startswith("Mozilla/5.0")
    assert "Authorization" not in seen.headers  # the token never goes to instagram.com


async def test_web_node_in_both_timelines_counts_once(env, ig) -> None:
    """A video listed in both timelines is one post."""
    node = web_node(T_NEWEST, "Breel", typename="GraphVideo")
    env.fake.web["kecamatan.cibeber"] = web_profile("kecamatan.cibeber", [node], [node])
    obs = await env.check(ig, "kecamatan.cibeber", env.instagram(method="web"))
    assert len(obs.posts) == 1


@pytest.mark.parametrize(("reply", "reason", "phrase"), [
    (WEB_REQUIRE_LOGIN, "blocked", "Please wait a few minutes"),
    (WEB_RATE_LIMITED, "rate_limited", "HTTP 429"),
    (WEB_LOGIN_REDIRECT, "blocked", "login page"),
    (WEB_LOGIN_HTML, "blocked", "login page"),
    (WEB_USER_NULL, "not_found", "no Instagram account"),
    (web_profile("x", [], is_private=True, count=40), "not_found", "private account"),
    (Reply("{not json", content_type="application/json"), "parse", "invalid JSON"),
    (Reply({"data": {}}), "parse", "no data.user"),
])
async def test_web_failure_shapes_give_their_reason(env, ig, reply, reason, phrase) -> None:
    """Each web failure shape of PLATFORMS.md maps to its reason."""
    env.fake.web["kecamatan.cibeber"] = reply
    error = await _reason(env, ig, "kecamatan.cibeber", env.instagram(method="web"))
    assert (error.reason, phrase in error.message) == (reason, True), error.message


async def test_web_429_keeps_retry_after(env, ig) -> None:
    """A 429 with Retry-After: 600 pauses for 600 s."""
    env.fake.web["kecamatan.cibeber"] = WEB_RATE_LIMITED
    error = await _reason(env, ig, "kecamatan.cibeber", env.instagram(method="web"))
    assert error.retry_after == 600


async def test_web_with_a_non_browser_user_agent_is_blocked(env, ig) -> None:
    """An overridden non-browser User-Agent gets instagram.com's refusal: blocked."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    error = await _reason(env, ig, "kecamatan.cibeber",
                          env.instagram(method="web", user_agent="curl/8"))
    assert error.reason == "blocked" and "useragent mismatch" in error.message


async def test_web_account_without_posts_has_no_latest(env, ig) -> None:
    """A public account with no posts: latest_post_at None."""
    env.fake.web["kelurahan.baru"] = web_profile("kelurahan.baru", [])
    obs = await env.check(ig, "kelurahan.baru", env.instagram(method="web"))
    assert obs.latest_post_at is None and obs.method == "web"


# -- auto: Graph API first, web fallback -------------------------------------------------------

async def test_auto_falls_back_to_web_for_an_account_graph_cannot_see(env, ig) -> None:
    """auto: Business Discovery says not found; the web endpoint finds the posts."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    obs = await env.check(ig, "kecamatan.cibeber", env.instagram())
    assert obs.method == "web" and obs.post_id is not None
    assert (env.fake.graph_calls, env.fake.web_calls) == (1, 1)
    assert env.memos["instagram/kecamatan.cibeber"].data["graph_miss_at"] == NOW.isoformat()


async def test_auto_skips_graph_for_a_day_after_a_miss_then_rechecks(env, ig) -> None:
    """After a miss the web endpoint alone is used for a day, then Graph is asked again."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    settings = env.instagram()
    await env.check(ig, "kecamatan.cibeber", settings)
    env.clock.advance(3600)
    await env.check(ig, "kecamatan.cibeber", settings)
    assert (env.fake.graph_calls, env.fake.web_calls) == (1, 2)
    env.fake.instagram["kecamatan.cibeber"] = business_discovery("kecamatan.cibeber", MEDIA)
    env.clock.advance(timedelta(days=1).total_seconds())
    obs = await env.check(ig, "kecamatan.cibeber", settings)
    assert obs.method == "graph-api" and env.fake.graph_calls == 2
    assert env.memos["instagram/kecamatan.cibeber"].data["graph_miss_at"] is None


async def test_auto_fallback_failure_is_not_found_not_a_pause(env, ig) -> None:
    """auto: Graph cannot see it and the web endpoint is blocked: not_found, both explained."""
    env.fake.web["kecamatan.cibeber"] = WEB_RATE_LIMITED
    error = await _reason(env, ig, "kecamatan.cibeber", env.instagram())
    assert error.reason == "not_found"
    assert "Business Discovery cannot see" in error.message
    assert "rate_limited" in error.message


async def test_auto_missing_everywhere_is_not_found(env, ig) -> None:
    """auto: Graph and web both say the account does not exist: not_found."""
    error = await _reason(env, ig, "tidak.ada", env.instagram())
    assert error.reason == "not_found" and "does not exist" in error.message


async def test_auto_does_not_fall_back_on_auth_errors(env, ig) -> None:
    """An expired token is auth, reported as such: the web endpoint is not tried."""
    env.fake.instagram["dinsos.cilegon"] = TOKEN_EXPIRED
    error = await _reason(env, ig, "dinsos.cilegon", env.instagram())
    assert error.reason == "auth" and env.fake.web_calls == 0


async def test_method_web_never_calls_the_graph_api(env, ig) -> None:
    """method web with a token configured: only instagram.com is asked."""
    env.fake.web["dinsos.cilegon"] = WEB_OK
    await env.check(ig, "dinsos.cilegon", env.instagram(method="web"))
    assert (env.fake.graph_calls, env.fake.web_calls) == (0, 1)


async def test_spent_budget_defers_before_any_request(env, ig) -> None:
    """With hourly_budget 1, the second check raises Deferred and sends nothing."""
    env.fake.instagram["dinsos.cilegon"] = business_discovery("dinsos.cilegon", MEDIA)
    settings = env.instagram(hourly_budget=1)
    await env.check(ig, "dinsos.cilegon", settings)
    env.clock.advance(600)
    with pytest.raises(Deferred) as caught:
        await env.check(ig, "dinsos.cilegon", settings)
    assert caught.value.retry_after == 3000
    assert "env PANTAU_META_TOKEN" in caught.value.message and TOKEN not in caught.value.message
    assert env.fake.graph_calls == 1 and env.fake.web_calls == 0
    env.clock.advance(3000)
    assert (await env.check(ig, "dinsos.cilegon", settings)).method == "graph-api"


async def test_personal_account_fallback_spends_no_budget_while_remembered(env, ig) -> None:
    """A remembered miss goes to the web endpoint even when the Graph budget is spent."""
    env.fake.web["kecamatan.cibeber"] = WEB_OK
    settings = env.instagram(hourly_budget=1)
    await env.check(ig, "kecamatan.cibeber", settings)
    obs = await env.check(ig, "kecamatan.cibeber", settings)
    assert obs.method == "web" and env.fake.graph_calls == 1


def test_budget_report_counts_graph_calls_or_notes_web_only() -> None:
    """validate: one Graph call per check with a token; a web-only note without one."""
    from monitor.model import Account

    accounts = [Account("a", "instagram", f"x{i}", "u", 1800.0, 20.0, 7 * 86400.0)
                for i in range(3)]
    graph = InstagramSettings(access_token=secret(), ig_user_id=IG_USER_ID)
    [(line, warning)] = InstagramPlatform().budget_report(accounts, graph)
    assert "6.0 Graph API calls/hour" in line and not warning
    [(note, warning)] = InstagramPlatform().budget_report(accounts, InstagramSettings())
    assert "web endpoint only" in note and "6.0 requests/hour" in note and not warning

"""Tests for plugins.facebook: Page posts through the Graph API, through the real HttpClient
against the loopback Meta fake, and the no-token answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fakes.meta import (
    APP_SECRET,
    FEATURE_100,
    HTML_200,
    OBJECT_MISSING_100,
    PERMISSION_10,
    PERMISSION_200,
    SERVER_ERROR,
    TOKEN,
    TOKEN_ECHOED,
    TOKEN_EXPIRED,
    TRANSIENT_400,
    MetaEnv,
    Reply,
    alias_missing,
    fb_post,
    fb_posts,
    meta_env,
    secret,
    throttled,
)

from monitor.model import CheckError
from monitor.plugins import load_plugins
from plugins.facebook import FacebookPlatform, FacebookSettings
from plugins.meta import appsecret_proof

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POSTS = [
    fb_post("2023-08-17T01:00:00+0000", "1046_900"),  # pinned first
    fb_post("2026-11-23T23:30:00+0000", "1046_999"),
    fb_post("2026-11-22T08:00:00+0000", "1046_998"),
]


@pytest.fixture
async def env(aiohttp_server) -> AsyncIterator[MetaEnv]:
    """The Meta fake on loopback, a real HttpClient on a fake clock, a private hub."""
    async with meta_env(aiohttp_server, NOW) as value:
        yield value


@pytest.fixture
def fb(env: MetaEnv) -> FacebookPlatform:
    return FacebookPlatform(hub=env.hub)


async def _error(env: MetaEnv, fb: FacebookPlatform, account: str, settings) -> CheckError:  # noqa: ANN001
    with pytest.raises(CheckError) as caught:
        await env.check(fb, account, settings)
    return caught.value


# -- accounts ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("given", "expected"), [
    ("PemkotCilegon", "pemkotcilegon"),
    ("@pemkot.cilegon", "pemkot.cilegon"),
    ("100064123456789", "100064123456789"),
    ("https://www.facebook.com/PemkotCilegon", "pemkotcilegon"),
    ("https://web.facebook.com/pemkotcilegon/?locale=id_ID", "pemkotcilegon"),
    ("m.facebook.com/pemkotcilegon/posts/", "pemkotcilegon"),
    ("https://www.facebook.com/profile.php?id=100064123456789", "100064123456789"),
    ("https://www.facebook.com/pages/Dinas-Sosial/123456789012", "123456789012"),
    ("https://www.facebook.com/people/Kelurahan-Ciwedus/100083123456789/", "100083123456789"),
    ("https://www.facebook.com/p/Kecamatan-Cibeber-100064555555555/", "100064555555555"),
    ("https://www.facebook.com/Dinas-Sosial-Kota-Cilegon-105123456789012/", "105123456789012"),
])
def test_normalize_accepts_names_ids_and_page_urls(given: str, expected: str) -> None:
    """Page usernames, numeric ids and every page URL form normalise to the name or id."""
    assert FacebookPlatform().normalize(given) == expected


@pytest.mark.parametrize(("given", "phrase"), [
    ("https://www.facebook.com/groups/wargacilegon", "groups link, not a page"),
    ("https://www.facebook.com/profile.php?id=abc", "no numeric id"),
    ("https://example.com/pemkotcilegon", "not a Facebook page URL"),
    ("pemkot cilegon", "not a Facebook page"),
])
def test_normalize_rejects_non_pages(given: str, phrase: str) -> None:
    """Groups, malformed profile links, other hosts and spaces are refused clearly."""
    with pytest.raises(ValueError, match=phrase):
        FacebookPlatform().normalize(given)


def test_url_for_names_and_ids() -> None:
    """The human URL is /NAME, or profile.php?id= for a numeric id."""
    assert FacebookPlatform().url("pemkotcilegon") == "https://www.facebook.com/pemkotcilegon"
    assert FacebookPlatform().url("123") == "https://www.facebook.com/profile.php?id=123"


def test_entry_point_registers_the_platform() -> None:
    """The `facebook` entry point provides the platform."""
    plugins = load_plugins(environ={"PANTAU_PLUGINS": "facebook"})
    assert isinstance(plugins.platforms["facebook"], FacebookPlatform)


# -- checks ------------------------------------------------------------------------------------

async def test_newest_is_max_created_time_not_the_pinned_first(env, fb) -> None:
    """The newest post is the maximum created_time; method graph-api; permalink kept."""
    env.fake.pages["pemkotcilegon"] = fb_posts(POSTS)
    obs = await env.check(fb, "https://www.facebook.com/PemkotCilegon", env.facebook())
    assert obs.method == "graph-api"
    assert obs.latest_post_at == datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert obs.post_id == "1046_999"
    assert obs.post_url == "https://www.facebook.com/1046/posts/999"
    assert len(obs.posts) == 3


async def test_request_shape_edge_fields_limit_bearer(env, fb) -> None:
    """GET /{page}/{edge}?fields=created_time,permalink_url&limit=10 with a Bearer token."""
    env.fake.pages["pemkotcilegon"] = fb_posts(POSTS)
    await env.check(fb, "pemkotcilegon", env.facebook(edge="published_posts"))
    [seen] = env.fake.requests
    assert seen.path == "/v25.0/pemkotcilegon/published_posts"
    assert seen.query == {"fields": "created_time,permalink_url", "limit": "10"}
    assert seen.headers["Authorization"] == f"Bearer {TOKEN}"


async def test_appsecret_proof_is_sent_when_app_secret_is_set(env, fb) -> None:
    """With app_secret, appsecret_proof = HMAC-SHA256(token, app secret) is a query param."""
    env.fake.app_secret = APP_SECRET
    env.fake.pages["pemkotcilegon"] = fb_posts(POSTS)
    settings = env.facebook(app_secret=secret(APP_SECRET, "env PANTAU_META_APP_SECRET"))
    obs = await env.check(fb, "pemkotcilegon", settings)
    assert obs.post_id == "1046_999"
    assert env.fake.requests[0].query["appsecret_proof"] == appsecret_proof(TOKEN, APP_SECRET)


async def test_wrong_app_secret_is_auth(env, fb) -> None:
    """A proof made with the wrong secret: auth, naming app_secret, and the proof not shown."""
    env.fake.app_secret = APP_SECRET
    settings = env.facebook(app_secret=secret("0" * 32, "env PANTAU_META_APP_SECRET"))
    error = await _error(env, fb, "pemkotcilegon", settings)
    assert error.reason == "auth" and "app_secret" in error.message
    assert appsecret_proof(TOKEN, "0" * 32) not in error.message


async def test_page_without_posts_has_no_latest(env, fb) -> None:
    """An empty data list: latest_post_at None."""
    env.fake.pages["kelurahanbaru"] = fb_posts([])
    obs = await env.check(fb, "kelurahanbaru", env.facebook())
    assert obs.latest_post_at is None and obs.method == "graph-api"


async def test_no_token_is_auth_naming_tokens_feature_and_bridges_without_a_request(
    env, fb
) -> None:
    """Without a token: auth, saying which token, which feature, and the RSS-bridge way."""
    error = await _error(env, fb, "pemkotcilegon", env.facebook(access_token=None))
    assert error.reason == "auth"
    for phrase in ("Page access token", "pages_read_engagement", "Page Public Content Access",
                   "RSSHub", "RSS-Bridge", "rss platform"):
        assert phrase in error.message
    assert env.fake.requests == []


@pytest.mark.parametrize(("reply", "reason", "phrase"), [
    (FEATURE_100, "auth", "either the object does not exist, or the token lacks a permission"),
    (OBJECT_MISSING_100, "not_found", "does not exist"),
    (alias_missing("pemkotcilegon"), "not_found", "(#803)"),
    (PERMISSION_10, "auth", "(#10)"),
    (PERMISSION_200, "auth", "(#200)"),
    (TOKEN_EXPIRED, "auth", "(#190)"),
    (throttled(4), "rate_limited", "(#4)"),
    (throttled(17), "rate_limited", "(#17)"),
    (throttled(32), "rate_limited", "(#32)"),
    (throttled(613), "rate_limited", "(#613)"),
    (TRANSIENT_400, "unreachable", "temporary"),
    (SERVER_ERROR, "unreachable", "HTTP 500"),
    (HTML_200, "parse", "not JSON"),
    (Reply({"posts": []}), "parse", "no data list"),
])
async def test_failure_shapes_give_their_reason(env, fb, reply, reason, phrase) -> None:
    """Each Facebook failure shape of PLATFORMS.md maps to its reason."""
    env.fake.pages["pemkotcilegon"] = reply
    error = await _error(env, fb, "pemkotcilegon", env.facebook())
    assert error.reason == reason, error.message
    assert phrase in error.message


async def test_unknown_alias_default_is_not_found(env, fb) -> None:
    """A page name Meta does not know (803, HTTP 404) is not_found naming the page."""
    error = await _error(env, fb, "tidakada", env.facebook())
    assert error.reason == "not_found" and "no Facebook page 'tidakada'" in error.message


async def test_echoed_token_is_scrubbed_from_the_message(env, fb) -> None:
    """An error that echoes the token ("Malformed access token EAA...") never shows it."""
    env.fake.pages["pemkotcilegon"] = TOKEN_ECHOED
    error = await _error(env, fb, "pemkotcilegon", env.facebook())
    assert error.reason == "auth" and "Malformed access token ***" in error.message
    assert TOKEN not in error.message and TOKEN[:20] not in error.message


async def test_token_rejected_by_meta_is_auth(env, fb) -> None:
    """A token Meta does not accept (the fake expects another one): auth."""
    env.fake.token = "EAAother"
    env.fake.pages["pemkotcilegon"] = fb_posts(POSTS)
    error = await _error(env, fb, "pemkotcilegon", env.facebook())
    assert error.reason == "auth" and "Cannot parse access token" in error.message


def test_settings_edge_is_one_of_three() -> None:
    """edge accepts posts, published_posts or feed only."""
    assert FacebookSettings(edge="feed").edge == "feed"
    with pytest.raises(ValueError, match="posts"):
        FacebookSettings(edge="photos")

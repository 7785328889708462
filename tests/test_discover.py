"""Account discovery: links on an agency's site -> normalised accounts and a config snippet."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import pytest
import yaml
from aiohttp import web
from fakes.clock import FakeClock

from monitor.cli import main
from monitor.discover import Found, classify, discover_command, find_accounts, yaml_snippet
from monitor.http import default_user_agent
from monitor.platform import Platform

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

SITE = """<!DOCTYPE html>
<html lang="id"><head><meta charset="utf-8"><title>Dinas Sosial Kota Cilegon</title>
<base href="https://dinsos.example.go.id/">
<link rel="me" href="https://x.com/DinsosCilegon">
<link rel="alternate" type="application/rss+xml" href="/feed/">
</head><body>
<header><a href="/berita/">Berita</a> <a href="mailto:dinsos@example.go.id">Surel</a></header>
<article>
  <p>Bagikan:
  <a href="https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fdinsos.example.go.id">FB</a>
  <a href="https://www.facebook.com/sharer.php?u=https://dinsos.example.go.id/">FB</a>
  <a href="https://twitter.com/intent/tweet?text=Bansos&amp;url=https://dinsos.example.go.id/">
  Tweet</a> <a href="https://twitter.com/share?url=https://dinsos.example.go.id/">Tweet</a>
  <a href="https://x.com/intent/post?text=x">Post</a>
  <a href="https://api.whatsapp.com/send?text=Bansos">WA</a>
  <a href="https://www.linkedin.com/shareArticle?url=x">In</a></p>
  <a href="https://www.instagram.com/p/C0deAbc123/">a post</a>
  <a href="https://www.instagram.com/explore/tags/cilegon/">#cilegon</a>
  <a href="https://www.youtube.com/watch?v=dQw4w9WgXcQ">video</a>
  <a href="https://youtu.be/dQw4w9WgXcQ">short link</a>
  <iframe src="https://www.youtube.com/embed/dQw4w9WgXcQ"></iframe>
  <a href="https://www.facebook.com/help/">help</a>
  <a href="https://x.com/home?status=hi">home</a>
</article>
<footer>
  <a href="https://www.instagram.com/dinsos.cilegon/?igshid=MzRlODBiNWFlZA==">Instagram</a>
  <a href="https://instagram.com/Dinsos.Cilegon">Instagram lagi</a>
  <a href="//www.facebook.com/DinsosKotaCilegon/">Facebook</a>
  <a href="https://web.facebook.com/profile.php?id=100064123456789&amp;ref=footer">Profil</a>
  <a href="https://www.youtube.com/@DinsosCilegon/videos">YouTube</a>
  <a href="https://www.tiktok.com/@dinsos.cilegon?lang=id">TikTok</a>
  <a href="https://twitter.com/dinsoscilegon">Twitter</a>
</footer>
</body></html>
"""

SHARE_ONLY = """<html><body>
<a href="https://www.facebook.com/sharer.php?u=x">f</a>
<a href="https://twitter.com/intent/tweet?url=x">t</a>
<a href="https://www.instagram.com/explore/">i</a>
<a href="https://www.youtube.com/results?search_query=cilegon">y</a>
</body></html>"""


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("https://www.instagram.com/Dinsos.Cilegon/", ("instagram", "dinsos.cilegon")),
        ("https://m.instagram.com/dinsos_cilegon?hl=id", ("instagram", "dinsos_cilegon")),
        ("https://www.instagram.com/dinsos.cilegon/reels/", ("instagram", "dinsos.cilegon")),
        ("https://www.instagram.com/explore/", None),
        ("https://www.instagram.com/p/C0deAbc123/", None),
        ("https://www.instagram.com/reel/C0de/", None),
        ("https://www.instagram.com/accounts/login/", None),
        ("https://www.instagram.com/", None),
        ("https://www.facebook.com/DinsosKotaCilegon", ("facebook", "dinsoskotacilegon")),
        ("https://m.facebook.com/dinsos.cilegon/posts/123", ("facebook", "dinsos.cilegon")),
        ("https://www.facebook.com/profile.php?id=100064123456789",
         ("facebook", "100064123456789")),
        ("https://www.facebook.com/pages/Dinsos-Cilegon/123456789012",
         ("facebook", "123456789012")),
        ("https://www.facebook.com/people/Dinas-Sosial/100064123456789/",
         ("facebook", "100064123456789")),
        ("https://www.facebook.com/pg/DinsosCilegon/posts/", ("facebook", "dinsoscilegon")),
        ("https://www.facebook.com/sharer/sharer.php?u=x", None),
        ("https://www.facebook.com/sharer.php?u=x", None),
        ("https://www.facebook.com/share.php?u=x", None),
        ("https://www.facebook.com/dialog/share?app_id=1&href=x", None),
        ("https://www.facebook.com/help/", None),
        ("https://www.facebook.com/groups/warga.cilegon/", None),
        ("https://www.facebook.com/watch/?v=1", None),
        ("https://www.facebook.com/profile.php", None),
        ("https://www.youtube.com/@DinsosCilegon", ("youtube", "@dinsoscilegon")),
        ("https://m.youtube.com/@dinsos.cilegon/featured", ("youtube", "@dinsos.cilegon")),
        ("https://www.youtube.com/channel/UCabcdefghijklmnopqrstuv",
         ("youtube", "UCabcdefghijklmnopqrstuv")),
        ("https://www.youtube.com/c/DinsosCilegon", ("youtube",
                                                     "https://www.youtube.com/c/DinsosCilegon")),
        ("https://www.youtube.com/user/dinsoscilegon",
         ("youtube", "https://www.youtube.com/user/dinsoscilegon")),
        ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", None),
        ("https://www.youtube.com/embed/dQw4w9WgXcQ", None),
        ("https://www.youtube.com/playlist?list=PL1", None),
        ("https://www.youtube.com/shorts/abc", None),
        ("https://www.youtube.com/channel/not-an-id", None),
        ("https://youtu.be/dQw4w9WgXcQ", None),
        ("https://www.tiktok.com/@Dinsos.Cilegon", ("tiktok", "@dinsos.cilegon")),
        ("https://www.tiktok.com/@dinsos.cilegon/video/7300000000000000000",
         ("tiktok", "@dinsos.cilegon")),
        ("https://www.tiktok.com/tag/cilegon", None),
        ("https://x.com/DinsosCilegon", ("x", "@dinsoscilegon")),
        ("https://twitter.com/dinsoscilegon/status/1", ("x", "@dinsoscilegon")),
        ("https://mobile.twitter.com/dinsoscilegon", ("x", "@dinsoscilegon")),
        ("https://twitter.com/intent/tweet?text=a&url=b", None),
        ("https://twitter.com/share?url=b", None),
        ("https://x.com/intent/post?text=a", None),
        ("https://x.com/home", None),
        ("https://x.com/i/flow/login", None),
        ("https://x.com/search?q=cilegon", None),
        ("https://x.com/hashtag/cilegon", None),
        ("https://twitter.com/dinsoscilegon/lists/x", None),
        ("https://dinsos.example.go.id/instagram.com/foo", None),
        ("https://evilinstagram.com/foo", None),
        ("ftp://instagram.com/foo", None),
        ("javascript:alert(1)", None),
        ("http://[bad", None),
    ],
)
def test_classify(href: str, expected: tuple[str, str] | None) -> None:
    """Profiles are recognised and normalised; shares, posts and the platforms' pages are not."""
    found = classify(href)
    assert (None if found is None else (found.platform, found.account)) == expected


def test_find_accounts_on_a_site() -> None:
    """The footer's accounts, deduplicated, by platform; share buttons and posts ignored."""
    found = find_accounts(SITE, "http://127.0.0.1:8080/")
    assert found == [
        Found("instagram", "dinsos.cilegon", "https://www.instagram.com/dinsos.cilegon/"),
        Found("facebook", "dinsoskotacilegon", "https://www.facebook.com/dinsoskotacilegon"),
        Found("facebook", "100064123456789",
              "https://www.facebook.com/profile.php?id=100064123456789"),
        Found("youtube", "@dinsoscilegon", "https://www.youtube.com/@dinsoscilegon"),
        Found("tiktok", "@dinsos.cilegon", "https://www.tiktok.com/@dinsos.cilegon"),
        Found("x", "@dinsoscilegon", "https://x.com/dinsoscilegon"),
    ]


class _Installed(Platform):
    """A plugin stand-in: instagram strips '@'; facebook refuses numeric ids."""

    def normalize(self, account: str) -> str:
        if self.name == "facebook" and account.isdigit():
            raise ValueError("numeric ids need\nthe Graph API")
        return account.strip().lstrip("@").lower() if self.name == "instagram" else account


INSTALLED = {n: type(f"I_{n}", (_Installed,), {"name": n})()
             for n in ("instagram", "facebook", "youtube")}


def test_yaml_snippet_is_valid_yaml_and_comments_what_cannot_be_used() -> None:
    """The snippet parses as YAML; no plugin or a refused value becomes a comment saying why."""
    found = find_accounts(SITE, "http://127.0.0.1/")
    snippet = yaml_snippet(found, INSTALLED)
    assert snippet == (
        "    accounts:\n"
        '      instagram: "dinsos.cilegon"\n'
        '      facebook: "dinsoskotacilegon"\n'
        '      #   - "100064123456789"   # refused by the facebook plugin: numeric ids need '
        "the Graph API\n"
        '      youtube: "@dinsoscilegon"\n'
        "      # tiktok: no tiktok plugin installed\n"
        '      #   - "@dinsos.cilegon"\n'
        "      # x: no x plugin installed\n"
        '      #   - "@dinsoscilegon"\n'
    )
    assert yaml.safe_load(snippet) == {"accounts": {
        "instagram": "dinsos.cilegon", "facebook": "dinsoskotacilegon",
        "youtube": "@dinsoscilegon"}}
    two = [Found("instagram", "a.b", ""), Found("instagram", "c_d", "")]
    assert yaml.safe_load(yaml_snippet(two, INSTALLED)) == {
        "accounts": {"instagram": ["a.b", "c_d"]}}


@pytest.fixture
async def site(aiohttp_server):  # noqa: ANN001, ANN201
    seen: list[str] = []

    async def page(body: str):  # noqa: ANN202
        async def handler(request: web.Request) -> web.Response:
            seen.append(request.headers.get("User-Agent", ""))
            return web.Response(text=body, content_type="text/html")
        return handler

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/home/")

    app = web.Application()
    app.router.add_get("/home/", await page(SITE))
    app.router.add_get("/share-only/", await page(SHARE_ONLY))
    app.router.add_get("/", moved)
    server = await aiohttp_server(app)
    return server, seen


async def test_discover_command_on_a_loopback_site(site) -> None:  # noqa: ANN001
    """Fetched through the HTTP client (pantau's User-Agent), redirects followed, exit 0."""
    server, seen = site
    out, err = io.StringIO(), io.StringIO()
    code = await discover_command([str(server.make_url("/"))], INSTALLED, FakeClock(NOW),
                                  out=out, err=err, timeout=5)
    text = out.getvalue()
    assert code == 0, err.getvalue()
    assert seen == [default_user_agent()]
    assert f"-> {server.make_url('/home/')}): 6 accounts linked" in text
    assert "  instagram  dinsos.cilegon " in text and "https://x.com/dinsoscilegon" in text
    assert '      youtube: "@dinsoscilegon"\n' in text
    assert "sharer" not in text and "intent" not in text


async def test_discover_nothing_found_or_unreachable_exits_1(site) -> None:  # noqa: ANN001
    """Only share buttons: exit 1; a 404 is reported on stderr and finds nothing."""
    server, _ = site
    out, err = io.StringIO(), io.StringIO()
    code = await discover_command([str(server.make_url("/share-only/")),
                                   str(server.make_url("/missing/"))],
                                  INSTALLED, FakeClock(NOW), out=out, err=err, timeout=5)
    assert code == 1
    assert "share-only/: no social-media accounts linked" in out.getvalue()
    assert "missing/: not_found: HTTP 404" in err.getvalue()


async def test_discover_json_and_usage_errors(site) -> None:  # noqa: ANN001
    """--format json lists each site's accounts; a non-http URL is a usage error (2)."""
    server, _ = site
    out = io.StringIO()
    code = await discover_command([str(server.make_url("/home/"))], INSTALLED, FakeClock(NOW),
                                  fmt="json", out=out, err=io.StringIO(), timeout=5)
    [result] = json.loads(out.getvalue())
    assert code == 0 and result["error"] is None
    assert [(a["platform"], a["account"]) for a in result["accounts"]][:2] == [
        ("instagram", "dinsos.cilegon"), ("facebook", "dinsoskotacilegon")]
    for bad in ("ftp://example.go.id/", "mailto:humas@example.go.id", "javascript:alert(1)",
                "https://user:pw@example.go.id/", "https://"):
        err = io.StringIO()
        assert await discover_command([str(server.make_url("/home/")), bad], INSTALLED,
                                      FakeClock(NOW), out=io.StringIO(), err=err) == 2, bad
        assert "not an http(s) URL" in err.getvalue()


async def test_cli_discover(site, capsys) -> None:  # noqa: ANN001
    """`pantau discover URL` needs no config; exit codes 0, 1 and 2 (usage)."""
    server, _ = site
    code = await asyncio.to_thread(main, ["discover", str(server.make_url("/home/"))])
    assert code == 0 and "accounts:" in capsys.readouterr().out
    code = await asyncio.to_thread(main, ["discover", str(server.make_url("/share-only/"))])
    assert code == 1
    with pytest.raises(SystemExit) as exc:
        main(["discover"])
    assert exc.value.code == 2
    assert await asyncio.to_thread(main, ["discover", "mailto:x@example.go.id"]) == 2

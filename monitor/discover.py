"""Account discovery: which social accounts does an agency's website link to?

``pantau discover URL...`` fetches each page through the one HTTP client (User-Agent, timeouts,
body cap), reads its links with the standard library's HTML parser, and lists the accounts it
links to on Instagram, Facebook, YouTube, TikTok and X (Twitter), normalised, with a YAML
snippet to paste under the agency's ``accounts:``.

Share buttons (``sharer.php``, ``intent/tweet``, ``share?url=``...), single posts and videos
(``instagram.com/p/...``, ``youtube.com/watch``, ``youtu.be``) and the platforms' own pages
(``instagram.com/explore``, ``facebook.com/help``, ``x.com/home``...) are not accounts and
are ignored.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote, urljoin, urlsplit

from monitor.clock import Clock
from monitor.http import HttpClient, Validators, default_user_agent
from monitor.model import CheckError
from monitor.platform import Platform

__all__ = [
    "PLATFORMS",
    "Found",
    "SiteResult",
    "classify",
    "discover_command",
    "discover_site",
    "find_accounts",
    "links",
    "normalize_url",
    "yaml_snippet",
]

#: The platforms recognised, in the order they are listed.
PLATFORMS: tuple[str, ...] = ("instagram", "facebook", "youtube", "tiktok", "x")
_ACCEPT = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"

_INSTAGRAM_HOSTS = {"instagram.com", "m.instagram.com", "instagr.am"}
_FACEBOOK_HOSTS = {"facebook.com", "m.facebook.com", "web.facebook.com", "mobile.facebook.com",
                   "touch.facebook.com", "mbasic.facebook.com", "fb.com", "id-id.facebook.com",
                   "en-gb.facebook.com"}
_YOUTUBE_HOSTS = {"youtube.com", "m.youtube.com"}
_TIKTOK_HOSTS = {"tiktok.com", "m.tiktok.com", "vm.tiktok.com"}
_X_HOSTS = {"x.com", "twitter.com", "mobile.twitter.com", "mobile.x.com"}

_INSTAGRAM_USER = re.compile(r"[A-Za-z0-9._]{1,30}")
_FACEBOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,79}")
_YOUTUBE_HANDLE = re.compile(r"@[A-Za-z0-9._-]{3,30}")
_YOUTUBE_CHANNEL = re.compile(r"UC[A-Za-z0-9_-]{22}")
_YOUTUBE_LEGACY = re.compile(r"[A-Za-z0-9._-]{1,100}")
_TIKTOK_USER = re.compile(r"@[A-Za-z0-9._]{2,24}")
_X_USER = re.compile(r"[A-Za-z0-9_]{1,15}")
_DIGITS = re.compile(r"\d{5,20}")

# First path segments that are the platforms' own pages, share buttons, posts or media.
_INSTAGRAM_RESERVED = frozenset({
    "explore", "p", "reel", "reels", "tv", "stories", "accounts", "about", "developer", "legal",
    "direct", "web", "privacy", "terms", "api", "challenge", "oauth", "emails", "session",
    "press", "help", "static", "s", "share", "invites", "ar", "directory", "lite", "download",
    "nametag", "create", "graphql", "topics", "locations", "popular", "sharer.php", "embed.js",
})
_FACEBOOK_RESERVED = frozenset({
    "sharer.php", "sharer", "share", "share.php", "dialog", "help", "login", "login.php",
    "logout.php", "policies", "privacy", "policy.php", "terms", "terms.php", "groups", "events",
    "watch", "photo.php", "photo", "photos", "story.php", "permalink.php", "plugins", "tr",
    "home.php", "settings", "marketplace", "gaming", "business", "ads", "legal", "about",
    "hashtag", "search", "notes", "l.php", "recover", "reg", "r.php", "signup", "campaign",
    "bookmarks", "friends", "messages", "notifications", "me", "public", "directory",
    "places", "fundraisers", "lite", "mobile", "unsupportedbrowser", "careers", "developers",
    "security", "stories", "reel", "reels", "live", "offers", "jobs", "video.php", "watchparty",
    "media", "donate", "v2.0", "home", "index.php", "cookie", "cookies",
})
_YOUTUBE_RESERVED = frozenset({
    "watch", "embed", "playlist", "results", "shorts", "feed", "redirect", "t", "about",
    "premium", "kids", "howyoutubeworks", "live", "hashtag", "signin", "logout", "account",
    "gaming", "music", "creators", "ads", "yt", "static", "s", "iframe_api", "subscribe_embed",
})
_X_RESERVED = frozenset({
    "intent", "share", "home", "search", "hashtag", "i", "explore", "settings", "login",
    "signup", "tos", "privacy", "messages", "notifications", "compose", "logout", "account",
    "about", "download", "jobs", "en", "who_to_follow", "widgets", "widgets.js", "oauth",
    "lists", "status", "statuses", "search-advanced", "rules", "help", "personalization",
})


@dataclass(frozen=True)
class Found:
    """A linked account: its platform, the value for the config, and a canonical URL."""

    platform: str
    account: str
    url: str


def _host(netloc_host: str | None) -> str:
    host = (netloc_host or "").lower().rstrip(".")
    return host.removeprefix("www.")


def _segments(path: str) -> list[str]:
    return [unquote(s) for s in path.split("/") if s]


def classify(href: str) -> Found | None:
    """The account an absolute URL points to, or None (not a social account page)."""
    try:
        parts = urlsplit(href.strip())
        host = _host(parts.hostname)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https"):
        return None
    segs = _segments(parts.path)
    if host in _INSTAGRAM_HOSTS:
        return _instagram(segs)
    if host in _FACEBOOK_HOSTS:
        return _facebook(segs, parse_qs(parts.query))
    if host in _YOUTUBE_HOSTS:
        return _youtube(segs)
    if host in _TIKTOK_HOSTS:
        return _tiktok(segs)
    if host in _X_HOSTS:
        return _x(segs)
    return None


def _instagram(segs: list[str]) -> Found | None:
    if not segs or segs[0].lower() in _INSTAGRAM_RESERVED:
        return None
    name = segs[0].lower()
    if not _INSTAGRAM_USER.fullmatch(name) or name.strip(".") != name:
        return None
    return Found("instagram", name, f"https://www.instagram.com/{name}/")


def _facebook(segs: list[str], query: Mapping[str, list[str]]) -> Found | None:
    if not segs:
        return None
    first = segs[0].lower()
    if first == "profile.php":
        page_id = (query.get("id") or [""])[0]
        return _facebook_id(page_id)
    if first == "pg" and len(segs) > 1:
        segs = segs[1:]
        first = segs[0].lower()
    elif first in ("pages", "people"):
        ids = [s for s in segs[1:] if _DIGITS.fullmatch(s)]
        return _facebook_id(ids[-1]) if ids else None
    if first in _FACEBOOK_RESERVED or not _FACEBOOK_NAME.fullmatch(segs[0]):
        return None
    if _DIGITS.fullmatch(first):
        return _facebook_id(first)
    return Found("facebook", first, f"https://www.facebook.com/{first}")


def _facebook_id(page_id: str) -> Found | None:
    if not _DIGITS.fullmatch(page_id):
        return None
    return Found("facebook", page_id, f"https://www.facebook.com/profile.php?id={page_id}")


def _youtube(segs: list[str]) -> Found | None:
    if not segs:
        return None
    first = segs[0]
    if first.startswith("@"):
        if not _YOUTUBE_HANDLE.fullmatch(first):
            return None
        handle = first.lower()
        return Found("youtube", handle, f"https://www.youtube.com/{handle}")
    if first == "channel" and len(segs) > 1 and _YOUTUBE_CHANNEL.fullmatch(segs[1]):
        return Found("youtube", segs[1], f"https://www.youtube.com/channel/{segs[1]}")
    if first in ("c", "user") and len(segs) > 1 and _YOUTUBE_LEGACY.fullmatch(segs[1]):
        url = f"https://www.youtube.com/{first}/{segs[1]}"
        return Found("youtube", url, url)  # legacy name: only the URL identifies it
    return None


def _tiktok(segs: list[str]) -> Found | None:
    if not segs or not _TIKTOK_USER.fullmatch(segs[0]):
        return None
    name = segs[0].lower()
    return Found("tiktok", name, f"https://www.tiktok.com/{name}")


def _x(segs: list[str]) -> Found | None:
    if not segs:
        return None
    name = segs[0].removeprefix("@")
    if name.lower() in _X_RESERVED or not _X_USER.fullmatch(name):
        return None
    if len(segs) > 1 and segs[1].lower() not in ("status", "media", "with_replies", "likes"):
        return None  # x.com/NAME/lists/..., /i/...: not the account's page
    name = name.lower()
    return Found("x", f"@{name}", f"https://x.com/{name}")


class _Links(HTMLParser):
    """Collects the targets of ``a``, ``area`` and ``link`` elements, honouring ``<base>``."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base_url
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        href = values.get("href")
        if not href:
            return
        if tag == "base":
            self.base = urljoin(self.base, href.strip())
        elif tag in ("a", "area", "link"):
            self.hrefs.append(urljoin(self.base, href.strip()))


def links(page: str, base_url: str) -> list[str]:
    """The absolute link targets of an HTML page, in document order."""
    parser = _Links(base_url)
    try:
        parser.feed(page)
        parser.close()
    except (AssertionError, ValueError):  # pragma: no cover - html.parser is lenient
        pass
    return parser.hrefs


def find_accounts(page: str, base_url: str) -> list[Found]:
    """The distinct accounts an HTML page links to, by platform, then in document order."""
    seen: dict[tuple[str, str], Found] = {}
    for href in links(page, base_url):
        found = classify(href)
        if found is not None:
            seen.setdefault((found.platform, found.account), found)
    return sorted(seen.values(), key=lambda f: PLATFORMS.index(f.platform))


# -- the YAML snippet ----------------------------------------------------------------------------


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def yaml_snippet(found: Sequence[Found], installed: Mapping[str, Platform],
                 indent: int = 4) -> str:
    """``accounts:`` lines for a config (agency keys indented ``indent`` spaces), each value
    normalised by its platform's plugin. A platform with no installed plugin, and a value its
    plugin refuses, are written as comments saying why."""
    pad = " " * indent
    lines = [f"{pad}accounts:"]
    by_platform: dict[str, list[str]] = {}
    for item in found:
        by_platform.setdefault(item.platform, []).append(item.account)
    for name, values in by_platform.items():
        platform = installed.get(name)
        if platform is None:
            lines.append(f"{pad}  # {name}: no {name} plugin installed")
            lines += [f"{pad}  #   - {_quote(v)}" for v in values]
            continue
        accepted: list[str] = []
        refused: list[tuple[str, str]] = []
        for value in values:
            try:
                accepted.append(platform.normalize(value))
            except Exception as exc:  # noqa: BLE001 - a plugin's refusal is a note, not a crash
                refused.append((value, " ".join(str(exc).split()) or type(exc).__name__))
        if len(accepted) == 1:
            lines.append(f"{pad}  {name}: {_quote(accepted[0])}")
        elif accepted:
            lines.append(f"{pad}  {name}:")
            lines += [f"{pad}    - {_quote(v)}" for v in accepted]
        else:
            lines.append(f"{pad}  # {name}:")
        lines += [f"{pad}  #   - {_quote(v)}   # refused by the {name} plugin: {why}"
                  for v, why in refused]
    return "\n".join(lines) + "\n"


# -- fetching and the command --------------------------------------------------------------------


class _NoValidators:
    """Discovery never sends conditional requests."""

    def get_validators(self, url: str) -> Validators | None:
        return None


@dataclass(frozen=True)
class SiteResult:
    """What one URL gave: the final URL after redirects, the accounts, or an error."""

    url: str
    final_url: str | None
    accounts: tuple[Found, ...]
    error: str | None = None


async def discover_site(client: HttpClient, url: str, timeout: float) -> SiteResult:
    """Fetch ``url`` and list the accounts it links to (an error is returned, not raised)."""
    http = client.bind("discover", timeout=timeout)
    try:
        response = await http.get(url, headers={"Accept": _ACCEPT})
        response.raise_for_status()
    except CheckError as exc:
        return SiteResult(url, None, (), f"{exc.reason}: {exc.message}")
    return SiteResult(url, response.url, tuple(find_accounts(response.text(), response.url)))


def normalize_url(text: str) -> str:
    """An http(s) URL from what was typed (``cilegon.go.id`` -> ``https://cilegon.go.id``);
    ``ValueError`` for anything else."""
    value = text.strip()
    if "://" not in value:
        value = "https://" + value
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"not an http(s) URL: {text!r}") from None
    # userinfo: "mailto:x@host" read as a web address would be user "mailto" at host
    if parts.scheme.lower() not in ("http", "https") or not host or "@" in parts.netloc:
        raise ValueError(f"not an http(s) URL: {text!r}")
    return value


def _json(results: Sequence[SiteResult]) -> list[dict[str, Any]]:
    return [
        {"url": r.url, "final_url": r.final_url, "error": r.error,
         "accounts": [{"platform": f.platform, "account": f.account, "url": f.url}
                      for f in r.accounts]}
        for r in results
    ]


def _text(results: Sequence[SiteResult], installed: Mapping[str, Platform], out: TextIO) -> None:
    for index, result in enumerate(results):
        if index:
            out.write("\n")
        if result.error is not None:
            out.write(f"{result.url}: could not be fetched (see stderr)\n")
            continue
        shown = result.url if result.final_url in (None, result.url) else (
            f"{result.url} (-> {result.final_url})")
        if not result.accounts:
            out.write(f"{shown}: no social-media accounts linked\n")
            continue
        count = len(result.accounts)
        out.write(f"{shown}: {count} account{'s' if count != 1 else ''} linked\n")
        width = max(len(f.account) for f in result.accounts)
        for f in result.accounts:
            out.write(f"  {f.platform:<10} {f.account:<{width}}  {f.url}\n")
        out.write("\n  # paste under the agency (check each account first):\n")
        out.write(yaml_snippet(result.accounts, installed))


async def discover_command(
    urls: Sequence[str], installed: Mapping[str, Platform], clock: Clock, *,
    fmt: str = "text", timeout: float = 20.0, out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``pantau discover``: 0 when some account was found, 1 when none, 2 for a bad URL."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        targets = [normalize_url(u) for u in urls]
    except ValueError as exc:
        print(f"pantau discover: {exc}", file=err)
        return 2
    if not targets:
        print("pantau discover: give at least one URL", file=err)
        return 2
    async with HttpClient(user_agent=default_user_agent(), validators=_NoValidators(),
                          clock=clock) as client:
        results = await asyncio.gather(*(discover_site(client, u, timeout) for u in targets))
    for result in results:
        if result.error is not None:
            print(f"pantau discover: {result.url}: {result.error}", file=err)
    if fmt == "json":
        json.dump(_json(results), out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        _text(results, installed, out)
    return 0 if any(r.accounts for r in results) else 1

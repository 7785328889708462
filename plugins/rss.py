"""The ``rss`` platform: an RSS 0.9x/2.0, RSS 1.0 (RDF) or Atom feed, by its URL.

One conditional GET per check (ETag / Last-Modified kept by the HTTP client); a 304 or an
identical body is reported as unchanged without parsing. Otherwise the body is read by
:func:`plugins.feeds.read_feed`: plain RSS 2.0 up to 256 KiB by the fast reader right away
(about 1 ms), anything else by :func:`plugins.feeds.parse_feed` in ``ctx.run_cpu`` (the core's
worker processes). The newest entry date is taken, never the first entry. Settings under
``platforms.rss``::

    rss:
      future_skew: 1d                # entries dated further ahead are ignored
      default_timezone: Asia/Jakarta # the zone of dates written without one
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

from monitor import hookimpl
from monitor.model import Observation
from monitor.platform import CheckContext, Platform
from plugins.dates import DatedSettings
from plugins.feeds import read_feed

__all__ = ["RssPlatform", "RssSettings", "register_platforms"]

#: Feed types first; some servers negotiate, and a few answer */* with HTML.
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5"
)


# The common shape of a feed URL, read without urlsplit (100,000 accounts are normalised at
# start): http(s)://host[:port] then anything without whitespace from "/", "?" or "#" on.
# Every other string goes through urlsplit (IPv6, percent-encoded or non-ASCII hosts, user
# info, odd separators...), which gives the same result for these.
_SIMPLE_URL = re.compile(
    r"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<host>[A-Za-z0-9._-]+)(?::(?P<port>[0-9]*))?"
    r"(?P<rest>[/?#]\S*)?"
)
_SPACE = re.compile(r"\s")
_HEADERS = MappingProxyType({"Accept": ACCEPT})
#: What every unchanged check observes (frozen: one object serves them all).
_NOT_MODIFIED = Observation.not_modified("feed")


class RssSettings(DatedSettings):
    """``platforms.rss`` in the config: ``future_skew`` and ``default_timezone``."""


class RssPlatform(Platform):
    """A feed URL; the newest entry's ``published`` (or ``updated``) date."""

    name = "rss"
    settings_model = RssSettings

    def normalize(self, account: str) -> str:
        """An absolute http(s) URL with the scheme and host lower-cased; path and query kept.

        The fragment is dropped (it is never sent). A URL carrying a user name or password is
        refused without echoing it: account names end up in metrics and logs.
        """
        value = account.strip()
        simple = _SIMPLE_URL.fullmatch(value)
        if simple is not None:
            netloc = simple["host"].lower()
            if simple["port"]:  # as urlsplit's .port: a decimal number up to 65535
                try:
                    number = int(simple["port"])
                except ValueError:
                    number = -1
                if not 0 <= number <= 65535:
                    raise ValueError(f"expected an http(s) feed URL, got {account!r}")
                netloc += f":{number}"
            rest = (simple["rest"] or "").partition("#")[0]
            path, mark, query = rest.partition("?")
            return f"{simple['scheme'].lower()}://{netloc}{path}{mark if query else ''}{query}"
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            raise ValueError(f"expected an http(s) feed URL, got {account!r}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname or _SPACE.search(value):
            raise ValueError(f"expected an http(s) feed URL, got {account!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("a feed URL must not contain a user name or password")
        host = parts.hostname  # already lower-case
        if ":" in host:
            host = f"[{host}]"
        netloc = host if port is None else f"{host}:{port}"
        return urlunsplit((scheme, netloc, parts.path, parts.query, ""))

    def url(self, account: str) -> str:
        """The feed URL itself."""
        return account

    async def latest(self, account: str, ctx: CheckContext) -> Observation:
        """Fetch the feed (conditionally) and report its newest dated entry."""
        settings = ctx.settings if isinstance(ctx.settings, RssSettings) else RssSettings()
        resp = await ctx.http.get(account, headers=_HEADERS, conditional=True)
        resp.raise_for_status()
        if resp.unchanged:
            ctx.log.debug("feed unchanged", status=resp.status)
            return _NOT_MODIFIED
        posts = await read_feed(
            ctx,
            resp.body,
            now=ctx.clock.now(),
            default_tz=settings.tz,
            future_skew=timedelta(seconds=settings.future_skew),
            content_type=resp.headers.get("Content-Type"),
            base_url=str(resp.url),
        )
        ctx.log.debug("feed parsed", posts=len(posts), bytes=len(resp.body))
        return Observation.from_posts(posts, method="feed")


@hookimpl
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Provide the ``rss`` platform."""
    register(RssPlatform())

"""Tests for plugins.feeds: every RSS/Atom trap of PLATFORMS.md gives the right newest post."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest
from fakes.feeds import (
    HTML_LOGIN_PAGE,
    HTML_MAINTENANCE_PAGE,
    atom,
    atom_entry,
    billion_laughs,
    rdf,
    rdf_item,
    rss,
    rss_item,
    xxe_feed,
)

from monitor.model import Observation, ParseError, Post
from plugins.feeds import load_feed, parse_feed, posts_from_feed

NOW = datetime(2024, 10, 10, 12, 0, tzinfo=UTC)
JAKARTA = ZoneInfo("Asia/Jakarta")
DATA = Path(__file__).parent / "data" / "feeds"


def posts(body: bytes, **kwargs: object) -> list[Post]:
    options: dict = {"now": NOW, "default_tz": JAKARTA, "future_skew": timedelta(days=1)}
    options.update(kwargs)
    return parse_feed(body, **options)


def newest(body: bytes, **kwargs: object) -> Post:
    found = posts(body, **kwargs)
    assert found, "expected at least one dated post"
    return max(found, key=lambda p: p.published_at)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- which entry is the newest -------------------------------------------------------------


def test_unsorted_entries_give_the_maximum_date() -> None:
    """The newest post is the latest date anywhere in the feed, not the first entry."""
    body = rss([
        rss_item("Dua", pub_date="Tue, 01 Oct 2024 10:00:00 +0700"),
        rss_item("Tiga", pub_date="Wed, 09 Oct 2024 10:00:00 +0700"),
        rss_item("Satu", pub_date="Mon, 02 Sep 2024 10:00:00 +0700"),
    ])
    post = newest(body)
    assert post.published_at == utc(2024, 10, 9, 3)
    assert post.url == "https://dinsos.example.go.id/berita/tiga/"
    assert len(posts(body)) == 3


def test_pinned_old_post_first_is_not_the_newest() -> None:
    """A sticky post from last year at the top does not hide this week's post."""
    body = rss([
        rss_item("Pengumuman Penting", pub_date="Mon, 04 Dec 2023 08:00:00 +0700"),
        rss_item("Berita Minggu Ini", pub_date="Mon, 07 Oct 2024 08:00:00 +0700"),
        rss_item("Berita Lalu", pub_date="Mon, 30 Sep 2024 08:00:00 +0700"),
    ])
    assert newest(body).published_at == utc(2024, 10, 7, 1)


def test_lastbuilddate_and_channel_pubdate_are_ignored() -> None:
    """A channel lastBuildDate/pubDate newer than every item is not a post time."""
    body = rss(
        [rss_item("Lama", pub_date="Mon, 02 Sep 2024 10:00:00 +0700")],
        last_build_date="Thu, 10 Oct 2024 11:00:00 +0000",
        channel_pub_date="Thu, 10 Oct 2024 11:00:00 +0000",
    )
    assert newest(body).published_at == utc(2024, 9, 2, 3)


def test_atom_feed_level_updated_and_published_are_ignored() -> None:
    """An Atom feed's own <updated>/<published> are not post times."""
    body = atom(
        [atom_entry("a1", published="2024-09-02T10:00:00+07:00")],
        updated="2024-10-10T11:00:00+00:00",
        published="2024-10-10T11:00:00+00:00",
    )
    assert newest(body).published_at == utc(2024, 9, 2, 3)


def test_published_beats_updated() -> None:
    """An old video edited yesterday is not newer than a video published last week."""
    body = atom([
        atom_entry("edited", published="2024-01-05T10:00:00+00:00",
                   updated="2024-10-09T10:00:00+00:00"),
        atom_entry("fresh", published="2024-10-03T10:00:00+00:00",
                   updated="2024-10-03T10:05:00+00:00"),
    ])
    post = newest(body)
    assert post.id == "yt:video:fresh"
    assert post.published_at == utc(2024, 10, 3, 10)


def test_updated_is_used_when_no_entry_has_published() -> None:
    """A feed with only <updated> dates uses the newest of them."""
    body = atom([
        atom_entry("b", updated="2024-10-01T10:00:00Z"),
        atom_entry("c", updated="2024-10-08T10:00:00Z"),
        atom_entry("a", updated="2024-09-01T10:00:00Z"),
    ])
    post = newest(body)
    assert (post.id, post.published_at) == ("yt:video:c", utc(2024, 10, 8, 10))


def test_updated_is_not_used_when_another_entry_has_published() -> None:
    """When some entry has <published>, entries with only <updated> are skipped."""
    body = atom([
        atom_entry("old", published="2024-09-01T10:00:00Z"),
        atom_entry("edit-only", updated="2024-10-09T10:00:00Z"),
    ])
    found = posts(body)
    assert [p.id for p in found] == ["yt:video:old"]


def test_unreadable_published_does_not_fall_back_to_updated() -> None:
    """updated is not a per-entry fallback: unreadable published dates are a ParseError."""
    body = atom([atom_entry("x", published="minggu lalu", updated="2024-10-09T10:00:00Z")])
    with pytest.raises(ParseError, match="1 with an unreadable date"):
        posts(body)


def test_undated_entries_are_skipped() -> None:
    """Entries without a date (or with an unreadable one) are left out, the others counted."""
    body = rss([
        rss_item("Tanpa Tanggal"),
        rss_item("Rusak", pub_date="kemarin sore"),
        rss_item("Bertanggal", pub_date="Mon, 07 Oct 2024 08:00:00 +0700"),
    ])
    found = posts(body)
    assert [p.url for p in found] == ["https://dinsos.example.go.id/berita/bertanggal/"]


# --- dates feedparser gets wrong ------------------------------------------------------------


INDONESIAN = [
    ("Sen, 20 Mei 2024 10:00:00 WIB", utc(2024, 5, 20, 3)),
    ("Sab, 17 Agu 2024 08:00:00 WIB", utc(2024, 8, 17, 1)),
    ("17 Agustus 2024 08:00 WIB", utc(2024, 8, 17, 1)),
    ("Rab, 02 Okt 2024 13:00:00 +0700", utc(2024, 10, 2, 6)),
    ("Kamis, 03 Oktober 2024 13:00:00 +0700", utc(2024, 10, 3, 6)),
    ("Rab, 04 Des 2023 13:15:00 +0700", utc(2023, 12, 4, 6, 15)),
    ("Jum'at, 05 Januari 2024 09:00:00 WIB", utc(2024, 1, 5, 2)),
]


@pytest.mark.parametrize(("raw", "expected"), INDONESIAN)
def test_indonesian_month_and_day_names(raw: str, expected: datetime) -> None:
    """Indonesian dates in <pubDate> are read to the exact instant."""
    body = rss([rss_item("Berita", pub_date=raw)])
    assert newest(body).published_at == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tue, 01 Oct 2024 10:00:00 WIB", utc(2024, 10, 1, 3)),
        ("Tue, 01 Oct 2024 10:00:00 WITA", utc(2024, 10, 1, 2)),
        ("Tue, 01 Oct 2024 10:00:00 WIT", utc(2024, 10, 1, 1)),
    ],
)
def test_indonesian_zone_names(raw: str, expected: datetime) -> None:
    """WIB, WITA and WIT are +07:00, +08:00 and +09:00, not +00:00."""
    assert newest(rss([rss_item("Berita", pub_date=raw)])).published_at == expected


def test_feedparser_alone_gets_these_wrong() -> None:
    """The traps are real: feedparser's own parse of these dates is missing or off by hours."""
    body = rss([
        rss_item("Mei", pub_date="Sen, 20 Mei 2024 10:00:00 +0700"),
        rss_item("WIB", pub_date="Tue, 01 Oct 2024 10:00:00 WIB"),
        rss_item("Tanpa Zona", dc_date="2024-10-02T09:00:00"),
    ])
    entries = feedparser.parse(body).entries
    assert entries[0].published_parsed is None
    assert entries[1].published_parsed[:4] == (2024, 10, 1, 10)  # should be 03:00 UTC
    assert entries[2].updated_parsed[:4] == (2024, 10, 2, 9)  # should be 02:00 UTC
    mine = posts(body)
    assert [p.published_at for p in mine] == [utc(2024, 5, 20, 3), utc(2024, 10, 1, 3)]


@pytest.mark.parametrize(
    "body",
    [
        rss([rss_item("Berita", pub_date="Wed, 02 Oct 2024 09:00:00")]),
        rss([rss_item("Berita", pub_date="2024-10-02 09:00:00")]),
        atom([atom_entry("v", published="2024-10-02T09:00:00")]),
        rdf([rdf_item("https://kec.example.go.id/p/1", dc_date="2024-10-02T09:00:00")]),
    ],
)
def test_dates_without_zone_are_in_jakarta(body: bytes) -> None:
    """A date without a zone is Jakarta time (09:00 WIB = 02:00 UTC), never UTC."""
    assert newest(body).published_at == utc(2024, 10, 2, 2)


def test_dates_without_zone_use_the_configured_zone() -> None:
    """default_tz decides the zone of zoneless dates (WITA here)."""
    body = rss([rss_item("Berita", pub_date="2024-10-02 09:00:00")])
    assert newest(body, default_tz=ZoneInfo("Asia/Makassar")).published_at == utc(2024, 10, 2, 1)


def test_feedparser_fallback_only_with_an_explicit_zone() -> None:
    """A date only feedparser can read is used when it carries a numeric zone, else skipped."""
    greek = "Κυρ, 06 Οκτ 2024 12:00:00 +0200"  # feedparser's Greek handler reads this
    korean = "2024-10-06 오후 11:23:17"  # feedparser reads it, but without a zone: UTC guess
    body = rss([rss_item("Yunani", pub_date=greek), rss_item("Korea", pub_date=korean)])
    found = posts(body)
    assert [(p.url, p.published_at) for p in found] == [
        ("https://dinsos.example.go.id/berita/yunani/", utc(2024, 10, 6, 10))
    ]


# --- the future ------------------------------------------------------------------------------


def test_future_dates_beyond_the_skew_are_ignored() -> None:
    """A post scheduled three days ahead is ignored; one 12 hours ahead is kept."""
    body = rss([
        rss_item("Terjadwal", pub_date="Sun, 13 Oct 2024 12:00:00 +0000"),
        rss_item("Sebentar Lagi", pub_date="Fri, 11 Oct 2024 00:00:00 +0000"),
        rss_item("Kemarin", pub_date="Wed, 09 Oct 2024 12:00:00 +0000"),
    ])
    found = posts(body)
    assert sorted(p.published_at for p in found) == [utc(2024, 10, 9, 12), utc(2024, 10, 11)]
    assert newest(body, future_skew=timedelta(hours=1)).published_at == utc(2024, 10, 9, 12)


def test_only_future_entries_is_a_parse_error() -> None:
    """A feed whose only entries are far in the future has no usable date."""
    body = atom([atom_entry("premiere", published="2025-01-01T00:00:00Z")])
    with pytest.raises(ParseError, match="1 dated in the future"):
        posts(body)


# --- the three formats -----------------------------------------------------------------------


def test_rss2_ids_and_links() -> None:
    """RSS 2.0: id from <guid>, else the link; URL from <link>."""
    body = rss([
        rss_item("Dengan GUID", guid="https://dinsos.example.go.id/?p=101",
                 pub_date="Mon, 07 Oct 2024 08:00:00 +0700"),
        rss_item("Tanpa GUID", pub_date="Sun, 06 Oct 2024 08:00:00 +0700"),
    ])
    found = posts(body)
    assert [(p.id, p.url) for p in found] == [
        ("https://dinsos.example.go.id/?p=101", "https://dinsos.example.go.id/berita/dengan-guid/"),
        ("https://dinsos.example.go.id/berita/tanpa-guid/",
         "https://dinsos.example.go.id/berita/tanpa-guid/"),
    ]
    assert all(p.published_at.tzinfo is UTC for p in found)


def test_atom_entries() -> None:
    """Atom: id from <id>, URL from the alternate link."""
    body = atom([
        atom_entry("abc123", published="2024-10-07T08:00:00+00:00"),
        atom_entry("def456", published="2024-10-08T08:00:00+00:00"),
    ])
    obs = Observation.from_posts(posts(body), method="feed")
    assert obs.post_id == "yt:video:def456"
    assert obs.post_url == "https://www.youtube.com/watch?v=def456"
    assert obs.latest_post_at == utc(2024, 10, 8, 8)


def test_rss1_rdf_with_dc_date() -> None:
    """RSS 1.0 (RDF): dates come from dc:date; the channel's dc:date is ignored."""
    body = rdf(
        [
            rdf_item("https://kec.example.go.id/p/1", dc_date="2024-10-01T08:00:00+07:00"),
            rdf_item("https://kec.example.go.id/p/2", dc_date="2024-10-05T08:00:00+07:00"),
        ],
        channel_date="2024-10-10T11:00:00+00:00",
    )
    post = newest(body)
    assert (post.url, post.published_at) == ("https://kec.example.go.id/p/2", utc(2024, 10, 5, 1))


def test_relative_links_are_resolved_against_base_url() -> None:
    """A relative <link> becomes absolute against the feed's final URL."""
    item = rss_item("Relatif", link="/berita/relatif/", pub_date="Mon, 07 Oct 2024 08:00 WIB")
    body = rss([item])
    post = newest(body, base_url="https://kelurahan.example.go.id/feed/")
    assert post.url == "https://kelurahan.example.go.id/berita/relatif/"


def test_declared_encoding_is_honoured() -> None:
    """A windows-1252 feed with Indonesian dates parses (encoding from the XML declaration)."""
    body = (
        '<?xml version="1.0" encoding="windows-1252"?><rss version="2.0"><channel>'
        "<title>Caf\u00e9 Kota</title><item><title>Pr\u00e9sentasi</title>"
        "<link>https://x.example.go.id/1</link><pubDate>Sen, 07 Okt 2024 08:00:00 WIB</pubDate>"
        "</item></channel></rss>"
    ).encode("cp1252")
    assert newest(body, content_type="text/xml").published_at == utc(2024, 10, 7, 1)


@pytest.mark.parametrize("content_type", ["text/html; charset=UTF-8", "text/plain", None])
def test_feed_with_a_wrong_content_type_still_parses(content_type: str | None) -> None:
    """A real feed served as text/html or text/plain (misconfigured servers) is still read."""
    body = rss([rss_item("Berita", pub_date="Mon, 07 Oct 2024 08:00:00 WIB")])
    assert newest(body, content_type=content_type).published_at == utc(2024, 10, 7, 1)


def test_sample_wordpress_feed_file() -> None:
    """A saved WordPress feed (sticky post first, Indonesian dates) gives its newest post."""
    post = newest((DATA / "wordpress-id.xml").read_bytes())
    assert post.id == "https://diskominfo.example.go.id/?p=4312"
    assert post.published_at == utc(2024, 10, 9, 2, 30)


# --- not a feed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (HTML_LOGIN_PAGE, "text/html; charset=UTF-8"),
        (HTML_LOGIN_PAGE, "application/rss+xml"),  # a proxy keeps the feed's content type
        (HTML_MAINTENANCE_PAGE, None),
        (b'<?xml version="1.0"?>\n<!DOCTYPE html>\n<html><body>x</body></html>', None),
        (b"<p>Situs dalam perbaikan</p>", "text/html"),
    ],
)
def test_html_page_is_a_parse_error(body: bytes, content_type: str | None) -> None:
    """A login or maintenance page served instead of the feed is a ParseError naming HTML."""
    with pytest.raises(ParseError, match="not a feed: got an HTML page"):
        posts(body, content_type=content_type)


def test_html_error_names_the_page_title() -> None:
    """The message carries the page's title, so the operator sees which page it was."""
    with pytest.raises(ParseError, match="Login - SSO Pemerintah Kota Cilegon"):
        posts(HTML_LOGIN_PAGE)


@pytest.mark.parametrize(
    "body",
    [b"", b"   \n\t ", b"\x00\x01\x02\xff garbage", b"hello world", b'{"posts": []}',
     b'<?xml version="1.0"?><sitemap/>', b"<rss version='2.0'><channel><title>trunc"],
)
def test_empty_or_garbage_is_a_parse_error(body: bytes) -> None:
    """An empty body, binary junk, JSON or a non-feed XML document is a ParseError."""
    with pytest.raises(ParseError, match="not a feed"):
        posts(body)


def test_valid_feed_without_entries_has_no_posts() -> None:
    """A valid feed with zero entries gives [] (the account has no posts)."""
    assert posts(rss([], last_build_date="Thu, 10 Oct 2024 11:00:00 +0000")) == []
    assert posts(atom([], updated="2024-10-10T11:00:00Z")) == []
    assert Observation.from_posts([], method="feed").latest_post_at is None


def test_entries_without_any_date_is_a_parse_error() -> None:
    """Entries exist but none has a usable date: ParseError("no dated entries ...")."""
    body = rss([rss_item("A"), rss_item("B", pub_date="besok")])
    with pytest.raises(ParseError, match="no dated entries: 2 entries, 1 without a date, 1 with"):
        posts(body)


# --- hostile input ---------------------------------------------------------------------------


def test_external_entity_is_not_resolved(tmp_path: Path) -> None:
    """An XXE payload naming a local file neither leaks the file nor crashes."""
    secret = tmp_path / "secret.txt"
    secret.write_text("RAHASIA-7f3a9c")
    body = xxe_feed(str(secret))
    try:
        found = posts(body)
    except ParseError:
        found = []
    assert all("RAHASIA" not in (p.id or "") + (p.url or "") for p in found)
    feed = load_feed(body)
    texts = [feed.feed.get("title", "")] + [
        str(e.get(k, "")) for e in feed.entries for k in ("title", "id", "summary")
    ]
    assert not any("RAHASIA" in t for t in texts)


def test_billion_laughs_completes_quickly() -> None:
    """An entity-expansion bomb finishes fast and either parses or is a ParseError."""
    started = time.perf_counter()
    try:
        found = posts(billion_laughs())
    except ParseError:
        found = []
    assert time.perf_counter() - started < 2.0
    assert all(len(p.id or "") < 1000 for p in found)


def test_body_naming_a_local_file_is_not_read(tmp_path: Path) -> None:
    """A body that is a file path is parsed as bytes, never opened as a file."""
    feed_file = tmp_path / "feed.xml"
    feed_file.write_bytes(rss([rss_item("Lokal", pub_date="Mon, 07 Oct 2024 08:00 WIB")]))
    with pytest.raises(ParseError, match="not a feed"):
        posts(str(feed_file).encode())


# --- what feedparser is given ----------------------------------------------------------------


def test_missing_drv_libxml2_is_not_tried_at_every_parse(monkeypatch) -> None:
    """feedparser's default parser list names drv_libxml2, which is not installed: the list is
    emptied (expat is used either way); a list someone chose, or an installed drv_libxml2,
    is left alone."""
    import importlib.util

    import feedparser.api

    import plugins.feeds

    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["drv_libxml2"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    plugins.feeds._skip_missing_libxml2()
    assert feedparser.api.PREFERRED_XML_PARSERS == []
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["my_parser"])
    plugins.feeds._skip_missing_libxml2()
    assert feedparser.api.PREFERRED_XML_PARSERS == ["my_parser"]
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["drv_libxml2"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    plugins.feeds._skip_missing_libxml2()
    assert feedparser.api.PREFERRED_XML_PARSERS == ["drv_libxml2"]


def _spy_headers(monkeypatch) -> list[dict[str, str]]:
    import plugins.feeds

    seen: list[dict[str, str]] = []
    real = plugins.feeds.feedparser.parse

    def spy(source: object, **kwargs: object) -> object:
        seen.append(dict(kwargs["response_headers"]))  # type: ignore[arg-type]
        return real(source, **kwargs)

    monkeypatch.setattr(plugins.feeds.feedparser, "parse", spy)
    return seen


def test_feedparser_is_not_given_the_base_url_when_links_can_be_joined_after(monkeypatch) -> None:
    """Without Content-Location feedparser resolves no URL at all; the kept links are joined
    afterwards, to the URL feedparser would have made."""
    seen = _spy_headers(monkeypatch)
    body = atom([atom_entry("a", published="2024-10-07T08:00:00Z", link="/watch?v=a")])
    post = newest(body, base_url="https://www.youtube.com/feeds/videos.xml",
                  content_type="application/atom+xml")
    assert post.url == "https://www.youtube.com/watch?v=a"
    assert seen == [{"content-type": "application/atom+xml", "content-location": ""}]


@pytest.mark.parametrize(
    "body",
    [
        rss([rss_item("B", link="/berita/b/", pub_date="Mon, 07 Oct 2024 08:00 WIB")]).replace(
            b"<channel>", b'<channel xml:base="https://lain.example.go.id/sub/">'),
        atom([atom_entry("rel", published="2024-10-07T08:00:00Z", link="/watch?v=rel")]).replace(
            b"<id>yt:video:rel</id>", b"<id>video-rel</id>"),
        atom([atom_entry("empty", published="2024-10-07T08:00:00Z", link="")]),
    ],
    ids=["xml:base", "relative atom id", "empty href"],
)
def test_feedparser_gets_the_base_url_when_joining_after_cannot_be_exact(
    monkeypatch, body: bytes
) -> None:
    """An xml:base attribute, an id feedparser may or may not have resolved, an empty Atom
    href (which feedparser turns into the base URL): parsed with Content-Location, as before."""
    base = "https://dinsos.example.go.id/feed/"
    expected = posts_from_feed(load_feed(body, base_url=base), now=NOW, default_tz=JAKARTA,
                               future_skew=timedelta(days=1))
    seen = _spy_headers(monkeypatch)
    assert posts(body, base_url=base, fast=False) == expected
    assert seen[-1] == {"content-location": base}

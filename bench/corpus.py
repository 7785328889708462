"""Realistic feed bodies for the benchmark: WordPress RSS 2.0 as Indonesian local governments
serve it (about 30 KB, 20 items with Indonesian titles, descriptions and ``content:encoded``,
dates written as ``+0700``, ``WIB`` or with Indonesian month names).

Deterministic: the body of feed ``i`` at version ``v`` depends only on ``(i, v)``. A body is a
per-feed channel head (the agency's name and site) followed by one of :data:`POOL` item blocks,
so 10,000 feeds cost a few MB in the fake server, not 300 MB, while every feed's body (and so
its ETag and hash) is its own.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from xml.sax.saxutils import escape

__all__ = ["ITEMS", "POOL", "agency_of", "body", "government_of", "last_modified"]

#: Items per feed (WordPress' default ``posts_per_rss`` is 10; many sites raise it to 20).
ITEMS = 20
#: Distinct item blocks; feed ``i`` at version ``v`` uses block ``(i * 7919 + v) % POOL``.
POOL = 64
#: The newest post of version 0 (versions move forward one hour each).
EPOCH = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)

GOVERNMENTS = (
    "kota-cilegon", "kab-serang", "kota-serang", "kab-pandeglang", "kab-lebak",
    "kota-tangerang", "kab-tangerang", "kota-tangerang-selatan", "kab-bogor", "kota-bogor",
    "kota-depok", "kota-bekasi", "kab-bekasi", "kab-karawang", "kab-purwakarta",
    "kab-subang", "kab-sumedang", "kota-bandung", "kab-bandung", "kab-garut",
    "kab-tasikmalaya", "kota-cirebon", "kab-kuningan", "kab-brebes", "kota-tegal",
    "kota-semarang", "kab-kendal", "kab-demak", "kota-surakarta", "kab-klaten",
    "kota-yogyakarta", "kab-sleman", "kab-bantul", "kota-surabaya", "kab-sidoarjo",
    "kota-malang", "kab-jember", "kab-banyuwangi", "kota-denpasar", "kab-badung",
    "kota-mataram", "kota-kupang", "kota-pontianak", "kota-banjarmasin", "kota-samarinda",
    "kota-balikpapan", "kota-makassar", "kab-gowa", "kota-manado", "kota-palu",
    "kota-kendari", "kota-ambon", "kota-jayapura", "kab-merauke", "kota-medan",
    "kab-deli-serdang", "kota-padang", "kota-pekanbaru", "kota-jambi", "kota-palembang",
    "kota-bengkulu", "kota-bandar-lampung", "kota-pangkalpinang", "kota-batam",
    "kota-banda-aceh",
)
AGENCIES = (
    ("diskominfo", "Dinas Komunikasi dan Informatika"),
    ("dinsos", "Dinas Sosial"),
    ("dinkes", "Dinas Kesehatan"),
    ("disdik", "Dinas Pendidikan"),
    ("dpupr", "Dinas Pekerjaan Umum dan Penataan Ruang"),
    ("bappeda", "Badan Perencanaan Pembangunan Daerah"),
    ("bpbd", "Badan Penanggulangan Bencana Daerah"),
    ("dishub", "Dinas Perhubungan"),
    ("disdukcapil", "Dinas Kependudukan dan Pencatatan Sipil"),
    ("dlh", "Dinas Lingkungan Hidup"),
    ("dpmptsp", "Dinas Penanaman Modal dan PTSP"),
    ("bkpsdm", "Badan Kepegawaian dan Pengembangan SDM"),
    ("satpolpp", "Satuan Polisi Pamong Praja"),
    ("disnaker", "Dinas Tenaga Kerja"),
    ("dispar", "Dinas Pariwisata"),
    ("kec-utara", "Kecamatan Utara"),
)
_SUBJECTS = (
    "Rapat Koordinasi", "Sosialisasi", "Pelatihan", "Penyaluran Bantuan", "Pelayanan Keliling",
    "Gotong Royong", "Vaksinasi", "Musrenbang", "Apel Pagi", "Monitoring dan Evaluasi",
    "Peresmian", "Kunjungan Kerja", "Bimbingan Teknis", "Lomba", "Festival",
)
_TOPICS = (
    "Program Keluarga Harapan", "Stunting", "Pajak Daerah", "Kebersihan Lingkungan",
    "Pelayanan Publik", "Kesiapsiagaan Bencana", "UMKM", "Administrasi Kependudukan",
    "Jalan Lingkungan", "Sekolah Ramah Anak", "Air Bersih", "Transportasi Umum",
    "Pariwisata Daerah", "Ketahanan Pangan", "Zona Integritas",
)
_PLACES = (
    "Kecamatan Cibeber", "Kelurahan Ramanuju", "Aula Setda", "Alun-alun Kota",
    "Kantor Wali Kota", "Gedung DPRD", "Puskesmas Pulomerak", "SDN 1 Citangkil",
    "Balai Warga", "Pendopo Kabupaten",
)
_SENTENCES = (
    "Kegiatan ini dihadiri oleh kepala dinas beserta jajaran dan perwakilan masyarakat.",
    "Pemerintah daerah berkomitmen meningkatkan kualitas pelayanan kepada warga.",
    "Peserta mengikuti acara dengan antusias hingga selesai pada siang hari.",
    "Program tersebut merupakan bagian dari rencana kerja tahun anggaran berjalan.",
    "Masyarakat diimbau untuk aktif berpartisipasi dan menyampaikan aspirasi.",
    "Sebanyak ratusan warga menerima manfaat langsung dari kegiatan tersebut.",
    "Evaluasi akan dilakukan secara berkala untuk memastikan target tercapai.",
    "Kolaborasi lintas perangkat daerah menjadi kunci keberhasilan program ini.",
    "Informasi lebih lanjut dapat diperoleh melalui kanal resmi pemerintah daerah.",
    "Kepala bidang menyampaikan apresiasi atas dukungan seluruh pihak terkait.",
)
_HARI = ("Sen", "Sel", "Rab", "Kam", "Jum", "Sab", "Min")
_BULAN = ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des")
_WIB = timedelta(hours=7)


def government_of(i: int) -> str:
    """The local government (slug) feed ``i`` belongs to."""
    return GOVERNMENTS[i % len(GOVERNMENTS)]


def agency_of(i: int) -> tuple[str, str]:
    """``(slug, name)`` of the agency of feed ``i``: unique per feed index."""
    slug, name = AGENCIES[(i // len(GOVERNMENTS)) % len(AGENCIES)]
    gov = government_of(i)
    place = gov.replace("kota-", "Kota ").replace("kab-", "Kabupaten ").replace("-", " ").title()
    return f"{gov}-{slug}-{i}", f"{name} {place}"


def _date(when: datetime, style: int) -> str:
    """A pubDate as Indonesian WordPress sites write it: ``+0700``, ``WIB`` or Indonesian."""
    local = when + _WIB
    if style == 0:
        return local.strftime("%a, %d %b %Y %H:%M:%S") + " +0700"
    if style == 1:
        return local.strftime("%a, %d %b %Y %H:%M:%S") + " WIB"
    return (
        f"{_HARI[local.weekday()]}, {local.day:02d} {_BULAN[local.month - 1]} {local.year} "
        f"{local:%H:%M:%S} +0700"
    )


def _items(block: int) -> str:
    """The 20 ``<item>`` elements of item block ``block`` (about 29 KB)."""
    rng = random.Random(block)
    newest = EPOCH + timedelta(hours=block)
    parts = []
    for n in range(ITEMS):
        subject, topic, place = rng.choice(_SUBJECTS), rng.choice(_TOPICS), rng.choice(_PLACES)
        title = f"{subject} {topic} di {place}"
        slug = f"{subject}-{topic}-{block}-{n}".lower().replace(" ", "-")
        when = newest - timedelta(hours=n * 9 + rng.randint(0, 8), minutes=rng.randint(0, 59))
        post_id = 1000 + block * 100 + n
        lead = " ".join(rng.choice(_SENTENCES) for _ in range(2))
        paragraphs = "".join(
            "<p>" + " ".join(rng.choice(_SENTENCES) for _ in range(2)) + "</p>\n"
            for _ in range(2)
        )
        parts.append(
            "\t<item>\n"
            f"\t\t<title>{escape(title)}</title>\n"
            f"\t\t<link>https://SITE/{when:%Y/%m}/{slug}/</link>\n"
            "\t\t<dc:creator><![CDATA[humas]]></dc:creator>\n"
            f"\t\t<pubDate>{_date(when, (block + n) % 3)}</pubDate>\n"
            f"\t\t<category><![CDATA[Berita]]></category>\n"
            f"\t\t<category><![CDATA[{topic}]]></category>\n"
            f'\t\t<guid isPermaLink="false">https://SITE/?p={post_id}</guid>\n'
            f"\t\t<description><![CDATA[{lead} [&#8230;]]]></description>\n"
            f"\t\t<content:encoded><![CDATA[<p><strong>{escape(place)}</strong> &#8211; "
            f"{lead}</p>\n{paragraphs}<figure class=\"wp-block-image\"><img "
            f'src="https://SITE/wp-content/uploads/{when:%Y/%m}/{slug}.jpg" alt="{escape(title)}"'
            f' width="1024" height="683"/></figure>\n]]></content:encoded>\n'
            f"\t\t<wfw:commentRss>https://SITE/{when:%Y/%m}/{slug}/feed/</wfw:commentRss>\n"
            "\t\t<slash:comments>0</slash:comments>\n"
            "\t</item>\n"
        )
    return "".join(parts)


_BLOCKS: dict[int, bytes] = {}


def _block(index: int) -> bytes:
    block = _BLOCKS.get(index)
    if block is None:
        block = _BLOCKS[index] = _items(index).encode()
    return block


def _head(i: int, version: int) -> bytes:
    slug, name = agency_of(i)
    site = f"{slug.split('-')[-2]}.{government_of(i)}.go.id"
    built = EPOCH + timedelta(hours=version)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"\n'
        '\txmlns:content="http://purl.org/rss/1.0/modules/content/"\n'
        '\txmlns:wfw="http://wellformedweb.org/CommentAPI/"\n'
        '\txmlns:dc="http://purl.org/dc/elements/1.1/"\n'
        '\txmlns:atom="http://www.w3.org/2005/Atom"\n'
        '\txmlns:sy="http://purl.org/rss/1.0/modules/syndication/"\n'
        '\txmlns:slash="http://purl.org/rss/1.0/modules/slash/"\n\t>\n\n<channel>\n'
        f"\t<title>{escape(name)}</title>\n"
        f'\t<atom:link href="https://{site}/feed/" rel="self" type="application/rss+xml" />\n'
        f"\t<link>https://{site}</link>\n"
        f"\t<description>Berita dan informasi {escape(name)}</description>\n"
        f"\t<lastBuildDate>{format_datetime(built.replace(tzinfo=None))}</lastBuildDate>\n"
        "\t<language>id</language>\n"
        "\t<sy:updatePeriod>\n\thourly\t</sy:updatePeriod>\n"
        "\t<sy:updateFrequency>\n\t1\t</sy:updateFrequency>\n"
        "\t<generator>https://wordpress.org/?v=6.5.3</generator>\n"
    ).encode()


_TAIL = b"</channel>\n</rss>\n"


def body(i: int, version: int) -> bytes:
    """The RSS body of feed ``i`` at ``version`` (about 30 KB)."""
    site = f"{agency_of(i)[0].split('-')[-2]}.{government_of(i)}.go.id".encode()
    items = _block((i * 7919 + version) % POOL).replace(b"SITE", site)
    return _head(i, version) + items + _TAIL


def last_modified(version: int) -> str:
    """The ``Last-Modified`` header of a feed at ``version`` (an HTTP-date)."""
    return format_datetime(EPOCH + timedelta(hours=version), usegmt=True)

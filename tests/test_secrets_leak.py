"""No secret anywhere: logs (tracebacks included), metrics, `check` output, the state database.

Every platform that takes a secret is configured with tokens from ``{env: ...}``: instagram and
facebook (``access_token``, ``app_secret``), youtube (``api_key``), and ``leaky``, a third-party
plugin installed for real (a dist-info with an entry point on the path) whose settings hold a
``SecretField`` and which is careless with it: it logs the token inside a URL object and a
header dict, logs it through a stdlib logger, raises an exception (with a cause) carrying it,
and follows a redirect whose URL carries it. The loopback fake behind all of them echoes the
token back in error bodies and redirects to URLs containing it. Some tokens contain ``|``
(Meta app tokens are ``APPID|SECRET``), which URLs carry percent-encoded.

Then `pantau check` (JSON and table) and `pantau status` run in-process, and `pantau run
--log-level debug` as a process; their stdout and stderr, the daemon's /metrics, board and
JSON API, and every byte of the SQLite files (db, -wal, -shm) are searched for each secret
in every form it could take.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import html
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote, unquote, unquote_plus

import aiohttp
import pytest
import structlog
from aiohttp import web

from monitor.cli import main
from monitor.logs import configure_logging, register_secrets, scrub

IG_TOKEN = "EAAGleakTestInstagramToken0123456789abcdefXYZ"
FB_TOKEN = "1234567890|fbAppTokenSecretPart9a8b7c6d5e"
APP_SECRET = "5ec7e7a9b8c7d6e5f4a3b2c1d0e9f8a7"
YT_KEY = "AIzaSyLeakTestYoutubeKey_0123456789abc"
LEAKY_TOKEN = "lk-8f3a9c2e7b41|Zq5Xw0Rt+u/v"
IG_PROOF = hmac.new(APP_SECRET.encode(), IG_TOKEN.encode(), hashlib.sha256).hexdigest()
FB_PROOF = hmac.new(APP_SECRET.encode(), FB_TOKEN.encode(), hashlib.sha256).hexdigest()
SECRETS = {"instagram token": IG_TOKEN, "facebook token": FB_TOKEN, "app secret": APP_SECRET,
           "youtube key": YT_KEY, "leaky token": LEAKY_TOKEN, "instagram proof": IG_PROOF,
           "facebook proof": FB_PROOF}
ENV = {"PANTAU_TEST_IG_TOKEN": IG_TOKEN, "PANTAU_TEST_FB_TOKEN": FB_TOKEN,
       "PANTAU_TEST_APP_SECRET": APP_SECRET, "PANTAU_TEST_YT_KEY": YT_KEY,
       "PANTAU_TEST_LEAKY_TOKEN": LEAKY_TOKEN}
IG_USER_ID = "17841400000000000"
CHANNELS = {"echo": "UC" + "e" * 22, "redirect": "UC" + "r" * 22, "ok": "UC" + "o" * 22}


def _forms(secret: str) -> set[str]:
    """The secret, and its first 16 characters (a truncated echo is a leak too)."""
    return {secret, secret[:16]}


def _readings(text: str) -> list[str]:
    """The text as is and decoded the ways a secret gets encoded: percent-encoding (URLs, in
    any mix), ``+`` for space, JSON and HTML escapes. Independent of monitor.logs."""
    readings = [text, unquote(text), unquote_plus(text), html.unescape(text)]
    readings.append(text.replace("\\/", "/"))
    with contextlib.suppress(ValueError):
        readings.append(json.loads(f'"{text}"'))
    return readings


def assert_clean(where: str, data: str | bytes) -> None:
    """No secret, however encoded, in ``data``."""
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    for reading in _readings(text):
        for name, secret in SECRETS.items():
            for form in (*_forms(secret), *_forms(secret.replace("+", " "))):
                assert form not in reading, f"{where} leaks the {name} ({form[:6]}...)"


# -- the careless third-party plugin, installed for real -------------------------------------

LEAKY_MODULE = '''\
"""A third-party pantau platform that is careless with its secret."""
import logging
from datetime import datetime, timezone

from yarl import URL

from monitor import hookimpl
from monitor.model import Observation, ParseError, Post
from monitor.platform import Platform, PlatformSettings
from monitor.secrets import SecretField


class LeakySettings(PlatformSettings):
    api_token: SecretField
    base_url: str


class Leaky(Platform):
    name = "leaky"
    settings_model = LeakySettings

    async def latest(self, account, ctx):
        token = ctx.settings.api_token.get()
        url = f"{ctx.settings.base_url}/leaky/{account}?access_token={token}"
        ctx.log.debug("calling upstream", url=URL(url), headers={"Authorization": token})
        logging.getLogger("leaky.client").warning("GET %s", url)
        if account == "raise":
            try:
                raise ValueError(f"upstream refused token {token}")
            except ValueError as exc:
                raise RuntimeError(f"request to {url} failed") from exc
        if account == "redirect":
            resp = await ctx.http.get(url)
            raise ParseError(f"unexpected page at {resp.url} after {resp.redirects}")
        if account == "stdlib":
            try:
                {}["missing"]
            except KeyError:
                logging.getLogger("leaky.client").exception("lookup failed for %s", token)
        return Observation.from_posts(
            [Post(datetime(2025, 3, 1, tzinfo=timezone.utc), id="p1")], method="leaky")


@hookimpl
def register_platforms(register):
    register(Leaky())
'''


def _install_leaky(site: Path) -> Path:
    site.mkdir()
    (site / "leaky_plugin.py").write_text(LEAKY_MODULE)
    info = site / "leaky_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: leaky-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pantau]\nleaky = leaky_plugin\n")
    return site


# -- the echoing fake --------------------------------------------------------------------------

class EchoFake:
    """Answers every platform; records which secrets it was sent."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path, query = request.path, request.query
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
        token = bearer or query.get("access_token") or query.get("key") or ""
        sent = f"{bearer} {unquote(request.raw_path)}"
        for name, secret in SECRETS.items():
            if secret in sent:
                self.seen.add(name)
        base = f"http://{request.host}"
        if path.startswith("/landing"):
            return web.Response(status=401, text=f"<html>token {token} rejected at {path}</html>",
                                content_type="text/html",
                                headers={"WWW-Authenticate": f'Bearer error="{token}"'})
        if path.startswith("/graph/"):
            name = re.search(r"username\(([^)]+)\)", query.get("fields", ""))
            target = name[1] if name else path.split("/")[3]
            return self.graph(target, token, query.get("appsecret_proof", ""), base, request)
        if path.startswith("/yt/feeds/"):
            return web.Response(status=403, text="bot check")
        if path.startswith("/yt/api/"):
            return self.youtube_api(path, query, base)
        if path.startswith("/leaky/"):
            raise web.HTTPFound(f"{base}/landing/{quote(token, safe='')}/x?token={token}")
        return web.Response(status=404, text=f"nothing at {request.path_qs}")

    def graph(self, target: str, token: str, proof: str, base: str,
              request: web.Request) -> web.StreamResponse:
        kind = target.split(".")[0].removesuffix("page")
        if kind == "echo":
            return web.json_response({"error": {
                "message": f"Invalid OAuth access token - Cannot parse access token: {token} "
                           f"(proof {proof}, secret {APP_SECRET})",
                "type": "OAuthException", "code": 190, "fbtrace_id": token}}, status=400)
        if kind == "redirect":
            raise web.HTTPFound(f"{base}/landing?access_token={quote(token, safe='')}"
                                f"&appsecret_proof={proof}")
        if kind == "loop":
            raise web.HTTPFound(f"{request.path_qs}&access_token={quote(token, safe='')}")
        if kind == "html":
            return web.Response(text=f"<html>Session for {token} expired</html>",
                                content_type="text/html")
        if kind == "transient":
            return web.json_response({"error": {
                "message": f"Service temporarily unavailable for {token}", "code": 2,
                "is_transient": False}}, status=400)
        return web.json_response({"data": [{"id": "1_9", "created_time":
                                            "2025-03-01T02:00:00+0000",
                                            "permalink_url": "https://facebook.example/p/1_9"}]})

    def youtube_api(self, path: str, query: dict, base: str) -> web.StreamResponse:
        key = query.get("key", "")
        channel = query.get("id", "")
        if path.endswith("/channels") and channel == CHANNELS["echo"]:
            return web.json_response({"error": {
                "code": 400, "message": f"API key not valid. Please pass a valid API key: {key}",
                "errors": [{"message": f"bad key {key}", "domain": "global",
                            "reason": "keyInvalid"}], "status": "INVALID_ARGUMENT"}}, status=400)
        if path.endswith("/channels") and channel == CHANNELS["redirect"]:
            raise web.HTTPFound(f"{base}/landing?key={key}")
        if path.endswith("/channels"):
            return web.json_response({"items": [{"id": channel, "contentDetails": {
                "relatedPlaylists": {"uploads": "UU" + channel[2:]}}}]})
        return web.json_response({"items": [{"contentDetails": {
            "videoId": "dQw4w9WgXcQ", "videoPublishedAt": "2025-03-01T02:00:00Z"}}]})


def _config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "pantau.yaml"
    path.write_text(f"""\
listen: 127.0.0.1:0
state: {tmp_path / 'pantau.db'}
check: {{interval: 1s, timeout: 3s, concurrency: 8}}
platforms:
  instagram:
    graph_url: {base}/graph/v25.0
    web_url: {base}/ig
    access_token: {{env: PANTAU_TEST_IG_TOKEN}}
    app_secret: {{env: PANTAU_TEST_APP_SECRET}}
    ig_user_id: '{IG_USER_ID}'
    method: graph
  facebook:
    graph_url: {base}/graph/v25.0
    access_token: {{env: PANTAU_TEST_FB_TOKEN}}
    app_secret: {{env: PANTAU_TEST_APP_SECRET}}
  youtube:
    feed_url: {base}/yt/feeds/videos.xml
    web_url: {base}/yt
    api_url: {base}/yt/api/v3
    api_key: {{env: PANTAU_TEST_YT_KEY}}
  leaky:
    api_token: {{env: PANTAU_TEST_LEAKY_TOKEN}}
    base_url: {base}
agencies:
  - id: dinsos
    name: Dinas Sosial
    accounts:
      instagram: [echo.ig, redirect.ig, loop.ig, html.ig]
      facebook: [echopage, redirectpage, looppage, htmlpage, transientpage, okpage]
      youtube: {json.dumps(list(CHANNELS.values()))}
      leaky: [raise, redirect, stdlib, quiet]
""")
    return path


PER_PLATFORM = {"instagram": 4, "facebook": 6, "youtube": 3, "leaky": 4}
ACCOUNTS = sum(PER_PLATFORM.values())


@pytest.fixture
async def fake(aiohttp_server) -> tuple[EchoFake, str]:
    echo = EchoFake()
    server = await aiohttp_server(echo.app())
    return echo, str(server.make_url("/")).rstrip("/")


def _state_files(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("pantau.db*"))


async def test_no_secret_in_check_status_daemon_metrics_or_store(tmp_path, fake, monkeypatch,
                                                                capsys):
    """check (JSON, table), status, and a debug-logged daemon: no form of any secret in their
    output, logs, /metrics, board, JSON API or the SQLite files; every leak path was taken."""
    from plugins.meta import HUB

    echo, base = fake
    site = _install_leaky(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PANTAU_PLUGINS", raising=False)
    monkeypatch.delenv("PANTAU_DISABLE_PLUGINS", raising=False)
    config = _config(tmp_path, base)
    HUB.reset()
    try:
        # -- pantau check, JSON then table; pantau status ----------------------------------
        code = await asyncio.to_thread(main, ["check", "-c", str(config), "--format", "json",
                                              "--log-level", "debug"])
        out, err = capsys.readouterr()
        assert code == 1
        results = {(r["platform"], r["account"]): r for r in json.loads(out)}
        assert len(results) == ACCOUNTS
        reasons = {key: (r["error"] or {}).get("reason") for key, r in results.items()}
        assert reasons[("instagram", "echo.ig")] == "auth"
        assert reasons[("youtube", CHANNELS["echo"])] == "auth"
        assert reasons[("leaky", "raise")] == "internal"
        assert reasons[("leaky", "redirect")] == "parse"
        assert reasons[("facebook", "okpage")] is None and reasons[("youtube", CHANNELS["ok"])] \
            is None
        assert "Traceback" in err and "plugin raised" in err  # the traceback was logged...
        assert "upstream refused token ***" in err  # ...scrubbed, cause included
        assert "lookup failed for ***" in err  # stdlib logger with exc_info
        assert "calling upstream" in err and "access_token=***" in err  # a URL object
        assert "***" in results[("leaky", "redirect")]["error"]["message"]  # encoded form
        assert_clean("check --format json stdout", out)
        assert_clean("check --format json stderr", err)
        HUB.reset()
        await asyncio.to_thread(main, ["check", "-c", str(config), "--log-level", "debug"])
        table, err = capsys.readouterr()
        assert "okpage" in table and "FAILED (auth)" in table
        assert_clean("check table stdout", table)
        assert_clean("check table stderr", err)
        for fmt in ("json", "table"):
            assert await asyncio.to_thread(main, ["status", "-c", str(config), "--format", fmt,
                                                  "--log-level", "debug"]) == 0
            out, err = capsys.readouterr()
            assert "echopage" in out
            assert_clean(f"status {fmt}", out + err)
        for file in _state_files(tmp_path):
            assert_clean(f"{file.name} after check", file.read_bytes())
        # every secret was really sent to the fake, so "nowhere" means something
        assert echo.seen >= {"instagram token", "facebook token", "youtube key", "leaky token",
                             "instagram proof", "facebook proof"}
        HUB.reset()
        # -- pantau run --log-level debug, as a process --------------------------------------
        await _daemon(tmp_path, config, site)
    finally:
        HUB.reset()
        sys.modules.pop("leaky_plugin", None)


# The daemon as `pantau run`, with the first-check spread shortened (a minute by default).
RUN = ("import functools, sys; import monitor.daemon as d; "
       "d.Scheduler = functools.partial(d.Scheduler, spread=0.2); "
       "from monitor.cli import main; sys.exit(main(sys.argv[1:]))")


async def _daemon(tmp_path: Path, config: Path, site: Path) -> None:
    log = tmp_path / "daemon.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", RUN, "run", "-c", str(config), "--log-level", "debug"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=stderr, env=env)
    try:
        port = await _port(log, proc)
        metrics = ""
        async with aiohttp.ClientSession() as session:
            async with asyncio.timeout(20):
                while any(_checks(metrics, platform) < count  # every account checked again
                          for platform, count in PER_PLATFORM.items()):
                    await asyncio.sleep(0.1)
                    async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                        metrics = await resp.text()
            pages = {}
            for path in ("/", "/api/v1/agencies", "/readyz", "/healthz"):
                async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                    pages[path] = await resp.text()
        files = {file.name: file.read_bytes() for file in _state_files(tmp_path)}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = proc.stdout.read().decode()
    stderr = log.read_text()
    assert 'platform="leaky"' in metrics
    assert "plugin raised" in stderr and "Traceback" in stderr and "graph api call" in stderr
    assert "dinsos" in pages["/api/v1/agencies"]
    assert_clean("daemon stdout", stdout)
    assert_clean("daemon stderr (debug)", stderr)
    assert_clean("/metrics", metrics)
    for path, text in pages.items():
        assert_clean(path, text)
    for name, data in files.items():
        assert_clean(f"{name} while the daemon runs", data)
    for file in _state_files(tmp_path):
        assert_clean(f"{file.name} after the daemon", file.read_bytes())


async def _port(log: Path, proc: subprocess.Popen) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        for line in log.read_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == "serving":
                    return int(event["port"])
        await asyncio.sleep(0.05)
    raise AssertionError("the daemon did not serve in time")


def _checks(metrics: str, platform: str) -> float:
    """The daemon's checks of ``platform`` so far."""
    prefix = f'pantau_check_duration_seconds_count{{platform="{platform}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith(prefix))


# -- the log pipeline itself, on a terminal too ------------------------------------------------

@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_log_lines_are_scrubbed_whatever_carries_the_secret(json_lines):
    """JSON lines and the console renderer (a terminal): a secret in an exception traceback,
    a chained cause, a stdlib record, a URL object, a nested dict or percent-encoded in a URL
    never reaches the stream."""
    from yarl import URL

    secret = "tok|en-0123456789-scrub"
    register_secrets([secret])
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json=json_lines)
    log = structlog.get_logger("pantau.test")
    try:
        try:
            raise ValueError(f"inner {secret}")
        except ValueError as exc:
            raise RuntimeError(f"outer https://x.example/?access_token={secret}") from exc
    except RuntimeError:
        log.error("plugin raised", exc_info=True)
        logging.getLogger("thirdparty").exception("stdlib %s", secret)
    log.warning("objects", url=URL(f"https://x.example/cb/{secret}?t={secret}"),
                nested={"headers": [("Authorization", f"Bearer {secret}")]})
    logging.getLogger("thirdparty").warning("encoded %s", quote(secret, safe=""))
    text = stream.getvalue()
    assert "Traceback" in text and "inner ***" in text and "stdlib ***" in text
    assert "encoded ***" in text and "/cb/***" in text
    for form in _forms(secret):
        assert form not in text, form


def test_scrub_masks_the_longest_secret_whole():
    """A secret that contains another registered one is masked whole, not in pieces."""
    register_secrets(["abcd-short", "xx-abcd-short-yy-long"])
    assert scrub("a xx-abcd-short-yy-long b abcd-short") == "a *** b ***"

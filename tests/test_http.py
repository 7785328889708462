"""Tests for monitor/http.py against loopback servers, with a fake clock and a seeded rng."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import structlog
from aiohttp import web
from fakes.clock import FakeClock
from structlog.testing import capture_logs

import monitor
from monitor.http import (
    HttpClient,
    PlatformHttp,
    Response,
    Validators,
    default_user_agent,
    parse_retry_after,
    redact_url,
)
from monitor.logs import configure_logging
from monitor.model import AuthError, NotFound, ParseError, RateLimited, Timeout, Unreachable

START = datetime(2026, 1, 1, tzinfo=UTC)
SEED = 1234
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 31 Dec 2025 12:00:00 GMT"
FEED = b"<rss>feed body</rss>"


class DictValidators:
    """An in-memory ValidatorSource."""

    def __init__(self) -> None:
        self.stored: dict[str, Validators] = {}

    def get_validators(self, url: str) -> Validators | None:
        return self.stored.get(url)


@dataclass
class Fake:
    """The loopback server's state: hits per path and the headers of the last request."""

    base: str = ""
    hits: Counter[str] = field(default_factory=Counter)
    last_headers: dict[str, str] = field(default_factory=dict)
    in_flight: int = 0
    peak: int = 0
    held: int = 0
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    two_held: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.base + path


def _app(fake: Fake) -> web.Application:
    routes = web.RouteTableDef()

    @web.middleware
    async def record(request: web.Request, handler: Callable[..., Awaitable[web.StreamResponse]]):
        fake.hits[request.path] += 1
        fake.last_headers = dict(request.headers)
        return await handler(request)

    @routes.get("/ua")
    async def ua(request: web.Request) -> web.Response:
        return web.Response(text=request.headers.get("User-Agent", ""))

    @routes.get("/feed")
    async def feed(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return web.Response(body=FEED, headers={"ETag": ETAG, "Last-Modified": LAST_MODIFIED})

    @routes.get("/plain")
    async def plain(request: web.Request) -> web.Response:
        return web.Response(body=FEED, content_type="application/xml")

    @routes.get("/status/{code}")
    async def status(request: web.Request) -> web.Response:
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), headers=headers, text="x")

    @routes.get("/flaky")
    async def flaky(request: web.Request) -> web.Response:
        if fake.hits["/flaky"] == 1:
            return web.Response(status=503, headers={"Retry-After": "5"})
        return web.Response(text="recovered")

    @routes.get("/big")
    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()  # chunked: no Content-Length to check up front
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b"a" * 1000)
        await resp.write_eof()
        return resp

    @routes.get("/gzip")
    async def gzipped(request: web.Request) -> web.Response:
        size = int(request.query["size"])
        return web.Response(
            body=gzip.compress(b"\0" * size),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/octet-stream"},
        )

    @routes.get("/loop")
    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop")

    @routes.get("/hop1")
    async def hop1(request: web.Request) -> web.Response:
        raise web.HTTPFound("/hop2")

    @routes.get("/hop2")
    async def hop2(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/ua")

    @routes.get("/charset")
    async def charset(request: web.Request) -> web.Response:
        return web.Response(
            body="Kota Cilegon — ok".encode("iso-8859-1", errors="replace"),
            headers={"Content-Type": "text/plain; charset=ISO-8859-1"},
        )

    @routes.get("/gate")
    async def gate(request: web.Request) -> web.Response:
        fake.in_flight += 1
        fake.peak = max(fake.peak, fake.in_flight)
        fake.held += 1
        if fake.held == 2:
            fake.two_held.set()
        try:
            await fake.gate.wait()
        finally:
            fake.in_flight -= 1
        return web.Response(text="done")

    app = web.Application(middlewares=[record])
    app.add_routes(routes)
    return app


@pytest.fixture
async def fake(aiohttp_server) -> AsyncIterator[Fake]:
    """A running loopback fake server."""
    state = Fake()
    server = await aiohttp_server(_app(state))
    state.base = str(server.make_url("")).rstrip("/")
    yield state
    state.gate.set()  # never leave /gate handlers waiting (the server would wait for them)


class RawServer:
    """A TCP server that reads the request, optionally writes ``reply``, then stalls."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.port = 0
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        self._writers.append(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            if self.reply:
                writer.write(self.reply)
                await writer.drain()
            await self._stop.wait()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def stop(self) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], Awaitable[RawServer]]]:
    """Factory of stalling TCP servers, stopped at teardown."""
    servers: list[RawServer] = []

    async def start(reply: bytes = b"") -> RawServer:
        server = RawServer(reply)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@dataclass
class Env:
    clock: FakeClock
    validators: DictValidators
    client: HttpClient

    def bind(self, platform: str = "rss", timeout: float = 60.0, **kwargs) -> PlatformHttp:
        return self.client.bind(platform, timeout=timeout, **kwargs)


@pytest.fixture
async def make_env() -> AsyncIterator[Callable[..., Awaitable[Env]]]:
    """Factory of started HttpClients on a FakeClock with a seeded rng; closed at teardown."""
    clients: list[HttpClient] = []

    async def make(**kwargs) -> Env:
        clock, validators = FakeClock(START), DictValidators()
        kwargs.setdefault("user_agent", default_user_agent())
        client = HttpClient(validators=validators, clock=clock, rng=random.Random(SEED), **kwargs)
        await client.start()
        clients.append(client)
        return Env(clock, validators, client)

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def env(make_env) -> Env:
    """A default Env."""
    return await make_env()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- User-Agent ---------------------------------------------------------------------------


def test_default_user_agent_names_version_and_project() -> None:
    """The default User-Agent is pantau/<version> (+<project URL>)."""
    assert default_user_agent() == f"pantau/{monitor.__version__} (+{monitor.PROJECT_URL})"


async def test_default_user_agent_is_sent(env: Env, fake: Fake) -> None:
    """Requests carry the client's User-Agent."""
    response = await env.bind().get(fake.url("/ua"))
    assert response.text() == default_user_agent()


async def test_user_agent_overridden_per_platform_and_per_request(env: Env, fake: Fake) -> None:
    """bind(user_agent=) overrides the client's, a request header overrides both."""
    http = env.bind(user_agent="PlatformAgent/1")
    assert (await http.get(fake.url("/ua"))).text() == "PlatformAgent/1"
    response = await http.get(fake.url("/ua"), headers={"user-agent": "RequestAgent/2"})
    assert response.text() == "RequestAgent/2"


# --- conditional GET ----------------------------------------------------------------------


async def test_conditional_sends_stored_validators(env: Env, fake: Fake) -> None:
    """With conditional=True and stored validators, If-None-Match/If-Modified-Since are sent."""
    stored = Validators(etag='"abc"', last_modified=LAST_MODIFIED)
    env.validators.stored[fake.url("/plain")] = stored
    await env.bind().get(fake.url("/plain"), conditional=True)
    assert fake.last_headers["If-None-Match"] == '"abc"'
    assert fake.last_headers["If-Modified-Since"] == LAST_MODIFIED


async def test_validators_not_sent_when_not_conditional(env: Env, fake: Fake) -> None:
    """A plain GET sends no validators even when some are stored, and records none."""
    env.validators.stored[fake.url("/feed")] = Validators(etag=ETAG, last_modified=LAST_MODIFIED)
    http = env.bind()
    response = await http.get(fake.url("/feed"))
    assert "If-None-Match" not in fake.last_headers
    assert "If-Modified-Since" not in fake.last_headers
    assert response.status == 200 and not response.unchanged
    assert http.pending_validators == {}


async def test_conditional_without_stored_validators_sends_none(env: Env, fake: Fake) -> None:
    """A conditional GET with nothing stored sends no validator headers."""
    await env.bind().get(fake.url("/feed"), conditional=True)
    assert "If-None-Match" not in fake.last_headers
    assert "If-Modified-Since" not in fake.last_headers


async def test_304_is_not_modified_and_unchanged(env: Env, fake: Fake) -> None:
    """A 304 gives not_modified, unchanged, an empty body and no pending validators."""
    env.validators.stored[fake.url("/feed")] = Validators(etag=ETAG)
    http = env.bind()
    response = await http.get(fake.url("/feed"), conditional=True)
    assert (response.status, response.not_modified, response.unchanged) == (304, True, True)
    assert response.body == b""
    response.raise_for_status()
    assert http.pending_validators == {}


async def test_200_records_pending_validators(env: Env, fake: Fake) -> None:
    """A conditional 200 records ETag, Last-Modified and the body's sha256."""
    http = env.bind()
    response = await http.get(fake.url("/feed"), conditional=True)
    assert response.status == 200 and not response.not_modified and not response.unchanged
    assert http.pending_validators == {
        fake.url("/feed"): Validators(
            etag=ETAG,
            last_modified=LAST_MODIFIED,
            body_hash=hashlib.sha256(FEED).hexdigest(),
        )
    }


async def test_same_body_hash_is_unchanged(env: Env, fake: Fake) -> None:
    """A 200 whose body hashes like the stored body_hash is unchanged; another body is not."""
    url = fake.url("/plain")
    env.validators.stored[url] = Validators(body_hash=hashlib.sha256(FEED).hexdigest())
    same = await env.bind().get(url, conditional=True)
    assert same.unchanged and not same.not_modified and same.body == FEED
    env.validators.stored[url] = Validators(body_hash=hashlib.sha256(b"older").hexdigest())
    assert not (await env.bind().get(url, conditional=True)).unchanged


async def test_validator_key_merges_params_and_redacts_secrets(env: Env, fake: Fake) -> None:
    """pending_validators keys carry the params, with secret values redacted."""
    http = env.bind()
    params = {"id": "7", "access_token": "SECRET"}
    await http.get(fake.url("/feed"), params=params, conditional=True)
    assert list(http.pending_validators) == [fake.url("/feed?id=7&access_token=REDACTED")]


# --- retries and backoff ------------------------------------------------------------------


async def test_500_retried_max_attempts_then_unreachable(env: Env, fake: Fake) -> None:
    """A 500 is tried exactly max_attempts times, then raised as Unreachable."""
    with pytest.raises(Unreachable, match="HTTP 500 from 127.0.0.1") as info:
        await env.bind().get(fake.url("/status/500"))
    assert info.value.reason == "unreachable"
    assert fake.hits["/status/500"] == 3
    assert len(env.clock.sleeps) == 2


async def test_backoff_is_exponential_and_jittered(make_env, fake: Fake) -> None:
    """Backoff waits are min(max, base * 2**n) times a jitter in [0.5, 1) from the seeded rng."""
    env = await make_env(max_attempts=5, backoff_base=1.0, backoff_max=6.0)
    with pytest.raises(Unreachable):
        await env.bind(timeout=100.0).get(fake.url("/status/502"))
    rng = random.Random(SEED)
    nominal = [1.0, 2.0, 4.0, 6.0]
    assert env.clock.sleeps == pytest.approx([n * rng.uniform(0.5, 1.0) for n in nominal])
    assert all(0.5 * n <= s < n for s, n in zip(env.clock.sleeps, nominal, strict=True))
    assert fake.hits["/status/502"] == 5


async def test_backoff_never_sleeps_past_deadline(make_env, fake: Fake) -> None:
    """When the next wait would pass the deadline, the last error is raised at once."""
    env = await make_env(backoff_base=2.0)  # first wait is 1..2 s, the budget is 1 s
    with pytest.raises(Unreachable, match="HTTP 503"):
        await env.bind(timeout=1.0).get(fake.url("/status/503"))
    assert fake.hits["/status/503"] == 1
    assert env.clock.sleeps == []


async def test_503_retry_after_is_honoured_when_it_fits(env: Env, fake: Fake) -> None:
    """A 503 with Retry-After: 5 waits exactly 5 s, then the retry succeeds."""
    response = await env.bind(timeout=30.0).get(fake.url("/flaky"))
    assert response.text() == "recovered"
    assert env.clock.sleeps == [5.0]
    assert fake.hits["/flaky"] == 2


async def test_503_retry_after_beyond_deadline_gives_up(env: Env, fake: Fake) -> None:
    """A 503 whose Retry-After passes the deadline is Unreachable after one request."""
    with pytest.raises(Unreachable, match="HTTP 503"):
        await env.bind(timeout=30.0).get(fake.url("/status/503?retry_after=120"))
    assert fake.hits["/status/503"] == 1
    assert env.clock.sleeps == []


async def test_404_is_returned_not_retried(env: Env, fake: Fake) -> None:
    """A 404 is returned after one request; raise_for_status raises NotFound."""
    response = await env.bind().get(fake.url("/status/404"))
    assert response.status == 404
    assert fake.hits["/status/404"] == 1
    with pytest.raises(NotFound):
        response.raise_for_status()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30", 30.0), ("Thu, 01 Jan 2026 00:02:00 GMT", 120.0)],
    ids=["seconds", "http-date"],
)
async def test_429_is_rate_limited_without_retry(
    env: Env, fake: Fake, value: str, expected: float
) -> None:
    """A 429 raises RateLimited with Retry-After in seconds, after exactly one request."""
    with pytest.raises(RateLimited) as info:
        await env.bind().get(fake.url("/status/429"), params={"retry_after": value})
    assert info.value.retry_after == pytest.approx(expected)
    assert fake.hits["/status/429"] == 1
    assert env.clock.sleeps == []


# --- body cap -----------------------------------------------------------------------------


async def test_streamed_body_over_cap_is_parse_error(env: Env, fake: Fake) -> None:
    """A chunked body longer than max_bytes stops with ParseError 'too large'."""
    with pytest.raises(ParseError, match=r"response too large \(more than 1000 bytes\)"):
        await env.bind().get(fake.url("/big"), max_bytes=1000)
    assert fake.hits["/big"] == 1
    assert len((await env.bind().get(fake.url("/big"), max_bytes=4000)).body) == 4000


async def test_content_length_over_cap_fails_before_reading(env: Env, raw_server) -> None:
    """A Content-Length above the cap fails at once, without waiting for the body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\nonly a little"
    server = await raw_server(head)
    with pytest.raises(ParseError, match=r"more than 10 MiB"):
        await env.bind(timeout=0.5).get(f"http://127.0.0.1:{server.port}/")


async def test_head_has_no_body_whatever_its_content_length(env: Env, raw_server) -> None:
    """A HEAD answer is returned with an empty body, even with a Content-Length over the cap."""
    server = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n\r\n")
    response = await env.bind(timeout=0.5).request("HEAD", f"http://127.0.0.1:{server.port}/")
    assert (response.status, response.body) == (200, b"")


async def test_gzip_bomb_is_parse_error(env: Env, fake: Fake) -> None:
    """A small gzip body expanding past the 10 MiB cap is ParseError, counted decompressed."""
    with pytest.raises(ParseError, match=r"too large \(more than 10 MiB\)"):
        await env.bind().get(fake.url("/gzip"), params={"size": str(11 * 1024 * 1024)})


async def test_gzip_body_is_decompressed(env: Env, fake: Fake) -> None:
    """A gzip body under the cap arrives decompressed."""
    response = await env.bind().get(fake.url("/gzip"), params={"size": "5000"})
    assert response.body == b"\0" * 5000


# --- timeouts and connection failures -----------------------------------------------------


async def test_server_that_never_answers_times_out_within_deadline(env: Env, raw_server) -> None:
    """A silent server gives Timeout close to the check's 0.3 s budget."""
    server = await raw_server()
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"no answer within 0.3s from 127.0.0.1"):
        await env.bind(timeout=0.3).get(f"http://127.0.0.1:{server.port}/feed")
    assert time.monotonic() - started < 2.0
    assert server.connections == 1  # the backoff would pass the deadline: no retry


async def test_stalled_body_times_out(env: Env, raw_server) -> None:
    """A server that sends headers and then stalls mid-body gives Timeout."""
    server = await raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
    with pytest.raises(Timeout):
        await env.bind(timeout=0.3).get(f"http://127.0.0.1:{server.port}/")


async def test_passed_deadline_raises_timeout_without_request(env: Env, fake: Fake) -> None:
    """When the check's deadline has passed, no request is sent."""
    http = env.bind(timeout=5.0)
    env.clock.advance(6.0)
    with pytest.raises(Timeout):
        await http.get(fake.url("/ua"))
    assert fake.hits["/ua"] == 0


async def test_connection_refused_is_unreachable(env: Env) -> None:
    """A closed port gives Unreachable naming the host, after max_attempts tries."""
    port = closed_port()
    with pytest.raises(Unreachable, match=f"cannot connect to 127.0.0.1:{port}"):
        await env.bind().get(f"http://127.0.0.1:{port}/feed")
    assert len(env.clock.sleeps) == 2


# --- redirects ----------------------------------------------------------------------------


async def test_redirect_loop_is_unreachable(env: Env, fake: Fake) -> None:
    """A redirect loop is Unreachable('too many redirects') and is not retried."""
    with pytest.raises(Unreachable, match="too many redirects"):
        await env.bind().get(fake.url("/loop"), max_redirects=5)
    assert fake.hits["/loop"] == 5
    assert env.clock.sleeps == []


async def test_redirect_hops_are_exposed(env: Env, fake: Fake) -> None:
    """The final URL and each redirecting URL, in order, are on the Response."""
    response = await env.bind().get(fake.url("/hop1"))
    assert response.url == fake.url("/ua")
    assert response.redirects == (fake.url("/hop1"), fake.url("/hop2"))


async def test_redirect_not_followed_when_disallowed(env: Env, fake: Fake) -> None:
    """allow_redirects=False returns the 302 itself."""
    response = await env.bind().get(fake.url("/hop1"), allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/hop2"
    assert response.redirects == ()


# --- secrets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://graph.example/v25.0/me?fields=id&access_token=EAAB123",
            "https://graph.example/v25.0/me?fields=id&access_token=REDACTED",
        ),
        (
            "https://api.example/v3/channels?KEY=abc&part=x&appsecret_proof=f00",
            "https://api.example/v3/channels?KEY=REDACTED&part=x&appsecret_proof=REDACTED",
        ),
        (
            "https://x.example/?refresh_token=a&client_secret=b&sig=c#access_token=d",
            "https://x.example/?refresh_token=REDACTED&client_secret=REDACTED&sig=REDACTED"
            "#access_token=REDACTED",
        ),
        ("https://user:hunter2@x.example/feed", "https://user:REDACTED@x.example/feed"),
        ("https://x.example/feed/", "https://x.example/feed/"),
        (
            "https://x.example/feed?page=2&keyword=cilegon",
            "https://x.example/feed?page=2&keyword=cilegon",
        ),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    """Secret-looking query values and userinfo passwords are replaced by REDACTED."""
    assert redact_url(url) == expected


async def test_failure_messages_and_logs_hide_the_token(env: Env, fake: Fake) -> None:
    """Errors and log lines for a URL with ?access_token=SECRET never contain SECRET."""
    port = closed_port()
    with capture_logs() as logs:
        with pytest.raises(Unreachable) as refused:
            await env.bind().get(f"http://127.0.0.1:{port}/x?access_token=SECRET")
        with pytest.raises(Unreachable) as failed:
            await env.bind().get(fake.url("/status/500"), params={"access_token": "SECRET"})
        ok = await env.bind().get(fake.url("/ua?access_token=SECRET"))
    assert ok.status == 200
    assert "SECRET" not in str(refused.value) and "SECRET" not in str(failed.value)
    assert len(logs) == 7
    assert "SECRET" not in repr(logs)
    assert any("access_token=REDACTED" in entry["url"] for entry in logs)


# --- concurrency --------------------------------------------------------------------------


async def test_platform_concurrency_limit_across_checks(env: Env, fake: Fake) -> None:
    """With concurrency=2, the server never sees more than 2 simultaneous requests."""
    checks = [env.bind("website", concurrency=2) for _ in range(3)]
    tasks = [asyncio.create_task(http.get(fake.url("/gate"))) for http in checks * 2]
    await asyncio.wait_for(fake.two_held.wait(), 5)
    # A full round trip by another platform lets any request sent past the limit arrive.
    assert (await env.bind("other").get(fake.url("/ua"))).status == 200
    assert fake.held == 2
    fake.gate.set()
    responses = await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert [r.text() for r in responses] == ["done"] * 6
    assert fake.peak == 2


# --- Response -----------------------------------------------------------------------------


def _response(status: int = 200, body: bytes = b"", content_type: str = "") -> Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return Response(
        url="https://x.example/a?access_token=SECRET",
        status=status,
        headers=headers,
        body=body,
        not_modified=False,
        unchanged=False,
        redirects=(),
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthError),
        (403, AuthError),
        (404, NotFound),
        (410, NotFound),
        (418, ParseError),
        (429, RateLimited),
        (500, Unreachable),
    ],
)
def test_raise_for_status_maps_errors(status: int, error: type[Exception]) -> None:
    """raise_for_status maps each 4xx/5xx status to its CheckError."""
    with pytest.raises(error) as info:
        _response(status).raise_for_status()
    assert "SECRET" not in str(info.value)


def test_raise_for_status_other_4xx_message() -> None:
    """An unexpected 4xx is ParseError('unexpected HTTP 4xx')."""
    with pytest.raises(ParseError, match="unexpected HTTP 400"):
        _response(400).raise_for_status()


@pytest.mark.parametrize("status", [200, 204, 304])
def test_raise_for_status_passes_success(status: int) -> None:
    """2xx and 304 do not raise."""
    assert _response(status).raise_for_status() is None


async def test_text_uses_declared_charset(env: Env, fake: Fake) -> None:
    """text() decodes with the Content-Type charset."""
    response = await env.bind().get(fake.url("/charset"))
    assert response.text() == "Kota Cilegon ? ok"


def test_text_defaults_to_utf8_with_replacement() -> None:
    """Without a charset, text() is UTF-8 with invalid bytes replaced."""
    assert _response(body="é".encode() + b"\xff").text() == "é\ufffd"
    assert _response(body=b"ok", content_type="text/plain; charset=bogus").text() == "ok"


def test_json_parses_and_reports_invalid_json() -> None:
    """json() parses JSON and raises ParseError('invalid JSON: ...') otherwise."""
    assert _response(body=b'{"data": [1]}').json() == {"data": [1]}
    with pytest.raises(ParseError, match="invalid JSON: ") as info:
        _response(body=b"<html>login</html>").json()
    assert "SECRET" not in str(info.value)


async def test_request_before_start_is_an_error(fake: Fake) -> None:
    """Using the client before start() raises RuntimeError."""
    client = HttpClient(user_agent="t", validators=DictValidators(), clock=FakeClock(START))
    with pytest.raises(RuntimeError, match="start"):
        await client.bind("rss", timeout=5).get(fake.url("/ua"))


# --- parse_retry_after --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("Thu, 01 Jan 2026 00:02:00 GMT", 120.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),  # in the past
        ("-5", None),
        ("nan", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    """Retry-After seconds and HTTP-dates become seconds from now; garbage becomes None."""
    assert parse_retry_after(value, START) == expected


# --- retry policy: the branches not covered above -------------------------------------------


async def test_timeout_is_retried_while_the_deadline_allows(make_env, raw_server) -> None:
    """A Timeout is retried like Unreachable: max_attempts connections, a backoff between."""
    env = await make_env(backoff_base=0.01)  # waits of 5-10 ms on the fake clock
    server = await raw_server()
    with pytest.raises(Timeout, match="no answer within"):
        await env.bind(timeout=0.2).get(f"http://127.0.0.1:{server.port}/feed")
    assert server.connections == 3
    assert len(env.clock.sleeps) == 2
    assert all(0.005 <= s < 0.01 or 0.01 <= s < 0.02 for s in env.clock.sleeps)


async def test_max_attempts_one_never_retries(make_env, fake: Fake) -> None:
    """With max_attempts=1 a 500 is raised after one request, without a wait."""
    env = await make_env(max_attempts=1)
    with pytest.raises(Unreachable, match="HTTP 500"):
        await env.bind().get(fake.url("/status/500"))
    assert fake.hits["/status/500"] == 1
    assert env.clock.sleeps == []


async def test_retry_after_is_not_capped_by_backoff_max(make_env, fake: Fake) -> None:
    """A 5xx's Retry-After is waited as given, even above backoff_max, and without jitter."""
    env = await make_env(backoff_max=8.0)
    with pytest.raises(Unreachable, match="HTTP 503"):
        await env.bind(timeout=60.0).get(fake.url("/status/503?retry_after=20"))
    assert env.clock.sleeps == [20.0, 20.0]
    assert fake.hits["/status/503"] == 3


async def test_wait_ending_at_the_deadline_is_not_taken(env: Env, fake: Fake) -> None:
    """A wait that would end exactly at the deadline is not taken: the error is raised."""
    with pytest.raises(Unreachable, match="HTTP 503"):
        await env.bind(timeout=30.0).get(fake.url("/status/503?retry_after=30"))
    assert fake.hits["/status/503"] == 1
    assert env.clock.sleeps == []


@pytest.mark.parametrize(
    ("path", "error"),
    [("/status/404", None), ("/status/429", RateLimited), ("/big", ParseError)],
)
async def test_other_outcomes_are_not_retried(
    env: Env, fake: Fake, path: str, error: type[Exception] | None
) -> None:
    """Answers (404), RateLimited (429) and ParseError (body too large): one request each."""
    if error is None:
        assert (await env.bind().get(fake.url(path), max_bytes=100)).status == 404
    else:
        with pytest.raises(error):
            await env.bind().get(fake.url(path), max_bytes=100)
    assert fake.hits[path] == 1
    assert env.clock.sleeps == []


async def test_no_free_slot_within_the_deadline_is_timeout(env: Env, fake: Fake) -> None:
    """Waiting for a platform slot is bounded by the deadline; the slot holder is unharmed."""
    holder = asyncio.create_task(env.bind("website", concurrency=1).get(fake.url("/gate")))
    while fake.held < 1:
        await asyncio.sleep(0.01)
    with pytest.raises(Timeout, match=r"no free website request slot within 0.2s"):
        await env.bind("website", timeout=0.2, concurrency=1).get(fake.url("/ua"))
    assert fake.hits["/ua"] == 0
    fake.gate.set()
    assert (await asyncio.wait_for(holder, 5)).text() == "done"
    # the slot was given back: the next request of the platform goes through
    assert (await env.bind("website", concurrency=1).get(fake.url("/ua"))).status == 200


# --- debug logging --------------------------------------------------------------------------


async def test_debug_lines_name_each_attempt(env: Env, fake: Fake) -> None:
    """At debug level each attempt logs one line: its outcome, the redacted URL, its number."""
    with capture_logs() as logs:
        await env.bind().get(fake.url("/ua?access_token=SECRET"))
        with pytest.raises(Unreachable):
            await env.bind("youtube").get(fake.url("/status/500"))
    port = fake.base.rsplit(":", 1)[1]
    assert logs[0] == {
        "event": "http request",
        "platform": "rss",
        "method": "GET",
        "url": fake.url("/ua?access_token=REDACTED"),
        "status": 200,
        "bytes": len(default_user_agent()),
        "attempt": 1,
        "log_level": "debug",
    }
    assert logs[1:] == [
        {
            "event": "http request failed",
            "platform": "youtube",
            "method": "GET",
            "url": fake.url("/status/500"),
            "attempt": attempt,
            "reason": "unreachable",
            "error": f"HTTP 500 from 127.0.0.1:{port}",
            "log_level": "debug",
        }
        for attempt in (1, 2, 3)
    ]


_FILTERING_AT = structlog.make_filtering_bound_logger


@pytest.mark.parametrize(
    ("wrapper", "logged"),
    [
        (_FILTERING_AT(logging.NOTSET), True),
        (_FILTERING_AT(logging.DEBUG), True),
        (_FILTERING_AT(logging.INFO), False),
        (_FILTERING_AT(logging.ERROR), False),
        # wrapper classes of its own: asked through is_enabled_for, or taken to log
        (type("Debug", (_FILTERING_AT(logging.DEBUG),), {}), True),
        (type("Info", (_FILTERING_AT(logging.INFO),), {}), False),
        (structlog.BoundLogger, True),
    ],
    ids=["notset", "debug", "info", "error", "own-debug", "own-info", "generic"],
)
async def test_debug_arguments_computed_only_when_debug_is_on(
    env: Env, fake: Fake, monkeypatch: pytest.MonkeyPatch, wrapper: type, logged: bool
) -> None:
    """Below the configured level no line is written and the URL is not even redacted."""
    calls: list[str] = []

    def spy(url: str) -> str:
        calls.append(url)
        return redact_url(url)

    monkeypatch.setattr("monitor.http.redact_url", spy)
    structlog.configure(wrapper_class=wrapper)
    with capture_logs() as logs:
        await env.bind().get(fake.url("/ua"))
        with pytest.raises(Unreachable):
            await env.bind().get(fake.url("/status/500"))
    assert len(logs) == (4 if logged else 0)
    assert len(calls) == len(logs)


@pytest.mark.parametrize("level", ["debug", "info"])
async def test_configure_logging_level_decides_debug_lines(
    env: Env, fake: Fake, level: str
) -> None:
    """With the daemon's logging configuration, the http lines follow its level."""
    stream = io.StringIO()
    configure_logging(level, stream=stream, json=True)
    await env.bind().get(fake.url("/ua?access_token=SECRET"), conditional=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    http_lines = [line for line in lines if line.get("logger") == "pantau.http"]
    if level == "info":
        assert http_lines == []
    else:
        assert len(http_lines) == 1
        assert http_lines[0]["event"] == "http request"
        assert http_lines[0]["level"] == "debug"
        assert http_lines[0]["url"] == fake.url("/ua?access_token=REDACTED")

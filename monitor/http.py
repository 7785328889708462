"""The one HTTP client: User-Agent, timeouts, body cap, conditional GET, retries, concurrency.

The daemon owns one :class:`HttpClient` (one ``aiohttp.ClientSession``). Each check gets a
:class:`PlatformHttp` from :meth:`HttpClient.bind`, which carries the check's deadline, the
platform's User-Agent and the platform's concurrency limit::

    async with HttpClient(user_agent=default_user_agent(), validators=store, clock=clock) as client:
        http = client.bind("rss", timeout=20.0)
        response = await http.get(url, conditional=True)
        if response.unchanged:
            return Observation.not_modified("feed")

Failures are raised as :mod:`monitor.model` errors: ``Timeout`` and ``Unreachable`` (retried
with jittered exponential backoff within the check's deadline), ``RateLimited`` (429, never
retried), ``ParseError`` (body too large). Other 4xx answers are returned; the plugin reads
them or calls :meth:`Response.raise_for_status`.

Secrets: messages name the host only and logs use :func:`redact_url`; the text of aiohttp's
exceptions (which may contain the full URL, ``access_token=`` included) is never used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json as jsonlib
import logging
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import Message
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import structlog
from multidict import CIMultiDict
from yarl import URL

import monitor
from monitor.clock import Clock
from monitor.model import (
    AuthError,
    CheckError,
    InternalError,
    NotFound,
    ParseError,
    RateLimited,
    Timeout,
    Unreachable,
)

__all__ = [
    "HttpClient",
    "PlatformHttp",
    "Response",
    "ValidatorSource",
    "Validators",
    "default_user_agent",
    "parse_retry_after",
    "redact_url",
]

_log = structlog.get_logger("pantau.http")
#: The bound-logger classes structlog makes for the standard levels, and whether each lets
#: debug lines through (``make_filtering_bound_logger`` hands out one class per level).
_DEBUG_PASSES = {
    structlog.make_filtering_bound_logger(level): level <= logging.DEBUG
    for level in (
        logging.NOTSET,
        logging.DEBUG,
        logging.INFO,
        logging.WARNING,
        logging.ERROR,
        logging.CRITICAL,
    )
}

_CHUNK = 64 * 1024
# Newer aiohttp exception types (absent in older versions: then an empty tuple, never matched).
_DNS_ERROR = getattr(aiohttp, "ClientConnectorDNSError", ())
_NON_HTTP_URL = getattr(aiohttp, "NonHttpUrlClientError", ())
_CONNECT_TIMEOUT = getattr(aiohttp, "ConnectionTimeoutError", ())
_CONNECTION_LIMIT = 100
_DNS_CACHE_SECONDS = 300

_SECRET_PARAMS = frozenset(
    {
        "access_token",
        "token",
        "key",
        "api_key",
        "apikey",
        "appsecret_proof",
        "client_secret",
        "signature",
        "sig",
        "password",
    }
)
_PARAM = re.compile(r"(?P<lead>[?&#;])(?P<key>[^=&#?;\s]+)=(?P<value>[^&#;\s]*)")
_USERINFO = re.compile(r"(?P<lead>//[^/@:\s]*):[^/@\s]*@")


def default_user_agent() -> str:
    """pantau's User-Agent: ``pantau/<version> (+<project URL>)``."""
    return f"pantau/{monitor.__version__} (+{monitor.PROJECT_URL})"


def _is_secret(key: str) -> bool:
    name = key.lower().replace("-", "_")
    return (
        name in _SECRET_PARAMS or name.endswith("_token") or "secret" in name or "password" in name
    )


def _debug_enabled() -> bool:
    """Whether ``_log.debug`` would write a line, asked before its arguments are computed.

    Read from structlog's configuration at each call (``configure_logging``, a test's
    ``reset_defaults``), without binding a logger. Another wrapper class is asked through
    its ``is_enabled_for``; one without it is taken to log.
    """
    passes = _DEBUG_PASSES.get(structlog.get_config()["wrapper_class"])
    if passes is not None:
        return passes
    logger = _log.bind()
    # On the class: a generic BoundLogger turns any attribute into a log method.
    is_enabled_for = getattr(type(logger), "is_enabled_for", None)
    return True if is_enabled_for is None else bool(is_enabled_for(logger, logging.DEBUG))


def redact_url(url: str) -> str:
    """``url`` with the values of secret-looking query parameters replaced by ``REDACTED``.

    Matches ``access_token``, ``token``, ``key``, ``api_key``, ``apikey``, ``appsecret_proof``,
    ``client_secret``, ``signature``, ``sig``, ``password`` (case-insensitive), any ``*_token``
    and any name containing ``secret`` or ``password``; in the query and in the fragment. A
    password in the userinfo (``https://user:pw@host``) is redacted too. Works on any text.
    """
    if "=" not in url and "@" not in url:  # neither pattern can match: the common feed URL
        return url

    def param(match: re.Match[str]) -> str:
        if not _is_secret(match["key"]):
            return match[0]
        return f"{match['lead']}{match['key']}=REDACTED"

    return _USERINFO.sub(r"\g<lead>:REDACTED@", _PARAM.sub(param, url))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay seconds or an HTTP-date.

    A date in the past gives ``0.0``; a missing, negative or unreadable value gives ``None``.
    A naive ``now`` (or a date without a zone) is taken as UTC.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class Validators:
    """What a conditional GET sends back: the last ETag / Last-Modified, and the body's hash."""

    etag: str | None = None
    last_modified: str | None = None
    #: sha256 hex of the last successfully processed body (for servers without validators)
    body_hash: str | None = None


class ValidatorSource(Protocol):
    """Where the client finds stored validators (the daemon: loaded from the store)."""

    def get_validators(self, url: str) -> Validators | None:
        """The validators stored for ``url`` (a key as in ``pending_validators``), or None."""


@dataclass(frozen=True)
class Response:
    """A fully read answer. ``url`` is the final URL; ``redirects`` are the URLs that answered
    with a redirect, in order (the requested URL first).

    ``not_modified``: the server answered 304. ``unchanged``: 304, or (for a conditional GET)
    the body's sha256 equals the stored ``body_hash``.
    """

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    not_modified: bool = False
    unchanged: bool = False
    redirects: tuple[str, ...] = ()

    def text(self) -> str:
        """The body decoded with the Content-Type charset, else UTF-8 (errors replaced)."""
        charset = _charset(self.headers.get("Content-Type")) or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``ParseError("invalid JSON: ...")`` when it is not."""
        try:
            return jsonlib.loads(self.body)
        except jsonlib.JSONDecodeError as exc:
            raise ParseError(
                f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                f" (from {_where(self.url)})"
            ) from None
        except UnicodeDecodeError:
            raise ParseError(f"invalid JSON: not UTF-8 text (from {_where(self.url)})") from None
        except RecursionError:
            raise ParseError(f"invalid JSON: nested too deeply (from {_where(self.url)})") from None

    def raise_for_status(self) -> None:
        """Raise the error for this status: 2xx and 304 pass; 401/403 ``AuthError``; 404/410
        ``NotFound``; 429 ``RateLimited``; 5xx ``Unreachable``; anything else ``ParseError``."""
        status = self.status
        if 200 <= status < 300 or status == 304:
            return
        where = _where(self.url)
        if status in (401, 403):
            raise AuthError(f"HTTP {status} from {where}: access denied")
        if status in (404, 410):
            raise NotFound(f"HTTP {status} from {where}: not found")
        if status == 429:
            raise RateLimited(f"HTTP 429 from {where}")
        if status >= 500:
            raise Unreachable(f"HTTP {status} from {where}")
        raise ParseError(f"unexpected HTTP {status} from {where}")


def _charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    message = Message()
    message["content-type"] = content_type
    charset = message.get_param("charset")
    return charset.strip() if isinstance(charset, str) and charset.strip() else None


def _where(url: str | URL) -> str:
    """The host (and port if not the default) of ``url``: safe to put in messages."""
    try:
        parsed = url if isinstance(url, URL) else URL(url)
        host = parsed.host
    except (ValueError, TypeError):
        return "an invalid URL"
    if not host:
        return "an invalid URL"
    if ":" in host:
        host = f"[{host}]"
    port = parsed.explicit_port
    return host if port is None or parsed.is_default_port() else f"{host}:{port}"


def _seconds(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _size(n: int) -> str:
    for unit, factor in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor} {unit}"
    return f"{n} bytes"


class HttpClient:
    """The daemon's one HTTP client. Call :meth:`start` (or use ``async with``) before requests.

    ``body_cap`` bounds every body (decompressed), ``connect_timeout`` every connection
    attempt; ``max_attempts``, ``backoff_base`` and ``backoff_max`` shape the retries of
    ``Timeout`` / ``Unreachable`` within one request. ``rng`` jitters the backoff.
    """

    def __init__(
        self,
        *,
        user_agent: str,
        validators: ValidatorSource,
        clock: Clock,
        rng: random.Random | None = None,
        body_cap: int = 10 * 1024 * 1024,
        connect_timeout: float = 10.0,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 8.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.user_agent = user_agent
        self.validators = validators
        self.clock = clock
        self.rng = rng if rng is not None else random.Random()
        self.body_cap = body_cap
        self.connect_timeout = connect_timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._session: aiohttp.ClientSession | None = None
        self._semaphores: dict[tuple[str, int], asyncio.Semaphore] = {}

    async def start(self) -> None:
        """Create the shared session (no-op when already started)."""
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(limit=_CONNECTION_LIMIT, ttl_dns_cache=_DNS_CACHE_SECONDS)
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),  # every check starts clean
            raise_for_status=False,
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> HttpClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The shared session; ``RuntimeError`` before :meth:`start`."""
        if self._session is None:
            raise RuntimeError("HttpClient.start() has not been called (or it was closed)")
        return self._session

    def bind(
        self,
        platform: str,
        *,
        timeout: float,
        user_agent: str | None = None,
        concurrency: int = 4,
    ) -> PlatformHttp:
        """A client for one check of ``platform``: its deadline is ``timeout`` seconds from now.

        At most ``concurrency`` requests of this platform are in flight at once, across checks
        (one semaphore per ``(platform, concurrency)``).
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        semaphore = self._semaphores.get((platform, concurrency))
        if semaphore is None:
            semaphore = self._semaphores[(platform, concurrency)] = asyncio.Semaphore(concurrency)
        return PlatformHttp(
            client=self,
            platform=platform,
            timeout=timeout,
            deadline=self.clock.monotonic() + timeout,
            user_agent=user_agent or self.user_agent,
            semaphore=semaphore,
        )


@dataclass
class PlatformHttp:
    """The HTTP client bound to one check of one platform (see :meth:`HttpClient.bind`).

    ``pending_validators`` collects what conditional GETs learned during the check, keyed by
    the request URL (params merged, secrets redacted); the core commits them only if the
    check succeeds.
    """

    client: HttpClient
    platform: str
    timeout: float
    deadline: float
    user_agent: str
    semaphore: asyncio.Semaphore
    pending_validators: dict[str, Validators] = field(default_factory=dict)

    async def get(
        self,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        conditional: bool = False,
        allow_redirects: bool = True,
        max_redirects: int = 10,
        max_bytes: int | None = None,
    ) -> Response:
        """GET ``url`` (see :meth:`request`)."""
        return await self.request(
            "GET",
            url,
            params=params,
            headers=headers,
            conditional=conditional,
            allow_redirects=allow_redirects,
            max_redirects=max_redirects,
            max_bytes=max_bytes,
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        conditional: bool = False,
        allow_redirects: bool = True,
        max_redirects: int = 10,
        max_bytes: int | None = None,
    ) -> Response:
        """Send one request, retrying ``Timeout``/``Unreachable`` within the check's deadline.

        Returns 2xx, 3xx and 4xx answers (except 429) with the body read (at most
        ``max_bytes``, default the client's body cap). With ``conditional=True`` the stored
        validators are sent and new ones recorded in ``pending_validators`` on a 200.
        """
        target = _target(url, params)
        key = redact_url(str(target)) if conditional else ""
        stored = self.client.validators.get_validators(key) if conditional else None
        send = CIMultiDict({"User-Agent": self.user_agent})
        if stored is not None:
            if stored.etag:
                send["If-None-Match"] = stored.etag
            if stored.last_modified:
                send["If-Modified-Since"] = stored.last_modified
        if headers:
            for name, value in headers.items():
                send[name] = value
        attempt = _Attempt(
            method=method.upper(),
            target=target,
            headers=send,
            allow_redirects=allow_redirects,
            max_redirects=max_redirects,
            cap=self.client.body_cap if max_bytes is None else max_bytes,
        )
        response = await self._send_retrying(attempt)
        if conditional and response.status == 200:
            digest = hashlib.sha256(response.body).hexdigest()
            self.pending_validators[key] = Validators(
                etag=response.headers.get("ETag"),
                last_modified=response.headers.get("Last-Modified"),
                body_hash=digest,
            )
            if stored is not None and stored.body_hash == digest:
                response = replace(response, unchanged=True)
        return response

    async def _send_retrying(self, attempt: _Attempt) -> Response:
        """Send ``attempt`` until it gets an answer or may not be tried again.

        ``Timeout`` and ``Unreachable`` are retried, unless marked final (redirect loops,
        redirects to bad URLs, refused certificates); any other error is raised at once. The
        wait before the next attempt is :meth:`_backoff`. The last error is raised as it is
        after ``max_attempts`` attempts, or when the wait would end at or past the deadline.
        """
        client = self.client
        while True:
            try:
                return await self._send(attempt)
            except (Timeout, Unreachable) as error:
                if getattr(error, "_final", False):
                    raise
                # The wait is drawn before the stop is decided: every retryable failure
                # draws from the rng, the last attempt's too (as with tenacity before).
                wait = self._backoff(error, attempt.number)
                if (
                    attempt.number >= client.max_attempts
                    or client.clock.monotonic() + wait >= self.deadline
                ):
                    raise
            # Outside the except clause: the next attempt's errors do not chain this one.
            await client.clock.sleep(wait)

    def _backoff(self, error: CheckError, number: int) -> float:
        """Seconds to wait after the ``number``-th attempt failed with ``error``: the 5xx
        answer's ``Retry-After``, else ``min(backoff_max, backoff_base * 2**(number - 1))``
        jittered by a factor drawn from ``rng.uniform(0.5, 1.0)``."""
        retry_after = getattr(error, "_retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        client = self.client
        nominal = min(client.backoff_max, client.backoff_base * 2 ** (number - 1))
        return nominal * client.rng.uniform(0.5, 1.0)

    async def _send(self, attempt: _Attempt) -> Response:
        attempt.number += 1
        clock, semaphore = self.client.clock, self.semaphore
        remaining = self.deadline - clock.monotonic()
        if remaining <= 0:
            # A retry that wakes from its backoff past the deadline: the last attempt's
            # error (an HTTP 503, a refused connection) is what went wrong, not a timeout.
            raise attempt.error or self._no_answer(attempt)
        if semaphore.locked():
            try:
                async with asyncio.timeout(remaining):
                    await semaphore.acquire()
            except TimeoutError:
                raise Timeout(
                    f"no free {self.platform} request slot within {_seconds(remaining)}s"
                ) from None
        else:
            await semaphore.acquire()  # a free slot is taken without waiting: no timer needed
        try:
            remaining = self.deadline - clock.monotonic()
            if remaining <= 0:
                raise attempt.error or self._no_answer(attempt)
            response = await self._exchange(attempt, remaining)
        except CheckError as error:
            attempt.error = error
            if _debug_enabled():
                _log.debug(
                    "http request failed",
                    platform=self.platform,
                    method=attempt.method,
                    url=redact_url(str(attempt.target)),
                    attempt=attempt.number,
                    reason=error.reason,
                    error=error.message,
                )
            raise
        finally:
            semaphore.release()
        if _debug_enabled():
            _log.debug(
                "http request",
                platform=self.platform,
                method=attempt.method,
                url=redact_url(str(attempt.target)),
                status=response.status,
                bytes=len(response.body),
                attempt=attempt.number,
            )
        return response

    def _no_answer(self, attempt: _Attempt) -> Timeout:
        return Timeout(f"no answer within {_seconds(self.timeout)}s from {_where(attempt.target)}")

    async def _exchange(self, attempt: _Attempt, remaining: float) -> Response:
        client = self.client
        timeout = aiohttp.ClientTimeout(
            total=remaining, sock_connect=min(client.connect_timeout, remaining)
        )
        try:
            async with client.session.request(
                attempt.method,
                attempt.target,
                headers=attempt.headers,
                allow_redirects=attempt.allow_redirects,
                max_redirects=attempt.max_redirects,
                timeout=timeout,
            ) as resp:
                status = resp.status
                if status == 429:
                    raise RateLimited(
                        f"HTTP 429 from {_where(resp.url)}",
                        retry_after=parse_retry_after(
                            resp.headers.get("Retry-After"), client.clock.now()
                        ),
                    )
                if status >= 500:
                    error = Unreachable(f"HTTP {status} from {_where(resp.url)}")
                    error._retry_after = parse_retry_after(  # type: ignore[attr-defined]
                        resp.headers.get("Retry-After"), client.clock.now()
                    )
                    raise error
                if status == 304 or attempt.method == "HEAD":
                    body = b""
                else:
                    body = await _read_body(resp, attempt.cap)
                history = resp.history
                return Response(
                    url=str(resp.url),
                    status=status,
                    headers=resp.headers,
                    body=body,
                    not_modified=status == 304,
                    unchanged=status == 304,
                    redirects=tuple(str(hop.url) for hop in history) if history else (),
                )
        except CheckError:
            raise
        except _CONNECT_TIMEOUT:
            raise Timeout(
                f"could not connect to {_where(attempt.target)}"
                f" within {_seconds(timeout.sock_connect or remaining)}s"
            ) from None
        except TimeoutError:  # asyncio.TimeoutError, aiohttp's ServerTimeoutError
            raise Timeout(
                f"no answer within {_seconds(remaining)}s from {_where(attempt.target)}"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _unreachable(exc, _where(attempt.target)) from None


@dataclass(slots=True)
class _Attempt:
    """One request as sent on every attempt; ``number`` counts the attempts."""

    method: str
    target: URL
    headers: CIMultiDict[str]
    allow_redirects: bool
    max_redirects: int
    cap: int
    number: int = 0
    #: the error of the last attempt, if it failed
    error: CheckError | None = None


def _target(url: str, params: Mapping[str, str] | None) -> URL:
    try:
        target = URL(url)
    except (ValueError, TypeError):
        raise InternalError(f"invalid URL {redact_url(str(url))}") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise InternalError(f"not an absolute http(s) URL: {redact_url(str(url))}")
    return target.extend_query(params) if params else target


async def _read_body(resp: aiohttp.ClientResponse, cap: int) -> bytes:
    """The (decompressed) body, or ``ParseError`` as soon as it exceeds ``cap`` bytes."""
    if resp.content_length is not None and resp.content_length > cap:
        resp.close()
        raise ParseError(_too_large(cap, resp.url))
    body = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        body += chunk
        if len(body) > cap:
            # The error's traceback keeps this frame (and, through ``_Attempt.error``, a
            # cycle only the cyclic GC frees): drop the partial body before raising.
            del body
            resp.close()
            raise ParseError(_too_large(cap, resp.url))
    return bytes(body)


def _too_large(cap: int, url: URL) -> str:
    return f"response too large (more than {_size(cap)}) from {_where(url)}"


def _unreachable(exc: BaseException, where: str) -> Unreachable:
    """An ``Unreachable`` for an aiohttp/OS error, named by type and host, never by ``str(exc)``.

    Redirect loops, bad redirect targets and certificate errors will not get better by
    retrying: they are marked final.
    """
    final = False
    if isinstance(exc, aiohttp.TooManyRedirects):
        message, final = f"too many redirects from {where}", True
    elif isinstance(exc, (aiohttp.InvalidURL, _NON_HTTP_URL)):
        message, final = f"redirect to an invalid or non-HTTP URL from {where}", True
    elif isinstance(exc, aiohttp.ClientConnectorCertificateError):
        message, final = f"TLS certificate of {where} not accepted", True
    elif isinstance(exc, aiohttp.ClientSSLError):
        message = f"TLS error with {where}"
    elif isinstance(exc, _DNS_ERROR):
        message = f"DNS lookup failed for {where}"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        message = f"cannot connect to {where}"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        message = f"{where} closed the connection"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        message = f"connection broken while reading the body from {where}"
    else:
        message = f"{type(exc).__name__} talking to {where}"
    error = Unreachable(message)
    error._final = final  # type: ignore[attr-defined]
    return error

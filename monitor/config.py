"""YAML configuration -> validated :class:`Config` (agencies, accounts, platform settings).

:func:`load_config` reads the file with a safe YAML loader, validates every section with
pydantic (unknown keys are errors), normalises each account through its platform, resolves
secret references (``{env: NAME}``, ``{file: PATH}``, ``{credential: NAME}``) against the
given environment, and computes each account's effective settings with the precedence
account > agency > platform > global.

Every problem found is collected into one :class:`ConfigError` whose lines read
``FILE: PATH: PROBLEM`` (``PATH`` like ``agencies[3].accounts.instagram``). Messages are built
from field paths and fixed texts only, never from input values, so a secret written by
mistake is never echoed back.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import structlog
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from monitor.durations import Duration
from monitor.model import Account
from monitor.platform import Platform, PlatformSettings
from monitor.secrets import Secret, resolve_secret, world_readable_warnings
from monitor.workers import auto_workers

__all__ = [
    "DEFAULT_LISTEN",
    "AgencyInfo",
    "CheckSettings",
    "Config",
    "ConfigError",
    "load_config",
    "parse_listen",
    "resolve_state_path",
]

DEFAULT_LISTEN = "127.0.0.1:9864"
_MAX_WORKERS = 256
_DAY = 86400.0
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")
_PLATFORM = re.compile(r"[a-z][a-z0-9_]*")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
_LISTEN_HINT = 'use host:port, e.g. 127.0.0.1:9864, 0.0.0.0:9864 or "[::1]:9864"'
_ACCOUNT_SHAPE = (
    "expected an account: a string, a mapping {id: ..., interval/timeout/silence_after: ...}, "
    "or a list of those"
)
#: Stands in for a secret that failed to resolve (the error is already recorded).
_UNRESOLVED = Secret("", "unresolved")

Loc = tuple[str | int, ...]


class ConfigError(Exception):
    """The configuration is invalid. Holds every problem found as ``(path, problem)`` pairs.

    ``file``, ``path`` and ``problem`` describe the first one; ``str()`` lists all, one per
    line, as ``FILE: PATH: PROBLEM`` (or ``FILE: PROBLEM`` for the whole file).
    """

    def __init__(
        self,
        file: str | os.PathLike[str],
        path: str = "",
        problem: str = "",
        *,
        errors: list[tuple[str, str]] | None = None,
    ) -> None:
        self.file = str(file)
        self.errors: list[tuple[str, str]] = list(errors) if errors else [(path, problem)]
        self.path, self.problem = self.errors[0]
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(
            f"{self.file}: {path}: {problem}" if path else f"{self.file}: {problem}"
            for path, problem in self.errors
        )


class CheckSettings(BaseModel):
    """``check:``: the global defaults of every check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interval: Duration = 30 * 60.0
    timeout: Duration = 20.0
    concurrency: int = Field(
        default=16, ge=1, le=1024, strict=True, description="checks running at once"
    )
    workers: int | Literal["auto"] = Field(
        default="auto",
        description="processes that parse answers away from the event loop: a number, 0 "
        "(parse in threads of the daemon), or auto (the CPUs it may use, at most 4)",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_WORKERS:
            raise ValueError(f"must be auto or a whole number of worker processes from 0 "
                             f"(parse in threads) to {_MAX_WORKERS}")
        return value

    @property
    def worker_count(self) -> int:
        """``workers`` as a number: ``auto`` resolved for this machine."""
        return auto_workers() if self.workers == "auto" else int(self.workers)


@dataclass(frozen=True)
class AgencyInfo:
    """An agency as the metrics and the board show it (``pantau_agency_info``)."""

    id: str
    name: str
    group: str


@dataclass(frozen=True)
class Config:
    """A validated configuration. Durations are seconds."""

    source: Path
    listen: str
    listen_host: str
    listen_port: int
    state: Path
    check: CheckSettings
    silence_after: float
    retention: float
    expect: list[str]
    platforms: dict[str, PlatformSettings]
    agencies: list[AgencyInfo]
    accounts: list[Account]
    missing: list[tuple[str, str]]


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9864"`` -> ``("127.0.0.1", 9864)``; ``"[::1]:9864"`` -> ``("::1", 9864)``.

    Raises ``ValueError`` with an operator-facing message.
    """
    text = value.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:port; {_LISTEN_HINT}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address; {_LISTEN_HINT}") from None
        port = rest[1:]
    else:
        host, colon, port = text.rpartition(":")
        if not colon:
            raise ValueError(f"missing port; {_LISTEN_HINT}")
        if ":" in host:
            raise ValueError('put an IPv6 address in brackets, e.g. "[::1]:9864"')
        if not host:
            raise ValueError(f"missing host; {_LISTEN_HINT} (0.0.0.0 listens on every interface)")
        if not _HOSTNAME.fullmatch(host):
            raise ValueError(f"invalid host {host!r}; {_LISTEN_HINT}")
    if not _PORT.fullmatch(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"invalid port {port!r}: expected a number from 0 (any free) to 65535")
    return host, int(port)


def _listen(value: str) -> str:
    parse_listen(value)
    return value.strip()


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            "must be a lower-case slug: a-z, 0-9, '-' and '_', starting with a letter or digit"
        )
    return value


def _platform_name(value: str) -> str:
    if not _PLATFORM.fullmatch(value):
        raise ValueError("a platform name is a lower-case identifier, e.g. instagram")
    return value


def _non_empty(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _File(_Strict):
    """The top level of the file. ``platforms`` and ``agencies`` items are checked one by one."""

    listen: Annotated[str, AfterValidator(_listen)] = DEFAULT_LISTEN
    state: Annotated[str, AfterValidator(_non_empty)] | None = None
    check: CheckSettings = CheckSettings()
    silence_after: Duration = 7 * _DAY
    retention: Duration = 90 * _DAY
    expect: list[Annotated[str, AfterValidator(_platform_name)]] = []
    platforms: dict[str, Any] | None = None
    agencies: list[Any]

    @field_validator("check", "expect", mode="before")
    @classmethod
    def _null_is_default(cls, value: Any, info: ValidationInfo) -> Any:
        # A section whose lines are all commented out reads as null: take the defaults.
        if value is None:
            return {} if info.field_name == "check" else []
        return value

    @field_validator("agencies", mode="before")
    @classmethod
    def _agencies_given(cls, value: Any) -> Any:
        if value is None or value == []:
            raise ValueError("at least one agency is required")
        return value


class _Agency(_Strict):
    id: Annotated[str, AfterValidator(_slug)]
    name: Annotated[str, AfterValidator(_non_empty)]
    group: str = ""
    silence_after: Duration | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    accounts: dict[str, Any] | None = None


class _AccountSpec(_Strict):
    id: Annotated[str, AfterValidator(_non_empty)]
    interval: Duration | None = None
    timeout: Duration | None = None
    silence_after: Duration | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _number_is_text(cls, value: Any) -> Any:
        # Numeric page ids (facebook: 100064123456789) arrive from YAML as int.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# --- reading the file -------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing duplicate keys (YAML would silently keep the last one).

    Pure Python: the reference, and what words the errors of an invalid file."""


#: The same safe constructor over libyaml's parser (when PyYAML was built with it): about
#: four times faster, which matters with 100,000 accounts.
_CLoader: type[Any] | None = None
if hasattr(yaml, "CSafeLoader"):
    class _CLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """:class:`_Loader`'s constructor over libyaml's parser."""


def _construct_mapping(loader: Any, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # unhashable: construct_mapping reports it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {first.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
if _CLoader is not None:
    _CLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str) -> Any:
    """The document in ``text``, with libyaml when available. libyaml words its syntax errors
    differently from PyYAML's parser (same line and column), so an error other than one of
    the constructor's (duplicate key, unknown tag: the same code in both) is reported by
    parsing again with the pure-Python loader, as before libyaml was used."""
    if _CLoader is not None:
        try:
            return yaml.load(text, Loader=_CLoader)  # noqa: S506 - a CSafeLoader subclass
        except yaml.constructor.ConstructorError:
            raise
        except yaml.YAMLError:
            pass
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(path, problem="file not found") from None
    except IsADirectoryError:
        raise ConfigError(path, problem="is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(path, problem="not readable by this user") from None
    except UnicodeDecodeError:
        raise ConfigError(path, problem="not valid UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(path, problem=f"cannot be read: {exc.strerror}") from None
    try:
        data = _parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        # Never include the snippet: the offending line may hold a secret.
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(path, problem=f"invalid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(path, problem="invalid YAML") from None
    if data is None:
        raise ConfigError(path, problem="the file is empty: expected a mapping with agencies:")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a {type(data).__name__}"
        raise ConfigError(path, problem=f"expected a mapping (key: value) at the top, got {kind}")
    return data


# --- pydantic errors -> (loc, problem) ------------------------------------------------------


def _path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _unwrap(tp: Any) -> Any:
    """The one type inside ``Annotated[...]`` / ``X | None``, or ``tp`` itself."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
            continue
        if get_origin(tp) in (Union, types.UnionType):
            inner = [a for a in get_args(tp) if a is not type(None)]
            if len(inner) == 1:
                tp = inner[0]
                continue
        return tp


def _model_class(tp: Any) -> type[BaseModel] | None:
    tp = _unwrap(tp)
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model found at ``loc`` inside ``model``, if the path leads to one."""
    tp: Any = model
    for part in loc:
        tp = _unwrap(tp)
        origin = get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and isinstance(part, str):
            field = tp.model_fields.get(part)
            if field is None:
                return None
            tp = field.annotation
        elif origin is list and isinstance(part, int):
            tp = get_args(tp)[0]
        elif origin is dict and isinstance(part, str):
            tp = get_args(tp)[1]
        else:
            return None
    return _model_class(tp)


def _problem(model: type[BaseModel], error: Any) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        key = loc[-1]
        owner = _model_at(model, loc[:-1])
        if owner is None or not isinstance(key, str):
            return "unknown key"
        allowed = list(owner.model_fields)
        close = difflib.get_close_matches(key, allowed, n=1)
        if close:
            return f"unknown key {key!r}; did you mean {close[0]!r}?"
        return f"unknown key {key!r}; allowed keys: {', '.join(allowed)}"
    if error["type"] == "missing":
        return "required but missing"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _validate(
    model: type[BaseModel], data: Any, loc: Loc, errors: list[tuple[Loc, str]]
) -> Any:
    """``model.model_validate(data)``, or ``None`` with each problem appended to ``errors``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # loc and msg only: pydantic's input_value could be a secret.
        for error in exc.errors(include_url=False, include_context=False, include_input=False):
            errors.append(((*loc, *error["loc"]), _problem(model, error)))
        return None


# --- platforms and secrets ------------------------------------------------------------------


def _resolve_secrets(
    model: type[BaseModel],
    data: dict[str, Any],
    loc: Loc,
    environ: dict[str, str] | None,
    errors: list[tuple[Loc, str]],
) -> dict[str, Any]:
    """A copy of ``data`` whose secret fields hold resolved :class:`Secret` objects."""
    out = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = out.get(key)
        if value is None:
            continue
        if _unwrap(field.annotation) is Secret:
            try:
                out[key] = resolve_secret(value, environ)
            except ValueError as exc:
                errors.append(((*loc, key), str(exc)))
                out[key] = _UNRESOLVED
        elif (inner := _model_class(field.annotation)) is not None and isinstance(value, dict):
            out[key] = _resolve_secrets(inner, value, (*loc, key), environ, errors)
    return out


def _platform_settings(
    raw: dict[str, Any],
    platforms: Mapping[str, Platform],
    used: set[str],
    environ: dict[str, str] | None,
    errors: list[tuple[Loc, str]],
) -> dict[str, PlatformSettings]:
    settings: dict[str, PlatformSettings] = {}
    for name in raw:
        if name not in platforms:
            errors.append((("platforms", name),
                           f"unknown platform {name!r}; {_installed(platforms)}"))
    for name, platform in platforms.items():
        model = platform.settings_model
        loc: Loc = ("platforms", name)
        value = raw.get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            errors.append((loc, f"expected a mapping of {name} settings"))
            settings[name] = model.model_construct()
            continue
        if name not in raw and name not in used:
            # Not configured, not used: its defaults, even if it has required settings.
            try:
                settings[name] = model()
            except ValidationError:
                settings[name] = model.model_construct()
            continue
        resolved = _resolve_secrets(model, value, loc, environ, errors)
        validated = _validate(model, resolved, loc, errors)
        settings[name] = validated if validated is not None else model.model_construct()
    return settings


def _installed(platforms: Mapping[str, Platform]) -> str:
    if not platforms:
        return "no platform plugins are installed"
    return f"installed platforms: {', '.join(sorted(platforms))}"


# --- agencies and accounts ------------------------------------------------------------------


def _account_specs(
    value: Any, loc: Loc, errors: list[tuple[Loc, str]]
) -> list[tuple[Loc, _AccountSpec]]:
    """The accounts written under ``accounts.<platform>`` with where each was written."""
    items, indexed = (value, True) if isinstance(value, list) else ([value], False)
    specs: list[tuple[Loc, _AccountSpec]] = []
    for i, item in enumerate(items):
        item_loc = (*loc, i) if indexed else loc
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict):
            errors.append((item_loc, _ACCOUNT_SHAPE))
            continue
        spec = _validate(_AccountSpec, item, item_loc, errors)
        if spec is not None:
            specs.append((item_loc, spec))
    return specs


def _normalize(platform: Platform, raw: str) -> str:
    try:
        return platform.normalize(raw)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin bug becomes a readable error
        raise ValueError(
            f"platform {platform.name} failed to check the account ({type(exc).__name__})"
        ) from None


def _used_platforms(agencies: list[Any]) -> set[str]:
    used: set[str] = set()
    for agency in agencies:
        if isinstance(agency, dict) and isinstance(agency.get("accounts"), dict):
            used.update(k for k in agency["accounts"] if isinstance(k, str))
    return used


def _agency_accounts(
    agency: _Agency,
    loc: Loc,
    platforms: Mapping[str, Platform],
    settings: Mapping[str, PlatformSettings],
    defaults: _File,
    account_at: dict[tuple[str, str], Loc],
    errors: list[tuple[Loc, str]],
) -> list[Account]:
    """The agency's accounts, normalised, with effective settings; ``account_at`` records
    where each (platform, account) was first seen, to report duplicates across agencies."""
    accounts: list[Account] = []
    for name, value in (agency.accounts or {}).items():
        where: Loc = (*loc, "accounts", name)
        platform = platforms.get(name)
        if platform is None:
            errors.append((where, f"unknown platform {name!r}; {_installed(platforms)}"))
            continue
        per_platform = settings[name]
        for item_loc, spec in _account_specs(value, where, errors):
            try:
                normal = _normalize(platform, spec.id)
            except ValueError as exc:
                errors.append((item_loc, str(exc)))
                continue
            first = account_at.setdefault((name, normal), item_loc)
            if first != item_loc:
                errors.append((item_loc, f"duplicate account: {name} {normal!r} is already "
                                         f"configured at {_path(first)}"))
                continue
            accounts.append(Account(
                agency=agency.id,
                platform=name,
                account=normal,
                url=platform.url(normal),
                interval=_first(spec.interval, agency.interval, per_platform.interval,
                                defaults.check.interval),
                timeout=_first(spec.timeout, agency.timeout, per_platform.timeout,
                               defaults.check.timeout),
                silence_after=_first(spec.silence_after, agency.silence_after,
                                     per_platform.silence_after, defaults.silence_after),
            ))
    return accounts


# --- load_config ----------------------------------------------------------------------------


def load_config(
    path: str | os.PathLike[str],
    platforms: Mapping[str, Platform],
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and validate the config at ``path`` against the loaded ``platforms``.

    ``environ`` (default ``os.environ``) is used for secret references and
    ``$STATE_DIRECTORY``. Raises :class:`ConfigError` listing every problem found.
    """
    log = structlog.get_logger("pantau.config")
    source = Path(path)
    env = dict(os.environ if environ is None else environ)
    data = _read(source)
    errors: list[tuple[Loc, str]] = []
    readable_before = len(world_readable_warnings)

    top: _File | None = _validate(_File, data, (), errors)
    raw_platforms = data.get("platforms") if isinstance(data.get("platforms"), dict) else {}
    raw_agencies = data.get("agencies") if isinstance(data.get("agencies"), list) else []
    settings = _platform_settings(
        raw_platforms, platforms, _used_platforms(raw_agencies), env, errors
    )
    defaults = top or _File.model_construct()

    agencies: list[AgencyInfo] = []
    accounts: list[Account] = []
    missing: list[tuple[str, str]] = []
    agency_at: dict[str, Loc] = {}
    account_at: dict[tuple[str, str], Loc] = {}
    expect = list(dict.fromkeys(top.expect)) if top else []

    for index, raw in enumerate(raw_agencies):
        loc: Loc = ("agencies", index)
        if not isinstance(raw, dict):
            errors.append((loc, "expected a mapping with id, name and accounts"))
            continue
        agency: _Agency | None = _validate(_Agency, raw, loc, errors)
        if agency is None:
            continue
        if agency.id in agency_at:
            errors.append(((*loc, "id"), f"duplicate agency id {agency.id!r} "
                           f"(also at {_path(agency_at[agency.id])})"))
            continue
        agency_at[agency.id] = (*loc, "id")
        agencies.append(AgencyInfo(agency.id, agency.name, agency.group.strip()))
        mine = _agency_accounts(agency, loc, platforms, settings, defaults, account_at, errors)
        accounts.extend(mine)
        have = {a.platform for a in mine}
        missing.extend((agency.id, name) for name in expect if name not in have)

    for path in dict.fromkeys(world_readable_warnings[readable_before:]):
        log.warning("secret file is readable by other users; restrict it (chmod 600)", path=path)
    del world_readable_warnings[readable_before:]  # logged: a daemon reloading must not grow it
    if errors:
        raise ConfigError(source, errors=[(_path(loc), problem) for loc, problem in errors])
    assert top is not None  # no errors means the top level validated

    for name in expect:
        if name not in platforms:
            log.info("expected platform has no plugin installed: every agency is reported "
                        "missing on it", platform=name, config=str(source))
    host, port = parse_listen(top.listen)
    return Config(
        source=source,
        listen=top.listen,
        listen_host=host,
        listen_port=port,
        state=resolve_state_path(top.state, env),
        check=top.check,
        silence_after=top.silence_after,
        retention=top.retention,
        expect=expect,
        platforms=settings,
        agencies=agencies,
        accounts=accounts,
        missing=missing,
    )


def _first(*values: float | None) -> float:
    """The first value that is set (the precedence order is the argument order)."""
    return next(v for v in values if v is not None)


def resolve_state_path(configured: str | None, env: Mapping[str, str]) -> Path:
    """The store's path: ``state:`` as written, else ``$STATE_DIRECTORY/pantau.db`` under
    systemd, else ``./pantau.db``."""
    if configured is not None:
        return Path(configured).expanduser()
    # systemd's StateDirectory= may list several directories, colon-separated: use the first.
    directory = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(directory) / "pantau.db" if directory else Path("pantau.db")

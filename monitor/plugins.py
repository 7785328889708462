"""The PluginManager: built-in and third-party plugins enter through one door.

Every plugin is an entry point in the ``pantau`` group. ``PANTAU_PLUGINS`` (a comma list of
entry-point names) loads only those; ``PANTAU_DISABLE_PLUGINS`` (a comma list) blocks
those. A plugin that fails to import or to register is logged and skipped: the others load.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy
import structlog

from monitor import hookspecs
from monitor.platform import Platform

__all__ = ["LoadedPlugin", "Plugins", "load_plugins"]

GROUP = "pantau"
log = structlog.get_logger("pantau.plugins")


@dataclass
class LoadedPlugin:
    name: str
    version: str | None
    platforms: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Plugins:
    """The result of loading: the manager, the platforms by name, and what each plugin did."""

    pm: pluggy.PluginManager
    platforms: dict[str, Platform]
    loaded: list[LoadedPlugin]

    @property
    def failed(self) -> list[LoadedPlugin]:
        return [p for p in self.loaded if p.error]


def _names(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {n.strip() for n in value.split(",") if n.strip()}


def load_plugins(
    environ: Mapping[str, str] | None = None,
    extra: Iterable[tuple[str, Any]] = (),
    entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
) -> Plugins:
    """Load plugins from the ``pantau`` entry-point group, plus ``extra`` (name, object) pairs.

    ``extra`` is for tests and embedding; it passes the same filters and isolation.
    """
    env = os.environ if environ is None else environ
    only = _names(env.get("PANTAU_PLUGINS"))
    disabled = _names(env.get("PANTAU_DISABLE_PLUGINS")) or set()

    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    loaded: list[LoadedPlugin] = []

    def allowed(name: str) -> bool:
        return name not in disabled and (only is None or name in only)

    eps = importlib.metadata.entry_points(group=GROUP) if entry_points is None else entry_points
    candidates: list[tuple[str, Any, str | None]] = []
    for ep in sorted(eps, key=lambda e: e.name):
        if not allowed(ep.name):
            log.info("plugin skipped by environment", plugin=ep.name)
            continue
        version = ep.dist.version if ep.dist is not None else None
        try:
            candidates.append((ep.name, ep.load(), version))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not stop the others
            error = f"{type(exc).__name__}: {exc}"
            log.error("plugin failed to import", plugin=ep.name, error=error)
            loaded.append(LoadedPlugin(ep.name, version, error=f"import: {error}"))
    for name, obj in extra:
        if allowed(name):
            candidates.append((name, obj, None))

    for name, obj, version in candidates:
        try:
            pm.register(obj, name=name)
        except Exception as exc:  # noqa: BLE001
            log.error("plugin failed to register", plugin=name, error=str(exc))
            loaded.append(LoadedPlugin(name, version, error=f"register: {exc}"))
            continue
        loaded.append(LoadedPlugin(name, version))
    _drop_pending(pm, loaded)

    platforms: dict[str, Platform] = {}
    by_name = {p.name: p for p in loaded if not p.error}
    for impl in pm.hook.register_platforms.get_hookimpls():
        info = by_name[impl.plugin_name]
        offered: list[Platform] = []
        try:
            impl.function(register=offered.append)
            for platform in offered:
                _check_platform(platform)
        except Exception as exc:  # noqa: BLE001
            log.error("plugin failed to register platforms", plugin=info.name,
                      error=f"{type(exc).__name__}: {exc}")
            info.error = f"register_platforms: {type(exc).__name__}: {exc}"
            pm.unregister(name=info.name)
            continue
        for platform in offered:
            if platform.name in platforms:
                log.error("platform name already taken; ignored", plugin=info.name,
                          platform=platform.name)
                continue
            platforms[platform.name] = platform
            info.platforms.append(platform.name)
    return Plugins(pm=pm, platforms=platforms, loaded=loaded)


def _drop_pending(pm: pluggy.PluginManager, loaded: list[LoadedPlugin]) -> None:
    """``pm.check_pending()``, dropping each plugin with a misspelled hook implementation."""
    while True:
        try:
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin) or "?"
            log.error("plugin has an unknown hook; skipped", plugin=name, error=str(exc))
            pm.unregister(exc.plugin)
            for info in loaded:
                if info.name == name:
                    info.error = f"unknown hook: {exc}"
        else:
            return


def _check_platform(platform: object) -> None:
    if not isinstance(platform, Platform):
        raise TypeError(
            f"register() takes a monitor.platform.Platform, got {type(platform).__name__}"
        )
    name = platform.name
    if not name or not name.isidentifier() or name != name.lower():
        raise ValueError(f"platform name {name!r} must be a lower-case identifier")

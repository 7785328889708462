"""The plugin API of pantau: one hook.

A plugin is a module (or object) with a function marked ``@hookimpl``, registered through
the ``pantau`` entry-point group in its ``pyproject.toml``::

    [project.entry-points.pantau]
    tiktok = "pantau_tiktok"

Built-in platforms use the same door.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from monitor.platform import Platform

__all__ = ["hookimpl", "hookspec", "register_platforms"]

hookspec = pluggy.HookspecMarker("pantau")
hookimpl = pluggy.HookimplMarker("pantau")


@hookspec
def register_platforms(register: Callable[[Platform], None]) -> None:
    """Call ``register(platform)`` for each :class:`monitor.platform.Platform` this plugin provides.

    :param register: takes one ``Platform`` instance. A name already taken by another
        plugin is refused (logged; the first registration wins).
    """

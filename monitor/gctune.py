"""Garbage-collector settings for the daemon: a large heap that lives as long as the process.

With CPython's defaults (thresholds 700, 10, 10) a cold sweep of 10,000 feeds ran 17-19 full
collections of 50-185 ms each: every check's in-flight objects (responses, parse trees,
tasks) outlived two young collections and were promoted, so the old generation "grew" by a
quarter again and again, and each full collection walked the whole heap with the GIL held,
stalling the checks and the ``/metrics`` thread alike. Nothing was collected: pantau's
long-lived objects (config, accounts, states, validators) are not garbage, and states are
freed by reference counting when a check replaces them.

:func:`tune` (at start, once the store is loaded) collects once and freezes what exists —
modules, the config, the loaded states — so no collection walks it again, and makes young
collections rarer: objects of a check in flight die young instead of being promoted. The
same sweep then ran 2 full collections. :func:`refreeze` (after a config reload) lets the
replaced config be collected and freezes the new one.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "refreeze", "tune"]

#: (young, middle, old): a young collection every 50,000 new container objects instead of 700.
THRESHOLDS = (50_000, 20, 10)


def tune() -> None:
    """Collect, freeze every object there is, and set :data:`THRESHOLDS`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def refreeze() -> None:
    """Unfreeze, collect (what the frozen objects left as cyclic garbage, e.g. a replaced
    config), and freeze again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

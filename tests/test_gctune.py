"""Tests for monitor.gctune: the daemon's garbage-collector settings."""

from __future__ import annotations

import gc
import weakref

import pytest

from monitor import gctune


@pytest.fixture
def restore_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector frees it


def test_tune_freezes_what_exists_and_sets_thresholds(restore_gc):
    node = Node()
    gone = weakref.ref(node)
    gctune.tune()
    assert gc.get_threshold() == gctune.THRESHOLDS
    assert gc.get_freeze_count() > 0
    del node
    gc.collect()
    assert gone() is not None  # frozen: no collection walks it


def test_refreeze_collects_what_the_frozen_objects_dropped(restore_gc):
    node = Node()
    gone = weakref.ref(node)
    gctune.tune()
    del node  # e.g. the config a reload replaced
    gctune.refreeze()
    assert gone() is None
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == gctune.THRESHOLDS

"""The daemon serves HTTP on its own thread: a busy event loop does not delay a scrape."""

from __future__ import annotations

import random
import threading
import time
import urllib.request

from fakes.scripted import ScriptedPlatform, plugin_module  # noqa: I001
from test_daemon import _config, _running, _until

from monitor.daemon import Daemon
from monitor.plugins import load_plugins
from monitor.scheduler import Scheduler


async def test_scrape_is_answered_while_the_event_loop_is_blocked(tmp_path):
    platform = ScriptedPlatform()
    plugins = load_plugins(environ={}, entry_points=[],
                           extra=[("scripted", plugin_module(platform))])
    daemon = Daemon(_config(tmp_path, ["ok-a"], interval="1h"), plugins, rng=random.Random(1),
                    scheduler=Scheduler(random.Random(1), spread=0.0), environ={})
    async with _running(daemon):
        await _until(lambda: ("dinsos", "scripted", "ok-a") in daemon.engine.states)
        answered: list[float] = []

        def scrape() -> None:
            url = f"http://127.0.0.1:{daemon.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                body = resp.read()
            assert b"pantau_last_post_timestamp_seconds{" in body
            answered.append(time.monotonic())

        client = threading.Thread(target=scrape)
        started = time.monotonic()
        client.start()
        time.sleep(2.0)  # the daemon's event loop is blocked, as by a long burst of checks
        blocked_until = time.monotonic()
        client.join(10)
        assert answered, "no answer"
        # answered while the loop was still blocked (on a serving loop it would be after)
        assert answered[0] < blocked_until, (answered[0] - started, blocked_until - started)

"""pantau's core: knows no platform by name. Platforms arrive as plugins (see hookspecs)."""

from importlib.metadata import PackageNotFoundError, version

from monitor.hookspecs import hookimpl

try:
    __version__ = version("pantau")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

PROJECT_URL = "https://github.com/pantau-monitor/pantau"

__all__ = ["PROJECT_URL", "__version__", "hookimpl"]

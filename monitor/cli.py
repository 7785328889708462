"""The ``pantau`` command line: run, check, validate, plugins, status, report, discover.

Exit codes: 0 success; 1 ``check`` found failed checks (or the daemon could not start);
2 usage error; 74 the state store cannot be opened or written; 78 configuration error.
Logs go to stderr; only results go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from monitor import PROJECT_URL, __version__
from monitor.clock import SystemClock
from monitor.config import ConfigError, load_config
from monitor.logs import configure_logging
from monitor.plugins import load_plugins
from monitor.store import StoreError

__all__ = ["EXIT_CONFIG", "EXIT_STORE", "main"]

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_STORE = 74  # EX_IOERR
EXIT_CONFIG = 78  # EX_CONFIG

DESCRIPTION = f"""\
pantau watches the public channels of government agencies (RSS/Atom feeds, and whatever
platform plugins are installed), records when each agency last posted, and exports that as
Prometheus metrics so that dashboards show it and alerts fire when an agency goes silent.

Exit codes: 0 ok, 1 failed checks, 2 usage error, 74 state store error, 78 config error.
More: {PROJECT_URL}"""


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=argparse.SUPPRESS,
        help="log verbosity on stderr (default: info for run, warning otherwise)",
    )
    with_config = argparse.ArgumentParser(add_help=False)
    with_config.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=os.environ.get("PANTAU_CONFIG"),
        help="YAML config file (default: $PANTAU_CONFIG)",
    )
    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument("--format", choices=["table", "json"], default="table",
                     help="output format (default: table)")

    parser = argparse.ArgumentParser(
        prog="pantau",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"pantau {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    sub.add_parser(
        "run", parents=[common, with_config],
        help="run the daemon: check on schedule, serve /metrics /healthz /readyz",
        description="Run the daemon until SIGTERM/SIGINT. SIGHUP reloads the config "
        "(a bad new config is logged and the old one kept).",
    )
    check = sub.add_parser(
        "check", parents=[common, with_config, fmt],
        help="check every (selected) account once, now; print and store the results",
        description="Check every (selected) account once, now, store the results and print "
        "them. Exits 1 if any check failed.",
    )
    check.add_argument("--agency", action="append", metavar="ID",
                       help="only this agency (repeatable)")
    check.add_argument("--platform", action="append", metavar="NAME",
                       help="only this platform (repeatable)")
    sub.add_parser(
        "validate", parents=[common, with_config],
        help="validate the config and print a summary",
        description="Validate the config (exit 78 with the field path if it is wrong) and print "
        "agencies, accounts per platform, missing accounts and the request budget.",
    )
    sub.add_parser(
        "plugins", parents=[common, fmt],
        help="list loaded plugins, their versions and platforms",
        description="List the plugins found in the 'pantau' entry-point group. "
        "PANTAU_PLUGINS (comma list) loads only those; PANTAU_DISABLE_PLUGINS blocks those.",
    )
    report = sub.add_parser(
        "report", parents=[common, with_config],
        help="the monthly ranking of agencies, from the state store",
        description="Rank the agencies over one month from the stored history: posts, longest "
        "silence, share of days within the silence threshold, score. No network.",
    )
    report.add_argument("--month", metavar="YYYY-MM",
                        help="the month (default: the last complete month)")
    report.add_argument("--format", choices=["md", "csv", "html"], default="md",
                        help="output format (default: md)")
    report.add_argument("--timezone", default="Asia/Jakarta", metavar="ZONE",
                        help="where days begin and end (default: Asia/Jakarta)")
    discover = sub.add_parser(
        "discover", parents=[common],
        help="list the social accounts an agency's website links to, as config YAML",
        description="Fetch each URL and list the Instagram, Facebook, YouTube, TikTok and X "
        "accounts it links to, with a YAML snippet for the agency's accounts. Exits 0 when "
        "something was found, 1 when nothing was.",
    )
    discover.add_argument("urls", nargs="+", metavar="URL", help="an agency's website")
    discover.add_argument("--format", choices=["text", "json"], default="text",
                          help="output format (default: text)")
    discover.add_argument("--timeout", type=float, default=20.0, metavar="SECONDS",
                          help="per-site time limit (default: 20)")
    sub.add_parser(
        "status", parents=[common, with_config, fmt],
        help="what the state store knows, without touching the network",
        description="Print the last known state of every configured account from the state "
        "store. Makes no network request.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pantau`` command. Returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", None) or ("info" if args.command == "run" else "warning")
    configure_logging(level)
    if args.command not in ("plugins", "discover") and not args.config:
        parser.error("the config file is required: -c FILE (or set PANTAU_CONFIG)")
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"pantau: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(f"pantau: state store error: {exc}", file=sys.stderr)
        return EXIT_STORE
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from monitor import commands  # the commands import more of the core

    plugins = load_plugins()
    if args.command == "plugins":
        return commands.plugins(plugins, args.format)
    if args.command == "run":
        return asyncio.run(commands.run(args.config, plugins))
    if args.command == "discover":
        return asyncio.run(commands.discover(args.urls, plugins, SystemClock(),
                                             fmt=args.format, timeout=args.timeout))
    config = load_config(args.config, plugins.platforms)
    if args.command == "validate":
        return commands.validate(config, plugins)
    if args.command == "report":
        return asyncio.run(commands.report(config, args.month, args.format, SystemClock(),
                                           timezone=args.timezone))
    if args.command == "status":
        return asyncio.run(commands.status(config, plugins, args.format, SystemClock()))
    return asyncio.run(
        commands.check(config, plugins, args.format, SystemClock(),
                       agencies=args.agency, platforms=args.platform)
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

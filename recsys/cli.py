"""The ``recsys`` command: the one front door that dispatches to everything.

It stays thin: each subcommand parses its arguments here and calls one function of the
library, of ``training`` or of ``serving`` (imported lazily, so ``recsys --help`` is fast and
the library never imports the API at import time). A :class:`~recsys.errors.RecsysError` is
printed as one line on stderr with exit status 2; anything else is a bug, reported in one line
with exit status 1 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from recsys.errors import DataError, RecsysError

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        _check_whole_files(args)
        return handler(args)
    except RecsysError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        # the machine, not the input: a full disk, a read-only folder, a missing mount
        if args.debug:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
            file=sys.stderr,
        )
        return 1


#: Options naming a file that their command reads whole into memory. Each is checked here,
#: once, before the command runs: ``/dev/zero`` or a folder is one clear line, not a
#: ``MemoryError`` (the readers also bound what they read).
_WHOLE_FILE_OPTIONS = ("config", "users", "promotions", "experiments", "rules", "ranking")


def _check_whole_files(args: argparse.Namespace) -> None:
    from recsys.files import check_readable_file

    for option in _WHOLE_FILE_OPTIONS:
        value = getattr(args, option, None)
        if isinstance(value, str | Path) and str(value):
            check_readable_file(value)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="recsys",
        description="Recommendation and personalisation engine for e-commerce.",
        epilog="State lives under RECSYS_HOME (default ./.recsys); set RECSYS_DATABASE_URL "
        "to use PostgreSQL instead of the embedded SQLite store.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in _COMMANDS:
        register(sub)
    return parser


# -- status -------------------------------------------------------------------------------------


def _register_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="what the store holds and which model version serves")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    settings = load_settings(Settings)
    location = _store_location(settings)
    if not settings.database_url and not Path(settings.sqlite_path).exists():
        # a status does not create the store: a mistyped RECSYS_HOME read as an empty shop
        # (and left a new state folder behind)
        raise DataError(f"no store at {location}: nothing loaded yet (`recsys ingest FILE`)")
    store = open_store(settings)
    try:
        stats = store.stats()
    finally:
        store.close()
    model = _current_model(settings)
    report = {
        "store": stats.backend,
        "location": location,
        "schema_version": stats.schema_version,
        "events": stats.events,
        "events_by_type": stats.events_by_type,
        "customers": stats.customers,
        "items_with_events": stats.items,
        "catalog_items": stats.catalog_items,
        "orders": stats.orders,
        "first_event": _iso(stats.first_ts),
        "last_event": _iso(stats.last_ts),
        "model_version": model,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    width = max(len(k) for k in report)
    for key, value in report.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v:,}" for k, v in value.items()) or "-"
        elif isinstance(value, int):
            value = f"{value:,}"
        print(f"{key.replace('_', ' '):<{width}}  {value if value is not None else '-'}")
    return 0


def _current_model(settings: object) -> str | None:
    from recsys.registry import Registry

    registry = Registry(settings.registry_path)  # type: ignore[attr-defined]
    current = registry.current_version()
    if current is not None:
        try:
            registry.path(current)
        except RecsysError:
            # what a server would answer (409), said before one is started
            return f"{current} (missing on disk: `recsys models rollback`, or train)"
    return current


def _store_location(settings: object) -> str:
    url = getattr(settings, "database_url", None)
    if url:
        # never print credentials
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"
    return str(Path(settings.sqlite_path).resolve())  # type: ignore[attr-defined]


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat()


def _commands() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Every subcommand's register function; each lives in the module that owns it."""
    registers: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
        _register_status
    ]
    import importlib

    for module in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        registers.append(mod.register)
    return registers


#: Modules that contribute subcommands, each with a ``register(subparsers)`` function. They parse
#: arguments only and import their heavy dependencies inside the handler.
_COMMAND_MODULES = [
    "recsys.commands.ingest",
    "recsys.commands.generate",
    "recsys.commands.train",
    "recsys.commands.export",
    "recsys.commands.serve",
    "recsys.commands.evaluate",
    "recsys.commands.offers",
    "recsys.commands.experiments",
]

_COMMANDS = _commands()

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``recsys serve`` (the HTTP API) and ``recsys recommend`` (batch scoring to a file)."""

from __future__ import annotations

import argparse
import csv
import logging
import os
from pathlib import Path

from recsys.errors import ConfigError, FileFormatError, RegistryError

log = logging.getLogger(__name__)

#: Set by ``recsys serve --workers N`` (N > 1) to its own pid: a worker whose parent it is
#: stops when it goes (:func:`serving.app._follow_supervisor`). Killed with SIGKILL, the
#: supervisor tells its workers nothing: they kept serving, holding the port (a restart
#: failed, "address already in use") and their versions' registry leases (prune kept those
#: versions).
SUPERVISOR_ENV = "RECSYS_SUPERVISOR_PID"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` and ``recommend`` subcommands."""
    p = sub.add_parser(
        "serve",
        help="serve the HTTP API (the registry's current model version)",
        description="Serve the API with uvicorn. Settings come from RECSYS_* variables "
        "(RECSYS_API_KEYS, RECSYS_RULES_FILE, RECSYS_MAX_IN_FLIGHT, ...).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no log line per request (the Prometheus metrics still count every request)",
    )
    p.set_defaults(handler=_serve)

    r = sub.add_parser(
        "recommend",
        help="write recommendations for many customers to a CSV or Parquet file",
        description="Score customers with the current model version and the same default "
        "ranking (business rules included) the API serves.",
    )
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", metavar="FILE", help="file with one customer id per line")
    who.add_argument("--all", action="store_true", help="every customer the version knows")
    r.add_argument("--k", type=int, default=10, help="items per customer (1-100, default 10)")
    r.add_argument(
        "--exclude-purchased",
        action="store_true",
        default=None,
        help="exclude items each customer bought (default: as the rules say)",
    )
    r.add_argument("--out", required=True, metavar="FILE", help="output: .csv or .parquet")
    r.add_argument(
        "--rules",
        metavar="FILE",
        help="business rules (TOML or JSON; default: RECSYS_RULES_FILE, as the API)",
    )
    r.set_defaults(handler=_recommend)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers < 1:
        raise ConfigError(f"--workers: must be at least 1, got {args.workers}")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port: {args.port} is not a port number")
    _check_config(args.workers)
    _check_port(args.host, args.port)
    if args.workers > 1:
        os.environ[SUPERVISOR_ENV] = str(os.getpid())
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="info",
        access_log=args.access_log,
    )
    return 0


def _check_port(host: str, port: int) -> None:
    """Refuse a port this host cannot listen on (another server holds it) in one line: uvicorn
    logged "[Errno 98] Address already in use" and exited 3, after the workers' start-up."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # as uvicorn binds: a port in TIME_WAIT after a restart is free
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"--port: cannot listen on {host}:{port}: {exc.strerror}") from None


def _check_config(workers: int) -> None:
    """Refuse a bad settings, rules, experiments or promotions file, or a store that cannot be
    opened, in one line before uvicorn starts (:func:`serving.app.check_config`): a worker
    that fails on one is restarted by uvicorn's supervisor over and over, or the server exits
    0 after a traceback (which a service manager reads as a clean stop, and does not restart).

    With one worker the app runs in this process, which reads them anyway. With more, this
    process only supervises: it checks in a short-lived child, so that it does not keep the
    app's modules (about 100 MiB) beside the workers.
    """
    if workers == 1:
        from serving.app import check_config

        check_config(store=True)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        refused = pool.submit(_config_error).result()
    if refused is not None:
        raise ConfigError(refused)


def _config_error() -> str | None:
    """In a child: :func:`serving.app.check_config`'s error message, or ``None``."""
    from recsys.errors import RecsysError
    from serving.app import check_config

    try:
        check_config(store=True)
    except RecsysError as exc:
        return str(exc)
    return None


def _recommend(args: argparse.Namespace) -> int:
    import time

    from recsys.engine import Engine
    from recsys.files import check_output_file
    from recsys.live import LiveState
    from recsys.ranking.rules import RequestFilters, load_rules
    from recsys.registry import Registry
    from recsys.service import FixedEngine, RecommendationService
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    if not 1 <= args.k <= 100:
        raise ConfigError(f"--k: must be between 1 and 100, got {args.k}")
    out = check_output_file("--out", args.out, (".csv", ".parquet"))
    settings = load_settings(Settings)
    registry = Registry(settings.registry_path)
    version = registry.current_version()
    if not version:
        raise RegistryError(f"no model version is promoted in {registry.root}; run `recsys train`")
    # the API's rules unless told otherwise
    rules = load_rules(args.rules) if args.rules else settings.load_rules()
    engine = Engine.load(registry.path(version), registry, rules=rules)
    store = open_store(settings)
    live = LiveState(store)
    live.follow_catalog(engine.catalog_read_at(live.store_id))  # rows changed since it only
    live.refresh()  # erasures, consents and the catalogue as they are now
    service = RecommendationService(store, FixedEngine(engine), live)
    users = engine.users.ids if args.all else _read_users(Path(args.users))
    if args.all:
        # the version's users.json may predate an erasure: erased customers are not listed
        users = [u for u in users if not live.is_erased(u)]
    start = time.perf_counter()
    lists = service.recommend_many(
        users, args.k, filters=RequestFilters(exclude_purchased=args.exclude_purchased)
    )
    rows = [
        (uid, rank, rec.item_id, rec.score, ";".join(rec.reasons))
        for uid, result in zip(users, lists, strict=True)
        for rank, rec in enumerate(result.items, start=1)
    ]
    _write(out, rows)
    log.info(
        "wrote %d rows for %d customers (model version %s) to %s in %.1f s",
        len(rows),
        len(users),
        version,
        out,
        time.perf_counter() - start,
    )
    return 0


#: The largest ``--users`` file read (ids one per line: tens of millions of customers).
MAX_USERS_FILE = 1 << 30


def _read_users(path: Path) -> list[str]:
    from recsys.files import read_bytes_bounded

    try:
        text = read_bytes_bounded(path, MAX_USERS_FILE).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileFormatError(
            path, f"is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    users = list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))
    if users and users[0].lower() in ("user_id", "customerid", "customer_id"):
        users = users[1:]  # a header line
    if not users:
        raise FileFormatError(path, "holds no customer ids (one per line)")
    return users


COLUMNS = ("user_id", "rank", "item_id", "score", "reasons")


def _write(out: Path, rows: list[tuple[str, int, str, float, str]]) -> None:
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        cols: list[tuple[object, ...]] = list(zip(*rows, strict=True)) if rows else [()] * 5
        table = pa.table(
            {
                "user_id": pa.array(cols[0], pa.string()),
                "rank": pa.array(cols[1], pa.int32()),
                "item_id": pa.array(cols[2], pa.string()),
                "score": pa.array(cols[3], pa.float64()),
                "reasons": pa.array(cols[4], pa.string()),
            }
        )
        pq.write_table(table, out)
        return
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)

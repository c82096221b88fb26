"""``recsys train`` and ``recsys models ...``: train a version; list, show, promote, roll back."""

from __future__ import annotations

import argparse
import json
from typing import Any

from recsys.errors import ConfigError, RegressionError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``train`` and ``models`` subcommands."""
    p = sub.add_parser(
        "train",
        help="train, evaluate and publish a model version (promoted unless it regressed)",
        description="Read the events in the store, evaluate every enabled model on a time-based "
        "holdout, fit them on all the data, publish a new version and promote it unless the "
        "gated metric regressed. Exit status 2 when the version was published but not "
        "promoted because it regressed.",
    )
    p.add_argument(
        "--config", metavar="TOML", help="training config (default: the packaged default.toml)"
    )
    p.add_argument(
        "--as-of",
        metavar="YYYY-MM-DD",
        help="use only events before this date (midnight UTC) or ISO datetime; "
        "default: every event, measured from the newest",
    )
    p.add_argument("--force", action="store_true", help="promote even if the metric regressed")
    p.add_argument("--no-promote", action="store_true", help="publish without promoting")
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another training that holds the registry lock "
        "(default: fail at once)",
    )
    p.add_argument(
        "--if-changed",
        action="store_true",
        help="train only when the store's data, the config or --as-of changed since the "
        "current version was trained (otherwise say so and exit 0)",
    )
    p.add_argument(
        "--warm-start",
        action="store_true",
        help="start ALS/BPR from the current version's factors and co-occurrence from its "
        "counts plus the new events (no holdout evaluation; see README, Incremental retraining)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="where the models are fitted: this process (local, the default) or Apache Spark "
        "(needs `pip install 'recsys-engine[spark]'` and Java 17+)",
    )
    p.add_argument(
        "--master",
        default=None,
        metavar="URL",
        help="Spark master for --engine spark (default local[*]; spark://host:7077, yarn...)",
    )
    p.add_argument(
        "--events",
        metavar="DIR",
        help="--engine spark: read the events from this Parquet export (`recsys export "
        "events`) instead of the store (PostgreSQL is read over JDBC)",
    )
    p.add_argument(
        "--jdbc-jar",
        metavar="JAR",
        help="--engine spark: the PostgreSQL JDBC driver (default: Debian's "
        "/usr/share/java/postgresql.jar from libpostgresql-jdbc-java)",
    )
    p.add_argument(
        "--checkpoint-dir",
        metavar="URL",
        help="--engine spark: where MLlib's ALS checkpoints (hdfs://, s3a://: storage every "
        "executor reaches; default: the run's temporary folder on a local master, none on "
        "another)",
    )
    p.add_argument(
        "--als-blocks",
        type=int,
        metavar="N",
        help="--engine spark: MLlib ALS's user and item blocks (default: one per core of a "
        "local master, MLlib's 10 on another; about the executors' cores on a cluster)",
    )
    p.set_defaults(handler=_train)

    m = sub.add_parser(
        "models", help="list, show, verify, promote, roll back or prune model versions"
    )
    msub = m.add_subparsers(title="actions", metavar="ACTION", required=True)
    a = msub.add_parser("list", help="every version, newest first (* = current)")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a.set_defaults(handler=_list)
    a = msub.add_parser("show", help="a version's manifest (default: the current one)")
    a.add_argument("version", nargs="?", help="version name")
    a.add_argument("--json", action="store_true", help="the raw manifest")
    a.set_defaults(handler=_show)
    a = msub.add_parser("verify", help="recompute a version's file hashes against its manifest")
    a.add_argument("version", nargs="?", help="version name (default: the current one)")
    a.set_defaults(handler=_verify)
    a = msub.add_parser("promote", help="make a version the one that serves")
    a.add_argument("version", help="version name")
    a.set_defaults(handler=_promote)
    a = msub.add_parser("rollback", help="serve the previously promoted version again")
    a.set_defaults(handler=_rollback)
    a = msub.add_parser(
        "prune",
        help="delete old versions (never the current one, the rollback target, or one a "
        "running server has loaded)",
    )
    a.add_argument("--keep", type=int, default=5, metavar="N", help="newest versions to keep (5)")
    a.set_defaults(handler=_prune)


# -- train ----------------------------------------------------------------------------------------


def _train(args: argparse.Namespace) -> int:
    from recsys.models import MODELS
    from recsys.settings import Settings, load_settings
    from training.config import check_model_params, load_training_config
    from training.pipeline import (
        FINGERPRINT_KEY,
        data_fingerprint,
        open_default,
        parse_as_of,
        run_training,
        trained_on,
    )

    if args.engine == "spark":
        from training.spark import require_spark

        # before anything is read: a missing extra is one line, not a half-done run
        require_spark()
        if args.warm_start:
            raise ConfigError("--warm-start is for --engine local (the Spark engine refits)")
        if args.als_blocks is not None and args.als_blocks < 1:
            raise ConfigError(f"--als-blocks: {args.als_blocks} is not a positive whole number")
    elif (
        args.master is not None
        or args.events
        or args.jdbc_jar
        or args.checkpoint_dir
        or args.als_blocks is not None
    ):
        # a scheduler's line that lost its --engine spark must not train here, unseen
        raise ConfigError(
            "--master, --events, --jdbc-jar, --checkpoint-dir and --als-blocks are options of "
            "--engine spark"
        )
    config = load_training_config(args.config)
    source = args.config or "training/configs/default.toml"
    # every model and parameter value, before the store is opened (on a fresh home: created)
    check_model_params(config, dict(MODELS), source)
    as_of = parse_as_of(args.as_of) if args.as_of else None
    store, registry = open_default(load_settings(Settings))
    try:
        if args.engine == "spark":
            # Spark reads its own copy of the events; the digest is of the store's
            fingerprint = data_fingerprint(store, config, as_of)
            if args.if_changed and trained_on(registry, fingerprint):
                _say_up_to_date(registry.current_version())
                return 0
            registry.annotations[FINGERPRINT_KEY] = fingerprint
            result = _train_spark(args, config, source, as_of, store, registry)
        else:
            # the pipeline digests the events it reads itself (one read of the store)
            result = run_training(
                config,
                store=store,
                registry=registry,
                as_of=as_of,
                force=args.force,
                promote=not args.no_promote,
                config_source=source,
                lock_timeout=args.wait,
                warm_start=args.warm_start,
                if_changed=args.if_changed,
            )
            if result.up_to_date:
                _say_up_to_date(result.version)
                return 0
    finally:
        store.close()
    manifest = result.manifest
    print(f"version      {result.version}")
    print(f"as of        {manifest.get('as_of')}")
    print(f"models       {', '.join(manifest.get('models', {})) or '-'}")
    for name, why in result.skipped.items():
        print(f"skipped      {name}: {why}")
    print(_metrics_table(manifest, indent="  ") or "metrics      - (evaluation skipped)")
    print("timings      " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    print(f"promoted     {'yes' if result.promoted else 'no'} ({result.reason})")
    if not result.promoted and not args.no_promote:
        raise RegressionError(
            f"version {result.version} was published but not promoted: {result.reason}; "
            f"`recsys models promote {result.version}` serves it anyway"
        )
    return 0


def _train_spark(
    args: argparse.Namespace,
    config: Any,
    source: str,
    as_of: int | None,
    store: Any,
    registry: Any,
) -> Any:
    from pathlib import Path

    from recsys.settings import Settings, load_settings
    from training.spark.engine import run_spark_training
    from training.spark.session import SparkOptions

    options = SparkOptions(
        master=args.master or "local[*]",
        events=Path(args.events) if args.events else None,
        jdbc_jar=Path(args.jdbc_jar) if args.jdbc_jar else None,
        checkpoint_dir=args.checkpoint_dir,
        als_blocks=args.als_blocks or 0,
    )
    return run_spark_training(
        config,
        store=store,
        registry=registry,
        settings=load_settings(Settings),
        options=options,
        as_of=as_of,
        force=args.force,
        promote=not args.no_promote,
        config_source=source,
        lock_timeout=args.wait,
    )


def _say_up_to_date(version: str | None) -> None:
    print(
        f"model version {version} is up to date: trained on the same data and config "
        "(nothing to do; leave out --if-changed to train anyway)"
    )


# -- models ---------------------------------------------------------------------------------------


def _registry() -> Any:
    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings

    return Registry(load_settings(Settings).registry_path)


def _version_or_current(registry: Any, version: str | None, missing: str) -> str:
    """``version``, else the registry's current one; neither is a :class:`NotFoundError`
    saying ``missing``."""
    from recsys.errors import NotFoundError

    found = version or registry.current_version()
    if found is None:
        raise NotFoundError(missing)
    return str(found)


def _list(args: argparse.Namespace) -> int:
    registry = _registry()
    current = registry.current_version()
    manifests = registry.list_versions()
    if args.json:
        print(json.dumps([_summary(m, current) for m in manifests], indent=2))
        return 0
    if not manifests:
        print(f"no model versions in {registry.root} (run `recsys train`)")
        return 0
    print(f"  {'version':<24}  {'created':<25}  {'as of':<25}  {'default':<10}  metric")
    for m in manifests:
        s = _summary(m, current)
        if "error" in m:
            print(f"{s['mark']} {s['version']:<24}  BROKEN: {m['error']}")
            continue
        print(
            f"{s['mark']} {s['version']:<24}  {s['created_at'] or '-':<25}  {s['as_of'] or '-':<25}"
            f"  {s['default_model'] or '-':<10}  {s['metric'] or '-'}"
        )
    return 0


def _summary(m: dict[str, Any], current: str | None) -> dict[str, Any]:
    default = m.get("default_model")
    metric_name = (m.get("evaluation") or {}).get("metric") or _gate_metric(m)
    value = ((m.get("metrics") or {}).get(default) or {}).get(metric_name)
    return {
        "version": m.get("version"),
        "current": m.get("version") == current,
        "mark": "*" if m.get("version") == current else " ",
        "created_at": m.get("created_at"),
        "as_of": m.get("as_of"),
        "default_model": default,
        "metric": f"{metric_name} {value:.4f}" if isinstance(value, float) else None,
        "promoted_at_training": (m.get("promotion") or {}).get("promoted"),
    }


def _gate_metric(m: dict[str, Any]) -> str | None:
    config = m.get("training_config") or {}
    return (config.get("evaluation") or {}).get("metric")


def _show(args: argparse.Namespace) -> int:
    registry = _registry()
    version = _version_or_current(
        registry, args.version, "no current model version; name one, or run `recsys train`"
    )
    m = registry.manifest(version)
    if args.json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return 0
    current = registry.current_version()
    window = m.get("data_window") or {}
    counts = m.get("counts") or {}
    promotion = m.get("promotion") or {}
    libs = m.get("libraries") or {}
    lines = [
        f"version      {m.get('version')}{'  (current)' if version == current else ''}",
        f"created      {m.get('created_at')}",
        f"as of        {m.get('as_of')}",
        f"data window  {window.get('first_event')} .. {window.get('last_event')}",
        "counts       " + ", ".join(f"{k} {v:,}" for k, v in counts.items()),
        f"default      {m.get('default_model')}",
        f"promotion    {'promoted' if promotion.get('promoted') else 'not promoted'}"
        f" at training ({promotion.get('reason', '-')})",
        "models",
    ]
    for name, info in (m.get("models") or {}).items():
        params = ", ".join(f"{k}={v}" for k, v in (info.get("params") or {}).items())
        lines.append(f"  {name:<16} fit {info.get('fit_seconds', 0):.2f}s  {params}")
        choice = (info.get("fit_report") or {}).get("choice")
        if isinstance(choice, dict):
            lines.append(f"  {'':<16} {_choice_line(choice)}")
    for name, why in (m.get("skipped_models") or {}).items():
        lines.append(f"  {name:<16} skipped: {why}")
    evaluation = m.get("evaluation") or {}
    if evaluation.get("cut"):
        lines.append(
            f"evaluation   holdout from {evaluation['cut']} ({evaluation.get('holdout_days')} days)"
            + (
                f", {evaluation['users']:,} users"
                if isinstance(evaluation.get("users"), int)
                else ""
            )
            + (f"; skipped: {evaluation['skipped']}" if evaluation.get("skipped") else "")
        )
    table = _metrics_table(m, indent="  ")
    if table:
        lines.append(table)
    lines.append("libraries    " + ", ".join(f"{k} {v}" for k, v in sorted(libs.items())))
    machine = m.get("platform") or {}
    if machine:
        # the BLAS kernels round differently on another CPU: metrics of two versions trained
        # on different machines differ by that too
        lines.append(
            f"platform     {machine.get('cpu')}, {machine.get('cores')} cores, BLAS "
            + "; ".join(machine.get("blas") or ["none found"])
        )
    lines.append(f"files        {len(m.get('files') or {})}")
    print("\n".join(lines))
    return 0


def _choice_line(choice: dict[str, Any]) -> str:
    """What a co-occurrence model's test of its normalisation found (``choose = true``): the
    one it serves, which may not be the configured one its params show."""
    from recsys.models.cooccurrence import CHOICE_K, normalisation_label

    served = normalisation_label(str(choice.get("normalisation")), float(choice.get("alpha", 0)))
    line = f"serves {served} ({choice.get('reason')})"
    if not choice.get("baskets"):
        return line
    hidden = "its newest item" if choice.get("hidden") == "newest" else "a random item"
    rates = ", ".join(f"{k} {v:.3f}" for k, v in (choice.get("hit_rates") or {}).items())
    p_values = ", ".join(f"{k} {v:.2g}" for k, v in (choice.get("p_values") or {}).items())
    return (
        f"{line}: hit rate@{CHOICE_K} on {choice['baskets']:,} held-out baskets, each hiding "
        f"{hidden}: {rates}; p {p_values}"
    )


def _metrics_table(m: dict[str, Any], *, indent: str = "") -> str:
    metrics: dict[str, dict[str, Any]] = m.get("metrics") or {}
    if not metrics:
        return ""
    k = (m.get("evaluation") or {}).get("k", 10)
    columns = [f"recall@{k}", f"ndcg@{k}", f"new_recall@{k}", f"new_ndcg@{k}", "coverage"]
    width = max(12, *(len(n) for n in metrics))
    out = ["metrics", indent + f"{'model':<{width}}" + "".join(f"{c:>15}" for c in columns)]
    for name, values in metrics.items():
        cells = "".join(
            f"{values.get(c):>15.4f}" if isinstance(values.get(c), float) else f"{'-':>15}"
            for c in columns
        )
        out.append(indent + f"{name:<{width}}{cells}")
    return "\n".join(out)


def _verify(args: argparse.Namespace) -> int:
    registry = _registry()
    version = _version_or_current(registry, args.version, "no current model version to verify")
    manifest = registry.verify(version)
    print(f"{version}: {len(manifest['files'])} files match the manifest")
    return 0


def _promote(args: argparse.Namespace) -> int:
    _registry().promote(args.version, reason="recsys models promote")
    print(f"{args.version} is now the current version")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    version = _registry().rollback()
    print(f"rolled back: {version} is now the current version")
    return 0


def _prune(args: argparse.Namespace) -> int:
    registry = _registry()
    removed = registry.prune(keep=args.keep)
    print(f"removed {len(removed)} version(s)" + (": " + ", ".join(removed) if removed else ""))
    names = registry.version_names()
    for version, why in sorted(registry.protected_versions().items()):
        if version in names[args.keep :]:
            print(f"kept {version} ({why})")
    return 0

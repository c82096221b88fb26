"""``recsys ab report|offline|assign``: A/B experiment reports, off-policy estimates, lookups."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.commands import iso_date
from recsys.errors import ConfigError

FORMATS = ("md", "html", "json")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``ab`` subcommand and its actions."""
    p = sub.add_parser(
        "ab",
        help="A/B experiments: report, off-policy estimate, assignment",
        description="Experiments are read from RECSYS_EXPERIMENTS_FILE or "
        "$RECSYS_HOME/experiments.toml (or --experiments FILE).",
    )
    asub = p.add_subparsers(title="actions", metavar="ACTION", required=True)

    r = asub.add_parser(
        "report",
        help="the experiment's report from logged exposures and events",
        description="Reads the experiment's exposures and events from the store, attributes "
        "events (recommendation_id, else the attribution window), checks the sample ratio, "
        "compares every variant with the control (CUPED on pre-period revenue) and writes "
        "Markdown, HTML (with plots) or JSON.",
    )
    r.add_argument("--experiment", required=True, metavar="NAME")
    r.add_argument("--format", choices=FORMATS, default="md", help="output format (md)")
    r.add_argument("--out", metavar="FILE", help="write here instead of standard output")
    r.add_argument(
        "--pre-period-days",
        type=float,
        default=28.0,
        metavar="N",
        help="CUPED covariate: revenue per user in the N days before the start (28; 0: off)",
    )
    _file_arg(r)
    r.set_defaults(handler=_report)

    o = asub.add_parser(
        "offline",
        help="estimate a candidate version's click/purchase rate from logged exposures (IPS)",
        description="Ranks a list with the candidate version for every logged exposure that "
        "carries propensities and estimates its reward per slot with IPS and SNIPS.",
    )
    o.add_argument("--candidate", required=True, metavar="VERSION", help="model version")
    o.add_argument(
        "--ranking",
        metavar="FILE",
        help="business rules (TOML or JSON) the candidate ranks with, as a variant's "
        "'ranking' (default: RECSYS_RULES_FILE, else the built-in default rules)",
    )
    which = o.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", metavar="NAME", help="exposures of this experiment")
    which.add_argument("--since", type=iso_date, metavar="YYYY-MM-DD", help="every exposure since")
    o.add_argument("--metric", choices=("click", "purchase"), default="click")
    o.add_argument("--json", action="store_true", help="machine-readable output")
    _file_arg(o)
    o.set_defaults(handler=_offline)

    a = asub.add_parser("assign", help="the variant of a user (now)")
    a.add_argument("--experiment", required=True, metavar="NAME")
    a.add_argument("user_id", metavar="USER_ID")
    _file_arg(a)
    a.set_defaults(handler=_assign)


def _file_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--experiments", metavar="FILE", help="experiments TOML/JSON file")


def _experiment(args: argparse.Namespace) -> Any:
    from recsys.experiments.registry import (
        ExperimentRegistry,
        ExperimentSettings,
        experiments_path,
    )
    from recsys.settings import load_settings

    path = (
        Path(args.experiments)
        if args.experiments
        else experiments_path(load_settings(ExperimentSettings))
    )
    if not path.exists():
        raise ConfigError(
            f"{path}: no such experiments file (set RECSYS_EXPERIMENTS_FILE or --experiments)"
        )
    return ExperimentRegistry(path).load().get(args.experiment)


def _store() -> Any:
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    return open_store(load_settings(Settings))


def _report(args: argparse.Namespace) -> int:
    from recsys.experiments.exposures import report_from_store
    from recsys.files import check_output_file

    if args.pre_period_days < 0:
        raise ConfigError(f"--pre-period-days: must be 0 or more, not {args.pre_period_days}")
    if args.out:
        check_output_file("--out", args.out)
    experiment = _experiment(args)
    store = _store()
    try:
        report = report_from_store(store, experiment, pre_period_days=args.pre_period_days)
    finally:
        store.close()
    text = {"md": report.to_markdown, "html": report.to_html, "json": report.to_json}[args.format]()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _offline(args: argparse.Namespace) -> int:
    from recsys.data.schema import to_micros
    from recsys.engine import Engine
    from recsys.experiments.exposures import offline_estimate
    from recsys.ranking.rules import load_rules
    from recsys.registry import Registry
    from recsys.settings import Settings, load_settings

    settings = load_settings(Settings)
    # read the rules first: a bad file is reported before any model is loaded
    # the API's rules unless told otherwise
    ranking = args.ranking or (
        settings.rules_path if settings.rules_file or settings.rules_path.exists() else None
    )
    rules = load_rules(ranking) if ranking else None
    experiment = _experiment(args) if args.experiment else None
    since = (
        to_micros(datetime(args.since.year, args.since.month, args.since.day, tzinfo=UTC))
        if args.since
        else None
    )
    registry = Registry(settings.registry_path)
    engine = Engine.load(registry.path(args.candidate), registry, rules=rules)
    store = _store()
    try:
        result = offline_estimate(
            store, engine, experiment=experiment, since=since, metric=args.metric
        )
    finally:
        store.close()
    result["ranking"] = str(ranking) if ranking else None
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    ranked = f" ranked by {ranking}" if ranking else ""
    print(
        f"candidate {result['candidate']}{ranked}: {result['metric']} rate per slot over "
        f"{result['exposures']} exposures ({result['slots']} slots); "
        f"logged policy {result['logged_rate']:.4f}"
    )
    for name in ("ips", "snips"):
        e = result[name]
        print(
            f"  {name.upper():<6} {e['value']:.4f}  [{e['ci_low']:.4f}, {e['ci_high']:.4f}]  "
            f"matched slots {e['matched']}, effective n {e['effective_sample_size']:.1f}"
        )
    return 0


def _assign(args: argparse.Namespace) -> int:
    from recsys.experiments.assignment import assign

    experiment = _experiment(args)
    variant = assign(experiment, args.user_id, datetime.now(UTC)).variant
    print(
        variant
        if variant is not None
        else f"(not running: {experiment.name} is outside "
        f"{experiment.start.isoformat()} .. {experiment.end.isoformat()})"
    )
    return 0

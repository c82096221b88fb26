"""``recsys evaluate``: hold out the last month (or several, ``--cuts N``) and compare models.

A config file (TOML or JSON) may set everything at once::

    k = 10
    cut = "2011-11-09"
    [interactions]            # recsys.data.interactions.InteractionConfig
    quantity = "log"
    [models.ease]             # registry name -> constructor arguments
    regularization = 500
    [models.repeat]

Command-line options override the file; ``--models`` picks (and orders) registry names.
``--training-config FILE`` takes the models and the interaction weighting from a training
config instead (its ``[interactions]`` and ``[models.<name>]``, built as ``recsys train`` builds
them: the hybrid with its shipped settings, not its class defaults); ``--models`` then picks
its model names.
``cuts = 4`` (``--cuts 4``) evaluates at four rolling cut dates, ``window_days`` apart, and
reports each model's mean and spread (:mod:`recsys.evaluation.rolling`). A model that cannot
fit the data (EASE, and the ``repeat`` baseline built on it, past 15,000 items) is skipped with
a notice on stderr and a line under the table; the others are still measured.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from recsys.config import StrictModel

DEFAULT_MODELS = ("popular", "repeat", "ease", "als")


class EvaluateConfig(StrictModel):
    """What ``recsys evaluate --config FILE`` reads."""

    k: int = Field(default=10, ge=1, description="Length of each recommendation list.")
    cut: date | None = Field(
        default=None, description="First held-out day (UTC); default: 30 days before the end."
    )
    cuts: int | None = Field(
        default=None, ge=2, description="Rolling origin: this many cut dates (4 or more advised)."
    )
    window_days: int = Field(
        default=30, ge=1, description="Test window after each cut (and the step between cuts)."
    )
    users: str = Field(default="both_periods", pattern="^(both_periods|test)$")
    interactions: dict[str, Any] = Field(
        default_factory=dict, description="InteractionConfig fields (validated on use)."
    )
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Registry name -> constructor arguments."
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``evaluate`` subcommand."""
    p = sub.add_parser(
        "evaluate",
        help="hold out the last month of purchases and compare models on it",
        description="Fit each model on the events before the cut and measure how well its "
        "top-k lists predict the purchases after it (full catalogue, all items and items new "
        "to the customer).",
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--cut", metavar="YYYY-MM-DD", help="first held-out day (UTC)")
    when.add_argument(
        "--cuts",
        type=int,
        metavar="N",
        help="rolling origin: N cut dates (4 or more advised), each tested on the window "
        "after it; reports every model's mean and spread",
    )
    p.add_argument(
        "--window",
        type=int,
        metavar="DAYS",
        help="days held out after each cut, and between cuts, with --cuts (default 30)",
    )
    p.add_argument("--k", type=int, metavar="N", help="list length (default 10)")
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="N",
        help="also fit each model that has a seed with N - 1 other seeds, listed as "
        "'NAME seed=S': the spread a seed alone gives, to read differences against",
    )
    p.add_argument(
        "--models",
        metavar="NAMES",
        help=f"comma-separated registry names (default {','.join(DEFAULT_MODELS)})",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML/JSON evaluation config")
    p.add_argument(
        "--training-config",
        type=Path,
        metavar="FILE",
        help="evaluate the models of this training config, with its interaction weighting, as "
        "`recsys train` builds them (e.g. training/configs/default.toml: the served hybrid's "
        "settings, not its class defaults)",
    )
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the result (.md or .json)")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a bar chart (.png, .svg)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    from recsys.config import load_config
    from recsys.data.schema import to_micros
    from recsys.errors import ConfigError, DataError
    from recsys.evaluation.protocol import EvaluationResult, evaluate_models
    from recsys.evaluation.rolling import RollingResult, evaluate_rolling, other_seeds
    from recsys.files import check_output_file
    from recsys.settings import Settings, load_settings
    from recsys.store import open_store

    config = load_config(EvaluateConfig, args.config) if args.config else EvaluateConfig()
    k = config.k if args.k is None else args.k
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    cut_day = config.cut
    if args.cut is not None:
        try:
            cut_day = date.fromisoformat(args.cut)
        except ValueError:
            raise ConfigError(f"--cut: {args.cut!r} is not a date (YYYY-MM-DD)") from None
    cut = None
    if cut_day is not None:
        cut = to_micros(datetime(cut_day.year, cut_day.month, cut_day.day, tzinfo=UTC))
    # before the evaluation, which can take an hour: not a typo found at its end
    if args.out is not None:
        check_output_file("--out", args.out, (".md", ".json"))
    if args.plot is not None:
        check_output_file("--plot", args.plot, (".png", ".svg", ".pdf"))
    # the command line beats the file: --cut drops the file's cuts, --cuts the file's cut
    n_cuts = None if args.cut is not None else (config.cuts if args.cuts is None else args.cuts)
    if args.cuts is not None:
        cut = None
    window = config.window_days if args.window is None else args.window
    if n_cuts is None and args.window is not None:
        raise ConfigError("--window sets the window of each of --cuts; give --cuts N too")
    if n_cuts is not None:
        if n_cuts < 2:
            raise ConfigError(f"--cuts must be at least 2 (a spread needs two), got {n_cuts}")
        if cut is not None:
            raise ConfigError(f"{args.config}: cut and cuts exclude each other; give one")
        if args.plot is not None:
            raise ConfigError("--plot draws one cut; it does not combine with --cuts")
    if window < 1:
        raise ConfigError(f"--window must be at least 1 day, got {window}")

    if args.training_config is not None:
        if config.models or config.interactions:
            raise ConfigError(
                f"{args.config}: models and interactions come from --training-config; "
                "leave them out of the evaluation config"
            )
        models, interaction_config, threads = _training_models(args.training_config, args.models)
    else:
        models, interaction_config = _models(args, config)
        threads = contextlib.nullcontext()
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {args.seeds}")
    models.update(other_seeds(models, args.seeds))

    store = open_store(load_settings(Settings))
    try:
        events = store.read_events()
        catalog = store.read_items()
    finally:
        store.close()
    if len(events) == 0:
        raise DataError("the store holds no events; run `recsys ingest` first")
    result: EvaluationResult | RollingResult
    common: dict[str, Any] = {
        "k": k,
        "interaction_config": interaction_config,
        "catalog": catalog,
        "users": config.users,
        "notify": _stderr,
    }
    with threads:
        if n_cuts is not None:
            result = evaluate_rolling(events, models, n_cuts=n_cuts, window_days=window, **common)
        else:
            result = evaluate_models(events, models, cut=cut, **common)
    table = result.to_markdown()
    print(_json(result) if args.json else table, end="\n" if args.json else "")
    if args.out is not None:
        text = _json(result) if args.out.suffix.lower() == ".json" else table
        try:
            args.out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--out: cannot write {args.out}: {exc}") from None
    if args.plot is not None and isinstance(result, EvaluationResult):
        result.plot(args.plot)
    return 0


def _models(args: argparse.Namespace, config: EvaluateConfig) -> tuple[dict[str, Any], Any]:
    """The models the evaluation config (or ``--models``) names, with their constructor
    arguments from the config, and its interaction weighting."""
    from recsys.config import validate
    from recsys.data.interactions import InteractionConfig
    from recsys.errors import ConfigError
    from recsys.models import InvalidParameterError, model_class

    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    else:
        names = list(config.models) or list(DEFAULT_MODELS)
    if not names:
        raise ConfigError("--models: no model named")
    source = str(args.config) if args.config else "interactions"
    models = {}
    for name in names:
        cls = model_class(name)  # an unknown name fails here, before any data is read
        params = config.models.get(name, {})
        try:
            models[name] = cls(**params)
            cls.check_params(params)  # and a bad value: not after the store is read
        except TypeError as exc:
            raise ConfigError(f"models.{name}: {exc}") from None
        except InvalidParameterError as exc:
            where = f"{args.config}: " if args.config else ""
            raise ConfigError(
                f"{where}models.{name}.{exc.param} = {exc.value!r}: {exc.allowed}"
            ) from None
    interaction_config = validate(InteractionConfig, config.interactions, f"{source}: interactions")
    return models, interaction_config


def _training_models(path: Path, picked: str | None) -> tuple[dict[str, Any], Any, Any]:
    """The models of a training config, built as ``recsys train`` builds them, and its
    interaction weighting (``picked``: comma-separated names of its models), and its thread
    limit for the evaluation."""
    from recsys.errors import ConfigError
    from recsys.models import MODELS
    from training.config import check_model_params, load_training_config
    from training.holdout import evaluated_model
    from training.stages import thread_limit

    config = load_training_config(path)
    check_model_params(config, dict(MODELS), str(path))
    known = list(config.enabled_models())
    names = [n.strip() for n in picked.split(",") if n.strip()] if picked else known
    unknown = [n for n in names if n not in config.models]
    if unknown:
        raise ConfigError(
            f"--models: {', '.join(map(repr, unknown))} not in {path} (its models: "
            f"{', '.join(known)})"
        )
    if not names:
        raise ConfigError("--models: no model named")
    # as the training run's holdout fits them (a hybrid in the order it learned, untested),
    # on its threads (implicit's ALS on two threads ranks ties otherwise than on one)
    models = {n: evaluated_model(n, config) for n in names}
    return models, config.interactions, thread_limit(config)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _json(result: Any) -> str:
    """The result as JSON, with the numerics it was measured with (``environment``): the
    same run on another CPU's BLAS kernels or other library versions gives other numbers."""
    import json

    from recsys.environment import library_versions, platform_info

    data = result.to_dict()
    data["environment"] = {
        "libraries": library_versions({"recsys-engine": "recsys"}),
        "platform": platform_info(),
    }
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False)

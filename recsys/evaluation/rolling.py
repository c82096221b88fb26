"""Rolling-origin evaluation: the hold-out protocol repeated at several cut dates.

One cut answers for one month. A setting tuned on it can win there and lose the next month
(issue 12 measured exactly that on Online Retail), so defaults are chosen on several cuts and
reported as a mean with its spread. :func:`evaluate_rolling` runs
:func:`recsys.evaluation.protocol.evaluate_models` once per cut of
:func:`recsys.evaluation.splits.rolling_cuts`: each cut trains on every event before it and
tests on the purchases of the ``window_days`` that follow, so no cut ever sees its own future.

The summary of a model over the cuts is a :class:`Spread` (mean, sample standard deviation,
minimum, maximum) of recall and NDCG at ``k``, on all items and on items new to the customer.
A model that cannot fit the data at a cut is skipped there with a notice, and its spread
counts only the cuts it was measured on (``n`` says how many).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from recsys.data.interactions import InteractionConfig
from recsys.data.schema import MICROS_PER_DAY, CatalogItem, EventFrame, from_micros
from recsys.evaluation.protocol import (
    EvaluationResult,
    ModelSpec,
    Notify,
    _ignore,
    _nan_to_none,
    evaluate_models,
)
from recsys.evaluation.splits import rolling_cuts

#: The metrics a rolling evaluation summarises: (metric, "all" or "new").
SUMMARISED: tuple[tuple[str, Literal["all", "new"]], ...] = (
    ("recall", "all"),
    ("ndcg", "all"),
    ("recall", "new"),
    ("ndcg", "new"),
)


@dataclass(frozen=True)
class Spread:
    """One metric of one model over the cuts it was measured on.

    Attributes
    ----------
    mean, std, min, max
        Over the cuts; ``std`` is the sample standard deviation (``ddof=1``; ``0`` for a single
        cut). ``NaN`` when no cut had a value.
    n
        Cuts with a value.
    """

    mean: float
    std: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        """The spread of ``values``, ignoring ``NaN`` (a cut where nobody bought a new item)."""
        v = np.asarray([x for x in values if not math.isnan(x)], dtype=np.float64)
        if v.size == 0:
            nan = float("nan")
            return cls(nan, nan, nan, nan, 0)
        std = float(v.std(ddof=1)) if v.size > 1 else 0.0
        return cls(float(v.mean()), std, float(v.min()), float(v.max()), int(v.size))


@dataclass(frozen=True)
class RollingResult:
    """The outcome of :func:`evaluate_rolling`.

    Attributes
    ----------
    k
        List length.
    window_days, step_days
        Length of each test window, and days between consecutive cuts.
    cuts
        One :class:`~recsys.evaluation.protocol.EvaluationResult` per cut, oldest first.
    """

    k: int
    window_days: float
    step_days: float
    cuts: list[EvaluationResult]

    @property
    def model_names(self) -> list[str]:
        """Every model named, measured or skipped, in the order given."""
        names: dict[str, None] = {}
        for result in self.cuts:
            names.update(dict.fromkeys(m.name for m in result.models))
            names.update(dict.fromkeys(result.skipped))
        return list(names)

    def values(self, model: str, metric: str, which: Literal["all", "new"]) -> list[float]:
        """The metric per cut (``NaN`` where the model was skipped)."""
        out = []
        for result in self.cuts:
            found = [m for m in result.models if m.name == model]
            if not found:
                out.append(float("nan"))
                continue
            table = found[0].all_items if which == "all" else found[0].new_items
            out.append(float(table[metric]))
        return out

    def spread(self, model: str, metric: str, which: Literal["all", "new"]) -> Spread:
        """Mean and spread of ``metric`` (``"recall"``, ``"ndcg"``...) over the cuts."""
        return Spread.of(self.values(model, metric, which))

    def skipped(self) -> dict[str, str]:
        """Model name -> why it was skipped, at the first cut where it was."""
        out: dict[str, str] = {}
        for result in self.cuts:
            for name, reason in result.skipped.items():
                out.setdefault(name, f"{from_micros(result.cut).date()}: {reason}")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the summary per model, then every cut in full (``NaN`` -> ``None``)."""
        summary = {
            name: {
                f"{metric}@{self.k}_{which}": asdict(self.spread(name, metric, which))
                for metric, which in SUMMARISED
            }
            for name in self.model_names
        }
        return _nan_to_none(
            {
                "k": self.k,
                "window_days": self.window_days,
                "step_days": self.step_days,
                "cut_dates": [from_micros(r.cut).date().isoformat() for r in self.cuts],
                "summary": summary,
                "skipped": self.skipped(),
                "cuts": [r.to_dict() for r in self.cuts],
            }
        )

    def to_json(self) -> str:
        """The result as a JSON document."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, allow_nan=False)

    def to_markdown(self) -> str:
        """The summary table (mean ± std [min, max]), then recall per cut, then skips."""
        k = self.k
        dates = [str(from_micros(r.cut).date()) for r in self.cuts]
        users = ", ".join(f"{r.n_users:,}" for r in self.cuts)
        header = ["model"] + [
            f"{'R' if metric == 'recall' else 'NDCG'}@{k} {which}" for metric, which in SUMMARISED
        ]
        lines = [
            f"Rolling origin: {len(self.cuts)} cuts ({', '.join(dates)}), each tested on the "
            f"{self.window_days:g} days after it · customers per cut: {users} · top {k}",
            "",
            'mean ± std [min, max] over the cuts; "new" = items the customer had not bought '
            "before the cut.",
            "",
            "| " + " | ".join(header) + " | cuts |",
            "|---|" + "---:|" * (len(header) - 1) + "---:|",
        ]
        for name in self.model_names:
            spreads = [self.spread(name, metric, which) for metric, which in SUMMARISED]
            n = max(s.n for s in spreads)
            lines.append(f"| {name} | " + " | ".join(_cell(s) for s in spreads) + f" | {n} |")
        lines += ["", f"Recall@{k} on all items per cut:", ""]
        lines.append("| model | " + " | ".join(dates) + " |")
        lines.append("|---|" + "---:|" * len(dates))
        for name in self.model_names:
            cells = [_num(v) for v in self.values(name, "recall", "all")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        skipped = self.skipped()
        if skipped:
            lines += ["", "Skipped (cannot fit this data):", ""]
            lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
        return "\n".join(lines) + "\n"


def evaluate_rolling(
    events: EventFrame,
    models: Mapping[str, ModelSpec],
    *,
    n_cuts: int = 4,
    window_days: float = 30.0,
    step_days: float | None = None,
    k: int = 10,
    interaction_config: InteractionConfig | None = None,
    catalog: Iterable[CatalogItem] = (),
    users: Literal["both_periods", "test"] = "both_periods",
    notify: Notify = _ignore,
) -> RollingResult:
    """Evaluate every model at ``n_cuts`` rolling cut dates (see the module docstring).

    Parameters
    ----------
    events
        The whole event log.
    models
        As for :func:`~recsys.evaluation.protocol.evaluate_models`; an instance is refitted at
        every cut.
    n_cuts, window_days, step_days
        The cuts (:func:`~recsys.evaluation.splits.rolling_cuts`): ``n_cuts`` dates
        ``step_days`` apart (default ``window_days``), the newest ``window_days`` before the
        end of the log, each tested on the ``window_days`` after it.
    k, interaction_config, catalog, users
        As for :func:`~recsys.evaluation.protocol.evaluate_models`.
    notify
        Receives a notice the first time each model is skipped.

    Returns
    -------
    RollingResult

    Raises
    ------
    DataError
        The log is too short for the cuts, or a cut has no customer to evaluate.
    ConfigError
        As for :func:`~recsys.evaluation.protocol.evaluate_models`.
    """
    cuts = rolling_cuts(events, n_cuts, window_days=window_days, step_days=step_days)
    catalog = list(catalog)
    told: set[str] = set()
    results = []
    for cut in cuts:
        result = evaluate_models(
            events,
            models,
            cut=cut,
            k=k,
            interaction_config=interaction_config,
            catalog=catalog,
            users=users,
            horizon=int(window_days * MICROS_PER_DAY),
        )
        for name, reason in result.skipped.items():
            # the same model refuses the same data at every cut: one notice is enough
            if name not in told:
                told.add(name)
                notify(f"notice: model {name!r} skipped: {reason}")
        results.append(result)
    step = window_days if step_days is None else step_days
    return RollingResult(k=k, window_days=window_days, step_days=step, cuts=results)


def _cell(spread: Spread) -> str:
    if spread.n == 0:
        return "-"
    return f"{spread.mean:.3f} ± {spread.std:.3f} [{spread.min:.3f}, {spread.max:.3f}]"


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


#: The parameters that seed a model's random draws (the hybrid's, the factor models').
SEED_PARAMS = ("seed", "random_state")


def other_seeds(models: Mapping[str, Any], n_seeds: int) -> dict[str, Any]:
    """Each model with a seed parameter, again with ``n_seeds - 1`` other seeds.

    The spread a seed alone gives is what a difference between two settings must exceed
    (``recsys evaluate --seeds N``).

    Parameters
    ----------
    models
        Name -> fitted or unfitted model instance (``get_params`` and a keyword constructor).
    n_seeds
        Seeds per model, its own included; below 2 nothing is added.

    Returns
    -------
    dict
        ``"NAME seed=S"`` -> a new instance with seed ``S``: the smallest non-negative seeds
        other than the model's own. Models without a seed parameter get none.
    """
    out: dict[str, Any] = {}
    for name, model in models.items():
        params = model.get_params()
        key = next((k for k in SEED_PARAMS if k in params), None)
        if key is None or n_seeds < 2:
            continue
        own = params[key]
        for seed in [s for s in range(n_seeds + 1) if s != own][: n_seeds - 1]:
            out[f"{name} seed={seed}"] = type(model)(**{**params, key: seed})
    return out

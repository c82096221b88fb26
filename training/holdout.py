"""The holdout that judges a run's models, and the order each hybrid serves.

Every evaluated model is fitted once on the events before the cut
(:func:`holdout_cut`: ``holdout_days`` before the run's as-of) and judged on the purchases
after it (:func:`evaluate_holdout`). A hybrid whose tests choose the order of its list is scored
there in every order its tests choose among (:class:`OrderVariants`), and the final fit's
choice picks the metrics that count (:func:`served_orders`). Both engines run this holdout:
Spark with its own fits (:mod:`training.spark.engine`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from functools import partial
from typing import Any

import numpy as np

from recsys.data.schema import MICROS_PER_DAY, CatalogItem, EventFrame
from recsys.errors import DataError, ModelError
from recsys.evaluation.protocol import EvaluationResult
from recsys.models.hybrid import HybridModel
from recsys.models.orders import RepeatChoice, ServedOrder
from recsys.registry import Registry
from training.config import TrainingConfig
from training.stages import Choices, Notify, iso_time, make_model, skip_model, thread_limit


def evaluated_model(name: str, config: TrainingConfig) -> Any:
    """Model ``name`` for the evaluation's fit: a hybrid skips its order tests, for the
    holdout scores every order of it (:func:`evaluate_holdout`)."""
    model = make_model(name, config)
    if isinstance(model, HybridModel):
        model.without_order_test()
    return model


def serving_choices(registry: Registry, config: TrainingConfig) -> Choices:
    """What the current version's hybrids chose by their ``repeat_first`` test, by model name:
    a full run's hybrids change it only when the mean t of their test and that version's
    asks for the change (:meth:`~recsys.models.hybrid.HybridModel.hold_choice`), so the
    served order does not flip between versions on one test's chance. Only hybrids whose
    params are the config's now count. Empty without a current version."""
    from recsys.artifacts import model_folder

    current = registry.current_version()
    if current is None:
        return {}
    folder = registry.path(current)
    found: dict[str, RepeatChoice] = {}
    for name in config.enabled_models():
        model = make_model(name, config)
        if not isinstance(model, HybridModel):
            continue
        # a version trained with other params tested another model: nothing to hold
        choice = model.saved_choice(model_folder(folder, name), params=model.get_params())
        if choice is not None:
            found[name] = choice
    return found


def evaluate_holdout(
    events: EventFrame,
    config: TrainingConfig,
    as_of: int,
    catalog: list[CatalogItem],
    *,
    skipped: dict[str, str],
    notify: Notify,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """Fit on the events before the cut, measure on the purchases after it.

    Models that cannot fit the pre-cut data are skipped (the default model failing fails the
    run): :func:`~recsys.evaluation.protocol.evaluate_models` goes on with the others and
    scores none of its rows. Returns flattened metrics per model and a description of the
    holdout (with the sample, each metric's 95 % confidence interval and, under
    ``"orders"``, the metrics of each hybrid's other orders: see :func:`served_orders`).
    """
    from recsys.evaluation.protocol import evaluate_models

    ev = config.evaluation
    if not ev.enabled:
        return {}, {"skipped": "disabled in the config"}
    cut = holdout_cut(as_of, config)
    names = config.evaluated_models()
    info = holdout_info(cut, config, names)
    orders = OrderVariants()
    try:
        with thread_limit(config):
            result = evaluate_models(
                events,
                {n: partial(evaluated_model, n, config) for n in names},
                cut=cut,
                k=ev.k,
                interaction_config=config.interactions,
                catalog=catalog,
                max_users=ev.max_users or None,
                seed=ev.seed,
                variants=orders,
            )
    except DataError as exc:
        notify(f"notice: evaluation skipped: {exc}")
        return {}, {**info, "skipped": str(exc)}
    for name, why in result.skipped.items():
        skip_model(name, ModelError(why), skipped, notify)
    return holdout_entries(result, info, orders.chosen, config)


def holdout_cut(as_of: int, config: TrainingConfig) -> int:
    """The holdout's cut: ``holdout_days`` before ``as_of``, at the start of that UTC day."""
    cut = as_of - int(config.evaluation.holdout_days * MICROS_PER_DAY)
    return cut - cut % MICROS_PER_DAY  # a date a person can name, as recsys evaluate uses


def holdout_info(cut: int, config: TrainingConfig, names: list[str]) -> dict[str, Any]:
    """The manifest's ``evaluation`` entry before any measurement: the cut, the window, ``k``
    and the enabled models not among ``names`` (the evaluated ones)."""
    ev = config.evaluation
    info: dict[str, Any] = {"cut": iso_time(cut), "holdout_days": ev.holdout_days, "k": ev.k}
    not_evaluated = [n for n in config.enabled_models() if n not in names]
    if not_evaluated:
        info["not_evaluated"] = not_evaluated
    return info


class OrderVariants:
    """The holdout's variants (:func:`~recsys.evaluation.protocol.evaluate_models`): a
    hybrid whose order its tests choose is scored in every order of the same fit
    (:meth:`~recsys.models.hybrid.HybridModel.order_choices`), and the final fit's tests
    pick the one that counts (:func:`served_orders`). ``chosen`` holds each such hybrid's
    orders by name, the one its evaluation fit serves first."""

    def __init__(self) -> None:
        self.chosen: dict[str, tuple[ServedOrder, ...]] = {}

    def __call__(self, name: str, model: Any) -> dict[str, Any]:
        """``model``'s fit in its other orders by their names, or nothing."""
        orders = model.order_choices() if isinstance(model, HybridModel) else ()
        if not orders:
            return {}
        self.chosen[name] = orders
        return {
            _order_name(name, order): model.in_order(
                order.first, order.discover_weight, order.discover_by
            )
            for order in orders[1:]
        }


def holdout_entries(
    result: EvaluationResult,
    info: dict[str, Any],
    chosen: Mapping[str, Sequence[ServedOrder]],
    config: TrainingConfig,
) -> tuple[dict[str, dict[str, float | None]], dict[str, Any]]:
    """Flattened metrics per model and the manifest's ``evaluation`` entry (``info``
    completed: the sample, each metric's 95 % confidence interval, the fit and score seconds
    and, under ``"orders"``, the metrics of each hybrid's other orders)."""
    ev = config.evaluation
    info.update(
        users=result.n_users,
        users_eligible=result.n_users_eligible,
        users_new=result.n_users_new,
        train_events=result.n_train_events,
        test_purchases=result.n_test_purchases,
    )
    if result.sampled:
        info["sample"] = {"max_users": ev.max_users, "seed": ev.seed}
    # where the evaluate stage's time went, model by model (on the pre-cut data)
    info["fit_seconds"] = {m.name: round(m.fit_seconds, 3) for m in result.models}
    info["score_seconds"] = {m.name: round(m.score_seconds, 3) for m in result.models}
    metrics: dict[str, dict[str, float | None]] = {}
    ci95: dict[str, dict[str, list[float | None]]] = {}
    for m in result.models:
        flat = {f"{k}@{ev.k}": v for k, v in m.all_items.items()}
        flat.update({f"new_{k}@{ev.k}": v for k, v in m.new_items.items()})
        flat.update(coverage=m.coverage, novelty=m.novelty, gini=m.gini)
        metrics[m.name] = {k: _finite(v) for k, v in flat.items()}
        intervals = {f"{k}@{ev.k}": v for k, v in m.all_items_ci95.items()}
        intervals.update({f"new_{k}@{ev.k}": v for k, v in m.new_items_ci95.items()})
        ci95[m.name] = {k: [_finite(lo), _finite(hi)] for k, (lo, hi) in intervals.items()}
    info["ci95"] = ci95
    entries: dict[str, Any] = {}
    for name, (served, *others) in chosen.items():
        entries[name] = {
            **asdict(served),
            "others": [
                {
                    **asdict(order),
                    "metrics": metrics.pop(_order_name(name, order)),
                    "ci95": ci95.pop(_order_name(name, order)),
                }
                for order in others
            ],
        }
        for seconds in (info["fit_seconds"], info["score_seconds"]):
            for order in others:
                seconds.pop(_order_name(name, order), None)
    if entries:
        info["orders"] = entries
    return metrics, info


def _order_name(name: str, order: ServedOrder) -> str:
    mix = f"{order.discover_by} {order.discover_weight:g}" if order.discover_weight else "0"
    return f"{name}[first={order.first}, discover={mix}]"


def _order_of(entry: Mapping[str, Any]) -> ServedOrder:
    # an entry written before the EASE mix existed mixed popularity in
    by = str(entry.get("discover_by", "popularity"))
    return ServedOrder(bool(entry["first"]), float(entry["discover_weight"]), by)


def served_orders(
    metrics: dict[str, dict[str, float | None]],
    evaluation: dict[str, Any],
    fitted: Mapping[str, Any],
) -> None:
    """Make ``metrics`` (and the manifest's evaluation) those of the order each hybrid's
    final fit serves, in place.

    The evaluation's fit runs no test and the holdout scores it in every order its tests
    choose among (:func:`evaluate_holdout`); the final fit's tests, on the newest window, choose
    the order that serves. Where that is another, its metrics become the model's, so the
    promotion gate passes the order that serves. Two tests, one per fit, could choose
    differently: ``make run``'s first train chose own purchases first before the holdout
    (t = 4.22) and the learned order in its final fit (t = -3.07), and the gate read the
    order that did not serve. ``evaluation["orders"][name]`` says which order the model's
    metrics are (``first``, ``discover_weight``, ``discover_by``), the others' sit beside
    them.
    """
    for name, entry in (evaluation.get("orders") or {}).items():
        model = fitted.get(name)
        final = model.served_order() if isinstance(model, HybridModel) else None
        if final is None or name not in metrics:
            continue
        others: list[dict[str, Any]] = entry["others"]
        match = next((o for o in others if _order_of(o) == final), None)
        if match is None:  # the served order, or one the holdout did not score
            continue
        ci95 = evaluation["ci95"]
        others.remove(match)
        others.append({**asdict(_order_of(entry)), "metrics": metrics[name], "ci95": ci95[name]})
        metrics[name], ci95[name] = match["metrics"], match["ci95"]
        entry.update(asdict(final))


def _finite(value: float) -> float | None:
    value = float(value)
    return None if not np.isfinite(value) else value

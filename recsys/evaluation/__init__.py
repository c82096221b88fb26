"""Offline evaluation: full-catalogue ranking metrics, splits, and the hold-out protocol.

The entry point is :func:`evaluate_models` (also behind ``recsys evaluate``): hold out the
last month of purchases, fit each model on what came before, and report accuracy on all
items and on items new to each customer, with coverage, novelty and exposure inequality.
:func:`evaluate_rolling` (``recsys evaluate --cuts N``) repeats it at several cut dates and
reports each model's mean and spread.
"""

from __future__ import annotations

from recsys.evaluation.metrics import (
    RANKING_METRICS,
    catalog_coverage,
    exposure,
    gini,
    mean_metrics,
    novelty,
    ranking_metrics,
)
from recsys.evaluation.protocol import EvaluationResult, ModelResult, evaluate_models
from recsys.evaluation.rolling import RollingResult, Spread, evaluate_rolling, other_seeds
from recsys.evaluation.splits import (
    Split,
    default_cut,
    last_basket_split,
    random_split,
    rolling_cuts,
    rolling_splits,
    time_split,
)

__all__ = [
    "RANKING_METRICS",
    "EvaluationResult",
    "ModelResult",
    "RollingResult",
    "Split",
    "Spread",
    "catalog_coverage",
    "default_cut",
    "evaluate_models",
    "evaluate_rolling",
    "exposure",
    "gini",
    "last_basket_split",
    "mean_metrics",
    "novelty",
    "other_seeds",
    "random_split",
    "ranking_metrics",
    "rolling_cuts",
    "rolling_splits",
    "time_split",
]

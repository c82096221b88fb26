"""Human-readable forms of an :class:`~recsys.evaluation.protocol.EvaluationResult`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.data.schema import from_micros
from recsys.errors import DataError

if TYPE_CHECKING:
    from recsys.evaluation.protocol import EvaluationResult

_SHOWN = (
    ("precision", "P"),
    ("recall", "R"),
    ("capped_recall", "cR"),
    ("ndcg", "NDCG"),
    ("map", "MAP"),
    ("hit_rate", "HR"),
)
_SHOWN_NEW = _SHOWN[1:4]


def markdown_table(result: EvaluationResult) -> str:
    """A Markdown summary: the setting in one line, then one row per model."""
    k = result.k
    header = (
        ["model"]
        + [f"{label}@{k}" for _, label in _SHOWN]
        + [f"{label}@{k} new" for _, label in _SHOWN_NEW]
        + ["coverage", "novelty", "Gini", "fit s", "score s"]
    )
    lines = [
        f"Cut {from_micros(result.cut).date()} · {result.n_users:,} customers "
        f"({result.n_users_new:,} with new items) · {result.n_items:,} items · top {k}",
        "",
        f"R = recall (hits / relevant), cR = capped recall (hits / min({k}, relevant)); "
        '"new" = items the customer had not bought before the cut.',
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    for m in result.models:
        cells = (
            [m.name]
            + [_fmt(m.all_items[key]) for key, _ in _SHOWN]
            + [_fmt(m.new_items[key]) for key, _ in _SHOWN_NEW]
            + [
                _fmt(m.coverage),
                _fmt(m.novelty, 2),
                _fmt(m.gini),
                _fmt(m.fit_seconds, 2),
                _fmt(m.score_seconds, 2),
            ]
        )
        lines.append("| " + " | ".join(cells) + " |")
    lines += _skipped_lines(result.skipped)
    segments = sorted({s for m in result.models for s in m.segments})
    if segments:
        lines += ["", f"Recall@{k} by segment (all items / new items):", ""]
        lines.append("| model | " + " | ".join(segments) + " |")
        lines.append("|---|" + "---:|" * len(segments))
        for m in result.models:
            cells = [
                f"{_fmt(m.segments[s]['all']['recall'])} / {_fmt(m.segments[s]['new']['recall'])}"
                if s in m.segments
                else "-"
                for s in segments
            ]
            lines.append(f"| {m.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_result(result: EvaluationResult, path: str | Path) -> Path:
    """Grouped bar chart: recall and NDCG at ``k``, all items vs new items, per model.

    Parameters
    ----------
    result
        The evaluation to draw.
    path
        Image file to write; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")  # never needs a display, even on a desktop
    import matplotlib.pyplot as plt
    import numpy as np

    path = Path(path)
    series = [
        ("recall", "all_items", f"recall@{result.k} all"),
        ("recall", "new_items", f"recall@{result.k} new"),
        ("ndcg", "all_items", f"NDCG@{result.k} all"),
        ("ndcg", "new_items", f"NDCG@{result.k} new"),
    ]
    names = [m.name for m in result.models]
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(names) + 2), 4.5))
    try:
        for i, (metric, which, label) in enumerate(series):
            values = [getattr(m, which)[metric] for m in result.models]
            values = [0.0 if math.isnan(v) else v for v in values]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
        ax.set_xticks(x, names)
        ax.set_ylabel("score")
        ax.set_title(
            f"Held out from {from_micros(result.cut).date()}: "
            f"{result.n_users:,} customers, top {result.k}"
        )
        ax.legend(fontsize="small")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        try:
            fig.savefig(path)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot write the plot: {exc}") from None
    finally:
        plt.close(fig)
    return path


def _skipped_lines(skipped: Mapping[str, str]) -> list[str]:
    """One line per model left out because it could not fit the data, with its reason."""
    if not skipped:
        return []
    return ["", "Skipped (cannot fit this data):", ""] + [
        f"- {name}: {reason}" for name, reason in skipped.items()
    ]


def _fmt(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"

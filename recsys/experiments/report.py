"""The A/B report: the split check first, then per-variant metrics and tests against the control.

:func:`ab_report` runs :func:`~recsys.experiments.analysis.analyse` and the tests of
:mod:`recsys.experiments.stats` and returns an :class:`ABReport` that renders as Markdown, HTML
(with an embedded plot of each metric per variant with its confidence interval) or JSON.

Order matters: the sample-ratio-mismatch check comes first because a broken split invalidates
every number below it; a "not yet at the planned sample size" warning comes next, before any
p-value can be read as a verdict.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps

from recsys.errors import DataError
from recsys.experiments.analysis import (
    CLICK_TYPES,
    PURCHASE_TYPES,
    EventLog,
    ExperimentData,
    ExposureLog,
    VariantMetrics,
    analyse,
)
from recsys.experiments.definitions import HOLDOUT, Experiment
from recsys.experiments.stats import (
    SRMResult,
    TestResult,
    bootstrap_diff_ci,
    cuped_ttest,
    holm_bonferroni,
    ratio_estimate,
    ratio_ztest,
    sample_size_warning,
    srm_test,
    two_proportion_ztest,
    welch_ttest,
)

METRICS = ("ctr", "conversion", "revenue_per_user")
_LABELS = {
    "ctr": "Click-through (exposures clicked)",
    "conversion": "Conversion (purchasers / users)",
    "revenue_per_user": "Revenue per user",
}


@dataclass(frozen=True)
class Comparison:
    """One metric of one treatment variant against the control."""

    variant: str
    metric: str
    test: TestResult
    adjusted_p_value: float
    significant: bool
    bootstrap_ci: tuple[float, float] | None = None
    cuped_variance_reduction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        return {
            "variant": self.variant,
            "metric": self.metric,
            **self.test.to_dict(),
            "adjusted_p_value": self.adjusted_p_value,
            "significant_after_correction": self.significant,
            "bootstrap_ci": list(self.bootstrap_ci) if self.bootstrap_ci else None,
            "cuped_variance_reduction": self.cuped_variance_reduction,
        }


@dataclass(frozen=True)
class ABReport:
    """The outcome of :func:`ab_report`; render with :meth:`to_markdown`, :meth:`to_html`,
    :meth:`to_json`."""

    experiment: str
    control: str
    alpha: float
    srm: SRMResult | None
    warnings: tuple[str, ...]
    planned_sample_size: int | None
    variants: tuple[dict[str, Any], ...]
    intervals: dict[str, dict[str, tuple[float, float, float]]] = field(repr=False)
    comparisons: tuple[Comparison, ...]
    primary_metric: str = "conversion"
    """The metric the experiment is decided on (chosen before it started); the others are
    secondary."""

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (NaN becomes ``None``)."""
        return _clean(
            {
                "experiment": self.experiment,
                "control": self.control,
                "alpha": self.alpha,
                "srm": self.srm.to_dict() if self.srm else None,
                "primary_metric": self.primary_metric,
                "warnings": list(self.warnings),
                "planned_sample_size_per_variant": self.planned_sample_size,
                "variants": list(self.variants),
                "comparisons": [c.to_dict() for c in self.comparisons],
            }
        )

    def to_json(self) -> str:
        """The report as a JSON document."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def _srm_line(self) -> str:
        if self.srm is None:
            return "Sample ratio: only one group was logged; nothing to check."
        parts = ", ".join(
            f"{g} {o} (expected {e:.0f})"
            for g, o, e in zip(self.srm.groups, self.srm.observed, self.srm.expected, strict=True)
        )
        verdict = (
            "MISMATCH - the split is broken; do not trust the results below"
            if self.srm.mismatch
            else "OK"
        )
        return (
            f"Sample ratio: {verdict} (chi-square {self.srm.statistic:.2f}, "
            f"p = {self.srm.p_value:.3g}, threshold {self.srm.threshold:g}): {parts}"
        )

    def _variant_rows(self) -> list[list[str]]:
        rows = []
        for v in self.variants:
            rows.append(
                [
                    str(v["variant"]),
                    str(v["users"]),
                    str(v["exposures"]),
                    _fmt(v["ctr"], pct=True),
                    _fmt(v["conversion"], pct=True),
                    _fmt(v["revenue_per_user"]),
                    _fmt(v["average_order_value"]),
                    _fmt(v["items_per_order"]),
                ]
            )
        return rows

    def _comparison_rows(self) -> list[list[str]]:
        rows = []
        for c in self.comparisons:
            pct = c.metric != "revenue_per_user"
            t = c.test
            rows.append(
                [
                    c.variant,
                    f"{c.metric} (primary)" if c.metric == self.primary_metric else c.metric,
                    f"{_fmt(t.estimate_a, pct=pct)} -> {_fmt(t.estimate_b, pct=pct)}",
                    f"{_fmt(t.difference, pct=pct)} "
                    f"[{_fmt(t.ci_low, pct=pct)}, {_fmt(t.ci_high, pct=pct)}]",
                    _fmt(t.relative_lift, pct=True),
                    f"{t.p_value:.3g}",
                    f"{c.adjusted_p_value:.3g}",
                    "yes" if c.significant else "no",
                ]
            )
        return rows

    _VARIANT_HEAD = (
        "variant",
        "users",
        "exposures",
        "CTR",
        "conversion",
        "revenue/user",
        "avg order value",
        "items/order",
    )
    _COMP_HEAD = (
        "variant",
        "metric",
        "control -> variant",
        "difference [CI]",
        "lift",
        "p",
        "Holm p",
        "significant",
    )

    def to_markdown(self) -> str:
        """The report as Markdown."""
        out = [f"# A/B report: {self.experiment}", "", self._srm_line(), ""]
        out += [f"> **Warning:** {w}" for w in self.warnings]
        if self.warnings:
            out.append("")
        out += ["## Variants", "", *_md_table(self._VARIANT_HEAD, self._variant_rows()), ""]
        level = f"{1 - self.alpha:.0%}"
        out += [
            f"## Against the control ({self.control}); {level} intervals, Holm-corrected "
            "across variants",
            "",
            *_md_table(self._COMP_HEAD, self._comparison_rows()),
        ]
        for c in self.comparisons:
            if c.cuped_variance_reduction is not None:
                out.append(
                    f"\nCUPED ({c.variant}, {c.metric}): variance reduced by "
                    f"{c.cuped_variance_reduction:.1%} with the pre-period covariate."
                )
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        """The report as a self-contained HTML page with an embedded PNG plot."""
        esc = html.escape
        srm_class = "bad" if self.srm is not None and self.srm.mismatch else "ok"
        parts = [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>A/B report: {esc(self.experiment)}</title>",
            "<style>body{font-family:sans-serif;max-width:70em;margin:auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}"
            ".bad{color:#a00;font-weight:bold}.warn{background:#fff3cd;padding:.5em}</style>",
            f"</head><body><h1>A/B report: {esc(self.experiment)}</h1>",
            f"<p class='srm {srm_class}'>{esc(self._srm_line())}</p>",
        ]
        parts += [f"<p class='warn'>Warning: {esc(w)}</p>" for w in self.warnings]
        parts += ["<h2>Variants</h2>", _html_table(self._VARIANT_HEAD, self._variant_rows())]
        parts += [
            f"<h2>Against the control ({esc(self.control)})</h2>",
            _html_table(self._COMP_HEAD, self._comparison_rows()),
        ]
        png = self.plot_png()
        if png:
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(
                f"<h2>Metrics per variant</h2><img alt='metrics per variant with "
                f"{1 - self.alpha:.0%} intervals' src='data:image/png;base64,{b64}'>"
            )
        parts.append("</body></html>")
        return "\n".join(parts)

    def plot_png(self) -> bytes:
        """One panel per metric: each variant's value with its confidence interval, as PNG."""
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

        fig = Figure(figsize=(4 * len(METRICS), 3.2), layout="constrained")
        axes = fig.subplots(1, len(METRICS))
        for ax, metric in zip(np.atleast_1d(axes), METRICS, strict=True):
            names = list(self.intervals[metric])
            vals = np.array([self.intervals[metric][n][0] for n in names])
            lo = np.array([self.intervals[metric][n][1] for n in names])
            hi = np.array([self.intervals[metric][n][2] for n in names])
            err = np.nan_to_num(np.vstack([vals - lo, hi - vals]))
            ax.errorbar(range(len(names)), vals, yerr=err, fmt="o", capsize=4)
            ax.set_xticks(range(len(names)), names)
            ax.set_title(_LABELS[metric], fontsize=9)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)
        return buf.getvalue()


def ab_report(
    experiment: Experiment,
    exposures: ExposureLog,
    events: EventLog,
    *,
    control: str | None = None,
    covariates: Mapping[str, float] | None = None,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    click_types: tuple[str, ...] = CLICK_TYPES,
    purchase_types: tuple[str, ...] = PURCHASE_TYPES,
) -> ABReport:
    """Analyse an experiment and test every variant against the control.

    Parameters
    ----------
    experiment
        The definition (shares for the split check, window, alpha, planned sample size).
    exposures, events
        The logs (see :mod:`recsys.experiments.analysis`).
    control
        The control variant (default: the first one defined).
    covariates
        Pre-period value per user (e.g. revenue in the weeks before the start). When given,
        revenue per user is tested on CUPED-adjusted values; a missing user counts as 0.
    bootstrap_resamples, seed
        The seeded bootstrap interval reported next to Welch's for revenue per user.
    """
    control = experiment.variant_names[0] if control is None else control
    if control not in experiment.variant_names:
        raise DataError(
            f"experiment '{experiment.name}': control {control!r} is not a variant "
            f"(variants: {', '.join(experiment.variant_names)})"
        )
    alpha = experiment.alpha
    data = analyse(
        experiment, exposures, events, click_types=click_types, purchase_types=purchase_types
    )
    srm = _srm(experiment, data)
    planned = experiment.planned_sample_size()
    warnings: list[str] = []
    users = {n: data.variants[n].users for n in experiment.variant_names}
    pending = sample_size_warning(users, planned)
    if pending:
        warnings.append(pending)
    if data.users_in_several_variants:
        warnings.append(
            f"{data.users_in_several_variants} users were logged under more than one variant; "
            "each is counted in the first only"
        )
    empty = [n for n, u in users.items() if u < 2]
    if empty:
        warnings.append(f"variants with fewer than 2 users cannot be tested: {', '.join(empty)}")

    ctrl = data.variants[control]
    treatments = [n for n in experiment.variant_names if n != control and n not in empty]
    comparisons: list[Comparison] = []
    if control not in empty:
        for metric in METRICS:
            found = [
                _compare(
                    metric, ctrl, data.variants[n], alpha, covariates, bootstrap_resamples, seed
                )
                for n in treatments
            ]
            adjusted, reject = holm_bonferroni([t.p_value for t, _, _ in found], alpha=alpha)
            for n, (t, boot, red), p, r in zip(treatments, found, adjusted, reject, strict=True):
                comparisons.append(Comparison(n, metric, t, float(p), bool(r), boot, red))
    comparisons.sort(key=lambda c: (treatments.index(c.variant), METRICS.index(c.metric)))
    return ABReport(
        experiment=experiment.name,
        control=control,
        alpha=alpha,
        srm=srm,
        warnings=tuple(warnings),
        planned_sample_size=planned,
        variants=tuple(data.variants[n].summary() for n in data.variants),
        intervals=_intervals(data, alpha),
        comparisons=tuple(comparisons),
        primary_metric=experiment.primary_metric,
    )


def _srm(experiment: Experiment, data: ExperimentData) -> SRMResult | None:
    shares = experiment.expected_shares()
    logged = {n for n, v in data.variants.items() if v.users > 0}
    if HOLDOUT in shares and HOLDOUT not in logged:
        # Holdout users may not be logged at all; then check the split of the variants alone.
        shares = {n: s for n, s in shares.items() if n != HOLDOUT}
    unknown = logged - set(shares)
    if unknown:
        raise DataError(
            f"experiment '{experiment.name}': exposures logged under unknown variants "
            f"{sorted(unknown)}"
        )
    if len(shares) < 2:
        return None
    observed = {n: data.variants[n].users if n in data.variants else 0 for n in shares}
    if not any(observed.values()):
        raise DataError(f"experiment '{experiment.name}': no exposures logged yet")
    return srm_test(observed, shares)


def _compare(
    metric: str,
    a: VariantMetrics,
    b: VariantMetrics,
    alpha: float,
    covariates: Mapping[str, float] | None,
    resamples: int,
    seed: int,
) -> tuple[TestResult, tuple[float, float] | None, float | None]:
    if metric == "ctr":
        if a.exposures == 0 or b.exposures == 0:
            raise DataError(f"variant {a.name if a.exposures == 0 else b.name!r} has no exposures")
        # per user, not per exposure: a user's lists are not independent trials
        return (
            ratio_ztest(
                a.user_clicked, a.user_exposures, b.user_clicked, b.user_exposures, alpha=alpha
            ),
            None,
            None,
        )
    if metric == "conversion":
        return (
            two_proportion_ztest(a.purchasers, a.users, b.purchasers, b.users, alpha=alpha),
            None,
            None,
        )
    boot = bootstrap_diff_ci(
        a.user_revenue, b.user_revenue, alpha=alpha, n_resamples=resamples, seed=seed
    )
    if covariates is None:
        return welch_ttest(a.user_revenue, b.user_revenue, alpha=alpha), boot, None
    xa = np.array([float(covariates.get(u, 0.0)) for u in a.user_ids])
    xb = np.array([float(covariates.get(u, 0.0)) for u in b.user_ids])
    test, res = cuped_ttest(a.user_revenue, xa, b.user_revenue, xb, alpha=alpha)
    return test, boot, res.variance_reduction


def _intervals(
    data: ExperimentData, alpha: float
) -> dict[str, dict[str, tuple[float, float, float]]]:
    z = float(sps.norm.ppf(1 - alpha / 2))
    out: dict[str, dict[str, tuple[float, float, float]]] = {m: {} for m in METRICS}
    for name, v in data.variants.items():
        p = v.purchasers / v.users if v.users else math.nan
        half = z * math.sqrt(p * (1 - p) / v.users) if v.users else math.nan
        out["conversion"][name] = (p, p - half, p + half)
        if v.exposures:
            ctr, var = ratio_estimate(v.user_clicked, v.user_exposures)
            half = z * math.sqrt(var)
            out["ctr"][name] = (ctr, ctr - half, ctr + half)
        else:
            out["ctr"][name] = (math.nan, math.nan, math.nan)
        rev = v.user_revenue
        if len(rev) >= 2:
            m = float(rev.mean())
            half = (
                float(sps.t.ppf(1 - alpha / 2, len(rev) - 1))
                * float(rev.std(ddof=1))
                / math.sqrt(len(rev))
            )
            out["revenue_per_user"][name] = (m, m - half, m + half)
        else:
            out["revenue_per_user"][name] = (v.revenue_per_user, math.nan, math.nan)
    return out


def _fmt(x: float, *, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.2%}" if pct else f"{x:.2f}"


def _md_table(head: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _html_table(head: tuple[str, ...], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.generic):
        return _clean(obj.item())
    return obj

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from recsys.errors import DataError
from recsys.experiments.report import ab_report
from tests.experiments.helpers import make_experiment, simulate_logs

THREE = [{"name": "control", "share": 0.4}, {"name": "b", "share": 0.3},
         {"name": "c", "share": 0.3}]  # fmt: skip


@pytest.fixture(scope="module")
def report():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    exp = make_experiment(variants=THREE, holdout_share=0.1, planned_sample_size_per_variant=5000)
    rates = {"control": 0.10, "b": 0.10, "c": 0.20, "holdout": 0.05}
    exposures, events, pre = simulate_logs(exp, 3000, rates, rates, rng)
    return ab_report(exp, exposures, events, covariates=pre, bootstrap_resamples=300)


def test_report_content(report) -> None:  # type: ignore[no-untyped-def]
    assert report.srm is not None and not report.srm.mismatch
    assert report.srm.groups == ("holdout", "control", "b", "c")
    assert report.warnings and "planned sample size of 5000" in report.warnings[0]
    by = {(c.variant, c.metric): c for c in report.comparisons}
    assert set(by) == {(v, m) for v in ("b", "c") for m in ("ctr", "conversion",
                                                              "revenue_per_user")}  # fmt: skip
    assert by["c", "ctr"].significant and by["c", "conversion"].significant
    assert not by["b", "ctr"].significant
    for c in report.comparisons:
        assert c.adjusted_p_value >= c.test.p_value
    rev = by["c", "revenue_per_user"]
    assert rev.cuped_variance_reduction is not None and rev.cuped_variance_reduction > 0.01
    assert rev.test.method == "Welch t-test (CUPED)"
    assert rev.bootstrap_ci is not None


def test_markdown_puts_srm_then_warning_first(report) -> None:  # type: ignore[no-untyped-def]
    md = report.to_markdown()
    srm, warn, table = md.index("Sample ratio: OK"), md.index("Warning"), md.index("## Variants")
    assert srm < warn < table
    assert "| c | ctr |" in md and "| c | conversion (primary) |" in md


def test_html_embeds_png(report) -> None:  # type: ignore[no-untyped-def]
    page = report.to_html()
    assert page.index("Sample ratio") < page.index("Warning") < page.index("<h2>Variants")
    found = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert found is not None
    assert base64.b64decode(found.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_round_trips(report) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(report.to_json())
    assert list(data)[:4] == ["experiment", "control", "alpha", "srm"]
    assert data["srm"]["mismatch"] is False and data["primary_metric"] == "conversion"
    assert len(data["comparisons"]) == 6
    assert {v["variant"] for v in data["variants"]} == {"holdout", "control", "b", "c"}


def test_broken_split_is_reported_first(rng: np.random.Generator) -> None:
    exp = make_experiment()
    exposures, events, _ = simulate_logs(exp, 4000, {"control": .1, "treat": .1},
                                         {"control": .1, "treat": .1}, rng)  # fmt: skip
    # Drop a third of the treatment's users, as a buggy logger would.
    keep = ~((exposures.variant == "treat") & (np.arange(len(exposures)) % 3 == 0))
    rep = ab_report(exp, exposures.select(keep), events, bootstrap_resamples=200)
    assert rep.srm is not None and rep.srm.mismatch
    assert "MISMATCH" in rep.to_markdown().splitlines()[2]


def test_unknown_control_is_refused(rng: np.random.Generator) -> None:
    exp = make_experiment()
    exposures, events, _ = simulate_logs(exp, 50, {"control": .1, "treat": .1},
                                         {"control": .1, "treat": .1}, rng)  # fmt: skip
    with pytest.raises(DataError, match="control 'nope' is not a variant"):
        ab_report(exp, exposures, events, control="nope")


def test_no_exposures_yet_is_said_in_the_experiments_terms(rng: np.random.Generator) -> None:
    """A new experiment's report (CLI, web page) named an internal function instead."""
    exp = make_experiment()
    exposures, events, _ = simulate_logs(exp, 50, {"control": .1, "treat": .1},
                                         {"control": .1, "treat": .1}, rng)  # fmt: skip
    none = exposures.select(np.zeros(len(exposures), dtype=bool))
    with pytest.raises(DataError, match=f"experiment '{exp.name}': no exposures logged yet"):
        ab_report(exp, none, events)

"""The holdout's metrics of each hybrid's served order (:mod:`training.holdout`)."""

from __future__ import annotations

from typing import Any


def test_the_metrics_become_those_of_the_order_the_final_fit_serves() -> None:
    """``served_orders`` swaps the model's metrics (and intervals) with the scored order
    the final fit serves, keeps the evaluation fit's order among the others, and leaves
    them alone when the final fit serves the evaluation's order or one not scored."""
    from recsys.data.interactions import InteractionConfig, build_training_data
    from recsys.data.schema import EventFrame
    from recsys.models.hybrid import HybridModel
    from tests.models.conftest import AS_OF
    from tests.models.test_hybrid import shift_rows
    from training.holdout import served_orders

    data = build_training_data(EventFrame.from_rows(shift_rows()), InteractionConfig(), as_of=AS_OF)
    model = HybridModel(factors=16, max_iter=60, train_windows=2, discover_order="auto")
    model.without_order_test().fit(data)

    def evaluation() -> tuple[dict[str, Any], dict[str, Any]]:
        metrics = {"hybrid": {"ndcg@10": 0.1}, "popular": {"ndcg@10": 0.05}}
        others = [
            {
                "first": False,
                "discover_weight": w,
                "discover_by": by,
                "metrics": {"ndcg@10": w},
                "ci95": {"w": w},
            }
            for by, w in (("popularity", 0.5), ("popularity", 1.0), ("ease", 2.0))
        ]
        entry = {"first": False, "discover_weight": 0.0, "discover_by": "popularity"}
        entry["others"] = others
        return metrics, {"ci95": {"hybrid": {"w": 0.0}}, "orders": {"hybrid": entry}}

    metrics, ev = evaluation()
    served_orders(metrics, ev, {"hybrid": model.in_order(False, 2.0, "ease")})
    assert metrics == {"hybrid": {"ndcg@10": 2.0}, "popular": {"ndcg@10": 0.05}}
    assert ev["ci95"]["hybrid"] == {"w": 2.0}
    entry = ev["orders"]["hybrid"]
    assert (entry["first"], entry["discover_by"], entry["discover_weight"]) == (False, "ease", 2.0)
    kept = {o["discover_weight"]: (o["metrics"], o["ci95"]) for o in entry["others"]}
    assert kept == {
        0.0: ({"ndcg@10": 0.1}, {"w": 0.0}),
        0.5: ({"ndcg@10": 0.5}, {"w": 0.5}),
        1.0: ({"ndcg@10": 1.0}, {"w": 1.0}),
    }
    # the same order; one not scored; popularity at the weight EASE was scored at
    for final in (model, model.in_order(True, 1.0), model.in_order(False, 2.0)):
        metrics, ev = evaluation()
        served_orders(metrics, ev, {"hybrid": final})
        assert (metrics, ev) == evaluation()

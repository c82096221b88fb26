"""`recsys models show`: what a version's co-occurrence tests chose, beside the params."""

from __future__ import annotations

import numpy as np

from recsys.commands.train import _choice_line
from recsys.models.cooccurrence import NormalisationChoice, choose_normalisation
from tests.models.test_cooccurrence_choice import planted_shop, with_last_one_offs


def test_the_line_names_the_served_normalisation_and_the_evidence() -> None:
    choice = choose_normalisation(
        planted_shop(), normalisation="count", alpha=0.5, min_support=2, neighbours=50
    )
    assert choice.reason == "better"  # the planted shop's raw counts lose
    line = _choice_line(choice.as_dict())
    assert line.startswith(f"serves {choice.normalisation} (better): hit rate@10 on ")
    assert f"on {choice.baskets:,} held-out baskets, each hiding a random item: " in line
    for label, rate in choice.hit_rates.items():
        assert f"{label} {rate:.3f}" in line
    assert f"{choice.normalisation} {choice.p_values[choice.normalisation]:.2g}" in line


def test_the_line_says_sessions_hid_their_newest_item_or_why_nothing_ran() -> None:
    sessions, last = with_last_one_offs(planted_shop())

    def test(hide: np.ndarray) -> NormalisationChoice:
        return choose_normalisation(
            sessions,
            normalisation="asymmetric",
            alpha=0.85,
            min_support=1,
            neighbours=50,
            hide=hide,
        )

    line = _choice_line(test(last).as_dict())
    assert line.startswith("serves asymmetric 0.85 (configured): ")
    assert "each hiding its newest item: asymmetric 0.85 0.000" in line
    none = test(np.full(len(last), -1))
    assert _choice_line(none.as_dict()) == f"serves asymmetric 0.85 ({none.reason})"
    assert none.reason.startswith("no test: 0 held-out baskets")

"""The content model: items alike in text are neighbours, new items are placed without a refit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data.interactions import InteractionConfig, build_training_data
from recsys.data.schema import CatalogItem, EventFrame, EventRow
from recsys.errors import ModelError
from recsys.models.content import ContentModel, item_text

CATALOG = [
    CatalogItem("mug1", title="White ceramic mug", category="Home > Kitchen"),
    CatalogItem("mug2", title="Blue ceramic mug", category="Home > Kitchen"),
    CatalogItem("lamp", title="Desk lamp", category="Home > Light"),
    CatalogItem("bike", title="Road bike helmet", category="Sports > Cycling"),
    CatalogItem("bell", title="Bike bell", category="Sports > Cycling", attributes={"c": "red"}),
]


def _data() -> object:
    events = EventFrame.from_rows(
        [EventRow("e1", "u1", None, "mug1", "purchase", 1, 1.0, 2.0, "o1", None)]
    )
    return build_training_data(events, InteractionConfig(), catalog=CATALOG)


def test_alike_items_are_neighbours_and_a_new_item_is_placed(tmp_path: Path) -> None:
    data = _data()
    model = ContentModel().fit(data)  # type: ignore[arg-type]
    ids = data.items.ids  # type: ignore[attr-defined]
    idx, vals = model.similar_items(np.array([ids.index("mug1"), ids.index("bike")]), 2)
    assert ids[idx[0][0]] == "mug2" and ids[idx[1][0]] == "bell"
    assert vals[0][0] > vals[0][1] > 0, "same sub-category beats same category"
    new = model.transform([item_text("Green ceramic mug", "Home > Kitchen")])
    near, _ = model.similar_to_vectors(new, 2)
    assert {ids[i] for i in near[0]} == {"mug1", "mug2"}
    model.save(tmp_path / "m")
    back = ContentModel.load(tmp_path / "m")
    again, _ = back.similar_to_vectors(
        back.transform([item_text("Green ceramic mug", "Home > Kitchen")]), 2
    )
    assert again.tolist() == near.tolist()


def test_a_catalogue_without_text_is_refused() -> None:
    events = EventFrame.from_rows(
        [EventRow("e1", "u1", None, "x", "view", 1, 1.0, None, None, None)]
    )
    data = build_training_data(events, InteractionConfig())
    with pytest.raises(ModelError, match="no titles or categories"):
        ContentModel().fit(data)

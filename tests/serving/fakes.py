"""A tiny model version published through the real registry, with a fake model whose answers
are obvious: item similarity is a fixed matrix, a user's scores are ``history @ similarity``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from recsys.data.interactions import TrainingData
from recsys.models.base import (
    ItemSimilarity,
    Recommender,
    load_arrays,
    save_arrays,
    save_csr,
    save_json,
)
from recsys.registry import Registry

ITEMS = ["A", "B", "C", "D", "E", "F", "G", "H"]
CATALOG = [
    {"item_id": "A", "title": "mug", "category": "Home > Kitchen", "price": 3.0, "in_stock": True},
    {"item_id": "B", "title": "cup", "category": "Home > Kitchen", "price": 2.0, "in_stock": True},
    {"item_id": "C", "title": "tea", "category": "Food", "price": 4.0, "in_stock": True},
    {"item_id": "D", "title": "lamp", "category": "Home > Light", "price": 20.0, "in_stock": True},
    {"item_id": "E", "title": "gone", "category": "Home > Light", "price": 9.0, "in_stock": False},
    {"item_id": "F", "title": "card", "category": "Paper", "price": 1.0, "in_stock": True},
    {"item_id": "G", "title": "pen", "category": "Paper", "price": 1.5, "in_stock": True},
    {"item_id": "H", "title": "bag", "category": "Bags", "price": 7.0, "in_stock": True},
]
USERS = ["u1", "u2", "u3"]
#: u1 bought A (weight 10); u2 viewed D; u3 viewed F and G.
HISTORY = np.array(
    [
        [10, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 1, 1, 0],
    ],
    dtype=np.float32,
)
PURCHASES = (HISTORY >= 10).astype(np.float32)


def similarity() -> NDArray[np.float32]:
    """A next to B (strong) and C; D next to H; F next to G; every item weakly to every other."""
    n = len(ITEMS)
    s = np.full((n, n), 0.01, dtype=np.float32)
    for a, b, w in [("A", "B", 0.9), ("A", "C", 0.5), ("D", "H", 0.8), ("F", "G", 0.7)]:
        i, j = ITEMS.index(a), ITEMS.index(b)
        s[i, j] = s[j, i] = w
    np.fill_diagonal(s, 0)
    return s


class FakeModel(Recommender, ItemSimilarity):
    """Scores = history @ similarity; NaN for a user with an empty history."""

    name = "fake"

    def __init__(self, *, sim: NDArray[np.float32] | None = None) -> None:
        self.sim = sim

    def fit(self, data: TrainingData) -> Self:  # pragma: no cover - never fitted
        return self

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        assert self.sim is not None
        out = np.asarray(sp.csr_matrix(history) @ self.sim, dtype=np.float32)
        empty = np.asarray(sp.csr_matrix(history).getnnz(axis=1)) == 0
        out[empty] = np.nan
        return out

    def similar_items(
        self, items: NDArray[np.intp], k: int
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        assert self.sim is not None
        rows = self.sim[items]
        order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
        return order.astype(np.intp), np.take_along_axis(rows, order, axis=1)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        assert self.sim is not None
        save_arrays(directory / "sim.npz", sim=self.sim)

    @classmethod
    def load(cls, directory: Path) -> Self:
        return cls(sim=load_arrays(directory / "sim.npz")["sim"])


def fake_loader(class_name: str, directory: Path) -> Recommender:
    """Load the fake model whatever the manifest calls it."""
    return FakeModel.load(directory)


def publish(
    registry: Registry,
    *,
    models: tuple[str, ...] = ("hybrid", "viewed_with", "bought_together"),
    sim: NDArray[np.float32] | None = None,
    promote: bool = True,
    extra: dict[str, Any] | None = None,
) -> str:
    """Publish (and promote) a tiny version; return its name."""
    with registry.publish() as st:
        p = st.path
        save_json(p / "users.json", USERS)
        save_json(p / "items.json", ITEMS)
        save_json(p / "catalog.json", CATALOG)
        save_csr(p / "history.npz", sp.csr_matrix(HISTORY))
        save_csr(p / "purchases.npz", sp.csr_matrix(PURCHASES))
        for name in models:
            FakeModel(sim=similarity() if sim is None else sim).save(p / "models" / name)
        st.manifest = {
            "default_model": models[0],
            "models": {name: {"class": "fake"} for name in models},
            "as_of": 1_600_000_000_000_000,
            **(extra or {}),
        }
    if promote:
        registry.promote(st.version)
    return st.version

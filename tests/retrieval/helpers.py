"""Item vectors and ground truth shared by the retrieval tests."""

from __future__ import annotations

import numpy as np


def clustered(n_items: int, dim: int, n_queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and queries around shared cluster centres, item norms varying (as ALS factors do)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(n_items // 100, 5), dim))
    items = centres[rng.integers(0, len(centres), n_items)] + 0.5 * rng.normal(size=(n_items, dim))
    items *= rng.lognormal(0.0, 0.3, n_items)[:, None]
    queries = centres[rng.integers(0, len(centres), n_queries)] + 0.5 * rng.normal(
        size=(n_queries, dim)
    )
    return items.astype(np.float32), queries.astype(np.float32)


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The true top ``k`` per query, in float64 (ties in item order)."""
    scores = queries.astype(np.float64) @ items.astype(np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` that ``found``'s row holds."""
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )

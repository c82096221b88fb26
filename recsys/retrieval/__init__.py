"""Candidate retrieval: top-k items by inner product, exact or approximate (faiss)."""

from recsys.retrieval.ann import (
    AnnConfig,
    ExactIndex,
    FaissIndex,
    ItemIndex,
    build_index,
    load_index,
    save_index,
    search_excluding,
)

__all__ = [
    "AnnConfig",
    "ExactIndex",
    "FaissIndex",
    "ItemIndex",
    "build_index",
    "load_index",
    "save_index",
    "search_excluding",
]

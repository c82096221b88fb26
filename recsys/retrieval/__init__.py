"""Candidate retrieval: top-k items by inner product, exact or approximate (usearch, faiss)."""

from recsys.retrieval.ann import (
    AnnConfig,
    ExactIndex,
    FactorModel,
    FaissIndex,
    ItemIndex,
    KeptAnswers,
    SearchesIndex,
    UsearchIndex,
    build_index,
    load_index,
    save_index,
    search_excluding,
)

__all__ = [
    "AnnConfig",
    "ExactIndex",
    "FactorModel",
    "FaissIndex",
    "ItemIndex",
    "KeptAnswers",
    "SearchesIndex",
    "UsearchIndex",
    "build_index",
    "load_index",
    "save_index",
    "search_excluding",
]

"""Candidate retrieval: top-k items by inner product, exact or approximate (usearch, faiss).

:mod:`~recsys.retrieval.index` holds what every index answers; :mod:`~recsys.retrieval.exact`,
:mod:`~recsys.retrieval.usearch_index` and :mod:`~recsys.retrieval.faiss_index` are the
backends, :mod:`~recsys.retrieval.head` the exact head the graph backends merge, and
:mod:`~recsys.retrieval.ann` chooses, builds, saves and loads an index.
"""

from recsys.retrieval.ann import AnnConfig, build_index, load_index, save_index, search_excluding
from recsys.retrieval.exact import ExactIndex
from recsys.retrieval.faiss_index import FaissIndex
from recsys.retrieval.index import FactorModel, ItemIndex, KeptAnswers, SearchesIndex
from recsys.retrieval.usearch_index import UsearchIndex

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

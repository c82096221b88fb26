"""scikit-learn's fitted gradient boosting, predicted by LightGBM.

The hybrid's ranker is scikit-learn's ``HistGradientBoostingClassifier``. Its prediction of
a live request's ~120-150 candidate pairs took 1.5 ms of a 5.5 ms request at 10^6 items
(``benchmarks/RESULTS.md``, fifteenth session), about half of it outside the walk of the
trees: input checks, and a Python call with its own buffers per tree. LightGBM's predictor
walks the same kind of trees in one C++ call. :func:`lightgbm_booster` writes the fitted
trees in LightGBM's model format, so that predicting costs what LightGBM's does while the
model, its fit and its quality stay scikit-learn's.

The scores are the same to the bit: each split is the same feature, threshold (written with
``repr``, which reads back to the same float64) and side for a missing value (LightGBM's
``NaN`` missing type); the leaves carry scikit-learn's leaf values, the first tree's plus the
baseline, and LightGBM adds the trees in their order, as scikit-learn does from the baseline.
A model this cannot express (categorical splits, several trees per iteration) gets ``None``,
and its caller predicts with scikit-learn.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

#: LightGBM's ``decision_type`` of a numerical split whose missing values (``NaN``) go to the
#: side its bit 1 (default left) says: missing type ``NaN`` in bits 2-3.
_NAN_MISSING = 2 << 2
_DEFAULT_LEFT = 1 << 1


def lightgbm_booster(model: Any) -> Any | None:
    """A LightGBM ``Booster`` whose raw score equals ``model.decision_function``.

    Parameters
    ----------
    model
        A fitted scikit-learn ``HistGradientBoostingClassifier`` (binary) or
        ``HistGradientBoostingRegressor``.

    Returns
    -------
    lightgbm.Booster or None
        ``None`` when the model has categorical splits or more than one tree per iteration,
        or when LightGBM refuses the model text (logged).
    """
    try:
        predictors = model._predictors
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64).ravel()
        n_features = int(model.n_features_in_)
    except AttributeError:
        return None
    if len(baseline) != 1 or any(len(trees) != 1 for trees in predictors):
        return None
    blocks = []
    for t, (predictor,) in enumerate(predictors):
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            return None
        blocks.append(_tree_text(t, nodes, float(baseline[0]) if t == 0 else 0.0))
    header = [
        "tree",
        "version=v4",
        "num_class=1",
        "num_tree_per_iteration=1",
        "label_index=0",
        f"max_feature_idx={n_features - 1}",
        "objective=binary sigmoid:1",
        "feature_names=" + " ".join(f"Column_{j}" for j in range(n_features)),
        "feature_infos=" + " ".join(["none"] * n_features),
        "",
    ]
    text = "\n".join(header) + "\n" + "\n".join(blocks) + "\nend of trees\n"
    try:
        import lightgbm

        return lightgbm.Booster(model_str=text)
    except Exception as exc:
        log.warning("the ranker's trees could not be handed to LightGBM: %s", exc)
        return None


def _tree_text(t: int, nodes: NDArray[Any], add: float) -> str:
    """One tree in LightGBM's model text: internal nodes numbered from the root (0), leaves
    from 0, a child that is a leaf written as ``~leaf``."""
    is_leaf = nodes["is_leaf"].astype(bool)
    values = nodes["value"].astype(np.float64)
    if is_leaf[0]:  # a tree that never split: one leaf, no split arrays
        value = float(values[0]) + add
        return f"Tree={t}\nnum_leaves=1\nnum_cat=0\nleaf_value={value!r}\nshrinkage=1\n"
    internal = np.flatnonzero(~is_leaf)  # the root (node 0) first
    leaves = np.flatnonzero(is_leaf)
    code = np.empty(len(nodes), dtype=np.int64)
    code[internal] = np.arange(len(internal))
    code[leaves] = ~np.arange(len(leaves))
    split = nodes[internal]
    decision = _NAN_MISSING + _DEFAULT_LEFT * split["missing_go_to_left"].astype(np.int64)
    # the first tree's leaves carry the baseline: baseline + leaf is scikit-learn's first sum
    leaf_values = [float(v) + add for v in values[leaves]]

    def ints(a: NDArray[Any]) -> str:
        return " ".join(str(int(v)) for v in a)

    return "\n".join(
        [
            f"Tree={t}",
            f"num_leaves={len(leaves)}",
            "num_cat=0",
            f"split_feature={ints(split['feature_idx'])}",
            "split_gain=" + " ".join("0" for _ in internal),
            "threshold=" + " ".join(repr(float(v)) for v in split["num_threshold"]),
            f"decision_type={ints(decision)}",
            f"left_child={ints(code[split['left']])}",
            f"right_child={ints(code[split['right']])}",
            "leaf_value=" + " ".join(repr(v) for v in leaf_values),
            "leaf_weight=" + " ".join("0" for _ in leaves),
            f"leaf_count={ints(nodes['count'][leaves])}",
            "internal_value=" + " ".join("0" for _ in internal),
            "internal_weight=" + " ".join("0" for _ in internal),
            f"internal_count={ints(split['count'])}",
            "is_linear=0",
            "shrinkage=1",
            "",
        ]
    )

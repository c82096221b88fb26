"""Deterministic, sticky, stateless assignment of users to experiment variants.

A user's bucket is ``blake2b(f"{salt}:{user_id}")`` read as a number in ``[0, 1)``. The holdout
takes the bottom ``holdout_share`` of that interval; the rest is rescaled to ``[0, 1)`` and cut by
the variants' cumulative shares. Nothing is stored: the same salt and user id give the same
variant on every server, forever (stickiness), and experiments with different salts assign
independently of each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray

from recsys.experiments.definitions import HOLDOUT, Experiment

# 53 bits: the most a float64 holds exactly, so the bucket is uniform and never rounds up to 1.0.
_BITS = 53
_SCALE = float(2**_BITS)


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one user landed.

    Attributes
    ----------
    experiment
        The experiment's name.
    variant
        The variant name, :data:`~recsys.experiments.definitions.HOLDOUT`, or ``None`` when the
        experiment is not running at the time asked.
    """

    experiment: str
    variant: str | None

    @property
    def is_holdout(self) -> bool:
        """The user gets non-personal results."""
        return self.variant == HOLDOUT

    @property
    def running(self) -> bool:
        """The experiment was running when the assignment was asked for."""
        return self.variant is not None


def bucket(salt: str, user_id: str) -> float:
    """The user's position in ``[0, 1)`` for this salt (uniform over user ids)."""
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> (64 - _BITS)) / _SCALE


def buckets(salt: str, user_ids: Iterable[str]) -> NDArray[np.float64]:
    """:func:`bucket` for many users at once."""
    return np.fromiter((bucket(salt, u) for u in user_ids), dtype=np.float64)


def _choose(experiment: Experiment, u: NDArray[np.float64]) -> NDArray[np.object_]:
    names = np.array([*experiment.variant_names, HOLDOUT], dtype=object)
    h = experiment.holdout_share
    rescaled = (u - h) / (1.0 - h)
    # The last cut is left out so float error in the cumulative sum can never push a user past
    # the last variant.
    cuts = np.cumsum([v.share for v in experiment.variants])[:-1]
    idx = np.searchsorted(cuts, rescaled, side="right")
    idx = np.where(u < h, len(names) - 1, idx)
    return names[idx]


def assign(experiment: Experiment, user_id: str, now: datetime) -> Assignment:
    """The variant of ``user_id`` at time ``now``.

    Parameters
    ----------
    experiment
        The experiment definition.
    user_id
        The external user (or anonymous session) id.
    now
        Timezone-aware time of the request; outside ``[start, end)`` the user is in no variant.

    Returns
    -------
    Assignment
        ``variant`` is a variant name, ``"holdout"``, or ``None`` when not running.
    """
    if not experiment.is_running(now):
        return Assignment(experiment.name, None)
    u = np.array([bucket(experiment.salt, user_id)])
    return Assignment(experiment.name, str(_choose(experiment, u)[0]))


def assign_many(experiment: Experiment, user_ids: Iterable[str]) -> NDArray[np.object_]:
    """Variant names (or ``"holdout"``) for many users, ignoring the running window.

    Used by analysis and simulation, where the window has been checked already.
    """
    return _choose(experiment, buckets(experiment.salt, user_ids))

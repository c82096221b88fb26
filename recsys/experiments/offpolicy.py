"""Off-policy evaluation: how would a candidate ranking have done on traffic it never served?

**Logging.** When a list is served with exploration (:func:`explore`), each shown item carries
its *propensity*: the probability that the logging policy put that item at that position, given
the context. Two schemes give exact marginal propensities:

- :func:`epsilon_greedy` - with probability ``epsilon`` the whole slate is a uniformly random
  arrangement of the candidate pool (``m`` items), else the ranked list. The item at position
  ``j`` has propensity ``(1 - epsilon) * [it is the ranked item j] + epsilon / m``.
- :func:`randomised_top_n` - the first ``n`` positions are shuffled uniformly; an item there has
  propensity ``1 / n``, and the rest keep their place (propensity 1).

**Estimators (position-based, item-level).** Each shown slot ``i`` (an exposure and a position)
is a bandit round with logged item ``a_i``, propensity ``p_i`` and reward ``r_i`` (clicked or
bought). For a deterministic candidate that would put item ``c_i`` at that slot, the weight is
``w_i = [a_i == c_i] / p_i`` and

- IPS: ``V = mean(w_i r_i)``, with a CLT interval from the per-slot terms;
- self-normalised IPS: ``V = sum(w_i r_i) / sum(w_i)``, with a delta-method interval; a little
  biased, much lower variance.

``V`` is the candidate's expected reward *per slot* (clicks per list divided by slate length).

**Assumptions.** (1) A slot's reward depends on the context, the item and its position only, not
on the other items in the list (the position-based model). (2) The logged propensities are the
true probabilities the logging policy used. (3) Support: whatever the candidate would show at a
slot had a positive logged propensity there. IPS is unbiased under (1)-(3); where (3) fails the
candidate's unseen choices silently count as zero reward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

from recsys.errors import DataError
from recsys.experiments.analysis import CLICK_TYPES, EventLog, ExposureLog, attribute
from recsys.experiments.definitions import (
    EpsilonGreedy,
    Exploration,
    NoExploration,
    RandomisedTopN,
)


@dataclass(frozen=True, slots=True)
class ExploredList:
    """A list as served, with each shown item's propensity at its position."""

    items: tuple[str, ...]
    propensities: tuple[float, ...]
    explored: bool


def epsilon_greedy(
    ranked: Sequence[str],
    epsilon: float,
    rng: np.random.Generator,
    *,
    slate_size: int | None = None,
) -> ExploredList:
    """Serve the top of ``ranked``; with probability ``epsilon``, a random slate from it.

    Parameters
    ----------
    ranked
        The candidate pool in the model's order (``m`` distinct items).
    epsilon
        Exploration probability in ``[0, 1)``.
    rng
        Source of randomness (seed it in tests).
    slate_size
        Items to show (default: all of ``ranked``).
    """
    pool = list(ranked)
    m = len(pool)
    k = m if slate_size is None else slate_size
    if not 0.0 <= epsilon < 1.0:
        raise DataError(f"epsilon must be in [0, 1), got {epsilon!r}")
    if not 1 <= k <= m:
        raise DataError(f"slate_size must be in [1, {m}] for a pool of {m} items, got {k}")
    if len(set(pool)) != m:
        raise DataError("epsilon_greedy: the ranked list has duplicate items")
    explored = bool(rng.random() < epsilon)
    shown = [pool[i] for i in rng.permutation(m)[:k]] if explored else pool[:k]
    props = tuple((1.0 - epsilon) * (item == pool[j]) + epsilon / m for j, item in enumerate(shown))
    return ExploredList(tuple(shown), props, explored)


def randomised_top_n(ranked: Sequence[str], top_n: int, rng: np.random.Generator) -> ExploredList:
    """Shuffle the first ``top_n`` items of ``ranked`` uniformly; keep the rest in order."""
    if top_n < 1:
        raise DataError(f"top_n must be at least 1, got {top_n}")
    items = list(ranked)
    n = min(top_n, len(items))
    head = [items[i] for i in rng.permutation(n)]
    props = (1.0 / n,) * n + (1.0,) * (len(items) - n)
    return ExploredList(tuple(head + items[n:]), props, n > 1)


def explore(
    ranked: Sequence[str],
    exploration: Exploration,
    rng: np.random.Generator,
    *,
    slate_size: int | None = None,
) -> ExploredList:
    """Apply an experiment's exploration setting to a ranked list."""
    if isinstance(exploration, EpsilonGreedy):
        return epsilon_greedy(ranked, exploration.epsilon, rng, slate_size=slate_size)
    shown = list(ranked) if slate_size is None else list(ranked)[:slate_size]
    if isinstance(exploration, RandomisedTopN):
        return randomised_top_n(shown, exploration.top_n, rng)
    assert isinstance(exploration, NoExploration)
    return ExploredList(tuple(shown), (1.0,) * len(shown), False)


@dataclass(frozen=True, slots=True)
class OffPolicyEstimate:
    """An off-policy estimate of the candidate's reward per slot.

    Attributes
    ----------
    value
        The estimate.
    ci_low, ci_high
        Two-sided interval at level ``1 - alpha``.
    n
        Logged slots used.
    matched
        Slots where the logged item is the candidate's (non-zero weight).
    effective_sample_size
        ``(sum w)^2 / sum w^2``: how many on-policy slots the estimate is worth.
    """

    method: str
    value: float
    ci_low: float
    ci_high: float
    alpha: float
    n: int
    matched: int
    effective_sample_size: float

    def to_dict(self) -> dict[str, Any]:
        """Plain types, for JSON."""
        return asdict(self)


def _inputs(
    rewards: ArrayLike, weights: ArrayLike, alpha: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    r = np.asarray(rewards, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if r.ndim != 1 or r.shape != w.shape:
        raise DataError(f"rewards {r.shape} and weights {w.shape} must be 1-d of equal length")
    if len(r) < 2:
        raise DataError(f"off-policy estimate needs at least 2 logged slots, got {len(r)}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise DataError("rewards and weights must be finite, weights non-negative")
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be in (0, 1), got {alpha!r}")
    return r, w


def _ess(w: NDArray[np.float64]) -> float:
    sq = float(np.sum(w**2))
    return float(np.sum(w)) ** 2 / sq if sq > 0 else 0.0


def ips(rewards: ArrayLike, weights: ArrayLike, *, alpha: float = 0.05) -> OffPolicyEstimate:
    """Inverse-propensity-score estimate ``mean(w * r)`` with a CLT interval."""
    r, w = _inputs(rewards, weights, alpha)
    terms = w * r
    n = len(terms)
    value = float(terms.mean())
    half = float(sps.norm.ppf(1 - alpha / 2)) * float(terms.std(ddof=1)) / math.sqrt(n)
    return OffPolicyEstimate(
        "IPS", value, value - half, value + half, alpha, n, int(np.count_nonzero(w)), _ess(w)
    )


def snips(rewards: ArrayLike, weights: ArrayLike, *, alpha: float = 0.05) -> OffPolicyEstimate:
    """Self-normalised IPS ``sum(w r) / sum(w)`` with a delta-method interval."""
    r, w = _inputs(rewards, weights, alpha)
    n = len(r)
    total = float(w.sum())
    if total == 0.0:
        raise DataError("self-normalised IPS: no logged slot matches the candidate")
    value = float(np.sum(w * r)) / total
    # Delta method for a ratio of means: Var ~ mean(w^2 (r - V)^2) / (n mean(w)^2).
    var = float(np.mean(w**2 * (r - value) ** 2)) / (n * (total / n) ** 2)
    half = float(sps.norm.ppf(1 - alpha / 2)) * math.sqrt(var)
    return OffPolicyEstimate(
        "SNIPS", value, value - half, value + half, alpha, n, int(np.count_nonzero(w)), _ess(w)
    )


@dataclass(frozen=True)
class LoggedSlots:
    """Per-slot arrays for the estimators: reward, logged propensity, and weight."""

    rewards: NDArray[np.float64]
    propensities: NDArray[np.float64]
    weights: NDArray[np.float64]


def logged_slots(
    exposures: ExposureLog,
    events: EventLog,
    candidate: Mapping[str, Sequence[str]],
    *,
    window_hours: float = 24.0,
    reward_types: Sequence[str] = CLICK_TYPES,
) -> LoggedSlots:
    """Turn logs into per-slot rewards and weights for a candidate ranking.

    Parameters
    ----------
    exposures
        Logged lists with propensities (rows without propensities are an error).
    events
        Events; a slot's reward is 1 when an event of ``reward_types`` on its item is attributed
        to its exposure (see :func:`~recsys.experiments.analysis.attribute`).
    candidate
        For each ``recommendation_id``, the list the candidate would have shown.
    """
    owner = attribute(exposures, events, window_hours)
    wanted = np.isin(events.event_type, list(reward_types))
    hit = {
        (int(owner[j]), events.item_id[j]) for j in np.flatnonzero(wanted & (owner >= 0)).tolist()
    }
    rewards: list[float] = []
    props: list[float] = []
    weights: list[float] = []
    for i, (rid, items, p) in enumerate(
        zip(exposures.recommendation_id, exposures.items, exposures.propensities, strict=True)
    ):
        if p is None:
            raise DataError(f"exposure {rid!r} was logged without propensities")
        if rid not in candidate:
            raise DataError(f"candidate has no list for exposure {rid!r}")
        target = candidate[rid]
        for j, (item, pj) in enumerate(zip(items, p, strict=True)):
            rewards.append(1.0 if (i, item) in hit else 0.0)
            props.append(float(pj))
            weights.append((j < len(target) and target[j] == item) / float(pj))
    return LoggedSlots(
        np.asarray(rewards, dtype=np.float64),
        np.asarray(props, dtype=np.float64),
        np.asarray(weights, dtype=np.float64),
    )

"""Experiment definitions as validated data.

An experiment is written in TOML (or JSON) and validated into a frozen :class:`Experiment`::

    name = "als-vs-popular"
    salt = "2026-11-als"               # change the salt to reshuffle users for a new test
    start = 2026-11-01T00:00:00Z       # timezone-aware; a local time is rejected
    end = 2026-11-29T00:00:00Z
    holdout_share = 0.05               # taken first: 5% of all users get non-personal results
    attribution_window_hours = 24
    minimum_detectable_effect = 0.005  # absolute difference in the primary rate...
    baseline_rate = 0.03               # ...from this baseline: sets the planned sample size

    [[variants]]                       # shares split the non-holdout users; they sum to 1
    name = "control"
    share = 0.5
    model_version = "popular-2026-10-30"

    [[variants]]
    name = "als"
    share = 0.5
    model_version = "als-2026-10-31"
    ranking = "rules/als.toml"         # its own business rules (default: the server's)

    [exploration]
    kind = "epsilon_greedy"            # or "none", or "randomised_top_n" with top_n = 4
    epsilon = 0.05

A file may also hold several experiments as ``[[experiments]]`` tables. Every error names the
file, the experiment and the field.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, model_validator

from recsys.config import StrictModel, read_config_file, validate
from recsys.errors import ConfigError, NotFoundError

#: The pseudo-variant of users held out of the experiment (they get non-personal results).
HOLDOUT = "holdout"

#: Tolerance on the sum of variant shares (they are written as decimals in a file).
SHARE_TOLERANCE = 1e-9

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


class Variant(StrictModel):
    """One arm of an experiment.

    Parameters
    ----------
    name
        Unique within the experiment; ``"holdout"`` is reserved.
    share
        Fraction of the *non-holdout* users that get this variant.
    model_version
        The model version that serves this variant (``None``: the current default).
    ranking
        The business rules that rerank this variant's lists: ``None`` or ``"default"`` for the
        server's own rules, else a rules file, absolute or relative to the experiments file's
        folder (``"rules/strict"`` is tried as ``.toml``, then ``.json``). The file is read and
        validated when the experiments are loaded; see :mod:`recsys.experiments.registry`.
    """

    name: str = Field(pattern=_NAME)
    share: float = Field(gt=0.0, le=1.0)
    model_version: str | None = None
    ranking: str | None = None


class NoExploration(StrictModel):
    """Show the ranked list as it is (propensity 1 for every shown item)."""

    kind: Literal["none"] = "none"


class EpsilonGreedy(StrictModel):
    """With probability ``epsilon`` show a uniformly random slate from the candidate pool."""

    kind: Literal["epsilon_greedy"]
    epsilon: float = Field(gt=0.0, lt=1.0)


class RandomisedTopN(StrictModel):
    """Shuffle the first ``top_n`` positions uniformly at random; keep the rest in order."""

    kind: Literal["randomised_top_n"]
    top_n: int = Field(ge=2, le=100)


Exploration = Annotated[NoExploration | EpsilonGreedy | RandomisedTopN, Field(discriminator="kind")]

PrimaryMetric = Literal["ctr", "conversion", "revenue_per_user"]


class Experiment(StrictModel):
    """An A/B(/n) test: who gets what, for how long, and how many users it needs.

    Parameters
    ----------
    name
        Unique experiment name (as logged with each exposure).
    salt
        Mixed into the assignment hash; two experiments with different salts assign
        independently.
    start, end
        The running window, timezone-aware, ``start < end``.
    variants
        The arms; shares sum to 1. The first is the control unless the report is told otherwise.
    holdout_share
        Fraction of *all* users held out first; they get non-personal results.
    planned_sample_size_per_variant
        Users per variant the analysis waits for. Alternatively give
        ``minimum_detectable_effect`` and ``baseline_rate`` and it is computed for a
        two-proportion test at ``alpha`` and ``power``.
    attribution_window_hours
        How long after an exposure an event on a shown item is attributed to it.
    exploration
        How (whether) served lists are randomised to log propensities for off-policy evaluation.
    primary_metric
        The metric the decision rests on (the sample size is planned for it).
    """

    name: str = Field(pattern=_NAME)
    salt: str = Field(min_length=1, max_length=128)
    start: AwareDatetime
    end: AwareDatetime
    variants: tuple[Variant, ...] = Field(min_length=1)
    holdout_share: float = Field(default=0.0, ge=0.0, lt=1.0)
    planned_sample_size_per_variant: int | None = Field(default=None, ge=2)
    minimum_detectable_effect: float | None = Field(default=None, gt=0.0, lt=1.0)
    baseline_rate: float | None = Field(default=None, gt=0.0, lt=1.0)
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    power: float = Field(default=0.8, gt=0.5, lt=1.0)
    attribution_window_hours: float = Field(default=24.0, gt=0.0, le=24.0 * 90)
    exploration: Exploration = NoExploration()
    primary_metric: PrimaryMetric = "conversion"

    @model_validator(mode="after")
    def _check(self) -> Experiment:
        if self.start >= self.end:
            raise ValueError(
                f"'start' ({self.start.isoformat()}) must be before 'end' ({self.end.isoformat()})"
            )
        names = [v.name for v in self.variants]
        for i, n in enumerate(names):
            if n == HOLDOUT:
                raise ValueError(f"'variants.{i}.name': {HOLDOUT!r} is reserved for the holdout")
            if n in names[:i]:
                raise ValueError(f"'variants.{i}.name': {n!r} is used twice")
        total = sum(v.share for v in self.variants)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(
                f"'variants': shares sum to {total:g}, they must sum to 1 "
                "(the holdout is taken first, from all users)"
            )
        has_mde = self.minimum_detectable_effect is not None
        has_base = self.baseline_rate is not None
        if has_mde != has_base:
            raise ValueError(
                "'minimum_detectable_effect' and 'baseline_rate' must be given together"
            )
        if has_mde and self.planned_sample_size_per_variant is not None:
            raise ValueError(
                "give either 'planned_sample_size_per_variant' or "
                "'minimum_detectable_effect' with 'baseline_rate', not both"
            )
        if has_mde and (self.baseline_rate or 0) + (self.minimum_detectable_effect or 0) >= 1:
            raise ValueError("'baseline_rate' + 'minimum_detectable_effect' must be below 1")
        return self

    @property
    def variant_names(self) -> tuple[str, ...]:
        """Variant names in definition order (the holdout is not included)."""
        return tuple(v.name for v in self.variants)

    def expected_shares(self) -> dict[str, float]:
        """Share of *all* users expected in each variant, and in the holdout if it has any."""
        out = {v.name: (1.0 - self.holdout_share) * v.share for v in self.variants}
        if self.holdout_share > 0:
            out = {HOLDOUT: self.holdout_share, **out}
        return out

    def is_running(self, now: datetime) -> bool:
        """Whether ``now`` (timezone-aware) falls in ``[start, end)``."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ConfigError(f"experiment '{self.name}': 'now' must be timezone-aware")
        return self.start <= now < self.end

    def planned_sample_size(self) -> int | None:
        """Users per variant to wait for: given, or computed from the effect size; else ``None``."""
        if self.planned_sample_size_per_variant is not None:
            return self.planned_sample_size_per_variant
        if self.minimum_detectable_effect is None or self.baseline_rate is None:
            return None
        from recsys.experiments.stats import required_sample_size

        return required_sample_size(
            self.baseline_rate,
            self.minimum_detectable_effect,
            alpha=self.alpha,
            power=self.power,
        )


def experiment_from_dict(data: Any, source: str = "<experiment>") -> Experiment:
    """Validate one experiment given as a mapping.

    Raises
    ------
    ConfigError
        Naming ``source``, the experiment (when it has a name) and each bad field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: an experiment must be a table/object")
    name = data.get("name")
    where = f"{source}: experiment {name!r}" if isinstance(name, str) else source
    return validate(Experiment, data, where)


def load_experiments(path: str | Path) -> tuple[Experiment, ...]:
    """Read every experiment in a TOML/JSON file.

    The file holds either one experiment at the top level or a list of them under
    ``experiments``. Names must be unique across the file.
    """
    data = read_config_file(path)
    if "experiments" in data:
        extra = sorted(set(data) - {"experiments"})
        if extra:
            raise ConfigError(f"{path}: unknown key '{extra[0]}' next to 'experiments'")
        items = data["experiments"]
        if not isinstance(items, list) or not items:
            raise ConfigError(f"{path}: 'experiments' must be a non-empty list of tables")
        found = tuple(
            experiment_from_dict(item, f"{path}: experiments.{i}") for i, item in enumerate(items)
        )
    else:
        found = (experiment_from_dict(data, str(path)),)
    seen: set[str] = set()
    for exp in found:
        if exp.name in seen:
            raise ConfigError(f"{path}: experiment name {exp.name!r} is used twice")
        seen.add(exp.name)
    return found


def load_experiment(path: str | Path, name: str | None = None) -> Experiment:
    """Read one experiment from a file (by ``name`` when the file holds several).

    Raises
    ------
    NotFoundError
        When ``name`` is not in the file.
    """
    found = load_experiments(path)
    if name is None:
        if len(found) > 1:
            raise ConfigError(
                f"{path}: holds {len(found)} experiments; name one of "
                + ", ".join(repr(e.name) for e in found)
            )
        return found[0]
    for exp in found:
        if exp.name == name:
            return exp
    raise NotFoundError(
        f"{path}: no experiment named {name!r} (has: {', '.join(e.name for e in found)})"
    )

"""The training configuration: a frozen, strict model read from TOML.

Unknown keys are rejected by name (``training.toml: unknown key 'models.als.params.factor'``
is caught by the model-parameter check in :func:`check_model_params`, which also checks each
model parameter's value: ``training.toml: models.als.params.factors = -3: must be an integer
>= 1``). The default lives in
``training/configs/default.toml``, shipped as package data and read with
:mod:`importlib.resources`, so it works from an installed wheel as well as from a checkout.
"""

from __future__ import annotations

import inspect
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from recsys.config import StrictModel, load_config, validate
from recsys.data.interactions import InteractionConfig
from recsys.errors import ConfigError
from recsys.retrieval.ann import AnnConfig

#: Name of the packaged default configuration.
DEFAULT_CONFIG = "default.toml"


class ModelSpec(StrictModel):
    """One model of the run: whether it trains, and its constructor parameters."""

    model: str | None = Field(
        default=None,
        description="Registry name of the model class; defaults to the table's name "
        "(lets one class train twice, e.g. co-occurrence over baskets and over sessions).",
    )
    enabled: bool = Field(default=True, description="Train this model.")
    evaluate: bool = Field(
        default=True,
        description="Measure this model on the holdout too. The default model is always "
        "measured (the promotion gate needs it); for the others the metrics only fill the "
        "manifest's table, so an expensive one may be switched off to save a fit.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the model's constructor."
    )


class EvaluationConfig(StrictModel):
    """The time-based holdout every run is measured on."""

    enabled: bool = Field(default=True, description="Evaluate before publishing.")
    holdout_days: float = Field(
        default=30.0, gt=0, description="The last days before as_of are the test period."
    )
    k: int = Field(default=10, ge=1, le=1000, description="Length of the evaluated lists.")
    metric: str = Field(
        default="ndcg@10",
        pattern=r"^[a-z_]+@\d+$",
        description="The default model's metric the promotion gate compares: "
        "<name>@<k> or new_<name>@<k> (over items new to the customer).",
    )
    max_users: int = Field(
        default=5000,
        ge=0,
        description="Evaluate at most this many customers: above it a seeded sample of them "
        "(the same customers from run to run), every model on the same ones, each mean with a "
        "95% confidence interval in the manifest; 0 = every eligible customer.",
    )
    seed: int = Field(default=0, ge=0, lt=2**63, description="Seed of that sample.")

    @model_validator(mode="after")
    def _metric_is_measured(self) -> EvaluationConfig:
        from recsys.evaluation.metrics import RANKING_METRICS

        name, _, k = self.metric.partition("@")
        base = name.removeprefix("new_")
        if base not in RANKING_METRICS:
            raise ValueError(
                f"metric {self.metric!r}: unknown metric {base!r} "
                f"(known: {', '.join(RANKING_METRICS)})"
            )
        if int(k) != self.k:
            raise ValueError(f"metric {self.metric!r} is measured at k={self.k}, not @{k}")
        return self


class PromotionConfig(StrictModel):
    """When a new version may replace the current one."""

    max_regression: float = Field(
        default=0.02,
        ge=0,
        description="How much worse the gated metric may be than the current version's.",
    )
    mode: Literal["relative", "absolute"] = Field(
        default="relative",
        description="relative: a fraction of the current value (0.02 = 2%); "
        "absolute: metric points.",
    )


class PrecomputeConfig(StrictModel):
    """Which customers get a top list computed at training time (the rest are scored live)."""

    active_days: float = Field(
        default=60.0,
        ge=0,
        description="Only customers with an event in the last active_days before as_of; "
        "0 = every customer the version knows. Customers without a stored list are scored "
        "when they are asked for, as customers with new events always are.",
    )
    carry_on_warm_start: bool = Field(
        default=True,
        description="On `recsys train --warm-start`, a customer with no event since the "
        "current version keeps that version's stored list (from the model the warm start "
        "continues); only customers with new events are scored. false: every active customer "
        "is scored again, as in a full run.",
    )


class WarmStartConfig(StrictModel):
    """How ``recsys train --warm-start`` keeps a version chain honest."""

    full_every_days: float = Field(
        default=7.0,
        ge=0,
        description="A --warm-start run trains in full (relearning the hybrid's ranker and "
        "measuring the holdout) when the last full run behind the current version is older "
        "than this many days of data; 0 = never (a warm run always starts from the current "
        "version).",
    )


class TrainingConfig(StrictModel):
    """Everything ``recsys train`` does, as one validated object."""

    interactions: InteractionConfig = Field(default_factory=InteractionConfig)
    models: dict[str, ModelSpec] = Field(
        default_factory=lambda: {"popular": ModelSpec()},
        description="A table per model name.",
    )
    default_model: str = Field(default="popular", description="The model that serves.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    precompute: PrecomputeConfig = Field(default_factory=PrecomputeConfig)
    warm_start: WarmStartConfig = Field(default_factory=WarmStartConfig)
    ann: AnnConfig = Field(
        default_factory=AnnConfig,
        description="Approximate top-k index built for factor models (ALS) whose catalogue "
        "has at least ann.min_items items; saved in the version and used by serving.",
    )
    threads: int = Field(
        default=0,
        ge=0,
        description="BLAS/OpenMP threads while evaluating and fitting; 0 = every core "
        "(os.cpu_count()), whatever OPENBLAS_NUM_THREADS says (that one is for serving).",
    )
    huge_pages: bool = Field(
        default=False,
        description="Let numpy ask the kernel for transparent huge pages for its large arrays "
        "while training (numpy's own default); an explicit NUMPY_MADVISE_HUGEPAGE wins.",
    )

    @model_validator(mode="after")
    def _default_model_is_trained(self) -> TrainingConfig:
        spec = self.models.get(self.default_model)
        if spec is None:
            tables = ", ".join(f"[models.{name}]" for name in self.models) or "none"
            raise ValueError(
                f"default_model {self.default_model!r} has no [models.{self.default_model}] "
                f"table (the file has {tables}; default_model names the one that serves)"
            )
        if not spec.enabled:
            raise ValueError(f"default_model {self.default_model!r} is not enabled")
        return self

    def enabled_models(self) -> list[str]:
        """Names of the models to train, the default model last (it may build on the others)."""
        names = [n for n, s in self.models.items() if s.enabled and n != self.default_model]
        return [*names, self.default_model]

    def evaluated_models(self) -> list[str]:
        """The enabled models measured on the holdout: the default model and every model
        whose ``evaluate`` is true, in :meth:`enabled_models` order."""
        return [
            n for n in self.enabled_models() if n == self.default_model or self.models[n].evaluate
        ]


def load_training_config(path: str | Path | None = None) -> TrainingConfig:
    """Read a training config from ``path``, or the packaged default when ``None``.

    Raises
    ------
    ConfigError
        The file is missing or invalid; the message names the file and the bad key.
    """
    if path is not None:
        return load_config(TrainingConfig, path)
    import tomllib

    try:
        text = (resources.files("training") / "configs" / DEFAULT_CONFIG).read_text("utf-8")
    except (OSError, TypeError):
        # An editable install made before training/ was a regular package exposes it as a
        # namespace whose resources cannot be read; the file beside this module is the same.
        text = (Path(__file__).parent / "configs" / DEFAULT_CONFIG).read_text("utf-8")
    return validate(TrainingConfig, tomllib.loads(text), f"training/configs/{DEFAULT_CONFIG}")


def check_model_params(config: TrainingConfig, classes: dict[str, type], source: str) -> None:
    """Check every configured model's name, parameter names and parameter values, without data.

    Runs before a training run reads anything, so a typo or a bad value fails in a second with
    the file and the key named, not minutes later at the model's fit (or as a "skipped"
    notice in the evaluation). Disabled models are checked too: enabling one should not
    reveal a mistake that was there all along. The values are checked by each class's
    :meth:`~recsys.models.base.Recommender.check_params` (its ``parameter_constraints``).

    Parameters
    ----------
    config
        The validated config.
    classes
        Model name -> class (``recsys.models.MODELS``). A class without ``check_params``
        (a stand-in in a test) has only its parameter names checked.
    source
        Where the config came from, for the message.

    Raises
    ------
    ConfigError
        Naming ``models.<name>`` or ``models.<name>.params.<param>``; for a bad value, one
        line with the file, the key, the value and what is allowed
        (``x.toml: models.als.params.factors = -3: must be an integer >= 1``).
    """
    from recsys.models.base import InvalidParameterError

    for name, spec in config.models.items():
        cls = classes.get(spec.model or name)
        if cls is None:
            known = ", ".join(sorted(classes)) or "none"
            key = f"models.{name}.model" if spec.model else f"models.{name}"
            raise ConfigError(
                f"{source}: unknown model {spec.model or name!r} at '{key}' (known: {known})"
            )
        params = inspect.signature(cls).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            allowed = set(params)
            for key in spec.params:
                if key not in allowed:
                    raise ConfigError(
                        f"{source}: unknown key 'models.{name}.params.{key}' "
                        f"(parameters of {name}: {', '.join(sorted(allowed)) or 'none'})"
                    )
        check = getattr(cls, "check_params", None)
        if check is None:
            continue
        try:
            check(spec.params)
        except InvalidParameterError as exc:
            raise ConfigError(
                f"{source}: models.{name}.params.{exc.param} = {_shown(exc.value)}: {exc.allowed}"
            ) from None


def _shown(value: object) -> str:
    """``repr(value)``, cut to 80 characters: the message stays one readable line."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."

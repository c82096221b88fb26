"""Recommendation models behind one interface (:class:`recsys.models.base.Recommender`).

:data:`MODELS` maps each registry name (what configs, manifests and the command line say) to
its class; :func:`model_class` looks one up with an error that lists the known names. A model
module registers itself by adding one line below. Model modules must import
``recsys.models.base`` (or other model modules), never this package at import time, so the
registry can import them without a cycle. Each class checks its constructor arguments
without data (:meth:`~recsys.models.base.Recommender.check_params`, raising
:class:`~recsys.models.base.InvalidParameterError`), which training runs for every configured
model before it reads anything. Heavy libraries (implicit) are imported inside
``fit``, so importing the registry stays cheap.
"""

from __future__ import annotations

from recsys.errors import ConfigError
from recsys.models.als import ALSModel
from recsys.models.base import InvalidParameterError, Recommender
from recsys.models.baselines import RepeatModel
from recsys.models.bpr import BPRModel
from recsys.models.buy_again import BuyAgainModel
from recsys.models.content import ContentModel
from recsys.models.cooccurrence import CooccurrenceModel
from recsys.models.ease import EASEModel
from recsys.models.hybrid import HybridModel
from recsys.models.popular import PopularModel, TrendingModel

#: Registry name -> model class.
MODELS: dict[str, type[Recommender]] = {
    cls.name: cls
    for cls in (
        ALSModel,
        BPRModel,
        EASEModel,
        CooccurrenceModel,
        PopularModel,
        TrendingModel,
        BuyAgainModel,
        ContentModel,
        RepeatModel,
        HybridModel,
    )
}


def model_class(name: str) -> type[Recommender]:
    """The model class registered as ``name``.

    Raises
    ------
    ConfigError
        For an unknown name; the message lists the known ones.
    """
    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"model: unknown model {name!r}; known models: {known}") from None


__all__ = [
    "MODELS",
    "ALSModel",
    "BPRModel",
    "BuyAgainModel",
    "ContentModel",
    "CooccurrenceModel",
    "EASEModel",
    "HybridModel",
    "InvalidParameterError",
    "PopularModel",
    "Recommender",
    "RepeatModel",
    "TrendingModel",
    "model_class",
]

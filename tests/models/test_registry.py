"""The model registry."""

from __future__ import annotations

import pytest

from recsys.errors import ConfigError
from recsys.models import MODELS, model_class
from recsys.models.als import ALSModel


def test_lookup_by_name() -> None:
    assert model_class("als") is ALSModel
    assert {"als", "bpr", "ease", "cooccurrence", "popular", "trending", "buy_again"} <= set(MODELS)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"'alss'.*als.*popular") as info:
        model_class("alss")
    assert "ease" in str(info.value)

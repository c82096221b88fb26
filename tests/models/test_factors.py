"""What ALS and BPR share (:class:`recsys.models.factors.FactorRecommender`): artifacts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.data.interactions import TrainingData
from recsys.errors import ArtifactError


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_a_factor_model_saves_its_factors_under_the_usual_names(
    name: str, tiny_data: TrainingData, tmp_path: Path
) -> None:
    from recsys.models import model_class
    from recsys.models.base import load_arrays

    cls = model_class(name)
    model = cls.contract_factory().fit(tiny_data)  # type: ignore[attr-defined]
    model.save(tmp_path / name)
    arrays = load_arrays(tmp_path / name / "factors.npz")
    assert sorted(arrays) == ["item_factors", "user_factors"]
    np.testing.assert_array_equal(arrays["user_factors"], model.user_factors_)
    np.testing.assert_array_equal(arrays["item_factors"], model.item_factors_)


@pytest.mark.parametrize("name", ["als", "bpr"])
def test_a_factor_model_with_foreign_params_is_an_artifact_error(
    name: str, tiny_data: TrainingData, tmp_path: Path
) -> None:
    from recsys.models import model_class

    cls = model_class(name)
    cls.contract_factory().fit(tiny_data).save(tmp_path)  # type: ignore[attr-defined]
    (tmp_path / "params.json").write_text('{"neighbours": 5}')
    with pytest.raises(ArtifactError, match=rf"not an? {name.upper()} model: .*neighbours"):
        cls.load(tmp_path)

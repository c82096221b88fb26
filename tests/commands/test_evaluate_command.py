"""``recsys evaluate --training-config``: the models as ``recsys train`` builds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recsys.cli import main
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from recsys.store import open_store
from tests.models.test_hybrid import synthetic_rows

CONFIG = (
    'default_model = "hybrid"\nthreads = 1\n'
    "[evaluation]\nholdout_days = 30\n"
    "[interactions]\nweights = { purchase = 4.0 }\n"
    "[models.popular]\n"
    "[models.hybrid]\nparams = { factors = 8, max_iter = 30 }\n"
)


def test_it_measures_what_training_measured_for_the_served_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its hybrid was the class defaults' (on the sample 0.185 NDCG@10 against the 0.204 that
    training recorded for the served hybrid): with the training config, the same cut gives
    the metrics training recorded for one of the hybrid's orders, to the last digit
    (training scores each order its test chooses among, and records the one its final fit
    serves; a fit at the cut tests the order on the data before it)."""
    store = open_store(load_settings(Settings))
    store.insert_events(synthetic_rows(seed=5))
    store.close()
    config = tmp_path / "train.toml"
    config.write_text(CONFIG, encoding="utf-8")
    assert main(["train", "--config", str(config)]) == 0
    registry = Registry(load_settings(Settings).registry_path)
    manifest = registry.manifest(registry.current_version() or "")
    orders = manifest["evaluation"].get("orders", {}).get("hybrid", {}).get("others", [])
    trained = [manifest["metrics"]["hybrid"], *(o["metrics"] for o in orders)]
    cut = manifest["evaluation"]["cut"][:10]
    capsys.readouterr()
    argv = ["evaluate", "--training-config", str(config), "--models", "hybrid,popular"]
    assert main([*argv, "--cut", cut, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    measured = {m["name"]: m["all_items"] for m in result["models"]}
    got = (measured["hybrid"]["ndcg"], measured["hybrid"]["recall"])
    assert any(got == pytest.approx((m["ndcg@10"], m["recall@10"]), abs=1e-12) for m in trained), (
        got,
        trained,
    )
    assert main([*argv[:-1], "hybrid,nope"]) == 2
    assert "--models: 'nope' not in" in capsys.readouterr().err

"""The training pipeline end to end: store -> evaluated, published, gated model version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.typing import NDArray

import recsys.models
from recsys.cli import main
from recsys.data.interactions import TrainingData
from recsys.data.schema import MICROS_PER_DAY, CatalogItem, EventRow
from recsys.errors import ModelError
from recsys.models.base import Recommender, load_json, save_json, top_k
from recsys.registry import Registry
from recsys.settings import Settings, load_settings
from recsys.store import open_store

START = 1_700_000_000 * 1_000_000  # 2023-11-14, a fixed point: the data's time, not ours


class FixedModel(Recommender):
    """Tiny test model: ``good`` ranks by popularity, ``bad`` by unpopularity, ``fail`` refuses."""

    name: ClassVar[str] = "fixed"

    def __init__(self, *, quality: str = "good") -> None:
        self.quality = quality

    def fit(self, data: TrainingData) -> Self:
        if self.quality == "fail":
            raise ModelError("fixed: refuses this data on purpose")
        pop = np.asarray((data.interactions > 0).sum(axis=0)).ravel().astype(np.float32)
        self.scores_ = pop if self.quality == "good" else -pop
        return self

    def score(
        self, users: NDArray[np.intp], history: sp.csr_matrix, *, now: int | None = None
    ) -> NDArray[np.float32]:
        self._check_fitted("scores_")
        return np.tile(self.scores_, (len(users), 1))

    def save(self, directory: Path) -> None:
        save_json(
            directory / "fixed.json", {"quality": self.quality, "scores": self.scores_.tolist()}
        )

    @classmethod
    def load(cls, directory: Path) -> Self:
        state = load_json(directory / "fixed.json")
        model = cls(quality=state["quality"])
        model.scores_ = np.asarray(state["scores"], dtype=np.float32)
        return model


@pytest.fixture(autouse=True)
def _fixed_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(recsys.models.MODELS, "fixed", FixedModel)


def _events(
    rng: np.random.Generator, n_users: int = 60, n_items: int = 25, days: int = 120
) -> list[EventRow]:
    """Purchases skewed towards low item numbers (so popularity is a real signal) plus views."""
    rows: list[EventRow] = []
    weights = 1.0 / np.arange(1, n_items + 1)
    weights /= weights.sum()
    for u in range(n_users):
        for o in range(int(rng.integers(2, 6))):
            ts = START + int(rng.integers(0, days * MICROS_PER_DAY))
            for j, item in enumerate(
                rng.choice(n_items, size=int(rng.integers(1, 4)), p=weights, replace=False)
            ):
                rows.append(
                    EventRow(
                        f"e{u}-{o}-{j}",
                        f"u{u}",
                        None,
                        f"i{item}",
                        "purchase",
                        ts + j,
                        1.0,
                        2.5,
                        f"o{u}-{o}",
                        None,
                    )
                )
    return rows


@pytest.fixture
def filled_store(rng: np.random.Generator) -> Any:
    store = open_store(load_settings(Settings))
    store.insert_events(_events(rng))
    store.upsert_items(
        [CatalogItem("i0", title="Mug", category="Home > Mugs", price=3.0, margin=1.2)]
    )
    yield store
    store.close()


def _config(
    tmp_path: Path, quality: str = "good", extra: str = "", name: str = "train.toml"
) -> str:
    path = tmp_path / name
    path.write_text(
        'default_model = "fixed"\nthreads = 1\n'
        f'[models.fixed]\nparams = {{ quality = "{quality}" }}\n'
        "[models.popular]\n"
        '[models.broken]\nmodel = "fixed"\nparams = { quality = "fail" }\n'
        f"{extra}"
    )
    return str(path)


def _registry() -> Registry:
    return Registry(load_settings(Settings).registry_path)


def test_a_run_publishes_a_version_that_models_show_describes(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", _config(tmp_path)]) == 0
    out, err = capsys.readouterr()
    registry = _registry()
    version = registry.current_version()
    assert version is not None and f"version      {version}" in out
    assert "model 'broken' skipped: fixed: refuses this data on purpose" in err

    manifest = registry.verify(version)
    folder = registry.path(version)
    for name in (
        "manifest.json",
        "users.json",
        "items.json",
        "catalog.json",
        "history.npz",
        "purchases.npz",
    ):
        assert (folder / name).is_file(), name
    assert (folder / "models" / "fixed" / "fixed.json").is_file()
    assert (folder / "models" / "popular").is_dir()
    assert not (folder / "models" / "broken").exists()
    assert set(manifest["models"]) == {"fixed", "popular"}
    assert manifest["skipped_models"] == {"broken": "fixed: refuses this data on purpose"}
    assert manifest["default_model"] == "fixed"
    assert manifest["promotion"]["promoted"] is True
    stats = filled_store.stats()
    assert manifest["counts"]["events"] == stats.events
    assert manifest["counts"]["orders"] == stats.orders
    assert manifest["data_window"]["first_event"].startswith("2023-11-")
    assert 0.0 < manifest["metrics"]["fixed"]["ndcg@10"] <= 1.0
    assert set(manifest["libraries"]) >= {
        "python",
        "numpy",
        "scipy",
        "implicit",
        "lightgbm",
        "sklearn",
        "recsys",
    }
    assert manifest["platform"]["blas"] and manifest["platform"]["cores"] >= 1
    assert set(manifest["timings"]) >= {"read", "build", "evaluate", "fit"}

    items = json.loads((folder / "items.json").read_text())
    catalog = json.loads((folder / "catalog.json").read_text())
    assert [c["item_id"] for c in catalog] == items
    mug = catalog[items.index("i0")]
    assert mug == {
        "item_id": "i0",
        "title": "Mug",
        "category": "Home > Mugs",
        "price": 3.0,
        "in_stock": True,
        "margin": 1.2,
    }
    loaded = FixedModel.load(folder / "models" / "fixed")
    assert loaded.scores_.shape == (len(items),)

    assert main(["models", "show"]) == 0
    shown = capsys.readouterr().out
    assert f"version      {version}  (current)" in shown
    assert "data window  2023-11-" in shown
    assert "broken" in shown and "skipped" in shown
    assert "ndcg@10" in shown and "fixed" in shown
    assert f"platform     {manifest['platform']['cpu']}, " in shown
    assert manifest["platform"]["blas"][0] in shown
    assert main(["models", "list"]) == 0
    assert f"* {version}" in capsys.readouterr().out


def test_the_regression_gate_refuses_and_force_overrides(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _registry()
    assert main(["train", "--config", _config(tmp_path, "good")]) == 0
    good = registry.current_version()
    capsys.readouterr()

    assert main(["train", "--config", _config(tmp_path, "bad")]) == 2
    err = capsys.readouterr().err
    assert "published but not promoted" in err and "worse by more than 2.0%" in err
    assert registry.current_version() == good
    bad = registry.version_names()[0]
    assert bad != good and registry.manifest(bad)["promotion"]["promoted"] is False
    registry.verify(bad)  # kept, intact, just not serving

    assert main(["train", "--force", "--config", _config(tmp_path, "bad")]) == 0
    forced = registry.current_version()
    assert forced not in (good, bad)
    assert registry.manifest(forced)["promotion"]["reason"].startswith("forced:")
    assert main(["models", "rollback"]) == 0
    assert registry.current_version() == good


def test_a_fallback_does_not_replace_a_version_that_serves_the_default_model(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run whose default model could not be trained has no metric to compare: its fallback
    ("popular") must not replace the version serving the configured model unseen."""
    registry = _registry()
    assert main(["train", "--config", _config(tmp_path)]) == 0
    good = registry.current_version()
    capsys.readouterr()
    assert main(["train", "--config", _config(tmp_path, "fail")]) == 2
    err = capsys.readouterr().err
    assert (
        "the default model 'fixed' was not trained (fixed: refuses this data on purpose): "
        f"'popular' would replace current version {good}, which serves 'fixed' "
        "(--force promotes anyway)"
    ) in err
    assert registry.current_version() == good
    assert main(["train", "--force", "--config", _config(tmp_path, "fail")]) == 0
    forced = registry.current_version() or ""
    assert registry.manifest(forced)["default_model"] == "popular"
    # and once the fallback serves, the next run's fallback is compared as usual
    assert main(["train", "--config", _config(tmp_path, "fail")]) == 0


def test_a_run_that_measured_nothing_does_not_replace_a_measured_version(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Views kept coming while the purchase feed was broken: the as-of moved past every
    purchase, the evaluation found none after its cut, and the unmeasured run replaced the
    measured version with exit 0. It is refused (exit 2) unless forced; with the evaluation
    off in the config, no run measures and the gate promotes."""
    registry = _registry()
    assert main(["train", "--config", _config(tmp_path)]) == 0
    good = registry.current_version()
    capsys.readouterr()
    later = START + 200 * MICROS_PER_DAY
    filled_store.insert_events(
        [EventRow("late-view", "u1", None, "i1", "view", later, 1.0, None, None, None)]
    )
    assert main(["train", "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "this run measured no ndcg@10 (no purchase" in err
    assert f"current version {good} measured " in err and "--force promotes anyway" in err
    assert registry.current_version() == good
    assert main(["train", "--force", "--config", _config(tmp_path)]) == 0
    assert registry.current_version() != good
    assert main(["models", "rollback"]) == 0
    off = _config(tmp_path, extra="[evaluation]\nenabled = false\n", name="off.toml")
    assert main(["train", "--config", off]) == 0
    assert registry.current_version() != good


def test_weights_that_weigh_no_customer_event_are_refused(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A misspelt type weighs nothing: ``purchse`` dropped every purchase unseen, and with
    every type misspelt the run skipped each customer model as if the shop had only guests."""
    registry = _registry()
    typo = "[interactions]\nweights = { veiw = 1.0, purchse = 10.0 }\n"
    assert main(["train", "--config", _config(tmp_path, extra=typo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(
        "error: [interactions] weights (veiw, purchse) give none of the customers' "
    )
    assert "events a weight: their types are purchase " in err[-1]
    assert registry.current_version() is None
    filled_store.insert_events(
        [EventRow("v1", "u1", None, "i1", "view", START, 1.0, None, None, None)]
    )
    one = "[interactions]\nweights = { purchase = 10.0, veiw = 1.0 }\n"
    assert main(["train", "--config", _config(tmp_path, extra=one)]) == 0
    err_text = capsys.readouterr().err
    assert "notice: [interactions] weights: no customer event has the type 'veiw'" in err_text
    assert (
        "notice: [interactions] weights has no 'view': the customers' 1 view events weigh nothing"
    ) in err_text


def test_the_gate_says_when_the_current_version_had_other_numerics(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another CPU's BLAS kernels or another LightGBM move the metric by themselves: the
    gate's reason says so (without changing the decision); the same numerics say nothing."""
    import training.publish as publish

    registry = _registry()
    for _ in range(2):
        assert main(["train", "--config", _config(tmp_path)]) == 0
    same = registry.manifest(registry.current_version() or "")["promotion"]["reason"]
    assert "within" in same and "other numerics" not in same

    real = publish.library_versions()
    monkeypatch.setattr(
        publish, "library_versions", lambda extra=None: {**real, "lightgbm": "3.3.5"}
    )
    monkeypatch.setattr(publish, "blas_kernels", lambda: ["openblas 0.3.21 Haswell"])
    assert main(["train", "--config", _config(tmp_path)]) == 0
    reason = registry.manifest(registry.current_version() or "")["promotion"]["reason"]
    was = "; ".join(registry.manifest(registry.version_names()[1])["platform"]["blas"])
    assert f"lightgbm {real['lightgbm']} -> 3.3.5" in reason
    assert f"BLAS {was} -> openblas 0.3.21 Haswell" in reason
    assert reason.endswith("within 2.0%")


def test_no_promote_publishes_only(filled_store: Any, tmp_path: Path) -> None:
    assert main(["train", "--no-promote", "--config", _config(tmp_path)]) == 0
    registry = _registry()
    assert registry.current_version() is None
    (version,) = registry.version_names()
    assert main(["models", "promote", version]) == 0
    assert registry.current_version() == version


def test_as_of_uses_only_earlier_events(filled_store: Any, tmp_path: Path) -> None:
    assert main(["train", "--as-of", "2024-01-01", "--config", _config(tmp_path)]) == 0
    manifest = _registry().manifest(_registry().current_version() or "")
    assert manifest["as_of"].startswith("2024-01-01T00:00:00")
    assert manifest["data_window"]["last_event"] < "2024-01-01"
    assert manifest["counts"]["events"] < filled_store.count_events()


def test_a_failing_default_model_falls_back_to_popular_and_says_so(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", _config(tmp_path, "fail")]) == 0
    err = capsys.readouterr().err
    assert "the default model 'fixed' cannot be trained" in err
    assert "'popular' serves instead" in err
    registry = _registry()
    manifest = registry.manifest(registry.current_version() or "")
    assert manifest["default_model"] == "popular"
    assert manifest["default_fallback"] == {
        "configured": "fixed",
        "model": "popular",
        "reason": manifest["skipped_models"]["fixed"],
    }
    # the gate read the fallback's metric: the one model that serves
    assert manifest["metrics"]["popular"]["ndcg@10"] is not None


def test_the_fallback_is_found_by_its_kind_whatever_the_config_names_it(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config that names its popularity model otherwise still has a fallback; trending,
    the next kind, serves only when no popularity model trained."""
    config = tmp_path / "named.toml"
    config.write_text(
        'default_model = "fixed"\nthreads = 1\n[models.fixed]\nparams = { quality = "fail" }\n'
        '[models.now]\nmodel = "trending"\n[models.top]\nmodel = "popular"\n'
    )
    assert main(["train", "--config", str(config)]) == 0
    assert "'top' serves instead" in capsys.readouterr().err
    registry = _registry()
    manifest = registry.manifest(registry.current_version() or "")
    assert manifest["default_model"] == "top"
    assert manifest["default_fallback"]["model"] == "top"


def test_a_failing_default_model_without_a_fallback_publishes_nothing(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "nofallback.toml"
    config.write_text(
        'default_model = "fixed"\nthreads = 1\n[models.fixed]\nparams = { quality = "fail" }\n'
    )
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "the default model 'fixed' cannot be trained" in err and "no fallback" in err
    registry = _registry()
    assert registry.version_names() == []
    assert not list(registry.root.glob(".staging-*"))


def test_a_failure_while_writing_publishes_nothing(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_save(self: FixedModel, directory: Path) -> None:
        (directory / "half.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(FixedModel, "save", broken_save)
    assert main(["train", "--config", _config(tmp_path)]) == 1
    registry = _registry()
    assert registry.version_names() == []
    assert not list(registry.root.glob(".staging-*"))


def test_an_empty_store_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no events" in err and "recsys ingest" in err
    assert "Traceback" not in err


def test_an_unknown_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["train", "--config", _config(tmp_path, extra="[promotion]\nmax_regresion = 1\n")])
        == 2
    )
    assert "unknown key 'promotion.max_regresion'" in capsys.readouterr().err


def test_a_held_lock_stops_a_second_training(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import subprocess
    import sys
    import time

    root = load_settings(Settings).registry_path
    flag = tmp_path / "locked"
    code = (
        "import sys, time, pathlib; from recsys.registry import Registry\n"
        "with Registry(pathlib.Path(sys.argv[1])).lock():\n"
        "    pathlib.Path(sys.argv[2]).write_text('x'); time.sleep(30)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(root), str(flag)], env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 20
        while not flag.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert main(["train", "--config", _config(tmp_path)]) == 2
        assert (
            f"another training holds the registry lock (pid {holder.pid})"
            in capsys.readouterr().err
        )
    finally:
        holder.kill()
        holder.wait()
    assert _registry().version_names() == []


def test_models_commands_on_an_empty_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    assert "no model versions" in capsys.readouterr().out
    assert main(["models", "show"]) == 2
    assert "no current model version" in capsys.readouterr().err
    assert main(["models", "rollback"]) == 2
    assert main(["models", "show", "20200101T000000Z-000000"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_default_config_trains_end_to_end(
    filled_store: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    if "hybrid" not in recsys.models.MODELS:
        pytest.skip("the hybrid model is not registered in recsys.models.MODELS yet")
    assert main(["train"]) == 0
    err = capsys.readouterr().err
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    manifest = registry.verify(version)
    assert manifest["default_model"] == "hybrid"
    assert "hybrid" in manifest["models"]
    # no view events in this data: "often viewed with" is skipped, the rest trains
    assert "viewed_with" in manifest["skipped_models"]
    assert "viewed_with" in err
    assert {"popular", "als", "ease", "hybrid"} <= set(manifest["models"])
    # "bought together" says which normalisation its test chose, as its folder does
    choice = manifest["models"]["bought_together"]["fit_report"]["choice"]
    assert choice["reason"] in ("configured", "better") or choice["reason"].startswith("no test")
    saved = json.loads(
        (registry.path(version) / "models" / "bought_together" / "choice.json").read_text()
    )
    assert saved == choice


def test_training_recomputes_customer_segments(filled_store: Any, tmp_path: Path) -> None:
    from recsys.offers.store import read_segments

    assert read_segments(filled_store) is None
    assert main(["train", "--config", _config(tmp_path)]) == 0
    table = read_segments(filled_store)
    assert table is not None
    buyers = {u for u, t in zip(*_purchasers(filled_store), strict=True) if t == "purchase"}
    assert set(table.user_id) == buyers
    assert table.computed_at == int(filled_store.read_events().ts.max()) + 1


def _purchasers(store: Any) -> tuple[list[str], list[str]]:
    events = store.read_events()
    return list(events.user_id), list(events.event_type)


def test_each_model_is_fitted_once_per_stage_even_when_one_refuses(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits: dict[str, int] = {}
    real_fit = FixedModel.fit

    def counting_fit(self: FixedModel, data: TrainingData) -> FixedModel:
        fits[self.quality] = fits.get(self.quality, 0) + 1
        return real_fit(self, data)

    monkeypatch.setattr(FixedModel, "fit", counting_fit)
    assert main(["train", "--config", _config(tmp_path)]) == 0
    # evaluate + fit for the default model; the refusing one is tried once, then skipped
    assert fits == {"good": 2, "fail": 1}
    manifest = _registry().manifest(_registry().current_version() or "")
    assert set(manifest["metrics"]) == {"fixed", "popular"}
    assert "broken" in manifest["skipped_models"]


def test_a_model_may_be_trained_without_being_evaluated(filled_store: Any, tmp_path: Path) -> None:
    config = _config(tmp_path, extra="[models.second]\nmodel = 'fixed'\nevaluate = false\n")
    assert main(["train", "--config", config]) == 0
    manifest = _registry().manifest(_registry().current_version() or "")
    assert "second" in manifest["models"]
    assert "second" not in manifest["metrics"]
    assert manifest["evaluation"]["not_evaluated"] == ["second"]
    # the default model is measured whatever its own flag says: the gate needs it
    again = Path(_config(tmp_path, name="again.toml"))
    again.write_text(
        again.read_text().replace("[models.fixed]\n", "[models.fixed]\nevaluate = false\n")
    )
    assert main(["train", "--config", str(again)]) == 0
    manifest = _registry().manifest(_registry().version_names()[0])
    assert "fixed" in manifest["metrics"]


def test_threads_zero_gives_blas_every_core_while_fitting(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from threadpoolctl import threadpool_info, threadpool_limits

    seen: list[int] = []
    real_fit = FixedModel.fit

    def recording_fit(self: FixedModel, data: TrainingData) -> FixedModel:
        seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real_fit(self, data)

    monkeypatch.setattr(FixedModel, "fit", recording_fit)
    config = Path(_config(tmp_path))
    config.write_text(config.read_text().replace("threads = 1", "threads = 0"))
    with threadpool_limits(1, "blas"):
        assert main(["train", "--config", str(config)]) == 0
    assert seen and set(seen) == {os.cpu_count()}


# -- approximate top-k index ([ann]) ---------------------------------------------------------------


def _als_config(tmp_path: Path, ann: str) -> str:
    path = tmp_path / "als.toml"
    path.write_text(
        'default_model = "als"\nthreads = 1\n'
        "[evaluation]\nenabled = false\n"
        # every customer's list stored: the tests compare each with exact scoring
        "[precompute]\nactive_days = 0\n"
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
        f"[ann]\n{ann}\n"
    )
    return str(path)


def _names(lists: list[Any]) -> list[list[str]]:
    return [[r.item_id for r in got.items] for got in lists]


def test_a_factor_model_over_min_items_ships_an_index_that_serving_searches(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.engine import Engine
    from recsys.registry import sha256_file
    from recsys.retrieval import UsearchIndex

    # every item in the exact head: the lists equal exact scoring whatever the graph (a graph
    # of 25 items with m = 8 can leave an item unreachable: it did in 1 run of 5)
    config = _als_config(tmp_path, "min_items = 10\nm = 8\nef_search = 64\nexact_head = 25")
    at_training: list[int] = []
    original = UsearchIndex.search

    def spy(self: UsearchIndex, queries: Any, k: int) -> Any:
        at_training.append(k)
        return original(self, queries, k)

    with monkeypatch.context() as patch:
        patch.setattr(UsearchIndex, "search", spy)
        assert main(["train", "--config", config]) == 0
    assert at_training  # the precomputed lists came from the index, as serving answers
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    manifest = registry.verify(version)
    folder = registry.path(version)
    entry = manifest["ann"]["als"]
    assert entry["file"] == "index/als.usearch"
    assert manifest["files"]["index/als.usearch"] == sha256_file(folder / "index/als.usearch")
    assert entry["n_items"] == manifest["counts"]["items"] and entry["dim"] == 8
    assert entry["params"]["type"] == "usearch HNSW" and entry["params"]["exact_head"] == 25

    engine = Engine.load(folder, registry)
    index = engine.indexes["als"]
    assert isinstance(index, UsearchIndex) and index.exact_head == 25
    exact = Engine.load(folder, registry)
    exact.indexes = {}  # the same version scored over every item
    assert exact.precomputed is not None
    with_index = exact.precomputed.items.copy()
    for u in range(with_index.shape[0]):
        top, _ = top_k(exact.models["als"].score(np.array([u]), exact.history[u]), 5)
        assert with_index[u, :5].tolist() == top[0].tolist()
    calls: list[int] = []
    search = index.search

    def counted(queries: Any, k: int) -> Any:
        calls.append(k)
        return search(queries, k)

    monkeypatch.setattr(index, "search", counted)
    users = [f"u{u}" for u in range(60)] + ["nobody"]
    served = engine.recommend_batch(users, 5)
    assert calls and min(calls) >= 5  # fetched more than k, from the index
    assert _names(served) == _names(exact.recommend_batch(users, 5))
    assert served[-1].fallback == "popular"
    assert any(got.fallback is None and len(got.items) == 5 for got in served)


def test_the_hybrid_ships_an_index_of_its_als_generator_that_serving_hands_it(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.engine import Engine
    from recsys.models import features, generator_scores
    from recsys.retrieval import UsearchIndex

    # the sparse candidate path (the one that searches the index) on this small catalogue
    monkeypatch.setattr(features, "SPARSE_ABOVE_ITEMS", 0)
    path = tmp_path / "hybrid.toml"
    path.write_text(
        'default_model = "hybrid"\nthreads = 1\n'
        "[evaluation]\nenabled = false\n"
        "[precompute]\nactive_days = 0\n"
        "[models.hybrid]\nparams = { factors = 8, max_iter = 20 }\n"
        "[models.als]\nparams = { factors = 8, iterations = 5 }\n"
        "[ann]\nmin_items = 10\nm = 8\nef_search = 64\n"
    )
    searched: list[int] = []
    original = UsearchIndex.search

    def spy(self: UsearchIndex, queries: Any, k: int, keys: Any = None) -> Any:
        searched.append(len(queries))
        return original(self, queries, k, keys)

    graph: list[int] = []
    graph_search = UsearchIndex._search

    def spy_graph(self: UsearchIndex, queries: Any, k: int) -> Any:
        graph.append(len(queries))
        return graph_search(self, queries, k)

    with monkeypatch.context() as patch:
        patch.setattr(UsearchIndex, "search", spy)
        patch.setattr(UsearchIndex, "_search", spy_graph)
        # blocks of 10 customers: each block reads its own customers' kept answers
        patch.setattr(generator_scores, "ALS_BLOCK_BYTES", 4 * 25 * 10)
        assert main(["train", "--config", str(path)]) == 0
    assert searched  # the stored lists' ALS candidates came from the index
    # the graph was searched once, for the answers kept (every customer, one batch): the
    # stored lists read them
    assert graph == [60]
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    manifest = registry.verify(version)
    folder = registry.path(version)
    assert manifest["ann"]["hybrid"]["file"] == "index/hybrid.usearch"
    assert manifest["ann"]["hybrid"]["dim"] == 8
    # the index's answers to every stored customer (active_days = 0), kept beside it
    answers = manifest["ann"]["hybrid"]["answers"]
    assert answers["file"] == "index/hybrid.answers.npz" and answers["file"] in manifest["files"]
    assert answers["users"] == 60 and answers["k"] == 25  # n_als 50, 25 items
    # ALS is trained too, but serving searches only the served model's index: none for it
    assert "als" in manifest["models"] and set(manifest["ann"]) == {"hybrid"}

    engine = Engine.load(folder, registry)
    hybrid = engine.models["hybrid"]
    assert isinstance(hybrid.als_index_, UsearchIndex)  # type: ignore[attr-defined]
    assert "hybrid" not in engine.indexes  # the model searches it, not the engine
    searched.clear()
    monkeypatch.setattr(UsearchIndex, "search", spy)
    users = [f"u{u}" for u in range(60)]
    # live: every customer scored now (an event since the version), not read from the store
    rows = engine.history[np.arange(60)]
    served = engine.models["hybrid"].recommend(np.arange(60), rows, 5)[0]
    assert searched
    exact = Engine.load(folder, registry)
    exact.models["hybrid"].use_index(None)  # type: ignore[attr-defined]
    # 25 items: an HNSW search visits them all, so the candidates equal brute force's
    assert np.array_equal(served, exact.models["hybrid"].recommend(np.arange(60), rows, 5)[0])
    assert _names(engine.recommend_batch(users, 5)) == _names(exact.recommend_batch(users, 5))
    # a customer asking again (the next page they browse) gets the search the index remembered
    inner: list[int] = []
    original_inner = UsearchIndex._search

    def spy_inner(self: UsearchIndex, queries: Any, k: int) -> Any:
        inner.append(len(queries))
        return original_inner(self, queries, k)

    monkeypatch.setattr(UsearchIndex, "_search", spy_inner)
    # a known customer's first live request reads the answer training kept: no search
    first = hybrid.recommend(np.array([3]), rows[3], 5)[0]
    assert inner == [] and np.array_equal(first[0], served[3])
    # the same as searching (the kept answers dropped)
    hybrid.als_index_.use_answers(None)  # type: ignore[attr-defined]
    searched_now = hybrid.recommend(np.array([3]), rows[3], 5)[0]
    assert inner == [1] and np.array_equal(searched_now, first)
    # a customer the version does not know is folded in and searched, once: asking again
    # (the next page they browse) gets the search the index remembered
    inner.clear()
    guest = hybrid.recommend(np.array([-1]), rows[3], 5)[0]
    again = hybrid.recommend(np.array([-1]), rows[3], 5)[0]
    assert inner == [1] and np.array_equal(guest, again)


def test_a_tampered_index_is_refused_and_the_old_version_keeps_serving(
    filled_store: Any, tmp_path: Path
) -> None:
    from recsys.engine import Engine
    from recsys.errors import ArtifactError

    config = _als_config(tmp_path, "min_items = 10\nm = 8")
    assert main(["train", "--config", config]) == 0
    registry = _registry()
    good = registry.current_version()
    assert good is not None
    assert main(["train", "--config", config, "--no-promote"]) == 0
    bad = registry.version_names()[0]
    assert bad != good and registry.current_version() == good
    path = registry.path(bad) / "index" / "als.usearch"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))

    with pytest.raises(ArtifactError, match=r"index/als\.usearch"):
        Engine.load(registry.path(bad), registry)
    with pytest.raises(ArtifactError, match=r"index/als\.usearch"):
        registry.promote(bad)
    assert registry.current_version() == good
    assert Engine.load(registry.path(good), registry).indexes  # the old one still loads

    # an index the manifest names but does not hash is never read (no path out of the folder)
    manifest_path = registry.path(good) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["ann"]["als"]["file"] = "../elsewhere.faiss"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="not among the manifest's files"):
        Engine.load(registry.path(good), registry)


def test_below_min_items_no_index_is_built_and_scoring_is_exact(
    filled_store: Any, tmp_path: Path
) -> None:
    from recsys.engine import Engine

    assert main(["train", "--config", _als_config(tmp_path, "min_items = 1000")]) == 0
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    manifest = registry.verify(version)
    assert "ann" not in manifest
    assert not (registry.path(version) / "index").exists()
    assert not any(f.startswith("index/") for f in manifest["files"])
    assert manifest["training_config"]["ann"]["min_items"] == 1000
    assert Engine.load(registry.path(version), registry).indexes == {}


def test_a_bad_ann_setting_is_named(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--config", _als_config(tmp_path, "min_items = 0")]) == 2
    assert "ann.min_items" in capsys.readouterr().err
    assert main(["train", "--config", _als_config(tmp_path, "min_item = 10")]) == 2
    assert "ann.min_item" in capsys.readouterr().err


def test_a_bpr_default_model_gets_an_index_that_serves_the_exact_lists(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.engine import Engine
    from recsys.retrieval import FaissIndex

    path = tmp_path / "bpr.toml"
    path.write_text(
        'default_model = "bpr"\nthreads = 1\n'
        "[evaluation]\nenabled = false\n"
        "[models.bpr]\nparams = { factors = 8, iterations = 20 }\n"
        '[ann]\nkind = "hnsw"\nm = 8\nef_search = 64\n'
    )
    assert main(["train", "--config", str(path)]) == 0
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    manifest = registry.verify(version)
    entry = manifest["ann"]["bpr"]
    assert entry["file"] == "index/bpr.faiss"
    # implicit's BPR adds an item-bias column: the index holds it like any other factor
    assert entry["n_items"] == manifest["counts"]["items"] and entry["dim"] == 9

    folder = registry.path(version)
    engine = Engine.load(folder, registry)
    index = engine.indexes["bpr"]
    assert isinstance(index, FaissIndex)
    calls: list[int] = []
    search = index.search

    def counted(queries: Any, k: int) -> Any:
        calls.append(k)
        return search(queries, k)

    monkeypatch.setattr(index, "search", counted)
    exact = Engine.load(folder, registry)
    exact.indexes = {}  # the same version scored over every item
    exact.precomputed = None
    users = [f"u{u}" for u in range(60)] + ["nobody"]
    served = engine.recommend_batch(users, 5)
    assert calls  # the lists came from the index
    # 25 items: an HNSW search visits them all, so the lists equal the exact ones
    assert _names(served) == _names(exact.recommend_batch(users, 5))
    # BPR cannot fold in an unknown customer: a NaN query vector, the popular fallback
    assert served[-1].fallback == "popular"
    assert sum(got.fallback is None and len(got.items) == 5 for got in served) == 60


def _lists(registry: Registry) -> Any:
    from recsys.engine import Engine

    return Engine.load(registry.path(registry.current_version() or ""), registry)


def test_only_recently_active_customers_get_a_stored_list_and_the_others_are_scored_live(
    filled_store: Any, tmp_path: Path
) -> None:
    config = _config(tmp_path, extra="[precompute]\nactive_days = 20\n")
    assert main(["train", "--config", config]) == 0
    registry = _registry()
    manifest = registry.manifest(registry.current_version() or "")
    events = filled_store.read_events()
    since = int(events.ts.max()) - 20 * MICROS_PER_DAY
    active = set(events.user_id[events.ts >= since].astype(str).tolist())
    everyone = set(events.user_id.astype(str).tolist())
    assert 0 < len(active) < len(everyone)  # the window splits this shop
    assert manifest["precomputed"] == {
        "users": len(active),
        "of": len(everyone),
        "active_days": 20.0,
    }

    engine = _lists(registry)
    pre = engine.precomputed
    assert pre is not None
    stored = {engine.users.id(u) for u in range(len(engine.users)) if (pre.items[u] >= 0).any()}
    assert stored == active
    users = sorted(everyone)
    served = [engine.recommend(u, 5) for u in users]
    assert all(r.fallback is None for r in served)  # every customer gets a personal list
    engine.precomputed = None
    live = [engine.recommend(u, 5) for u in users]
    assert [[i.item_id for i in r.items] for r in served] == [
        [i.item_id for i in r.items] for r in live
    ]
    assert [[i.item_id for i in r.items] for r in engine.recommend_batch(users, 5)] == [
        [i.item_id for i in r.items] for r in live
    ]


def test_active_days_zero_stores_every_customers_list(filled_store: Any, tmp_path: Path) -> None:
    assert (
        main(["train", "--config", _config(tmp_path, extra="[precompute]\nactive_days = 0\n")]) == 0
    )
    registry = _registry()
    manifest = registry.manifest(registry.current_version() or "")
    n = manifest["counts"]["users"]
    assert manifest["precomputed"] == {"users": n, "of": n, "active_days": 0.0}
    pre = _lists(registry).precomputed
    assert pre is not None and bool((np.asarray(pre.items) >= 0).any(axis=1).all())


def test_a_large_shop_evaluates_a_seeded_sample_with_confidence_intervals(
    filled_store: Any, tmp_path: Path
) -> None:
    def evaluation(max_users: int, name: str) -> dict[str, Any]:
        config = _config(tmp_path, extra=f"[evaluation]\nmax_users = {max_users}\n", name=name)
        assert main(["train", "--config", config, "--no-promote"]) == 0
        registry = _registry()
        newest = max(registry.version_names())
        return dict(registry.manifest(newest))

    full = evaluation(0, "full.toml")
    sampled = evaluation(10, "sampled.toml")
    eligible = full["evaluation"]["users"]
    assert eligible > 10 and "sample" not in full["evaluation"]
    assert full["evaluation"]["users_eligible"] == eligible
    assert sampled["evaluation"]["users"] == 10
    assert sampled["evaluation"]["users_eligible"] == eligible
    assert sampled["evaluation"]["sample"] == {"max_users": 10, "seed": 0}
    for manifest in (full, sampled):
        for model, values in manifest["metrics"].items():
            lo, hi = manifest["evaluation"]["ci95"][model]["ndcg@10"]
            assert lo <= values["ndcg@10"] <= hi
    # a tenth of the customers: the interval is wider
    width = {
        name: m["evaluation"]["ci95"]["fixed"]["ndcg@10"][1]
        - m["evaluation"]["ci95"]["fixed"]["ndcg@10"][0]
        for name, m in (("full", full), ("sampled", sampled))
    }
    assert width["sampled"] > width["full"]
    assert set(full["cpu_seconds"]) >= {"read", "build", "evaluate", "fit"}


def test_a_run_reads_the_events_once_and_records_their_fingerprint(
    filled_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recsys.store.base import EventStore
    from training.config import load_training_config
    from training.pipeline import FINGERPRINT_KEY, data_fingerprint

    reads: list[int | None] = []
    read = EventStore.read_events

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs.get("until"))
        return read(self, *args, **kwargs)

    monkeypatch.setattr(EventStore, "read_events", counted)
    config = _config(tmp_path)
    assert main(["train", "--as-of", "2024-01-01", "--config", config]) == 0
    assert len(reads) == 1
    monkeypatch.setattr(EventStore, "read_events", read)
    version = _registry().current_version() or ""
    as_of = 1_704_067_200 * 1_000_000
    # the digest the pipeline recorded is the one of the store's data (the formula --if-changed
    # has always compared; a version trained before this change still matches)
    expected = data_fingerprint(filled_store, load_training_config(config), as_of)
    assert _registry().manifest(version)[FINGERPRINT_KEY] == expected
    # and a change of the data changes it
    filled_store.insert_events(
        [EventRow("late", "u1", None, "i3", "purchase", START + 1, 1.0, 2.5, "o-late", None)]
    )
    assert data_fingerprint(filled_store, load_training_config(config), as_of) != expected


def test_the_catalogue_rows_changed_since_the_version_give_the_whole_live_catalogue(
    filled_store: Any, tmp_path: Path
) -> None:
    """A server holds only the catalogue rows changed after the version read its catalogue;
    laid over the version, they give what every row laid over it gives (stock, price,
    margin, category, new items), retirements before and after training included."""
    from recsys.engine import Engine
    from recsys.live import LiveState

    store = filled_store
    store.upsert_items(
        [
            CatalogItem(f"i{j}", category=f"C{j % 3}", price=1.0 + j, margin=0.5, in_stock=j != 5)
            for j in range(1, 8)
        ]
    )
    store.retire_item("i3")  # sold before (it has events), retired before training
    store.retire_item("i6")
    path = tmp_path / "train.toml"
    path.write_text('default_model = "popular"\nthreads = 1\n[models.popular]\n')
    assert main(["train", "--config", str(path)]) == 0
    registry = _registry()
    version = registry.current_version()
    assert version is not None
    entry = registry.manifest(version)["catalog_read"]
    assert entry == {"generation": entry["generation"], "store": store.store_id()}

    store.patch_item("i1", {"in_stock": False})
    store.patch_item("i2", {"price": 9.5, "margin": 2.0, "category": "Moved"})
    store.retire_item("i4")
    store.upsert_items([CatalogItem("i6", category="Back")])  # retired, then back, no price
    store.upsert_items([CatalogItem("n1", title="New", category="C0", price=2.0)])

    engine = Engine.load(registry.path(version), registry)
    whole, since = LiveState(store), LiveState(store)
    whole.refresh()
    since.follow_catalog(engine.catalog_read_at(since.store_id))
    since.refresh()
    assert since.catalog_since == entry["generation"] >= 0
    assert sorted(since.catalog) == ["i1", "i2", "i4", "i6", "n1"]
    assert len(whole.catalog) == 9  # i0-i7 and n1
    a = engine.with_catalog(whole.catalog)
    b = engine.with_catalog(since.catalog)
    for field_ in ("in_stock", "price", "margin", "category"):
        np.testing.assert_array_equal(getattr(a.catalog, field_), getattr(b.catalog, field_))
    assert a.new_items == b.new_items and [it.item_id for it in b.new_items] == ["n1"]
    i = engine.items.index
    assert not b.catalog.in_stock[i("i3")], "retired before training: out of stock"
    assert b.catalog.in_stock[i("i6")] and not b.catalog.in_stock[i("i4")]
    assert b.catalog.price[i("i2")] == 9.5 and b.catalog.category[i("i2")] == "Moved"
    assert engine.catalog_read_at("another store") == -1


def _shift_shop(tmp_path: Path, evaluation: str) -> Path:
    """Store the shop whose customers turned to their own items 30 days ago
    (``tests.models.test_hybrid.shift_rows``); return a config that trains a small hybrid
    with ``repeat_first = "auto"`` on it, with ``evaluation`` as its ``[evaluation]`` table."""
    from tests.models.test_hybrid import shift_rows

    return _hybrid_shop(tmp_path, shift_rows(), evaluation)


def _hybrid_shop(
    tmp_path: Path, rows: list[EventRow], evaluation: str, *, discover: bool = False
) -> Path:
    """Store ``rows``; return a config that trains a small hybrid with ``repeat_first =
    "auto"`` (and ``discover_order = "auto"`` with ``discover``) on them, with
    ``evaluation`` as its ``[evaluation]`` table."""
    store = open_store(load_settings(Settings))
    store.insert_events(rows)
    store.close()
    path = tmp_path / "hybrid.toml"
    path.write_text(
        'default_model = "hybrid"\nthreads = 1\n'
        f"[evaluation]\n{evaluation}\n"
        "[precompute]\nactive_days = 0\n"
        "[models.hybrid]\nparams = { factors = 16, max_iter = 60, train_windows = 3, "
        'repeat_first = "auto"' + (', discover_order = "auto"' if discover else "") + " }\n"
    )
    return path


def test_a_full_run_changes_the_served_repeat_first_order_only_when_two_tests_ask_together(
    tmp_path: Path,
) -> None:
    """A hybrid's ``repeat_first="auto"`` test decides the first version's order. A later
    full run keeps the serving version's order against its own test unless the mean of the
    two tests' t passes the bar: after a version whose test was far below it, one run does
    not switch the order, the next does."""
    path = _shift_shop(tmp_path, "enabled = false")
    registry = _registry()

    def run() -> tuple[Path, dict[str, Any]]:
        assert main(["train", "--config", str(path)]) == 0
        meta_path = registry.path(registry.current_version()) / "models" / "hybrid" / "hybrid.json"
        return meta_path, json.loads(meta_path.read_text(encoding="utf-8"))

    meta_path, first = run()
    # the customers turned to their own items: the test asks for them first
    assert first["repeat_first"] and first["train_stats"]["gate_t"] > 2.0
    assert first["train_stats"]["gate_held"] == 0.0
    # as if that version's test had kept the learned order, far below the bar
    first["repeat_first"] = False
    first["train_stats"]["gate_t"] = -first["train_stats"]["gate_t"]
    meta_path.write_text(json.dumps(first), encoding="utf-8")

    _, second = run()  # its test asks for the change; the mean with the serving one's does not
    assert not second["repeat_first"] and second["train_stats"]["gate_held"] == 1.0
    assert second["train_stats"]["gate_t"] > 2.0
    _, third = run()  # a second test in a row asks for it
    assert third["repeat_first"] and third["train_stats"]["gate_held"] == 0.0
    # a version trained with other params tested another model: the next run tests alone
    third["repeat_first"] = False
    third["train_stats"]["gate_t"] = -third["train_stats"]["gate_t"]
    meta_path.write_text(json.dumps(third), encoding="utf-8")
    path.write_text(path.read_text().replace("max_iter = 60", "max_iter = 61"))
    _, fourth = run()
    assert fourth["repeat_first"] and fourth["train_stats"]["gate_held"] == 0.0


def test_the_gate_reads_the_holdout_metrics_of_the_order_the_final_fit_serves(
    tmp_path: Path,
) -> None:
    """On the shop whose customers turned to their own items 30 days ago, a test before a
    30-day holdout would choose the learned order, and the final fit's test chooses own
    purchases first. The evaluation's fit runs no test: the holdout scores both of its
    orders, and the model's metrics, which the promotion gate reads, are those of the order
    that serves (own purchases first, well ahead on a holdout of repeat orders), with the
    other order's kept beside them."""
    path = _shift_shop(tmp_path, "holdout_days = 30")
    registry = _registry()
    assert main(["train", "--config", str(path)]) == 0
    folder = registry.path(registry.current_version())
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    served = json.loads((folder / "models" / "hybrid" / "hybrid.json").read_text("utf-8"))
    assert served["repeat_first"] and served["train_stats"]["gate_t"] > 2.0
    entry = manifest["evaluation"]["orders"]["hybrid"]
    assert entry["first"] is True and entry["discover_weight"] == 0.0
    (learned,) = entry["others"]
    assert learned["first"] is False and learned["discover_weight"] == 0.0
    ours = manifest["metrics"]["hybrid"]
    assert ours["ndcg@10"] > learned["metrics"]["ndcg@10"] + 0.1
    assert manifest["evaluation"]["ci95"]["hybrid"] != learned["ci95"]
    assert set(manifest["evaluation"]["score_seconds"]) == {"hybrid"}


def test_the_holdout_scores_every_order_and_the_gate_reads_the_served_one(
    tmp_path: Path,
) -> None:
    """With both order tests (``repeat_first`` and ``discover_order`` "auto") the holdout
    scores the evaluation's fit in all fourteen orders (own purchases first or not, by the
    learned discover order or popularity or the EASE rank mixed in at each weight), each on
    its own lists, and the model's metrics are those of the order ``hybrid.json`` says the
    final fit serves; the thirteen others sit beside them and take no entry of their own."""
    from itertools import product

    from recsys.models.orders import DISCOVER_MIXES
    from tests.models.test_hybrid import shift_rows

    path = _hybrid_shop(tmp_path, shift_rows(), "holdout_days = 30", discover=True)
    assert main(["train", "--config", str(path)]) == 0
    folder = _registry().path(_registry().current_version())
    served = json.loads((folder / "models" / "hybrid" / "hybrid.json").read_text("utf-8"))
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    evaluation = manifest["evaluation"]
    entry = evaluation["orders"]["hybrid"]

    def key(o: dict[str, Any]) -> tuple[bool, str, float]:
        return (o["first"], o["discover_by"], o["discover_weight"])

    assert key(entry) == (
        served["repeat_first"],
        served["discover_by"],
        served["discover_weight"],
    )
    others = {key(o): o for o in entry["others"]}
    assert len(others) == len(entry["others"]) == 13
    every = {(f, *mix) for f, mix in product((False, True), (("popularity", 0.0), *DISCOVER_MIXES))}
    assert set(others) | {key(entry)} == every
    assert set(evaluation["score_seconds"]) == set(evaluation["ci95"]) == {"hybrid"}
    assert "hybrid" in manifest["metrics"] and not any("[" in n for n in manifest["metrics"])
    # each order was scored on its own lists: the mixes move the new items' ranks, and
    # differently for popularity and EASE
    first = entry["first"]
    new_ndcg = {k[1:]: o["metrics"]["new_ndcg@10"] for k, o in others.items() if k[0] == first}
    new_ndcg[key(entry)[1:]] = manifest["metrics"]["hybrid"]["new_ndcg@10"]
    assert len(set(new_ndcg.values())) > 2, new_ndcg


def test_a_young_shops_run_serves_own_purchases_first_and_gates_on_that_order(
    tmp_path: Path,
) -> None:
    """A shop with less than four label windows of history: the final fit runs no test and
    serves own purchases first (the synthetic shop, whose test on the same 100 days keeps
    the learned order, t = -4.2), and the metrics the promotion gate reads are that order's."""
    from recsys.models.ranker import REPEAT_FIRST_MIN_WINDOWS
    from tests.models.conftest import AS_OF
    from tests.models.test_hybrid import synthetic_rows

    days = REPEAT_FIRST_MIN_WINDOWS * 30 - 20
    young = [r for r in synthetic_rows() if r.ts > AS_OF - days * MICROS_PER_DAY]
    path = _hybrid_shop(tmp_path, young, "holdout_days = 14")
    assert main(["train", "--config", str(path)]) == 0
    folder = _registry().path(_registry().current_version())
    served = json.loads((folder / "models" / "hybrid" / "hybrid.json").read_text("utf-8"))
    assert served["repeat_first"] and served["train_stats"]["gate_young"] == 1.0
    assert "gate_t" not in served["train_stats"]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["evaluation"]["orders"]["hybrid"]["first"] is True


def test_a_run_says_when_the_newest_purchase_is_long_before_its_as_of(
    filled_store: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One view far newer than every purchase (a demo's old sample with an event posted
    today) moves the as-of: the run says so and names ``--as-of``; a shop whose purchases
    are current hears nothing."""
    assert main(["train", "--config", _config(tmp_path)]) == 0
    assert "newest purchase" not in capsys.readouterr().err
    later = START + 400 * MICROS_PER_DAY
    filled_store.insert_events(
        [EventRow("late", "u1", None, "i1", "view", later, 1.0, None, None, None)]
    )
    # and, measuring nothing, the run does not replace the version that measured
    assert main(["train", "--config", _config(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "notice: the newest purchase" in err and "--as-of" in err

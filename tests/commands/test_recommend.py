"""``recsys recommend`` answers from the precomputed lists exactly as batch scoring would.

A real hybrid version is trained on the synthetic shop of ``tests/models/test_hybrid.py``;
the command's output with the precomputed lists must equal, byte for byte, its output when
every customer is scored by :meth:`~recsys.engine.Engine.recommend_batch` (the path the
command took before), for list lengths the stored lists cover and for longer ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import recsys.engine
from recsys.cli import main
from recsys.settings import Settings, load_settings
from recsys.store import open_store
from tests.models.test_hybrid import synthetic_rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A RECSYS_HOME with a promoted hybrid version (with its precomputed lists)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RECSYS_HOME", str(home))
        store = open_store(load_settings(Settings))
        store.insert_events(synthetic_rows(seed=5))
        store.close()
        config = home / "train.toml"
        config.write_text(
            'default_model = "hybrid"\nthreads = 1\n'
            "[evaluation]\nenabled = false\n"
            "[models.popular]\n"
            "[models.hybrid]\nparams = { factors = 8, max_iter = 30 }\n"
        )
        assert main(["train", "--config", str(config)]) == 0
    return home


def run(out: Path, *argv: str) -> str:
    assert main(["recommend", *argv, "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


@pytest.mark.parametrize("k", [1, 10, 30])
def test_precomputed_answers_equal_batch_scoring(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, k: int
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(trained))
    calls: list[int] = []
    real_batch = recsys.engine.Engine.recommend_batch

    def counting_batch(self: Any, user_ids: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(user_ids))
        return real_batch(self, user_ids, *args, **kwargs)

    monkeypatch.setattr(recsys.engine.Engine, "recommend_batch", counting_batch)
    fast = run(tmp_path / "fast.csv", "--all", "--k", str(k))
    scored_fast = sum(calls)
    monkeypatch.setattr(recsys.engine.Engine, "recommend_precomputed", lambda *a, **kw: None)
    calls.clear()
    slow = run(tmp_path / "slow.csv", "--all", "--k", str(k))
    n_users = len({line.split(",")[0] for line in slow.splitlines()[1:]})
    assert sum(calls) == n_users  # the reference scored everyone
    assert fast == slow
    assert len(slow.splitlines()) == 1 + n_users * k
    # this shop's catalogue is shorter than the stored lists: every customer came from them
    assert scored_fast == 0


def test_a_users_file_with_strangers_and_exclusions(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(trained))
    users = tmp_path / "users.txt"
    users.write_text("user_id\nu3\nstranger\nprobe\nu17\n")
    args = ("--users", str(users), "--k", "5", "--exclude-purchased")
    calls: list[list[str]] = []
    real_batch = recsys.engine.Engine.recommend_batch

    def recording_batch(self: Any, user_ids: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        calls.append(list(user_ids))
        return real_batch(self, user_ids, *args, **kwargs)

    monkeypatch.setattr(recsys.engine.Engine, "recommend_batch", recording_batch)
    fast = run(tmp_path / "fast.csv", *args)
    assert calls == [["stranger"]]  # only the customer without a stored list was scored
    monkeypatch.setattr(recsys.engine.Engine, "recommend_precomputed", lambda *a, **kw: None)
    slow = run(tmp_path / "slow.csv", *args)
    assert fast == slow
    lines = slow.splitlines()[1:]
    assert [line.split(",")[0] for line in lines] == ["u3"] * 5 + ["stranger"] * 5 + [
        "probe"
    ] * 5 + ["u17"] * 5
    assert all("fallback:popular" in line for line in lines[5:10])


def test_the_apis_rules_file_applies_unless_rules_are_given(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_HOME", str(trained))
    plain = run(tmp_path / "plain.csv", "--all", "--k", "3")
    rows = [line.split(",") for line in plain.splitlines()[1:]]
    top = max({r[2] for r in rows}, key=lambda item: sum(r[2] == item for r in rows))
    deny = tmp_path / "deny.toml"
    deny.write_text(f'deny = ["{top}"]\n', encoding="utf-8")

    monkeypatch.setenv("RECSYS_RULES_FILE", str(deny))
    served = run(tmp_path / "served.csv", "--all", "--k", "3")
    assert all(line.split(",")[2] != top for line in served.splitlines()[1:])
    # an explicit --rules wins over the setting
    allow_all = tmp_path / "none.toml"
    allow_all.write_text("", encoding="utf-8")
    assert run(tmp_path / "explicit.csv", "--all", "--k", "3", "--rules", str(allow_all)) == plain


def test_batch_scoring_leaves_out_items_taken_out_of_stock_after_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command reads only the catalogue rows changed since the version (its manifest's
    ``catalog_read``) and still sees a change made after training."""
    from recsys.data.schema import CatalogItem
    from recsys.registry import Registry

    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    store = open_store(load_settings(Settings))
    rows = synthetic_rows(seed=5)
    store.insert_events(rows)
    store.upsert_items([CatalogItem(i, category="Home") for i in sorted({r.item_id for r in rows})])
    config = tmp_path / "train.toml"
    config.write_text(
        'default_model = "popular"\nthreads = 1\n[evaluation]\nenabled = false\n[models.popular]\n'
    )
    assert main(["train", "--config", str(config)]) == 0
    registry = Registry(load_settings(Settings).registry_path)
    version = registry.current_version()
    assert version is not None and registry.manifest(version)["catalog_read"]["generation"] > 0

    def items(out: str) -> list[str]:
        return [line.split(",")[2] for line in out.splitlines()[1:]]

    before = run(tmp_path / "before.csv", "--all", "--k", "5")
    listed = sorted(set(items(before)))
    store.patch_item(listed[0], {"in_stock": False})
    store.retire_item(listed[1])
    store.close()
    after = run(tmp_path / "after.csv", "--all", "--k", "5")
    assert listed[0] not in items(after) and listed[1] not in items(after)
    assert len(after.splitlines()) == len(before.splitlines())


def test_a_customers_events_since_the_version_count_as_on_the_api(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A purchase after training leaves the customer's ``--exclude-purchased`` list, as it
    leaves their next API list (batch scoring read the version's history only)."""
    import shutil

    from recsys.artifacts import Manifest
    from recsys.data.schema import EventRow
    from recsys.registry import Registry

    home = tmp_path / "home"
    shutil.copytree(trained, home)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    users = tmp_path / "users.txt"
    users.write_text("u3\n")
    args = ("--users", str(users), "--k", "5", "--exclude-purchased")
    before = [line.split(",")[2] for line in run(tmp_path / "a.csv", *args).splitlines()[1:]]
    registry = Registry(load_settings(Settings).registry_path)
    as_of = Manifest.model_validate(
        registry.manifest(registry.current_version() or "")
    ).as_of_micros()
    store = open_store(load_settings(Settings))
    bought = EventRow("late-1", "u3", None, before[0], "purchase", as_of + 1, 1.0, 2.0, "o", None)
    assert store.insert_events([bought]).inserted == 1
    store.close()
    after = [line.split(",")[2] for line in run(tmp_path / "b.csv", *args).splitlines()[1:]]
    assert before[0] not in after and len(after) == 5

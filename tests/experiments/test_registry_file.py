"""The experiments file the registry writes reads back as the same experiments."""

from __future__ import annotations

import tempfile
import tomllib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.experiments.definitions import Experiment, experiment_from_dict, load_experiments
from recsys.experiments.registry import FILE_HEADER, ExperimentRegistry
from tests.experiments.helpers import make_experiment

names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}\Z")
offsets = st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
starts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets
)
explorations = st.one_of(
    st.just({"kind": "none"}),
    st.builds(
        lambda e: {"kind": "epsilon_greedy", "epsilon": e},
        st.floats(0.001, 0.999),
    ),
    st.builds(lambda n: {"kind": "randomised_top_n", "top_n": n}, st.integers(2, 100)),
)
planning = st.one_of(
    st.just({}),
    st.builds(lambda n: {"planned_sample_size_per_variant": n}, st.integers(2, 10**9)),
    st.builds(
        lambda b, m: {"baseline_rate": b, "minimum_detectable_effect": m},
        st.floats(0.01, 0.49),
        st.floats(0.01, 0.49),
    ),
)


@st.composite
def experiments(draw: st.DrawFn, name: str) -> Experiment:
    weights = draw(st.lists(st.integers(1, 10), min_size=1, max_size=4))
    variant_names = draw(st.lists(names.filter(lambda n: n != "holdout"), min_size=len(weights),
                                  max_size=len(weights), unique=True))  # fmt: skip
    variants = [
        {"name": n, "share": w / sum(weights)}
        | draw(st.one_of(st.just({}), st.builds(lambda v: {"model_version": v}, st.text())))
        | draw(st.sampled_from([{}, {"ranking": "default"}]))
        for n, w in zip(variant_names, weights, strict=True)
    ]
    start = draw(starts)
    data: dict[str, Any] = {
        "name": name,
        "salt": draw(st.text(min_size=1, max_size=30)),
        "start": start,
        "end": start + draw(st.timedeltas(timedelta(microseconds=1), timedelta(days=400))),
        "variants": variants,
        "holdout_share": draw(st.floats(0.0, 0.99)),
        "attribution_window_hours": draw(st.floats(0.01, 24.0 * 90)),
        "exploration": draw(explorations),
        "primary_metric": draw(st.sampled_from(["ctr", "conversion", "revenue_per_user"])),
        "alpha": draw(st.floats(0.001, 0.499)),
    } | draw(planning)
    return experiment_from_dict(data)


experiment_lists = st.lists(names, min_size=1, max_size=3, unique=True).flatmap(
    lambda ns: st.tuples(*(experiments(n) for n in ns))
)


@settings(max_examples=40, deadline=None)
@given(experiment_lists, st.sampled_from([".toml", ".json"]))
def test_put_then_load_gives_the_same_experiments(
    exps: tuple[Experiment, ...], suffix: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"experiments{suffix}"
        registry = ExperimentRegistry(path)
        for exp in exps:
            registry.put(exp)
        assert load_experiments(path) == exps
        assert ExperimentRegistry(path).load().all() == exps


def test_toml_file_has_the_header_and_real_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "experiments.toml"
    exp = make_experiment(end=datetime(2026, 12, 1, 6, 30, tzinfo=UTC))
    ExperimentRegistry(path).put(exp)
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# {FILE_HEADER}\n")
    raw = tomllib.loads(text)["experiments"][0]
    assert raw["end"] == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    assert "holdout_share" not in raw  # defaults are left out, as a person would write it


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_put_over_an_existing_name_replaces_it_in_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"experiments{suffix}"
    registry = ExperimentRegistry(path)
    registry.put(make_experiment(name="a"))
    registry.put(make_experiment(name="b"))
    registry.put(make_experiment(name="a", holdout_share=0.25))
    assert [(e.name, e.holdout_share) for e in load_experiments(path)] == [("a", 0.25), ("b", 0.0)]
    # no temporary file left (the lock file of changes stays beside it)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, f"{path.name}.lock"]


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_deleting_the_last_experiment_leaves_a_file_that_loads_empty(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"experiments{suffix}"
    registry = ExperimentRegistry(path)
    registry.put(make_experiment())
    registry.delete("exp")
    assert path.exists()
    assert ExperimentRegistry(path).load().all() == ()


def test_a_change_keeps_what_another_worker_wrote(tmp_path: Path) -> None:
    """Two workers, each with its own copy of the file: a change is made to the file as it
    is, not to a copy up to a refresh interval old (a worker's write undid the other's)."""
    path = tmp_path / "experiments.toml"
    first, second = ExperimentRegistry(path).load(), ExperimentRegistry(path).load()
    first.put(make_experiment(name="a"))
    second.put(make_experiment(name="b"))  # its copy has no "a"
    first.put(make_experiment(name="a", holdout_share=0.25))  # its copy has no "b"
    assert [(e.name, e.holdout_share) for e in load_experiments(path)] == [("a", 0.25), ("b", 0.0)]
    second.delete("a")
    first.put(make_experiment(name="c"))  # its copy still has "a": it must not come back
    assert [e.name for e in load_experiments(path)] == ["b", "c"]
    assert [e.name for e in first.all()] == ["b", "c"]

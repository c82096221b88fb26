from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recsys.errors import ConfigError, NotFoundError
from recsys.experiments.definitions import (
    HOLDOUT,
    EpsilonGreedy,
    RandomisedTopN,
    load_experiment,
    load_experiments,
)
from recsys.experiments.stats import required_sample_size
from tests.experiments.helpers import END, START, make_experiment

TOML = """
name = "als-vs-popular"
salt = "2026-11"
start = 2026-11-01T00:00:00Z
end = 2026-11-29T00:00:00+01:00
holdout_share = 0.1
minimum_detectable_effect = 0.01
baseline_rate = 0.05

[[variants]]
name = "control"
share = 0.4
model_version = "popular-1"

[[variants]]
name = "als"
share = 0.6
ranking = "default-rules"

[exploration]
kind = "epsilon_greedy"
epsilon = 0.05
"""


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(TOML)
    exp = load_experiment(path)
    assert exp.name == "als-vs-popular"
    assert exp.variant_names == ("control", "als")
    assert exp.variants[0].model_version == "popular-1"
    assert exp.variants[1].ranking == "default-rules"
    assert isinstance(exp.exploration, EpsilonGreedy) and exp.exploration.epsilon == 0.05
    shares = exp.expected_shares()
    assert shares == pytest.approx({HOLDOUT: 0.1, "control": 0.36, "als": 0.54})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert exp.planned_sample_size() == required_sample_size(0.05, 0.01)
    assert exp.is_running(datetime(2026, 11, 10, tzinfo=UTC))
    assert not exp.is_running(datetime(2026, 12, 1, tzinfo=UTC))


def test_load_json_list_and_by_name(tmp_path: Path) -> None:
    path = tmp_path / "exps.json"
    path.write_text(
        '{"experiments": [{"name": "a", "salt": "x", "start": "2026-01-01T00:00:00Z",'
        ' "end": "2026-02-01T00:00:00Z", "variants": [{"name": "v", "share": 1}],'
        ' "exploration": {"kind": "randomised_top_n", "top_n": 4}},'
        ' {"name": "b", "salt": "y", "start": "2026-01-01T00:00:00Z",'
        ' "end": "2026-02-01T00:00:00Z", "variants": [{"name": "v", "share": 1}]}]}'
    )
    assert [e.name for e in load_experiments(path)] == ["a", "b"]
    b = load_experiment(path, "b")
    assert b.salt == "y"
    assert isinstance(load_experiment(path, "a").exploration, RandomisedTopN)
    with pytest.raises(NotFoundError, match="no experiment named 'c'"):
        load_experiment(path, "c")
    with pytest.raises(ConfigError, match="holds 2 experiments"):
        load_experiment(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "sum to 0.9"),
        ({"variants": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "used twice"),
        ({"variants": [{"name": "holdout", "share": 1.0}]}, "reserved"),
        ({"start": END, "end": START}, "must be before 'end'"),
        ({"start": datetime(2026, 11, 1)}, "'start'"),
        ({"holdout_share": 1.0}, "'holdout_share'"),
        ({"minimum_detectable_effect": 0.01}, "given together"),
        ({"planned_sample_size_per_variant": 100, "minimum_detectable_effect": 0.01,
          "baseline_rate": 0.1}, "not both"),
        ({"exploration": {"kind": "epsilon_greedy", "epsilon": 1.5}}, "epsilon"),
        ({"exploration": {"kind": "thompson"}}, "exploration"),
        ({"variant": []}, "unknown key 'variant'"),
        ({"variants": [{"name": "a", "share": 1, "modelversion": "x"}]}, "variants.0.modelversion"),
    ],
)  # fmt: skip
def test_bad_definitions_name_experiment_and_field(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make_experiment(**overrides)
    assert "experiment 'exp'" in str(err.value)
    assert message in str(err.value)


def test_bad_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(TOML.replace("share = 0.6", "share = 0.7"))
    with pytest.raises(ConfigError, match=r"bad\.toml: experiment 'als-vs-popular'.*sum to 1.1"):
        load_experiment(path)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ConfigError, match="timezone"):
        make_experiment().is_running(datetime(2026, 11, 5))


def test_frozen() -> None:
    exp = make_experiment()
    with pytest.raises(Exception, match="frozen"):
        exp.salt = "other"  # type: ignore[misc]

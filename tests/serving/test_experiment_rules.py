"""Per-variant business rules (a variant's ``ranking``) through the API and the registry.

Two variants serve the same model version; ``strict`` ranks with a rules file that denies item
"A", the most popular item (the first thing every customer without history is shown). Users of
``control`` see it, users of ``strict`` never do, and held-out users keep the server's rules.
A missing or invalid rules file is a clear error at load and a 422 from the admin endpoint,
after which the server serves exactly as before.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    # starlette asks for the httpx2 package, which is not a dependency; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from recsys.cli import main
from recsys.errors import ConfigError
from recsys.experiments.assignment import assign
from recsys.experiments.definitions import experiment_from_dict
from recsys.experiments.registry import ExperimentRegistry, ranking_path
from recsys.registry import Registry
from recsys.store.base import EventStore
from serving.app import create_app
from serving.settings import ServingSettings
from tests.serving.fakes import fake_loader, publish

KEY = {"X-API-Key": "secret-1"}
USERS = [f"user-{i}" for i in range(120)]
K = 4


def definition(version: str, strict_ranking: str, **overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    data: dict[str, Any] = {
        "name": "rules-test",
        "salt": "r1",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=2)).isoformat(),
        "holdout_share": 0.2,
        "variants": [
            {"name": "control", "share": 0.5, "model_version": version, "ranking": "default"},
            {"name": "strict", "share": 0.5, "model_version": version, "ranking": strict_ranking},
        ],
    }
    data.update(overrides)
    return data


@pytest.fixture
def setup(
    tmp_path: Path, sqlite_store: EventStore
) -> Iterator[tuple[TestClient, ExperimentRegistry, str]]:
    sqlite_store.migrate()
    registry = Registry(tmp_path / "models")
    version = publish(registry)
    conf_dir = tmp_path / "conf"
    (conf_dir / "rules").mkdir(parents=True)
    (conf_dir / "rules" / "strict.toml").write_text('deny = ["A"]\n', encoding="utf-8")
    experiments = ExperimentRegistry(conf_dir / "experiments.toml")
    experiments.put(definition(version, "rules/strict.toml"))
    conf = ServingSettings(
        api_keys="secret-1", experiments_file=experiments.path, exposure_flush_ms=20
    )  # type: ignore[arg-type]
    app = create_app(conf, store=sqlite_store, registry=registry, model_loader=fake_loader)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, experiments, version


def served(client: TestClient) -> dict[str, list[list[str]]]:
    """Each variant's lists for every user (as the API labels them)."""
    out: dict[str, list[list[str]]] = {}
    for user in USERS:
        r = client.get(f"/v1/users/{user}/recommendations?k={K}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["experiment"] == "rules-test"
        out.setdefault(body["variant"], []).append([i["item_id"] for i in body["items"]])
    return out


def test_each_variant_ranks_with_its_own_rules(
    setup: tuple[TestClient, ExperimentRegistry, str],
) -> None:
    client, _, version = setup
    lists = served(client)
    assert set(lists) == {"holdout", "control", "strict"}  # 120 users: every arm has some
    assert all(len(x) == K for arm in lists.values() for x in arm)
    # the server's rules: "A" (most popular) leads every list of users without history
    assert all(x[0] == "A" for x in lists["control"])
    assert all(x[0] == "A" for x in lists["holdout"])  # the holdout keeps the server's rules
    # the variant's rules deny it, and its lists are still full
    assert all("A" not in x for x in lists["strict"])
    assert all(x == lists["strict"][0] for x in lists["strict"])
    # both variants were served by the same model version
    r = client.get(f"/v1/users/{USERS[0]}/recommendations")
    assert r.json()["model_version"] == version


def salt_putting(user: str, variant: str, version: str) -> str:
    """A salt under which ``user`` lands in ``variant`` (found by trying salts in order)."""
    for i in range(200):
        exp = experiment_from_dict(definition(version, "default", salt=f"s{i}"))
        if assign(exp, user, datetime.now(UTC)).variant == variant:
            return f"s{i}"
    raise AssertionError(f"no salt puts {user} in {variant}")  # pragma: no cover


def test_personal_lists_follow_the_variant_rules(
    setup: tuple[TestClient, ExperimentRegistry, str],
) -> None:
    client, experiments, version = setup
    # u1's history makes "B" its top item; deny it in the strict rules instead of "A"
    rules = experiments.path.parent / "rules" / "strict.toml"
    rules.write_text('deny = ["B"]\n', encoding="utf-8")
    for variant in ("control", "strict"):
        body = definition(version, "rules/strict.toml", salt=salt_putting("u1", variant, version))
        r = client.put("/v1/admin/experiments/rules-test", json=body, headers=KEY)
        assert r.status_code == 200, r.text  # a put reads the rules file again
        r = client.get("/v1/users/u1/recommendations")
        assert r.json()["variant"] == variant
        items = [i["item_id"] for i in r.json()["items"]]
        assert items[:2] == (["B", "C"] if variant == "control" else ["C", "D"])
        assert r.json()["fallback"] is None  # personal, not the popular list


def test_admin_listing_shows_each_variant_ranking(
    setup: tuple[TestClient, ExperimentRegistry, str],
) -> None:
    client, experiments, _ = setup
    listing = client.get("/v1/admin/experiments", headers=KEY).json()
    (exp,) = listing["experiments"]
    by_name = {v["name"]: v for v in exp["variants"]}
    assert by_name["control"]["ranking"] == "default"
    assert by_name["control"]["rules_file"] is None
    assert by_name["strict"]["ranking"] == "rules/strict.toml"
    expected = experiments.path.parent / "rules" / "strict.toml"
    assert by_name["strict"]["rules_file"] == str(expected)
    one = client.get("/v1/admin/experiments/rules-test", headers=KEY).json()
    assert one["variants"][1]["rules_file"] == str(expected)
    user = next(
        u
        for u in USERS
        if assign(experiments.get("rules-test"), u, datetime.now(UTC)).variant == "strict"
    )
    a = client.get(f"/v1/experiments/rules-test/assignment/{user}").json()
    assert a["variant"] == "strict" and a["ranking"] == "rules/strict.toml"


@pytest.mark.parametrize(
    ("ranking", "content", "needle"),
    [
        ("rules/missing.toml", None, "no such file"),
        ("rules/bad.toml", 'deny = ["A"]\nmax_per_categroy = 2\n', "max_per_categroy"),
        ("rules/bad.toml", "deny = [\n", "not valid TOML"),
        # over the API, only rules files under the experiments file's folder may be named
        ("/etc/passwd", None, "must be inside"),
        ("../outside.toml", 'deny = ["A"]\n', "must be inside"),
    ],
)
def test_bad_rules_are_422_and_the_server_keeps_serving(
    setup: tuple[TestClient, ExperimentRegistry, str],
    ranking: str,
    content: str | None,
    needle: str,
) -> None:
    client, experiments, version = setup
    if content is not None:
        (experiments.path.parent / ranking).write_text(content, encoding="utf-8")
    before = experiments.path.read_text(encoding="utf-8")
    body = definition(version, ranking)
    r = client.put("/v1/admin/experiments/rules-test", json=body, headers=KEY)
    assert r.status_code == 422, r.text
    message = r.json()["message"]
    for part in ("'rules-test'", "variant 'strict'", ranking, needle):
        assert part in message
    # nothing changed: the file, the definition in force, and what users get
    assert experiments.path.read_text(encoding="utf-8") == before
    listing = client.get("/v1/admin/experiments", headers=KEY).json()
    assert listing["experiments"][0]["variants"][1]["ranking"] == "rules/strict.toml"
    lists = served(client)
    assert all("A" not in x for x in lists["strict"])
    assert all(x[0] == "A" for x in lists["control"])


def test_bad_rules_file_at_load_names_experiment_variant_and_file(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text('{"deny": ["A"]}', encoding="utf-8")
    experiments = ExperimentRegistry(tmp_path / "experiments.toml")
    experiments.put(definition("v1", "good"))  # no suffix: good.toml, else good.json
    assert experiments.ranking_file(experiments.get("rules-test").variants[1]) == str(good)

    reloaded = ExperimentRegistry(experiments.path).load()
    exp = reloaded.get("rules-test")
    found = reloaded.ranking(exp, exp.variants[1])
    assert found is not None and found[0] == str(good) and found[1].deny == ["A"]
    assert reloaded.ranking(exp, exp.variants[0]) is None  # "default": the server's rules

    good.unlink()
    with pytest.raises(ConfigError) as info:
        ExperimentRegistry(experiments.path).load()
    message = str(info.value)
    assert str(experiments.path) in message
    assert "experiment 'rules-test', variant 'strict'" in message
    assert "good.toml: no such file" in message
    # a registry already loaded keeps what it had when a reload fails
    with pytest.raises(ConfigError):
        reloaded.load()
    assert reloaded.ranking(exp, exp.variants[1]) == found


def test_ranking_paths_resolve_from_the_experiments_folder(tmp_path: Path) -> None:
    assert ranking_path(None, tmp_path) is None
    assert ranking_path("default", tmp_path) is None
    assert ranking_path("r/x.toml", tmp_path) == tmp_path / "r" / "x.toml"
    assert ranking_path("/abs/x.json", tmp_path) == Path("/abs/x.json")
    assert ranking_path("x", tmp_path) == tmp_path / "x.toml"  # neither exists: named for the error
    (tmp_path / "x.json").write_text("{}", encoding="utf-8")
    assert ranking_path("x", tmp_path) == tmp_path / "x.json"


def test_variant_engine_shares_the_models_and_is_cached(
    setup: tuple[TestClient, ExperimentRegistry, str],
) -> None:
    client, experiments, _ = setup
    state = client.app.state.recsys  # type: ignore[attr-defined]
    exp = experiments.get("rules-test")
    _, rules = experiments.ranking(exp, exp.variants[1]) or ("", None)
    assert rules is not None
    base = state.require_engine()
    ranked = state.service.prepare(base, rules)
    assert ranked is not base and ranked.rules is rules and base.rules is state.rules
    assert ranked.models is base.models and ranked.history is base.history
    assert state.service.prepare(base, rules) is ranked  # compiled once, not per request
    assert [r.item_id for r in base.popular(2).items] == ["A", "D"]
    assert "A" not in [r.item_id for r in ranked.popular(2).items]


def test_offline_estimate_rejects_a_bad_ranking_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    args = ["ab", "offline", "--candidate", "v", "--since", "2026-01-01", "--ranking", str(missing)]
    assert main(args) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err

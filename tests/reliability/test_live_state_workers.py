"""Live state against a real ``recsys serve --workers 2``, on SQLite and on PostgreSQL.

Every guarantee of the one request path is checked the way production runs: two worker
processes behind one port, real models trained by ``recsys train`` on a generated shop with
views, changes made through one worker (or the CLI) and read back over fresh connections, so
that both workers answer. A guarantee holds when every answer agrees within the propagation
bound (2 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from recsys.models import model_class
from recsys.registry import Registry
from tests.conftest import PG_URL
from tests.reliability.helpers import (
    PYTHON,
    ROOT,
    SHOP_TRAINING_TOML,
    child_env,
    free_port,
    kill,
    run_cli,
)

pytestmark = pytest.mark.slow

KEY = "live-key"
H = {"X-API-Key": KEY}
#: A change must reach every worker within this many seconds.
PROPAGATION_S = 2.0
#: Requests over fresh connections per check: enough that both workers answer.
SPREAD = 24

TRAINING_TOML = SHOP_TRAINING_TOML + "\n[models.content]\nenabled = true\n"


@dataclass
class Shop:
    """A trained home and a running two-worker server on it."""

    home: Path
    data: Path
    env: dict[str, str]
    url: str
    port: int
    proc: subprocess.Popen[bytes] | None
    log: Path
    versions: list[str]
    backend: str

    def start(self) -> None:
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "recsys.cli", "serve", "--port", str(self.port), "--workers", "2"],
                env=self.env,
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            fh.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            with contextlib.suppress(httpx.HTTPError):
                if all(_fresh("GET", f"{self.url}/readyz").status_code == 200 for _ in range(6)):
                    return
            time.sleep(0.2)
        raise AssertionError(f"server not ready:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        """Stop the server and its workers (the whole process group: a SIGKILL of the
        parent alone would leave the workers running)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                kill(self.proc)
            self.proc = None


def _fresh(method: str, url: str, **kw: Any) -> httpx.Response:
    """One request on a new connection (the kernel hands it to either worker)."""
    with httpx.Client(timeout=10.0) as c:
        return c.request(method, url, **kw)


def _every_answer(shop: Shop, path: str, check: Callable[[dict[str, Any]], bool]) -> None:
    """Within the propagation bound, :data:`SPREAD` answers in a row over fresh connections
    all pass ``check``."""
    deadline = time.monotonic() + PROPAGATION_S + 1.0  # + request time on a loaded machine
    passed = 0
    last: dict[str, Any] = {}
    while passed < SPREAD:
        r = _fresh("GET", f"{shop.url}{path}")
        last = r.json()
        if r.status_code == 200 and check(last):
            passed += 1
            continue
        passed = 0
        assert time.monotonic() < deadline, f"{path}: still {last}"


def _ids(body: dict[str, Any]) -> list[str]:
    return [i["item_id"] for i in body["items"]]


def _make_shop(root: Path, backend: str, database_url: str | None) -> Shop:
    home, data = root / "home", root / "data"
    extra = {
        "RECSYS_API_KEYS": KEY,
        "RECSYS_LIVE_REFRESH_S": "0.25",
        "RECSYS_WATCH_INTERVAL_S": "0.5",
    }
    if database_url:
        extra["RECSYS_DATABASE_URL"] = database_url
    rules = root / "rules.toml"
    rules.write_text('[[pin]]\nname = "hero"\nitem = "i0007"\nposition = 1\n', encoding="utf-8")
    extra["RECSYS_RULES_FILE"] = str(rules)
    env = child_env(home, **extra)
    gen = run_cli(["generate", "--users", "300", "--items", "120", "--out", str(data)], env)
    assert gen.returncode == 0, gen.stderr
    ingest = [
        "ingest",
        str(data / "events.csv.gz"),
        "--catalog",
        str(data / "catalog.csv"),
        "--customers",
        str(data / "customers.csv"),
    ]
    assert run_cli(ingest, env).returncode == 0
    config = root / "train.toml"
    config.write_text(TRAINING_TOML, encoding="utf-8")
    for _ in range(2):
        done = run_cli(["train", "--config", str(config), "--force"], env, timeout=300)
        assert done.returncode == 0, done.stderr
    versions = Registry(home / "models").version_names()
    port = free_port()
    shop = Shop(
        home,
        data,
        env,
        f"http://127.0.0.1:{port}",
        port,
        None,
        root / "serve.log",
        versions,
        backend,
    )
    shop.start()
    return shop


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """A generated shop, trained twice (two versions), served by two workers."""
    url = None
    schema = None
    if request.param == "postgresql":
        if not PG_URL:
            pytest.skip("no PostgreSQL server: set RECSYS_TEST_DATABASE_URL (.ci/run starts one)")
        import psycopg

        schema = f"live_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in PG_URL else "?"
        url = f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    shop = _make_shop(tmp_path_factory.mktemp(f"live-{request.param}"), request.param, url)
    try:
        yield shop
    finally:
        shop.stop()
        if schema is not None:
            import psycopg

            with psycopg.connect(PG_URL or "", autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_both_workers_answer(shop: Shop) -> None:
    """The checks below mean something only if fresh connections reach both workers."""
    pids = {_fresh("GET", f"{shop.url}/healthz").json()["worker"] for _ in range(40)}
    assert len(pids) == 2


def test_every_worker_answers_with_its_offer_context_built_after_a_restart(shop: Shop) -> None:
    """A worker accepts connections only once the day's offer context is built: right after a
    restart, every answer of both workers already has it (no request waits for the build)."""
    shop.stop()
    shop.start()
    bodies = [_fresh("GET", f"{shop.url}/readyz").json() for _ in range(SPREAD)]
    assert {b.get("offers") for b in bodies} == {"ready"}, bodies
    assert len({_fresh("GET", f"{shop.url}/healthz").json()["worker"] for _ in range(40)}) == 2


def test_the_workers_stop_when_their_supervisor_is_killed(shop: Shop) -> None:
    """A SIGKILL of the server's supervisor told its workers nothing: they kept serving,
    holding the port (the restart failed: "address already in use") and their versions'
    registry leases. They stop within seconds, and the server starts again."""
    assert shop.proc is not None
    os.kill(shop.proc.pid, signal.SIGKILL)
    shop.proc.wait(timeout=15)
    shop.proc = None
    deadline = time.monotonic() + 20
    while True:
        try:
            _fresh("GET", f"{shop.url}/healthz")
        except httpx.TransportError:
            break  # nobody listens: both workers are gone
        assert time.monotonic() < deadline, "the workers outlived their supervisor"
        time.sleep(0.2)
    shop.start()
    assert len({_fresh("GET", f"{shop.url}/healthz").json()["worker"] for _ in range(40)}) == 2


def test_often_viewed_with_serves_the_trained_model(shop: Shop) -> None:
    registry = Registry(shop.home / "models")
    version = registry.current_version()
    assert version
    folder = registry.path(version)
    model = model_class("cooccurrence").load(folder / "models" / "viewed_with")
    items = [str(i) for i in _json(folder / "items.json")]
    checked = 0
    for i, item in enumerate(items[:40]):
        idx, vals = model.similar_items(np.array([i]), 100)  # type: ignore[attr-defined]
        neighbours = [items[j] for j, v in zip(idx[0], vals[0], strict=True) if j >= 0 and v > 0]
        if len(neighbours) < 3:
            continue
        body = _fresh("GET", f"{shop.url}/v1/items/{item}/often-viewed-with?k=10").json()
        assert body["fallback"] is None
        value = {items[j]: float(v) for j, v in zip(idx[0], vals[0], strict=True) if j >= 0}
        served = {
            r["item_id"]: r["score"]
            for r in body["items"]
            if "similar:often_viewed_with" in r["reasons"]
        }
        assert served, body
        # the endpoint's items are the model's neighbours, with its scores, best first
        assert set(served) <= set(neighbours)
        for item_id, score in served.items():
            assert score == pytest.approx(value[item_id], rel=1e-5)
        assert list(served.values()) == sorted(served.values(), reverse=True)
        checked += 1
    assert checked >= 5


def test_stock_change_reaches_every_worker_pinned_items_included(
    shop: Shop, tmp_path: Path
) -> None:
    hero = "i0007"
    _every_answer(shop, "/v1/popular?k=5", lambda b: _ids(b)[0] == hero)
    r = _fresh("PATCH", f"{shop.url}/v1/items/{hero}", json={"in_stock": False}, headers=H)
    assert r.status_code == 200 and r.json()["in_stock"] is False
    _every_answer(shop, "/v1/popular?k=5", lambda b: hero not in _ids(b))
    # a later catalogue file of prices only (another process) leaves it out of stock (it put
    # it back: every column was replaced, in_stock by its default)
    _load_keyed(shop, tmp_path, "--catalog", "u0001", f"item_id,price\n{hero},9.5\n")
    _every_answer(shop, f"/v1/items/{hero}", lambda b: b["price"] == 9.5 and not b["in_stock"])
    _every_answer(shop, "/v1/popular?k=5", lambda b: hero not in _ids(b))
    _every_answer(shop, "/v1/users/u0001/recommendations?k=10", lambda b: hero not in _ids(b))
    _every_answer(shop, "/v1/trending?k=10", lambda b: hero not in _ids(b))
    # a retired item leaves the lists too, and a PUT brings it back
    top = _ids(_fresh("GET", f"{shop.url}/v1/popular?k=3").json())[0]
    assert _fresh("DELETE", f"{shop.url}/v1/items/{top}", headers=H).status_code == 200
    _every_answer(shop, "/v1/popular?k=10", lambda b: top not in _ids(b))
    item = {"title": "Back", "category": "Home", "price": 5.0, "in_stock": True}
    assert _fresh("PUT", f"{shop.url}/v1/items/{top}", json=item, headers=H).status_code == 200
    assert _fresh("PUT", f"{shop.url}/v1/items/{hero}", json=item, headers=H).status_code == 200
    _every_answer(shop, "/v1/popular?k=10", lambda b: top in _ids(b) and _ids(b)[0] == hero)


def test_a_new_item_has_similar_items_at_once_on_every_worker(shop: Shop) -> None:
    known = _fresh("GET", f"{shop.url}/v1/items/i0000").json()  # e.g. "Cycling #1"
    new_id = f"new-{uuid.uuid4().hex[:6]}"
    item = {"title": known["title"].split("#")[0] + "deluxe", "category": known["category"]}
    assert _fresh("PUT", f"{shop.url}/v1/items/{new_id}", json=item, headers=H).is_success

    def alike(body: dict[str, Any]) -> bool:
        ids = [i["item_id"] for i in body["items"] if "similar:content" in i["reasons"]]
        if not ids:
            return False
        cats = {_fresh("GET", f"{shop.url}/v1/items/{i}").json()["category"] for i in ids[:3]}
        return cats == {known["category"]}

    _every_answer(shop, f"/v1/items/{new_id}/similar?k=5", alike)
    viewed = _fresh("GET", f"{shop.url}/v1/items/{new_id}/often-viewed-with?k=5").json()
    assert viewed["fallback"] == "content" and _ids(viewed)
    # and the known item it resembles lists it among its similar items
    _every_answer(shop, "/v1/items/i0000/similar?k=10", lambda b: new_id in _ids(b))


def test_experiment_put_reaches_every_worker(shop: Shop) -> None:
    name = f"exp-{uuid.uuid4().hex[:6]}"
    body = {
        "start": "2020-01-01T00:00:00Z",
        "end": "2099-01-01T00:00:00Z",
        "salt": "s1",
        "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}],
    }
    r = _fresh("PUT", f"{shop.url}/v1/admin/experiments/{name}", json=body, headers=H)
    assert r.status_code == 200, r.text
    _every_answer(
        shop, f"/v1/experiments/{name}/assignment/u0003", lambda b: b["variant"] in ("a", "b")
    )
    _every_answer(shop, "/v1/users/u0003/recommendations?k=3", lambda b: b["experiment"] == name)
    assert _fresh("DELETE", f"{shop.url}/v1/admin/experiments/{name}", headers=H).status_code == 200
    _every_answer(shop, "/v1/users/u0003/recommendations?k=3", lambda b: b["experiment"] is None)


def test_admin_changes_through_either_worker_are_all_kept(shop: Shop) -> None:
    """Experiments and promotions changed one after the other, over fresh connections (each
    worker takes some): every change is in the file, none undone by a worker that wrote from
    its own copy of the file (it was, most rounds), and a deleted one does not come back."""
    window = {"start": "2020-01-01T00:00:00Z", "end": "2099-01-01T00:00:00Z"}
    experiment = {**window, "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}]}
    offer = {
        "title": "t",
        "applies_to": {"any_item": True},
        "discount": {"percent": 5},
        "valid_from": window["start"],
        "valid_until": window["end"],
    }
    tag = uuid.uuid4().hex[:6]
    kinds = [
        ("experiments", "experiments.toml", "name", lambda r: {**experiment, "salt": f"s{r}"}),
        ("offers", "promotions.toml", "id", lambda r: {**offer, "title": f"t{r}"}),
    ]
    for kind, file, key, body in kinds:
        names = [f"{kind[:3]}-{tag}-{side}" for side in ("x", "y")]
        for r in range(6):
            for name in names:
                done = _fresh("PUT", f"{shop.url}/v1/admin/{kind}/{name}", json=body(r), headers=H)
                assert done.status_code == 200, done.text
            docs = tomllib.loads((shop.home / file).read_text(encoding="utf-8"))
            kept = {
                d[key]: d for d in docs["experiments" if kind == "experiments" else "promotions"]
            }
            field, value = ("salt", f"s{r}") if kind == "experiments" else ("title", f"t{r}")
            assert [kept.get(n, {}).get(field) for n in names] == [value, value], (kind, r)
        for r in range(3):
            gone, other = names if r % 2 == 0 else names[::-1]
            assert _fresh("DELETE", f"{shop.url}/v1/admin/{kind}/{gone}", headers=H).is_success
            put = _fresh("PUT", f"{shop.url}/v1/admin/{kind}/{other}", json=body(9), headers=H)
            assert put.is_success, put.text
            text = (shop.home / file).read_text(encoding="utf-8")
            assert gone not in text and other in text, (kind, r)
            put = _fresh("PUT", f"{shop.url}/v1/admin/{kind}/{gone}", json=body(9), headers=H)
            assert put.is_success, put.text
        for name in names:
            assert _fresh("DELETE", f"{shop.url}/v1/admin/{kind}/{name}", headers=H).is_success


def test_rules_put_reach_every_worker(shop: Shop) -> None:
    rules = _fresh("GET", f"{shop.url}/v1/admin/rules", headers=H).json()["rules"]
    assert [p["item"] for p in rules["pin"]] == ["i0007"]
    bad = _fresh("PUT", f"{shop.url}/v1/admin/rules", json={"pin": [{"item": "x"}]}, headers=H)
    assert bad.status_code == 422 and "pin" in bad.json()["message"]
    new = {"pin": [{"name": "star", "item": "i0011", "position": 1}], "deny": ["i0007"]}
    assert _fresh("PUT", f"{shop.url}/v1/admin/rules", json=new, headers=H).status_code == 200
    _every_answer(
        shop, "/v1/popular?k=5", lambda b: _ids(b)[0] == "i0011" and "i0007" not in _ids(b)
    )
    back = {"pin": [{"name": "hero", "item": "i0007", "position": 1}]}
    assert _fresh("PUT", f"{shop.url}/v1/admin/rules", json=back, headers=H).status_code == 200
    _every_answer(shop, "/v1/popular?k=5", lambda b: _ids(b)[0] == "i0007")


def test_marketing_opt_out_gets_no_promotion_on_any_channel(shop: Shop) -> None:
    opted = _opted_out_customer(shop.data)
    for channel in ("web", "app", "email"):
        body = _fresh("GET", f"{shop.url}/v1/users/{opted}/offers?channel={channel}").json()
        assert body["offers"] == []


def _load_keyed(shop: Shop, folder: Path, option: str, user: str, text: str) -> None:
    """``recsys ingest --catalog`` or ``--customers`` (``option``) of ``text`` from another
    process, with one event of ``user`` long before the version's data ends (it changes no
    list)."""
    events = folder / "events.csv"
    events.write_text(
        "event_id,user_id,item_id,event_type,timestamp\n"
        f"keyed-{shop.backend}-{user},{user},i0001,view,2020-01-01T00:00:00Z\n",
        encoding="utf-8",
    )
    keyed = folder / "keyed.csv"
    keyed.write_text(text, encoding="utf-8")
    done = run_cli(["ingest", str(events), option, str(keyed)], shop.env)
    assert done.returncode == 0, done.stderr


def _set_consent(shop: Shop, folder: Path, user: str, *, opted_out: bool) -> None:
    """Withdraw (or give back) ``user``'s personalisation consent from another process."""
    _load_keyed(
        shop,
        folder,
        "--customers",
        user,
        "user_id,birthday,signup_date,region,marketing_opt_out,personalisation_opt_out\n"
        f"{user},,,,false,{str(opted_out).lower()}\n",
    )


def test_personalisation_opt_out_from_a_batch_load_holds_on_every_worker(
    shop: Shop, tmp_path: Path
) -> None:
    """A known customer with nothing new since training is answered from the stored lists
    without leaving the event loop (here: a buyer of the pinned item, asking for one item,
    which the stored list answers exactly). A consent withdrawn by another process (``recsys
    ingest --customers``) turns their list and offers non-personal on every worker at once,
    and given back, personal again."""
    import csv
    import gzip

    with gzip.open(shop.data / "events.csv.gz", "rt", encoding="utf-8") as f:
        buyers = sorted(
            {
                row["user_id"]
                for row in csv.DictReader(f)
                if row["item_id"] == "i0007" and row["event_type"] == "purchase"
            }
            - {""}
        )
    path = f"/v1/users/{buyers[0]}/recommendations?k=1"
    before = _fresh("GET", f"{shop.url}{path}").json()
    assert before["fallback"] is None and _ids(before) == ["i0007"]
    # the consent load's event is long before the version's data ends: the customer stays on
    # the stored lists
    _set_consent(shop, tmp_path, buyers[0], opted_out=True)
    try:
        # a later customers file without the consent columns (regions only) leaves it
        # withdrawn (it cleared it: every column was replaced, the missing ones by defaults)
        regions = f"user_id,region\n{buyers[0]},North\n"
        _load_keyed(shop, tmp_path, "--customers", buyers[0], regions)
        for _ in range(SPREAD):  # fresh connections: both workers answer some
            assert _fresh("GET", f"{shop.url}{path}").json()["fallback"] == "popular"
            offers = _fresh("GET", f"{shop.url}/v1/users/{buyers[0]}/offers?k=5").json()
            assert offers["fallback"] is not None
    finally:
        _set_consent(shop, tmp_path, buyers[0], opted_out=False)
    _every_answer(shop, path, lambda body: body["fallback"] is None)


def test_personalisation_opt_out_holds_on_every_worker_on_the_live_path(
    shop: Shop, tmp_path: Path
) -> None:
    """A known customer with an event since the version is answered by the live path (the
    fast path reads their consent in its one statement and hands it on). A consent withdrawn
    by another process turns their list non-personal on every worker, and given back,
    personal again."""
    user = "u0060"
    body = [
        {
            "event_id": f"live-consent-{shop.backend}",
            "user_id": user,
            "item_id": "i0001",
            "event_type": "view",
            "timestamp": time.time(),
        }
    ]
    assert _fresh("POST", f"{shop.url}/v1/events", json=body, headers=H).status_code == 200
    path = f"/v1/users/{user}/recommendations?k=3"
    _every_answer(shop, path, lambda answer: answer["fallback"] is None)
    _set_consent(shop, tmp_path, user, opted_out=True)
    try:
        _every_answer(shop, path, lambda answer: answer["fallback"] == "popular")
    finally:
        _set_consent(shop, tmp_path, user, opted_out=False)
    _every_answer(shop, path, lambda answer: answer["fallback"] is None)


def test_erasure_holds_on_every_worker_reload_variant_rollback_restart_and_reingest(
    shop: Shop,
) -> None:
    user = next(
        u
        for u in (f"u{n:04d}" for n in range(100, 300))
        if _fresh("GET", f"{shop.url}/v1/users/{u}/recommendations?k=5").json()["fallback"] is None
    )  # a customer with a personal list
    r = _fresh("DELETE", f"{shop.url}/v1/users/{user}", headers=H)
    assert r.status_code == 200 and r.json()["erased_events"] > 0
    path = f"/v1/users/{user}/recommendations?k=5"
    non_personal = lambda b: b["fallback"] == "popular"  # noqa: E731
    _every_answer(shop, path, non_personal)
    # a reload of the serving version (whose users.json still lists them) on one worker
    assert _fresh("POST", f"{shop.url}/v1/admin/models/reload", headers=H).status_code == 200
    _every_answer(shop, path, non_personal)
    # a variant pinned to the older version
    older, newer = sorted(shop.versions)
    exp = {
        "start": "2020-01-01T00:00:00Z",
        "end": "2099-01-01T00:00:00Z",
        "salt": "s2",
        "variants": [{"name": "old", "share": 1.0, "model_version": older}],
    }
    assert _fresh("PUT", f"{shop.url}/v1/admin/experiments/pinned", json=exp, headers=H).is_success
    _every_answer(shop, path, lambda b: non_personal(b) and b["variant"] == "old")
    assert _fresh("DELETE", f"{shop.url}/v1/admin/experiments/pinned", headers=H).is_success
    # a rollback to the older version, followed by every worker
    assert run_cli(["models", "rollback"], shop.env).returncode == 0
    _every_answer(shop, "/readyz", lambda b: b.get("model_version") == older)
    _every_answer(shop, path, non_personal)
    # batch scoring
    out = shop.home / "batch.csv"
    done = run_cli(["recommend", "--all", "--out", str(out)], shop.env)
    assert done.returncode == 0, done.stderr
    assert f"\n{user}," not in out.read_text()
    # re-ingesting the same files stores none of their rows, nor their profile (it came back
    # in clear from the customers file), and says so
    reingest = ["ingest", str(shop.data / "events.csv.gz")]
    again = run_cli([*reingest, "--customers", str(shop.data / "customers.csv")], shop.env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("erased        ") == 2, again.stdout
    # a restart of both workers
    shop.stop()
    shop.start()
    _every_answer(shop, path, non_personal)
    assert run_cli(["models", "promote", newer], shop.env).returncode == 0
    # registering them again is refused while a version knows them (both of this shop's were
    # trained on their events): it let serving bring back what they erased
    r = _fresh("POST", f"{shop.url}/v1/users/{user}/register", headers=H)
    assert r.status_code == 409, r.text
    assert all(v in r.json()["message"] for v in shop.versions)
    _every_answer(shop, path, non_personal)
    if shop.backend == "sqlite":
        raw = b"".join(
            p.read_bytes() for p in (shop.home).glob("*.db*") if p.is_file()
        )  # the database, its WAL and shared-memory files
        assert raw, "the SQLite files were found"
        assert user.encode() not in raw


def _json(path: Path) -> Any:
    import json

    return json.loads(path.read_text(encoding="utf-8"))


def _opted_out_customer(data: Path) -> str:
    import csv

    with open(data / "customers.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["marketing_opt_out"] == "true":
                return row["user_id"]
    raise AssertionError("the generated shop has a customer who opted out of marketing")


def test_a_purchase_leaves_every_workers_next_list_at_once(shop: Shop) -> None:
    """An acknowledged purchase is in the customer's very next list on either worker: with
    ``exclude_purchased`` the item is gone, whether the model or the popular fill had it."""
    for n in range(40, 52):
        user = f"u{n:04d}"
        path = f"/v1/users/{user}/recommendations?k=3&exclude_purchased=true"
        first = _ids(_fresh("GET", f"{shop.url}{path}").json())[0]
        body = [
            {
                "event_id": f"buy-{shop.backend}-{user}",
                "user_id": user,
                "item_id": first,
                "event_type": "purchase",
                "timestamp": time.time(),
            }
        ]
        assert _fresh("POST", f"{shop.url}/v1/events", json=body, headers=H).status_code == 200
        for _ in range(6):  # fresh connections: both workers answer some
            assert first not in _ids(_fresh("GET", f"{shop.url}{path}").json())


def test_a_late_purchase_leaves_every_workers_next_list_and_the_batch_one(shop: Shop) -> None:
    """A purchase dated before the serving version's as-of but stored after it was trained
    (a till's late upload) was invisible until the next training: it is in the customer's
    next list on either worker, and in batch scoring."""
    from recsys.artifacts import Manifest

    registry = Registry(shop.home / "models")
    version = registry.current_version() or ""
    as_of = Manifest.parse(registry.manifest(version), version).as_of_micros()
    bought: dict[str, str] = {}
    for n in range(52, 58):
        user = f"u{n:04d}"
        path = f"/v1/users/{user}/recommendations?k=3&exclude_purchased=true"
        bought[user] = _ids(_fresh("GET", f"{shop.url}{path}").json())[0]
        body = {
            "event_id": f"late-{shop.backend}-{user}",
            "user_id": user,
            "item_id": bought[user],
            "event_type": "purchase",
            "timestamp": as_of / 1e6 - 3 * 86_400,  # three days before the version's as-of
        }
        assert _fresh("POST", f"{shop.url}/v1/events", json=body, headers=H).status_code == 200
        for _ in range(6):  # fresh connections: both workers answer some
            assert bought[user] not in _ids(_fresh("GET", f"{shop.url}{path}").json())
    users = shop.home / "late-users.txt"
    users.write_text("\n".join(bought) + "\n", encoding="utf-8")
    out = shop.home / "late.csv"
    argv = ["recommend", "--users", str(users), "--k", "3", "--exclude-purchased"]
    done = run_cli([*argv, "--out", str(out)], shop.env)
    assert done.returncode == 0, done.stderr
    listed = [line.split(",")[:3] for line in out.read_text().splitlines()[1:]]
    assert {u for u, _, _ in listed} == set(bought)
    assert not [(u, item) for u, _, item in listed if bought[u] == item]


def test_a_live_customers_kept_list_ends_at_their_next_event_on_every_worker(
    shop: Shop,
) -> None:
    """Each worker keeps a live customer's list under the mark of their events since the
    version; their next event, acknowledged by either worker, ends it on both at once: the
    item they then buy leaves their very next list."""
    personal = [
        u
        for u in (f"u{n:04d}" for n in range(200, 260))
        if _fresh("GET", f"{shop.url}/v1/users/{u}/recommendations?k=3").json()["fallback"] is None
    ]
    assert len(personal) >= 4, "the generated shop has customers with a personal list"
    for user in personal[:4]:
        path = f"/v1/users/{user}/recommendations?k=3&exclude_purchased=true"
        view = {"user_id": user, "item_id": "i0002", "event_type": "view"}
        body = [{**view, "event_id": f"kept-view-{shop.backend}-{user}", "timestamp": time.time()}]
        assert _fresh("POST", f"{shop.url}/v1/events", json=body, headers=H).status_code == 200
        kept = [_fresh("GET", f"{shop.url}{path}").json() for _ in range(6)]  # both workers
        assert all(answer["fallback"] is None for answer in kept), kept
        first = _ids(kept[-1])[0]
        body = [
            {
                "event_id": f"kept-buy-{shop.backend}-{user}",
                "user_id": user,
                "item_id": first,
                "event_type": "purchase",
                "timestamp": time.time(),
            }
        ]
        assert _fresh("POST", f"{shop.url}/v1/events", json=body, headers=H).status_code == 200
        for _ in range(6):
            assert first not in _ids(_fresh("GET", f"{shop.url}{path}").json())


def test_a_stock_change_holds_across_a_retrain_reload_and_a_rollback(shop: Shop) -> None:
    """Workers read only the catalogue rows changed since their version was trained: a change
    made before a newer version is in that version, and a rollback to an older version reads
    again what that version did not see."""
    hero = "i0007"  # pinned first in every list while it is in stock
    path = "/v1/popular?k=5"
    in_stock = lambda b: _ids(b)[:1] == [hero]  # noqa: E731
    out_of_stock = lambda b: hero not in _ids(b)  # noqa: E731
    _every_answer(shop, path, in_stock)
    before = Registry(shop.home / "models").current_version()
    assert before
    patch = {"in_stock": False}
    assert _fresh("PATCH", f"{shop.url}/v1/items/{hero}", json=patch, headers=H).is_success
    _every_answer(shop, path, out_of_stock)
    # a newer version, trained after the change, holds it; both workers reload onto it
    config = shop.home.parent / "train.toml"
    done = run_cli(["train", "--config", str(config), "--force"], shop.env, timeout=300)
    assert done.returncode == 0, done.stderr
    newest = Registry(shop.home / "models").current_version()
    assert newest and newest != before
    _every_answer(shop, "/readyz", lambda b: b.get("model_version") == newest)
    _every_answer(shop, path, out_of_stock)
    # back to the version trained while it was in stock: the workers read again the rows
    # that version did not see
    assert run_cli(["models", "promote", before], shop.env).returncode == 0
    _every_answer(shop, "/readyz", lambda b: b.get("model_version") == before)
    _every_answer(shop, path, out_of_stock)
    # a change after both versions, then the newer one again: the change holds
    back = {"in_stock": True}
    assert _fresh("PATCH", f"{shop.url}/v1/items/{hero}", json=back, headers=H).is_success
    _every_answer(shop, path, in_stock)
    assert run_cli(["models", "promote", newest], shop.env).returncode == 0
    _every_answer(shop, "/readyz", lambda b: b.get("model_version") == newest)
    _every_answer(shop, path, in_stock)

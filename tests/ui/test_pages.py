"""The merchandiser's page through the app: login, every page, every form, and the checks
that keep it private (session, form token, origin)."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from recsys.experiments.exposures import read_exposures
from recsys.offers.campaigns import CAMPAIGN_COLUMNS
from recsys.store.base import EventStore
from serving.ui.auth import Signer
from tests.ui.conftest import KEY, csrf_of, login

PAGES = [
    "/ui/customers",
    "/ui/customers/u1",
    "/ui/items",
    "/ui/items/A",
    "/ui/rules",
    "/ui/experiments",
    "/ui/models",
    "/ui/campaigns",
]


def titles_in(html: str, list_id: str) -> list[str]:
    """The item titles of one rendered list, in order."""
    section = html.split(f'id="{list_id}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'class="title" href="[^"]+">([^<]+)</a>', section)


def experiment_toml(name: str = "hero-test", share: float = 0.5) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        f'name = "{name}"\nsalt = "s1"\nstart = {(now - timedelta(days=1)).isoformat()}\n'
        f"end = {(now + timedelta(days=10)).isoformat()}\n"
        f'[[variants]]\nname = "control"\nshare = {share}\n'
        f'[[variants]]\nname = "treatment"\nshare = {1 - share}\n'
    )


def wait_for_exposures(store: EventStore, n: int) -> None:
    """Until the API's background writer has stored ``n`` exposures of hero-test."""
    deadline = time.monotonic() + 5
    while len(read_exposures(store, experiment="hero-test").ts) < n:
        assert time.monotonic() < deadline, "exposures were not written"
        time.sleep(0.05)


# -- login, logout, redirects ------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_the_login(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/login?next={path}"


def test_ui_root_sends_to_login_then_to_customers(client: TestClient) -> None:
    assert client.get("/ui").headers["location"] == "/ui/login"
    login(client)
    assert client.get("/ui").headers["location"] == "/ui/customers"


def test_login_form_has_a_password_field_and_labels(client: TestClient) -> None:
    html = client.get("/ui/login").text
    assert '<input type="password" id="api_key" name="api_key"' in html
    assert '<label for="api_key">' in html
    assert '<html lang="en">' in html


def test_a_wrong_key_is_refused_and_sets_no_cookie(client: TestClient) -> None:
    r = client.post("/ui/login", data={"api_key": "not-a-key"})
    assert r.status_code == 401
    assert "not valid" in r.text
    assert "recsys_ui" not in client.cookies
    assert client.post("/ui/login", data={"api_key": ""}).status_code == 401


def test_the_session_cookie_is_signed_http_only_and_same_site(client: TestClient) -> None:
    r = client.post("/ui/login", data={"api_key": KEY, "next": "/ui/models"})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/models"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    assert KEY not in cookie  # the key itself is never stored in the browser
    assert KEY not in r.headers["location"]
    assert client.get("/ui/models").status_code == 200


def test_login_never_redirects_to_another_site(client: TestClient) -> None:
    for target in ("https://evil.example/", "//evil.example/ui/x", "/v1/admin/models"):
        r = client.post("/ui/login", data={"api_key": KEY, "next": target})
        assert r.headers["location"] == "/ui/customers", target


def test_a_forged_or_altered_cookie_is_no_session(client: TestClient) -> None:
    login(client)
    value = client.cookies["recsys_ui"]
    head, mac = value.split(".")
    client.cookies.set("recsys_ui", f"{head}.{mac[:-2]}AA", path="/ui")
    assert client.get("/ui/models").status_code == 303
    client.cookies.set("recsys_ui", "garbage", path="/ui")
    assert client.get("/ui/models").status_code == 303


def test_sessions_expire_and_end_with_their_key() -> None:
    signer = Signer(lambda: b"s" * 32, session_seconds=60)
    value = signer.issue(b"k1", now=1000.0)
    assert signer.check(value, [b"k1", b"k2"], now=1030.0) is not None
    assert signer.check(value, [b"k1"], now=1061.0) is None  # expired
    assert signer.check(value, [b"k2"], now=1030.0) is None  # its key was revoked
    other = Signer(lambda: b"t" * 32, session_seconds=60)
    assert other.check(value, [b"k1"], now=1030.0) is None  # another secret


def test_logout_needs_the_form_token_then_ends_the_session(client: TestClient) -> None:
    login(client)
    assert client.post("/ui/logout").status_code == 403
    assert client.post("/ui/logout", data={"csrf": "0" * 64}).status_code == 403
    token = csrf_of(client.get("/ui/customers").text)
    r = client.post("/ui/logout", data={"csrf": token})
    assert r.status_code == 303
    assert r.headers["location"].startswith("/ui/login")
    client.cookies.clear()  # what the browser does with the expired cookie it was sent
    assert 'recsys_ui=""' in r.headers["set-cookie"] or "Max-Age=0" in r.headers["set-cookie"]
    assert client.get("/ui/customers").status_code == 303


def test_errors_under_ui_are_pages_and_the_api_keeps_json(logged_in: TestClient) -> None:
    state = logged_in.app.state.recsys  # type: ignore[attr-defined]
    engine, state.engine = state.engine, None
    try:
        r = logged_in.get("/ui/customers/u1")
        assert r.status_code == 503
        assert r.headers["content-type"].startswith("text/html")
        assert "no valid model version is loaded" in r.text
        api = logged_in.get("/v1/users/u1/recommendations")
        assert api.status_code == 503 and api.json()["error"] == "ModelError"
    finally:
        state.engine = engine


def test_a_form_posted_from_another_site_is_refused(logged_in: TestClient) -> None:
    token = csrf_of(logged_in.get("/ui/items/A").text)
    r = logged_in.post(
        "/ui/items/A/stock",
        data={"csrf": token, "in_stock": "false"},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert "another site" in r.text and r.headers["content-type"].startswith("text/html")
    assert 'badge ok">in stock' in logged_in.get("/ui/items/A").text


def test_pages_are_not_cached_and_say_how_long_they_took(logged_in: TestClient) -> None:
    for path in PAGES:
        r = logged_in.get(path)
        assert r.status_code == 200, path
        assert r.headers["cache-control"] == "no-store"
        took = float(r.headers["server-timing"].split("dur=")[1])
        assert 0 < took < 2000, (path, took)


# -- customers ---------------------------------------------------------------------------------


def test_search_opens_an_exact_id_and_lists_prefixes(logged_in: TestClient) -> None:
    assert logged_in.get("/ui/customers?q=u1").headers["location"] == "/ui/customers/u1"
    html = logged_in.get("/ui/customers?q=u").text
    assert 'href="/ui/customers/u2"' in html and 'href="/ui/customers/u3"' in html
    assert "No customer id starts with" in logged_in.get("/ui/customers?q=zz").text


def test_search_lists_no_id_of_every_customer(
    logged_in: TestClient, no_list_of_every_id: None
) -> None:
    """The search asks the store and the version's vocabulary for the ids with the prefix:
    no worker keeps (or makes) a list of every customer."""
    html = logged_in.get("/ui/customers?q=u").text
    assert 'href="/ui/customers/u2"' in html and 'href="/ui/customers/u3"' in html
    assert logged_in.get("/ui/customers?q=u1").headers["location"] == "/ui/customers/u1"
    # a query longer than any id finds none, at once
    long = logged_in.get("/ui/customers", params={"q": "u" * 20_000})
    assert long.status_code == 200 and "No customer id starts with" in long.text


def test_customer_page_profile_history_lists_and_offers(logged_in: TestClient) -> None:
    html = logged_in.get("/ui/customers/u1").text
    assert "United Kingdom" in html
    # history: titles, dates, the picture of the item that has one
    assert '<a href="/ui/items/A">mug</a>' in html
    assert re.search(r"<td data-label=\"Date\">2020-0\d-\d\d</td>", html)
    assert 'src="/ui/static/favicon.svg"' in html
    # recommendations by title with reasons in words; u1 bought A, so B (next to A) leads
    recs = titles_in(html, "list-1")
    assert recs[0] == "cup"
    assert "chosen by the hybrid model (learned re-ranking)" in html
    assert "model:hybrid" not in html
    # an offer, with its reason naming the item by title
    assert "often bought with mug (A)" in html
    assert "expected value" in html


def test_opted_out_customer_is_shown_as_such(logged_in: TestClient) -> None:
    html = logged_in.get("/ui/customers/u2").text
    assert "opted out" in html
    assert "not personal: popular" in html


def test_side_by_side_with_another_version(logged_in: TestClient) -> None:
    html = logged_in.get("/ui/customers/u1").text
    versions = re.findall(r'option value="version:([^"]+)"', html)
    assert len(versions) == 2
    older = min(versions)
    html = logged_in.get(f"/ui/customers/u1?compare=version:{older}").text
    assert f"Model version {older}" in html
    assert titles_in(html, "list-2")[0] == "cup"
    # the offers as that version would make them, beside the customer's own
    assert f"Offers: Model version {older}</h2>" in html
    assert "Offers:" not in logged_in.get("/ui/customers/u1").text
    bad = logged_in.get("/ui/customers/u1?compare=version:20990101T000000Z-000000").text
    assert "cannot be loaded" in bad or "does not exist" in bad


def test_experiment_arm_and_variants_without_logging_exposures(
    logged_in: TestClient, ui_store: EventStore
) -> None:
    token = csrf_of(logged_in.get("/ui/experiments").text)
    r = logged_in.post("/ui/experiments", data={"csrf": token, "text": experiment_toml()})
    assert r.headers["location"].startswith("/ui/experiments/hero-test")
    html = logged_in.get("/ui/customers/u1").text
    arm = re.search(r'<strong id="arm">(\w+)</strong>', html)
    assert arm and arm.group(1) in ("control", "treatment")
    assert 'value="variant:hero-test:treatment"' in html
    html = logged_in.get("/ui/customers/u1?compare=variant:hero-test:treatment").text
    assert "Experiment hero-test, variant treatment" in html
    # the API logs its exposure; the page's look did not
    assert logged_in.get("/v1/users/u1/recommendations?k=3").json()["experiment"] == "hero-test"
    wait_for_exposures(ui_store, 1)
    time.sleep(0.5)  # longer than the writer's flush interval: nothing else is coming
    assert len(read_exposures(ui_store, experiment="hero-test").ts) == 1


# -- items -------------------------------------------------------------------------------------


def test_item_page_related_lists_and_stock_toggle(logged_in: TestClient) -> None:
    html = logged_in.get("/ui/items/A?customer=u1").text
    assert "Bought together" in html and "Often viewed with" in html
    assert titles_in(html, "related-2")[0] == "cup"  # B is A's strongest neighbour
    html = logged_in.get("/ui/items/B?customer=u1").text
    assert "This item is <strong>#1</strong> in the list of u1" in html
    token = csrf_of(html)
    r = logged_in.post(
        "/ui/items/B/stock", data={"csrf": token, "in_stock": "false", "customer": "u1"}
    )
    assert r.status_code == 303
    html = logged_in.get(r.headers["location"]).text
    assert "Out of stock: it has left every list." in html
    assert "This item is <strong>not</strong> in the list of u1" in html
    # the API and the stored catalogue agree: one write path
    assert logged_in.get("/v1/items/B").json()["in_stock"] is False
    api = logged_in.get("/v1/users/u1/recommendations?k=5").json()
    assert "B" not in [i["item_id"] for i in api["items"]]
    logged_in.post("/ui/items/B/stock", data={"csrf": token, "in_stock": "true"})
    assert logged_in.get("/v1/items/B").json()["in_stock"] is True
    # anything else is refused, as the API refuses it (it read as "false")
    r = logged_in.post("/ui/items/B/stock", data={"csrf": token, "in_stock": "maybe"})
    assert (
        "in_stock: &#39;maybe&#39; is not true or false"
        in logged_in.get(r.headers["location"]).text
    )
    assert logged_in.get("/v1/items/B").json()["in_stock"] is True


def test_price_form_and_unknown_item(logged_in: TestClient) -> None:
    token = csrf_of(logged_in.get("/ui/items/A").text)
    r = logged_in.post("/ui/items/A/price", data={"csrf": token, "price": "abc"})
    assert "not a number" in logged_in.get(r.headers["location"]).text
    logged_in.post("/ui/items/A/price", data={"csrf": token, "price": "4.5"})
    assert logged_in.get("/v1/items/A").json()["price"] == 4.5
    r = logged_in.get("/ui/items/NOPE")
    assert r.status_code == 404
    assert "item &#39;NOPE&#39; is not in the catalogue" in r.text
    assert logged_in.get("/ui/items?q=mu").text.count('href="/ui/items/A"') == 1


# -- rules -------------------------------------------------------------------------------------

PIN_H = '[[pin]]\nname = "hero"\nitem = "H"\nposition = 1\n'


def test_rules_are_validated_as_the_api_does(logged_in: TestClient) -> None:
    token = csrf_of(logged_in.get("/ui/rules").text)
    bad = '[[boost]]\nname = "x"\ncategories = ["Home"]\nfactor = 0\n'
    r = logged_in.post("/ui/rules", data={"csrf": token, "text": bad, "customer": "u1"})
    assert r.status_code == 422
    assert "boost.0.factor" in r.text and "greater than 0" in r.text
    r = logged_in.post("/ui/rules", data={"csrf": token, "text": "pin = [", "action": "save"})
    assert r.status_code == 422 and "not valid TOML" in r.text


def test_rules_preview_then_save_serves_the_pin_first(
    logged_in: TestClient, app_settings: object
) -> None:
    token = csrf_of(logged_in.get("/ui/rules").text)
    r = logged_in.post("/ui/rules", data={"csrf": token, "text": PIN_H, "customer": "u1"})
    assert r.status_code == 200
    assert titles_in(r.text, "before")[0] == "cup"
    assert titles_in(r.text, "after")[0] == "bag"
    assert "pinned by the rule &#39;hero&#39;" in r.text
    # a preview changes nothing served
    api = logged_in.get("/v1/users/u1/recommendations?k=3").json()
    assert api["items"][0]["item_id"] == "B"
    r = logged_in.post(
        "/ui/rules", data={"csrf": token, "text": PIN_H, "customer": "u1", "action": "save"}
    )
    assert r.status_code == 303
    home = logged_in.app.state.recsys.settings.home  # type: ignore[attr-defined]
    assert (home / "rules.toml").read_text() == PIN_H
    api = logged_in.get("/v1/users/u1/recommendations?k=3").json()
    assert api["items"][0] == {"item_id": "H", "score": api["items"][0]["score"],
                               "reasons": api["items"][0]["reasons"]}  # fmt: skip
    assert "rule:pin:hero" in api["items"][0]["reasons"]
    assert PIN_H in logged_in.get("/ui/rules").text.replace("&#34;", '"')


# -- experiments -------------------------------------------------------------------------------


def test_experiment_list_report_stop_start_and_edit(
    logged_in: TestClient, ui_store: EventStore
) -> None:
    token = csrf_of(logged_in.get("/ui/experiments").text)
    bad = experiment_toml().replace("share = 0.5", "share = 0.7", 1) + "oops = 1\n"
    r = logged_in.post("/ui/experiments", data={"csrf": token, "text": bad})
    assert "oops" in logged_in.get(r.headers["location"]).text  # the unknown key is named
    logged_in.post("/ui/experiments", data={"csrf": token, "text": experiment_toml()})
    listing = logged_in.get("/ui/experiments").text
    assert 'href="/ui/experiments/hero-test"' in listing and "running" in listing
    assert "No report yet" in logged_in.get("/ui/experiments/hero-test").text
    for j in range(40):
        logged_in.get(f"/v1/users/visitor-{j}/recommendations?k=2")
    wait_for_exposures(ui_store, 40)
    html = logged_in.get("/ui/experiments/hero-test").text
    assert "Sample ratio OK" in html
    # the sample-ratio line comes before the tables
    assert html.index('id="srm"') < html.index('id="variants-h"')
    png = logged_in.get("/ui/experiments/hero-test/plot.png")
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    r = logged_in.post("/ui/experiments/hero-test", data={"csrf": token, "action": "stop"})
    stopped = logged_in.get(r.headers["location"]).text
    assert "Stopped." in stopped and "Resume now" in stopped
    admin = "/v1/admin/experiments/hero-test"
    started = logged_in.get(admin, headers={"X-API-Key": KEY}).json()["start"]
    api = logged_in.get("/v1/users/u1/recommendations?k=3").json()
    assert api["experiment"] is None
    r = logged_in.post("/ui/experiments/hero-test", data={"csrf": token, "action": "start"})
    assert logged_in.get("/v1/users/u1/recommendations?k=3").json()["experiment"] == "hero-test"
    # resumed, not restarted: the lists shown before it stopped stay in its report
    assert logged_in.get(admin, headers={"X-API-Key": KEY}).json()["start"] == started
    assert "Stop now" in logged_in.get("/ui/experiments/hero-test").text
    edited = experiment_toml().replace('salt = "s1"', 'salt = "s2"')
    r = logged_in.post(
        "/ui/experiments/hero-test", data={"csrf": token, "action": "save", "text": edited}
    )
    assert "Saved." in logged_in.get(r.headers["location"]).text
    assert (
        logged_in.get("/v1/admin/experiments/hero-test", headers={"X-API-Key": KEY}).json()["salt"]
        == "s2"
    )
    wrong = experiment_toml("other-name")
    r = logged_in.post(
        "/ui/experiments/hero-test", data={"csrf": token, "action": "save", "text": wrong}
    )
    assert "URL names experiment" in logged_in.get(r.headers["location"]).text
    assert logged_in.get("/ui/experiments/nope").status_code == 404
    # "New experiment" with a running one's name does not replace it (it did: its users were
    # reassigned under another salt)
    again = experiment_toml().replace('salt = "s1"', 'salt = "s9"')
    r = logged_in.post("/ui/experiments", data={"csrf": token, "text": again})
    assert r.headers["location"].startswith("/ui/experiments?")
    assert (
        "an experiment named &#39;hero-test&#39; exists already"
        in logged_in.get(r.headers["location"]).text
    )
    admin = logged_in.get("/v1/admin/experiments/hero-test", headers={"X-API-Key": KEY}).json()
    assert admin["salt"] == "s2"


# -- models ------------------------------------------------------------------------------------


def test_models_marks_serving_and_promotes_and_rolls_back(logged_in: TestClient) -> None:
    html = logged_in.get("/ui/models").text
    versions = sorted(set(re.findall(r"<code>(\d{8}T\d{6}Z-[0-9a-f]{6})</code>", html)))
    assert len(versions) == 2
    older, newer = versions
    assert html.count('badge ok">serving') == 1
    assert "0.2500" in html and "ndcg@10 per model" in html  # metrics table and chart
    token = csrf_of(html)
    r = logged_in.post("/ui/models", data={"csrf": token, "action": "promote", "version": older})
    assert f"Now serving {older}" in logged_in.get(r.headers["location"]).text
    assert logged_in.get("/v1/users/u1/recommendations?k=1").json()["model_version"] == older
    r = logged_in.post("/ui/models", data={"csrf": token, "action": "rollback"})
    assert f"now serving {newer}" in logged_in.get(r.headers["location"]).text
    r = logged_in.post(
        "/ui/models", data={"csrf": token, "action": "promote", "version": "no-such"}
    )
    assert "not a model version name" in logged_in.get(r.headers["location"]).text


# -- campaigns ---------------------------------------------------------------------------------


def _campaign_page(client: TestClient, query: str) -> str:
    """The preview page once computed (the first answer says it is computing, at once)."""
    deadline = time.monotonic() + 60
    while True:
        html = client.get(f"/ui/campaigns?{query}").text
        if 'id="computing"' not in html:
            return html
        assert 'http-equiv="refresh"' in html
        assert time.monotonic() < deadline, "the preview was never computed"
        time.sleep(0.1)


def test_campaign_preview_filters_and_csv(logged_in: TestClient, ui_store: EventStore) -> None:
    first = logged_in.get("/ui/campaigns?date=2020-09-14").text
    assert 'id="computing"' in first, "a new date answers at once and computes behind"
    html = _campaign_page(logged_in, "date=2020-09-14")
    summary = re.search(r'id="summary"><strong>(\d+)</strong> offers', html)
    assert summary and int(summary.group(1)) >= 1
    assert 'href="/ui/customers/u1"' in html
    r = logged_in.get("/ui/campaigns.csv?date=2020-09-14")
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="campaign-2020-09-14.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == list(CAMPAIGN_COLUMNS)
    assert len(rows) == int(summary.group(1))
    none = logged_in.get("/ui/campaigns.csv?date=2020-09-14&trigger=birthday&segment=none")
    assert none.text.strip() == ",".join(CAMPAIGN_COLUMNS)
    assert "not a date" in logged_in.get("/ui/campaigns?date=2020-13-45").text
    # a preview records nothing: the real run of that date still sends
    from recsys.offers.store import sends_on

    assert sends_on(ui_store, "2020-09-14") == []


# -- /docs -------------------------------------------------------------------------------------


def test_docs_use_only_packaged_files(client: TestClient) -> None:
    html = client.get("/docs").text
    assert "/ui/static/swagger/swagger-ui-bundle.js" in html
    assert "/ui/static/swagger/swagger-ui.css" in html
    assert not re.search(r"(src|href)=\"https?://", html)
    js = client.get("/ui/static/swagger/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 500_000
    assert client.get("/ui/static/swagger/swagger-ui.css").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "recsys"
    assert client.get("/redoc").status_code == 404


# -- accessibility -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [*PAGES, "/ui/customers/u1?compare=variant:none:x", "/ui/experiments/hero-test"]
)
def test_every_control_has_a_label_and_every_page_one_heading(
    logged_in: TestClient, path: str
) -> None:
    token = csrf_of(logged_in.get("/ui/experiments").text)
    logged_in.post("/ui/experiments", data={"csrf": token, "text": experiment_toml()})
    html = logged_in.get(path).text
    assert html.count("<h1") == 1, path
    labelled = set(re.findall(r'<label for="([^"]+)"', html))
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", html):
        if 'type="hidden"' in tag:
            continue
        found = re.search(r'id="([^"]+)"', tag)
        assert found and found.group(1) in labelled, f"{path}: {tag} has no label"
    for img in re.findall(r"<img\b[^>]*>", html):
        assert "alt=" in img, f"{path}: {img} has no alt text"
    assert 'href="#content"' in html  # the skip link

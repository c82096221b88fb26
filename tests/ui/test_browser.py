"""The merchandiser's page in a real headless Chromium against a real ``recsys serve``.

A generated shop is trained by ``recsys train`` (the fast models of the live-state tests, with
"bought together" and "often viewed with") and served by a subprocess; Selenium drives Debian's
``chromium`` through ``chromedriver``. The browser may reach 127.0.0.1 only (every other host
name fails to resolve), so the page and ``/docs`` are shown to work without a network, and every
step fails on any error the browser's console reports.

Set ``RECSYS_UI_SCREENSHOTS=folder`` to also save a screenshot of each page there (the README's
pictures are taken this way, see ``docs/screenshots``).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reliability.helpers import SHOP_TRAINING_TOML, Server, child_env, run_cli

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "browser-key"
H = {"X-API-Key": KEY}
#: How long the page may take to show a change (the live refresh interval is 0.25 s here).
WAIT_S = 10.0

TRAINING_TOML = SHOP_TRAINING_TOML


def _missing() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (
            f"needs Debian's chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER}): "
            "apt-get install chromium chromium-driver (.ci/run installs them)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium (pip install -e '.[dev]')"
    return None


if (why := _missing()) is not None:
    pytest.skip(why, allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver import Chrome as WebDriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402


@dataclass
class Shop:
    """A trained home served by a ``recsys serve`` subprocess."""

    server: Server
    home: Path

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30.0, **kw)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """A generated shop, trained, served by one worker (no rules file: the page saves
    ``$RECSYS_HOME/rules.toml``)."""
    root = tmp_path_factory.mktemp("browser")
    home, data = root / "home", root / "data"
    env = child_env(home, RECSYS_API_KEYS=KEY, RECSYS_LIVE_REFRESH_S="0.25")
    gen = run_cli(["generate", "--users", "300", "--items", "120", "--out", str(data)], env)
    assert gen.returncode == 0, gen.stderr
    ingest = run_cli(
        [
            "ingest",
            str(data / "events.csv.gz"),
            "--catalog",
            str(data / "catalog.csv"),
            "--customers",
            str(data / "customers.csv"),
        ],
        env,
    )
    assert ingest.returncode == 0, ingest.stderr
    config = root / "train.toml"
    config.write_text(TRAINING_TOML, encoding="utf-8")
    for _ in range(2):  # two versions: the models page has something to compare
        done = run_cli(["train", "--config", str(config), "--force"], env, timeout=300)
        assert done.returncode == 0, done.stderr
    server = Server(env, root / "serve.log")
    server.start(timeout=90)
    try:
        deadline = time.monotonic() + 60
        while httpx.get(f"{server.url}/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        yield Shop(server, home)
    finally:
        server.kill()
        log = server.output()
        assert KEY not in log, "the API key was written to the server's log"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium that can reach 127.0.0.1 only, with its console log kept."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
        # no network: any host but 127.0.0.1 fails to resolve
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: WebDriver) -> list[str]:
    """Errors the console reported since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver: WebDriver, url: str) -> None:
    """Go to ``url`` and fail on any console error it caused."""
    driver.get(url)
    errors = console_errors(driver)
    assert not errors, f"{url}: console errors: {errors}"


def until(check: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    """Retry ``check`` until it returns something true (an element that the page replaced,
    or that is not there yet, while it reloads counts as "not yet")."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except (StaleElementReferenceException, NoSuchElementException):
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def find_list(driver: WebDriver, list_id: str) -> WebElement:
    """The section of a rendered list; when there is none, fail naming the page shown instead
    (its address, status heading and text), so a failure says what the browser got."""
    try:
        return driver.find_element(By.CSS_SELECTOR, f"section[aria-labelledby='{list_id}']")
    except NoSuchElementException:
        text = driver.find_element(By.TAG_NAME, "body").text[:800]
        raise AssertionError(
            f"no list {list_id!r} on {driver.current_url} ({driver.title!r}): {text!r}"
        ) from None


def list_items(driver: WebDriver, list_id: str = "list-1") -> list[str]:
    """The item ids of a rendered list, in order."""
    section = find_list(driver, list_id)
    rows = section.find_elements(By.CSS_SELECTOR, "li[data-item]")
    return [li.get_attribute("data-item") or "" for li in rows]


def list_titles(driver: WebDriver, list_id: str = "list-1") -> list[str]:
    """The titles of a rendered list, in order."""
    section = find_list(driver, list_id)
    return [a.text for a in section.find_elements(By.CSS_SELECTOR, "a.title")]


def shoot(driver: WebDriver, name: str) -> None:
    """Save a screenshot when ``RECSYS_UI_SCREENSHOTS`` names a folder."""
    folder = os.environ.get("RECSYS_UI_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def a_customer(shop: Shop) -> tuple[str, list[str]]:
    """A customer with a full personal list, and that list's item ids."""
    for j in range(300):
        uid = f"u{j:04d}"
        body = shop.api("GET", f"/v1/users/{uid}/recommendations?k=10").json()
        if body["fallback"] is None and len(body["items"]) == 10:
            return uid, [i["item_id"] for i in body["items"]]
    raise AssertionError("no customer with a personal list of 10")


def test_the_merchandisers_day(shop: Shop, browser: WebDriver) -> None:
    """Log in, see a customer's recommendations by title, take one out of stock, pin another
    with a rule, open an experiment's report, log out; no console error at any step."""
    d = browser
    console_errors(d)  # start clean

    # without a session every page sends to the login
    open_page(d, f"{shop.url}/ui/customers")
    assert d.current_url.startswith(f"{shop.url}/ui/login")
    shoot(d, "login")
    d.find_element(By.ID, "api_key").send_keys(KEY)
    d.find_element(By.ID, "login").click()
    until(lambda: d.current_url.endswith("/ui/customers"), "the customer search")
    assert KEY not in d.current_url
    cookie = d.get_cookie("recsys_ui")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not console_errors(d)

    # a customer: the titles of their recommendations, as the API ranks them
    uid, ids = a_customer(shop)
    d.find_element(By.ID, "q").send_keys(uid)
    d.find_element(By.ID, "find").click()
    until(lambda: d.current_url.endswith(f"/ui/customers/{uid}"), "the customer page")
    assert not console_errors(d)
    titles = [shop.api("GET", f"/v1/items/{i}").json()["title"] for i in ids]
    assert list_titles(d) == titles
    assert d.find_element(By.TAG_NAME, "h1").text == f"Customer {uid}"
    shoot(d, "customer")

    # take their first item out of stock on the item page: it leaves their list
    gone = ids[0]
    open_page(d, f"{shop.url}/ui/items/{gone}?customer={uid}")
    assert "#1" in d.find_element(By.ID, "position").text
    shoot(d, "item")
    d.find_element(By.ID, "stock-toggle").click()
    until(lambda: "out of stock" in d.find_element(By.ID, "stock").text, "out of stock")
    assert "not" in d.find_element(By.ID, "position").text
    assert not console_errors(d)
    open_page(d, f"{shop.url}/ui/customers/{uid}")
    now = list_items(d)
    assert gone not in now
    assert now[0] == ids[1]

    # pin their fifth item first with a rule: preview, save, and it serves first
    pinned = now[4]
    open_page(d, f"{shop.url}/ui/rules")
    area = d.find_element(By.ID, "text")
    area.clear()
    area.send_keys(f'[[pin]]\nname = "hero"\nitem = "{pinned}"\nposition = 1\n')
    d.find_element(By.ID, "customer").send_keys(uid)
    d.find_element(By.ID, "preview").click()
    until(lambda: d.find_elements(By.CSS_SELECTOR, "section[aria-labelledby='after']"), "preview")
    assert list_items(d, "after")[0] == pinned
    assert list_items(d, "before")[0] != pinned
    shoot(d, "rules")
    d.find_element(By.ID, "save").click()
    # the redirect after the save, not the page's text: the rules page always says where
    # rules are "Saved to", so that text was there before the save answered, and the next
    # page load raced the save's redirect (the browser stayed on the rules page)
    until(lambda: "note=Saved+to" in d.current_url, "the save")
    assert not console_errors(d)
    open_page(d, f"{shop.url}/ui/customers/{uid}")
    assert list_items(d)[0] == pinned
    assert "pinned by the rule 'hero'" in d.find_element(By.CSS_SELECTOR, "li[data-item]").text
    body = shop.api("GET", f"/v1/users/{uid}/recommendations?k=3").json()
    assert body["items"][0]["item_id"] == pinned

    # an experiment, created through the admin API, with exposures: its report
    now_utc = datetime.now(UTC).replace(microsecond=0)
    definition = {
        "salt": "browser-1",
        "start": (now_utc - timedelta(hours=1)).isoformat(),
        "end": (now_utc + timedelta(days=7)).isoformat(),
        "variants": [{"name": "control", "share": 0.5}, {"name": "treatment", "share": 0.5}],
    }
    put = shop.api("PUT", "/v1/admin/experiments/browser-test", headers=H, json=definition)
    assert put.status_code == 200, put.text
    until(
        lambda: shop.api("GET", f"/v1/users/{uid}/recommendations?k=2").json()["experiment"],
        "the experiment to run",
    )
    for j in range(60):
        shop.api("GET", f"/v1/users/u{j:04d}/recommendations?k=3")
    open_page(d, f"{shop.url}/ui/experiments")
    shoot(d, "experiments")
    d.find_element(By.LINK_TEXT, "browser-test").click()
    until(lambda: d.find_elements(By.ID, "srm"), "the report")

    def report_ready() -> bool:
        if "No report yet" not in d.find_element(By.ID, "srm").text:
            return True
        d.refresh()  # the exposures are written in the background
        return False

    until(report_ready, "exposures in the report")
    assert d.find_element(By.ID, "srm").text.startswith("Sample ratio")
    assert d.find_element(By.ID, "variants-h").is_displayed()
    until(
        lambda: d.execute_script("const i = document.querySelector('img.plot');"
                                 "return i && i.complete && i.naturalWidth > 0;"),
        "the report's plot",
    )  # fmt: skip
    shoot(d, "experiment")
    assert not console_errors(d)

    # models and campaigns pages open without errors (screenshots for the README)
    open_page(d, f"{shop.url}/ui/models")
    assert len(d.find_elements(By.CSS_SELECTOR, "span.badge.ok")) == 1
    shoot(d, "models")
    open_page(d, f"{shop.url}/ui/campaigns")
    # computed behind the page, which refreshes itself until the preview is there
    until(lambda: d.find_element(By.ID, "summary").is_displayed(), "the campaign preview")
    shoot(d, "campaigns")

    # log out: back at the login, and the pages are closed again
    d.find_element(By.ID, "logout").click()
    until(lambda: "/ui/login" in d.current_url, "the login page")
    assert d.get_cookie("recsys_ui") is None
    open_page(d, f"{shop.url}/ui/models")
    assert "/ui/login" in d.current_url
    assert not console_errors(d)

    # put things back for the other tests of this module
    shop.api("PATCH", f"/v1/items/{gone}", headers=H, json={"in_stock": True})
    shop.api("DELETE", "/v1/admin/experiments/browser-test", headers=H)


def test_docs_render_without_a_network(shop: Shop, browser: WebDriver) -> None:
    """Swagger UI from the package: the operations are listed, nothing fails to load."""
    open_page(browser, f"{shop.url}/docs")
    until(
        lambda: browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"),
        "the operations",
        timeout=20,
    )
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert any("/v1/users/{user_id}/recommendations" in p for p in paths)
    assert "recsys" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
    # every resource came from this server
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name);"
    )
    assert urls and all(u.startswith(shop.url) for u in urls), json.dumps(urls)
    assert not console_errors(browser)
    shoot(browser, "docs")


def test_phone_width_keeps_everything_reachable(shop: Shop, browser: WebDriver) -> None:
    """At 390 px wide the navigation wraps and no page scrolls sideways."""
    d = browser
    open_page(d, f"{shop.url}/ui/login")
    d.find_element(By.ID, "api_key").send_keys(KEY)
    d.find_element(By.ID, "login").click()
    until(lambda: d.current_url.endswith("/ui/customers"), "the customer search")
    d.set_window_size(390, 844)
    try:
        uid, _ = a_customer(shop)
        for path in (f"/ui/customers/{uid}", "/ui/rules", "/ui/models", "/ui/campaigns"):
            open_page(d, f"{shop.url}{path}")
            wide = d.execute_script(
                "return document.documentElement.scrollWidth > window.innerWidth + 1;"
            )
            assert not wide, f"{path} scrolls sideways at phone width"
        open_page(d, f"{shop.url}/ui/customers/{uid}")
        shoot(d, "customer-phone")
        # the first Tab reaches the skip link: keyboard users jump to the content
        d.find_element(By.TAG_NAME, "body").send_keys("\t")
        focused = d.switch_to.active_element
        assert focused.text == "Skip to content"
    finally:
        d.set_window_size(1280, 900)

"""The status page as a person sees it: Debian's headless Chromium, driven by Selenium.

Four simulated providers are archived by the real pipeline (one pass, as the
daemon's first): GeminiGen and Tengr.ai by history, CrowdComputed by history
with one result already expired (lost), Akool by tracked ids whose prompts the
submitter supplied, one of them hostile markup. Tengr.ai's CDN answers 503 to
the first two downloads, which are its two signed URLs (earliest deadline
first, one worker), so two files stay pending with a deadline 90 minutes away:
at risk, with a reason. Then the daemon's :class:`ApiServer` serves the page
with a token, and the browser checks what is on screen.

The browser is the system's (``/usr/bin/chromium`` and its ``chromedriver``,
installed by ``.ci/run``), started once for the module; Selenium Manager is
never asked to download anything. ``GENVAULT_SCREENSHOT=path`` also saves a
full-page screenshot (how ``docs/status-page.png`` was made).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from genvault.config import (
    AccountSettings,
    ArchiveSettings,
    DatabaseSettings,
    NetworkSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from genvault.jobs.pipeline import run_once
from genvault.runtime import Runtime
from genvault.server import ApiServer
from genvault.simulator import simulator_factory

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
KEY = "browser-page-sim-key-24c"  # 24 chars: Akool's AES-192 webhook key is the API key
TOKEN = "browser-token-9d2e71c4aa"
XSS = '<script>window.__xss=1</script>"onerror="window.__xss=2" <img src=x onerror=alert(1)>'
AKOOL_PROMPTS = [
    XSS,
    "studio product shot of a ceramic teapot, soft light",
    "poster of a mountain village at dawn, watercolor",
    "a red bicycle leaning on a yellow wall",
]

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    # Like PostgreSQL: a missing browser fails the run, it never passes it silently.
    pytest.fail(
        "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        pytrace=False,
    )


@dataclass
class Scene:
    rt: Runtime
    url: str
    sims: dict[str, Any]

    def archived(self, account: str) -> int:
        return sum(1 for a in self.rt.store.assets(account) if a["state"] == "archived")


PROVIDERS = {
    "studio-gemini": "geminigen",
    "tengr-art": "tengrai",
    "cc-workflows": "crowdcomputed",
    "akool-ads": "akool",
}
"""Account name -> provider, in the order the cards show them."""


def _simulators() -> dict[str, Any]:
    """One simulator per account, small files, nothing left processing."""
    make = simulator_factory
    return {
        "studio-gemini": make("geminigen")(
            api_key=KEY,
            seed=3,
            count=8,
            processing_count=0,
            failed_count=1,
            image_size=40_000,
            video_size=200_000,
            audio_size=30_000,
            thumbnail_size=8_000,
        ),
        "tengr-art": make("tengrai")(
            api_key=KEY,
            seed=4,
            count=7,
            processing_count=0,
            failed_count=1,
            canceled_count=0,
            signed_count=2,
            signed_ttl_seconds=5400,
            image_size=30_000,
        ),
        "cc-workflows": make("crowdcomputed")(
            api_key=KEY,
            seed=6,
            count=6,
            processing_count=0,
            failed_count=1,
            empty_count=0,
            expired_count=1,
            image_size=30_000,
            video_size=100_000,
        ),
        "akool-ads": make("akool")(
            api_key=KEY,
            seed=5,
            count=len(AKOOL_PROMPTS),
            processing_count=0,
            failed_count=0,
            upscaled_count=1,
            image_size=30_000,
            upscale_size=50_000,
        ),
    }


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("status-browser")
    sims = _simulators()
    for sim in sims.values():
        sim.start()
    token_file = tmp / "server-token"
    token_file.write_text(TOKEN + "\n")
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp / 'gv.db'}"),
        storage=StorageSettings(url=f"file://{tmp / 'archive'}"),
        network=NetworkSettings(allow_private=True, read_timeout=30),
        archive=ArchiveSettings(concurrency=1),  # strictly earliest deadline first
        server=ServerSettings(listen="127.0.0.1:0", token_file=token_file),
        accounts=tuple(
            AccountSettings(
                name=name,
                provider=PROVIDERS[name],
                api_key_env="SIM_KEY",
                base_url=sim.api_base,
                **sim.account_options,
            )
            for name, sim in sims.items()
        ),
    )
    rt = Runtime.build(settings, {a.name: SecretStr(KEY) for a in settings.accounts})
    rt.store.register_tasks(
        provider="akool",
        account="akool-ads",
        items=[
            {"id": i, "prompt": p}
            for i, p in zip(sims["akool-ads"].task_ids, AKOOL_PROMPTS, strict=True)
        ],
        source="track",
        poll_horizon=rt.poll_horizon,
    )
    sims["tengr-art"].faults.media_status_next = 2
    run_once(rt)
    server = ApiServer(rt, settings.server)
    try:
        yield Scene(rt, server.start(), sims)
    finally:
        server.stop()
        rt.close()
        for sim in sims.values():
            sim.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1600",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: WebDriver, what: Any, timeout: float = 10) -> Any:
    """Until ``what`` holds; an element of the page being left goes stale mid-check,
    which only means "not yet"."""
    return WebDriverWait(
        driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
    ).until(what)


def _login(driver: WebDriver, scene: Scene) -> None:
    """Open the page the way a person does: once with ``?token=``."""
    driver.get(f"{scene.url}/?token={TOKEN}")
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "article.card"))


def _path(driver: WebDriver) -> str:
    parts = urlsplit(driver.current_url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _images_loaded(driver: WebDriver) -> list[list[Any]]:
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")  # lazy images
    _wait(
        driver,
        lambda d: d.execute_script("return Array.from(document.images).every(i => i.complete)"),
    )
    images: list[list[Any]] = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
    )
    return images


# --------------------------------------------------------------------------- tests


def test_token_in_the_url_becomes_a_cookie_and_leaves_the_address_bar(
    browser: WebDriver, scene: Scene
) -> None:
    browser.delete_all_cookies()
    _login(browser, scene)
    assert _path(browser) == "/", "the redirect dropped the token"
    assert TOKEN not in browser.current_url
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies["genvault_page"]["httpOnly"] is True
    assert cookies["genvault_page"]["value"] != TOKEN
    assert browser.title == "genvault status"


def test_without_or_with_a_wrong_token_a_401_page(browser: WebDriver, scene: Scene) -> None:
    browser.delete_all_cookies()
    browser.get(scene.url + "/")
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading == "Token required"
    assert "studio-gemini" not in browser.page_source

    browser.get(scene.url + "/?token=not-the-token")
    assert "not right" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.CSS_SELECTOR, "article.card")

    # the 401 page's own box: type the token, land on the page, token not in the URL
    box = browser.find_element(By.NAME, "token")
    box.send_keys(TOKEN)
    box.submit()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "article.card"))
    assert _path(browser) == "/"


def test_cards_show_each_account_and_its_archived_count(browser: WebDriver, scene: Scene) -> None:
    _login(browser, scene)
    cards = browser.find_elements(By.CSS_SELECTOR, "article.card")
    assert [c.find_element(By.TAG_NAME, "h3").text for c in cards] == list(scene.sims)
    for card in cards:
        name = card.find_element(By.TAG_NAME, "h3").text
        archived = card.find_element(By.CSS_SELECTOR, '[data-stat="archived"] .n').text
        assert int(archived) == scene.archived(name) > 0, name
        assert "healthy" in card.text
    lost = browser.find_element(By.CSS_SELECTOR, '[data-account="cc-workflows"] [data-stat="lost"]')
    assert lost.text.split()[0] == "1"
    total = browser.find_element(By.CSS_SELECTOR, '[data-total="archived"] .n').text
    assert int(total.replace(",", "")) == sum(scene.archived(n) for n in scene.sims)


def test_thumbnails_load_from_the_archive(browser: WebDriver, scene: Scene) -> None:
    _login(browser, scene)
    images = _images_loaded(browser)
    assert len(images) >= 12
    assert all(src.startswith("/files/") for src, _ in images)
    broken = [src for src, width in images if not width]
    assert not broken, f"thumbnails that did not load: {broken}"
    providers = {
        f.text.split(" · ")[0] for f in browser.find_elements(By.CSS_SELECTOR, "figcaption .meta")
    }
    assert {"geminigen", "tengrai", "akool"} <= providers


def test_at_risk_lists_the_pending_files_with_time_left(browser: WebDriver, scene: Scene) -> None:
    pending = [a for a in scene.rt.store.assets("tengr-art") if a["state"] == "pending"]
    assert len(pending) == 2, "the two signed files met the CDN's 503s"
    _login(browser, scene)
    rows = browser.find_elements(By.CSS_SELECTOR, "#at-risk tbody tr")
    by_id = {r.find_elements(By.TAG_NAME, "td")[1].text: r for r in rows}
    for asset in pending:
        row = by_id[asset["external_id"]]
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        assert cells[0] == "tengr-art" and cells[2] == "result"
        left = re.fullmatch(r"(\d+)h (\d\d)m", cells[3])
        assert left is not None, cells[3]
        minutes = int(left.group(1)) * 60 + int(left.group(2))
        expected = (asset["expires_at"] - datetime.now(UTC)).total_seconds() / 60
        assert abs(minutes - expected) <= 2
        assert cells[4] == "signed url", "the deadline says where it comes from"
        assert "HTTP 503" in cells[6]
    at_risk = browser.find_element(By.CSS_SELECTOR, '[data-total="at-risk"] .n').text
    assert at_risk == "2"


def test_recent_failures_show_their_reason(browser: WebDriver, scene: Scene) -> None:
    _login(browser, scene)
    table = browser.find_element(By.ID, "failures")
    text = table.text
    assert "TransientDownloadError: HTTP 503 from media URL" in text
    assert "deadline passed" in text
    states = [
        row.find_elements(By.TAG_NAME, "td")[4].text
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert "lost" in states and any(s.startswith("retry in") for s in states)


def test_third_party_markup_is_shown_as_text(browser: WebDriver, scene: Scene) -> None:
    _login(browser, scene)
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "figcaption .prompt")]
    assert any(c.startswith('<script>window.__xss=1</script>"onerror=') for c in captions)
    assert browser.execute_script("return window.__xss === undefined")
    assert browser.execute_script("return document.querySelectorAll('script').length") == 0
    assert browser.execute_script("return document.querySelectorAll('[onerror]').length") == 0
    alts = browser.execute_script(
        "return Array.from(document.images).map(i => i.getAttribute('alt'))"
    )
    assert XSS[:40] in "\n".join(alts)
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018


def test_search_box_submits_and_shows_results(browser: WebDriver, scene: Scene) -> None:
    _login(browser, scene)
    box = browser.find_element(By.NAME, "q")
    box.send_keys("red bicycle")
    box.submit()
    _wait(browser, lambda d: d.find_elements(By.ID, "results"))
    assert _path(browser).startswith("/?q=red+bicycle")
    assert browser.find_element(By.NAME, "q").get_attribute("value") == "red bicycle"
    results = browser.find_element(By.ID, "results").text
    assert "a red bicycle leaning on a yellow wall" in results
    assert "akool / akool-ads" in results
    assert "studio product shot" not in results  # only the hit, not the other prompts
    box = browser.find_element(By.NAME, "q")
    box.clear()
    box.send_keys("zeppelin")
    box.submit()
    _wait(browser, lambda d: _path(d).startswith("/?q=zeppelin"))
    _wait(browser, lambda d: "zeppelin" in d.find_element(By.ID, "results").text)
    assert "No results for “zeppelin”." in browser.find_element(By.ID, "results").text


def test_the_whole_page_renders_to_a_screenshot(
    browser: WebDriver, scene: Scene, tmp_path: Path
) -> None:
    """The page as a picture, nothing cut off; ``GENVAULT_SCREENSHOT=docs/status-page.png``
    keeps it (that is how the README's picture is made)."""
    target = Path(os.environ.get("GENVAULT_SCREENSHOT") or tmp_path / "page.png")
    _login(browser, scene)
    _images_loaded(browser)
    # The window's outer size includes what headless Chromium keeps for its frame:
    # grow it until the viewport holds the whole page (no scrollbar, nothing cut).
    for _ in range(3):
        inner, outer, page = browser.execute_script(
            "return [window.innerHeight, window.outerHeight, document.documentElement.scrollHeight]"
        )
        if inner >= page:
            break
        browser.set_window_size(1280, max(1600, page) + (outer - inner))
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(str(target.resolve()))
    browser.set_window_size(1280, 1600)
    png = target.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    assert width >= 1280 and height >= 1600, (width, height)

"""The HTML report in a real browser: a mapper run and a target run against the sandbox, the page
drawn by `emailverify-report`, opened by the system's headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by `make test`) with every host name unresolvable, so a page that
needed the network would show it.

The screenshot and the page are kept under `test-artifacts/` at the repository root (gitignored)
for CI to keep.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHARTS = {"status", "substatus", "unknowns", "invalid-domains", "catch-all-domains", "throughput"}
TITLE = "Email verification report"


def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    found = _browser()
    if found is None:
        pytest.skip(
            "chromium and chromedriver not found: as root, apt-get install chromium "
            "chromium-driver (make test does it)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        # No host name resolves: the page must need nothing from a network.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,1000",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        yield driver
    finally:
        driver.quit()


def _run(command: list[str], stdin: str, timeout: float = 120) -> str:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _open(driver: Any, page: Path) -> list[dict[str, Any]]:
    """Load `page`, wait until plotly drew every chart, and return the console's entries."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # what an earlier page left
    driver.get(page.as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "return document.readyState === 'complete' && "
            "[...document.querySelectorAll('.chart')].every("
            "c => c.querySelector('.js-plotly-plot .main-svg'))"
        )
    )
    entries: list[dict[str, Any]] = driver.get_log("browser")
    return entries


def _screenshot(driver: Any, path: Path) -> None:
    """The whole page: the window grown until its viewport holds the page's height."""
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(1280, height)
    chrome = height - int(driver.execute_script("return window.innerHeight"))
    driver.set_window_size(1280, min(height + chrome, 12000))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1000)


@pytest.fixture(scope="module")
def reports(make_sandbox_module: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run: the mapper over a small world, the target writing its output (a few writes
    rejected, so dead letters exist), then `emailverify-report` over both reports."""
    sb = make_sandbox_module(seed=21, people=150)
    work = tmp_path_factory.mktemp("html-report")
    people = list(sb.world.iter_people())
    rejected = [person.id for person in people if person.id][:3]
    sb.obs.faults.pipelines_reject_ids = frozenset(rejected)
    lines = [
        {
            "type": "SCHEMA",
            "stream": "people",
            "key_properties": ["cio_id"],
            "schema": {
                "type": "object",
                "properties": {
                    "cio_id": {"type": "string"},
                    "id": {"type": ["string", "null"]},
                    "email": {"type": ["string", "null"]},
                },
            },
        },
        *(
            {
                "type": "RECORD",
                "stream": "people",
                "record": {"cio_id": p.cio_id, "id": p.id, "email": p.email},
            }
            for p in people
        ),
        {"type": "STATE", "value": {"bookmarks": {"people": {"done": True}}}},
    ]
    mapper_config = work / "mapper.json"
    mapper_config.write_text(
        json.dumps(
            sb.mapper_config(
                smtp_timeout=2,
                report_path=str(work / "mapper-report.json"),
                report_html_path=str(work / "mapper-report.html"),
            )
        )
    )
    verified = _run(
        [str(BIN / "mapper-emailverify"), "--config", str(mapper_config)],
        "".join(json.dumps(line) + "\n" for line in lines),
    )
    target_config = work / "target.json"
    target_config.write_text(
        json.dumps(
            sb.target_config(
                report_path=str(work / "target-report.json"),
                dead_letter_path=str(work / "dead-letter.jsonl"),
            )
        )
    )
    _run([str(BIN / "target-customerio-ev"), "--config", str(target_config)], verified)
    _run(
        [
            str(BIN / "emailverify-report"),
            "--mapper-report",
            str(work / "mapper-report.json"),
            "--target-report",
            str(work / "target-report.json"),
            "--html",
            str(work / "report.html"),
        ],
        "",
    )
    return work


@pytest.fixture(scope="module")
def make_sandbox_module() -> Iterator[Any]:
    """`make_sandbox`, for the module: one small world serves every test here."""
    from cio_sandbox import Sandbox, World

    started: list[Any] = []

    def make(**world: Any) -> Any:
        sb = Sandbox(World(**world)).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


def test_the_run_report_renders_in_chromium_with_its_charts(browser: Any, reports: Path) -> None:
    mapper = json.loads((reports / "mapper-report.json").read_text())
    target = json.loads((reports / "target-report.json").read_text())
    assert mapper["domains"]["invalid"] and mapper["domains"]["catch_all"], mapper["domains"]
    assert target["counts"]["written"] > 0 and target["counts"]["dead_lettered"] >= 3, target
    assert "@" not in json.dumps(target["dead_letter_reasons"])

    ARTIFACTS.mkdir(exist_ok=True)
    for page, charts in (
        (reports / "report.html", CHARTS | {"target"}),
        (reports / "mapper-report.html", CHARTS),  # the mapper's own page: no target part
    ):
        console = _open(browser, page)
        severe = [entry for entry in console if entry.get("level") == "SEVERE"]
        assert not severe, severe
        drawn = set(
            browser.execute_script(
                "return [...document.querySelectorAll('.chart')]"
                ".filter(c => c.querySelector('.js-plotly-plot .main-svg rect, "
                ".js-plotly-plot .main-svg path'))"
                ".map(c => c.dataset.chart)"
            )
        )
        assert drawn == charts
        assert browser.title == TITLE
        # Nothing was fetched: every script and style is inline.
        assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
        shutil.copy(page, ARTIFACTS / page.name)
        _screenshot(browser, ARTIFACTS / page.with_suffix(".png").name)
    print(f"\nScreenshots and pages: {ARTIFACTS}")
    text = browser.find_element("tag name", "body").text
    assert "The target's report was not given" in text  # the last page: the mapper's own


def test_hostile_domains_stay_text_in_the_browser(browser: Any, reports: Path) -> None:
    """A domain is whatever a sign-up typed: markup in one is shown, never run."""
    from mapper_emailverify.report.page import render_html

    report = json.loads((reports / "mapper-report.json").read_text())
    hostile = [
        "</script><script>document.title='pwned'</script>",
        "<img src=x onerror=\"document.title='pwned'\">",
        "<b>bold</b>.example",
    ]
    report["domains"]["invalid"] = [{"domain": d, "count": 9 - i} for i, d in enumerate(hostile)]
    page = reports / "hostile.html"
    page.write_text(render_html(report), encoding="utf-8")
    console = _open(browser, page)
    assert not [entry for entry in console if entry.get("level") == "SEVERE"], console
    assert browser.title == TITLE
    assert (
        browser.execute_script("return document.querySelectorAll('main img, main b').length") == 0
    )
    labels = browser.execute_script(
        "return [...document.querySelectorAll('#chart-invalid-domains .ytick text')]"
        ".map(t => t.textContent.trim())"
    )
    assert "<b>bold</b>.example" in labels, labels

"""End-to-end fixtures: one running console for the whole package, and the system's Chromium.

The browser is Debian's `chromium` package (`make test` installs it), driven by Playwright;
Playwright's own browser downloads are never used. Without it the tests skip, except under
CI=true, where a missing browser fails the run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.databases import PostgresScratch, SqliteTemplate
from tests.e2e.console_steps import ARTIFACTS, save_screenshot
from tests.e2e.loopback import CountingServer
from tests.e2e.mail_folder import stories
from tests.e2e.site import ConsoleSite, console_site

CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 10_000


@pytest.fixture(scope="package", autouse=True)
def _fresh_artifacts() -> None:
    """Screenshots of this run only: an earlier failure's picture must not linger."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.fixture(scope="package")
def chromium_executable() -> Path:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing: install Debian's chromium package (`make browser`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI=true the end-to-end tests must run.")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="package")
def chromium(chromium_executable: Path, site: ConsoleSite) -> Iterator[Browser]:
    """Started after the site: Playwright's sync API keeps its event loop marked as running on
    this thread, so whatever else uses asyncio (the database set-up) has to come first."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium_executable))
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def canary() -> Iterator[CountingServer]:
    """Where the hostile mail's scripts would call home."""
    with CountingServer(serves_images=False) as server:
        yield server


@pytest.fixture(scope="package")
def image_server() -> Iterator[CountingServer]:
    """Serves the hostile mail's remote images (a tracking pixel)."""
    with CountingServer(serves_images=True) as server:
        yield server


@pytest.fixture(scope="package")
def e2e_database_url(database_template: object, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The run's database: a fresh SQLite copy, or the PostgreSQL run's scratch database, emptied
    (the tests after this package empty it again before they use it)."""
    if isinstance(database_template, PostgresScratch):
        asyncio.run(database_template.reset())
        url = database_template.url
    else:
        assert isinstance(database_template, SqliteTemplate)
        url = database_template.copy_to(tmp_path_factory.mktemp("e2e-db"))
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="package")
def site(
    chromium_executable: Path,  # first: without a browser, starting the server is pointless
    e2e_database_url: str,
    canary: CountingServer,
    image_server: CountingServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsoleSite]:
    mail = stories(canary.url, image_server.url)
    with console_site(tmp_path_factory.mktemp("e2e-site"), e2e_database_url, mail) as running:
        yield running


@pytest.fixture
def context(site: ConsoleSite, chromium: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per test: no cookies or storage carried between tests."""
    context = chromium.new_context(base_url=site.base_url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    page = context.new_page()
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and not page.is_closed():
        save_screenshot(page, f"failed-{request.node.name}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the call phase's report on the test, so a failing test leaves a screenshot."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report

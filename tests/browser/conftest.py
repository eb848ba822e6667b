"""Browser tests: Debian's Chromium driven by Playwright for Python, against the real API (uvicorn over HTTP)
on a real redis-server with a version trained and published from synthetic data.

Playwright's own browser download is never used: ``chromium.launch(executable_path=...)`` starts the
system's Chromium (``.ci/run`` installs Debian's ``chromium``). Where none is installed, the tests skip
and say so. Each test saves screenshots under its tmp dir; a failing test's report lists them.
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from feature_store.embedded import EmbeddedRedis
from shared.config import Settings, get_settings
from tests.support.auth import KEY, auth_overrides
from tests.support.server import serve

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
END = dt.date(2026, 10, 31)


def chromium_path() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@dataclass(frozen=True)
class Site:
    base: str
    key: str
    version: str
    settings: Settings


@pytest.fixture(scope="module")
def site(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A version trained on synthetic data (300 users, 120 items, 8 categories) and served over HTTP."""
    import redis

    from batch.daily import publish_day
    from batch.ingest import ingest_interactions, ingest_items
    from batch.pipeline import run_batch
    from batch.synthetic.generate import generate, write_synthetic

    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    data_dir = tmp_path_factory.mktemp("site")
    settings = get_settings(redis_url=redis_server.url, data_dir=data_dir, reload_interval_s=0.2, **auth_overrides())
    data = generate(300, 120, 5, 7, END, n_categories=8)
    paths = write_synthetic(data, settings.raw_dir)
    ingest_items(paths["items"], settings.items_path)
    ingest_interactions(paths["interactions"], "parquet", settings.interactions_dir, settings.quarantine_dir)
    run_batch(settings, END)
    version = publish_day(settings, END).serving
    with serve(settings) as base:
        yield Site(base, KEY, version, settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "no Chromium on this machine (looked for " + ", ".join(BROWSERS) + "): install Debian's `chromium` "
            "(apt-get install chromium), as .ci/run does, to run the browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture()
def page(browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A fresh page; ``page.shot(name)`` saves a screenshot under the test's tmp dir. On failure a last
    screenshot is taken and every path is listed in the test's report."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    shots: list[str] = []

    def shot(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        pg.screenshot(path=str(path), full_page=True)
        shots.append(str(path))
        return path

    pg.shot = shot  # type: ignore[attr-defined]
    pg.js_errors = errors  # type: ignore[attr-defined]
    request.node.screenshots = shots
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        shot("at-failure")
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    if report.when == "teardown" and getattr(item, "rep_call", None) is not None and item.rep_call.failed:
        shots = getattr(item, "screenshots", [])
        if shots:
            item.rep_call.sections.append(("screenshots", "\n".join(shots)))
            report.sections.append(("screenshots", "\n".join(shots)))

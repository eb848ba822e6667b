"""The demo storefront and the operator page, as a person uses them, in a real browser."""

from __future__ import annotations

import pytest

from tests.browser.conftest import Site

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def row(page) -> list[str]:
    return page.eval_on_selector_all("#for-you [data-item]", "els => els.map(e => e.dataset.item)")


def test_a_click_reranks_the_for_you_row_and_excludes_the_clicked_item(site: Site, page) -> None:
    page.goto(f"{site.base}/demo#key={site.key}")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=20_000)
    page.shot("storefront-loaded")
    assert "#key" not in page.url and "hrk_" not in page.url  # the key left the address bar
    users = page.eval_on_selector_all("#user-picker option", "els => els.map(e => e.value)")
    assert users[0] == "" and len(users) > 2  # anonymous visitor, then known users with real ids
    assert page.input_value("#user-picker") == users[1]
    assert page.inner_text("#strategy") == "precomputed"
    assert page.inner_text("#model-version") == site.version
    before = row(page)
    assert len(before) == 8
    reasons = page.eval_on_selector_all("#for-you .reason", "els => els.map(e => e.dataset.reason)")
    assert len(reasons) == 8 and all(reasons)
    shelf_items = page.eval_on_selector_all(".shelf [data-item]", "els => els.map(e => e.dataset.item)")
    clicked = next(item for item in shelf_items if item not in before)

    page.click(f".shelf [data-item='{clicked}']")
    page.wait_for_selector(f"#session-items [data-item='{clicked}']", timeout=10_000)
    page.wait_for_function("() => document.getElementById('strategy').textContent !== 'precomputed'")
    page.shot("storefront-after-click")
    after = row(page)
    assert page.inner_text("#strategy") in {"hybrid", "reranked"}
    assert after != before and len(after) == 8
    assert clicked not in after
    after_reasons = page.eval_on_selector_all("#for-you .reason", "els => els.map(e => e.dataset.reason)")
    assert any(r.endswith(f":{clicked}") for r in after_reasons)  # similar_to / often_next_to the click
    took = float(page.inner_text("#took"))
    assert took >= 0

    # a second click, from the row itself: that item leaves the row too
    second = after[0]
    page.click(f"#for-you [data-item='{second}']")
    page.wait_for_selector(f"#session-items [data-item='{second}']", timeout=10_000)
    page.wait_for_function(f"() => !document.querySelector(\"#for-you [data-item='{second}']\")")
    assert clicked not in row(page) and second not in row(page)
    assert page.js_errors == []


def test_an_anonymous_visitor_gets_popular_then_session_results(site: Site, page) -> None:
    page.goto(f"{site.base}/demo#key={site.key}")
    page.wait_for_selector("body[data-ready=true]", state="attached", timeout=20_000)
    page.select_option("#user-picker", "")
    page.wait_for_function("() => document.getElementById('strategy').textContent === 'popular'")
    assert "unknown_user" in page.inner_text("#flags")
    item = row(page)[2]
    page.click(f"#for-you [data-item='{item}']")
    page.wait_for_function("() => document.getElementById('strategy').textContent !== 'popular'")
    assert page.inner_text("#strategy") in {"session", "reranked"} and item not in row(page)
    page.shot("storefront-anonymous")


def test_the_operator_page_shows_the_serving_version_and_the_embedding_map(site: Site, page) -> None:
    page.goto(f"{site.base}/ops#key={site.key}")
    page.wait_for_selector("body[data-map-points]", state="attached", timeout=20_000)
    page.shot("operator-page")
    assert page.inner_text("#serving-version") == site.version
    assert site.version in page.inner_text("[data-testid=versions] tr[data-role=current]")
    drawn = page.evaluate(
        "() => Chart.getChart(document.getElementById('embedding-map')).data.datasets"
        ".reduce((n, d) => n + d.data.length, 0)"
    )
    assert drawn == int(page.get_attribute("body", "data-map-points")) > 50
    categories = page.evaluate("() => Chart.getChart(document.getElementById('embedding-map')).data.datasets.length")
    assert categories == 8
    # the canvas has been painted: more than a handful of distinct colours
    colours = page.evaluate(
        """() => {
          const c = document.getElementById('embedding-map');
          const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          const seen = new Set();
          for (let i = 0; i < d.length; i += 4 * 97) seen.add(`${d[i]},${d[i + 1]},${d[i + 2]},${d[i + 3]}`);
          return seen.size;
        }"""
    )
    assert colours > 5
    assert page.js_errors == []


def test_without_a_key_the_pages_say_what_to_do(site: Site, page) -> None:
    page.goto(f"{site.base}/ops")
    page.wait_for_selector("#error:not([hidden])", timeout=10_000)
    assert "#key=" in page.inner_text("#error")

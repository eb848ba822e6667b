"""The pages' static files: the vendored chart library is the published file, and nothing breaks the CSP."""

from __future__ import annotations

import hashlib
import re

import pytest

from online.pages import CSP, STATIC_DIR

VENDOR = STATIC_DIR / "vendor"
PAGES = ("demo.html", "ops.html")


def test_the_vendored_chart_library_is_the_published_file_with_its_licence() -> None:
    readme = (VENDOR / "README.md").read_text()
    expected = re.search(r"`chart\.umd\.min\.js`: sha256 `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256((VENDOR / "chart.umd.min.js").read_bytes()).hexdigest() == expected
    version = re.search(r"\| `chart\.umd\.min\.js` \| .* \| (\d+\.\d+\.\d+) \| MIT", readme).group(1)
    assert (VENDOR / "chart.umd.min.js").read_text()[:40].startswith(f"/*!\n * Chart.js v{version}")
    assert "MIT License" in (VENDOR / "chart.js-LICENSE.md").read_text()


@pytest.mark.parametrize("page", PAGES)
def test_pages_load_only_their_own_files(page: str) -> None:
    """The CSP allows scripts and styles from this origin only, and no inline ones: every script has a
    /static/ src and no body, no style attribute or element, no absolute URL to another site."""
    html = (STATIC_DIR / page).read_text()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all(
        re.search(r'src="/static/[\w/.-]+\.js"', attrs) and not body.strip() for attrs, body in scripts
    )
    assert " style=" not in html and "<style" not in html
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for ref in re.findall(r'(?:src|href)="/static/([\w/.-]+)"', html):
        assert (STATIC_DIR / ref).is_file(), ref
    assert "script-src 'self'" in CSP and "'unsafe-inline'" not in CSP

"""The layers import one way (STYLE.md). Parsed statically, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"shared", "feature_store", "batch", "online", "dags", "lab", "cli"}
ALLOWED = {
    "shared": set(),
    "feature_store": {"shared"},
    "batch": {"shared", "feature_store"},
    "online": {"shared", "feature_store"},
    "dags": {"shared", "batch"},
    # the lab (offline evaluation, session replay, tuning, re-ranker training) replays sessions through the
    # online ranking: it sits above both
    "lab": {"shared", "feature_store", "batch", "online"},
    # the composition root: the command line runs every layer
    "cli": {"shared", "feature_store", "batch", "online", "lab"},
}
# Heavy or training-only libraries the online request path must never load.
ONLINE_FORBIDDEN = {"implicit", "sklearn", "pandas", "airflow", "scipy", "pyarrow"}


def _modules_imported(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, in full (``batch.synthetic.generate``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in _modules_imported(path)}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(OURS))
def test_layers_import_one_way(package: str) -> None:
    crossings = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path) & OURS
        if name != package and name not in ALLOWED[package]
    }
    assert not crossings, "imports that cross the layer lines:\n" + "\n".join(sorted(crossings))


@pytest.mark.parametrize("package", ["online", "feature_store", "shared"])
def test_serving_path_never_imports_training_libraries(package: str) -> None:
    bad = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path) & ONLINE_FORBIDDEN
    }
    assert not bad, "\n".join(sorted(bad))


def test_no_production_batch_step_imports_the_synthetic_generator() -> None:
    """batch/synthetic/ feeds the demo, tests, lab and benchmarks; the steps only ever see ingested data."""
    synthetic = ROOT / "batch" / "synthetic"
    assert (synthetic / "generate.py").exists()
    bad = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules("batch")
        if synthetic not in path.parents
        for name in _modules_imported(path)
        if name == "batch.synthetic" or name.startswith("batch.synthetic.")
    }
    assert not bad, "\n".join(sorted(bad))


def test_the_product_never_imports_the_benchmarks_or_the_tests() -> None:
    """bench/ drives the product (bench/api_replay.py runs lab, batch and the API) and tests/ check it;
    neither may become something the product needs. Benchmark modules run as scripts and import each
    other by their bare names, so those names count too."""
    outside = {"bench", "tests"} | {p.stem for p in (ROOT / "bench").glob("*.py")}
    bad = {
        f"{path.relative_to(ROOT)} imports {name}"
        for package in sorted(OURS)
        for path in _modules(package)
        for name in _imports(path) & outside
    }
    assert "api_replay" in outside and not bad, "\n".join(sorted(bad))


def test_the_checker_sees_a_crossing(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from online.app import create_app\n")
    assert _imports(probe) == {"online"}
    probe.write_text("from batch.synthetic.generate import generate\n")
    assert _modules_imported(probe) == {"batch.synthetic.generate"}

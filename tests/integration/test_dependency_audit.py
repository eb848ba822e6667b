"""pip-audit of every locked dependency (uv.lock, all extras and the dev group), in the test run.

CI runs only the README's test command, so the audit lives here. It exports the lock as hashed
requirements (``uv export --frozen``) and runs a pinned pip-audit on them (``uv tool run``) against
PyPI's vulnerability data (the per-release JSON API), or OSV's, without installing anything; a
dependency it could not look up fails the test too. Advisories listed in ``pip-audit-ignore.txt``
(each with its reason) do not fail it. When neither vulnerability service answers from this machine
(or uv is missing because ./dev fell back to pip) the test is skipped and says why.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.audit
ROOT = Path(__file__).resolve().parents[2]
PIP_AUDIT = "pip-audit==2.10.1"
# A release with published advisories: each service must report some for it, or it is not really reachable
# (a registry mirror can serve the package index but answer 404 to the per-release JSON pip-audit reads).
CANARY = ("urllib3", "1.26.4")


def _pypi_answers() -> str | None:
    url = f"https://pypi.org/pypi/{CANARY[0]}/{CANARY[1]}/json"
    try:
        r = httpx.get(url, timeout=15)
        ok = r.status_code == 200 and bool(r.json().get("vulnerabilities"))
        return None if ok else f"GET {url} answered {r.status_code} without vulnerability data"
    except (httpx.HTTPError, ValueError) as exc:
        return f"GET {url}: {exc}"


def _osv_answers() -> str | None:
    url = "https://api.osv.dev/v1/query"
    try:
        r = httpx.post(
            url, json={"package": {"name": CANARY[0], "ecosystem": "PyPI"}, "version": CANARY[1]}, timeout=15
        )
        return None if r.status_code == 200 and r.json().get("vulns") else f"POST {url} answered {r.status_code}"
    except (httpx.HTTPError, ValueError) as exc:
        return f"POST {url}: {exc}"


def _service() -> str:
    """The first vulnerability service pip-audit can use from here (PyPI's JSON API, then OSV), or skip."""
    problems = []
    for name, probe in (("pypi", _pypi_answers), ("osv", _osv_answers)):
        problem = probe()
        if problem is None:
            return name
        problems.append(f"{name}: {problem}")
    pytest.skip("no vulnerability service is reachable from this machine (" + "; ".join(problems) + ")")


def _uv() -> str:
    found = shutil.which("uv") or next((str(p) for p in [ROOT / ".tools/bin/uv"] if p.exists()), None)
    if found is None:
        pytest.skip(
            "uv is neither on PATH nor in .tools/ (./dev puts it there unless it fell back to pip): cannot export uv.lock for pip-audit"
        )
    return found


def ignored_advisories(path: Path = ROOT / "pip-audit-ignore.txt") -> list[str]:
    """Advisory ids of the ignore file: the first word of each line, comments and blank lines skipped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line.split()[0] for line in lines if line]


def test_the_ignore_file_reads_ids_and_skips_comments(tmp_path: Path) -> None:
    f = tmp_path / "ignore.txt"
    f.write_text("# header\n\nGHSA-aaaa-bbbb-cccc  # why, who, until when\nPYSEC-2026-1\n")
    assert ignored_advisories(f) == ["GHSA-aaaa-bbbb-cccc", "PYSEC-2026-1"]
    assert all(" " not in a for a in ignored_advisories())


def _reachable() -> tuple[str, str]:
    """(uv, vulnerability service), or skip."""
    return _uv(), _service()


def _audit(
    uv: str, service: str, requirements: Path, *extra: str
) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """Run pip-audit on ``requirements``: (process, "name version: id (fixed in ...)" per finding, and
    "name: reason" per dependency it could not audit)."""
    report = requirements.with_suffix(".json")
    cmd = [uv, "tool", "run", PIP_AUDIT, "-r", str(requirements), "--disable-pip", "--vulnerability-service", service]
    cmd += ["--progress-spinner", "off", "--format", "json", "--output", str(report), *extra]
    for advisory in ignored_advisories():
        cmd += ["--ignore-vuln", advisory]
    audit = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    deps = json.loads(report.read_text())["dependencies"] if report.exists() else []
    found = [
        f"{dep['name']} {dep['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or ['nothing yet'])})"
        for dep in deps
        for v in dep.get("vulns", [])
    ]
    skipped = [f"{dep['name']}: {dep['skip_reason']}" for dep in deps if dep.get("skip_reason")]
    return audit, found, skipped


def test_no_locked_dependency_has_a_known_vulnerability(tmp_path: Path) -> None:
    uv, service = _reachable()
    export = subprocess.run(
        [uv, "export", "--frozen", "--all-extras", "--format", "requirements-txt", "--no-emit-project", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert export.returncode == 0, export.stderr
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(export.stdout)
    audit, found, skipped = _audit(uv, service, requirements)
    assert not skipped, f"pip-audit could not audit {len(skipped)} dependencies: {skipped[:5]}"
    assert audit.returncode == 0 and not found, (
        "known vulnerabilities in uv.lock (upgrade, or list the id in pip-audit-ignore.txt with the reason):\n"
        + "\n".join(found or [audit.stderr[-3000:]])
    )
    assert export.stdout.count("==") > 100, "fewer than 100 pinned dependencies exported: did the export change?"


def test_the_audit_fails_on_a_known_vulnerability(tmp_path: Path) -> None:
    """The same audit on a release with published advisories: it must fail."""
    uv, service = _reachable()
    requirements = tmp_path / "old.txt"
    requirements.write_text(f"{CANARY[0]}=={CANARY[1]}\n")
    audit, found, _ = _audit(uv, service, requirements, "--no-deps")
    assert audit.returncode != 0 and any(f.startswith(f"{CANARY[0]} {CANARY[1]}: ") for f in found), audit.stderr[
        -2000:
    ]

"""The fixes of docs/findings.md as profile files: each passes `devdax check` with its findings
fixed against linux-7.2, and `devdax prove` proves the obligations that report them for the base."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from devdax import cli

ROOT = Path(__file__).resolve().parents[2]
FIXES = {
    "fix-f1.toml": ("1 finding fixed (no_null_deref)", ["life_no_null_deref"]),
    "fix-f2.toml": (
        "4 findings fixed (no_leak_at_quiescence, no_list_corruption, no_refcount_underflow, "
        "refcount_exact_all)",
        [
            "life_cdev_count_exact",
            "life_no_refcount_underflow",
            "life_no_list_corruption",
            "life_no_leak_at_quiescence",
        ],
    ),
    "fix-f3.toml": ("1 finding fixed (entries_naturally_aligned)", ["fault_phys_aligned"]),
}


def run(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue() + err.getvalue()


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", [*FIXES, "fix-all.toml", "fix-all-6.1.toml"])
def test_check_passes_with_the_findings_fixed(name: str) -> None:
    code, out = run("check", "--profile", f"docs/findings/{name}", "--quiet")
    assert code == 0, out
    fixed = FIXES[name][0] if name in FIXES else "6 findings fixed"
    assert f"0 new violations, {fixed}" in out, out


@pytest.mark.parametrize("name", list(FIXES))
def test_prove_proves_what_reported_the_finding(name: str) -> None:
    fixed, obligations = FIXES[name]
    code, out = run("prove", "--profile", f"docs/findings/{name}", "--timeout", "120", "--only", *obligations)
    assert code == 0, out
    assert f"0 new violations, {fixed}" in out, out

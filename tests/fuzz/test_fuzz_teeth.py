"""The stress benchmark's oracle has teeth: with the device layer's contracts off, a teardown that
forgets to zap the device's entries (or to clear alive) must show up as stale accesses.

Why a subprocess: the mutant is a monkeypatch of impl's classes and DEVDAX_CONTRACTS is read at
import; neither may leak into the rest of the test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devdax.impl import sys as dsys

ROOT = Path(__file__).resolve().parents[2]
_NO_UFFD = dsys.uffd_unavailable()

MUTANTS = {
    # kill_dax without unmap_mapping_range: installed entries survive the unbind
    "no-zap": "dax.DevDax.unmap_mapping_range = lambda self: 'ok'",
    # kill_dax without the alive store: new faults are served after the unbind
    "no-clear-alive": "dax.DevDax.clear_alive = lambda self: setattr(self, 'bound', False) or 'ok'",
}


@pytest.mark.skipif(_NO_UFFD is not None, reason=str(_NO_UFFD))
@pytest.mark.parametrize("mutant", sorted(MUTANTS))
def test_stress_catches_a_teardown_mutant(mutant: str, tmp_path: Path) -> None:
    out = tmp_path / "stress.json"
    code = textwrap.dedent(
        f"""
        from devdax.impl import dax
        {MUTANTS[mutant]}
        from bench import bench_stress
        bench_stress.child(1, 20, 2, {str(out)!r})
        """
    )
    env = {**os.environ, "DEVDAX_CONTRACTS": "0"}
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(out.read_text())["failures"].get("stale", 0) > 0

"""The fixes of docs/findings.md as the prover sees them: its step relation for the fix switches
(proofs/lifetime.py: open_refuses_dead's refused open, cdev_per_binding's cdev_add) is the spec's."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from devdax.profile_file import load_profile
from devdax.proofs.lifetime import check_agreement, learn_configs
from devdax.spec.ctx import Ctx

FINDINGS = Path(__file__).resolve().parents[2] / "docs" / "findings"


@pytest.mark.parametrize("name", ["fix-f1.toml", "fix-f2.toml"])
def test_step_relation_of_a_fix_agrees_with_spec(name: str) -> None:
    profile = load_profile(str(FINDINGS / name)).profile
    # the prover's own learning configuration, cut to one file and one bind (a few seconds each)
    cfg = replace(learn_configs(profile)[-1], files=1, binds=1)
    states, bad = check_agreement(Ctx.of(cfg))
    assert states > 50
    assert not bad, "\n".join(f"{b.kind}: {b.detail}\n  from {b.state}" for b in bad[:3])

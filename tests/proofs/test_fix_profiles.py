"""The fixes of docs/findings.md as the prover sees them: its step relation for the fix switches
(proofs/lifetime.py: open_refuses_dead's refused open, cdev_per_binding's cdev_add) is the spec's."""

from __future__ import annotations

from pathlib import Path

import pytest

from devdax.profile_file import load_profile
from devdax.proofs.lifetime import SHARED_RW, check_agreement
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx

FINDINGS = Path(__file__).resolve().parents[2] / "docs" / "findings"


@pytest.mark.parametrize("name", ["fix-f1.toml", "fix-f2.toml"])
def test_step_relation_of_a_fix_agrees_with_spec(name: str) -> None:
    profile = load_profile(str(FINDINGS / name)).profile.name
    cfg = Config(
        profile=profile,
        devices=1,
        generations=1,
        cpus=0,
        files=1,
        vmas=1,
        ranges=2,
        units=2,
        binds=1,
        add_failure=True,
        mmaps=(SHARED_RW,),
    )
    states, bad = check_agreement(Ctx.of(cfg))
    assert states > 50
    assert not bad, "\n".join(f"{b.kind}: {b.detail}\n  from {b.state}" for b in bad[:3])

"""The obligation runner and ``devdax prove``: checklist words, UNKNOWN never counted as proved,
exit statuses, JSON shape, and the lemmas' verdicts per profile."""

from __future__ import annotations

import json

import pytest
import z3

from devdax.proofs import cli, runner
from devdax.proofs.lemmas import LEMMAS, lemma_obligations
from devdax.proofs.obligations import lemma_config, obligations_for
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.proofs.smt import Query, prove
from devdax.spec.profiles import get_profile


def fixed(status: Status, text: str = "") -> Obligation:
    return Obligation(
        f"ob_{status.value}", f"always {status.value}", "test", lambda t: Verdict(status, 0, text)
    )


def test_render_words_and_total() -> None:
    res = runner.run(
        [
            fixed(Status.PROVED),
            fixed(Status.VIOLATED, "x = 0x1\ny = 0x2"),
            fixed(Status.UNKNOWN, "solver unknown: timeout"),
        ]
    )
    text = runner.render_checklist(res)
    lines = text.splitlines()
    assert lines[0].startswith("  ok ") and "ob_proved" in lines[0]
    assert lines[1].startswith("  FAIL ")
    assert lines[2] == "        x = 0x1"
    assert lines[4].startswith("  UNKNOWN ")
    assert lines[-1] == "1 proved, 0 documented findings, 1 violated, 1 UNKNOWN of 3 obligations in 0.00s"
    assert runner.render_total(res[:1]).startswith("all ok!")
    documented = runner.run([fixed(Status.PROVED), fixed(Status.FINDING, "trace")])
    assert runner.render_line(documented[1]).startswith("  finding ")
    assert runner.render_total(documented).endswith("every violation is a documented finding of the profile")


def test_exit_status() -> None:
    run = runner.run
    assert runner.exit_status(run([fixed(Status.PROVED)])) == 0
    assert runner.exit_status(run([fixed(Status.PROVED), fixed(Status.UNKNOWN)])) == 3
    assert runner.exit_status(run([fixed(Status.UNKNOWN), fixed(Status.VIOLATED)])) == 1
    # a documented finding is the profile's verdict, not a failure; an undocumented violation still is
    assert runner.exit_status(run([fixed(Status.PROVED), fixed(Status.FINDING)])) == 0
    assert runner.exit_status(run([fixed(Status.FINDING), fixed(Status.VIOLATED)])) == 1
    assert runner.exit_status(run([fixed(Status.FINDING), fixed(Status.UNKNOWN)])) == 3
    assert runner.exit_status(run([fixed(Status.PROVED)]), stale=["entries_naturally_aligned"]) == 1


def test_stale_finding() -> None:
    """A documented finding every one of whose obligations is proved is no longer reproduced: the
    drift rule of ``devdax check``, which must make the documentation say so."""

    def keyed(status: Status, key: str) -> Obligation:
        return Obligation(f"ob_{key}_{status.value}", "s", "test", lambda t: Verdict(status), finding=key)

    res = runner.run(
        [
            keyed(Status.PROVED, "a"),
            keyed(Status.FINDING, "a"),
            keyed(Status.PROVED, "b"),
            keyed(Status.PROVED, "b"),
            fixed(Status.PROVED),
        ]
    )
    assert runner.stale_findings(res) == ["b"]
    assert (
        runner.render_total(res, ["b"]).splitlines()[0]
        == "documented finding no longer reproduced: b (update spec/profiles.py findings)"
    )


def test_relative_proofs_are_flagged() -> None:
    """Invariants proved together assume each other: when an assumed one fails, the others' ok is
    only relative to it, and the total says so. A failing member the group does not assume (a
    documented finding the lifetime layer leaves out) flags nothing."""

    def member(name: str, status: Status, assumed: bool = True) -> Obligation:
        return Obligation(name, "s", "test", lambda t: Verdict(status), group="g", assumed=assumed)

    res = runner.run([member("a", Status.PROVED), member("b", Status.VIOLATED), fixed(Status.PROVED)])
    assert runner.relative_groups(res) == {"g": ["b"]}
    assert runner.render_total(res).splitlines()[0] == (
        "note: the g invariants are proved together, each "
        "assuming the others; b failed, so the others' 'ok' "
        "holds only relative to it"
    )
    assert (
        runner.relative_groups(
            runner.run([member("a", Status.PROVED), member("b", Status.FINDING, assumed=False)])
        )
        == {}
    )
    # v4.10's and modern's groups stand on their own: their failures are unassumed findings
    obs = {o.name: o for o in obligations_for("modern")}
    assert obs["life_no_null_deref"].group == "lifetime" and not obs["life_no_null_deref"].assumed
    assert obs["life_files_well_formed"].assumed and obs["proto_lock_balanced"].group == "protocol"
    assert obs["proto_no_sleep_in_rcu"].group == "protocol" and not obs["proto_no_sleep_in_rcu"].assumed


def test_findings_per_profile_and_variant() -> None:
    """v4.10 documents F3 only; a variant's own broken properties are never reported as documented,
    even when the variant is its profile (M21 is modern's finding, and ``--variant M21`` must fail)."""
    keys = {o.name: o.finding for o in obligations_for("v4.10")}
    assert {k for k in keys.values() if k} == {"entries_naturally_aligned"}
    modern = {o.name: o.finding for o in obligations_for("modern")}
    assert modern["life_no_null_deref"] == "no_null_deref"
    m21 = {o.name: o.finding for o in obligations_for("modern", "M21")}
    assert m21["life_no_null_deref"] == "" and m21["life_cdev_count_exact"] == "refcount_exact_all"


def test_crash_is_unknown_not_proved() -> None:
    def boom(t: float) -> Verdict:
        raise RuntimeError("encoding bug")

    v = Obligation("boom", "s", "src", boom).check()
    assert v.status is Status.UNKNOWN and "encoding bug" in v.counterexample


def test_timeout_is_unknown() -> None:
    """Factoring a 64-bit semiprime by bit-blasting does not finish in 50 ms: UNKNOWN, not proved."""
    x, y = z3.BitVec("x", 64), z3.BitVec("y", 64)
    n = 4294967291 * 4294967279
    goal = z3.Not(z3.And(x * y == n, z3.UGT(x, 1), z3.UGT(y, 1), z3.ULT(x, 1 << 32), z3.ULT(y, 1 << 32)))
    v = prove([Query([], goal)], timeout=0.05)
    assert v.status is Status.UNKNOWN
    assert "unknown" in v.counterexample or "timeout" in v.counterexample


def test_violation_prints_model() -> None:
    x = z3.BitVec("x", 64)
    v = prove([Query([], x & 0xFFF == 0, (("x", x),), "case A")], timeout=5)
    assert v.status is Status.VIOLATED
    assert v.counterexample.splitlines()[0] == "case: case A" and "x = 0x" in v.counterexample


@pytest.mark.parametrize("profile", ["v4.10", "modern"])
def test_lemmas_proved(profile: str) -> None:
    """Every lemma is proved except fault_phys_aligned, which states what check_vma checks and is
    violated by F3 (an unaligned vm_pgoff), reported as the profile's documented finding."""
    # generous solver time for a loaded CI machine: an UNKNOWN still fails the test
    lemmas = [o for o in obligations_for(profile) if o.name in {n for n, _, _, _ in LEMMAS}]
    results = {r.obligation.name: r.verdict for r in runner.run(lemmas, timeout=120)}
    bad = [
        (n, v.counterexample)
        for n, v in results.items()
        if v.status is not Status.PROVED and n != "fault_phys_aligned"
    ]
    assert not bad
    f3 = results["fault_phys_aligned"]
    assert f3.status is Status.FINDING
    assert (
        "vm_pgoff" in f3.counterexample
        and "documented finding: check_vma never looks at vm_pgoff" in f3.counterexample
    )
    assert results["fault_phys_aligned_given_offset"].status is Status.PROVED


def test_f3_counterexample_is_an_unaligned_offset() -> None:
    """The 64-bit counterexample of fault_phys_aligned is F3 itself: a fault of exactly the align
    (negotiation did its job) whose entry phys is misaligned because vm_pgoff is."""
    cfg = lemma_config(get_profile("v4.10"))
    v = runner.run([o for o in lemma_obligations(cfg) if o.name == "fault_phys_aligned"], timeout=120)[0]
    assert v.verdict.status is Status.VIOLATED
    values = {
        ln.split(" = ")[0].strip(): ln.split(" = ")[1]
        for ln in v.verdict.counterexample.splitlines()
        if " = " in ln
    }
    align = {"pmd": 0x200000, "pud": 0x40000000}[v.verdict.counterexample.split()[1]]
    assert (int(values["vm_pgoff"], 16) * 4096) % align != 0
    assert int(values["entry.phys"], 16) % align != 0


def test_v47_fails_where_its_findings_say() -> None:
    """v4.7 as merged: M1 (private mappings slip through) and M3/M4 (no fallback, no vma bounds)."""
    models = ("proto_", "rc_", "minor", "life_")
    lemmas = [o for o in obligations_for("v4.7") if not o.name.startswith(models)]
    results = {r.obligation.name: r.verdict for r in runner.run(lemmas, timeout=120)}
    failed = {n for n, v in results.items() if v.status in (Status.VIOLATED, Status.FINDING)}
    assert failed == {
        "check_vma_exact",
        "mmap_aligned_accepted",
        "negotiate_table",
        "negotiate_fallback_chain",
        "fault_entry_in_vma",
        "fault_entry_is_align",
        "fault_phys_aligned",
        "fault_phys_aligned_given_offset",
    }
    assert "documented finding: M1" in results["check_vma_exact"].counterexample
    assert results["check_vma_exact"].status is Status.FINDING
    # v4.7 lacks the fault fallback too (M3/M4), yet fault_phys_aligned shows F3: a same-size fault
    f3 = results["fault_phys_aligned"].counterexample
    assert f3.startswith(("case: pmd fault, align 2M", "case: pud fault, align 1G")) and "vm_pgoff" in f3
    assert all(v.status is Status.PROVED for n, v in results.items() if n not in failed)


def test_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--profile", "modern", "--only", "gua_congruent", "negotiate_table"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "devdax prove: profile modern"
    assert [ln.split()[2] for ln in out[1:3]] == ["gua_congruent", "negotiate_table"]
    assert out[-1].startswith("all ok! 2 obligations")
    assert cli.main(["--json", "--profile", "v4.10", "--variant", "M3", "--only", "negotiate_table"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data[0]["name"] == "negotiate_table" and data[0]["status"] == "violated"
    # the same bug is v4.7's own: its documented finding, exit 0
    assert cli.main(["--json", "--profile", "v4.7", "--only", "negotiate_table"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["status"] == "finding" and data[0]["finding"] == "fault_size_negotiated"
    assert set(data[0]) >= {"name", "status", "seconds", "counterexample"}


def test_cli_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--only", "no_such_obligation"]) == 2
    assert "choose from" in capsys.readouterr().err
    assert cli.main(["--profile", "v9"]) == 2
    assert cli.main(["--timeout", "0"]) == 2
    assert cli.main(["--variant", "no-such-variant"]) == 2
    assert cli.main(["--profile", "modern", "--variant", "M3"]) == 2


def test_variant_m3_fails_its_lemmas(capsys: pytest.CaptureFixture[str]) -> None:
    """M3 turns the fault-size fallback and the vma-bounds check off: the lemmas they carry fail."""
    rc = cli.main(
        [
            "--profile",
            "v4.10",
            "--variant",
            "M3",
            "--only",
            "negotiate_table",
            "fault_entry_in_vma",
            "gua_congruent",
        ]
    )
    lines = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert [ln.split()[0] for ln in lines if ln.startswith("  ") and not ln.startswith("    ")] == [
        "ok",
        "FAIL",
        "FAIL",
    ]


def test_cli_bmc_variant(capsys: pytest.CaptureFixture[str]) -> None:
    """--bmc K adds one obligation; a variant's trace comes out as `devdax check` prints it."""
    rc = cli.main(["--profile", "v4.10", "--variant", "no-synchronize", "--bmc", "6", "--only", "bmc_depth6"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "  FAIL " in out and "violation: no_entry_after_kill" in out
    assert "admin remove(region0): unmap_mapping_range(dax0)" in out

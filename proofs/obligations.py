"""Every obligation of a profile (and variant), in checklist order: the one list ``devdax prove`` runs.

The profile is read from spec/profiles.py, never restated: the lemmas take its check_vma era and fault
rules, so v4.7 (merged with M1 and M3/M4) fails the lemmas those bugs break, and says which of its
documented findings explains the failure.
"""

from __future__ import annotations

from dataclasses import replace

from devdax.proofs.bmc import bmc_config, bmc_obligation
from devdax.proofs.inductive import inductive_obligations
from devdax.proofs.lemmas import LemmaConfig, lemma_obligations
from devdax.proofs.lifetime import lifetime_obligations
from devdax.proofs.minor import minor_obligations
from devdax.proofs.refcount import refcount_obligations
from devdax.proofs.runner import Obligation, Status, Verdict
from devdax.spec.profiles import Profile, get_profile
from devdax.spec.variants import get_variant

#: which spec invariant each lemma is the arithmetic core of (for the profile's documented findings).
#: An entry's shape also depends on the negotiation: without the fault fallback (v4.7's M3/M4) a
#: NOPAGE entry can be larger than the align and reach past its vma, so those lemmas fall under
#: fault_size_negotiated where entries_exact itself is not documented (the first documented key wins)
LEMMA_INVARIANT: dict[str, tuple[str, ...]] = {
    "check_vma_exact": ("vmas_shared",),
    "mmap_aligned_accepted": ("vmas_shared",),
    "negotiate_table": ("fault_size_negotiated",),
    "negotiate_fallback_chain": ("fault_size_negotiated",),
    "fault_entry_in_vma": ("entries_exact", "fault_size_negotiated"),
    "fault_entry_is_align": ("entries_exact", "fault_size_negotiated"),
    "fault_phys_in_device": ("entries_exact", "fault_size_negotiated"),
    # F3: check_vma never looks at vm_pgoff; the lemma with the offset hypothesis is the fix
    "fault_phys_aligned": ("entries_naturally_aligned",),
    "fault_phys_aligned_given_offset": ("entries_exact", "fault_size_negotiated"),
}

#: protocol strengthenings whose failure is a documented finding's (inductive.py): the entry a CPU is
#: about to insert is exact only if the negotiation made its size the align
STRENGTHENING_INVARIANT: dict[str, tuple[str, ...]] = {
    "checked_exact": ("entries_exact", "fault_size_negotiated"),
}


class VariantError(Exception):
    """--variant names something spec/variants.py does not define, or another profile's variant."""


def apply_variant(profile: Profile, variant: str | None) -> Profile:
    """The variant's profile (spec/variants.py: its base profile with its switches turned). A variant
    belongs to one base profile; naming another with --profile is a usage error."""
    if variant is None:
        return profile
    try:
        v = get_variant(variant)
    except ValueError as exc:
        raise VariantError(str(exc)) from None
    if v.base.name != profile.name:
        raise VariantError(f"variant {variant} applies to profile {v.base.name}, not {profile.name}")
    return v.profile()


def documented_findings(profile: Profile, variant: str | None) -> dict[str, str]:
    """The findings a violation may be reported as. The properties a variant exists to break are not
    among them: ``--variant M21`` on modern must report M21 as a violation (exit 1), not as modern's
    documented finding, while the base profile's other findings (F3 under every v4.10 variant) stay
    documented. The proofs themselves still read ``profile.findings`` to decide which invariants they
    may assume (proofs/lifetime.py): a property known to fail is never assumed."""
    breaks = get_variant(variant).breaks if variant is not None else ()
    return {k: t for k, t in profile.findings.items() if k not in breaks}


def lemma_config(profile: Profile) -> LemmaConfig:
    return LemmaConfig(
        name=profile.name,
        private_test=profile.private_test,
        fault_rules=profile.fault_rules,
        check_vma_pgoff=profile.check_vma_pgoff,
    )


def _with_finding(ob: Obligation, key: str, finding: str) -> Obligation:
    """An obligation the profile documents a finding for: its violation is a FINDING (the kernel as
    modelled has the bug; the counterexample is the evidence) and says which finding under it."""

    def goal(timeout: float) -> Verdict:
        v = ob.goal(timeout)
        if v.status is Status.VIOLATED:
            return Verdict(Status.FINDING, v.seconds, f"{v.counterexample}\n(documented finding: {finding})")
        return v

    return replace(ob, goal=goal, finding=key)


def _grouped(ob: Obligation, group: str, assumed: bool = True) -> Obligation:
    """Mark an invariant of a mutually inductive set (not the non-vacuity checks, which prove nothing
    the others rely on)."""
    if ob.name.endswith("not_vacuous"):
        return ob
    return replace(ob, group=group, assumed=assumed)


def _documented(ob: Obligation, findings: dict[str, str], *keys: str) -> Obligation:
    """The first of ``keys`` the profile documents explains a violation of ``ob``."""
    key = next((k for k in keys if k in findings), "")
    return _with_finding(ob, key, findings[key]) if key else ob


def _protocol_obligations(profile: Profile, findings: dict[str, str]) -> list[Obligation]:
    """proofs/inductive.py's, grouped (a step property such as no_sleep_in_rcu relies on the
    invariants but is not one of them)."""
    out = []
    for ob in inductive_obligations(profile):
        inv = ob.name.removeprefix("proto_")
        grouped = _grouped(ob, "protocol", ob.name != "proto_no_sleep_in_rcu")
        out.append(_documented(grouped, findings, *STRENGTHENING_INVARIANT.get(inv, (inv,))))
    return out


def obligations_for(
    profile_name: str,
    variant: str | None = None,
    bmc_depth: int | None = None,
    cpus: int = 1,
    faults: int = 1,
    units: int = 1,
) -> list[Obligation]:
    """The lemmas, the inductive invariants of the protocol (proofs/inductive.py), v4.7's kref counts
    (proofs/refcount.py), the minors (proofs/minor.py) and the cdev profiles' admin lifetime and
    counts (proofs/lifetime.py) for any number of objects, and with a depth the bounded model check
    of a race configuration (proofs/bmc.py)."""
    profile = apply_variant(get_profile(profile_name), variant)
    findings = documented_findings(profile, variant)
    out = [
        _documented(ob, findings, *LEMMA_INVARIANT.get(ob.name, ()))
        for ob in lemma_obligations(lemma_config(profile))
    ]
    # the protocol's and the minors' invariants each assume all the others of their module
    # (proofs/inductive.py, proofs/minor.py); the lifetime layer assumes those that are not documented
    # findings (proofs/lifetime.py context); proofs/refcount.py (v4.7 only) proves all of its together
    out += _protocol_obligations(profile, findings)
    out += [_documented(ob, findings, ob.serves) for ob in refcount_obligations(profile)]
    out += [_documented(_grouped(ob, "minor"), findings, ob.serves) for ob in minor_obligations(profile)]
    # the admin lifetime: M6, M15, M16, M21, F2
    out += [
        _documented(_grouped(ob, "lifetime", ob.serves not in profile.findings), findings, ob.serves)
        for ob in lifetime_obligations(profile)
    ]
    if bmc_depth is not None:
        cfg = bmc_config(profile_name, variant, cpus, faults, units)
        out.append(bmc_obligation(cfg, bmc_depth, f"bmc_depth{bmc_depth}"))
    return out

"""The Z3 terms of proofs/geometry_z3.py equal the Python functions of spec/geometry.py.

geometry.py is the single source of truth; the lemmas are proved about its second encoding, so each
term is built once over symbolic inputs, evaluated by substitution on thousands of concrete inputs
(random 64-bit values mixed with 0, 1, U64, powers of two and values next to an overflow), and compared
with what the Python function returns.
"""

from __future__ import annotations

import itertools
import random

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from devdax.proofs import geometry_z3 as G
from devdax.proofs.smt import Term, bv, evaluate
from devdax.spec import geometry as g

U64 = g.U64
SIZES = g.FAULT_SIZES
SEED = 20161207


def edge_values() -> list[int]:
    """Values where 64-bit arithmetic goes wrong if it is going to: both ends, the sign bit, and just
    below/above every size and every 'x + size overflows' boundary."""
    out = {0, 1, U64, U64 - 1, 1 << 63, (1 << 63) - 1, g.PAGE_SIZE - 1}
    for size in SIZES:
        out |= {
            size,
            size - 1,
            size + 1,
            2 * size,
            U64 - size,
            U64 - size + 1,
            U64 - size + g.PAGE_SIZE,
            U64 - 2 * size + 1,
            (U64 & ~(size - 1)),
            (U64 & ~(size - 1)) - size,
        }
    return sorted(v & U64 for v in out)


EDGES = edge_values()


def u64s(rng: random.Random) -> int:
    """An input: an edge value, a page- or size-aligned value, or a uniformly random 64-bit one."""
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(EDGES)
    if pick < 0.6:
        return rng.getrandbits(64) & ~(rng.choice(SIZES) - 1)
    if pick < 0.7:
        return rng.getrandbits(rng.randint(1, 40))
    return rng.getrandbits(64)


# --------------------------------------------------------------------------------------------------
# dax_get_unmapped_area
# --------------------------------------------------------------------------------------------------

ALLOC_MUL, ALLOC_ADD = 0x9E3779B97F4A7C15, 0x7F0000000000


def alloc_py(n: int) -> int:
    """A deterministic stand-in for mm->get_unmapped_area that depends on the requested length, so the
    plain and the aligned path get different answers."""
    return ((n * ALLOC_MUL + ALLOC_ADD) & U64) & ~(g.PAGE_SIZE - 1) & U64


def alloc_z3(n: Term) -> Term:
    return (n * ALLOC_MUL + ALLOC_ADD) & ~(g.PAGE_SIZE - 1)


def test_dax_get_unmapped_area_agrees() -> None:
    rng = random.Random(SEED)
    addr, length, pgoff, align = bv("addr"), bv("len"), bv("pgoff"), bv("align")
    term = G.dax_get_unmapped_area(addr, length, pgoff, align, alloc_z3)
    for i in range(3000):
        a = 0 if i % 4 else u64s(rng)  # mostly the NULL-hint paths the lemmas are about
        ln, pg, al = u64s(rng), u64s(rng), rng.choice(SIZES)
        want = g.dax_get_unmapped_area(a, ln, pg, al, alloc_py)
        got = evaluate(term, {addr: a, length: ln, pgoff: pg, align: al})
        assert got == want, (a, ln, pg, al)


def test_dax_get_unmapped_area_takes_every_path() -> None:
    """The inputs above do reach the hint, the plain and the aligned path (else agreement is vacuous)."""
    rng = random.Random(SEED)
    paths = set()
    for i in range(3000):
        a = 0 if i % 4 else u64s(rng)
        ln, pg, al = u64s(rng), u64s(rng), rng.choice(SIZES)
        asked: list[int] = []

        def get_area(n: int, asked: list[int] = asked) -> int:
            asked.append(n)
            return 0

        g.dax_get_unmapped_area(a, ln, pg, al, get_area)
        paths.add("hint" if not asked else "plain" if asked == [ln] else "aligned")
    assert paths == {"hint", "plain", "aligned"}


@settings(max_examples=300, deadline=None)
@given(length=st.integers(0, U64), pgoff=st.integers(0, U64), align=st.sampled_from(SIZES))
def test_dax_get_unmapped_area_agrees_hypothesis(length: int, pgoff: int, align: int) -> None:
    term = _GUA_TERM
    got = evaluate(term[0], {term[1]: length, term[2]: pgoff, term[3]: align})
    assert got == g.dax_get_unmapped_area(0, length, pgoff, align, alloc_py)


def _gua_null_hint() -> tuple[Term, Term, Term, Term]:
    length, pgoff, align = bv("len"), bv("pgoff"), bv("align")
    return G.dax_get_unmapped_area(z3.BitVecVal(0, 64), length, pgoff, align, alloc_z3), length, pgoff, align


_GUA_TERM = _gua_null_hint()


def test_round_helpers_agree() -> None:
    rng = random.Random(SEED)
    x, a = bv("x"), bv("a")
    up, down, aligned = G.round_up(x, a), G.round_down(x, a), G.is_aligned(x, a)
    for _ in range(1000):
        xv, av = u64s(rng), rng.choice(SIZES)
        env = {x: xv, a: av}
        assert evaluate(up, env) == g.round_up(xv, av)
        assert evaluate(down, env) == g.round_down(xv, av)
        assert evaluate(aligned, env) == g.is_aligned(xv, av)


# --------------------------------------------------------------------------------------------------
# check_vma
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("private_test", list(g.PrivateTest))
def test_check_vma_agrees(private_test: g.PrivateTest) -> None:
    rng = random.Random(SEED)
    alive, pfn_dev_only, s_dax = z3.Bool("alive"), z3.Bool("pfn_dev_only"), z3.Bool("s_dax")
    flags = G.VmaFlagsTerms.fresh("f")
    start, end, align = bv("vm_start"), bv("vm_end"), bv("align")
    term = G.check_vma(alive, flags, start, end, align, private_test, pfn_dev_only, s_dax)
    for bits in itertools.product((False, True), repeat=8):
        al, sh, ms, wr, nr, dc, pdo, sd = bits
        for _ in range(8):
            sv, ev, av = u64s(rng), u64s(rng), rng.choice(SIZES)
            want = g.check_vma(al, g.VmaFlags(sh, ms, wr, nr, dc), sv, ev, av, private_test, pdo, sd)
            env: dict[Term, int | bool] = {
                alive: al,
                flags.shared: sh,
                flags.mayshare: ms,
                flags.write: wr,
                flags.noreserve: nr,
                flags.dontcopy: dc,
                pfn_dev_only: pdo,
                s_dax: sd,
                start: sv,
                end: ev,
                align: av,
            }
            assert evaluate(term, env) == want, (bits, sv, ev, av)


# --------------------------------------------------------------------------------------------------
# pgoff_to_phys and make_ranges (exact integers)
# --------------------------------------------------------------------------------------------------


def _range_vars(n: int) -> list[tuple[Term, Term, Term]]:
    return [(z3.Int(f"s{i}"), z3.Int(f"e{i}"), z3.Int(f"p{i}")) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pgoff_to_phys_agrees_on_any_ranges(n: int) -> None:
    """Arbitrary Range fields, not only well-formed ones: end below start, overlapping pgoffs, ends
    next to U64. The Int encoding is exact integer arithmetic, as Python's is."""
    rng = random.Random(SEED + n)
    rvars = _range_vars(n)
    pgoff, size = z3.Int("pgoff"), z3.Int("size")
    found, phys = G.pgoff_to_phys([G.RangeTerms(*v) for v in rvars], pgoff, size)
    for _ in range(500):
        ranges = [g.Range(u64s(rng), u64s(rng), u64s(rng) >> rng.choice((0, 12, 40))) for _ in range(n)]
        pv, sv = u64s(rng) >> rng.choice((0, 12, 40)), rng.choice(SIZES)
        env: dict[Term, int | bool] = {pgoff: pv, size: sv}
        for (s, e, p), r in zip(rvars, ranges, strict=True):
            env |= {s: r.start, e: r.end, p: r.pgoff}
        want = g.pgoff_to_phys(ranges, pv, sv)
        assert evaluate(found, env) == (want is not None), (ranges, pv, sv)
        if want is not None:
            assert evaluate(phys, env) == want


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pgoff_to_phys_agrees_on_made_devices(n: int) -> None:
    """Devices as make_ranges builds them (the lemmas' shape), probed at pages in, between and past
    the ranges, so that the found branch is well exercised."""
    rng = random.Random(SEED - n)
    svars = [(z3.Int(f"start{i}"), z3.Int(f"size{i}")) for i in range(n)]
    made = G.make_ranges(svars)
    pgoff, size = z3.Int("pgoff"), z3.Int("size")
    found, phys = G.pgoff_to_phys(made, pgoff, size)
    hits = 0
    for _ in range(400):
        align = rng.choice(SIZES)
        spans = [
            (rng.getrandbits(rng.choice((30, 46, 63))) & ~(align - 1), align * rng.randint(1, 4))
            for _ in range(n)
        ]
        ranges = g.make_ranges(spans)
        env: dict[Term, int | bool] = {}
        for (sv, zv), (s, z) in zip(svars, spans, strict=True):
            env |= {sv: s, zv: z}
        for r_made, r in zip(made, ranges, strict=True):
            assert (evaluate(r_made.start, env), evaluate(r_made.end, env), evaluate(r_made.pgoff, env)) == (
                r.start,
                r.end,
                r.pgoff,
            )
        total = sum(r.pages for r in ranges)
        for pv in (0, total - 1, total, rng.randrange(total + 2), rng.randrange(total + 2)):
            sz = rng.choice(SIZES)
            want = g.pgoff_to_phys(ranges, pv, sz)
            env2 = env | {pgoff: pv, size: sz}
            assert evaluate(found, env2) == (want is not None)
            if want is not None:
                hits += 1
                assert evaluate(phys, env2) == want
    assert hits > 100


# --------------------------------------------------------------------------------------------------
# negotiate, next_fault_size, dax_huge_fault
# --------------------------------------------------------------------------------------------------

ALL_RULES = [g.FaultRules(*bits) for bits in itertools.product((False, True), repeat=3)]
RESULT_NAME: dict[g.FaultResult | None, str] = {
    g.FaultResult.NOPAGE: "NOPAGE",
    g.FaultResult.FALLBACK: "FALLBACK",
    g.FaultResult.SIGBUS: "SIGBUS",
    None: "PROCEED",
}


@pytest.mark.parametrize("rules", ALL_RULES)
def test_negotiate_agrees(rules: g.FaultRules) -> None:
    fs, align = bv("fs"), bv("align")
    term = G.negotiate(fs, align, rules)
    for f, a in itertools.product(SIZES, SIZES):
        assert evaluate(term, {fs: f, align: a}) == RESULT_NAME[g.negotiate(f, a, rules)]


def test_next_fault_size_agrees() -> None:
    fs = bv("fs")
    term = G.next_fault_size(fs)
    for f in SIZES:
        assert evaluate(term, {fs: f}) == (g.next_fault_size(f) or 0)


def _fault_case(
    n: int, fault_size: int, align: int, rules: g.FaultRules
) -> tuple[G.FaultTerms, list[Term], list[tuple[Term, Term]], Term]:
    names = ("addr", "vm_start", "vm_end", "vm_pgoff")
    xs = [z3.Int(x) for x in names]
    svars = [(z3.Int(f"start{i}"), z3.Int(f"size{i}")) for i in range(n)]
    vma_ok = z3.Bool("vma_ok")
    fault = G.dax_huge_fault(
        fault_size, xs[0], xs[1], xs[2], xs[3], align, G.make_ranges(svars), vma_ok, rules
    )
    return fault, xs, svars, vma_ok


@pytest.mark.parametrize(
    "rules",
    [
        g.FaultRules(),
        g.FaultRules(False, False, True),
        g.FaultRules(True, True, False),
        g.FaultRules(False, False, False),
    ],
)
def test_dax_huge_fault_agrees(rules: g.FaultRules) -> None:
    r = random.Random(SEED)
    seen: set[str] = set()
    for n, fault_size, align in itertools.product((1, 2, 3), SIZES, SIZES):
        fault, xs, svars, vma_ok = _fault_case(n, fault_size, align, rules)
        for _ in range(25):
            spans = [
                (r.getrandbits(r.choice((30, 46, 63))) & ~(align - 1), align * r.randint(1, 3))
                for _ in range(n)
            ]
            ranges = g.make_ranges(spans)
            vm_start = r.choice((0, r.getrandbits(47) & ~(align - 1), r.getrandbits(47), u64s(r)))
            vm_end = r.choice((vm_start + align * r.randint(0, 4), u64s(r)))
            addr = r.choice((vm_start + r.randrange(max(1, vm_end - vm_start + 1)), u64s(r))) & U64
            vm_pgoff = r.choice((0, align // g.PAGE_SIZE * r.randint(0, 4), r.getrandbits(20), u64s(r)))
            ok = r.random() < 0.9
            want = g.dax_huge_fault(
                fault_size, addr, vm_start, vm_end & U64, vm_pgoff, align, ranges, ok, rules
            )
            env: dict[Term, int | bool] = dict(zip(xs, (addr, vm_start, vm_end & U64, vm_pgoff), strict=True))
            for (sv, zv), (s, z) in zip(svars, spans, strict=True):
                env |= {sv: s, zv: z}
            env[vma_ok] = ok
            assert evaluate(fault.result, env) == want.result.value
            assert evaluate(fault.addr, env) == want.addr
            assert evaluate(fault.phys, env) == want.phys
            seen.add(want.result.value)
    assert (
        seen == {"NOPAGE", "SIGBUS", "FALLBACK"}
        if rules.fallback or not rules.pud_supported
        else seen >= {"NOPAGE", "SIGBUS"}
    )

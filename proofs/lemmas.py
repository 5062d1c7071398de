"""64-bit bit-vector lemmas about the arithmetic of device-dax (spec/geometry.py).

Each lemma is an :class:`~devdax.proofs.runner.Obligation`: a name, a one-line statement, the kernel rule
it comes from, and queries ``hypotheses => goal`` that Z3 must refute the negation of. The functions are
the terms of ``proofs.geometry_z3`` (agreement-tested against geometry.py); the hypotheses are written
here, from the kernel's own conditions, and never read back from the encoding, so a lemma is evidence
about geometry.py and not about how it was transcribed.

What the hypotheses mean for a user:

* sizes and alignments are the kernel's three: ``align`` and the fault size are each 4K, 2M or 1G;
* "no overflow" is stated in exact arithmetic (``off + len + align <= U64``): mm/mmap.c has already
  refused ``len > TASK_SIZE`` before ``f_op->get_unmapped_area`` runs, so real calls satisfy it;
* the allocator ``current->mm->get_unmapped_area`` is an *uninterpreted function*: the lemmas hold for
  every allocator whose answer is page-aligned and leaves room for the request below 2**64;
* a device is 1 to 3 ranges whose start and size are multiples of align, laid out back to back in
  pgoff space (geometry.make_ranges), physically disjoint (they are carved from distinct resources).

Statements are parameterised by a :class:`LemmaConfig` (which check_vma era, which fault rules), so a
profile whose driver has a bug (no fault fallback, M3/M4) fails the lemma the bug breaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import z3

from devdax.proofs import geometry_z3 as G
from devdax.proofs.runner import Obligation, Verdict
from devdax.proofs.smt import Query, Term, bv, bv_val, conj, member, prove
from devdax.spec import geometry as g

SIZES = g.FAULT_SIZES
"""The alignments a region can have and the entry sizes a fault can ask for: 4K, 2M, 1G."""

MAX_RANGES = 3
EXACT_BITS = 66
"""Bits in which a sum of three 64-bit values cannot wrap: 'does not overflow' is stated there."""
U64 = bv_val(g.U64, EXACT_BITS)


@dataclass(frozen=True)
class LemmaConfig:
    """The parts of a profile the arithmetic depends on (geometry.check_vma's and dax_huge_fault's
    knobs). The default is the modern driver: VM_MAYSHARE test, PFN_DEV|PFN_MAP, S_DAX, fallback."""

    name: str = "modern"
    private_test: g.PrivateTest = g.PrivateTest.VM_MAYSHARE
    pfn_dev_only: bool = False
    s_dax: bool = True
    fault_rules: g.FaultRules = field(default_factory=g.FaultRules)
    #: F3's fix (profiles.Profile.check_vma_pgoff): check_vma also aligns vm_pgoff
    check_vma_pgoff: bool = False


MODERN = LemmaConfig()

LemmaFn = Callable[[LemmaConfig], list[Query]]
#: (name, statement, source, queries) in the order the checklist prints them (the order below)
LEMMAS: list[tuple[str, str, str, LemmaFn]] = []


def lemma(statement: str, source: str) -> Callable[[LemmaFn], LemmaFn]:
    """Lists the lemma below under its function's name, with its one-line statement and the kernel
    rule it comes from, next to its queries."""

    def add(fn: LemmaFn) -> LemmaFn:
        LEMMAS.append((fn.__name__, statement, source, fn))
        return fn

    return add


def exact(x: Term) -> Term:
    """A 64-bit value in EXACT_BITS, where adding up to three of them is integer addition."""
    return z3.ZeroExt(EXACT_BITS - 64, x)


def exact_sum(*xs: Term) -> Term:
    """x1 + ... + xn without wrapping, for 'does not overflow' hypotheses (compare with ULE)."""
    total = exact(xs[0])
    for x in xs[1:]:
        total = total + exact(x)
    return total


# --------------------------------------------------------------------------------------------------
# 1. dax_get_unmapped_area with addr == 0 (docs/semantics.md#dax_get_unmapped_area)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuaSetup:
    length: Term
    pgoff: Term
    align: Term
    off: Term
    addr_align: Term
    result: Term
    hyps: tuple[Term, ...]  # align is 4K/2M/1G; the allocator's promise for len + align
    aligned_path: Term  # the kernel's condition for asking for len + align
    shown: tuple[tuple[str, Term], ...]


def gua_setup() -> GuaSetup:
    """A NULL-hint call with a symbolic length, offset, align and allocator."""
    length, pgoff, align = bv("len"), bv("pgoff"), bv("align")
    mm_alloc = z3.Function("mm_get_unmapped_area", z3.BitVecSort(64), z3.BitVecSort(64))
    result = G.dax_get_unmapped_area(bv_val(0), length, pgoff, align, mm_alloc)
    off = pgoff << g.PAGE_SHIFT
    off_end, off_align = off + length, G.round_up(off, align)
    addr_align = mm_alloc(length + align)
    aligned_path = conj(
        z3.UGT(off_end, off_align),  # "off_end <= off_align" not taken
        z3.UGE(off_end - off_align, align),  # room for one aligned unit
        z3.ULE(exact_sum(off, length, align), U64),
    )  # "off + len + align overflows" not taken
    hyps = (
        member(align, SIZES),
        G.is_aligned(addr_align, bv_val(g.PAGE_SIZE)),  # the allocator returns page-aligned ...
        z3.ULE(exact_sum(addr_align, length, align), U64),
    )  # ... room for len + align bytes
    shown = (
        ("len", length),
        ("pgoff", pgoff),
        ("off", off),
        ("align", align),
        ("addr_align", addr_align),
        ("result", result),
    )
    return GuaSetup(length, pgoff, align, off, addr_align, result, hyps, aligned_path, shown)


@lemma(
    "get_unmapped_area(NULL) result is congruent to the file offset mod align",
    "docs/semantics.md#dax_get_unmapped_area dax_get_unmapped_area",
)
def gua_congruent(cfg: LemmaConfig) -> list[Query]:
    """The reason dax_get_unmapped_area exists: ``addr_align + ((off - addr_align) & (align - 1))`` is
    congruent to the file offset, so a pgoff-aligned huge page is also virtually aligned."""
    s = gua_setup()
    mask = s.align - 1
    return [Query([*s.hyps, s.aligned_path], s.result & mask == s.off & mask, s.shown)]


@lemma(
    "get_unmapped_area result + len stays inside the len + align reservation",
    "docs/semantics.md#dax_get_unmapped_area dax_get_unmapped_area",
)
def gua_in_reservation(cfg: LemmaConfig) -> list[Query]:
    """The adjustment is less than align, so the mapping stays inside the len + align bytes the
    allocator reserved and ``result + len`` does not wrap."""
    s = gua_setup()
    r, a = exact(s.result), exact(s.addr_align)
    goal = conj(z3.ULE(a, r), z3.ULE(r + exact(s.length), exact_sum(s.addr_align, s.length, s.align)))
    return [Query([*s.hyps, s.aligned_path], goal, s.shown)]


# --------------------------------------------------------------------------------------------------
# 2. check_vma (docs/semantics.md#check_vma) and mmap = get_unmapped_area + check_vma
# --------------------------------------------------------------------------------------------------


def check_vma_of(
    cfg: LemmaConfig, alive: Term, flags: G.VmaFlagsTerms, start: Term, end: Term, align: Term
) -> Term:
    return G.check_vma(alive, flags, start, end, align, cfg.private_test, cfg.pfn_dev_only, cfg.s_dax)


@lemma(
    "check_vma accepts exactly the alive, VM_MAYSHARE, aligned vmas", "docs/semantics.md#check_vma check_vma"
)
def check_vma_exact(cfg: LemmaConfig) -> list[Query]:
    """check_vma returns 0 iff the device is alive, the vma is VM_MAYSHARE (MAP_SHARED, whatever the
    file mode) and both ends are aligned: nothing else (not pgoff, not the device size) is looked at."""
    alive, flags = z3.Bool("alive"), G.VmaFlagsTerms.fresh("vm_flags")
    start, end, align = bv("vm_start"), bv("vm_end"), bv("align")
    accepted = check_vma_of(cfg, alive, flags, start, end, align) == 0
    spec = conj(alive, flags.mayshare, G.is_aligned(start, align), G.is_aligned(end, align))
    shown = (
        ("alive", alive),
        ("shared", flags.shared),
        ("mayshare", flags.mayshare),
        ("write", flags.write),
        ("noreserve", flags.noreserve),
        ("dontcopy", flags.dontcopy),
        ("vm_start", start),
        ("vm_end", end),
        ("align", align),
        ("check_vma", check_vma_of(cfg, alive, flags, start, end, align)),
    )
    return [Query([member(align, SIZES)], accepted == spec, shown)]


def _mmap(cfg: LemmaConfig) -> tuple[GuaSetup, Term, list[Term], tuple[tuple[str, Term], ...]]:
    """mmap(NULL, len, PROT_*, MAP_SHARED, fd, off) on a live device: vm_start from
    dax_get_unmapped_area, vm_end = vm_start + len, flags as do_mmap derives them for MAP_SHARED."""
    s = gua_setup()
    flags = G.VmaFlagsTerms.fresh("vm_flags")
    file_writable = z3.Bool("file_writable")
    mmap_flags = [flags.mayshare, flags.shared == file_writable, z3.Not(flags.dontcopy)]
    start, end = s.result, s.result + s.length
    verdict = check_vma_of(cfg, z3.BoolVal(True), flags, start, end, s.align)
    shown = (*s.shown, ("file_writable", file_writable), ("vm_end", end), ("check_vma", verdict))
    return s, verdict, mmap_flags, shown


@lemma(
    "NULL-hint mmap with align-multiple offset and length passes check_vma",
    "docs/semantics.md#check_vma, #dax_get_unmapped_area; seed commit 2",
)
def mmap_aligned_accepted(cfg: LemmaConfig) -> list[Query]:
    """With an align-multiple offset and length (at least one unit) the aligned path is always taken
    and the vma it yields passes check_vma: a NULL-hint MAP_SHARED mmap of a live device succeeds."""
    s, verdict, mmap_flags, shown = _mmap(cfg)
    hyps = [
        *s.hyps,
        *mmap_flags,
        G.is_aligned(s.off, s.align),
        G.is_aligned(s.length, s.align),
        z3.UGE(s.length, s.align),
        z3.ULE(exact_sum(s.off, s.length, s.align), U64),
    ]
    return [Query(hyps, verdict == 0, shown)]


@lemma(
    "NULL-hint mmap with a misaligned offset fails check_vma (aligned path)",
    "docs/semantics.md#dax_get_unmapped_area [INF]; seed commit 2",
)
def mmap_misaligned_rejected(cfg: LemmaConfig) -> list[Query]:
    """Seed commit 2: 'If userspace attempts to force a misaligned mapping, the driver will fail the
    mmap'. A misaligned offset makes vm_start misaligned by congruence, and check_vma says -EINVAL.
    Holds whenever the aligned path is taken (len >= 2 * align suffices); a shorter range goes to the
    plain allocator, whose answer may happen to be aligned (see the module docstring of lemmas)."""
    s, verdict, mmap_flags, shown = _mmap(cfg)
    hyps = [*s.hyps, *mmap_flags, s.aligned_path, z3.Not(G.is_aligned(s.off, s.align))]
    return [Query(hyps, verdict != 0, shown)]


# --------------------------------------------------------------------------------------------------
# 3. pgoff_to_phys on a multi-range device (docs/semantics.md#faults, dax_pgoff_to_phys)
# --------------------------------------------------------------------------------------------------


def u64_int(name: str) -> tuple[Term, Term]:
    """An Int standing for a 64-bit value, and its range hypothesis 0 <= x <= U64."""
    x = z3.Int(name)
    return x, z3.And(x >= 0, x <= g.U64)


@dataclass(frozen=True)
class Device:
    ranges: tuple[G.RangeTerms, ...]
    pages: Term  # device size in pages
    hyps: tuple[Term, ...]
    shown: tuple[tuple[str, Term], ...]


def device(n: int, align: int, disjoint: bool = True) -> Device:
    """n symbolic ranges, start and size multiples of align, non-empty, ending at most at U64, laid out
    by make_ranges; physically disjoint when asked (they come from distinct resources)."""
    hyps: list[Term] = []
    spans, shown = [], []
    for i in range(n):
        start, start_ok = u64_int(f"range{i}.start")
        size, size_ok = u64_int(f"range{i}.size")
        hyps += [start_ok, size_ok, *G.range_ok(start, size, align)]
        spans.append((start, size))
        shown += [(f"range{i}.start", start), (f"range{i}.size", size)]
    ranges = G.make_ranges(spans)
    if disjoint:
        for i in range(n):
            for j in range(i + 1, n):
                hyps.append(z3.Or(ranges[i].end < ranges[j].start, ranges[j].end < ranges[i].start))
    pages: Term = z3.IntVal(0)
    for _, size in spans:
        pages = pages + size / g.PAGE_SIZE
    return Device(ranges, pages, tuple(hyps), tuple(shown))


def _cases(build: Callable[[int, int], Query]) -> list[Query]:
    """One query per device shape (1..3 ranges) and align (4K, 2M, 1G): linear arithmetic needs the
    moduli concrete, and nine tiny queries are faster than one with a symbolic align."""
    return [build(n, align) for n in range(1, MAX_RANGES + 1) for align in SIZES]


def _label(n: int, align: int, fault_size: int | None = None) -> str:
    size = f"{g.SIZE_NAMES[fault_size]} fault, " if fault_size is not None else ""
    return f"{size}align {g.ALIGN_NAMES[align]}, {n} range(s)"


def _p2p(n: int, align: int) -> tuple[Device, Term, Term, Term, list[Term], tuple[tuple[str, Term], ...]]:
    """pgoff_to_phys(ranges, pgoff, size) with size == align, the only size a fault gets that far with."""
    dev = device(n, align)
    pgoff, pgoff_ok = u64_int("pgoff")
    found, phys = G.pgoff_to_phys(dev.ranges, pgoff, align)
    shown = (*dev.shown, ("pgoff", pgoff), ("found", found), ("phys", phys))
    return dev, pgoff, found, phys, [pgoff_ok, *dev.hyps], shown


@lemma(
    "pgoff_to_phys entry lies inside exactly one range, never straddles its end",
    "docs/semantics.md#faults dax_pgoff_to_phys",
)
def p2p_inside_one_range(cfg: LemmaConfig) -> list[Query]:
    """A translated entry [phys, phys + size) lies inside exactly one range: the walk stops at the
    range holding pgoff and refuses (-1) an entry that would run past ``range.end``."""

    def build(n: int, align: int) -> Query:
        dev, _pgoff, found, phys, hyps, shown = _p2p(n, align)
        last = phys + align - 1
        inside = [z3.And(r.start <= phys, phys <= r.end) for r in dev.ranges]
        exactly_one = z3.Or(
            *(z3.And(inside[i], *(z3.Not(inside[j]) for j in range(n) if j != i)) for i in range(n))
        )
        whole = conj(*(z3.Implies(inside[i], last <= r.end) for i, r in enumerate(dev.ranges)))
        return Query(hyps, z3.Implies(found, z3.And(exactly_one, whole)), shown, _label(n, align))

    return _cases(build)


@lemma(
    "pgoff_to_phys maps a size-aligned pgoff block to a size-aligned phys",
    "docs/semantics.md#faults dax_pgoff_to_phys",
)
def p2p_size_aligned(cfg: LemmaConfig) -> list[Query]:
    """Each range starts at an align-multiple pgoff and an align-aligned address, so an entry whose
    block is size-aligned in pgoff space is size-aligned physically: a huge page maps a huge page."""

    def build(n: int, align: int) -> Query:
        _dev, pgoff, found, phys, hyps, shown = _p2p(n, align)
        block_aligned = (pgoff * g.PAGE_SIZE) % align == 0
        return Query([*hyps, found, block_aligned], phys % align == 0, shown, _label(n, align))

    return _cases(build)


@lemma(
    "pgoff_to_phys past the device's last page is None (-1, SIGBUS)",
    "docs/semantics.md#faults dax_pgoff_to_phys",
)
def p2p_beyond_device(cfg: LemmaConfig) -> list[Query]:
    """A pgoff at or past the device's last page has no translation (the kernel's -1, then SIGBUS)."""

    def build(n: int, align: int) -> Query:
        dev, pgoff, found, _phys, hyps, shown = _p2p(n, align)
        return Query([*hyps, pgoff >= dev.pages], z3.Not(found), shown, _label(n, align))

    return _cases(build)


# --------------------------------------------------------------------------------------------------
# 4. Fault-size negotiation (docs/semantics.md#faults: PMD/PUD tables, mm-side fallback)
# --------------------------------------------------------------------------------------------------


@lemma(
    "fault size > align FALLBACK, < align SIGBUS, == align proceeds (total)",
    "docs/semantics.md#faults PMD/PUD tables",
)
def negotiate_table(cfg: LemmaConfig) -> list[Query]:
    """For every fault size and align in {4K, 2M, 1G}: bigger than align -> FALLBACK, smaller ->
    SIGBUS, equal -> proceed. Total (an enum term is always one of its values) and deterministic (the
    encoding is a function), so exactly one row of the table applies."""
    fs, align = bv("fault_size"), bv("align")
    res = G.negotiate(fs, align, cfg.fault_rules)
    goal = conj(
        z3.Implies(z3.UGT(fs, align), res == G.FALLBACK),
        z3.Implies(z3.ULT(fs, align), res == G.SIGBUS),
        z3.Implies(fs == align, res == G.PROCEED),
    )
    return [
        Query(
            [member(fs, SIZES), member(align, SIZES)],
            goal,
            (("fault_size", fs), ("align", align), ("negotiate", res)),
        )
    ]


@lemma(
    "fallback from any size ends at == align or SIGBUS in <= 2 steps",
    "docs/semantics.md#faults [INF] mm-side negotiation",
)
def negotiate_fallback_chain(cfg: LemmaConfig) -> list[Query]:
    """The mm retries a FALLBACK with the next smaller size (pud -> pmd -> pte). From any size, PUD
    included, at most two fallbacks lead to a fault that proceeds at exactly align or SIGBUSes, and
    no fallback is ever asked of a pte fault (there is nothing smaller to try)."""
    fs0, align = bv("fault_size"), bv("align")
    sizes, results = [fs0], [G.negotiate(fs0, align, cfg.fault_rules)]
    for _ in range(2):
        sizes.append(G.next_fault_size(sizes[-1]))
        results.append(G.negotiate(sizes[-1], align, cfg.fault_rules))
    fell = [r == G.FALLBACK for r in results]
    final_res = z3.If(z3.Not(fell[0]), results[0], z3.If(z3.Not(fell[1]), results[1], results[2]))
    final_size = z3.If(z3.Not(fell[0]), sizes[0], z3.If(z3.Not(fell[1]), sizes[1], sizes[2]))
    goal = conj(
        z3.Implies(fell[0], sizes[1] != 0),
        z3.Implies(z3.And(fell[0], fell[1]), z3.And(sizes[2] != 0, z3.Not(fell[2]))),
        z3.Or(final_res == G.SIGBUS, z3.And(final_res == G.PROCEED, final_size == align)),
    )
    shown = (
        ("fault_size", fs0),
        ("align", align),
        ("first", results[0]),
        ("second", results[1]),
        ("third", results[2]),
        ("final_size", final_size),
    )
    return [Query([member(fs0, SIZES), member(align, SIZES)], goal, shown)]


# --------------------------------------------------------------------------------------------------
# 5. dax_huge_fault (docs/semantics.md#faults, __dev_dax_{pte,pmd,pud}_fault)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultSetup:
    fault_size: int
    align: int
    vm_start: Term
    vm_end: Term
    vm_pgoff: Term
    dev: Device
    fault: G.FaultTerms
    hyps: list[Term]
    shown: tuple[tuple[str, Term], ...]


def fault_setup(cfg: LemmaConfig, n: int, fault_size: int, align: int) -> FaultSetup:
    """A fault of one size at any address of a (non-empty) vma check_vma accepted, on an n-range
    device. The address lies inside the vma: handle_mm_fault finds the vma by the address."""
    (addr, addr_ok), (vm_start, start_ok) = u64_int("address"), u64_int("vm_start")
    (vm_end, end_ok), (vm_pgoff, pgoff_ok) = u64_int("vm_end"), u64_int("vm_pgoff")
    dev = device(n, align, disjoint=False)
    fault = G.dax_huge_fault(
        fault_size, addr, vm_start, vm_end, vm_pgoff, align, dev.ranges, True, cfg.fault_rules
    )
    hyps = [
        addr_ok,
        start_ok,
        end_ok,
        pgoff_ok,
        *dev.hyps,
        fault.result == G.NOPAGE,
        vm_start % align == 0,
        vm_end % align == 0,  # what check_vma's "vma_ok" implies
        *([(vm_pgoff * g.PAGE_SIZE) % align == 0] if cfg.check_vma_pgoff else []),  # F3 fix
        vm_start < vm_end,  # a vma is never empty
        vm_start <= addr,
        addr < vm_end,
    ]  # the mm faults only inside the vma
    shown = (
        ("address", addr),
        ("vm_start", vm_start),
        ("vm_end", vm_end),
        ("vm_pgoff", vm_pgoff),
        *dev.shown,
        ("result", fault.result),
        ("entry.addr", fault.addr),
        ("entry.phys", fault.phys),
    )
    return FaultSetup(fault_size, align, vm_start, vm_end, vm_pgoff, dev, fault, hyps, shown)


def _fault_queries(cfg: LemmaConfig, goal: Callable[[FaultSetup], tuple[list[Term], Term]]) -> list[Query]:
    """One query per fault size x align x device shape (27): the whole size table, every shape."""
    out = []
    for n in range(1, MAX_RANGES + 1):
        for fault_size in SIZES:
            for align in SIZES:
                f = fault_setup(cfg, n, fault_size, align)
                extra, g_ = goal(f)
                out.append(Query([*f.hyps, *extra], g_, f.shown, _label(n, align, fault_size)))
    return out


@lemma(
    "a NOPAGE entry [addr, addr+size) lies inside [vm_start, vm_end)",
    "docs/semantics.md#faults pmd/pud vma-bounds check (M3/M4)",
)
def fault_entry_in_vma(cfg: LemmaConfig) -> list[Query]:
    """The vma-bounds check (the M3/M4 fix): an installed entry [addr, addr + size) never reaches
    outside its vma, so a huge entry cannot cover a neighbour's addresses."""

    def goal(f: FaultSetup) -> tuple[list[Term], Term]:
        return [], conj(f.vm_start <= f.fault.addr, f.fault.addr + f.fault_size <= f.vm_end)

    return _fault_queries(cfg, goal)


@lemma(
    "a NOPAGE entry's size equals the device align", "docs/semantics.md#faults fault_size vs align (M3/M4)"
)
def fault_entry_is_align(cfg: LemmaConfig) -> list[Query]:
    """Only a fault of exactly the device's align installs an entry (bigger falls back, smaller is
    SIGBUS): every mapping of the device is made of align-sized entries."""
    return _fault_queries(cfg, lambda f: ([], z3.BoolVal(f.fault_size == f.align)))


@lemma(
    "a NOPAGE entry's [phys, phys+size) lies inside one device range",
    "docs/semantics.md#faults dax_pgoff_to_phys",
)
def fault_phys_in_device(cfg: LemmaConfig) -> list[Query]:
    """The entry's physical block [phys, phys + size) lies inside one range of the device: a fault
    never maps memory the device does not own."""

    def goal(f: FaultSetup) -> tuple[list[Term], Term]:
        last = f.fault.phys + f.fault_size - 1
        return [], z3.Or(*(z3.And(r.start <= f.fault.phys, last <= r.end) for r in f.dev.ranges))

    return _fault_queries(cfg, goal)


@lemma(
    "a NOPAGE entry's phys is size-aligned (check_vma's checks only: F3)",
    "docs/semantics.md#dax_get_unmapped_area, #faults; check_vma ignores vm_pgoff (docs/findings.md F3)",
)
def fault_phys_aligned(cfg: LemmaConfig) -> list[Query]:
    """What the kernel promises about a huge entry's physical block, with only the hypotheses the kernel
    checks: check_vma aligns vm_start and vm_end, nothing aligns vm_pgoff. This is *violated*: MAP_FIXED
    at an aligned address with a 4K file offset passes check_vma (dax_get_unmapped_area, which keeps
    the offset congruent, is bypassed), and the next PMD fault computes phys = range start + 4K and
    inserts a 2M entry for a block that is not 2M-aligned (docs/findings.md F3, the spec invariant
    entries_naturally_aligned, variant fixed-unaligned-offset). Kept as an obligation so that every
    profile shows the finding with a 64-bit counterexample instead of hiding it behind a hypothesis.

    The cases where the fault size equals the align come first: there the only way to a misaligned
    phys is the offset, so a profile that also lacks the fault fallback (v4.7: M3/M4, a 2M fault on a
    4K device) still reports F3 here, and M3/M4 under the lemmas that state them."""
    queries = _fault_queries(cfg, lambda f: ([], f.fault.phys % f.fault_size == 0))
    same = [f"{g.SIZE_NAMES[a]} fault, align {g.ALIGN_NAMES[a]}" for a in SIZES]
    return sorted(queries, key=lambda q: not q.label.startswith(tuple(same)))


@lemma(
    "with an align-multiple vm_pgoff (the F3 fix) phys is size-aligned",
    "docs/semantics.md#dax_get_unmapped_area, #faults dax_get_unmapped_area; docs/findings.md F3",
)
def fault_phys_aligned_given_offset(cfg: LemmaConfig) -> list[Query]:
    """The fix of F3: with an align-multiple file offset (what dax_get_unmapped_area's aligned path
    yields, and what a check ``IS_ALIGNED(vma->vm_pgoff << PAGE_SHIFT, dev_dax->align)`` in check_vma
    would enforce), the entry's phys is aligned to its size."""

    def goal(f: FaultSetup) -> tuple[list[Term], Term]:
        return [(f.vm_pgoff * g.PAGE_SIZE) % f.align == 0], f.fault.phys % f.fault_size == 0

    return _fault_queries(cfg, goal)


def _goal(fn: LemmaFn, cfg: LemmaConfig) -> Callable[[float], Verdict]:
    return lambda timeout: prove(fn(cfg), timeout)


def lemma_obligations(cfg: LemmaConfig = MODERN) -> list[Obligation]:
    """Every lemma as an obligation under ``cfg``; terms are built when the obligation is checked."""
    return [Obligation(name, statement, source, _goal(fn, cfg)) for name, statement, source, fn in LEMMAS]

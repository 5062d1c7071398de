"""Which objects are interchangeable, and a canonical representative of each state's orbit.

Files, vmas and CPUs are anonymous in the kernel: two states that differ only in which slot holds
which file (with its vmas, entries and the CPUs faulting on them renamed to match) behave the same.
Devices and regions are not: their minors and ids are observable.

canonical() renames files, then vmas, then sorts CPUs. Any consistent renaming yields an isomorphic
state, so the reduction is sound even where two different orderings would tie; it is complete for
the ties that matter in practice (identical files with identical vmas).

Canonicaliser is the same function for the checker's inner loop (issue 15): the renaming depends
only on the files, vmas and entries, which few states differ in (971 distinct triples among the
47,872 states of the v4.10 default), so it is computed once per triple and kept; only the CPUs are
renamed and sorted per state. tests/model/test_fast_paths.py compares it with canonical() on every
reachable state of small configurations.
"""

from __future__ import annotations

from devdax.spec.state import Cpu, Entry, File, State, Vma

#: The renamed files, vmas and entries, and the vma renaming the CPUs follow (None: identity).
Renaming = tuple[tuple[File, ...], tuple[Vma, ...], frozenset[Entry], dict[int, int] | None]


def rename(files: tuple[File, ...], vmas: tuple[Vma, ...], entries: frozenset[Entry]) -> Renaming:
    """Order files by what they are and what they map, then vmas by file and contents; the
    entries follow their vmas. Unchanged parts are returned as the very objects passed in."""
    by_vma: dict[int, list[Entry]] = {}
    for e in entries:
        by_vma.setdefault(e.vma, []).append(e)

    def vma_key(v: int) -> tuple[object, ...]:
        m = vmas[v]
        return (
            m.start,
            m.end,
            m.pgoff,
            m.shared,
            m.mayshare,
            m.write,
            m.dontcopy,
            tuple(sorted((e.addr, e.size, e.phys) for e in by_vma.get(v, ()))),
        )

    vkeys = [vma_key(v) for v in range(len(vmas))]

    def file_key(f: int) -> tuple[object, ...]:
        fl = files[f]
        return (fl.dev < 0, fl, tuple(sorted(vkeys[v] for v in range(len(vmas)) if vmas[v].file == f)))

    forder = sorted(range(len(files)), key=file_key)
    fmap = {old: new for new, old in enumerate(forder)}
    new_files = tuple(files[i] for i in forder)

    def vma_sort(v: int) -> tuple[object, ...]:
        m = vmas[v]
        return (m.file < 0, fmap.get(m.file, -1), vkeys[v])

    vorder = sorted(range(len(vmas)), key=vma_sort)
    vmap = {old: new for new, old in enumerate(vorder)}
    new_vmas = tuple(
        vmas[i]._replace(file=fmap[vmas[i].file]) if vmas[i].file >= 0 else Vma() for i in vorder
    )
    new_entries = frozenset(e._replace(vma=vmap[e.vma]) for e in entries)
    return (
        files if new_files == files else new_files,
        vmas if new_vmas == vmas else new_vmas,
        entries if new_entries == entries else new_entries,
        None if all(k == v for k, v in vmap.items()) else vmap,
    )


def _with(s: State, r: Renaming) -> State:
    """s with renaming r applied and its CPUs sorted; s itself when that changes nothing."""
    files, vmas, entries, vmap = r
    cpus = s.cpus
    new_cpus = sorted_cpus(cpus, vmap)
    if files is s.files and vmas is s.vmas and entries is s.entries:
        return s if new_cpus == cpus else s._replace(cpus=new_cpus)
    return s._replace(files=files, vmas=vmas, cpus=new_cpus, entries=entries)


def sorted_cpus(cpus: tuple[Cpu, ...], vmap: dict[int, int] | None) -> tuple[Cpu, ...]:
    """The CPUs renamed to follow the vmas (vmap from rename()) and sorted."""
    if vmap is None:
        return tuple(sorted(cpus))
    return tuple(sorted((c._replace(vma=vmap[c.vma]) if c.vma >= 0 else c) for c in cpus))


def _sorted_cpus(s: State) -> State:
    sc = tuple(sorted(s.cpus))
    return s if sc == s.cpus else s._replace(cpus=sc)


def canonical(s: State) -> State:
    if len(s.files) <= 1 and len(s.vmas) <= 1:
        return _sorted_cpus(s)  # nothing to rename: only the CPUs are interchangeable
    return _with(s, rename(s.files, s.vmas, s.entries))


class Canonicaliser:
    """canonical(), with each renaming computed once per (files, vmas, entries)."""

    def __init__(self) -> None:
        self.renamings: dict[tuple[tuple[File, ...], tuple[Vma, ...], frozenset[Entry]], Renaming] = {}

    def __call__(self, s: State, parent: State | None = None) -> State:
        """canonical(s). parent, when given, must be canonical: if s shares its files, vmas and
        entries (the very objects), the renaming is the identity and only the CPUs are sorted."""
        files, vmas, entries = s.files, s.vmas, s.entries
        if (len(files) <= 1 and len(vmas) <= 1) or (
            parent is not None and files is parent.files and vmas is parent.vmas and entries is parent.entries
        ):
            return _sorted_cpus(s)
        return _with(s, self.renaming(files, vmas, entries))

    def renaming(self, files: tuple[File, ...], vmas: tuple[Vma, ...], entries: frozenset[Entry]) -> Renaming:
        """rename(files, vmas, entries), computed once per triple."""
        key = (files, vmas, entries)
        r = self.renamings.get(key)
        if r is None:
            r = self.renamings[key] = rename(files, vmas, entries)
        return r

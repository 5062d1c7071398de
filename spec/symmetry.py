"""Which objects are interchangeable, and a canonical representative of each state's orbit.

Files, vmas and CPUs are anonymous in the kernel: two states that differ only in which slot holds
which file (with its vmas, entries and the CPUs faulting on them renamed to match) behave the same.
Devices and regions are not: their minors and ids are observable.

canonical() renames files, then vmas, then sorts CPUs. Any consistent renaming yields an isomorphic
state, so the reduction is sound even where two different orderings would tie; it is complete for
the ties that matter in practice (identical files with identical vmas).
"""

from __future__ import annotations

from devdax.spec.state import Entry, State, Vma


def canonical(s: State) -> State:
    files, vmas, cpus, entries = s.files, s.vmas, s.cpus, s.entries
    if len(files) <= 1 and len(vmas) <= 1:
        # nothing to rename: only the CPUs are interchangeable
        sc = tuple(sorted(cpus))
        return s if sc == cpus else s._replace(cpus=sc)
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
    new_cpus = tuple(sorted((c._replace(vma=vmap[c.vma]) if c.vma >= 0 else c) for c in cpus))
    if new_files == files and new_vmas == vmas and new_cpus == cpus and new_entries == entries:
        return s
    return s._replace(files=new_files, vmas=new_vmas, cpus=new_cpus, entries=new_entries)

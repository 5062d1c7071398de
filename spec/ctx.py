"""What every action may read but never changes: the bounds, the profile and the physical layout."""

from __future__ import annotations

from dataclasses import dataclass, field

from devdax.spec.config import Config, Layout
from devdax.spec.profiles import Profile, get_profile
from devdax.spec.state import State


@dataclass(frozen=True)
class Ctx:
    cfg: Config
    prof: Profile
    layout: Layout
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # computed once: spec.admin.program() is cached on the Ctx and called on most steps, and the
        # generated hash would walk the whole Config and Profile each time (issue 15); a declared
        # field rather than an entry in __dict__, which compiled classes do not have
        object.__setattr__(self, "_hash", hash((self.cfg, self.prof, self.layout)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Ctx], tuple[Config, Profile, Layout]]:
        """Pickled without the cached hash: str hashes differ from one process to the next."""
        return (Ctx, (self.cfg, self.prof, self.layout))

    @staticmethod
    def of(cfg: Config, prof: Profile | None = None) -> Ctx:
        """The context of a run: cfg.variant, when set, selects the variant's profile."""
        if prof is None and cfg.variant is not None:
            from devdax.spec.variants import get_variant

            prof = get_variant(cfg.variant).profile()
        return Ctx(cfg, prof if prof is not None else get_profile(cfg.profile), Layout.of(cfg))

    @property
    def align(self) -> int:
        """The region's align; a device's own is align_of(dev) (modern dev_dax->align)."""
        return self.layout.align

    def align_of(self, dev: int) -> int:
        return self.layout.align_of(dev)

    def vma_align(self, s: State, v: int) -> int:
        """The align check_vma, the fault handlers and may_split use for vma v: its device's."""
        return self.layout.align_of(s.files[s.vmas[v].file].dev)

    def region_of(self, dev: int) -> int:
        return dev // self.cfg.devices

    def devs_of(self, region: int) -> range:
        return range(region * self.cfg.devices, (region + 1) * self.cfg.devices)

    def minor_limit(self) -> int | None:
        """The bound of dax_minor_ida, or None for v4.10's unbounded ida_simple_get(.., 0, 0)."""
        if not self.prof.minor_ida_bounded:
            return None
        return self.cfg.nr_minors if self.cfg.nr_minors is not None else self.cfg.instances

    def nr_reserved_minors(self) -> int:
        """alloc_chrdev_region(&dax_devt, 0, nr_dax): the minors the driver owns."""
        return self.cfg.nr_minors if self.cfg.nr_minors is not None else self.cfg.instances


def oops(s: State, what: str) -> State:
    """Record the first thing the real kernel would have crashed or warned on; the state goes on so
    that the trace shows what happens next, but the invariants no_use_after_free / no_null_deref /
    no_refcount_underflow / no_list_corruption fail here."""
    return s if s.oops else s._replace(oops=what)


def bug(s: State, what: str) -> State:
    """Record a BUG(): it replaces an earlier refcount WARN (the kernel went on past the WARN and
    dies here; the checker judged the WARN's own state already), never an earlier crash."""
    return s._replace(oops=what) if not s.oops or s.oops.startswith("refcount") else s


def bugged(before: State, after: State) -> bool:
    """The step ran into a BUG() whatever the call was: list debugging (__list_del_entry_valid) kills
    the task in the middle of an unrelated close or removal. A NULL dereference or use after free is
    the faulting action's own "OOPS" outcome; a refcount_t underflow only WARNs and saturates."""
    return after.oops != before.oops and after.oops.startswith("list_del")

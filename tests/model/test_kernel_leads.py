"""The leads of issue 12 read in drivers/dax of Debian's 6.1, 6.12 and 7.2 (docs/conformance.md,
*Leads from the kernel source*): each rule the spec took from them, shown on a state or a trace.

- __devm_create_dev_dax: device_add() fails -> "kill_dev_dax(); put_device()" releases the device
  (the mappingN child is registered only after device_add); alloc_dax() fails -> err_alloc_dax
  frees the id and the region reference by hand and kfree()s the dev_dax (error_path_kfree, M18
  not fixed in any of the three).
- provider removal: mapping0's devm action runs before unregister_dev_dax; device_del() removes the
  node before bus_remove_device() runs device_dax's cdev_del.
- F1 without the probe window: a file held across unbind keeps the cdev kobject, chrdev_open()
  takes the inode's cached i_cdev, and the new file's private_data is NULL.
"""

from __future__ import annotations

import pytest

from devdax.model.checker import check
from devdax.spec import file, vma
from devdax.spec.admin import admin_steps, program, run_program
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.invariants import INVARIANTS
from devdax.spec.mapping import mapping_release
from devdax.spec.profiles import get_profile
from devdax.spec.state import D_FAILED, D_RELEASED, State
from devdax.spec.system import init

KERNELS = ("linux-6.1", "linux-6.12", "linux-7.2", "modern")
SHARED = MmapShape("shared-rw")


def _ctx(profile: str, **kw: object) -> Ctx:
    base: dict[str, object] = {"profile": profile, "files": 2, "vmas": 1, "cpus": 0, "mmaps": (SHARED,)}
    return Ctx.of(Config(**(base | kw)))  # type: ignore[arg-type]


def _broken(c: Ctx, s: State, name: str) -> str | None:
    check_state = INVARIANTS[name].check
    assert check_state is not None
    return check_state(c, s)


def _steps_of(c: Ctx, name: str, arg: int) -> list[str]:
    return [n for n, a, _ in program(c, name, arg) if a == arg]


def _run_taking(c: Ctx, s: State, prog: str, arg: int, outcome: str) -> State:
    """Run a program sequentially, taking `outcome` wherever a step offers it (else the first)."""
    a = s.admin
    s = s._replace(admin=a._replace(prog=prog, dev=arg, pc=0, generation=a.generation + (prog == "probe")))
    while s.admin.prog:
        steps = admin_steps(c, s)
        assert steps, f"{prog} blocked"
        s = next((t[3] for t in steps if t[2] == outcome), steps[0][3])
    return s


@pytest.mark.parametrize("profile", KERNELS)
def test_programs_follow_bus_c(profile: str) -> None:
    c = _ctx(profile)
    create = _steps_of(c, "probe", 0)
    # alloc_dev_dax_id() takes the id and the region reference together; mapping0 after device_add
    assert create.index("region_get") == create.index("ida_alloc_id") + 1
    assert create.index("device_add") < create.index("add_mappings")
    remove = _steps_of(c, "remove", 0)
    assert remove[0] == "unregister_mappings"  # devm action registered after unregister_dev_dax
    assert remove.index("device_del") < remove.index("cdev_del")  # devtmpfs node, then unbind
    assert remove[-2:] == ["put_device", "dax_region_unregister"]
    assert get_profile(profile).error_path_kfree


@pytest.mark.parametrize("profile", KERNELS)
def test_device_add_failure_releases_the_device(profile: str) -> None:
    """kill_dev_dax(); put_device(): with no child registered yet the release runs at once and
    returns the id and the region reference; the spec used to register mapping0 first, whose pin
    kept the failed device forever (a leak hidden behind F2's no_leak_at_quiescence)."""
    c = _ctx(profile, add_failure=True, ranges=2, units=2)
    s = _run_taking(c, init(c), "probe", 0, "EEXIST")
    dev, rg = s.devs[0], s.regions[0]
    assert dev.phase == D_RELEASED and dev.children == 0 and not dev.id_held
    assert rg.kref == 1 and rg.ida == 0  # only the devm action's reference is left
    s = run_program(c, s, "remove", 0)
    assert s.regions[0].freed
    for name in ("refcount_exact_all", "no_leak_at_quiescence", "ida_exact", "no_use_after_free"):
        assert _broken(c, s, name) is None, name


@pytest.mark.parametrize("profile", ("linux-6.1", "linux-7.2"))
def test_the_checker_finds_nothing_on_the_error_paths(profile: str) -> None:
    """device_add failing, alloc_dax finding no minor for the second device, a file open: no
    invariant breaks (in particular none of F2's consequences, which need a bind cycle), so
    error_path_kfree is no finding."""
    c = _ctx(profile, devices=2, nr_minors=1, files=1, vmas=0, binds=0, add_failure=True, mmaps=())
    res = check(c)
    assert res.complete and not res.violations, list(res.violations)


@pytest.mark.parametrize("profile", KERNELS)
def test_alloc_dax_failure_frees_by_hand_and_kfrees(profile: str) -> None:
    """err_alloc_dax: free_dev_dax_id() (ida_free, dax_region_put) and kfree(dev_dax): the device is
    gone without its release, its id and region reference returned, nothing left to put."""
    c = _ctx(profile, devices=2, nr_minors=1, files=0, vmas=0, mmaps=())
    s = run_program(c, init(c), "probe", 0)
    failed = s.devs[1]
    assert failed.phase == D_RELEASED and not failed.init_ref and not failed.id_held
    assert not failed.holds_region and failed.minor < 0
    assert s.regions[0].kref == 2  # the devm action's and dax0's (6.1 also dropped the provider's)
    assert s.regions[0].ida == 0b1
    s = run_program(c, s, "remove", 0)
    while s.devs[0].zombies:  # mapping0's release, whenever its last holder lets go
        _, s = mapping_release(c, s, 0) or ("none", s)
    assert s.regions[0].freed and s.devs[0].phase == D_RELEASED
    assert _broken(c, s, "no_leak_at_quiescence") is None


def test_alloc_dax_failure_with_the_m18_fix_puts() -> None:
    """The upstream fix (M18) unwinds through put_device(): the same end state, by the release."""
    prof = get_profile("linux-7.2").with_(name="m18-fixed", error_path_kfree=False)
    c = Ctx.of(Config(profile="linux-7.2", devices=2, nr_minors=1, files=0, vmas=0, cpus=0, mmaps=()), prof)
    s = run_program(c, init(c), "probe", 0)
    assert s.devs[1].phase == D_RELEASED and s.regions[0].ida == 0b1


@pytest.mark.parametrize("profile", KERNELS)
def test_f1_through_the_cached_i_cdev(profile: str) -> None:
    """chrdev_open(): "p = inode->i_cdev" is set by the first open and cleared only by cd_forget()
    (inode eviction) or cdev_purge() (the cdev kobject's release). A file held across unbind keeps
    the kobject, so cdev_get(p) succeeds after cdev_del; dax_open stores dax_get_private() == NULL
    and mmap dereferences it in check_vma (recorded: f1 on 6.1, 6.12 and 7.2)."""
    c = _ctx(profile, binds=1)
    s = run_program(c, init(c), "probe", 0)
    out = file.do_open(c, s, 0, True)
    assert out is not None and out[0] == "ok"
    s = run_program(c, out[1], "unbind", 0)
    assert not s.devs[0].cdev_mapped and s.devs[0].icdev_cached and s.devs[0].cdev_ref == 1
    label, s = file.do_open(c, s, 0, True) or ("none", s)
    assert label == "ok" and s.files[1].private_null
    label, s = vma.do_mmap(c, s, 1, SHARED) or ("none", s)
    assert label == "OOPS"
    assert _broken(c, s, "no_null_deref") is not None


def test_f1_without_a_held_file_is_enxio() -> None:
    c = _ctx("linux-6.12", binds=1)
    s = run_program(c, init(c), "probe", 0)
    _, s = file.do_open(c, s, 0, True) or ("none", s)
    _, s = file.do_close(c, s, 0) or ("none", s)
    s = run_program(c, s, "unbind", 0)
    assert not s.devs[0].icdev_cached
    assert (file.do_open(c, s, 0, True) or ("none",))[0] == "ENXIO"


def test_the_checker_finds_f1_through_i_cdev_alone() -> None:
    """Close M21's windows (run_dax before cdev_add; cdev_del before the kill at unbind and removal):
    the checker still reaches no_null_deref, through a file held across the unbind."""
    base = get_profile("linux-7.2")
    prof = base.with_(
        name="no-window",
        create=tuple(e for e in base.create if e not in ("cdev_add", "run_dax")) + ("run_dax", "cdev_add"),
        bind=("run_dax", "cdev_add"),
        unbind=("cdev_del", "clear_alive", "synchronize_start", "synchronize_wait", "unmap_mapping_range!"),
        remove=("unregister_mappings", "unregister_lock", "device_del", "cdev_del")
        + tuple(
            e
            for e in base.remove
            if e not in ("unregister_mappings", "unregister_lock", "device_del", "cdev_del")
        ),
    )
    cfg = Config(profile="linux-7.2", files=2, vmas=1, cpus=0, binds=1, mmaps=(SHARED,))
    res = check(Ctx.of(cfg, prof), only={"no_null_deref"})
    v = res.violations["no_null_deref"]
    actions = [(st.action, st.args) for st in v.trace]
    cdev_del = next(i for i, st in enumerate(v.trace) if "cdev_del" in str(st.args))
    opens = [i for i, (a, _) in enumerate(actions) if a == "open"]
    assert len(opens) == 2 and opens[0] < cdev_del < opens[1]
    assert v.trace[-1].action == "mmap" and v.trace[-1].outcome == "OOPS"
    assert any(st.state.devs[0].phase != D_FAILED for st in v.trace)

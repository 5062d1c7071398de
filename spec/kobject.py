"""Reference drops and the releases they trigger: cdev -> device -> {region, inode -> minor}.

A put that reaches zero runs its release synchronously, as kobject_put() does, so one user action
(the last close) can free a chain of objects; the trace line of that action says so. A put on an
object already freed, or a count that would go negative, is recorded as an oops: that is what
refcount_t reports as "underflow; use-after-free".

Sources: docs/semantics.md#objects-and-references (reference graph), #release-callbacks; fs/char_dev.c
(cdev_put, cdev_default_release -> cdev_purge, kobject_put(parent)); seed commit 3 ("reference
counting which can switch to the cdev kobject lifetime").
"""

from __future__ import annotations

from devdax.spec.ctx import Ctx, bug, oops
from devdax.spec.profiles import Lifetime
from devdax.spec.state import D_RELEASED, Dev, Region, State, set_at


def put_dev(s: State, d: int, dev: Dev) -> State:
    return s._replace(devs=set_at(s.devs, d, dev))


def put_region(s: State, r: int, region: Region) -> State:
    return s._replace(regions=set_at(s.regions, r, region))


def region_put(c: Ctx, s: State, r: int) -> State:
    """dax_region_put(): kref_put(&dax_region->kref, dax_region_free)."""
    rg = s.regions[r]
    if rg.freed or rg.kref <= 0:
        return oops(s, f"uaf: dax_region_put on freed region{r}")
    rg = rg._replace(kref=rg.kref - 1)
    if rg.kref == 0:
        rg = rg._replace(freed=True)  # dax_region_free: kfree
    return put_region(s, r, rg)


def dev_release(c: Ctx, s: State, d: int) -> State:
    """dax_dev_release (v4.10) / dev_dax_release (modern): the last device reference is gone.

    v4.10 frees the region id and the minor here, then puts the region and the inode; modern puts the
    inode (whose free returns the minor), the id, and the region. Either way the minor can be reused
    only now: no fd or vma of this instance can exist any more (docs/semantics.md#minors-and-names).
    """
    dev = s.devs[d]
    minors = s.minors
    if dev.minor_held and c.prof.minor_freed_at == "release":
        minors &= ~(1 << dev.minor)
        dev = dev._replace(minor_held=False)
    r = c.region_of(d)
    if dev.id_held:
        rg = s.regions[r]
        if rg.freed:
            return oops(s, f"uaf: ida_free on freed region{r} from dax{r}.{dev.id} release")
        s = put_region(s, r, rg._replace(ida=rg.ida & ~(1 << dev.id)))
        dev = dev._replace(id_held=False)
    holds = dev.holds_region
    dev = dev._replace(phase=D_RELEASED, inode_ref=0, holds_region=False, alive=False)
    s = put_dev(s, d, dev)._replace(minors=minors)
    return region_put(c, s, r) if holds else s


def device_put(c: Ctx, s: State, d: int) -> State:
    """put_device(): drop one struct device reference; release on the last."""
    dev = s.devs[d]
    if dev.dev_ref <= 0 or (dev.phase == D_RELEASED and c.prof.lifetime is Lifetime.CDEV_KOBJECT):
        return oops(s, f"refcount underflow: put_device on dax{d} (dev_ref {dev.dev_ref})")
    dev = dev._replace(dev_ref=dev.dev_ref - 1)
    s = put_dev(s, d, dev)
    if dev.dev_ref == 0 and c.prof.lifetime is Lifetime.CDEV_KOBJECT:
        return dev_release(c, s, d)
    return s


def cdev_put(c: Ctx, s: State, d: int) -> State:
    """kobject_put(&cdev->kobj); on zero cdev_default_release(): cdev_purge() makes every /dev inode
    forget i_cdev, then kobject_put(parent) drops the device reference cdev_add() took."""
    dev = s.devs[d]
    if dev.phase == D_RELEASED:
        return oops(s, f"uaf: cdev put on released dax{d}")
    if dev.cdev_ref <= 0:
        return oops(s, f"refcount underflow: cdev kobject of dax{d}")
    dev = dev._replace(cdev_ref=dev.cdev_ref - 1)
    if dev.cdev_ref > 0:
        return put_dev(s, d, dev)
    s = put_dev(s, d, dev._replace(icdev_cached=False))
    return device_put(c, s, d)


def dax_dev_put(c: Ctx, s: State, d: int) -> State:
    """v4.7 dax_dev_put(): kref_put(&dax_dev->kref, dax_dev_free); dax_dev_free puts the region."""
    dev = s.devs[d]
    if dev.phase == D_RELEASED or dev.kref <= 0:
        return oops(s, f"uaf: dax_dev_put on freed dax{d}")
    dev = dev._replace(kref=dev.kref - 1)
    if dev.kref > 0:
        return put_dev(s, d, dev)
    holds = dev.holds_region
    s = put_dev(s, d, dev._replace(phase=D_RELEASED, holds_region=False, alive=False))
    return region_put(c, s, c.region_of(d)) if holds else s


def file_holder_get(c: Ctx, s: State, d: int) -> State:
    """What an open file pins: the cdev kobject (chrdev_open -> cdev_get), or in v4.7 the class
    device (class_find_device) and the dax_dev kref."""
    dev = s.devs[d]
    if c.prof.lifetime is Lifetime.KREF:
        return put_dev(s, d, dev._replace(dev_ref=dev.dev_ref + 1, kref=dev.kref + 1))
    return put_dev(s, d, dev._replace(cdev_ref=dev.cdev_ref + 1, icdev_cached=True))


def file_holder_put(c: Ctx, s: State, d: int) -> State:
    """__fput() of the last reference: dax_release() does nothing; the VFS drops what open took, and
    the file's /dev inode, once devtmpfs has unlinked it, goes with its last file (cd_forget)."""
    if c.prof.lifetime is Lifetime.KREF:
        s = dax_dev_put(c, s, d)
        return device_put(c, s, d)
    s = cdev_put(c, s, d)
    return s if s.devs[d].registered else cd_forget(s, d)


def cd_forget(s: State, d: int) -> State:
    """evict() of dax{d}'s /dev inode once device_del unlinked the node and no file holds it:
    cd_forget() runs list_del_init(&inode->i_devices). After F2's re-bind that link points into a
    cdev list cdev_init() re-initialised, and list debugging BUGs ("list_del corruption",
    __list_del_entry_valid; recorded on 6.1, 6.12 and 7.2: f2 step 6)."""
    dev = s.devs[d]
    if not dev.icdev_stale or any(fl.dev == d for fl in s.files):
        return s
    s = put_dev(s, d, dev._replace(icdev_stale=False))
    return bug(
        s, f"list_del corruption: cd_forget of dax{d}'s /dev inode, linked on a re-initialised cdev list"
    )

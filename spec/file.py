"""open(2), close(2) and the last fput: what an open file pins and when it lets go.

Seed commit 2: "An open mapping or file handle keeps the backing struct device live, but new
mappings are only possible while the device is enabled." Opening does not need the device to be
alive (v4.10 dax_open has no alive check), only that the char device can be found.
"""

from __future__ import annotations

from devdax.spec.ctx import Ctx
from devdax.spec.kobject import cdev_put, dax_dev_put, file_holder_get, file_holder_put
from devdax.spec.profiles import Lifetime, OpenLookup
from devdax.spec.state import D_LIVE, File, Outcome, State, set_at


def free_slot(slots: tuple[File, ...] | tuple[object, ...], empty: object) -> int:
    for i, x in enumerate(slots):
        if x == empty:
            return i
    return -1


def chrdev_lookup(c: Ctx, s: State, d: int) -> int:
    """Which device instance does open() of device d's node reach? -1 for none (ENXIO).

    The node names a devt, not an instance. v4.7: class_find_device() by devt finds a registered
    device. v4.10+: chrdev_open() first uses the i_cdev this /dev inode cached on an earlier open,
    which works while that cdev kobject still has a reference (cdev_get ->
    kobject_get_unless_zero), even after cdev_del; otherwise it looks the devt up in kobj_map
    (cdev_add .. cdev_del). A reused minor therefore reaches the new instance
    (docs/semantics.md#minors-and-names).
    """
    dev = s.devs[d]
    if c.prof.open_lookup is OpenLookup.CLASS_FIND_DEVICE:
        for e, other in enumerate(s.devs):
            if other.minor == dev.minor and other.phase == D_LIVE and other.registered:
                return e
        return -1
    if dev.icdev_cached and dev.cdev_ref > 0:
        return d
    for e, other in enumerate(s.devs):
        if other.minor == dev.minor and other.cdev_mapped and other.cdev_ref > 0:
            return e
    return -1


def do_open(c: Ctx, s: State, d: int, writable: bool, readable: bool = True) -> Outcome | None:
    """open(node of device d, O_RDWR or O_RDONLY) -> ok | ENXIO. Guard: a free file slot and a node
    (the device got a minor once)."""
    f = free_slot(s.files, File())
    if f < 0 or s.devs[d].minor < 0:
        return None
    e = chrdev_lookup(c, s, d)
    if e < 0:
        return ("ENXIO", s)
    s = file_holder_get(c, s, e)
    if c.prof.open_refuses_dead and not s.devs[e].alive:
        # F1 fix: dax_open fails; chrdev_open keeps the cached i_cdev and puts what it took
        return ("ENXIO", cdev_put(c, s, e))
    null = c.prof.open_private_null_when_dead and not s.devs[e].alive  # M21 candidate
    return ("ok", s._replace(files=set_at(s.files, f, File(e, writable, True, 1, null, readable))))


def file_put(c: Ctx, s: State, f: int) -> State:
    """fput(): the last reference (fd or vma) runs __fput -> dax_release, then drops what open took."""
    fl = s.files[f]
    fl = fl._replace(f_count=fl.f_count - 1)
    if fl.f_count > 0:
        return s._replace(files=set_at(s.files, f, fl))
    s = s._replace(files=set_at(s.files, f, File()))
    return file_holder_put(c, s, fl.dev)


def do_close(c: Ctx, s: State, f: int) -> Outcome | None:
    """close(fd). Mappings made through it keep the file, so nothing may be released yet."""
    fl = s.files[f]
    if not fl.fd:
        return None
    s = s._replace(files=set_at(s.files, f, fl._replace(fd=False)))
    return ("ok", file_put(c, s, f))


def vma_file_get(c: Ctx, s: State, f: int) -> State:
    """A new vma takes a file reference (get_file); v4.7 also takes the dax_dev kref."""
    fl = s.files[f]
    s = s._replace(files=set_at(s.files, f, fl._replace(f_count=fl.f_count + 1)))
    if c.prof.lifetime is Lifetime.KREF:
        dev = s.devs[fl.dev]
        s = s._replace(devs=set_at(s.devs, fl.dev, dev._replace(kref=dev.kref + 1)))
    return s


def vma_file_put(c: Ctx, s: State, f: int) -> State:
    """vm_ops->close (v4.7: dax_dev_put), then fput of vm_file."""
    if c.prof.lifetime is Lifetime.KREF:
        s = dax_dev_put(c, s, s.files[f].dev)
    return file_put(c, s, f)

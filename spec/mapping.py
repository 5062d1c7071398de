"""Modern mappingN child devices: each range of a dev_dax is a child device with its own release.

M15 (6d24b170a9db "dax: Fix dax_mapping_release() use after free"): "If a child needs a parent object
to complete its release it needs to hold a reference that it drops from its release callback." The
child's release frees its id from the parent's ida, so the parent must outlive it.
"""

from __future__ import annotations

from devdax.spec.ctx import Ctx, oops
from devdax.spec.kobject import device_put, put_dev
from devdax.spec.state import D_RELEASED, Outcome, State


def mapping_release(c: Ctx, s: State, d: int) -> Outcome | None:
    """dax_mapping_release(): runs whenever the last holder of an unregistered child lets go (a
    sysfs reader, a delayed kobject release), independent of the parent's teardown."""
    dev = s.devs[d]
    if dev.zombies == 0:
        return None
    s = put_dev(s, d, dev._replace(zombies=dev.zombies - 1))
    if dev.phase == D_RELEASED:
        return ("OOPS", oops(s, f"uaf: dax_mapping_release -> ida_free(&dev_dax->ida) on freed dax{d}"))
    return ("ok", device_put(c, s, d) if c.prof.mapping_pins_parent else s)

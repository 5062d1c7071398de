"""Device-DAX as real objects over a real mmap core: regions, devices, open files, vmas.

What this is: the executable counterpart of the spec (spec/) with real reference counts, a real
global minor ida, real shared mappings and real faults (impl/core.py via impl/vmcore.py). Lifetime
state is re-implemented with objects; the semantics come from the spec: the admin programs are the
spec's (spec/admin.py program() over the profile's step lists), walked step by step and dispatched
by name to a method of the same name; the pure rules (check_vma, get_unmapped_area, may_split, the
fops outcomes) are the spec's functions.

This module re-exports the API, so callers written against it keep working; the code lives in one
module per kernel concept:

* bus.py: DaxBus, its lock, the admin programs, open, the bus-wide invariants;
* device.py: DaxRegion, DevDax and their lifecycle steps, the minor ida, kobj_map;
* file.py: DaxFile, its fops and mmap;
* vma.py: VmArea (the kernel vma), its placement, and UserMapping, the handle mmap returns;
* errors.py, event.py: the argument checks and errno helper; the event log's record.

Objects and who pins whom (docs/semantics.md#objects-and-references): an open DaxFile pins the cdev kobject
(chrdev_open -> cdev_get); each VmArea pins its file (vma->vm_file); the cdev kobject pins its parent
device; the device pins its region and its pseudo-inode; the minor goes back to the global ida only
in release, so a minor can never be reused while a file or vma of the old instance exists.

Errors: syscall-like calls raise OSError(errno) exactly where the spec's outcome is an errno; bad
arguments (wrong type, negative size, unknown name) raise ValueError naming the field; what the
kernel itself would oops or WARN on raises KernelBug (e.g. M21: mmap through a file opened while the
modern device was not alive dereferences a NULL private_data).
"""

from __future__ import annotations

from devdax.spec.abi import MADV, MAP, MS, O_FLAGS, PROT, flags_of

from .bus import ALIGNS, IMPL_PROFILES, DaxBus
from .device import DAX_MINOR_IDA, DaxRegion, DevDax, SharedBacking
from .errors import KernelBug
from .event import Event
from .file import DaxFile, PathFile
from .vma import UserMapping, VmArea, present_units

__all__ = [
    "ALIGNS",
    "DAX_MINOR_IDA",
    "IMPL_PROFILES",
    "MADV",
    "MAP",
    "MS",
    "O_FLAGS",
    "PROT",
    "DaxBus",
    "DaxFile",
    "DaxRegion",
    "DevDax",
    "Event",
    "KernelBug",
    "PathFile",
    "SharedBacking",
    "UserMapping",
    "VmArea",
    "flags_of",
    "present_units",
]

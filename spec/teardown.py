"""Why each admin step is where it is in its program: the reasons docs/reference.md prints.

spec/admin.py says what each step does and spec/profiles.py in which order each profile runs them;
this table says why the order is what it is, step by step, so the teardown protocol can be read
with its reasons (docs/semantics.md#teardown is the whole argument). tests/test_docs.py fails when
a step of a profile's program has no reason here. A reason is about position: what must be true
before the step, and what the steps after it rely on.
"""

from __future__ import annotations

#: the programs the reference prints, creation first
PROGRAMS = ("create", "create_failed", "bind", "unbind", "remove")

WHY: dict[str, str] = {
    # creation
    "ida_alloc_id": "first: the instance id names the device (daxX.Y) before anything is registered under it",
    "ida_alloc_minor": "before the inode and the cdev, which are keyed by the devt the minor makes",
    "kref_init": "v4.7: the dax_dev kref starts at one, the reference unregister drops last; open, mmap and "
    "each vma copy add theirs",
    "set_alive": "v4.7, v4.10: before the device can be found (device_create, cdev_add): an mmap or a "
    "fault that finds it must see it alive; from here teardown must go through the kill",
    "region_get": "each device pins its region before it can be reached, so the region outlives every "
    "device that points at it (dropped in the device's release)",
    "device_create": "v4.7: last; from here class_find_device() finds the device and open() succeeds",
    "dax_inode_get": "the pseudo-fs inode (keyed by devt) before the cdev: every file's f_mapping will point "
    "at its mapping, which is what lets unmap_mapping_range reach every vma",
    "device_initialize": "before cdev_add: the cdev pins its parent kobject, which must exist; from here "
    "only "
    "put_device() may free the device (M18)",
    "cdev_add": "the node can be opened from here on, so it comes after everything an open relies on; "
    "modern: before run_dax, which leaves a window where open stores a NULL private_data (F1, M21)",
    "device_add": "sysfs and the uevent that makes the /dev node; v4.10: after cdev_add, so a failure here "
    "must undo the cdev (M6); modern: before the driver binds",
    "add_mappings": "modern: the mappingN children after the device, since each pins its parent (M15)",
    "run_dax": "modern: last step of dev_dax_probe: alive only once the cdev is in place and the driver "
    "bound",
    # the kill: alive, grace period, unmap, in this order (docs/semantics.md#teardown)
    "unregister_lock": "modern: take dax_region_rwsem first, killably; before the M16 fix a signal here "
    "skipped the whole teardown",
    "clear_alive": "first step of the kill: every fault or mmap that starts after it sees the device dead "
    "and fails (SIGBUS, ENXIO)",
    "synchronize_start": "after clear_alive: the grace period must wait for exactly the readers that may "
    "have seen alive == true; started before the clear it waits for nothing that matters",
    "synchronize_wait": "before the unmap: once it returns no fault is between its alive check and its "
    "insert, so nothing can install an entry after the unmap",
    "unmap_mapping_range": "after the grace period: it removes every entry of the device (every file's "
    "f_mapping is the inode's), and no fault can add one after it; done before it, an in-flight fault "
    "inserts behind it",
    "cdev_del": "after the kill: while the cdev is in kobj_map an open reaches the device, which must still "
    "be alive for it; modern: after dev_dax_kill, which leaves a window for a NULL private_data (F1)",
    "device_del": "after cdev_del: the device leaves sysfs and the bus only once no new open can reach it",
    "unregister_mappings": "modern: the mappingN children after device_del; their release must still find "
    "the parent, which they pin (M15)",
    "put_device": "last: the reference device_initialize() took; the release (ids, minor, region, inode) "
    "runs "
    "once files and vmas let go too, never while one can use the device",
    "device_unregister": "v4.7: device_del + put_device after the grace period; there is no unmap, so "
    "entries made before the kill survive it (M22)",
    "ida_free_id": "v4.7: the instance id goes back at unregister",
    "ida_free_minor": "v4.7: the minor goes back at unregister while fds may still be open, so a new device "
    "can get it (M22); v4.10 frees it in the release instead",
    "dax_dev_put": "v4.7: last: the kref_init reference; the device is freed when files and vmas have let go",
}

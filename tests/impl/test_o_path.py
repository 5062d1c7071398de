"""O_PATH opens (spec/fops.py path_only): a path lookup, not an open of the device. Recorded on 6.1,
6.12 and 7.2 (k02, k03, k04, k05): every call on an O_PATH fd but close is EBADF. Since no ->open
ran, the file pins nothing: a removal with O_PATH files open releases the device."""

from __future__ import annotations

import errno
import os

import pytest

from devdax.impl.bus import DaxBus
from devdax.spec import fops

pytestmark = pytest.mark.timeout(60)

M2 = 2 << 20


def test_the_spec_rule() -> None:
    assert fops.path_only(frozenset({"O_RDWR", "O_PATH"}))
    assert not fops.path_only(frozenset({"O_RDWR", "O_SYNC"}))
    assert fops.PATH_FD == "EBADF"


def test_every_call_but_close_is_ebadf_and_nothing_is_pinned(bus: DaxBus) -> None:
    r = bus.create_region(4 * M2, M2)
    dev = r.devices[0]
    cdev_before = dev.cdev.count
    p = bus.open_path(dev)
    assert dev.cdev.count == cdev_before  # chrdev_open never ran
    with pytest.raises(OSError) as e:
        p.fdget()
    assert e.value.errno == errno.EBADF
    bus.remove_region(r)
    assert dev.released  # the O_PATH file held nothing of it
    p.close()
    with pytest.raises(OSError) as e:
        p.close()
    assert e.value.errno == errno.EBADF


def test_the_node_must_exist(bus: DaxBus) -> None:
    r = bus.create_region(4 * M2, M2)
    dev = r.devices[0]
    bus.remove_region(r)
    with pytest.raises(OSError) as e:
        bus.open_path(dev)
    assert e.value.errno == errno.ENOENT


def test_open_refuses_o_path_with_a_value_error_naming_flags(bus: DaxBus) -> None:
    r = bus.create_region(4 * M2, M2)
    try:
        with pytest.raises(ValueError, match="flags"):
            bus.open(r.devices[0], os.O_RDWR | os.O_PATH)
    finally:
        bus.remove_region(r)

"""The eviction rule behind F2's "list_del corruption" (kobject.cd_forget), at each alignment.

Recorded on 6.1, 6.12 and 7.2 (f2 step 6; s31c and s33a teardown): a /dev inode linked on a cdev list
that a re-bind's cdev_init() re-initialised BUGs in cd_forget() when devtmpfs's unlink evicts it.
The same program with the file closed before the unbind (k40, k41) evicts a properly linked inode.
"""

from __future__ import annotations

import pytest

from devdax.spec import admin
from devdax.spec.config import Config
from devdax.spec.ctx import Ctx
from devdax.spec.file import do_close, do_open
from devdax.spec.state import State
from devdax.spec.system import init


def _open(c: Ctx, s: State) -> tuple[int, State]:
    out = do_open(c, s, 0, True)
    assert out is not None and out[0] == "ok"
    return next(f for f, fl in enumerate(out[1].files) if fl.dev == 0 and fl.fd), out[1]


def _close(c: Ctx, s: State, f: int) -> State:
    out = do_close(c, s, f)
    assert out is not None
    return out[1]


def _ctx(align: str) -> Ctx:
    return Ctx.of(Config(profile="linux-6.1", align=align, files=2, vmas=0, cpus=0, mmaps=(), binds=1))


def _rebound_with_a_held_file(align: str) -> tuple[Ctx, State, int]:
    """probe, open, unbind, bind: F2's re-bind, the file still open (its inode's link now stale)."""
    c = _ctx(align)
    s = admin.run_program(c, init(c), "probe", 0)
    f, s = _open(c, s)
    s = admin.run_program(c, admin.run_program(c, s, "unbind", 0), "bind", 0)
    return c, s, f


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_rebind_with_a_held_file_corrupts_the_list_at_eviction(align: str) -> None:
    c, s, f = _rebound_with_a_held_file(align)
    assert s.devs[0].icdev_stale and not s.oops  # stale, but nothing walks the link yet
    s = _close(c, s, f)
    assert not s.oops.startswith("list_del")  # the node is still there: no eviction
    s = admin.run_program(c, s, "remove", 0)
    assert s.oops.startswith("list_del corruption")


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_eviction_waits_for_the_last_file(align: str) -> None:
    c, s, f = _rebound_with_a_held_file(align)
    s = admin.run_program(c, s, "remove", 0)  # unlinked, but the held file keeps the inode
    assert not s.oops.startswith("list_del")
    s = _close(c, s, f)
    assert s.oops.startswith("list_del corruption")


@pytest.mark.parametrize("align", ["4K", "2M", "1G"])
def test_closing_before_the_unbind_evicts_cleanly(align: str) -> None:
    c = _ctx(align)
    s = admin.run_program(c, init(c), "probe", 0)
    f, s = _open(c, s)
    s = _close(c, s, f)
    s = admin.run_program(c, admin.run_program(c, s, "unbind", 0), "bind", 0)
    f, s = _open(c, s)
    s = admin.run_program(c, _close(c, s, f), "remove", 0)
    assert not s.devs[0].icdev_stale and s.oops == ""

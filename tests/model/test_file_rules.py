"""The VFS rules the recordings taught (spec/fops.py path_lookup, fallocate; spec/vma.py do_mmap
and MAP_GROWSDOWN), each with the case that breaks it. Recorded on 6.1, 6.12 and 7.2: k01 (EEXIST),
k05 (fallocate EINVAL), k09 (MAP_GROWSDOWN), k43 and k44 (ENOENT after the node went)."""

from __future__ import annotations

from devdax.spec import fops
from devdax.spec.config import Config, MmapShape
from devdax.spec.ctx import Ctx
from devdax.spec.system import init
from devdax.spec.vma import do_mmap


def test_the_path_lookup_comes_before_any_open() -> None:
    assert fops.path_lookup(False, frozenset({"O_RDWR"})) == "ENOENT"
    assert fops.path_lookup(True, frozenset({"O_RDWR"})) is None
    assert fops.path_lookup(True, frozenset({"O_RDWR", "O_CREAT"})) is None
    assert fops.path_lookup(True, frozenset({"O_RDWR", "O_CREAT", "O_EXCL"})) == "EEXIST"
    assert fops.path_lookup(True, frozenset({"O_PATH", "O_CREAT", "O_EXCL"})) is None


def test_fallocate_checks_its_range_first() -> None:
    assert fops.fallocate(True, 0, 0) == "EINVAL"
    assert fops.fallocate(False, -1, 4096) == "EINVAL"
    assert fops.fallocate(True, 0, 4096) == "ENODEV"
    assert fops.fallocate(False, 0, 4096) == "EBADF"


def test_map_growsdown_on_the_device_is_einval() -> None:
    c = Ctx.of(Config(profile="modern", align="2M", units=2, files=1, vmas=2, cpus=0, race=True))
    s = init(c)
    f = next(i for i, fl in enumerate(s.files) if fl.fd)
    assert (do_mmap(c, s, f, MmapShape("gd", growsdown=True)) or ("none", s))[0] == "EINVAL"
    assert (do_mmap(c, s, f, MmapShape("plain")) or ("none", s))[0] == "ok"

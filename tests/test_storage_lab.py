"""StorageLab builds real storage of each kind and leaves nothing behind."""

from __future__ import annotations

import glob
import os
import shutil

import pytest

from aiohook.lab.storage import (
    LAB_KINDS,
    HangingFuseMount,
    LabTarget,
    LabUnavailable,
    StorageLab,
)

ROOT_KINDS = {"loop-block", "tmpfs-file", "xfs-file"}
EXPECTED_CLASS = {
    "loop-block": "block",
    "raw-preallocated": "file-preallocated",
    "raw-sparse": "file-sparse",
    "qcow2-off": "file-sparse",
    "qcow2-metadata": "file-sparse",
    "qcow2-falloc": "file-preallocated",
    "qcow2-full": "file-preallocated",
    "tmpfs-file": "file-preallocated",
    "xfs-file": "file-preallocated",
}
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (losetup, mount)")


def mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split(" ")[4].replace("\\040", " ") for line in handle]
    return [p for p in points if p == path or p.startswith(path + "/")]


def loops_backed_by(path: str) -> list[str]:
    found = []
    for backing in glob.glob("/sys/block/loop*/loop/backing_file"):
        with open(backing) as handle:
            if handle.read().strip().startswith(path + "/"):
                found.append(backing.split("/")[3])
    return found


def test_user_kinds_build_and_clean_up(tmp_path):
    workdir = tmp_path / "lab"
    kinds = [k for k in LAB_KINDS if k not in ROOT_KINDS]
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img not installed (Debian: qemu-utils)")
    with StorageLab(str(workdir)) as lab:
        targets, unavailable = lab.make_all(kinds)
        assert unavailable == {}
        assert [t.name for t in targets] == kinds
        for target in targets:
            assert isinstance(target, LabTarget)
            assert os.path.isfile(target.path)
            assert target.disk_type == "file"
            assert target.format == ("qcow2" if target.name.startswith("qcow2") else "raw")
            assert target.expected_class == EXPECTED_CLASS[target.name]
    assert not workdir.exists()


def test_unknown_kind_is_a_programming_error(tmp_path):
    with (
        StorageLab(str(tmp_path / "lab")) as lab,
        pytest.raises(ValueError, match="unknown lab kind"),
    ):
        lab.make("nfs")


@pytest.mark.skipif(os.geteuid() == 0, reason="checks the non-root refusal")
def test_root_kinds_are_unavailable_without_root(tmp_path):
    with StorageLab(str(tmp_path / "lab")) as lab:
        _targets, unavailable = lab.make_all(sorted(ROOT_KINDS))
    assert set(unavailable) == ROOT_KINDS
    assert all("needs root" in reason for reason in unavailable.values())


@needs_root
def test_all_kinds_build_and_clean_up(tmp_path):
    workdir = str(tmp_path / "lab")
    with StorageLab(workdir) as lab:
        targets, unavailable = lab.make_all()
        if unavailable:
            pytest.skip(f"lab kinds unavailable here: {unavailable}")
        by_name = {t.name: t for t in targets}
        assert {t.name: t.expected_class for t in targets} == EXPECTED_CLASS
        loop = by_name["loop-block"]
        assert os.path.islink(loop.path) and os.path.realpath(loop.path).startswith("/dev/loop")
        assert loop.disk_type == "block"
        assert len(mounts_under(workdir)) == 2  # tmpfs and xfs
        assert len(loops_backed_by(workdir)) == 2  # loop-block and the xfs backing file
    assert mounts_under(workdir) == []
    assert loops_backed_by(workdir) == []
    assert not os.path.exists(workdir)


@needs_root
def test_cleanup_runs_when_the_body_fails(tmp_path):
    workdir = str(tmp_path / "lab")
    with pytest.raises(RuntimeError, match="boom"), StorageLab(workdir) as lab:
        try:
            lab.make("loop-block")
            lab.make("tmpfs-file")
        except LabUnavailable as err:
            pytest.skip(err.reason)
        raise RuntimeError("boom")
    assert mounts_under(workdir) == []
    assert loops_backed_by(workdir) == []
    assert not os.path.exists(workdir)


@needs_root
def test_hanging_fuse_mount_serves_then_cleans_up(tmp_path):
    mount_point = str(tmp_path / "fuse")
    try:
        with HangingFuseMount(mount_point, file_size=8192) as fuse, open(fuse.path, "rb") as f:
            assert f.read() == b"\0" * 8192
    except LabUnavailable as err:
        pytest.skip(err.reason)
    assert mounts_under(mount_point) == []

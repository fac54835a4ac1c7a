"""tests/libvirt_env.py's hooks-dir snapshot and restore, on a temporary tree (never /etc)."""

from __future__ import annotations

import os
import shutil

from libvirt_env import restore_tree, snapshot_tree


def make_tree(top):
    os.makedirs(top / "qemu.d")
    (top / "qemu").write_bytes(b"#!/bin/sh\nexit 0\n")
    os.chmod(top / "qemu", 0o755)
    (top / "qemu.d" / "10-site").write_bytes(b"site\n")
    target = top.parent / "outside"
    target.write_bytes(b"not ours\n")
    os.chmod(target, 0o600)
    os.symlink(target, top / "qemu.d" / "20-link")


def test_restore_undoes_every_kind_of_change(tmp_path):
    top = tmp_path / "hooks"
    make_tree(top)
    saved = snapshot_tree(str(top))
    assert str(top) in saved and saved[str(top / "qemu")][0] == "file"

    (top / "qemu").write_bytes(b"changed\n")
    os.chmod(top / "qemu", 0o600)
    os.unlink(top / "qemu.d" / "10-site")
    os.mkdir(top / "qemu.d" / "10-site")  # a directory where a file was
    (top / "qemu.d" / "10-site" / "x").write_bytes(b"x")
    os.unlink(top / "qemu.d" / "20-link")
    (top / "qemu.d" / "20-link").write_bytes(b"a file where a link was\n")
    os.makedirs(top / "new" / "deep")
    (top / "qemu.d" / "50-aiohook").write_bytes(b"launcher\n")
    os.chmod(top, 0o700)

    restore_tree(str(top), saved)
    assert snapshot_tree(str(top)) == saved
    # the link's target kept its own mode: restoring a link does not chmod through it
    assert os.stat(tmp_path / "outside").st_mode & 0o777 == 0o600


def test_a_tree_that_did_not_exist_is_removed(tmp_path):
    top = tmp_path / "hooks"
    saved = snapshot_tree(str(top))
    assert saved == {}
    make_tree(top)
    restore_tree(str(top), saved)
    assert not os.path.lexists(top)


def test_a_removed_tree_comes_back(tmp_path):
    top = tmp_path / "hooks"
    make_tree(top)
    saved = snapshot_tree(str(top))

    shutil.rmtree(top)
    restore_tree(str(top), saved)
    assert snapshot_tree(str(top)) == saved

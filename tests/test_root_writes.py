"""Issue 14 item 6, writes: files aiohook writes as root never follow a link
that an unprivileged user planted, and are written atomically.

`rewrite --output-dir`, `facts -o`, `doctor --apply` (its sysctl.d file) and
every other write go through aiohook.fsutil.atomic_write: a temp file created
O_CREAT|O_EXCL|O_NOFOLLOW in the target's directory (opened once, every step
relative to it), filled, fchmod'ed and fsynced through its descriptor, then
renamed over the target. A symlink at the target is replaced, never written
through. The attacker here is really unprivileged: a forked child that has
dropped to `nobody` plants the links, in a directory `nobody` owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from paths import FACTS, FIXTURES

from aiohook import fsutil
from aiohook.errors import FileAccessError

DOMAIN = FIXTURES / "kubevirt-containerdisk.xml"  # rewrite changes it
SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to drop to nobody)")


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    return entry.pw_uid, entry.pw_gid


def as_nobody(action, *, wait: bool = True) -> int:
    """Run action() in a child that has dropped every privilege to `nobody`."""
    uid, gid = _nobody()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            action()
            code = 0
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    if wait:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the unprivileged helper failed"
    return pid


@pytest.fixture
def victim(tmp_path):
    """A root-only file (think /etc/shadow), in a directory only root can enter."""
    secret_dir = tmp_path / "secret"
    secret_dir.mkdir(mode=0o700)
    path = secret_dir / "shadow"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def user_dir():
    """A directory the unprivileged user owns, reachable by them (under /tmp)."""
    uid, gid = _nobody()
    path = Path(tempfile.mkdtemp(prefix="aiohook-user-"))
    os.chown(path, uid, gid)
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def intact(victim: Path) -> None:
    st = os.stat(victim)
    assert victim.read_bytes() == SECRET, "the planted link was followed: victim overwritten"
    assert (st.st_mode & 0o7777, st.st_uid) == (0o600, 0), "the victim's mode or owner changed"


def plant(link: Path, target: Path) -> None:
    as_nobody(lambda: os.symlink(target, link))
    assert link.is_symlink() and os.lstat(link).st_uid == _nobody()[0]


def aiohook(*args, env=None):
    return subprocess.run([sys.executable, "-m", "aiohook", *map(str, args)], capture_output=True,
                          timeout=120, env={**os.environ, **(env or {})}, check=False)


# ---------------------------------------------------------------- the verbs


def test_rewrite_output_dir_replaces_a_planted_link_never_its_target(victim, user_dir, tmp_path):
    out = user_dir / DOMAIN.name
    plant(out, victim)
    done = aiohook("rewrite", "--facts", FACTS, "--output-dir", user_dir, DOMAIN,
                   env={"AIOHOOK_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr.decode()
    intact(victim)
    assert not out.is_symlink() and b"<domain" in out.read_bytes()
    assert os.stat(out).st_uid == 0 and os.stat(out).st_mode & 0o777 == 0o644


def test_facts_output_replaces_a_planted_link_never_its_target(victim, user_dir, tmp_path):
    out = user_dir / "facts.yaml"
    plant(out, victim)
    done = aiohook("facts", "-o", out, FIXTURES / "minimal-file.xml",
                   env={"AIOHOOK_CACHE_DIR": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr.decode()
    intact(victim)
    assert not out.is_symlink() and b"/srv/vm/minimal.img" in out.read_bytes()


def test_doctor_apply_replaces_a_planted_link_never_its_target(victim, user_dir, tmp_path):
    from aiohook.budget.doctor import apply_fix

    sysctl = user_dir / "60-aiohook.conf"
    plant(sysctl, victim)
    proc = tmp_path / "aio-max-nr"  # never the real sysctl
    proc.write_text("1048576\n")
    report = SimpleNamespace(suggested=65536, aio_max_nr=1048576, needed=4096)
    apply_fix(report, sysctl_file=str(sysctl), proc_file=str(proc))
    intact(victim)
    assert not sysctl.is_symlink()
    assert "fs.aio-max-nr = 1048576" in sysctl.read_text()
    assert proc.read_text() == "1048576\n"  # only ever raised; not written here


# ---------------------------------------------------------------- atomic_write itself


def test_a_planted_link_at_the_temp_name_is_never_followed(victim, user_dir, monkeypatch):
    """Even if the attacker guesses the temp name: O_EXCL|O_NOFOLLOW refuses the
    link and another name is drawn."""
    names = iter([".aiohook-guessed.tmp", ".aiohook-fresh.tmp"])
    monkeypatch.setattr(fsutil, "_temp_name", lambda: next(names))
    plant(user_dir / ".aiohook-guessed.tmp", victim)
    fsutil.atomic_write(str(user_dir / "out.txt"), b"new content\n")
    intact(victim)
    assert (user_dir / "out.txt").read_bytes() == b"new content\n"
    assert (user_dir / ".aiohook-guessed.tmp").is_symlink()  # left alone, not ours


def test_a_link_raced_over_the_temp_file_is_never_followed(victim, user_dir):
    """The attacker renames links to the victim over every temp file aiohook
    creates, in a loop, from a second process, while root writes hundreds of
    times. The victim's content and mode never change: the data, the mode and
    the fsync all go through the descriptor, never through the name. A write
    whose rename a race took over fails loudly instead of succeeding."""
    target = user_dir / "out.txt"

    def attack():
        n = 0
        while True:
            for name in os.listdir(user_dir):
                if name.startswith(".aiohook-"):
                    link = user_dir / f"link-{n}"
                    n += 1
                    try:
                        os.symlink(victim, link)
                        os.rename(link, user_dir / name)
                    except OSError:
                        pass

    pid = as_nobody(attack, wait=False)
    ok = failed = 0
    started = time.monotonic()
    try:
        while ok + failed < 400 and time.monotonic() - started < 60:
            try:
                fsutil.atomic_write(str(target), b"x" * 65536, mode=0o644)
                ok += 1
            except FileAccessError as exc:
                assert "changed while writing" in str(exc) or "cannot write" in str(exc)
                failed += 1
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(f"{ok} writes, {failed} refused after a raced rename")
    intact(victim)
    assert ok + failed >= 100
    if ok and not target.is_symlink():
        assert target.read_bytes() == b"x" * 65536


def test_atomic_write_sets_the_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        fsutil.atomic_write(str(tmp_path / "f"), b"data", mode=0o644)
        fsutil.atomic_write(str(tmp_path / "g"), b"data", mode=0o755)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "f").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "g").st_mode & 0o777 == 0o755
    assert sorted(os.listdir(tmp_path)) == ["f", "g"]  # no temp file left behind


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(FileAccessError, match="Input/output error"):
        fsutil.atomic_write(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]

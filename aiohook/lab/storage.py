"""Real storage of each disk class, built in a work dir and always torn down.

Lab code for tests and calibration, not the hook: subprocesses are fine here
(never through a shell). Everything made is recorded on an undo stack that
__exit__ unwinds in reverse (unmount, losetup -d, rm), also after a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

LAB_KINDS = (
    "loop-block",
    "raw-preallocated",
    "raw-sparse",
    "qcow2-off",
    "qcow2-metadata",
    "qcow2-falloc",
    "qcow2-full",
    "tmpfs-file",
    "xfs-file",
)
XFS_MIN_BYTES = 320 << 20  # mkfs.xfs refuses filesystems below 300 MiB
_TIMEOUT_S = 120


@dataclass
class LabTarget:
    name: str  # one of LAB_KINDS
    path: str  # what a domain's <source file|dev> would name
    format: str  # 'raw' | 'qcow2'
    disk_type: str  # 'file' | 'block'
    expected_class: str  # 'block' | 'file-preallocated' | 'file-sparse'


class LabUnavailable(Exception):
    """This kind of storage cannot be built here (not root, tool missing, ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class LabCleanupError(RuntimeError):
    """Something the lab made could not be removed."""


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise LabUnavailable(f"{argv[0]} not installed") from None
    except subprocess.TimeoutExpired:
        raise LabUnavailable(f"{argv[0]} timed out") from None
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        raise LabUnavailable(f"{' '.join(argv)}: {message[-1] if message else done.returncode}")
    return done.stdout


def _need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise LabUnavailable(f"needs root ({what})")


def _need_tool(tool: str) -> None:
    if shutil.which(tool) is None:
        raise LabUnavailable(f"{tool} not installed")


class StorageLab:
    def __init__(self, workdir: str, size_bytes: int = 64 << 20):
        self.workdir = os.path.abspath(workdir)
        self.size_bytes = size_bytes
        self._undo: list[tuple[str, Callable[[], None]]] = []
        self._made_workdir = False

    def __enter__(self) -> Self:
        if not os.path.isdir(self.workdir):
            os.makedirs(self.workdir)
            self._made_workdir = True
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        failures = self.cleanup()
        if failures and exc_type is None:
            raise LabCleanupError("; ".join(failures))

    # -- public

    def make(self, kind: str) -> LabTarget:
        builder = {
            "loop-block": self._loop_block,
            "raw-preallocated": lambda: self._raw(kind, preallocate=True),
            "raw-sparse": lambda: self._raw(kind, preallocate=False),
            "qcow2-off": lambda: self._qcow2(kind, "off", "file-sparse"),
            "qcow2-metadata": lambda: self._qcow2(kind, "metadata", "file-sparse"),
            "qcow2-falloc": lambda: self._qcow2(kind, "falloc", "file-preallocated"),
            "qcow2-full": lambda: self._qcow2(kind, "full", "file-preallocated"),
            "tmpfs-file": self._tmpfs_file,
            "xfs-file": self._xfs_file,
        }.get(kind)
        if builder is None:
            raise ValueError(f"unknown lab kind {kind!r}; known: {', '.join(LAB_KINDS)}")
        return builder()

    def make_all(self, kinds: Iterable[str] = LAB_KINDS) -> tuple[list[LabTarget], dict[str, str]]:
        targets, unavailable = [], {}
        for kind in kinds:
            try:
                targets.append(self.make(kind))
            except LabUnavailable as err:
                unavailable[kind] = err.reason
        return targets, unavailable

    def cleanup(self) -> list[str]:
        """Undo everything in reverse order; returns what could not be undone."""
        failures = []
        while self._undo:
            what, undo = self._undo.pop()
            try:
                undo()
            except Exception as err:  # noqa: BLE001 - keep cleaning the rest
                failures.append(f"{what}: {err}")
        if self._made_workdir:
            try:
                os.rmdir(self.workdir)
            except OSError as err:
                failures.append(f"rmdir {self.workdir}: {err.strerror}")
            self._made_workdir = False
        return failures

    # -- pieces with their undo

    def _new_path(self, name: str) -> str:
        path = os.path.join(self.workdir, name)
        n = 1
        while os.path.lexists(path):
            n += 1
            path = os.path.join(self.workdir, f"{n}-{name}")
        return path

    def _remove_later(self, path: str) -> None:
        def remove() -> None:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.lexists(path):
                os.unlink(path)

        self._undo.append((f"rm {path}", remove))

    def _file(self, path: str, size: int, preallocate: bool) -> str:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        self._remove_later(path)
        try:
            if preallocate:
                os.posix_fallocate(fd, 0, size)
            else:
                os.ftruncate(fd, size)
        finally:
            os.close(fd)
        return path

    def _dir(self, name: str) -> str:
        path = self._new_path(name)
        os.mkdir(path)
        self._remove_later(path)
        return path

    def _losetup(self, backing: str) -> str:
        _need_root("losetup")
        _need_tool("losetup")
        device = _run(["losetup", "--find", "--show", backing]).strip()
        real_backing = os.path.realpath(backing)

        def detach() -> None:
            # Only detach if the device still serves our file (numbers get reused).
            name = os.path.basename(device)
            current = _read(f"/sys/block/{name}/loop/backing_file")
            if current is not None and os.path.realpath(current) == real_backing:
                _run(["losetup", "-d", device])

        self._undo.append((f"losetup -d {device}", detach))
        return device

    def _mount(self, argv_tail: list[str], mount_point: str) -> None:
        _need_root("mount")
        _run(["mount", *argv_tail, mount_point])

        def unmount() -> None:
            try:
                _run(["umount", mount_point])
            except LabUnavailable:
                _run(["umount", "--lazy", mount_point])  # busy: detach now, free later

        self._undo.append((f"umount {mount_point}", unmount))

    # -- kinds

    def _check_allocation(self, path: str, want_full: bool) -> None:
        st = os.stat(path)
        full = st.st_blocks * 512 >= self.size_bytes
        if full != want_full:
            state = "fully allocated" if full else "sparse"
            raise LabUnavailable(f"{path} came out {state} on this filesystem")

    def _raw(self, kind: str, preallocate: bool) -> LabTarget:
        path = self._file(self._new_path(f"{kind}.raw"), self.size_bytes, preallocate)
        self._check_allocation(path, preallocate)
        expected = "file-preallocated" if preallocate else "file-sparse"
        return LabTarget(kind, path, "raw", "file", expected)

    def _qcow2(self, kind: str, prealloc: str, expected: str) -> LabTarget:
        _need_tool("qemu-img")
        path = self._new_path(f"{kind}.qcow2")
        self._remove_later(path)
        _run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                f"preallocation={prealloc}",
                path,
                str(self.size_bytes),
            ]
        )
        self._check_allocation(path, expected == "file-preallocated")
        return LabTarget(kind, path, "qcow2", "file", expected)

    def _loop_block(self) -> LabTarget:
        _need_root("losetup")
        backing = self._file(self._new_path("loop-block.backing"), self.size_bytes, True)
        device = self._losetup(backing)
        link = self._new_path("loop-block.dev")
        os.symlink(device, link)  # domains name the symlink, like /dev/disk/by-id
        self._remove_later(link)
        return LabTarget("loop-block", link, "raw", "block", "block")

    def _tmpfs_file(self) -> LabTarget:
        _need_root("mount tmpfs")
        mount_point = self._dir("tmpfs")
        self._mount(
            ["-t", "tmpfs", "-o", f"size={self.size_bytes + (8 << 20)},mode=0755", "aiohook-lab"],
            mount_point,
        )
        path = self._file(os.path.join(mount_point, "disk.raw"), self.size_bytes, True)
        return LabTarget("tmpfs-file", path, "raw", "file", "file-preallocated")

    def _xfs_file(self) -> LabTarget:
        _need_root("loop-mount xfs")
        _need_tool("mkfs.xfs")
        backing = self._file(
            self._new_path("xfs.backing"), max(XFS_MIN_BYTES, 2 * self.size_bytes), False
        )
        _run(["mkfs.xfs", "-q", "-f", backing])
        device = self._losetup(backing)
        mount_point = self._dir("xfs")
        self._mount(["-t", "xfs", device], mount_point)
        path = self._file(os.path.join(mount_point, "disk.raw"), self.size_bytes, True)
        return LabTarget("xfs-file", path, "raw", "file", "file-preallocated")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


# ---------------------------------------------------------------- a FUSE mount that can hang
#
# A minimal FUSE server speaking the kernel protocol on /dev/fuse directly (no
# libfuse, no fusepy), run as a child process. It serves one file, disk.raw;
# freeze() SIGSTOPs it, which makes every access below the mount block, like a
# dead NFS/FUSE server. Closing the lab kills it (the kernel then fails the
# blocked calls with ENOTCONN) and unmounts.

FUSE_FILE = "disk.raw"
_FUSE_LOOKUP, _FUSE_FORGET, _FUSE_GETATTR = 1, 2, 3
_FUSE_OPEN, _FUSE_READ, _FUSE_RELEASE, _FUSE_FLUSH = 14, 15, 18, 25
_FUSE_INIT, _FUSE_INTERRUPT, _FUSE_DESTROY, _FUSE_BATCH_FORGET = 26, 36, 38, 42


class HangingFuseMount:
    """Context manager: a FUSE mount at `mount_point` serving `FUSE_FILE`."""

    def __init__(self, mount_point: str, file_size: int = 1 << 20):
        self.mount_point = os.path.abspath(mount_point)
        self.file_size = file_size
        self.path = os.path.join(self.mount_point, FUSE_FILE)
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Self:
        import sys

        _need_root("mount fuse")
        if not os.path.exists("/dev/fuse"):
            raise LabUnavailable("/dev/fuse missing")
        os.makedirs(self.mount_point, exist_ok=True)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
        env = dict(os.environ, PYTHONPATH=package_parent)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aiohook.lab.storage",
                "fuse-serve",
                self.mount_point,
                str(self.file_size),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        first = self.process.stdout.readline().strip()
        if first != "ready":
            self.__exit__(None, None, None)
            raise LabUnavailable(f"FUSE server did not start: {first or 'no output'}")
        return self

    def freeze(self) -> None:
        """SIGSTOP the server: from now on, accesses below the mount hang."""
        import signal

        os.kill(self.process.pid, signal.SIGSTOP)

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()  # SIGKILL also ends a stopped process
            self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process = None
        subprocess.run(["umount", "--lazy", self.mount_point], capture_output=True, check=False)


def _fuse_serve(mount_point: str, file_size: int) -> int:
    import ctypes
    import errno
    import stat
    import struct

    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other".encode()
    if libc.mount(b"aiohook-lab", mount_point.encode(), b"fuse.aiohook-lab", 0, options):
        print(f"mount: {os.strerror(ctypes.get_errno())}", flush=True)
        return 1
    print("ready", flush=True)

    def attr(nodeid: int) -> bytes:
        if nodeid == 1:
            mode, size, nlink = stat.S_IFDIR | 0o755, 0, 2
        else:
            mode, size, nlink = stat.S_IFREG | 0o644, file_size, 1
        return struct.pack(
            "<QQQQQQIIIIIIIIII",
            nodeid,
            size,
            (size + 511) // 512,
            0,
            0,
            0,
            0,
            0,
            0,
            mode,
            nlink,
            0,
            0,
            0,
            4096,
            0,
        )

    def reply(unique: int, payload: bytes = b"", error: int = 0) -> None:
        os.write(fd, struct.pack("<IiQ", 16 + len(payload), -error, unique) + payload)

    while True:
        try:
            request = os.read(fd, (1 << 17) + 4096)
        except OSError as err:
            if err.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                continue  # request interrupted before we read it
            return 0  # ENODEV: unmounted
        _len, opcode, unique, nodeid = struct.unpack_from("<IIQQ", request)
        body = request[40:]
        try:
            if opcode in (_FUSE_FORGET, _FUSE_BATCH_FORGET, _FUSE_INTERRUPT):
                continue  # no reply expected
            if opcode == _FUSE_INIT:
                _major, _minor, readahead = struct.unpack_from("<III", body)
                out = struct.pack("<IIIIHHIIHH", 7, 31, readahead, 0, 16, 12, 65536, 1, 0, 0)
                reply(unique, out.ljust(64, b"\0"))
            elif opcode == _FUSE_LOOKUP:
                name = body.split(b"\0", 1)[0]
                if nodeid == 1 and name == FUSE_FILE.encode():
                    reply(unique, struct.pack("<QQQQII", 2, 0, 0, 0, 0, 0) + attr(2))
                else:
                    reply(unique, error=errno.ENOENT)
            elif opcode == _FUSE_GETATTR:
                reply(unique, struct.pack("<QII", 0, 0, 0) + attr(nodeid))
            elif opcode == _FUSE_OPEN:
                reply(unique, struct.pack("<QII", 0, 0, 0))
            elif opcode == _FUSE_READ:
                _fh, offset, size = struct.unpack_from("<QQI", body)
                reply(unique, b"\0" * max(0, min(size, file_size - offset)))
            elif opcode in (_FUSE_RELEASE, _FUSE_FLUSH):
                reply(unique)
            elif opcode == _FUSE_DESTROY:
                reply(unique)
                return 0
            else:
                reply(unique, error=errno.ENOSYS)
        except OSError:
            continue  # the request was aborted meanwhile


if __name__ == "__main__":
    import sys

    if len(sys.argv) == 4 and sys.argv[1] == "fuse-serve":
        sys.exit(_fuse_serve(sys.argv[2], int(sys.argv[3])))
    print("usage: python -m aiohook.lab.storage fuse-serve MOUNT_POINT FILE_SIZE", file=sys.stderr)
    sys.exit(2)

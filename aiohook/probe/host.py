"""What the host's kernel and binaries say: sysctls, io_uring, QEMU and libvirt versions.

The one reader of each host fact (issue 12): LinuxProbe.host_facts, the AIO
budget (budget/supply.py), doctor and calibrate all ask here. On the hook's hot
path, so kept light on imports: re and subprocess only for a binary the cache
has not seen.
"""

from __future__ import annotations

import mmap
import os
import stat

from aiohook import fsutil, jsonlite, paths
from aiohook.errors import AiohookError
from aiohook.facts import version_tuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

PROC_ROOT = "/proc"  # the one default /proc of every reader (a fake host's, in tests)
AIO_MAX_NR = "fs/aio-max-nr"
AIO_NR = "fs/aio-nr"
IO_URING_DISABLED = "kernel/io_uring_disabled"
OSRELEASE = "kernel/osrelease"
IO_URING_SINCE = (5, 1)
IO_URING_SYSCTL_SINCE = (6, 6)

DEFAULT_EMULATOR = "/usr/bin/qemu-system-x86_64"
LIBVIRT_DAEMONS = ("/usr/sbin/virtqemud", "/usr/sbin/libvirtd")
_CACHE_FILE = "binaries.json"
_CACHE_VERSION = 1
_VERSION_TIMEOUT_S = 5.0
_QEMU_MARK = b"QEMU emulator version "
_LIBVIRT_MARK = b"LIBVIRT_PRIVATE_"  # symbol version; equals the libvirt release
_LIBURING_MARK = b"liburing.so"
_VERSION_RE = rb"(\d+\.\d+(?:\.\d+)?)"


# ---------------------------------------------------------------- sysctls


def read_sysctl(name: str, proc_root: str | None = None) -> str:
    """The value of sysctl `name` ("fs/aio-max-nr"), stripped. Raises OSError."""
    with open(os.path.join(proc_root or PROC_ROOT, "sys", name)) as handle:
        return handle.read().strip()


def read_sysctl_int(name: str, proc_root: str | None = None) -> int:
    """An integer sysctl. Raises OSError, or ValueError when it is not a number."""
    return int(read_sysctl(name, proc_root))


def kernel_release(proc_root: str | None = None) -> str:
    """kernel.osrelease under `proc_root`; uname's when that cannot be read."""
    try:
        return read_sysctl(OSRELEASE, proc_root)
    except OSError:
        return os.uname().release


def kernel_io_uring(proc_root: str | None = None) -> tuple[bool | None, str]:
    """(may an unprivileged process such as QEMU under libvirt create io_uring rings,
    why). None: not known.

    kernel.io_uring_disabled (Linux 6.6+): 0 allows everyone; 1 only CAP_SYS_ADMIN
    and kernel.io_uring_group; 2 nobody. io_uring registers that sysctl itself
    (io_uring_init in io_uring/io_uring.c, built only with CONFIG_IO_URING), so on
    6.6 and later a missing sysctl means a kernel without io_uring. Before 6.6
    there is no switch: io_uring exists from 5.1 on (unless not built, which no
    file shows).
    """
    try:
        value = read_sysctl(IO_URING_DISABLED, proc_root)
    except FileNotFoundError:
        return _io_uring_by_release(kernel_release(proc_root))
    except OSError as err:
        path = os.path.join(proc_root or PROC_ROOT, "sys", IO_URING_DISABLED)
        return None, f"cannot read {path}: {err}"
    if value == "0":
        return True, "kernel.io_uring_disabled=0"
    if not value.isdecimal():
        return None, f"kernel.io_uring_disabled={value!r} is not a number"
    return False, f"kernel.io_uring_disabled={value} (QEMU under libvirt runs unprivileged)"


def _io_uring_by_release(release: str) -> tuple[bool | None, str]:
    version = version_tuple(release)[:2]
    if len(version) < 2:
        return None, f"no kernel.io_uring_disabled sysctl, and kernel release {release!r} unknown"
    if version < IO_URING_SINCE:
        return False, f"kernel {release} predates io_uring (Linux 5.1)"
    if version < IO_URING_SYSCTL_SINCE:
        return True, "no kernel.io_uring_disabled sysctl (kernel < 6.6): allowed"
    return False, (f"no kernel.io_uring_disabled sysctl on kernel {release} (6.6+ has it "
                   "whenever io_uring is built in): no io_uring")


# ---------------------------------------------------------------- binaries


class BinaryFactsCache:
    """Facts read from a binary, keyed by (path, mtime_ns, size, inode)."""

    def __init__(self, cache_dir: str | None):
        self.file = os.path.join(cache_dir, _CACHE_FILE) if cache_dir else None

    @staticmethod
    def key(st: os.stat_result) -> list[int]:
        return [st.st_mtime_ns, st.st_size, st.st_ino]

    def _load(self) -> dict:
        if not self.file:
            return {}
        try:
            with open(self.file, encoding="utf-8") as handle:
                data = jsonlite.loads(handle.read())
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        entries = data.get("binaries")
        return entries if isinstance(entries, dict) else {}

    def get(self, path: str, st: os.stat_result) -> dict | None:
        entry = self._load().get(path)
        if isinstance(entry, dict) and entry.get("key") == self.key(st):
            facts = entry.get("facts")
            return facts if isinstance(facts, dict) else None
        return None

    def put(self, path: str, st: os.stat_result, facts: dict) -> None:
        if not self.file:
            return
        entries = self._load()
        entries[path] = {"key": self.key(st), "facts": facts}
        data = jsonlite.dumps({"version": _CACHE_VERSION, "binaries": entries}).encode()
        try:
            os.makedirs(os.path.dirname(self.file), exist_ok=True)
            fsutil.atomic_write(self.file, data, mode=0o600)
        except (OSError, AiohookError):
            pass  # a cache that cannot be written only costs time


class BinaryFacts:
    """QEMU's and libvirt's versions and build features, read from their binaries
    (no subprocess unless the binary hides its version) and cached per binary."""

    def __init__(self, cache_dir: str | None = None):
        self._cache = BinaryFactsCache(cache_dir if cache_dir is not None else paths.cache_dir())

    def qemu(self, path: str | None) -> dict:
        """{"version": str | None, "liburing": bool} of that emulator; {} if unreadable."""
        return self._facts(path or DEFAULT_EMULATOR, _scan_qemu)

    def libvirt_version(self, daemons: Sequence[str] = LIBVIRT_DAEMONS) -> str | None:
        """The version of the first of `daemons` that has one."""
        for daemon in daemons:
            version = self._facts(daemon, _scan_libvirt).get("version")
            if version:
                return version
        return None

    def _facts(self, path: str, scan: Callable[[str], dict]) -> dict:
        try:
            st = os.stat(path)
        except OSError:
            return {}
        if not stat.S_ISREG(st.st_mode):
            return {}
        cached = self._cache.get(path, st)
        if cached is not None:
            return cached
        try:
            facts = scan(path)
        except OSError:
            return {}
        self._cache.put(path, st, facts)
        return facts


def _scan_qemu(path: str) -> dict:
    found = _scan_binary(path, (_QEMU_MARK, _LIBURING_MARK))
    version = _version_from(found[_QEMU_MARK]) or _version_by_running(path)
    return {"version": version, "liburing": found[_LIBURING_MARK] is not None}


def _scan_libvirt(path: str) -> dict:
    found = _scan_binary(path, (_LIBVIRT_MARK,))
    return {"version": _version_from(found[_LIBVIRT_MARK]) or _version_by_running(path)}


def _scan_binary(path: str, marks: Sequence[bytes]) -> dict[bytes, bytes | None]:
    """For each mark, the bytes that follow its first occurrence (up to 64), or None."""
    found: dict[bytes, bytes | None] = {mark: None for mark in marks}
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return found
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            for mark in marks:
                at = data.find(mark)
                if at >= 0:
                    start = at + len(mark)
                    found[mark] = data[start : start + 64]
    return found


def _version_from(blob: bytes | None) -> str | None:
    """The version string a binary's marker is followed by (found, not parsed:
    facts.version_tuple parses it)."""
    if not blob:
        return None
    import re

    match = re.match(_VERSION_RE, blob)
    return match.group(1).decode() if match else None


def _version_by_running(path: str) -> str | None:
    """Last resort, result cached by the caller: `BINARY --version`."""
    import subprocess

    try:
        out = subprocess.run(
            [path, "--version"],
            capture_output=True,
            timeout=_VERSION_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    import re

    match = re.search(rb"version\s+(\d+\.\d+(?:\.\d+)?)|\)\s+(\d+\.\d+(?:\.\d+)?)", out)
    if not match:
        return None
    return (match.group(1) or match.group(2)).decode()

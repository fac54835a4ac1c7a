"""Issue 14 item 4: the root hook's probe opens only what it checked.

The probe looks a source up once with O_PATH (no driver code runs, a FIFO does
not block, nothing is read), fstats that descriptor, and reopens it for reading
through /proc/self/fd/N only when it is a regular file or a block device. A
source renamed over between the check and the open must change nothing.

Two witnesses, so a test cannot pass by accident:
- every os.open is wrapped: an open for I/O that yields anything but a regular
  file or a block device is recorded (a char device, a FIFO);
- the kernel itself: a writer blocked in open(FIFO, O_WRONLY) returns only when
  someone opens that FIFO for reading. The FIFO keeps a second name, so the
  writer waits on it whatever name it has at the moment.
"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time

import pytest

from aiohook.facts import SourceRequest
from aiohook.probe import sources

REAL_OPEN = os.open
REAL_STAT = os.stat
REAL_FSTAT = os.fstat
FILE_SIZE = 1 << 20


class OpenWitness:
    """Wraps os.open: records each open for I/O of something not a file or block device."""

    def __init__(self):
        self.bad: list[tuple[str, str]] = []
        self.io_opens = 0

    def __call__(self, path, flags, mode=0o777, *, dir_fd=None):
        fd = REAL_OPEN(path, flags, mode, dir_fd=dir_fd)
        if not flags & getattr(os, "O_PATH", 0):
            self.io_opens += 1
            st = REAL_FSTAT(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                self.bad.append((str(path), stat.filemode(st.st_mode)))
        return fd


class FifoWitness:
    """A writer blocked on the FIFO; it wakes only when someone opens it for reading."""

    def __init__(self, fifo: str):
        self.fifo = fifo
        self.readers = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()

    def _wait(self):
        while True:
            fd = REAL_OPEN(self.fifo, os.O_WRONLY | os.O_CLOEXEC)  # blocks until a reader
            os.close(fd)
            if self.stopping:
                return
            self.readers += 1

    def stop(self) -> int:
        self.stopping = True
        fd = REAL_OPEN(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # release it
        self.thread.join(5)
        os.close(fd)
        assert not self.thread.is_alive()
        return self.readers


@pytest.fixture
def objects(tmp_path):
    """The regular file, and the things an attacker would swap in for it."""
    home = tmp_path / "home"
    home.mkdir()
    regular = home / "disk.raw"
    with open(regular, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, FILE_SIZE)
    fifo = home / "fifo"
    os.mkfifo(fifo)
    found = {"file": str(regular), "fifo": str(fifo)}
    try:  # a char device like /dev/watchdog; this one is a copy of /dev/null
        chr_dev = home / "chr"
        os.mknod(chr_dev, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        found["chr"] = str(chr_dev)
    except OSError:
        pass
    found["link-to-char"] = str(home / "link-null")
    os.symlink("/dev/null", found["link-to-char"])
    found["link-to-fifo"] = str(home / "link-fifo")
    os.symlink(str(fifo), found["link-to-fifo"])
    return found


def _put(objects: dict, which: str, dest: str, tmp: str) -> None:
    """Make `dest` name objects[which] with one rename (atomic, as an attacker would)."""
    src = objects[which]
    try:
        os.unlink(tmp)  # left over when dest already was a link to the same inode
    except FileNotFoundError:
        pass
    if os.path.islink(src):
        os.symlink(os.readlink(src), tmp)
    else:
        os.link(src, tmp)
    os.rename(tmp, dest)


def test_fifo_char_device_and_links_to_them_are_never_opened(tmp_path, objects, monkeypatch):
    witness = OpenWitness()
    monkeypatch.setattr(os, "open", witness)
    fifo_readers = FifoWitness(objects["fifo"])
    try:
        for which in objects:
            if which == "file":
                continue
            started = time.monotonic()
            facts = sources.probe_path(SourceRequest(objects[which], "raw"))
            assert time.monotonic() - started < 1.0
            assert facts.kind == "unknown", (which, facts)
            assert "source is a" in facts.error
    finally:
        readers = fifo_readers.stop()
    assert witness.bad == [] and witness.io_opens == 0
    assert readers == 0


def test_swap_right_after_the_check_changes_nothing(tmp_path, objects, monkeypatch):
    """Deterministic: the path is renamed to a FIFO (then a char device) at the
    worst moment, just after the probe's stat or fstat has seen a regular file."""
    witness = OpenWitness()
    fifo_readers = FifoWitness(objects["fifo"])
    src = str(tmp_path / "source.raw")
    tmp = str(tmp_path / "swap.tmp")
    attacker = [name for name in ("fifo", "chr") if name in objects]
    results = []
    try:
        for evil in attacker:
            _put(objects, "file", src, tmp)
            armed = [True]

            def swap_after(result, evil=evil, armed=armed):
                if armed[0] and stat.S_ISREG(result.st_mode) and result.st_size == FILE_SIZE:
                    armed[0] = False
                    _put(objects, evil, src, tmp)
                return result

            def stat_then_swap(path, *args, **kwargs):
                return swap_after(REAL_STAT(path, *args, **kwargs))

            def fstat_then_swap(fd):
                return swap_after(REAL_FSTAT(fd))

            with monkeypatch.context() as m:
                m.setattr(os, "open", witness)
                m.setattr(os, "stat", stat_then_swap)
                m.setattr(os, "fstat", fstat_then_swap)
                facts = sources.probe_path(SourceRequest(src, "raw"))
            assert not armed[0], "the swap never happened: the probe changed, fix this test"
            results.append((evil, facts))
    finally:
        readers = fifo_readers.stop()
    assert witness.bad == []
    assert readers == 0
    for evil, facts in results:
        # Either the file that was checked, probed in full, or nothing at all.
        assert facts.kind in ("file", "unknown"), (evil, facts)
        if facts.kind == "file":
            assert facts.size == FILE_SIZE and facts.allocated is True, (evil, facts)


def _swapper(objects: dict, src: str, tmp: str) -> int:
    """A child process renaming file / FIFO / char device / links over src, forever."""
    pid = os.fork()
    if pid:
        return pid
    try:
        evil = [name for name in objects if name != "file"]
        cycle = [name for bad in evil for name in ("file", bad)]  # the file half the time
        i = 0
        while True:
            _put(objects, cycle[i % len(cycle)], src, tmp)
            i += 1
    finally:
        os._exit(0)


def test_racing_swaps_never_open_anything_else(tmp_path, objects, monkeypatch):
    """A second process renames a FIFO, a char device and links to them over the
    source in a loop, on the other core, while the probe runs thousands of times."""
    runs = 3000
    src = str(tmp_path / "source.raw")
    _put(objects, "file", src, str(tmp_path / "first.tmp"))
    mounts = sources.parse_mountinfo(open("/proc/self/mountinfo").read())
    witness = OpenWitness()
    fifo_readers = FifoWitness(objects["fifo"])
    kinds: dict[str, int] = {}
    wrong: list = []
    slowest = [0.0]

    done = [0]

    def probe_loop():
        for _ in range(runs):
            t0 = time.monotonic()
            try:
                facts = sources.probe_path(SourceRequest(src, "raw"), mounts)
            except Exception as exc:  # noqa: BLE001 - a probe that raises is a failure too
                wrong.append(f"probe_path raised {type(exc).__name__}: {exc}")
                continue
            finally:
                done[0] += 1
            slowest[0] = max(slowest[0], time.monotonic() - t0)
            kinds[facts.kind] = kinds.get(facts.kind, 0) + 1
            if facts.kind not in ("file", "unknown", "missing") or (
                    facts.kind == "file" and facts.size != FILE_SIZE):
                wrong.append(facts)

    monkeypatch.setattr(os, "open", witness)
    pid = _swapper(objects, src, str(tmp_path / "swap.tmp"))
    worker = threading.Thread(target=probe_loop, daemon=True)
    started = time.monotonic()
    try:
        worker.start()
        worker.join(120)
        hung = worker.is_alive()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        readers = fifo_readers.stop()
        if worker.is_alive():  # stuck in an open: let it go
            fd = REAL_OPEN(objects["fifo"], os.O_RDWR | os.O_NONBLOCK)
            worker.join(5)
            os.close(fd)
    elapsed = time.monotonic() - started
    print(f"{runs} probes in {elapsed:.1f}s, slowest {slowest[0] * 1000:.1f} ms, kinds {kinds}, "
          f"{witness.io_opens} opens for I/O")
    assert not hung, "the probe hung on a swapped source"
    assert done[0] == runs
    assert witness.bad == [], witness.bad[:5]
    assert readers == 0, f"the FIFO was opened for reading {readers} times"
    assert wrong == [], wrong[:3]
    assert slowest[0] < 1.0
    # The race really happened: both the file and the swapped-in objects were seen.
    assert kinds.get("file", 0) > 0 and kinds.get("unknown", 0) > 0, kinds

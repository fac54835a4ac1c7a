"""LinuxProbe against real storage: lab kinds, traps, timeouts, host facts, pools."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiohook.facts import SourceRequest, version_tuple
from aiohook.lab.storage import LAB_KINDS, HangingFuseMount, LabUnavailable, StorageLab
from aiohook.probe.bounded import abandoned_threads
from aiohook.probe.host import kernel_io_uring
from aiohook.probe.linux import LinuxProbe
from aiohook.probe.pools import resolve_pool_volume
from aiohook.probe.qcow2 import QCOW2_MAGIC, Qcow2Error, parse_header
from aiohook.probe.sources import block_transport, fs_type_for, parse_mountinfo

KERNEL = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
LAB_SIZE = 64 << 20


@pytest.fixture
def probe(tmp_path):
    return LinuxProbe(pool_dir=str(tmp_path / "pools"), cache_dir=str(tmp_path / "cache"))


def one(probe, path, fmt=None, budget_s=2.0):
    return probe.source_facts([SourceRequest(path, fmt)], budget_s=budget_s)[path]


# ---------------------------------------------------------------- every lab kind


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with StorageLab(str(tmp_path_factory.mktemp("lab") / "work"), LAB_SIZE) as built:
        targets, unavailable = built.make_all()
        yield {t.name: t for t in targets}, unavailable


@pytest.mark.parametrize("kind", LAB_KINDS)
def test_lab_kind_is_classified(lab, kind, tmp_path):
    targets, unavailable = lab
    if kind in unavailable:
        pytest.skip(f"{kind}: {unavailable[kind]}")
    target = targets[kind]
    probe = LinuxProbe(cache_dir=str(tmp_path))
    facts = one(probe, target.path, target.format)
    assert facts.error is None, facts
    assert facts.kind == target.disk_type
    assert facts.allocated is (target.expected_class != "file-sparse")
    assert facts.virtual_size == LAB_SIZE
    if target.disk_type == "block":
        # The domain names a symlink (like /dev/disk/by-id/...): resolved to the loop device.
        assert os.path.islink(target.path)
        assert facts.resolved == os.path.realpath(target.path)
        assert facts.resolved.startswith("/dev/loop")
        assert facts.transport == "loop"
        assert facts.size == facts.allocated_bytes == LAB_SIZE
        assert facts.fs is None
        assert facts.o_direct is True
    else:
        assert facts.transport is None
        assert facts.resolved == os.path.realpath(target.path)
    if kind == "tmpfs-file":
        assert facts.fs == "tmpfs"
        assert facts.o_direct is (KERNEL >= (6, 6))  # tmpfs O_DIRECT support arrived in 6.6
    if kind == "xfs-file":
        assert facts.fs == "xfs"
        assert facts.o_direct is True
    if kind == "qcow2-metadata":
        # Apparent size covers the image, but only metadata is allocated.
        assert facts.size >= LAB_SIZE > facts.allocated_bytes


def test_seek_hole_trap_fallocated_raw_is_allocated(tmp_path, probe):
    """fallocate leaves unwritten extents that SEEK_DATA may report as a hole."""
    path = str(tmp_path / "falloc.raw")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, 8 << 20)
        try:
            seek_data_sees_data = os.lseek(fd, 0, os.SEEK_DATA) == 0
        except OSError as err:
            assert err.errno == errno.ENXIO
            seek_data_sees_data = False
    finally:
        os.close(fd)
    facts = one(probe, path)
    assert facts.allocated is True
    assert facts.allocated_bytes >= facts.virtual_size == 8 << 20
    # Not an assertion on the kernel, a record of why SEEK_* is not used:
    print(f"SEEK_DATA sees data in an fallocated file here: {seek_data_sees_data}")


def test_sparse_and_empty_raw(tmp_path, probe):
    sparse = tmp_path / "sparse.raw"
    sparse.touch()
    os.truncate(sparse, 8 << 20)
    facts = one(probe, str(sparse), "raw")
    assert (facts.kind, facts.allocated, facts.size) == ("file", False, 8 << 20)
    empty = tmp_path / "empty.raw"
    empty.touch()
    assert one(probe, str(empty)).allocated is True  # nothing to be sparse


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img missing (qemu-utils)")
def test_qcow2_virtual_size_from_the_header(tmp_path, probe):
    path = str(tmp_path / "big.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "10G"], check=True)
    facts = one(probe, path, "qcow2")
    assert facts.virtual_size == 10 << 30
    assert facts.allocated is False and facts.error is None
    # Read as raw, the same file is small and fully written: the declared format counts.
    assert one(probe, path, "raw").virtual_size == os.path.getsize(path)


# ---------------------------------------------------------------- qcow2 parser


def qcow2_header(version=3, size=1 << 30, cluster_bits=16, incompat=0, length=104, backing=0):
    head = QCOW2_MAGIC + struct.pack(">IQIIQ", version, backing, 0, cluster_bits, size)
    head = head.ljust(72, b"\0")
    if version == 3:
        head += struct.pack(">QQQII", incompat, 0, 0, 4, length)
    return head


def test_qcow2_header_valid():
    header = parse_header(qcow2_header())
    assert (header.version, header.virtual_size, header.cluster_bits) == (3, 1 << 30, 16)
    assert not header.has_backing_file and not header.external_data_file
    assert parse_header(qcow2_header(version=2)).virtual_size == 1 << 30
    assert parse_header(qcow2_header(incompat=4)).external_data_file
    assert parse_header(qcow2_header(backing=1024)).has_backing_file


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "bad magic"),
        (b"QFI", "bad magic"),
        (b"\x7fELF" + b"\0" * 200, "bad magic"),
        (qcow2_header()[:50], "truncated"),
        (qcow2_header()[:80], "v3 header truncated"),
        (qcow2_header(version=4), "unsupported qcow2 version 4"),
        (qcow2_header(version=0), "unsupported qcow2 version 0"),
        (qcow2_header(cluster_bits=8), "cluster_bits"),
        (qcow2_header(cluster_bits=64), "cluster_bits"),
        (qcow2_header(size=(1 << 64) - 1), "virtual size"),
        (qcow2_header(length=72), "header_length"),
    ],
)
def test_qcow2_header_rejects_garbage(data, words):
    with pytest.raises(Qcow2Error, match=words):
        parse_header(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120) | st.binary(max_size=116).map(lambda b: QCOW2_MAGIC + b))
def test_qcow2_header_never_crashes(data):
    try:
        header = parse_header(data)
    except Qcow2Error:
        return
    assert 0 <= header.virtual_size < 1 << 63


def test_declared_qcow2_that_is_not(tmp_path, probe):
    path = tmp_path / "liar.qcow2"
    path.write_bytes(b"not an image at all" * 100)
    facts = one(probe, str(path), "qcow2")
    assert facts.kind == "file" and facts.allocated is None
    assert "bad magic" in facts.error
    truncated = tmp_path / "short.qcow2"
    truncated.write_bytes(qcow2_header()[:40])
    assert "truncated" in one(probe, str(truncated), "qcow2").error


def test_other_formats_are_not_judged(tmp_path, probe):
    path = tmp_path / "disk.vmdk"
    path.write_bytes(b"KDMV" + b"\0" * 4092)
    facts = one(probe, str(path), "vmdk")
    assert facts.kind == "file" and facts.allocated is None and facts.virtual_size is None
    assert "vmdk" in facts.error and "not probed" in facts.error


# ---------------------------------------------------------------- odd paths


def test_missing_and_dangling(tmp_path, probe):
    assert one(probe, str(tmp_path / "nope")).kind == "missing"
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "gone")
    facts = one(probe, str(link))
    assert facts.kind == "missing" and facts.error == "dangling symlink"


def test_directory_fifo_and_char_device_are_unknown_fast(tmp_path, probe):
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)  # opening this for reading would block: the probe must not
    started = time.monotonic()
    facts = probe.source_facts(
        [SourceRequest(str(tmp_path)), SourceRequest(fifo), SourceRequest("/dev/null")]
    )
    assert time.monotonic() - started < 1.0
    assert facts[str(tmp_path)].kind == "unknown" and "directory" in facts[str(tmp_path)].error
    assert facts[fifo].kind == "unknown" and "FIFO" in facts[fifo].error
    assert facts["/dev/null"].kind == "unknown" and "character" in facts["/dev/null"].error


def test_bad_path_strings(probe):
    assert one(probe, "").kind == "missing"
    assert one(probe, "/a\0b").kind == "unknown"


def test_duplicates_and_order(tmp_path, probe):
    a = tmp_path / "a"
    a.write_bytes(b"x" * 4096)
    requests = [SourceRequest(str(a)), SourceRequest(str(tmp_path / "b")), SourceRequest(str(a))]
    facts = probe.source_facts(requests)
    assert list(facts) == [str(a), str(tmp_path / "b")]
    assert facts[str(a)].kind == "file" and facts[str(tmp_path / "b")].kind == "missing"


def test_no_subprocess_in_source_probing(tmp_path, probe, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("source probing started a subprocess")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    monkeypatch.setattr(os, "fork", refuse)
    path = tmp_path / "f.raw"
    path.write_bytes(b"\0" * 8192)
    assert one(probe, str(path)).kind == "file"


# ---------------------------------------------------------------- fs and O_DIRECT


def test_fs_matches_findmnt(tmp_path, probe):
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\0" * 4096)
    facts = one(probe, str(path))
    expected = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE", "-T", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert facts.fs == expected != ""
    assert facts.o_direct is not None


def test_mountinfo_parser_escapes_and_overmounts():
    text = (
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /var/lib/my\\040images rw,relatime shared:5 - xfs /dev/sdb rw\n"
        "31 22 0:41 / /var/lib/my rw - tmpfs tmpfs rw\n"
        "32 22 0:42 / /mnt/nfs rw - nfs4 srv:/x rw\n"
        "33 22 0:43 / /mnt/nfs rw - tmpfs over rw\n"
        "garbage line\n"
    )
    mounts = parse_mountinfo(text)
    assert ("/var/lib/my images", "xfs") in mounts
    assert fs_type_for("/var/lib/my images/a.raw", mounts) == "xfs"
    assert fs_type_for("/var/lib/my/a.raw", mounts) == "tmpfs"
    assert fs_type_for("/var/lib/myother/a.raw", mounts) == "ext4"
    assert fs_type_for("/mnt/nfs/a", mounts) == "tmpfs"  # mounted over the nfs4 one
    assert fs_type_for("/mnt/nfs/a", parse_mountinfo(text.replace("33 22", "#"))) == "nfs4"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount tmpfs)")
def test_fs_on_a_mount_point_with_a_space(tmp_path, probe):
    mount_point = tmp_path / "my images"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "lab", str(mount_point)], check=True)
    try:
        disk = mount_point / "a.raw"
        disk.write_bytes(b"\0" * 4096)
        assert one(probe, str(disk)).fs == "tmpfs"
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_block_transport_without_sysfs_entry(tmp_path):
    assert block_transport(os.makedev(4095, 4095), str(tmp_path)) == "unknown"


# ---------------------------------------------------------------- the deadline


@pytest.fixture
def frozen_fuse(tmp_path):
    try:
        with HangingFuseMount(str(tmp_path / "fuse")) as fuse:
            yield fuse
    except LabUnavailable as err:
        pytest.skip(f"FUSE mount: {err.reason}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount a FUSE file system)")
def test_dead_fuse_server_costs_at_most_the_budget(frozen_fuse, tmp_path, probe):
    # Alive, the FUSE file is an ordinary file.
    assert one(probe, frozen_fuse.path).kind == "file"
    frozen_fuse.freeze()
    healthy = tmp_path / "ok.raw"
    healthy.write_bytes(b"\0" * 4096)
    other = os.path.join(os.path.dirname(frozen_fuse.path), "other.qcow2")
    requests = [SourceRequest(frozen_fuse.path), SourceRequest(str(healthy)), SourceRequest(other)]
    started = time.monotonic()
    facts = probe.source_facts(requests, budget_s=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0 + 0.5
    for path in (frozen_fuse.path, other):
        assert facts[path].kind == "unknown"
        assert facts[path].error == "probe timed out after 1.0s"
    assert facts[str(healthy)].kind == "file"  # one hung path does not spoil the others
    stuck = abandoned_threads()
    assert stuck, "the hung probe threads should be reported"
    os.kill(frozen_fuse.process.pid, signal.SIGKILL)  # the kernel now fails the stuck calls
    for thread in stuck:
        thread.join(5)
    assert abandoned_threads() == []


# ---------------------------------------------------------------- host facts


def test_host_facts_of_the_real_host(probe):
    emulator = shutil.which("qemu-system-x86_64")
    if emulator is None:
        pytest.skip("qemu-system-x86_64 missing (qemu-system-x86)")
    host = probe.host_facts(emulator)
    out = subprocess.run([emulator, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"QEMU emulator version {host.qemu_version}")
    ldd = subprocess.run(["ldd", emulator], capture_output=True, text=True, check=True).stdout
    assert host.qemu_io_uring is ("liburing" in ldd)
    with open("/proc/sys/fs/aio-max-nr") as handle:
        assert host.aio_max_nr == int(handle.read())
    assert isinstance(host.aio_nr, int)
    if shutil.which("libvirtd"):
        out = subprocess.run(
            ["libvirtd", "--version"], capture_output=True, text=True, check=True
        ).stdout
        assert out.strip().endswith(host.libvirt_version)
    assert probe.host_facts(None).qemu_version == host.qemu_version  # default emulator


def make_binary(path, payload: bytes) -> str:
    path.write_bytes(b"\x7fELF" + b"\0" * 5000 + payload + b"\0" * 100)
    return str(path)


def test_qemu_version_read_from_the_binary_and_cached(tmp_path):
    cache = tmp_path / "cache"
    probe = LinuxProbe(cache_dir=str(cache), libvirt_daemons=())
    fake = make_binary(tmp_path / "qemu", b"QEMU emulator version 9.1.2 (v9.1.2)\nliburing.so.2")
    host = probe.host_facts(fake)
    assert (host.qemu_version, host.qemu_io_uring) == ("9.1.2", True)
    stored = json.loads((cache / "binaries.json").read_text())
    assert stored["binaries"][fake]["facts"] == {"version": "9.1.2", "liburing": True}
    # A cache hit answers without reading the binary again.
    stored["binaries"][fake]["facts"]["version"] = "9.9.9"
    (cache / "binaries.json").write_text(json.dumps(stored))
    assert probe.host_facts(fake).qemu_version == "9.9.9"
    # A changed binary (size, mtime) is read again.
    make_binary(tmp_path / "qemu", b"QEMU emulator version 10.0.0 \n")
    host = probe.host_facts(fake)
    assert (host.qemu_version, host.qemu_io_uring) == ("10.0.0", False)
    assert not [n for n in os.listdir(cache) if n != "binaries.json"]  # no temp files left


def test_corrupt_cache_is_ignored(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "binaries.json").write_text("{not json")
    fake = make_binary(tmp_path / "qemu", b"QEMU emulator version 8.2.0\n")
    assert LinuxProbe(cache_dir=str(cache)).host_facts(fake).qemu_version == "8.2.0"


def test_qemu_version_falls_back_to_running_it(tmp_path):
    script = tmp_path / "qemu-wrapper"
    script.write_text("#!/bin/sh\necho 'QEMU emulator version 6.2.0 (Debian)'\n")
    script.chmod(0o755)
    probe = LinuxProbe(cache_dir=str(tmp_path / "cache"), libvirt_daemons=())
    assert probe.host_facts(str(script)).qemu_version == "6.2.0"


def test_missing_emulator(tmp_path):
    host = LinuxProbe(cache_dir=str(tmp_path)).host_facts(str(tmp_path / "no-qemu"))
    assert host.qemu_version is None and host.qemu_io_uring is None


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AIOHOOK_CACHE_DIR", str(tmp_path / "env-cache"))
    fake = make_binary(tmp_path / "qemu", b"QEMU emulator version 8.0.0\n")
    LinuxProbe(libvirt_daemons=()).host_facts(fake)
    assert (tmp_path / "env-cache" / "binaries.json").exists()


@pytest.mark.parametrize("value, expected", [("0\n", True), ("1\n", False), ("2\n", False)])
def test_io_uring_sysctl(tmp_path, value, expected):
    sysctl = tmp_path / "proc/sys/kernel"
    sysctl.mkdir(parents=True)
    (sysctl / "io_uring_disabled").write_text(value)
    probe = LinuxProbe(cache_dir=str(tmp_path), proc_root=str(tmp_path / "proc"))
    assert probe.host_facts(str(tmp_path / "none")).io_uring is expected


def test_io_uring_without_sysctl_follows_the_kernel_version(tmp_path):
    probe = LinuxProbe(cache_dir=str(tmp_path), proc_root=str(tmp_path / "proc"))
    assert probe.host_facts(str(tmp_path / "none")).io_uring is ((5, 1) <= KERNEL < (6, 6))


@pytest.mark.parametrize("release, expected", [
    ("4.19.0", False),  # before io_uring
    ("5.15.0-105-generic", True),  # io_uring, no switch yet
    ("6.5.13", True),
    ("6.6.0", False),  # 6.6+ registers the sysctl whenever io_uring is built in
    ("6.8.0-45-generic", False),
    ("6.1-rc1", True),
    ("not-a-release", None),
])
def test_io_uring_without_sysctl_on_a_fake_proc_root(tmp_path, release, expected):
    """One reading of a missing kernel.io_uring_disabled, for the hook and calibrate
    alike (calibrate read it as allowed on 6.6+, where it means no io_uring)."""
    from aiohook.calibrate.runner import host_info

    proc = tmp_path / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text(release + "\n")
    probe = LinuxProbe(cache_dir=str(tmp_path), proc_root=str(proc))
    assert probe.host_facts(str(tmp_path / "none")).io_uring is expected
    assert kernel_io_uring(str(proc))[0] is expected
    host = host_info(str(tmp_path), proc_root=str(proc))
    assert host["io_uring_host"]["allowed"] is (expected is True)


def test_unreadable_io_uring_sysctl_is_unknown(tmp_path):
    proc = tmp_path / "proc"
    (proc / "sys/kernel/io_uring_disabled").mkdir(parents=True)  # a directory: EISDIR
    allowed, why = kernel_io_uring(str(proc))
    assert allowed is None and why.startswith("cannot read ")


@pytest.mark.parametrize("text, expected", [
    ("9.2.0", (9, 2, 0)),
    ("6.8.0-45-generic", (6, 8, 0)),
    ("8.2.2 (Debian 1:8.2.2+ds-0ubuntu1)", (8, 2, 2)),
    ("6.1-rc1", (6, 1)),  # was (6, 11): the digits of a piece were joined
    ("10", (10,)),
    ("", ()),
    ("v1.2", ()),
    ("1.\u00b2", (1,)),  # a superscript two is a digit to str.isdigit, not to int()
])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected


# ---------------------------------------------------------------- pool volumes


def pool_xml(pool_dir, file_name, body):
    pool_dir.mkdir(exist_ok=True)
    (pool_dir / file_name).write_text(body)


def test_volume_resolution(tmp_path):
    pools = tmp_path / "pools"
    pool_xml(
        pools,
        "default.xml",
        "<pool type='dir'><name>default</name><target><path>/var/lib/libvirt/images"
        "</path></target></pool>",
    )
    pool_xml(
        pools,
        "vg.xml",
        "<pool type='logical'><name>vg</name><source><name>vg0</name></source>"
        "<target><path>/dev/vg0</path></target></pool>",
    )
    pool_xml(pools, "lvm2.xml", "<pool type='logical'><name>lvm2</name></pool>")
    pool_xml(
        pools,
        "renamed.xml",  # the file name differs from the pool name
        "<pool type='netfs'><name>nfs-pool</name><target><path>/mnt/nfs</path></target></pool>",
    )
    devdir = tmp_path / "dev"
    devdir.mkdir()
    (devdir / "sdz1").touch()
    pool_xml(
        pools,
        "disks.xml",
        f"<pool type='disk'><name>disks</name><target><path>{devdir}</path></target></pool>",
    )
    pool_xml(
        pools,
        "iscsi.xml",
        f"<pool type='iscsi'><name>iscsi</name><target><path>{devdir}</path></target></pool>",
    )
    pool_xml(pools, "ceph.xml", "<pool type='rbd'><name>ceph</name></pool>")
    pool_xml(pools, "direct.xml", "<pool type='iscsi-direct'><name>direct</name></pool>")
    pool_xml(pools, "broken.xml", "<pool type='dir'><name>broken</")
    pool_xml(pools, "odd.xml", "<pool type='vxfs'><name>odd</name></pool>")
    resolve = LinuxProbe(pool_dir=str(pools), cache_dir=str(tmp_path)).resolve_volume

    assert resolve("default", "vm1.qcow2").path == "/var/lib/libvirt/images/vm1.qcow2"
    assert resolve("default", "vm1.qcow2").kind == "file"
    assert (resolve("vg", "lv1").kind, resolve("vg", "lv1").path) == ("block", "/dev/vg0/lv1")
    assert resolve("lvm2", "lv1").path == "/dev/lvm2/lv1"
    assert resolve("nfs-pool", "a.raw").path == "/mnt/nfs/a.raw"
    assert resolve("disks", "sdz1").kind == "block"
    assert resolve("disks", "sdz1").path == str(devdir / "sdz1")
    assert resolve("iscsi", "unit:0:0:1").kind == "unknown"
    assert (resolve("ceph", "img").kind, resolve("ceph", "img").protocol) == ("network", "rbd")
    assert resolve("direct", "unit:0:0:0").protocol == "iscsi"
    broken = resolve("broken", "x")
    assert broken.kind == "unknown" and "broken.xml" in broken.reason
    assert "unsupported type 'vxfs'" in resolve("odd", "x").reason
    assert "not defined" in resolve("nosuchpool", "x").reason
    assert "invalid volume name" in resolve("default", "../../etc/shadow").reason
    assert "invalid pool name" in resolve("../x", "v").reason


def test_pool_dir_missing(tmp_path):
    target = resolve_pool_volume(str(tmp_path / "absent"), "default", "a")
    assert target.kind == "unknown" and "cannot read pool directory" in target.reason


def test_pool_xml_entities_are_not_expanded(tmp_path):
    pools = tmp_path / "pools"
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    pool_xml(
        pools,
        "evil.xml",
        f"<!DOCTYPE pool [<!ENTITY x SYSTEM 'file://{secret}'>]>"
        "<pool type='dir'><name>evil</name><target><path>/p/&x;</path></target></pool>",
    )
    target = resolve_pool_volume(str(pools), "evil", "v")
    assert "TOPSECRET" not in repr(target)
    assert target.kind == "unknown" and "DOCTYPE" in target.reason


def test_exit_now_leaves_despite_a_thread_stuck_in_the_kernel(tmp_path):
    """A FIFO opened for reading blocks until a writer comes: a real, root-free hang."""
    import sys

    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    child = (
        "import os, sys\n"
        "from aiohook.probe.bounded import run_bounded, abandoned_threads, exit_now\n"
        f"done, late = run_bounded({{'f': lambda: os.open({fifo!r}, os.O_RDONLY)}}, 0.2)\n"
        "assert late == ['f'] and abandoned_threads(), (done, late)\n"
        "print('abandoned', flush=True)\n"
        "exit_now(3)\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert (done.returncode, done.stdout) == (3, "abandoned\n"), done.stderr
    assert time.monotonic() - started < 5

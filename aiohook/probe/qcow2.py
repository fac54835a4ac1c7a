"""qcow2 header parser: enough to know the virtual size, safely.

Layout (docs/interop/qcow2.txt in QEMU), all big-endian:
  0 magic "QFI\\xfb"   4 version (2|3)   8 backing_file_offset (u64)
 16 backing_file_size  20 cluster_bits  24 size (u64, virtual size in bytes)
 72 (v3) incompatible_features (u64) ... 100 header_length (u32)
"""

from __future__ import annotations

import os
import struct

from aiohook.record import FrozenRecord, _set

QCOW2_MAGIC = b"QFI\xfb"
HEADER_READ = 104  # v3 header up to and including header_length
_V2_LEN = 72
# QEMU's own limit (QCOW_MAX_... / BDRV_SECTOR): no image is larger than 2^63 - 512.
_MAX_SIZE = (1 << 63) - 512
_INCOMPAT_DATA_FILE = 1 << 2  # guest data lives in an external data file


class Qcow2Error(ValueError):
    """The bytes are not a qcow2 header we understand."""


class Qcow2Header(FrozenRecord):
    FIELDS = ("version", "virtual_size", "cluster_bits", "has_backing_file",
              "incompatible_features")

    def __init__(self, version: int, virtual_size: int, cluster_bits: int,
                 has_backing_file: bool, incompatible_features: int = 0):
        _set(self, "version", version)
        _set(self, "virtual_size", virtual_size)
        _set(self, "cluster_bits", cluster_bits)
        _set(self, "has_backing_file", has_backing_file)
        _set(self, "incompatible_features", incompatible_features)

    @property
    def external_data_file(self) -> bool:
        return bool(self.incompatible_features & _INCOMPAT_DATA_FILE)


def parse_header(data: bytes) -> Qcow2Header:
    """Parse the first bytes of an image. Raises Qcow2Error on anything odd."""
    if len(data) < 4 or data[:4] != QCOW2_MAGIC:
        raise Qcow2Error("not a qcow2 image (bad magic)")
    if len(data) < _V2_LEN:
        raise Qcow2Error(f"qcow2 header truncated ({len(data)} bytes)")
    version, backing_off, _backing_len, cluster_bits, size = struct.unpack_from(">IQIIQ", data, 4)
    if version not in (2, 3):
        raise Qcow2Error(f"unsupported qcow2 version {version}")
    if not 9 <= cluster_bits <= 21:
        raise Qcow2Error(f"invalid qcow2 cluster_bits {cluster_bits}")
    if size > _MAX_SIZE:
        raise Qcow2Error(f"invalid qcow2 virtual size {size}")
    incompat = 0
    if version == 3:
        if len(data) < HEADER_READ:
            raise Qcow2Error(f"qcow2 v3 header truncated ({len(data)} bytes)")
        (incompat,) = struct.unpack_from(">Q", data, 72)
        (header_length,) = struct.unpack_from(">I", data, 100)
        if header_length < HEADER_READ:
            raise Qcow2Error(f"invalid qcow2 header_length {header_length}")
    return Qcow2Header(version, size, cluster_bits, backing_off != 0, incompat)


def read_header(fd: int) -> Qcow2Header:
    """Read and parse the header from an open file descriptor (offset 0)."""
    return parse_header(os.pread(fd, HEADER_READ, 0))

"""Small file helpers: bounded reads and atomic writes."""

from __future__ import annotations

import os
import sys

from aiohook.errors import FileAccessError


def read_bounded(path: str, limit: int, error: type = FileAccessError) -> bytes:
    """Read a file ('-' is stdin) but never more than limit+1 bytes into memory."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
    except FileNotFoundError:
        raise FileAccessError("no such file", file=path) from None
    except IsADirectoryError:
        raise FileAccessError("is a directory", file=path) from None
    except PermissionError:
        raise FileAccessError("permission denied", file=path) from None
    except OSError as exc:
        raise FileAccessError(exc.strerror or str(exc), file=path) from None
    return data


def atomic_write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Write data to path so that readers see the old file or the new one, never half."""
    import tempfile

    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".aiohook-", dir=directory)
    except OSError as exc:
        raise FileAccessError(f"cannot write: {exc.strerror}", file=path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FileAccessError(f"cannot write: {exc.strerror}", file=path) from None

"""A unified diff of two versions of a text file, for `rewrite --diff` and `apply --dry-run`."""

from __future__ import annotations

import difflib


def unified_diff(old: bytes, new: bytes, label: str) -> str:
    a = old.decode("utf-8", "replace").splitlines(keepends=True)
    b = new.decode("utf-8", "replace").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, fromfile=label, tofile=label + " (aiohook)"))

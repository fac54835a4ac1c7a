"""Is aiohook's libvirt hook installed on this host: the one place that decides it.

libvirt >= 6.5 runs every executable in HOOKS/qemu.d/ (after HOOKS/qemu);
older ones run HOOKS/qemu alone. aiohook's own launcher carries MARKER in its
first lines. The hook is installed when libvirt runs one of aiohook's files.
"""

from __future__ import annotations

import os

from aiohook.facts import version_tuple

DEFAULT_HOOKS_DIR = "/etc/libvirt/hooks"
LAUNCHER_NAME = "50-aiohook"
MARKER = "# aiohook-launcher: 1"
QEMU_D_SINCE = (6, 5)


def qemu_d_supported(version: str | None) -> bool:
    """True unless libvirt is known to be older than 6.5 (unknown: assume a modern one)."""
    parsed = version_tuple(version) if version else ()
    return not parsed or parsed >= QEMU_D_SINCE


def is_ours(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return MARKER.encode() in head


def hook_paths(hooks_dir: str) -> tuple[str, str]:
    """(HOOKS/qemu.d/50-aiohook, HOOKS/qemu): where aiohook installs its launcher."""
    return os.path.join(hooks_dir, "qemu.d", LAUNCHER_NAME), os.path.join(hooks_dir, "qemu")


def hooks_libvirt_runs(hooks_dir: str, qemu_d: bool = True) -> list[str]:
    """The files libvirt would run for a qemu hook, in its order (virhook.c)."""
    out = []
    main_hook = os.path.join(hooks_dir, "qemu")
    if os.path.isfile(main_hook) and os.access(main_hook, os.X_OK):
        out.append(main_hook)
    directory = os.path.join(hooks_dir, "qemu.d")
    if qemu_d and os.path.isdir(directory):
        for name in sorted(os.listdir(directory), key=os.fsencode):
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                out.append(path)
    return out


def installed_hook(hooks_dir: str, libvirt_version: str | None) -> dict:
    """ours: aiohook's launchers in hooks_dir; libvirt_runs: what libvirt runs for a
    qemu hook; installed: libvirt runs one of ours; hook: that one, else ours[0]."""
    qemu_d = qemu_d_supported(libvirt_version)
    ours = [p for p in hook_paths(hooks_dir) if os.path.lexists(p) and is_ours(p)]
    runs = hooks_libvirt_runs(hooks_dir, qemu_d)
    active = [p for p in ours if p in runs]
    return {"qemu_d_supported": qemu_d, "ours": ours, "libvirt_runs": runs,
            "installed": bool(active), "hook": active[0] if active else (ours[0] if ours else None)}

"""`aiohook uninstall`: remove the libvirt hook (settings are kept)."""

from __future__ import annotations

from aiohook.errors import EXIT_OK
from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR


def add_arguments(p) -> None:
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR)


def run(args) -> int:
    from aiohook.admin.install import uninstall

    for line in uninstall(args.hooks_dir):
        print(line)
    return EXIT_OK

"""`aiohook install`: the libvirt hook (qemu.d/50-aiohook) and the default settings."""

from __future__ import annotations

from aiohook.errors import EXIT_OK
from aiohook.paths import DEFAULT_CONFIG_DIR
from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR


def add_arguments(p) -> None:
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR)
    p.add_argument("--config-dir",
                   help=f"settings directory the hook reads (default {DEFAULT_CONFIG_DIR})")
    p.add_argument("--libvirt-version", help="assume this libvirt version instead of detecting it")


def run(args) -> int:
    from aiohook.admin.install import install

    for line in install(args.hooks_dir, args.config_dir, libvirt=args.libvirt_version):
        print(line)
    return EXIT_OK

"""CLI verbs of the hook feature; each registers itself with aiohook.cli.verb."""

from __future__ import annotations

import json

from aiohook.cli import verb
from aiohook.errors import EXIT_FINDINGS, EXIT_OK


def cmd_install(args) -> int:
    from aiohook.hook.install import install

    for line in install(args.hooks_dir, args.config_dir, libvirt=args.libvirt_version):
        print(line)
    return EXIT_OK


def cmd_uninstall(args) -> int:
    from aiohook.hook.install import uninstall

    for line in uninstall(args.hooks_dir):
        print(line)
    return EXIT_OK


def cmd_status(args) -> int:
    from aiohook.hook.install import status

    info = status(args.hooks_dir)
    bad = (not info["installed"] or info["problems"] or "settings_error" in info
           or "rules_error" in info)
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return EXIT_FINDINGS if bad else EXIT_OK
    print(f"aiohook {info['aiohook_version']}; libvirt {info['libvirt_version'] or 'unknown'} "
          f"({'qemu.d supported' if info['qemu_d_supported'] else 'no qemu.d: < 6.5'})")
    if info["installed"]:
        print(f"installed: yes: {info['hook']} (interpreter {info.get('interpreter')})")
    else:
        print(f"installed: no (hooks dir {info['hooks_dir']}); run `aiohook install`")
    runs = info["libvirt_runs"]
    print("libvirt runs for each qemu hook call, in order: " + (", ".join(runs) or "nothing"))
    for problem in info["problems"]:
        print(f"problem: {problem}")
    print(f"config dir: {info['config_dir']}")
    print(f"settings: {info['settings_file']}")
    if "settings_error" in info:
        print(f"  INVALID: {info['settings_error']}")
    else:
        s = info["settings"]
        print(f"  enforce: {s['enforce']}")
        print(f"  on_error: {s['on_error']}")
        print(f"  on_budget_exceeded: {s['on_budget_exceeded']}")
        print(f"  budget: {{reserve_events: {s['budget']['reserve_events']}, "
              f"check: {s['budget']['check']}}}")
        print(f"  rules: {info['rules_file']}" + (f"  INVALID: {info['rules_error']}"
                                                   if "rules_error" in info else ""))
    return EXIT_FINDINGS if bad else EXIT_OK


def cmd_apply(args) -> int:
    from aiohook.hook.apply import apply

    return apply(args.domain, connect=args.connect, dry_run=args.dry_run, all_=args.all)


@verb("install", "install the libvirt hook (qemu.d/50-aiohook) and the default settings")
def _install_args(p):
    p.add_argument("--hooks-dir", default="/etc/libvirt/hooks")
    p.add_argument("--config-dir", help="settings directory the hook reads (default /etc/aiohook)")
    p.add_argument("--libvirt-version", help="assume this libvirt version instead of detecting it")
    p.set_defaults(func=cmd_install)


@verb("uninstall", "remove the libvirt hook (settings are kept)")
def _uninstall_args(p):
    p.add_argument("--hooks-dir", default="/etc/libvirt/hooks")
    p.set_defaults(func=cmd_uninstall)


@verb("status", "is the hook installed, which hook files libvirt runs, effective settings")
def _status_args(p):
    p.add_argument("--hooks-dir", default="/etc/libvirt/hooks")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_status)


@verb("apply", "rewrite persistent domain definitions (virsh define) so the next start complies")
def _apply_args(p):
    p.add_argument("--connect", "-c", help="libvirt URI (default: virsh's)")
    p.add_argument("--dry-run", action="store_true", help="print the diff, change nothing")
    p.add_argument("--all", action="store_true", help="every defined domain")
    p.add_argument("domain", nargs="*")
    p.set_defaults(func=cmd_apply)

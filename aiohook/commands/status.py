"""`aiohook status`: is the hook installed, which hook files libvirt runs, effective settings."""

from __future__ import annotations

import json

from aiohook.errors import EXIT_FINDINGS, EXIT_OK
from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR


def add_arguments(p) -> None:
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR)
    p.add_argument("--format", choices=("text", "json"), default="text")


def run(args) -> int:
    from aiohook.admin.install import status

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

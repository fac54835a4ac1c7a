"""`aiohook doctor [--apply]`: is fs.aio-max-nr big enough for the defined domains."""

from __future__ import annotations

import json
import sys

from aiohook.errors import EXIT_FINDINGS, EXIT_OK


def add_arguments(p) -> None:
    from aiohook.budget.doctor import CONFIG_DIR
    from aiohook.budget.gate import SYSCTL_FILE
    from aiohook.probe.hookfiles import DEFAULT_HOOKS_DIR

    p.add_argument("--apply", action="store_true",
                   help=f"write {SYSCTL_FILE} and raise fs.aio-max-nr now")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--libvirt-config-dir", default=CONFIG_DIR,
                   help="where libvirt keeps the domain XMLs")
    p.add_argument("--hooks-dir", default=DEFAULT_HOOKS_DIR)
    p.add_argument("--sysctl-file", default=SYSCTL_FILE)


def run(args) -> int:
    from aiohook.budget import doctor
    from aiohook.budget.usage import reserve_events

    rep = doctor.examine(args.libvirt_config_dir, args.hooks_dir, reserve_events())
    if args.format == "json":
        sys.stdout.write(json.dumps(rep.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(doctor.render_text(rep))
    if args.apply:
        for line in doctor.apply_fix(rep, args.sysctl_file):
            print(line)
        rep.problems = [p for p in rep.problems if not p.startswith("fs.aio-max-nr")]
    return EXIT_FINDINGS if rep.problems else EXIT_OK

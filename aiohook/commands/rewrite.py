"""`aiohook rewrite`: print or write the domain XML with the decided io/cache."""

from __future__ import annotations

import os
import sys

from aiohook.errors import EXIT_OK, FileAccessError, UsageError


def add_arguments(p) -> None:
    p.add_argument("--rules")
    p.add_argument("--facts")
    p.add_argument("--diff", action="store_true", help="print a unified diff instead")
    p.add_argument("--output-dir", help="write each result there under its own file name")
    p.add_argument("xml", nargs="+")


def run(args) -> int:
    from aiohook.domxml.files import input_label
    from aiohook.fleet import iter_plans
    from aiohook.fsutil import atomic_write
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe import make_probe
    from aiohook.textdiff import unified_diff

    if len(args.xml) > 1 and not args.output_dir:
        raise UsageError("several XML files need --output-dir DIR")
    if args.output_dir and not os.path.isdir(args.output_dir):
        raise FileAccessError("not a directory", file=args.output_dir)
    names = [os.path.basename(p) if p != "-" else "stdin.xml" for p in args.xml]
    if args.output_dir and len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"two inputs share the file name {dup}; --output-dir would overwrite one")
    ruleset = load_ruleset(args.rules)
    probe = make_probe(args.facts)
    plans = list(iter_plans(args.xml, ruleset, probe))  # all or nothing: any error raises
    outputs = []
    for path, plan in zip(args.xml, plans):
        new = plan.rewritten()
        if args.diff:
            new = unified_diff(plan.document.original, new, input_label(path)).encode()
        outputs.append((path, new))
    if not args.output_dir:
        sys.stdout.buffer.write(outputs[0][1])
        return EXIT_OK
    for (_, data), name in zip(outputs, names):
        target = os.path.join(args.output_dir, name + (".diff" if args.diff else ""))
        atomic_write(target, data)
    return EXIT_OK

"""`aiohook test`: run rule test suites (aiohook-test.yaml), or scaffold one with --init.

aiohook test [--rules F] [--format text|json|junit] DIR...
aiohook test --init DIR [--rules F] [--facts F] [--force]
"""

from __future__ import annotations

import sys

from aiohook.errors import EXIT_FINDINGS, EXIT_OK, UsageError


def add_arguments(p) -> None:
    p.add_argument(
        "--rules",
        help="test against this ruleset (path or profile name) instead of "
        "the one each manifest names",
    )
    p.add_argument("--format", choices=("text", "json", "junit"), default="text")
    p.add_argument(
        "--init",
        action="store_true",
        help="write DIR/aiohook-test.yaml from the domain XMLs in DIR and their current decisions",
    )
    p.add_argument(
        "--facts",
        help="with --init: recorded facts to use (default DIR/facts.yaml, "
        "else this host is probed and recorded there)",
    )
    p.add_argument("--force", action="store_true", help="with --init: overwrite a manifest")
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="directories searched for aiohook-test.yaml (or manifest files)",
    )


def run(args) -> int:
    from aiohook.authoring import testrunner

    if args.init:
        from aiohook.authoring.scaffold import scaffold

        if len(args.dirs) != 1:
            raise UsageError("--init takes exactly one DIR")
        path, count = scaffold(args.dirs[0], rules=args.rules, facts=args.facts, force=args.force)
        print(f"{path}: {count} expectations from the current decisions; review them")
        return EXIT_OK
    if args.facts or args.force:
        raise UsageError("--facts and --force go with --init (a manifest names its own facts)")
    reports = testrunner.run(args.dirs, args.rules)
    sys.stdout.write(testrunner.RENDERERS[args.format](reports))
    _, failed = testrunner.totals(reports)
    return EXIT_FINDINGS if failed else EXIT_OK

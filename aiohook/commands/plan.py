"""`aiohook plan`: what aiohook would decide for each disk. Streams: each domain is
printed and dropped before the next is read."""

from __future__ import annotations

import sys

from aiohook.errors import EXIT_OK, FileAccessError, UsageError
from aiohook.paths import DEFAULT_CONFIG_DIR


def add_arguments(p) -> None:
    p.add_argument("--rules", help=f"rules file (default: {DEFAULT_CONFIG_DIR}/rules.yaml or packaged)")
    p.add_argument("--facts", help="recorded facts YAML instead of probing this host")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--from-file", metavar="LIST",
                   help="also plan the XML files listed in LIST, one path a line (- for stdin)")
    p.add_argument("xml", nargs="*", help="domain XML files, - for stdin")


def run(args) -> int:
    from aiohook import report
    from aiohook.fleet import iter_plans
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe import make_probe

    inputs = _plan_inputs(args)
    ruleset = load_ruleset(args.rules)
    probe = make_probe(args.facts)
    errors: list = []
    out = report.JsonReport(sys.stdout) if args.format == "json" else report.TextReport(sys.stdout)
    for plan in iter_plans(inputs, ruleset, probe, errors):
        out.domain(plan)
    out.finish([(f, m) for f, m, _ in errors])
    for _, message, _ in errors:
        print(f"aiohook: error: {message}", file=sys.stderr)
    return errors[0][2] if errors else EXIT_OK


def _plan_inputs(args):
    """The XML arguments, then the paths listed in --from-file (one per line, '-' is stdin),
    read lazily so that a fleet of any size needs neither argv space nor memory."""
    if not args.xml and not args.from_file:
        raise UsageError("plan needs XML files or --from-file LIST")
    if args.from_file == "-" and "-" in args.xml:
        raise UsageError("stdin cannot be both an XML file and the --from-file list")
    lines = None
    if args.from_file == "-":
        lines = sys.stdin
    elif args.from_file:
        try:
            lines = open(args.from_file, encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise FileAccessError(f"cannot read list: {exc.strerror}", file=args.from_file) from None

    def paths():
        yield from args.xml
        if lines is not None:
            with lines:
                for line in lines:
                    path = line.rstrip("\r\n")
                    if path.strip():
                        yield path

    return paths()

"""The aiohook command line: one function per verb, one place for exit codes."""

from __future__ import annotations

import argparse
import os
import sys

from aiohook import __version__
from aiohook.errors import (
    EXIT_FINDINGS,
    EXIT_INTERNAL,
    EXIT_OK,
    AiohookError,
    FileAccessError,
    UsageError,
    exit_code_for,
)

# --- verbs -------------------------------------------------------------------


def cmd_plan(args) -> int:
    """Streams: each domain is printed and dropped before the next is read."""
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


def cmd_rewrite(args) -> int:
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


def cmd_facts(args) -> int:
    from aiohook.domxml.files import input_label, read_xml
    from aiohook.facts_dump import collect_facts
    from aiohook.probe import make_probe

    text = collect_facts([(input_label(p), read_xml(p)) for p in args.xml], make_probe(None))
    if args.output:
        from aiohook.fsutil import atomic_write

        atomic_write(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_rules_validate(args) -> int:
    from aiohook.fsutil import read_bounded
    from aiohook.policy.loader import default_rules_path
    from aiohook.policy.ruleset import validate_ruleset

    path = args.file or default_rules_path()
    problems = validate_ruleset(read_bounded(path, 4 << 20), path)
    for problem in problems:
        print(problem.render(path), file=sys.stderr)
    if problems:
        return EXIT_FINDINGS
    print(f"{path}: ok")
    return EXIT_OK


# --- parser ------------------------------------------------------------------

VERBS: dict = {}  # name -> (handler, configure(parser)); other modules register here


def verb(name: str, help: str):
    def register(configure):
        VERBS[name] = (help, configure)
        return configure

    return register


@verb("plan", "show what aiohook would decide for each disk")
def _plan_args(p):
    p.add_argument("--rules", help="rules file (default: /etc/aiohook/rules.yaml or packaged)")
    p.add_argument("--facts", help="recorded facts YAML instead of probing this host")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--from-file", metavar="LIST",
                   help="also plan the XML files listed in LIST, one path a line (- for stdin)")
    p.add_argument("xml", nargs="*", help="domain XML files, - for stdin")
    p.set_defaults(func=cmd_plan)


@verb("rewrite", "print or write the domain XML with the decided io/cache")
def _rewrite_args(p):
    p.add_argument("--rules")
    p.add_argument("--facts")
    p.add_argument("--diff", action="store_true", help="print a unified diff instead")
    p.add_argument("--output-dir", help="write each result there under its own file name")
    p.add_argument("xml", nargs="+")
    p.set_defaults(func=cmd_rewrite)


@verb("facts", "probe this host for every source of the domains and print recorded facts")
def _facts_args(p):
    p.add_argument("-o", "--output", help="write to this file (atomically)")
    p.add_argument("xml", nargs="+")
    p.set_defaults(func=cmd_facts)


@verb("rules", "validate (and lint) rulesets")
def _rules_args(p):
    sub = p.add_subparsers(dest="rules_verb", metavar="validate")
    sub.required = True
    v = sub.add_parser("validate", help="check a rules file against the schema and semantics")
    v.add_argument("file", nargs="?")
    v.set_defaults(func=cmd_rules_validate)
    for name, configure in RULES_VERBS.items():
        configure(sub.add_parser(name, help=configure.__doc__))


RULES_VERBS: dict = {}  # "rules X" sub-verbs registered by other modules (lint)
FEATURE_CLIS = ("aiohook.hook.cli", "aiohook.budget.cli", "aiohook.authoring.cli", "aiohook.calibrate.cli")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    for module in FEATURE_CLIS:  # each registers its verbs with @verb
        importlib.import_module(module)
    parser = argparse.ArgumentParser(
        prog="aiohook",
        description="Decide QEMU disk io= modes for libvirt domains; guard the host AIO budget.",
    )
    parser.add_argument("--version", action="version", version=f"aiohook {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    sub.required = True
    for name, (help_text, configure) in VERBS.items():
        configure(sub.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # argparse printed usage; code 2 is our usage code
            return int(exc.code or 0)
        return args.func(args)
    except AiohookError as exc:
        print(f"aiohook: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug: one line, unless asked for the traceback
        if os.environ.get("AIOHOOK_DEBUG"):
            raise
        code = exit_code_for(exc)
        kind = "internal error" if code == EXIT_INTERNAL else "error"
        print(f"aiohook: {kind}: {type(exc).__name__}: {exc} (AIOHOOK_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return code

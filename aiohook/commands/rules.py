"""`aiohook rules validate` and `aiohook rules lint`: check rulesets."""

from __future__ import annotations

import sys

from aiohook.errors import EXIT_FINDINGS, EXIT_OK


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="rules_verb", metavar="validate")
    sub.required = True
    v = sub.add_parser("validate", help="check a rules file against the schema and semantics")
    v.add_argument("file", nargs="?")
    lint = sub.add_parser(
        "lint", help="lint rulesets: shadowed rules, contradictions, vetoed overrides, unknown keys")
    lint.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one 'file:line: CODE name: rule: message' per line; json",
    )
    lint.add_argument(
        "files",
        nargs="*",
        metavar="F",
        help="rules files or profile names (default: the active rules)",
    )


def run(args) -> int:
    return validate(args) if args.rules_verb == "validate" else lint_rules(args)


def validate(args) -> int:
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


def lint_rules(args) -> int:
    from aiohook.authoring import lint
    from aiohook.policy.loader import default_rules_path, resolve_rules_path

    files = [resolve_rules_path(f) for f in args.files] or [default_rules_path()]
    findings = []
    for path in files:
        findings += lint.lint_file(path)
    render = lint.render_json if args.format == "json" else lint.render_text
    sys.stdout.write(render(findings, files))
    return EXIT_FINDINGS if findings else EXIT_OK

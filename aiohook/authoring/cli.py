"""CLI verbs of the authoring feature; each registers itself with aiohook.cli.verb.

aiohook test [--rules F] [--format text|json|junit] DIR...
aiohook test --init DIR [--rules F] [--facts F] [--force]
aiohook rules lint [--format text|json] [F...]
aiohook explain XML [--disk TARGET] [--facts F] [--rules F] [--format text|json]
"""

from __future__ import annotations

import sys

from aiohook.cli import RULES_VERBS, verb
from aiohook.errors import EXIT_FINDINGS, EXIT_OK, UsageError


def cmd_test(args) -> int:
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


@verb("test", "run rule test suites (aiohook-test.yaml) or scaffold one with --init")
def _test_args(p):
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
    p.set_defaults(func=cmd_test)


def cmd_explain(args) -> int:
    from aiohook.authoring import explain
    from aiohook.domxml.files import input_label, read_xml
    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe import make_probe

    ruleset = load_ruleset(args.rules)
    probe = make_probe(args.facts)
    plan = plan_xml(read_xml(args.xml), input_label(args.xml), ruleset, probe, explain=True)
    explained = explain.explain_plan(plan, ruleset, args.disk)
    render = explain.render_json if args.format == "json" else explain.render_text
    sys.stdout.write(render(plan, explained))
    return EXIT_OK


@verb("explain", "walk every rule for each disk: matched or why not, vetoes, decision")
def _explain_args(p):
    p.add_argument("--disk", metavar="TARGET", help="only this disk (target dev, e.g. vda)")
    p.add_argument("--facts", help="recorded facts YAML instead of probing this host")
    p.add_argument("--rules", help="rules file or profile name (default: as plan)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("xml", help="domain XML file, - for stdin")
    p.set_defaults(func=cmd_explain)


def cmd_rules_lint(args) -> int:
    from aiohook.authoring import lint
    from aiohook.policy.loader import default_rules_path, resolve_rules_path

    files = [resolve_rules_path(f) for f in args.files] or [default_rules_path()]
    findings = []
    for path in files:
        findings += lint.lint_file(path)
    render = lint.render_json if args.format == "json" else lint.render_text
    sys.stdout.write(render(findings, files))
    return EXIT_FINDINGS if findings else EXIT_OK


def _lint_args(p):
    """lint rulesets: shadowed rules, contradictions, vetoed overrides, unknown keys"""
    p.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one 'file:line: CODE name: rule: message' per line; json",
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="F",
        help="rules files or profile names (default: the active rules)",
    )
    p.set_defaults(func=cmd_rules_lint)


RULES_VERBS["lint"] = _lint_args

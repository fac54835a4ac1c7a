"""`aiohook explain XML [--disk TARGET] [--facts F] [--rules F] [--format text|json]`:
walk every rule for each disk: matched or why not, vetoes, decision."""

from __future__ import annotations

import sys

from aiohook.errors import EXIT_OK


def add_arguments(p) -> None:
    p.add_argument("--disk", metavar="TARGET", help="only this disk (target dev, e.g. vda)")
    p.add_argument("--facts", help="recorded facts YAML instead of probing this host")
    p.add_argument("--rules", help="rules file or profile name (default: as plan)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("xml", help="domain XML file, - for stdin")


def run(args) -> int:
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

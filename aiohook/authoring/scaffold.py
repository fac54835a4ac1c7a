"""`aiohook test --init DIR`: write an aiohook-test.yaml from the domains in DIR.

Every disk of every domain XML in DIR gets an expectation holding its current
decision (rule, class, io, cache). Review it: a scaffold records what the rules
do now, not what they should do.
"""

from __future__ import annotations

import glob
import os

import yaml

from aiohook.authoring.testrunner import MANIFEST
from aiohook.errors import FileAccessError, UsageError

FACTS_NAME = "facts.yaml"


def scaffold(
    directory: str, *, rules: str | None = None, facts: str | None = None, force: bool = False
) -> tuple[str, int]:
    """Write DIR/aiohook-test.yaml; returns (its path, number of expectations)."""
    from aiohook.domxml.files import read_xml
    from aiohook.fsutil import atomic_write
    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe import make_probe

    if not os.path.isdir(directory):
        raise FileAccessError("not a directory", file=directory)
    target = os.path.join(directory, MANIFEST)
    if os.path.exists(target) and not force:
        raise UsageError(f"{target} exists; --force overwrites it")
    xmls = sorted(
        p for p in glob.glob(os.path.join(directory, "*.xml")) if not p.endswith(".expected.xml")
    )
    if not xmls:
        raise UsageError(f"no domain XML files (*.xml) in {directory}")
    if facts is None and os.path.exists(os.path.join(directory, FACTS_NAME)):
        facts = os.path.join(directory, FACTS_NAME)
    if facts is None:  # record this host's facts so the suite replays anywhere
        from aiohook.facts_dump import collect_facts
        from aiohook.probe.linux import LinuxProbe

        facts = os.path.join(directory, FACTS_NAME)
        text = collect_facts([(p, read_xml(p)) for p in xmls], LinuxProbe())
        atomic_write(facts, text.encode())
    facts_rel = os.path.relpath(facts, directory)
    ruleset = load_ruleset(rules, use_cache=False)
    probe = make_probe(facts)
    domains, results = [], []
    for path in xmls:
        plan = plan_xml(read_xml(path), path, ruleset, probe)
        domains.append({"file": os.path.basename(path)})
        for disk in plan.disks:
            d = disk.decision
            results.append(
                {
                    "domain": plan.name,
                    "disk": disk.facts.target,
                    "rule": d.rule,
                    "class": disk.facts.disk_class,
                    "io": d.io_after or "unset",
                    "cache": d.cache_after or "unset",
                }
            )
    manifest: dict = {"version": 1, "name": os.path.basename(os.path.abspath(directory))}
    if rules is not None:
        manifest["rules"] = (
            rules if not os.path.exists(rules) else os.path.relpath(rules, directory)
        )
    manifest["facts"] = facts_rel
    manifest["domains"] = domains
    manifest["results"] = results
    head = (
        "# Scaffolded by `aiohook test --init` from the current decisions.\n"
        "# Review every expectation: it records what the rules do now.\n"
    )
    atomic_write(target, (head + yaml.safe_dump(manifest, sort_keys=False, width=100)).encode())
    return target, len(results)

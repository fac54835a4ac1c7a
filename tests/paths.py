"""Where the checkout's test inputs are: one definition for the test modules."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = ROOT / "tests" / "fixtures" / "domains"  # the corpus of domain XMLs
FACTS = FIXTURES / "facts.yaml"  # the corpus's recorded host facts
RULES_DIR = ROOT / "tests" / "rules"  # the rule suites (shared cases in RULES_DIR / "shared")
HOOK = ROOT / "hooks" / "qemu"


def standalone_suite(name: str, dest: Path) -> str:
    """tests/rules/<name> as a site ships a suite (the Ansible role copies a suite
    directory alone): its manifest and every file it names, side by side in dest."""
    import shutil

    import yaml

    src = RULES_DIR / name
    data = yaml.safe_load((src / "aiohook-test.yaml").read_text())
    dest.mkdir(parents=True, exist_ok=True)

    def beside(rel: str) -> str:
        shutil.copyfile(os.path.normpath(src / rel), dest / os.path.basename(rel))
        return os.path.basename(rel)

    data["facts"] = beside(data["facts"])
    for entry in data["domains"]:
        for key in ("file", "facts", "expect_xml"):
            if key in entry:
                entry[key] = beside(entry[key])
    (dest / "aiohook-test.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return str(dest)

"""Where the checkout's test inputs are: one definition for the test modules."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = ROOT / "tests" / "fixtures" / "domains"  # the corpus of domain XMLs
FACTS = FIXTURES / "facts.yaml"  # the corpus's recorded host facts
RULES_DIR = ROOT / "tests" / "rules"  # the rule suites (shared cases in RULES_DIR / "shared")
HOOK = ROOT / "hooks" / "qemu"

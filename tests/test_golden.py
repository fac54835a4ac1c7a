"""Golden outputs of `plan --format json` and `rewrite` for every fixture domain.

Regenerate with:  AIOHOOK_REGEN_GOLDEN=1 pytest tests/test_golden.py
then review the diff of tests/golden/ by eye against the default-rules table
(issue 2) before committing: a wrong golden is a bug, not a reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from paths import FACTS, FIXTURES, ROOT

GOLDEN = ROOT / "tests" / "golden"
RULES = ROOT / "aiohook" / "rules.yaml"
REGEN = os.environ.get("AIOHOOK_REGEN_GOLDEN") == "1"

# Keep the host's /etc/aiohook and /var/cache/aiohook out of the picture.
_ISOLATED = Path(os.environ.get("TMPDIR", "/tmp")) / f"aiohook-golden-{os.getuid()}"
ENV = {**os.environ, "AIOHOOK_CONFIG_DIR": str(_ISOLATED / "etc"),
       "AIOHOOK_CACHE_DIR": str(_ISOLATED / "cache")}

DOMAINS = sorted(FIXTURES.glob("*.xml"))


def run(*args: str) -> subprocess.CompletedProcess:
    # Relative paths keep the "file" fields independent of the checkout location.
    return subprocess.run(
        [sys.executable, "-m", "aiohook", *args], cwd=ROOT, capture_output=True, timeout=60,
        env=ENV,
    )


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def normalize_plan(doc: dict) -> dict:
    """Drop what depends on the machine rather than on the decision (none today)."""
    return doc


def check(golden: Path, actual: bytes) -> None:
    if REGEN:
        golden.write_bytes(actual)
        return
    assert golden.exists(), f"{golden} missing: run AIOHOOK_REGEN_GOLDEN=1 pytest {rel(Path(__file__))}"
    expected = golden.read_bytes()
    if golden.suffix == ".json":
        assert json.loads(actual) == json.loads(expected), f"plan differs from {rel(golden)}"
    else:
        assert actual == expected, f"rewrite differs from {rel(golden)}"


def test_corpus_present():
    assert len(DOMAINS) >= 30


@pytest.mark.parametrize("xml", DOMAINS, ids=lambda p: p.stem)
def test_plan_golden(xml: Path):
    res = run("plan", "--rules", rel(RULES), "--facts", rel(FACTS), "--format", "json", rel(xml))
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == b""
    doc = normalize_plan(json.loads(res.stdout))
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    check(GOLDEN / f"{xml.stem}.plan.json", text.encode())


@pytest.mark.parametrize("xml", DOMAINS, ids=lambda p: p.stem)
def test_rewrite_golden(xml: Path):
    res = run("rewrite", "--rules", rel(RULES), "--facts", rel(FACTS), rel(xml))
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == b""
    check(GOLDEN / f"{xml.stem}.xml", res.stdout)


def test_no_stale_goldens():
    stems = {p.stem for p in DOMAINS}
    for g in GOLDEN.iterdir():
        if g.name == "README.md":
            continue
        stem = g.name.removesuffix(".plan.json").removesuffix(".xml")
        assert stem in stems, f"{rel(g)} has no fixture: delete it"

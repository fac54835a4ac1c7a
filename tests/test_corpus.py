"""benchmarks/corpus_check.py over the fixture corpus, and over libvirt's own test domains.

The checker rewrites every domain with generated recorded facts and checks:
a one-line documented error or success, idempotence, nothing but disk
<driver io/cache> changed (C14N), domain.rng validity kept, and never
io='native' without cache none/directsync. See the checker's docstring.

libvirt's corpus is not committed. To get it:

    apt-get source libvirt
    mkdir -p /tmp/libvirt-corpus
    cp libvirt-*/tests/qemuxml2argvdata/*.xml libvirt-*/tests/qemuxml2xmloutdata/*.xml /tmp/libvirt-corpus/
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import paths
import pytest

ROOT = str(paths.ROOT)
FIXTURES = str(paths.FIXTURES)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import corpus_check  # noqa: E402  (found through the sys.path entry above)

LIBVIRT_CORPUS = os.environ.get("AIOHOOK_LIBVIRT_CORPUS", "/tmp/libvirt-corpus")
HAVE_SCHEMA = os.path.exists(corpus_check.SCHEMA)


def _run(directory: str, **kw) -> tuple[corpus_check.Checker, str]:
    out = io.StringIO()
    checker = corpus_check.run(directory, stream=out, **kw)
    checker.report(out, verbose=True)
    return checker, out.getvalue()


def test_fixture_corpus_and_byte_variants():
    checker, text = _run(FIXTURES, variants=True)
    assert not checker.violations, text
    assert checker.counts["domains"] >= 30 * (1 + len(corpus_check.VARIANTS)), text
    assert checker.counts["changed disks"] > 0, text
    if HAVE_SCHEMA:
        assert checker.counts["valid inputs"] > 0, text


@pytest.mark.skipif(not os.path.isdir(LIBVIRT_CORPUS),
                    reason=f"libvirt's test domains are not at {LIBVIRT_CORPUS}: "
                           "`apt-get source libvirt`, then copy its tests/qemuxml2argvdata/*.xml "
                           "there (or set AIOHOOK_LIBVIRT_CORPUS)")
def test_libvirt_corpus():
    checker, text = _run(LIBVIRT_CORPUS)
    assert not checker.violations, text
    assert checker.counts["rewrites"] > 0, text


def test_checker_catches_a_change_beyond_io_cache(tmp_path, monkeypatch):
    """The checker itself must fail when the rewrite touches anything else."""
    shutil.copy(os.path.join(FIXTURES, "minimal-file.xml"), tmp_path)
    shutil.copy(os.path.join(FIXTURES, "handwritten-comments-pi.xml"), tmp_path)
    from aiohook.domxml.document import DomainDocument

    real = DomainDocument.serialize
    monkeypatch.setattr(DomainDocument, "serialize",
                        lambda self, edits=None: real(self, edits).replace(b"</name>", b"-x</name>", 1))
    checker, text = _run(str(tmp_path))
    assert any("differs beyond io/cache" in v for v in checker.violations), text


def test_checker_catches_native_without_direct_cache(tmp_path, monkeypatch):
    shutil.copy(os.path.join(FIXTURES, "virtinst-block-native.xml"), tmp_path)
    from aiohook.planner import DomainPlan

    real = DomainPlan.edits.fget
    monkeypatch.setattr(DomainPlan, "edits", property(lambda self: {
        i: {**edit, "cache": "writeback" if edit["cache"] is not None else None}
        for i, edit in real(self).items()}))
    monkeypatch.setattr("aiohook.policy.engine.refusals", lambda *a, **k: [])
    checker, text = _run(str(tmp_path))
    assert any("io='native' with cache=" in v for v in checker.violations), text


FAST_PATH_CASES = [
    "version: 1\nhost: {io_uring: yes, aio_nr: 0x10}\nsources:\n  /a: {kind: file, size: 1_000}\n",
    "version: 1\nsources:\n  /a: &x {kind: file}\n  /b: *x\n",
    "version: 1\nsources:\n  /a: !!str {kind: file}\n",
    "version: 1\nsources:\n  '/a': {kind: 'file', fs: \"ext4\"}\n",
    "version: 1\nsources:\n  '/a': {kind: 'file', fs: \"ext4\", extra: [1, {a: b}]}\n",
    "version: 1\nsources:\n  /a: {kind: file}\n  /a: {kind: block}\n",
    "version: 1\nsources:\n  /a: {kind: file, kind: block}\n",
    "version: 1\nsources:\n  /a: {kind: file, x: 1, x: 2}\n",
    "version: 1\nsources:\n  /a: {kind: file, on: 1}\n",
    "version: 1\nsources:\n  /a: {kind: file, 'kind': block}\n",
    "version: 1\nsources:\n  /a: {kind: !!str file, fs: [a]}\n",
    "version: 1\nhost:\nsources:\nvolumes:\n",
    "sources:\n  /a: {kind: file}\nversion: 1\n",
    "sources:\n  /a: {kind: file}\nversion: 1\nextra: {a: [1, {b: c}]}\n",
    "version: '1'\n",
    "version: 1\n---\nversion: 1\n",
    "version: 1\nsources:\n  1: {kind: file}\n",
    "version: 1\nsources:\n  /a: {kind: file, size: -1}\n",
    "version: 1\nsources:\n  /a:\n    kind: file\n    fs: |\n      ext4\n",
]


def test_facts_fast_path_matches_node_walker(tmp_path, monkeypatch):
    """RecordedProbe's event-stream fast path (the fleet hot spot) gives the node
    walker's result, or gives up and lets the walker answer (and name the error)."""
    from aiohook.errors import FactsError
    from aiohook.probe import recorded

    facts = tmp_path / "facts.yaml"
    corpus_check.write_facts(*corpus_check.collect_sources(corpus_check.find_xml(FIXTURES)),
                             str(facts))
    texts = FAST_PATH_CASES + [facts.read_text(),
                               (Path(FIXTURES) / "facts.yaml").read_text()]
    fast_count = 0
    for text in texts:
        fast = recorded._parse_fast(text)
        with monkeypatch.context() as m:
            m.setattr(recorded, "_parse_fast", lambda _text: None)
            try:
                slow = recorded.parse_facts(text, "f")
            except FactsError as exc:
                slow = exc
        assert fast is None or fast == slow, text
        fast_count += fast is not None
    assert recorded._parse_fast(facts.read_text()) is not None  # the common case is fast
    assert fast_count >= 6

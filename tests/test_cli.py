"""The aiohook CLI (plan, rewrite, rules validate) as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from paths import FACTS, FIXTURES, ROOT

RULES = ROOT / "aiohook" / "rules.yaml"
CHANGING = FIXTURES / "kubevirt-containerdisk.xml"  # vda native->io_uring, vdb gains native+none
UNCHANGED = FIXTURES / "nova-lvm-ephemeral.xml"

DISK_KEYS = {"target", "device", "type", "source", "class", "facts", "io", "cache", "rule",
             "changed", "reason"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("aiohook-env")
    return {**os.environ, "AIOHOOK_CONFIG_DIR": str(base / "etc"),
            "AIOHOOK_CACHE_DIR": str(base / "cache")}


def aiohook(env, *args, stdin: bytes | None = None, cwd=None):
    return subprocess.run([sys.executable, "-m", "aiohook", *map(str, args)], input=stdin,
                          capture_output=True, timeout=60, env=env, cwd=cwd)


def ok(res) -> bytes:
    assert res.returncode == 0, res.stderr.decode()
    assert res.stderr == b"", res.stderr.decode()
    return res.stdout


# ---------------------------------------------------------------- plan


def test_plan_text_table(env):
    out = ok(aiohook(env, "plan", "--facts", FACTS, CHANGING)).decode()
    lines = out.splitlines()
    header = next(line for line in lines if "TARGET" in line)
    for column in ("TARGET", "DEVICE", "CLASS", "FACTS", "IO", "CACHE", "RULE"):
        assert column in header.split(), column
    assert "domain " in lines[0] and str(CHANGING) in lines[0]
    row = next(line for line in lines if line.split()[:1] == ["vdb"])
    assert "file-preallocated" in row and "unset -> native" in row and "unset -> none" in row
    assert "preallocated-image" in row
    row = next(line for line in lines if line.split()[:1] == ["vda"])
    assert "native -> io_uring" in row and "file-sparse" in row
    # why, per disk
    assert any(line.strip().startswith("vda:") and "sparse" in line for line in lines)
    # columns line up: every row starts each column at the header's offset
    start = header.index("CLASS")
    rows = [line for line in lines if line.split()[:1] in (["vda"], ["vdb"], ["sda"])
            and not line.strip().endswith(":") and len(line) > start and ":" not in line.split()[0]]
    assert rows and all(r[start - 1] == " " and r[start] != " " for r in rows)
    assert lines[-1].startswith("1 domains, 3 disks, 2 to change")


def test_plan_json_contract(env):
    doc = json.loads(ok(aiohook(env, "plan", "--facts", FACTS, "--format", "json", CHANGING, UNCHANGED)))
    assert set(doc) >= {"domains"}
    assert [d["file"] for d in doc["domains"]] == [str(CHANGING), str(UNCHANGED)]
    for dom in doc["domains"]:
        assert {"name", "file", "disks"} <= set(dom)
        assert isinstance(dom["name"], str) and dom["name"]
        for disk in dom["disks"]:
            assert DISK_KEYS <= set(disk), DISK_KEYS - set(disk)
            assert set(disk["io"]) >= {"before", "after"} and set(disk["cache"]) >= {"before", "after"}
            assert isinstance(disk["facts"], dict) and isinstance(disk["changed"], bool)
            assert disk["changed"] == (disk["io"]["before"] != disk["io"]["after"]
                                       or disk["cache"]["before"] != disk["cache"]["after"])
            assert isinstance(disk["reason"], str) and disk["reason"]
            assert isinstance(disk["rule"], str) and disk["rule"]
    by_target = {d["target"]: d for d in doc["domains"][0]["disks"]}
    assert by_target["vdb"]["io"] == {"before": None, "after": "native"}
    assert by_target["vdb"]["cache"] == {"before": None, "after": "none"}
    assert by_target["vdb"]["class"] == "file-preallocated" and by_target["vdb"]["type"] == "file"
    assert by_target["sda"]["device"] == "cdrom"


def test_plan_stdin(env):
    data = CHANGING.read_bytes()
    doc = json.loads(ok(aiohook(env, "plan", "--facts", FACTS, "--format", "json", "-", stdin=data)))
    assert doc["domains"][0]["file"] == "<stdin>"
    from_file = json.loads(ok(aiohook(env, "plan", "--facts", FACTS, "--format", "json", CHANGING)))
    assert [d["io"] for d in doc["domains"][0]["disks"]] == [d["io"] for d in from_file["domains"][0]["disks"]]
    text = ok(aiohook(env, "plan", "--facts", FACTS, "-", stdin=data)).decode()
    assert "<stdin>" in text


def test_plan_bad_input_among_good_reports_and_continues(env, tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<domain>")
    res = aiohook(env, "plan", "--facts", FACTS, "--format", "json", CHANGING, bad)
    assert res.returncode == 3
    assert len(res.stderr.decode().splitlines()) == 1
    doc = json.loads(res.stdout)
    assert len(doc["domains"]) == 1


# ---------------------------------------------------------------- rewrite


def test_rewrite_one_to_stdout(env):
    out = ok(aiohook(env, "rewrite", "--facts", FACTS, CHANGING))
    original = CHANGING.read_bytes()
    assert out != original
    native = re.compile(rb"""io=["']native["']""")
    assert len(native.findall(out)) == len(native.findall(original))  # vda lost one, vdb gained one
    assert re.search(rb"""io=["']io_uring["']""", out)
    # only <driver> lines differ
    changed = [(a, b) for a, b in zip(original.splitlines(), out.splitlines()) if a != b]
    assert changed and all(b"<driver" in a or b"<driver" in b for a, b in changed)


def test_rewrite_unchanged_is_byte_identical(env):
    assert ok(aiohook(env, "rewrite", "--facts", FACTS, UNCHANGED)) == UNCHANGED.read_bytes()


def test_rewrite_stdin(env):
    assert ok(aiohook(env, "rewrite", "--facts", FACTS, "-", stdin=CHANGING.read_bytes())) == \
        ok(aiohook(env, "rewrite", "--facts", FACTS, CHANGING))


def test_rewrite_diff(env):
    out = ok(aiohook(env, "rewrite", "--facts", FACTS, "--diff", CHANGING)).decode()
    lines = out.splitlines()
    assert lines[0].startswith("--- ") and lines[1].startswith("+++ ")
    assert any(line.startswith("@@ ") for line in lines)
    minus = [line for line in lines[2:] if line.startswith("-")]
    plus = [line for line in lines[2:] if line.startswith("+")]
    assert minus and plus and all("<driver" in line for line in minus + plus)
    assert ok(aiohook(env, "rewrite", "--facts", FACTS, "--diff", UNCHANGED)) == b""


def test_rewrite_diff_from_stdin_matches_the_file(env):
    """stdin is read once: the diff's old side is the XML that was planned."""
    from_stdin = ok(aiohook(env, "rewrite", "--facts", FACTS, "--diff", "-",
                            stdin=CHANGING.read_bytes())).decode()
    from_file = ok(aiohook(env, "rewrite", "--facts", FACTS, "--diff", CHANGING)).decode()
    assert from_stdin.splitlines()[2:] == from_file.splitlines()[2:]
    changed = [line for line in from_stdin.splitlines()[2:] if line[:1] in "+-"]
    assert changed and all("<driver" in line for line in changed)  # not the whole document


def test_rewrite_several_need_output_dir(env, tmp_path):
    res = aiohook(env, "rewrite", "--facts", FACTS, CHANGING, UNCHANGED)
    assert res.returncode == 2 and res.stdout == b""
    assert len(res.stderr.decode().splitlines()) == 1 and "--output-dir" in res.stderr.decode()

    out = tmp_path / "out"
    out.mkdir()
    assert ok(aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", out, CHANGING, UNCHANGED)) == b""
    assert sorted(p.name for p in out.iterdir()) == sorted([CHANGING.name, UNCHANGED.name])
    assert (out / CHANGING.name).read_bytes() == ok(aiohook(env, "rewrite", "--facts", FACTS, CHANGING))
    assert (out / UNCHANGED.name).read_bytes() == UNCHANGED.read_bytes()


def test_rewrite_output_dir_with_diff(env, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ok(aiohook(env, "rewrite", "--facts", FACTS, "--diff", "--output-dir", out, CHANGING, UNCHANGED))
    names = sorted(p.name for p in out.iterdir())
    assert all(n.endswith(".diff") for n in names) and len(names) == 2


def test_rewrite_same_basename_refused(env, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(CHANGING, tmp_path / "a" / "d.xml")
    shutil.copy(UNCHANGED, tmp_path / "b" / "d.xml")
    out = tmp_path / "out"
    out.mkdir()
    res = aiohook(env, "rewrite", "--facts", FACTS, "--output-dir", out, tmp_path / "a" / "d.xml",
                  tmp_path / "b" / "d.xml")
    assert res.returncode == 2 and list(out.iterdir()) == []


def test_rewrite_is_idempotent_through_the_cli(env, tmp_path):
    once = ok(aiohook(env, "rewrite", "--facts", FACTS, CHANGING))
    twice = ok(aiohook(env, "rewrite", "--facts", FACTS, "-", stdin=once))
    assert once == twice


# ---------------------------------------------------------------- rules validate


def test_rules_validate_ok(env, tmp_path):
    res = aiohook(env, "rules", "validate", RULES)
    assert res.returncode == 0 and res.stderr == b""
    assert res.stdout.decode().strip() == f"{RULES}: ok"
    res = aiohook(env, "rules", "validate")  # the packaged default
    assert res.returncode == 0 and b": ok" in res.stdout


def test_rules_validate_failing(env, tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text(RULES.read_text().replace("name: sparse-image", "name: block-device"))
    res = aiohook(env, "rules", "validate", bad)
    assert res.returncode == 1 and res.stdout == b""
    lines = res.stderr.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad}:") and "duplicate name" in lines[0]
    line_no = int(lines[0].split(":")[1])
    assert "name: block-device" in bad.read_text().splitlines()[line_no - 1]


def test_custom_rules_change_decisions(env, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - name: all-threads\n    description: threads everywhere\n"
                     "    match: {class: [block, file-preallocated, file-sparse]}\n    action: {io: threads}\n")
    doc = json.loads(ok(aiohook(env, "plan", "--rules", rules, "--facts", FACTS, "--format", "json", UNCHANGED)))
    disks = [d for d in doc["domains"][0]["disks"] if d["class"] == "block"]
    assert disks and all(d["io"]["after"] == "threads" and d["rule"] == "all-threads" for d in disks)


def test_the_command_table_is_static_and_each_command_is_imported_only_when_it_runs():
    """pip's shape: aiohook.cli lists every command module, and running one command
    imports no other command module (nor any feature's library it does not use)."""
    from aiohook.cli import COMMANDS

    modules = {p.stem for p in (ROOT / "aiohook" / "commands").glob("*.py")} - {"__init__"}
    assert {m.rsplit(".", 1)[1] for m, _ in COMMANDS.values()} == modules
    code = ("import sys; from aiohook.cli import main; main(['rules', 'validate', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.startswith('aiohook.commands.')))")
    done = subprocess.run([sys.executable, "-c", code, str(RULES)], capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.splitlines()[-1] == "['aiohook.commands.rules']"

"""Issue 11: each hook op imports only what it uses, and the test fails when that grows.

The hook runs the way `aiohook install` launches it: `python -I -S` with an
explicit sys.path (the checkout, then site-packages), `-X importtime` listing
every module it imports. What the bare interpreter imports anyway
(`python -I -S -c pass`) and what `import os` brings on this interpreter are
subtracted; the rest must be in the op's list below. A module added to an op's
hot path must be added here too, on purpose, with what it costs
(benchmarks/hook_cost.py --profile measures each op's import time).

Runs on warm caches (the compiled settings and rules, the QEMU binary's facts),
as the hook runs on a host, after one untimed run: a cold cache compiles the
rules (yaml, jsonschema) once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import paths
import pytest

ROOT = str(paths.ROOT)

# Standard-library modules aiohook itself imports on the hot paths (C modules,
# small ones, each chosen over a heavier one: _json not json, _sha256 not
# hashlib, pyexpat not lxml, _thread not threading; see README "Performance").
STDLIB_ENTRY = {"__future__", "gc"}  # gc: the hook turns the cyclic collector off
STDLIB_SETTLE = STDLIB_ENTRY | {"time", "_json", "fcntl"}
STDLIB_GATE = STDLIB_SETTLE | {"errno", "mmap", "pyexpat", "syslog", "_sha256", "_sha2",
                               "_thread"}

ENTRY = {"aiohook", "aiohook.hook", "aiohook.hook.entry"}
SETTLE = ENTRY | {"aiohook.budget", "aiohook.budget.ledger", "aiohook.jsonlite", "aiohook.paths",
                  "aiohook.errors", "aiohook.fsutil"}
GATE = SETTLE | {
    "aiohook.hook.dispatch", "aiohook.hook.log", "aiohook.hook.prepare", "aiohook.settings",
    "aiohook.cachekey", "aiohook.record", "aiohook.facts", "aiohook.classify", "aiohook.planner",
    "aiohook.domxml", "aiohook.domxml.disk", "aiohook.domxml.document", "aiohook.domxml.lite",
    "aiohook.domxml.overrides", "aiohook.policy", "aiohook.policy.conditions",
    "aiohook.policy.engine", "aiohook.policy.loader", "aiohook.policy.ruleset",
    "aiohook.policy.safety", "aiohook.probe", "aiohook.probe.bounded", "aiohook.probe.linux",
    "aiohook.probe.host", "aiohook.probe.sources", "aiohook.hook.planning",
    "aiohook.budget.demand", "aiohook.budget.gate", "aiohook.budget.procscan",
    "aiohook.budget.supply",
}
FILTER = GATE | {"aiohook.hook.filter", "aiohook.domxml.textpatch"}

# What no op may import: each costs the hook milliseconds (issue 11's profile).
NEVER = {"lxml", "lxml.etree", "json", "re", "dataclasses", "typing", "hashlib", "threading",
         "yaml", "jsonschema", "enum", "inspect", "ast", "collections", "functools", "struct",
         "tempfile", "xml", "xml.parsers.expat", "importlib.resources", "pathlib", "fnmatch"}

OPS = {
    ("prepare", "begin"): (GATE, STDLIB_GATE),
    ("migrate", "begin"): (FILTER, STDLIB_GATE),
    ("restore", "begin"): (FILTER, STDLIB_GATE),
    ("started", "begin"): (SETTLE, STDLIB_SETTLE),
    ("reconnect", "begin"): (SETTLE, STDLIB_SETTLE),
    ("stopped", "end"): (SETTLE, STDLIB_SETTLE),
    ("release", "end"): (SETTLE, STDLIB_SETTLE),
    ("start", "begin"): (ENTRY, STDLIB_ENTRY),
    ("attach", "begin"): (ENTRY, STDLIB_ENTRY),
    ("prepare", "end"): (ENTRY, STDLIB_ENTRY),
    ("frobnicate", "begin"): (ENTRY | {"aiohook.hook.log", "aiohook.jsonlite", "aiohook.paths"},
                             STDLIB_ENTRY | {"_json", "syslog"}),
}


def _imported(argv: list[str], env: dict, stdin: bytes = b"") -> set[str]:
    done = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", *argv], input=stdin,
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode in (0, 1), done.stderr.decode()[-2000:]
    out = set()
    for line in done.stderr.decode().splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            out.add(line.split("|")[-1].strip())
    return out


@pytest.fixture(scope="module")
def hook(tmp_path_factory):
    """A launcher as `aiohook install` writes it, on the checkout, and a 16-disk
    domain on real files (preallocated native disks, sparse disks with io unset)."""
    tmp = tmp_path_factory.mktemp("imports")
    site = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
            and os.path.isdir(p)]
    launcher = tmp / "50-aiohook"
    launcher.write_text("import sys\n"
                        f"sys.path[:0] = {[ROOT] + site!r}\n"
                        "from aiohook.hook.entry import main\n"
                        "main()\n")
    disks = []
    for i in range(16):
        path = tmp / f"disk{i}.raw"
        with open(path, "wb") as fh:
            if i % 2 == 0:
                os.posix_fallocate(fh.fileno(), 0, 1 << 20)
            else:
                fh.truncate(1 << 20)
        driver = ("<driver name='qemu' type='raw' cache='none' io='native'/>" if i % 2 == 0
                  else "<driver name='qemu' type='raw'/>")
        disks.append(f"<disk type='file' device='disk'>{driver}<source file='{path}'/>"
                     f"<target dev='vd{chr(97 + i)}' bus='virtio'/></disk>")
    xml = ("<domain type='kvm'><name>dom</name><memory>1024</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64'>hvm</type></os><devices>"
           "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
           + "".join(disks) + "</devices></domain>").encode()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "AIOHOOK_CONFIG_DIR": str(tmp / "etc"), "AIOHOOK_LOG_DIR": str(tmp / "log"),
           "AIOHOOK_CACHE_DIR": str(tmp / "cache"), "AIOHOOK_STATE_DIR": str(tmp / "state")}
    (tmp / "etc").mkdir()
    for op in ("prepare", "release"):  # cold caches: rules compiled (yaml...) once
        subprocess.run([sys.executable, "-I", "-S", str(launcher), "dom", op, "begin", "-"],
                       input=xml, env=env, capture_output=True, timeout=60, check=False)
    base = _imported(["-c", "pass"], env)
    with_os = _imported(["-c", "import os"], env) - base
    return {"launcher": str(launcher), "xml": xml, "env": env, "base": base, "os": with_os}


@pytest.mark.parametrize("op,subop", list(OPS), ids=[" ".join(k) for k in OPS])
def test_each_op_imports_only_its_own_list(hook, op, subop):
    ours, stdlib = OPS[(op, subop)]
    if (op, subop) in (("started", "begin"), ("stopped", "end"), ("reconnect", "begin")):
        # a booked domain: settle takes the lock and writes (the costly case)
        subprocess.run([sys.executable, "-I", "-S", hook["launcher"], "dom", "prepare", "begin",
                        "-"], input=hook["xml"], env=hook["env"], capture_output=True,
                       timeout=60, check=True)
    try:
        seen = _imported([hook["launcher"], "dom", op, subop, "-"], hook["env"], hook["xml"])
    finally:
        subprocess.run([sys.executable, "-I", "-S", hook["launcher"], "dom", "release", "end",
                        "-"], input=hook["xml"], env=hook["env"], capture_output=True,
                       timeout=60, check=False)
    if op in ("prepare", "migrate", "restore"):
        with open(os.path.join(hook["env"]["AIOHOOK_LOG_DIR"], "decisions.jsonl")) as fh:
            last = json.loads(fh.readlines()[-1])
        if last["outcome"] == "budget-refused" or "budget" in last:
            # Another process holds fs.aio-max-nr (the suite's budget tests do): the
            # refusal's message scans every process and binary, which is not the path
            # measured here.
            pytest.skip(f"the host's AIO budget is exhausted: {last.get('message', '')[:200]}")
    extra = seen - hook["base"] - hook["os"]
    assert not extra & NEVER, f"{op} {subop} imports {sorted(extra & NEVER)}"
    grown = extra - ours - stdlib
    assert not grown, f"{op} {subop} imports more than its list: {sorted(grown)}"
    assert ENTRY <= extra  # the measurement itself works


def test_a_booked_domain_settles_with_the_lock_and_an_unbooked_one_without(hook):
    """release after stopped (nothing booked) reads the ledger and stops there:
    no fcntl, no fsutil (aiohook.budget.ledger._not_booked)."""
    subprocess.run([sys.executable, "-I", "-S", hook["launcher"], "dom", "prepare", "begin", "-"],
                   input=hook["xml"], env=hook["env"], capture_output=True, timeout=60, check=True)
    booked = _imported([hook["launcher"], "dom", "stopped", "end", "-"], hook["env"], hook["xml"])
    unbooked = _imported([hook["launcher"], "dom", "release", "end", "-"], hook["env"],
                         hook["xml"])
    assert {"fcntl", "aiohook.fsutil"} <= booked
    assert not {"fcntl", "aiohook.fsutil", "aiohook.errors"} & unbooked
    with open(os.path.join(hook["env"]["AIOHOOK_STATE_DIR"], "aio-ledger.json")) as fh:
        assert json.load(fh)["reservations"] == {}


@pytest.mark.parametrize("on_error,code,words", [
    ("refuse", 1, "aiohook: refusing the start of dom (on_error: refuse): internal error: "),
    ("allow", 0, "aiohook: ERROR, letting the start of dom go on unchecked (on_error: allow): "
                 "internal error: "),
])
def test_a_hook_that_cannot_import_its_heavy_path_follows_on_error_in_its_one_wording(
        tmp_path, on_error, code, words):
    """entry's last resort (the dispatcher itself failed to import) words its on_error
    outcome as the dispatcher does (aiohook.hook.onerror.follow)."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "aiohook.yaml").write_text(f"on_error: {on_error}\n")
    env = {"AIOHOOK_CONFIG_DIR": str(tmp_path / "etc"), "AIOHOOK_LOG_DIR": str(tmp_path / "log"),
           "AIOHOOK_STATE_DIR": str(tmp_path / "state"), "AIOHOOK_CACHE_DIR": str(tmp_path / "c")}
    code_text = (f"import sys; sys.path.insert(0, {ROOT!r}); "
                 "sys.modules['aiohook.hook.dispatch'] = None; "
                 "from aiohook.hook.entry import main; main(['hook', 'dom', 'prepare', 'begin', '-'])")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", code_text], input=b"<domain/>",
                          capture_output=True, env=env, timeout=60, check=False)
    assert done.returncode == code, done.stderr
    assert done.stderr.decode().startswith(words), done.stderr

"""The hook script run directly, the way libvirt runs it: argv, XML on stdin, exit status.

Real files (preallocated, sparse), a real frozen FUSE mount; no libvirtd needed.
Each test gets its own config, log, cache and state directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from paths import HOOK, ROOT

PROBE_BUDGET_S = 2.0


class Env:
    def __init__(self, tmp_path):
        self.root = tmp_path
        self.config = tmp_path / "etc"
        self.logs = tmp_path / "log"
        self.config.mkdir()
        prealloc = tmp_path / "prealloc.raw"
        with open(prealloc, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, 1 << 20)
        sparse = tmp_path / "sparse.raw"
        with open(sparse, "wb") as fh:
            fh.truncate(1 << 20)
        self.prealloc, self.sparse = str(prealloc), str(sparse)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AIOHOOK_CONFIG_DIR": str(self.config),
            "AIOHOOK_LOG_DIR": str(self.logs),
            "AIOHOOK_CACHE_DIR": str(tmp_path / "cache"),
            "AIOHOOK_STATE_DIR": str(tmp_path / "state"),
        }

    def settings(self, text: str) -> None:
        (self.config / "aiohook.yaml").write_text(text)

    def xml(self, name="dom", io_native=False, extra_disks="") -> bytes:
        driver = ("<driver name='qemu' type='raw' cache='none' io='native'/>" if io_native
                  else "<driver name='qemu' type='raw'/>")
        return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      {driver}
      <source file='{self.prealloc}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' io='threads'/>
      <source file='{self.sparse}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>{extra_disks}
  </devices>
</domain>
""".encode()

    def run(self, *args: str, stdin: bytes = b"", timeout: float = 60, python_flags=()):
        return subprocess.run([sys.executable, *python_flags, HOOK, *args], input=stdin,
                              capture_output=True, env=self.env, timeout=timeout, check=False)

    def decisions(self) -> list[dict]:
        path = self.logs / "decisions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


# ---------------------------------------------------------------- prepare: compliance


def test_warn_lets_it_start_and_logs_each_disk(env):
    env.settings("enforce: warn\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0, done.stderr
    assert done.stdout == b""
    [entry] = env.decisions()
    assert entry["domain"] == "dom" and entry["op"] == "prepare"
    assert entry["outcome"] == "warned"
    assert "aiohook apply dom" in entry["message"]
    vda = next(d for d in entry["disks"] if d["target"] == "vda")
    assert vda["io"] == {"before": None, "after": "native"}
    assert vda["cache"] == {"before": None, "after": "none"}
    assert vda["rule"] and vda["changed"] is True
    assert {"time", "domain", "op", "outcome", "disks"} <= set(entry)


def test_refuse_names_every_disk_its_io_the_wanted_io_and_the_rule(env, tmp_path):
    other = tmp_path / "other.raw"
    with open(other, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    extra = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
             f"<source file='{other}'/><target dev='vdc' bus='virtio'/></disk>")
    env.settings("enforce: refuse\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml(extra_disks=extra))
    assert done.returncode == 1
    err = done.stderr.decode()
    assert err.startswith("aiohook: refusing to start dom (enforce: refuse): 2 disk(s)")
    assert f"vda ({env.prealloc}): io=unset (threads) cache=unset -> wanted io=native " \
           f"cache=none (rule " in err
    assert f"vdc ({other}): io=unset (threads) cache=unset -> wanted io=native cache=none" \
        in err
    assert "vdb" not in err  # the sparse disk (explicit io='threads') is as the rules want
    assert "aiohook apply dom" in err
    assert "Traceback" not in err
    assert env.decisions()[-1]["outcome"] == "refused"


def test_refuse_lets_a_compliant_domain_start(env):
    env.settings("enforce: refuse\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml(io_native=True))
    assert done.returncode == 0, done.stderr
    assert env.decisions()[-1]["outcome"] == "compliant"


def test_off_checks_nothing(env):
    env.settings("enforce: off\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0 and done.stderr == b""
    assert env.decisions()[-1]["outcome"] == "allowed"


# ---------------------------------------------------------------- migrate / restore: filter


@pytest.mark.parametrize("op", ["restore", "migrate"])
def test_filter_prints_the_xml_with_only_io_and_cache_changed(env, op):
    env.settings("enforce: warn\n")
    original = env.xml()
    done = env.run("dom", op, "begin", "-", stdin=original)
    assert done.returncode == 0, done.stderr
    new = done.stdout
    assert b"cache='none' io='native'" in new
    old_lines, new_lines = original.splitlines(), new.splitlines()
    assert len(old_lines) == len(new_lines)
    diff = [(a, b) for a, b in zip(old_lines, new_lines) if a != b]
    assert diff == [(b"      <driver name='qemu' type='raw'/>",
                     b"      <driver name='qemu' type='raw' cache='none' io='native'/>")]
    assert env.decisions()[-1]["outcome"] == "rewritten"


@pytest.mark.parametrize("op", ["restore", "migrate"])
def test_filter_prints_nothing_when_unchanged(env, op):
    done = env.run("dom", op, "begin", "-", stdin=env.xml(io_native=True))
    assert done.returncode == 0 and done.stdout == b""
    assert env.decisions()[-1]["outcome"] == "unchanged"


def test_filter_with_enforce_off_prints_nothing(env):
    env.settings("enforce: off\n")
    done = env.run("dom", "restore", "begin", "-", stdin=env.xml())
    assert done.returncode == 0 and done.stdout == b""


# ---------------------------------------------------------------- other ops: cheap and quiet


@pytest.mark.parametrize("op,subop", [("start", "begin"), ("started", "begin"),
                                      ("stopped", "end"), ("release", "end"),
                                      ("reconnect", "begin"), ("attach", "begin"),
                                      ("migrate", "end"), ("prepare", "end")])
def test_other_ops_exit_0_without_parsing(env, op, subop):
    env.settings("enforce: refuse\non_error: refuse\n")
    done = env.run("dom", op, subop, "-", stdin=b"<<< not XML at all")
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")
    assert env.decisions() == []


def test_other_ops_import_neither_lxml_nor_the_policy_nor_yaml(env):
    done = env.run("dom", "stopped", "end", "-", stdin=env.xml(), python_flags=("-X", "importtime"))
    assert done.returncode == 0
    modules = {line.split("|")[-1].strip() for line in done.stderr.decode().splitlines()}
    for heavy in ("lxml", "lxml.etree", "aiohook.planner", "aiohook.policy", "yaml",
                  "aiohook.settings", "jsonschema"):
        assert heavy not in modules


def test_unknown_op_exits_0(env):
    done = env.run("dom", "frobnicate", "begin", "-", stdin=env.xml())
    assert (done.returncode, done.stdout) == (0, b"")


def test_stdin_is_read_fully_so_libvirt_never_sees_a_broken_pipe(env):
    big = env.xml() + b"<!-- " + b"x" * (8 << 20) + b" -->"  # far beyond a pipe buffer
    for args in (("dom", "started", "begin", "-"), ("dom", "prepare", "begin", "-")):
        proc = subprocess.Popen([sys.executable, HOOK, *args], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env.env)
        proc.stdin.write(big)  # raises BrokenPipeError if the hook exits before reading it all
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0


# ---------------------------------------------------------------- failures follow on_error


def test_malformed_stdin_allow(env):
    done = env.run("dom", "prepare", "begin", "-", stdin=b"<domain><name>x</na")
    assert done.returncode == 0
    err = done.stderr.decode()
    assert err.startswith("aiohook: ERROR, letting the start of dom go on unchecked "
                          "(on_error: allow): ")
    assert "malformed XML" in err and "Traceback" not in err
    assert env.decisions()[-1]["outcome"] == "error-allowed"


def test_malformed_stdin_refuse(env):
    env.settings("on_error: refuse\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=b"")
    assert done.returncode == 1
    assert done.stderr.decode().startswith("aiohook: refusing the start of dom "
                                           "(on_error: refuse): ")
    assert env.decisions()[-1]["outcome"] == "error-refused"


def test_malformed_stdin_at_restore_allow_leaves_the_xml_unchanged(env):
    done = env.run("dom", "restore", "begin", "-", stdin=b"garbage")
    assert done.returncode == 0 and done.stdout == b""


def test_invalid_rules(env):
    (env.config / "rules.yaml").write_text("version: 1\nrules: [{name: x, when: {}}]\nbogus: 1\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0
    assert f"{env.config / 'rules.yaml'}" in done.stderr.decode()
    env.settings("on_error: refuse\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "on_error: refuse" in err and str(env.config / "rules.yaml") in err


def test_missing_rules_file(env):
    env.settings("rules: nowhere.yaml\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0
    assert f"{env.config / 'nowhere.yaml'}: no such file" in done.stderr.decode()
    env.settings("rules: nowhere.yaml\non_error: refuse\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 1
    assert f"{env.config / 'nowhere.yaml'}: no such file" in done.stderr.decode()


def test_unreadable_settings_default_to_allow(env):
    (env.config / "aiohook.yaml").mkdir()
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0
    err = done.stderr.decode()
    assert "(on_error (settings unusable): allow)" in err and "is a directory" in err


def test_invalid_settings_still_honour_a_valid_on_error_line(env):
    env.settings("on_error: refuse\nenforce: sometimes\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 1
    err = done.stderr.decode()
    assert "(on_error (settings unusable): refuse)" in err
    assert f"{env.config / 'aiohook.yaml'}:2: enforce: expected one of off, warn, refuse" in err


def test_invalid_settings_without_on_error_allow(env):
    env.settings("enforce: refuse\nextra: 1\n")
    done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
    assert done.returncode == 0
    assert "unknown key 'extra'" in done.stderr.decode()


def test_a_bug_is_one_line_not_a_traceback(env, tmp_path):
    # An aiohook whose planner is broken, imported the way the hook imports it.
    fake = tmp_path / "fake"
    (fake / "aiohook").mkdir(parents=True)
    os.symlink(os.path.join(ROOT, "aiohook", "hook"), fake / "aiohook" / "hook")
    for name in ("__init__.py", "paths.py", "errors.py", "settings.py", "yamlsource.py",
                 "fsutil.py", "data", "rules.yaml", "schemas", "policy", "facts.py",
                 "classify.py", "domxml", "probe", "record.py", "jsonlite.py", "cachekey.py"):
        os.symlink(os.path.join(ROOT, "aiohook", name), fake / "aiohook" / name)
    (fake / "aiohook" / "planner.py").write_text("raise RuntimeError('planted bug')\n")
    hook = fake / "hooks" / "qemu"
    hook.parent.mkdir()
    with open(HOOK) as fh:
        hook.write_text(fh.read())
    for on_error, code in (("allow", 0), ("refuse", 1)):
        env.settings(f"on_error: {on_error}\n")
        done = subprocess.run([sys.executable, str(hook), "dom", "prepare", "begin", "-"],
                              input=env.xml(), capture_output=True, env=env.env, timeout=60,
                              check=False)
        err = done.stderr.decode()
        assert done.returncode == code, err
        assert "internal error: RuntimeError: planted bug" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- a source that never answers


@pytest.mark.skipif(os.geteuid() != 0, reason="FUSE mount needs root")
@pytest.mark.parametrize("on_error,code", [("allow", 0), ("refuse", 1)])
def test_dead_fuse_source_returns_within_the_probe_bound(env, tmp_path, on_error, code):
    from aiohook.lab.storage import HangingFuseMount, LabUnavailable

    env.settings(f"enforce: refuse\non_error: {on_error}\n")
    try:
        mount = HangingFuseMount(str(tmp_path / "fuse"))
        mount.__enter__()
    except LabUnavailable as exc:
        pytest.skip(str(exc))
    try:
        mount.freeze()
        extra = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                 f"<source file='{mount.path}'/><target dev='vdz' bus='virtio'/></disk>")
        started = time.monotonic()
        done = env.run("dom", "prepare", "begin", "-",
                       stdin=env.xml(io_native=True, extra_disks=extra), timeout=30)
        elapsed = time.monotonic() - started
    finally:
        mount.__exit__(None, None, None)
    err = done.stderr.decode()
    assert elapsed < PROBE_BUDGET_S + 3.0, elapsed  # the bound plus interpreter start
    assert done.returncode == code, err
    assert f"vdz ({mount.path}): probe timed out after {PROBE_BUDGET_S}s" in err
    entry = env.decisions()[-1]
    assert entry["unprobed"] == [f"vdz ({mount.path}): probe timed out after {PROBE_BUDGET_S}s"]
    assert entry["outcome"] == ("compliant" if on_error == "allow" else "error-refused")


# ---------------------------------------------------------------- logs


def test_decision_log_rotates_and_stays_bounded(env, monkeypatch):
    from aiohook.hook import log

    monkeypatch.setenv("AIOHOOK_LOG_DIR", str(env.logs))
    for i in range(400):
        log.record({"domain": f"d{i}", "op": "prepare", "outcome": "x" * 200},
                   max_bytes=10_000, keep=3)
    files = sorted(p.name for p in env.logs.iterdir())
    assert files == ["decisions.jsonl", "decisions.jsonl.1", "decisions.jsonl.2",
                     "decisions.jsonl.3"]
    for name in files:
        size = (env.logs / name).stat().st_size
        assert 0 < size <= 10_000
        for line in (env.logs / name).read_text().splitlines():
            json.loads(line)  # whole lines only
    last = json.loads((env.logs / "decisions.jsonl").read_text().splitlines()[-1])
    assert last["domain"] == "d399"


@pytest.mark.libvirt  # holds the host lock while it binds /dev/log
def test_syslog_identifier(env, libvirt_host):
    """With /dev/log present (bound here when missing, under the host lock that
    libvirt_host holds), lines carry the ident `aiohook`."""
    import socket

    if os.path.exists("/dev/log"):
        pytest.skip("a syslog daemon owns /dev/log here; not intercepting it")
    if os.geteuid() != 0:
        pytest.skip("binding /dev/log needs root")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("/dev/log")
    except OSError as exc:
        pytest.skip(f"cannot bind /dev/log: {exc}")
    try:
        sock.settimeout(5)
        env.settings("enforce: warn\n")
        done = env.run("dom", "prepare", "begin", "-", stdin=env.xml())
        assert done.returncode == 0
        message = ""
        while "dom: disk vda" not in message:  # skip lines of any other aiohook run
            message = sock.recv(65536).decode()
    finally:
        sock.close()
        os.unlink("/dev/log")
    assert " aiohook[" in message
    assert "dom: disk vda" in message and "aiohook apply dom" in message


def test_no_dev_log_is_silent(env):
    if os.path.exists("/dev/log"):
        pytest.skip("/dev/log exists here")
    done = env.run("dom", "frobnicate", "begin", "-")
    assert (done.returncode, done.stderr) == (0, b"")

"""Issue 14 item 5: hostile input through the hook's real entry point.

Thousands of mutated domain XMLs (from tests/fixtures/domains, plus libvirt's
own test domains when they are under /tmp/libvirt-corpus) go to the hook on
stdin for every op it knows (prepare, migrate and restore begin, started begin,
release end) and one it does not, with hostile domain names in argv: ../, a
newline, CR, NUL, terminal escapes, bidi and line-separator characters, bytes
that are not UTF-8, 4 KiB of UTF-8.

Most runs call aiohook.hook.entry.main() in a forked child (run_forked:
real fds, real os._exit, ~10-20 ms a run); a representative few hundred run the
real hooks/qemu script in a new interpreter. Each run must:
- end with a documented exit code: 0 or 1, and 0 for ops that only settle or
  are ignored;
- end within the time bound (the 2 s probe budget + 3 s), and never print a
  traceback;
- print XML that parses as a <domain> or nothing (migrate/restore), and
  nothing for every other op;
- write exactly one decision record for prepare/migrate/restore and none for
  the others, one JSON object on one line, whose domain is the argv name
  exactly: a newline in a name cannot start a second record;
- hand syslog(3) only printable one-line messages (forked runs, where the
  recorder sees them): control characters arrive escaped.

NUL: an argv element cannot hold one (execve takes C strings; subprocess
refuses it with ValueError, checked below), so libvirt can never pass one; the
forked runs still hand main() a name with a NUL, which only an in-process
caller could do.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from paths import FIXTURES, HOOK

CORPUS = "/tmp/libvirt-corpus"
SEED = int(os.environ.get("AIOHOOK_HOSTILE_SEED", "14"))
PROBE_BUDGET_S = 2.0
BOUND_S = PROBE_BUDGET_S + 3.0  # as the dead-FUSE hook test: the probe bound + a start
# mutated XMLs through main() in a forked child, and through the real hooks/qemu
FORKED_INPUTS = int(os.environ.get("AIOHOOK_HOSTILE_FORKED", "1500"))
EXEC_INPUTS = int(os.environ.get("AIOHOOK_HOSTILE_EXEC", "60"))  # each for every op
CORPUS_SAMPLE = 400  # libvirt test domains used as seeds, at most

OPS = [("prepare", "begin"), ("migrate", "begin"), ("restore", "begin"),
       ("started", "begin"), ("release", "end"), ("frobnicate", "begin")]
GATED = {"prepare", "migrate", "restore"}
FILTERS = {"migrate", "restore"}

NAMES = [
    "dom",
    "../../../../etc/passwd",
    "..",
    "/",
    "a/b/../c",
    "dom\nJan  1 00:00:00 host aiohook[1]: dom: refused",
    "dom\r\nforged",
    "\x1b[2J\x1b]0;owned\x07\x1b[31mred",
    "tab\there",
    "\u2028line\u2029para\x85nel",
    "\u202eevil-rtl",
    "\x7f\x01\x02",
    "%s%n%x%p",
    "-",
    "",
    "--help",
    "caf\u00e9-" + "\u00e9" * 2046,  # 4 KiB of UTF-8
    "\U0001f642" * 1024,  # 4 KiB of 4-byte UTF-8
    "not-utf8-\udcff\udcfe",  # what bytes 0xff 0xfe in argv decode to
    "x" * 100_000,
]
NUL_NAMES = ["dom\0evil", "\0"]  # forked runs only: argv cannot carry them


# ---------------------------------------------------------------- running the hook
#
# A forked child is the hook as libvirt runs it, minus the interpreter start: its
# fds 0/1/2 are files, main() ends it with os._exit(code), and nothing it does can
# leak into the test process. syslog is replaced in the child by a recorder, so the
# test sees every message the hook hands to syslog(3), exactly as it would be sent.

HARD_TIMEOUT_S = 30.0  # a run still going then is killed (and fails the time bound)


@dataclass
class Run:
    argv: list[str]
    stdin: bytes
    code: int | None  # None: killed (hung)
    stdout: bytes
    stderr: bytes
    seconds: float
    syslog: list[str]
    how: str  # "fork" or "exec"


def warm_up() -> None:
    """Import what the hook imports, once, so each forked child starts warm."""
    import lxml.etree  # noqa: F401

    import aiohook.hook.dispatch  # noqa: F401
    import aiohook.hook.entry  # noqa: F401
    import aiohook.hook.filter  # noqa: F401
    import aiohook.hook.log  # noqa: F401
    import aiohook.hook.prepare  # noqa: F401
    import aiohook.planner  # noqa: F401
    import aiohook.policy.loader  # noqa: F401
    import aiohook.probe.linux  # noqa: F401
    import aiohook.settings  # noqa: F401
    try:
        import aiohook.budget.gate  # noqa: F401
        import aiohook.budget.ledger  # noqa: F401
    except ImportError:
        pass


class _SyslogRecorder:
    """Stands in for the syslog module inside the child: what syslog(3) would get."""

    LOG_PID = 1
    LOG_DAEMON = 3 << 3

    def __init__(self, fd: int):
        self.fd = fd

    def openlog(self, *args, **kwargs) -> None:
        pass

    def syslog(self, priority, message=None) -> None:
        if message is None:
            priority, message = 6, priority
        # What the C module does before syslog(3): these raise there too.
        if "\0" in message:
            raise ValueError("embedded null character")
        message.encode("utf-8")
        os.write(self.fd, (json.dumps(message) + "\n").encode())


def _wait(pid: int, timeout: float) -> int | None:
    """The exit code, or None after killing a child that outlived timeout."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    deadline = time.monotonic() + timeout
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.002))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def run_forked(argv: list[str], stdin: bytes, env: dict[str, str]) -> Run:
    """aiohook.hook.entry.main(argv) in a forked child, libvirt-style fds."""
    files = [tempfile.TemporaryFile() for _ in range(4)]  # stdin, stdout, stderr, syslog
    fin, fout, ferr, flog = (f.fileno() for f in files)
    os.write(fin, stdin)
    os.lseek(fin, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            os.dup2(fin, 0)
            os.dup2(fout, 1)
            os.dup2(ferr, 2)
            sys.stdin = open(0, closefd=False)  # noqa: SIM115
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
            os.environ.update(env)
            from aiohook.hook import entry, log

            log.syslog = _SyslogRecorder(flog)
            entry.main(argv)
            os.write(2, b"test harness: main() returned instead of exiting\n")
            os._exit(98)
        except BaseException:  # noqa: BLE001 - a traceback here is a test failure
            import traceback

            os.write(2, traceback.format_exc().encode())
            os._exit(99)
    try:
        code = _wait(pid, HARD_TIMEOUT_S)
        seconds = time.monotonic() - started
        out, err, logged = (_read_all(fd) for fd in (fout, ferr, flog))
    finally:
        for f in files:
            f.close()
    messages = [json.loads(line) for line in logged.decode().splitlines()]
    return Run(argv, stdin, code, out, err, seconds, messages, "fork")


def run_exec(argv: list[str], stdin: bytes, env: dict[str, str]) -> Run:
    """The real hooks/qemu script in a new interpreter, as libvirt runs it."""
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, HOOK, *argv[1:]], input=stdin,
                              capture_output=True, env=full_env, timeout=HARD_TIMEOUT_S,
                              check=False)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, exc.stdout or b"", exc.stderr or b""
    return Run(argv, stdin, code, out, err, time.monotonic() - started, [], "exec")


# ---------------------------------------------------------------- the mutator


class Mutator:
    """Byte-level and structure-aware mutations of domain XML, seeded."""

    def __init__(self, rng: random.Random, files: dict[str, str]):
        self.rng = rng
        self.files = files
        self.paths = [files["prealloc"], files["sparse"], files["fifo"], files["dir"],
                      files["chr"], files["link-null"], "/dev/null", "/dev/zero", "/dev/full",
                      "/dev/stdin", "/proc/self/fd/0", "/proc/self/mem", "/nonexistent/x.img",
                      "../../../etc/shadow", "", " ", "/" + "p" * 4095, files["prealloc"] + "\n",
                      "/tmp/\x1b[2J.img", "file:///etc/passwd"]
        self.values = ["", " ", "native", "threads", "io_uring", "NATIVE", "none", "directsync",
                       "writeback", "unsafe", "default", "qcow2", "raw", "vmdk", "block", "file",
                       "network", "volume", "dir", "nvme", "vhostuser", "cdrom", "floppy", "lun",
                       "-1", "0", "18446744073709551616", "1e999", "nan", "\u00e9" * 2048,
                       "a\nb", "\x1b]0;t\x07", "&#0;", "&#x1b;", "&lt;&amp;", "%s%n",
                       "\u202e", "\ud800", "rbd", "iscsi", "gluster", "vda", "hdc", "sda", "vdz",
                       "virtio", "scsi", "sata", "ide", "usb", "yes", "on"]

    def mutate(self, data: bytes) -> bytes:
        for _ in range(self.rng.choice((1, 1, 2, 3))):
            data = self.rng.choice(self.OPS)(self, data)
        return data

    # -- helpers
    def _pick_span(self, data: bytes) -> tuple[int, int]:
        if not data:
            return 0, 0
        a = self.rng.randrange(len(data))
        return a, min(len(data), a + self.rng.randrange(1, 200))

    def _text(self, value: str, raw: bool = False) -> bytes:
        if not raw:
            value = (value.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
                     .replace('"', "&quot;"))
        return value.encode("utf-8", "surrogatepass")

    # -- byte level
    def flip(self, data):
        b = bytearray(data)
        for _ in range(self.rng.randrange(1, 9)):
            if b:
                b[self.rng.randrange(len(b))] = self.rng.randrange(256)
        return bytes(b)

    def delete(self, data):
        a, z = self._pick_span(data)
        return data[:a] + data[z:]

    def duplicate(self, data):
        a, z = self._pick_span(data)
        at = self.rng.randrange(len(data) + 1)
        return data[:at] + data[a:z] + data[at:]

    def truncate(self, data):
        return data[: self.rng.randrange(len(data) + 1)]

    def inject(self, data):
        token = self.rng.choice([b"<", b">", b"&", b"]]>", b"<!--", b"-->", b"\x00", b"\xff\xfe",
                                 b"&#0;", b"<![CDATA[x]]>", b"<?pi x?>", b"\r", b"&xxe;",
                                 b"</devices>", b"<disk>", b"</domain>", b"<domain>",
                                 b"\xc3\x28", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x1b[2J"])
        at = self.rng.randrange(len(data) + 1)
        return data[:at] + token + data[at:]

    # -- structure
    def attribute(self, data):
        spans = [(m.start(1), m.end(1)) for m in _ATTR.finditer(data)]
        if not spans:
            return self.inject(data)
        a, z = self.rng.choice(spans)
        raw = self.rng.random() < 0.2
        return data[:a] + self._text(self.rng.choice(self.values + self.paths), raw) + data[z:]

    def text(self, data):
        spans = [(m.start(1), m.end(1)) for m in _TEXT.finditer(data)]
        if not spans:
            return self.inject(data)
        a, z = self.rng.choice(spans)
        return data[:a] + self._text(self.rng.choice(self.values)) + data[z:]

    def source(self, data):
        path = self._text(self.rng.choice(self.paths), raw=self.rng.random() < 0.1)
        new, count = _SOURCE.subn(lambda m: m.group(1) + path + m.group(3), data,
                                  count=self.rng.randrange(0, 4))
        if count:
            return new
        local = (b"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                 b"<source file='" + path + b"'/><target dev='vdq' bus='virtio'/></disk>")
        return data.replace(b"</devices>", local + b"</devices>", 1)

    def driver(self, data):
        io = self.rng.choice(["native", "threads", "io_uring", "bogus", ""])
        cache = self.rng.choice(["none", "directsync", "writeback", "unsafe", "bogus"])
        return _DRIVER.sub(lambda m: m.group(0)[:-2].rstrip(b"/").rstrip() +
                           f" io='{io}' cache='{cache}'/>".encode(), data, count=2)

    def doctype(self, data):
        evil = self.rng.choice([
            b'<!DOCTYPE domain [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
            b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
            b'<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
            b'<!DOCTYPE domain [<!ENTITY % p SYSTEM "file://' + self.files["fifo"].encode() +
            b'"> %p;]>',
            b'<!DOCTYPE domain SYSTEM "http://127.0.0.1:9/x.dtd">',
        ])
        body = data.split(b"?>", 1)[1] if data.startswith(b"<?xml") else data
        body = body.replace(b"<name>", b"<name>&x;&c;", 1)
        return evil + body

    def nesting(self, data):
        depth = self.rng.choice([300, 3000, 300_000])
        return data.replace(b"<devices>", b"<devices>" + b"<a>" * depth + b"</a>" * depth, 1)

    def many_disks(self, data):
        disk = (b"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                b"<source file='" + self.rng.choice([self.files["prealloc"],
                                                      self.files["sparse"]]).encode() +
                b"'/><target dev='vdX' bus='virtio'/></disk>")
        disks = b"".join(disk.replace(b"vdX", f"vd{i}".encode())
                         for i in range(self.rng.choice([64, 256])))
        return data.replace(b"</devices>", disks + b"</devices>", 1)

    def encoding(self, data):
        how = self.rng.randrange(4)
        if how == 0:
            return b"\xef\xbb\xbf" + data
        if how == 1:
            body = data.split(b"?>", 1)[1] if data.startswith(b"<?xml") else data
            text = ('<?xml version="1.0" encoding="UTF-16"?>' +
                    body.decode("utf-8", "replace"))
            return text.encode("utf-16")
        if how == 2:
            return b"<?xml version='1.0' encoding='ISO-8859-1'?>\n" + data + b"\xe9\xff"
        return b"<?xml version='1.0' encoding='x-bogus-42'?>\n" + data

    def metadata(self, data):
        target = self.rng.choice(["vda", "vdb", "hdc", "", "../x", "vda\n"])
        io = self.rng.choice(["native", "threads", "io_uring", "bogus"])
        policy = self.rng.choice([
            f"<aiohook:disk target='{target}' io='{io}'/>", "<aiohook:skip/>",
            f"<aiohook:disk target='{target}' io='{io}'/><aiohook:disk target='{target}'/>",
            "<aiohook:unknown/>"])
        meta = (f"<metadata><aiohook:policy xmlns:aiohook='http://aiohook.org/xmlns/policy/1'>"
                f"{policy}</aiohook:policy></metadata>").encode()
        return data.replace(b"<devices>", meta + b"<devices>", 1)

    def name(self, data):
        value = self._text(self.rng.choice(NAMES[:-1]).replace("\udcff", "").replace("\udcfe", ""))
        return _NAME.sub(lambda m: m.group(1) + value + m.group(3), data, count=1)

    def huge(self, data):
        size = self.rng.choice([(10 << 20) + 1, (33 << 20)])  # the XML and the stdin limits
        return data.replace(b"<devices>", b"<devices><!--" + b"x" * size + b"-->", 1)

    def garbage(self, data):
        return self.rng.choice([b"", b" \n\t", bytes(self.rng.randrange(256) for _ in range(512)),
                                b"<domain/>", b"<domain>", b"<pool/>", b"\x00" * 64])

    OPS = [flip, delete, duplicate, truncate, inject, inject, attribute, attribute, attribute,
           text, source, source, source, driver, driver, doctype, nesting, many_disks, encoding,
           metadata, name, garbage]
    RARE = [huge]


_ATTR = re.compile(rb"""=\s*['"]([^'"<>]*)['"]""")
_TEXT = re.compile(rb">([^<>]{1,200})</")
_SOURCE = re.compile(rb"""(<source[^>]*?\b(?:file|dev|dir)=['"])([^'"]*)(['"])""")
_DRIVER = re.compile(rb"<driver\b[^>]*/>")
_NAME = re.compile(rb"(<name>)([^<]*)(</name>)")


# ---------------------------------------------------------------- fixtures


def _seeds(rng: random.Random) -> list[tuple[str, bytes]]:
    seeds = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.xml"))):
        with open(path, "rb") as fh:
            seeds.append((os.path.basename(path), fh.read()))
    corpus = sorted(glob.glob(os.path.join(CORPUS, "**", "*.xml"), recursive=True))
    rng.shuffle(corpus)
    taken = 0
    for path in corpus:
        if taken >= CORPUS_SAMPLE:
            break
        try:
            with open(path, "rb") as fh:
                data = fh.read(1 << 20)
        except OSError:
            continue
        if b"<domain" in data[:4096]:
            seeds.append((os.path.relpath(path, CORPUS), data))
            taken += 1
    return seeds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    files = {}
    prealloc = root / "prealloc.raw"
    with open(prealloc, "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, 1 << 20)
    sparse = root / "sparse.raw"
    with open(sparse, "wb") as fh:
        fh.truncate(1 << 20)
    os.mkfifo(root / "fifo")
    (root / "dir").mkdir()
    try:
        os.mknod(root / "chr", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except OSError:
        os.symlink("/dev/null", root / "chr")
    os.symlink("/dev/null", root / "link-null")
    for name in ("prealloc", "sparse", "fifo", "dir", "chr", "link-null"):
        files[name] = str(root / (name + (".raw" if name in ("prealloc", "sparse") else "")))
    configs = {}
    for variant, text in (("packaged", None),
                          ("strict", "enforce: refuse\non_error: refuse\n"
                                     "on_budget_exceeded: degrade\n"),
                          ("off", "enforce: off\non_budget_exceeded: warn\n")):
        directory = root / f"etc-{variant}"
        directory.mkdir()
        if text:
            (directory / "aiohook.yaml").write_text(text)
        configs[variant] = str(directory)
    local = f"""<domain type='kvm'>
  <name>local</name>
  <memory unit='MiB'>64</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{files["prealloc"]}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none' io='native'/>
      <source file='{files["sparse"]}'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
  </devices>
</domain>
""".encode()
    return {"root": root, "files": files, "configs": configs, "local": local}


def _env(world, variant: str, run_dir) -> dict[str, str]:
    return {
        "AIOHOOK_CONFIG_DIR": world["configs"][variant],
        "AIOHOOK_STATE_DIR": str(world["root"] / "state" / run_dir.split("/")[0]),
        "AIOHOOK_LOG_DIR": str(world["root"] / "logs" / run_dir),
        "AIOHOOK_CACHE_DIR": str(world["root"] / "cache"),
    }


def _inputs(world, count: int, rng: random.Random) -> list[tuple[str, bytes]]:
    seeds = _seeds(rng) + [("local", world["local"])] * 8
    mutator = Mutator(rng, world["files"])
    out = []
    for i in range(count):
        label, data = rng.choice(seeds)
        if i % 500 == 499:
            out.append((label + "+huge", Mutator.RARE[0](mutator, data)))
        elif i % 50 == 0:
            out.append((label + "+unmutated", data))
        else:
            out.append((label + "+mutated", mutator.mutate(data)))
    return out


# ---------------------------------------------------------------- the checks


OUTCOMES: Counter = Counter()  # decision outcomes seen, for the report


def _violations(run: Run, op: str, log_dir: str) -> list[str]:
    bad = []
    if run.code is None:
        return [f"hung: killed after {HARD_TIMEOUT_S}s"]
    if run.code not in (0, 1):
        bad.append(f"exit code {run.code}")
    if op not in GATED and run.code != 0:
        bad.append(f"exit code {run.code} for an op that never gates")
    if run.seconds > BOUND_S:
        bad.append(f"took {run.seconds:.2f}s (bound {BOUND_S}s)")
    if b"Traceback" in run.stderr or b'File "' in run.stderr:
        bad.append("traceback on stderr")
    if op in FILTERS:
        if run.stdout and not _is_domain(run.stdout):
            bad.append("printed something that is not a domain XML")
    elif run.stdout:
        bad.append(f"printed {len(run.stdout)} bytes on stdout at {op}")
    for message in run.syslog:
        if not message.isprintable() or "\n" in message:
            bad.append(f"unescaped control character to syslog: {message[:120]!r}")
            break
    # The decision log: one JSON object a line, one record a gated run, the name exact.
    path = os.path.join(log_dir, "decisions.jsonl")
    lines = []
    if os.path.exists(path):
        with open(path, "rb") as fh:
            lines = fh.read().split(b"\n")
        if lines[-1] != b"":
            bad.append("decision log does not end with a newline")
        lines = lines[:-1]
    expected = 1 if op in GATED else 0
    if len(lines) != expected:
        bad.append(f"{len(lines)} decision records for one {op} run (expected {expected})")
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            bad.append(f"decision log line is not JSON: {line[:120]!r}")
            continue
        OUTCOMES[record.get("outcome")] += 1
        if record.get("domain") != run.argv[1]:
            bad.append(f"decision record names {record.get('domain')!r:.80}, not the argv name")
    return bad


def _is_domain(data: bytes) -> bool:
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    try:
        return etree.fromstring(data, parser).tag == "domain"
    except etree.XMLSyntaxError:
        return False


def _report(failures: list, runs: list[Run], started: float, kind: str) -> str:
    codes = Counter(r.code for r in runs)
    slowest = max((r.seconds for r in runs), default=0.0)
    lines = [f"{kind}: {len(runs)} runs in {time.monotonic() - started:.1f}s, exit codes "
             f"{dict(codes)}, slowest {slowest:.2f}s, seed {SEED}; decision outcomes so far "
             f"{dict(OUTCOMES)}"]
    for label, argv, stdin_file, problems in failures[:10]:
        lines.append(f"  {label} argv={[a[:40] for a in argv[1:]]!r} input={stdin_file}: "
                     f"{'; '.join(problems)}")
    return "\n".join(lines)


def _keep(world, index: int, data: bytes) -> str:
    path = world["root"] / "failed" / f"{index}.xml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


# ---------------------------------------------------------------- the tests


def test_argv_cannot_carry_a_nul():
    """What libvirt cannot pass either: execve() takes C strings."""
    with pytest.raises(ValueError, match="null"):
        subprocess.run([sys.executable, "-c", "pass", "dom\0evil"], check=False)


def test_mutated_xml_and_hostile_names_through_main_in_a_forked_child(world):
    warm_up()
    rng = random.Random(SEED)
    names = NAMES + NUL_NAMES
    variants = list(world["configs"])
    runs, failures = [], []
    started = time.monotonic()
    for i, (label, data) in enumerate(_inputs(world, FORKED_INPUTS, rng)):
        # Every input goes to prepare and to one filter op; every third also to
        # the three ops that must not look at it.
        ops = [OPS[0], OPS[1 + i % 2]] + (OPS[3:] if i % 3 == 0 else [])
        for j, (op, subop) in enumerate(ops):
            name = names[(i + j) % len(names)] if rng.random() < 0.5 else "dom"
            run_dir = f"{i // 100}/{i}-{j}"
            env = _env(world, variants[i % len(variants)], run_dir)
            run = run_forked(["qemu", name, op, subop, "-"], data, env)
            runs.append(run)
            problems = _violations(run, op, env["AIOHOOK_LOG_DIR"])
            if problems:
                failures.append((label, run.argv, _keep(world, len(runs), data), problems))
    report = _report(failures, runs, started, "forked main()")
    print(report)
    assert not failures, report


def test_mutated_xml_and_hostile_names_through_the_real_hook_script(world):
    rng = random.Random(SEED + 1)
    variants = list(world["configs"])
    runs, failures = [], []
    started = time.monotonic()
    inputs = _inputs(world, EXEC_INPUTS, rng)
    for i, (label, data) in enumerate(inputs):
        for j, (op, subop) in enumerate(OPS):
            name = NAMES[(i * len(OPS) + j) % len(NAMES)]
            run_dir = f"x{i // 20}/{i}-{j}"
            env = _env(world, variants[i % len(variants)], run_dir)
            run = run_exec(["qemu", name, op, subop, "-"], data, env)
            runs.append(run)
            problems = _violations(run, op, env["AIOHOOK_LOG_DIR"])
            if problems:
                failures.append((label, run.argv, _keep(world, 100_000 + len(runs), data),
                                 problems))
    report = _report(failures, runs, started, "hooks/qemu")
    print(report)
    assert not failures, report


def test_a_newline_in_the_name_never_starts_a_syslog_record(world):
    """Every op that logs, with every hostile name: what reaches syslog(3) is one
    printable line that still shows the name (escaped), never a second record."""
    from aiohook.hook.log import escape

    warm_up()
    env = _env(world, "packaged", "syslog/0")
    for name in NAMES + NUL_NAMES:
        for op, subop in (("frobnicate", "begin"), ("prepare", "begin"), ("restore", "begin")):
            data = world["local"] if op != "frobnicate" else b""
            run = run_forked(["qemu", name, op, subop, "-"], data, env)
            # prepare may be refused by the AIO budget gate on a busy host (real aio-nr)
            assert run.code == 0 or (op == "prepare" and run.code == 1), (run.code, run.stderr)
            assert run.syslog, f"{op}: nothing reached syslog"
            for message in run.syslog:
                assert message.isprintable(), repr(message)
                assert "\n" not in message and "\r" not in message
                message.encode("utf-8")  # strict: no lone surrogates
            if op == "frobnicate":
                [message] = run.syslog
                assert message.startswith(escape(name) + ": unknown hook op")

"""What the installed libvirt hook costs, against the interpreter it really runs (issue 11).

A benchmark, not a test. It installs aiohook the way a host gets it, a plain
(non-editable) copy of the package with its bytecode compiled, into a scratch
target dir, then installs the hook from that copy with `aiohook install` into
a scratch hooks dir (libvirtd and /etc/libvirt are not touched). The launcher
runs `PYTHON -I -S` with an explicit sys.path, so neither the development
venv's editable .pth finder (~25 ms per start) nor site is ever paid by the
hook: the honest baseline is `PYTHON -I -S -c pass`, the same interpreter with
the same flags. `PYTHON -c pass` (with site, and this venv's .pth files) is
shown next to it, and every figure is given against both.

Domains with 16 and 256 disks on real files (even disks preallocated raw with
io=native cache=none, odd disks sparse raw with io unset: the default rules
want io_uring there where the host has it, so prepare warns and the filters
rewrite; the AIO budget gate books the native disks for real). Each round
times these, in a new random order every round (what ran just before a
process changes its start-up time by up to 15 % here: a QEMU that just freed
its memory, a 256-disk probe), the baseline three times a round:

  - `PYTHON -I -S -c pass` and `PYTHON -c pass`;
  - one VM lifecycle of the 16-disk domain, call by call, in libvirt's order:
    prepare begin, start begin, started begin, stopped end, release end
    (the ledger then holds the booking from prepare to stopped, as it would);
  - prepare begin with 256 disks (and an untimed release end);
  - migrate begin and restore begin (the XML filter) with 16 disks;
  - a bare QEMU start with the same 16 disks: `qemu-system-x86_64 -machine
    pc,accel=tcg -nodefaults -display none -S` with 16 virtio-blk drives on the
    same files (even: cache=none aio=native; odd: defaults), timed from spawn
    to its QMP monitor answering `qmp_capabilities` (what libvirt waits for
    before `started`); it is then told to quit. Not a libvirt start: no
    libvirtd, no KVM, no guest boot.

The budget ledger is on tmpfs (/dev/shm, as /run is on a libvirt host); the
decision log and the compiled caches are under the scratch dir (/tmp). A round
waits while another process holds so much of fs.aio-max-nr that the domain
would not fit (the suite's budget tests do that): the gate's refusal path
would then be measured instead.

    .venv/bin/python benchmarks/hook_cost.py [--runs 21] [--json] [--source DIR] [--python P]
    .venv/bin/python benchmarks/hook_cost.py --profile    # import profile of each op

--source DIR benchmarks the aiohook package of another checkout (e.g. an
older commit, exported with `git archive`) with the same harness.

Targets (issue 11), medians as a ratio to `PYTHON -I -S -c pass` of the same
run: started/stopped/release/start <= 1.2x; prepare 16 disks <= 2.5x; prepare
256 disks <= 5x; migrate/restore begin 16 disks <= 3x; the lifecycle (5 calls)
<= 60 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISK_BYTES = 1 << 20
QEMU = "/usr/bin/qemu-system-x86_64"
LIFECYCLE = [("prepare", "begin"), ("start", "begin"), ("started", "begin"),
             ("stopped", "end"), ("release", "end")]
TARGETS = {  # case -> (ratio to -I -S pass, or ms for the lifecycle)
    "started begin": 1.2, "stopped end": 1.2, "release end": 1.2, "start begin": 1.2,
    "prepare begin, 16 disks": 2.5, "prepare begin, 256 disks": 5.0,
    "migrate begin, 16 disks": 3.0, "restore begin, 16 disks": 3.0,
}
LIFECYCLE_TARGET_MS = 60.0
AIO_ROOM = 4096  # events free before a round runs (a domain here books 1024)


def domain_xml(name: str, files: list[str]) -> bytes:
    disks = []
    for i, path in enumerate(files):
        driver = ("<driver name='qemu' type='raw' cache='none' io='native'/>" if i % 2 == 0
                  else "<driver name='qemu' type='raw'/>")
        disks.append(f"<disk type='file' device='disk'>{driver}<source file='{path}'/>"
                     f"<target dev='vd{_letters(i)}' bus='virtio'/></disk>")
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>00000000-0000-4000-8000-{len(files):012d}</uuid>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>{QEMU}</emulator>
    {chr(10).join('    ' + d for d in disks)}
  </devices>
</domain>
""".encode()


def _letters(i: int) -> str:
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(97 + r) + out
    return out


def make_files(workdir: str, count: int) -> list[str]:
    files = []
    for i in range(count):
        path = os.path.join(workdir, f"disk{i:03d}.raw")
        with open(path, "wb") as fh:
            if i % 2 == 0:
                os.posix_fallocate(fh.fileno(), 0, DISK_BYTES)
            else:
                fh.truncate(DISK_BYTES)
        files.append(path)
    return files


# ---------------------------------------------------------------- installing


def install_copy(source: str, target: str, python: str) -> str:
    """aiohook as a host gets it: the package copied (no .pth, no finder) and
    byte-compiled by the interpreter that will run it, as pip installs a wheel."""
    package = os.path.join(source, "aiohook")
    if not os.path.isfile(os.path.join(package, "__init__.py")):
        raise SystemExit(f"no aiohook package in {source}")
    shutil.copytree(package, os.path.join(target, "aiohook"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([python, "-I", "-m", "compileall", "-q", target], check=True)
    return os.path.join(target, "aiohook")


def site_paths(python: str) -> list[str]:
    """The directories `python` adds through site (its site-packages): lxml, yaml..."""
    out = subprocess.run([python, "-I", "-c", "import sys, json; print(json.dumps(sys.path))"],
                         capture_output=True, text=True, check=True, cwd="/").stdout
    bare = subprocess.run([python, "-I", "-S", "-c", "import sys, json; print(json.dumps(sys.path))"],
                          capture_output=True, text=True, check=True, cwd="/").stdout
    return [p for p in json.loads(out) if p not in json.loads(bare) and os.path.isdir(p)]


def install_hook(python: str, target: str, dirs: dict, env: dict) -> str:
    """`aiohook install` run from the copy in `target`; returns the launcher."""
    code = ("import sys; sys.path[:0] = " + repr([target] + site_paths(python)) +
            "; from aiohook.cli import main; sys.exit(main(sys.argv[1:]))")
    subprocess.run([python, "-I", "-S", "-c", code, "install", "--hooks-dir", dirs["hooks"],
                    "--config-dir", dirs["config"]], env=env, check=True, capture_output=True)
    hook = os.path.join(dirs["hooks"], "qemu.d", "50-aiohook")
    with open(hook) as fh:
        head = fh.read()
    if f"sys.path[:0] = [{target!r}" not in head or not head.startswith(f"#!{python} -IS"):
        raise SystemExit(f"{hook} does not run the copy in {target} with {python} -IS:\n{head}")
    return hook


# ---------------------------------------------------------------- timing


class Failed(Exception):
    pass


def timed(argv: list[str], stdin: bytes, env: dict, ok=(0,)) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds user+sys, exit code) of one run of argv."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in ok:
        raise Failed(f"{' '.join(argv[1:4])} failed ({done.returncode}): "
                     f"{done.stderr.decode(errors='replace')[-600:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu, done.returncode


def qemu_argv(files: list[str], qmp: str) -> list[str]:
    argv = [QEMU, "-machine", "pc,accel=tcg", "-nodefaults", "-display", "none", "-S",
            "-qmp", f"unix:{qmp},server=on,wait=off"]
    for i, path in enumerate(files):
        opts = "cache=none,aio=native" if i % 2 == 0 else "cache=writeback"
        argv += ["-drive", f"file={path},format=raw,if=none,id=d{i},{opts}",
                 "-device", f"virtio-blk-pci,drive=d{i}"]
    return argv


def qemu_start(files: list[str], workdir: str) -> tuple[float, float]:
    """(seconds from spawn to QMP answering qmp_capabilities, seconds to its exit)."""
    qmp = os.path.join(workdir, "qmp.sock")
    if os.path.exists(qmp):
        os.unlink(qmp)
    start = time.perf_counter()
    proc = subprocess.Popen(qemu_argv(files, qmp), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        while True:
            try:
                sock.connect(qmp)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if proc.poll() is not None:
                    raise Failed("qemu exited: " + proc.stderr.read().decode()[-400:]) from None
                time.sleep(0.0005)
        reader = sock.makefile("rb")
        reader.readline()  # the greeting
        sock.sendall(b'{"execute": "qmp_capabilities"}\n')
        if b'"return"' not in reader.readline():
            raise Failed("QMP did not accept qmp_capabilities")
        ready = time.perf_counter() - start
        sock.sendall(b'{"execute": "quit"}\n')
        proc.wait(30)
        return ready, time.perf_counter() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def aio_room() -> int:
    with open("/proc/sys/fs/aio-max-nr") as a, open("/proc/sys/fs/aio-nr") as b:
        return int(a.read()) - int(b.read())


# ---------------------------------------------------------------- the run


def setup(work: str, source: str, python: str) -> dict:
    dirs = {k: os.path.join(work, k) for k in ("hooks", "config", "log", "cache", "site")}
    for d in dirs.values():
        os.makedirs(d)
    dirs["state"] = tempfile.mkdtemp(prefix="aiohook-hookcost-state-", dir="/dev/shm") \
        if os.path.isdir("/dev/shm") else os.path.join(work, "state")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C",
           "AIOHOOK_LOG_DIR": dirs["log"], "AIOHOOK_CACHE_DIR": dirs["cache"],
           "AIOHOOK_STATE_DIR": dirs["state"]}
    package = install_copy(source, dirs["site"], python)
    hook = install_hook(python, dirs["site"], dirs, env)
    files = make_files(work, 256)
    return {"python": python, "dirs": dirs, "hook": hook, "files": files, "package": package,
            "xml": {n: domain_xml(f"bench-{n}", files[:n]) for n in (16, 256)}}


def run(args, ctx: dict) -> dict:
    python, hook, xml = ctx["python"], ctx["hook"], ctx["xml"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # libvirt passes a minimal environment
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}

    def add(name: str, sample: tuple) -> None:
        wall.setdefault(name, []).append(sample[0])
        cpu.setdefault(name, []).append(sample[1])

    def hook_call(op: str, subop: str, n: int = 16) -> tuple:
        return timed([hook, f"bench-{n}", op, subop, "-"], xml[n], env)

    def lifecycle() -> list:
        samples, life = [], []
        for op, subop in LIFECYCLE:
            sample = hook_call(op, subop)
            life.append(sample)
            samples.append((f"{op} {subop}" + (", 16 disks" if op == "prepare" else ""), sample))
        samples.append(("lifecycle (5 calls), 16 disks",
                        (sum(s[0] for s in life), sum(s[1] for s in life), 0)))
        return samples

    def prepare_256() -> list:
        sample = hook_call("prepare", "begin", 256)
        timed([hook, "bench-256", "release", "end", "-"], xml[256], env)
        return [("prepare begin, 256 disks", sample)]

    def qemu() -> list:
        ready, total = qemu_start(ctx["files"][:16], ctx["dirs"]["log"])
        return [("QEMU start to QMP ready, 16 disks", (ready, 0.0, 0)),
                ("QEMU start and quit, 16 disks", (total, 0.0, 0))]

    base = [python, "-I", "-S", "-c", "pass"]
    units = [  # each round runs these in a new random order: what runs before a
        # process (a QEMU that just freed its memory, a 256-disk probe...) changes
        # its start-up time, so no case may always follow the same one. The
        # baseline is sampled three times a round, at three random places.
        lambda: [("python -I -S -c pass", timed(base, b"", env))],
        lambda: [("python -I -S -c pass", timed(base, b"", env))],
        lambda: [("python -I -S -c pass", timed(base, b"", env))],
        lambda: [("python -c pass", timed([python, "-c", "pass"], b"", env))],
        lifecycle,
        prepare_256,
        lambda: [("migrate begin, 16 disks", hook_call("migrate", "begin"))],
        lambda: [("restore begin, 16 disks", hook_call("restore", "begin"))],
    ]
    if not args.no_qemu:
        units.append(qemu)
    shuffle = random.Random(args.seed).shuffle

    def round_(record: bool) -> None:
        order = list(units)
        shuffle(order)
        for unit in order:
            for name, sample in unit():
                if record:
                    add(name, sample)

    waited = 0.0
    for i in range(args.runs + 1):  # the first round warms caches (compiled rules, page cache)
        while aio_room() < AIO_ROOM:
            time.sleep(0.5)
            waited += 0.5
        round_(record=i > 0)

    with open(os.path.join(ctx["dirs"]["log"], "decisions.jsonl")) as fh:
        outcomes = sorted({json.loads(line)["outcome"] for line in fh})
    base = statistics.median(wall["python -I -S -c pass"])
    site = statistics.median(wall["python -c pass"])
    rows = []
    order = ["python -I -S -c pass", "python -c pass", "start begin", "started begin",
             "stopped end", "release end", "prepare begin, 16 disks",
             "lifecycle (5 calls), 16 disks", "prepare begin, 256 disks",
             "migrate begin, 16 disks", "restore begin, 16 disks",
             "QEMU start to QMP ready, 16 disks", "QEMU start and quit, 16 disks"]
    for name, values in sorted(wall.items(), key=lambda kv: order.index(kv[0])):
        med = statistics.median(values)
        target = TARGETS.get(name)
        ratio = med / base
        row = {"case": name, "median_ms": round(med * 1000, 1),
               "p10_ms": round(sorted(values)[len(values) // 10] * 1000, 1),
               "p90_ms": round(sorted(values)[len(values) * 9 // 10] * 1000, 1),
               "ratio_IS": round(ratio, 2), "ratio_site": round(med / site, 2),
               "cpu_median_ms": round(statistics.median(cpu[name]) * 1000, 1)}
        if target is not None:
            row.update(target=f"<= {target}x", met=ratio <= target)
        elif name.startswith("lifecycle"):
            row.update(target=f"<= {LIFECYCLE_TARGET_MS:.0f} ms",
                       met=med * 1000 <= LIFECYCLE_TARGET_MS)
        rows.append(row)
    return {"runs": args.runs, "python": python, "baseline": f"{python} -I -S -c pass",
            "package": ctx["package"], "source": args.source, "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "aio_wait_s": waited,
            "state_dir": ctx["dirs"]["state"], "decision_outcomes": outcomes, "results": rows}


def report(result: dict) -> None:
    print(f"{result['runs']} interleaved rounds; hook: {result['package']} run by "
          f"{result['python']} -IS; load average after: "
          f"{', '.join(f'{x:.1f}' for x in result['load_average'])}; "
          f"decision outcomes: {', '.join(result['decision_outcomes'])}")
    if result["aio_wait_s"]:
        print(f"waited {result['aio_wait_s']:.0f} s for fs.aio-max-nr room (another process held it)")
    print("ratio -IS: to `python -I -S -c pass` (the launcher's interpreter and flags, the "
          "baseline); ratio site: to `python -c pass`")
    print(f"{'case':36} {'median':>8} {'p10':>7} {'p90':>7} {'ratio -IS':>9} {'ratio site':>10} "
          f"{'cpu ms':>7}  target")
    for r in result["results"]:
        verdict = ""
        if "target" in r:
            verdict = f"{r['target']} {'met' if r['met'] else 'MISSED'}"
        print(f"{r['case']:36} {r['median_ms']:>8} {r['p10_ms']:>7} {r['p90_ms']:>7} "
              f"{r['ratio_IS']:>8}x {r['ratio_site']:>9}x {r['cpu_median_ms']:>7}  {verdict}")
    life = next(r for r in result["results"] if r["case"].startswith("lifecycle"))
    qemu = next((r for r in result["results"] if r["case"].startswith("QEMU start to")), None)
    if qemu:
        print(f"the hook's 5 calls: {life['median_ms']} ms against {qemu['median_ms']} ms for a "
              f"bare QEMU start to QMP ready ({life['median_ms'] / qemu['median_ms']:.0%})")


def profile(ctx: dict) -> None:
    """python -X importtime of each op through the installed launcher, in the
    lifecycle's order (so started and stopped find the domain booked): how many
    modules beyond the bare interpreter's, their self time, the ten costliest."""
    python, hook, xml = ctx["python"], ctx["hook"], ctx["xml"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    base = _importtime([python, "-I", "-S", "-X", "importtime", "-c", "pass"], b"", env)
    print(f"python -I -S -c pass imports {len(base)} modules ({sum(base.values()) / 1000:.1f} ms "
          "self time under -X importtime, which inflates every figure)")
    for op, subop in LIFECYCLE + [("migrate", "begin"), ("restore", "begin")]:
        times = _importtime([python, "-IS", "-X", "importtime", hook, "bench-16", op, subop, "-"],
                            xml[16], env)
        extra = {m: t for m, t in times.items() if m not in base}
        top = sorted(extra.items(), key=lambda kv: -kv[1])[:10]
        print(f"\n{op} {subop}: {len(extra)} modules beyond the bare interpreter's, "
              f"{sum(extra.values()) / 1000:.1f} ms self time")
        print("  " + ", ".join(f"{m} {t / 1000:.2f}" for m, t in top))


def _importtime(argv: list[str], stdin: bytes, env: dict) -> dict[str, int]:
    """module -> self import time (us) from -X importtime."""
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, check=False)
    out = {}
    for line in done.stderr.decode(errors="replace").splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line.split("|")
        out[parts[2].strip()] = int(parts[0].split(":")[1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--source", default=ROOT,
                        help="the checkout whose aiohook package is measured (default: this one)")
    parser.add_argument("--no-qemu", action="store_true", help="skip the bare QEMU start")
    parser.add_argument("--seed", type=int, default=11, help="the rounds' random order")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter the hook is installed for (default: this one; "
                             "it needs lxml, yaml and jsonschema, e.g. /usr/bin/python3 with "
                             "Debian's python3-lxml...)")
    parser.add_argument("--profile", action="store_true",
                        help="print each op's import profile instead of timing")
    args = parser.parse_args()
    if not args.no_qemu and not os.access(QEMU, os.X_OK):
        args.no_qemu = True
        print(f"{QEMU} missing: no QEMU start time", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="aiohook-hookcost-") as work:
        ctx = setup(work, os.path.abspath(args.source), args.python)
        try:
            if args.profile:
                for n in (16, 256):  # warm: compiled caches
                    timed([ctx["hook"], f"bench-{n}", "prepare", "begin", "-"], ctx["xml"][n],
                          {"PATH": "/usr/bin:/bin"})
                    timed([ctx["hook"], f"bench-{n}", "release", "end", "-"], ctx["xml"][n],
                          {"PATH": "/usr/bin:/bin"})
                profile(ctx)
                return 0
            result = run(args, ctx)
        finally:
            if ctx["dirs"]["state"].startswith("/dev/shm/"):
                shutil.rmtree(ctx["dirs"]["state"], ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)
    return 0 if all(r.get("met", True) for r in result["results"]) else 1


if __name__ == "__main__":
    sys.exit(main())

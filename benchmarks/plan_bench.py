#!/usr/bin/env python3
"""Benchmark `aiohook plan` on a 16-disk and a 1000-disk domain (recorded facts).

Not a test: it prints numbers. Run from the repository root:

    .venv/bin/python benchmarks/plan_bench.py [--runs N]

For each domain it reports
- in-process: parse + probe (RecordedProbe) + classify + decide + JSON render,
  median of N runs, in ms and disks/s;
- CLI: `python -m aiohook plan --facts F --format json X` as a fresh process,
  median of N runs, and its ratio to `python -c pass` measured in the same run
  (interpreter start-up is the floor any hook invocation pays).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

KINDS = [  # (disk XML, source path, recorded facts) cycled over the disks
    ("block", "/dev/vg0/lv{i}", {"kind": "block", "transport": "lvm", "o_direct": True}),
    ("file", "/var/lib/libvirt/images/pre{i}.raw",
     {"kind": "file", "fs": "xfs", "o_direct": True, "allocated": True}),
    ("file", "/var/lib/libvirt/images/sparse{i}.qcow2",
     {"kind": "file", "fs": "ext4", "o_direct": True, "allocated": False}),
    ("network", None, None),
]


def target(i: int) -> str:
    name = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        name = chr(97 + r) + name
    return "sd" + name


def build(n: int) -> tuple[str, str]:
    disks, sources = [], {}
    for i in range(n):
        typ, path, facts = KINDS[i % len(KINDS)]
        path = path.format(i=i) if path else None
        cache = "" if i % 3 else " cache='none'"
        fmt = "qcow2" if path and path.endswith(".qcow2") else "raw"
        if typ == "network":
            src = f"<source protocol='rbd' name='pool/vol{i}'><host name='mon1' port='6789'/></source>"
        elif typ == "block":
            src = f"<source dev='{path}'/>"
        else:
            src = f"<source file='{path}'/>"
        if path:
            sources[path] = facts
        disks.append(f"""    <disk type='{typ}' device='disk'>
      <driver name='qemu' type='{fmt}'{cache}/>
      {src}
      <target dev='{target(i)}' bus='scsi'/>
    </disk>""")
    xml = f"""<domain type='kvm'>
  <name>bench-{n}</name>
  <memory unit='GiB'>4</memory>
  <vcpu>4</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
{chr(10).join(disks)}
    <controller type='scsi' index='0' model='virtio-scsi'/>
  </devices>
</domain>
"""
    facts = "version: 1\nhost: {io_uring: true, qemu_version: \"8.2.2\", qemu_io_uring: true}\nsources:\n"
    facts += "".join(f"  {json.dumps(p)}: {json.dumps(v)}\n" for p, v in sources.items())
    return xml, facts


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=21, help="runs per measurement (median)")
    args = ap.parse_args()

    from aiohook.planner import plan_xml
    from aiohook.policy.loader import load_ruleset
    from aiohook.probe.recorded import RecordedProbe
    from aiohook.report import JsonReport

    tmp = tempfile.mkdtemp(prefix="aiohook-bench-")
    env = {**os.environ, "AIOHOOK_CACHE_DIR": os.path.join(tmp, "cache"),
           "AIOHOOK_CONFIG_DIR": os.path.join(tmp, "etc"), "PYTHONPATH": ROOT}
    os.environ.update({k: env[k] for k in ("AIOHOOK_CACHE_DIR", "AIOHOOK_CONFIG_DIR")})
    ruleset = load_ruleset(None)  # warm the compiled-rules cache, as on a host

    def run(argv):
        res = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if res.returncode:
            raise SystemExit(f"{argv}: exit {res.returncode}: {res.stderr.decode()}")

    python_floor = median_ms(lambda: run([sys.executable, "-c", "pass"]), args.runs)
    print(f"python: {sys.version.split()[0]}, runs per figure: {args.runs} (median)")
    print(f"`python -c pass`: {python_floor:.1f} ms")
    print(f"{'disks':>6}  {'in-process ms':>13}  {'disks/s':>9}  {'CLI ms':>8}  {'CLI disks/s':>11}  {'CLI / python -c pass':>20}")
    for n in (16, 1000):
        xml, facts = build(n)
        xml_path = os.path.join(tmp, f"bench-{n}.xml")
        facts_path = os.path.join(tmp, f"bench-{n}.facts.yaml")
        with open(xml_path, "w") as fh:
            fh.write(xml)
        with open(facts_path, "w") as fh:
            fh.write(facts)
        data = xml.encode()

        def in_process(facts_path=facts_path, data=data, xml_path=xml_path, n=n):
            probe = RecordedProbe(facts_path)
            plan = plan_xml(data, xml_path, ruleset, probe)
            out = JsonReport(open(os.devnull, "w"))
            out.domain(plan)
            out.finish()
            assert len(plan.disks) == n

        in_process()
        ip = median_ms(in_process, args.runs)
        argv = [sys.executable, "-m", "aiohook", "plan", "--facts", facts_path, "--format", "json",
                xml_path]
        cli = median_ms(lambda argv=argv: run(argv), args.runs)
        print(f"{n:>6}  {ip:>13.2f}  {n / ip * 1000:>9.0f}  {cli:>8.1f}  {n / cli * 1000:>11.0f}  "
              f"{cli / python_floor:>19.1f}x")


if __name__ == "__main__":
    main()

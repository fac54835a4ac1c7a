#!/usr/bin/env python3
"""Fleet audit throughput: `aiohook plan --facts F --format json` over N saved domains.

    python benchmarks/fleet_bench.py [--counts 1000 10000 50000] [--runs 3]
                                     [--workdir DIR] [--keep] [--profile]

For each count N it generates N domain XMLs and ONE recorded facts file
(covering every file/block source of those N domains), then runs, in one
child process:

    aiohook plan --facts DIR/N/facts.yaml --format json --from-file DIR/N/list > /dev/null

and reports wall time, domains/s and the child's peak RSS (ru_maxrss from
os.wait4 of that child alone). The best of --runs is reported for throughput,
the largest ru_maxrss for memory.

The domains are the fixture corpus (tests/fixtures/domains) used as templates,
picked with a fixed seed among those with 1-8 disks, weighted toward Nova and
virt-install/virt-manager shapes: each copy gets its own <name>, <uuid> and
file/block source paths (a per-domain directory is inserted into every path),
and the facts of the template's source are copied to the renamed path. Sources
the fixtures leave deliberately unknown stay unknown; pool volumes are shared.

--profile runs the 10k case once more under cProfile in this process
(cli.main) and prints the top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "domains")
SEED = 20240611

_NAME = re.compile(rb"<name>([^<]*)</name>")
_UUID = re.compile(rb"<uuid>([^<]*)</uuid>")
_PATH_ATTR = re.compile(rb"""(\s(?:file|dev)\s*=\s*)(['"])(/[^'"]*)\2""")
_DISK = re.compile(rb"<disk[\s>]")


def _weight(name: str) -> int:
    if name.startswith("nova-"):
        return 4
    if name.startswith(("virtinst-", "virtmanager-")):
        return 3
    return 1


def load_templates():
    from aiohook.probe.recorded import parse_facts

    with open(os.path.join(FIXTURES, "facts.yaml"), encoding="utf-8") as fh:
        host, sources, volumes = parse_facts(fh.read(), "facts.yaml")
    templates = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.xml"))):
        with open(path, "rb") as fh:
            data = fh.read()
        if 1 <= len(_DISK.findall(data)) <= 8:
            templates.append((os.path.basename(path), data))
    return host, sources, volumes, templates


def _renamed(path: str, i: int) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/fleet-{i:06d}/{tail}"


def _json(value) -> str:
    return json.dumps(value, ensure_ascii=True)


def generate(count: int, directory: str) -> dict:
    """N domains, their path list and one facts file under directory; returns stats."""
    host, sources, volumes, templates = load_templates()
    rng = random.Random(SEED)
    weights = [_weight(name) for name, _ in templates]
    doms = os.path.join(directory, "domains")
    os.makedirs(doms, exist_ok=True)
    facts_path = os.path.join(directory, "facts.yaml")
    list_path = os.path.join(directory, "list")
    disks = n_sources = 0
    with open(facts_path, "w", encoding="utf-8") as facts, \
            open(list_path, "w", encoding="utf-8") as listing:
        # JSON is YAML: one flow mapping per line, the format `aiohook facts` writes
        facts.write(f"# fleet_bench: {count} domains\nversion: 1\n"
                    f"host: {_json(host.to_dict())}\nsources:\n")

        def source_line(path: str, recorded) -> None:
            facts.write(f"  {_json(path)}: {_json(recorded.to_dict())}\n")

        for path, recorded in sources.items():  # shared ones: pool volume targets
            source_line(path, recorded)
        for i in range(count):
            name, data = rng.choices(templates, weights)[0]
            data = _NAME.sub(lambda m, i=i: b"<name>" + m.group(1).strip() + b"-%06d</name>" % i,
                             data, count=1)
            data = _UUID.sub(b"<uuid>" + str(uuid.UUID(int=rng.getrandbits(128), version=4))
                             .encode() + b"</uuid>", data, count=1)
            seen: set[str] = set()

            def rename(m, i=i, seen=seen):
                old = m.group(3).decode("utf-8")
                new = _renamed(old, i)
                if old in sources and new not in seen:
                    seen.add(new)
                    source_line(new, sources[old]._replace(path=new))
                return m.group(1) + m.group(2) + new.encode("utf-8") + m.group(2)

            data = _PATH_ATTR.sub(rename, data)
            n_sources += len(seen)
            disks += len(_DISK.findall(data))
            out = os.path.join(doms, f"{i:06d}-{name}")
            with open(out, "wb") as fh:
                fh.write(data)
            listing.write(out + "\n")
        if volumes:
            facts.write("volumes:\n")
            for (pool, vol), target in volumes.items():
                values = {k: v for k, v in target._asdict().items() if v is not None}
                facts.write(f"  {_json(pool + '/' + vol)}: {_json(values)}\n")
    return {"domains": count, "disks": disks, "sources": n_sources,
            "facts_bytes": os.path.getsize(facts_path), "facts": facts_path, "list": list_path}


def plan_command(facts: str, listing: str) -> list[str]:
    return [sys.executable, "-m", "aiohook", "plan", "--rules", "default", "--facts", facts,
            "--format", "json", "--from-file", listing]


# A small launcher measures the child: ru_maxrss of a forked child counts the pages it
# shared with its parent before exec, so the child must be forked from a small process,
# not from this one (which may hold a whole plan JSON after verify()).
_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status),
      file=sys.stderr)
"""


def run_child(cmd: list[str], stdout=subprocess.DEVNULL) -> tuple[float, int, int]:
    """(wall seconds, peak RSS KiB of the aiohook process alone, exit status)."""
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], stdout=stdout,
                          stderr=subprocess.PIPE, cwd=ROOT, check=False)
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    wall, maxrss, code = lines[-1].split()
    if int(code) != 0:
        raise SystemExit(f"plan failed ({code}): {' '.join(lines[:-1])[:500]}")
    return float(wall), int(maxrss), int(code)


def verify(stats: dict) -> None:
    """The JSON is complete and every domain is there, with no input rejected."""
    out = os.path.join(os.path.dirname(stats["list"]), "plan.json")
    with open(out, "wb") as fh:
        run_child(plan_command(stats["facts"], stats["list"]), stdout=fh)
    with open(out, encoding="utf-8") as fh:
        doc = json.load(fh)
    os.unlink(out)
    assert len(doc["domains"]) == stats["domains"] and not doc.get("errors"), "incomplete plan"
    changed = sum(d["changed"] for d in doc["domains"])
    classes: dict[str, int] = {}
    for d in doc["domains"]:
        for disk in d["disks"]:
            classes[disk["class"]] = classes.get(disk["class"], 0) + 1
    print(f"  verified: {len(doc['domains'])} domains in the JSON, {changed} to change; "
          + ", ".join(f"{k} {v}" for k, v in sorted(classes.items())))


def profile(stats: dict, top: int = 25) -> None:
    import cProfile
    import io
    import pstats

    from aiohook import cli

    argv = plan_command(stats["facts"], stats["list"])[3:]
    prof = cProfile.Profile()
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        prof.runcall(cli.main, argv)
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
        print(f"--- cProfile, {stats['domains']} domains, sorted by {key}")
        print("\n".join(line for line in buf.getvalue().splitlines()[6:] if line.strip()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per count (best is kept)")
    ap.add_argument("--workdir", default="/tmp/aiohook-fleet-bench")
    ap.add_argument("--keep", action="store_true", help="keep the generated domains")
    ap.add_argument("--profile", action="store_true", help="cProfile the 10k (or largest) case")
    args = ap.parse_args(argv)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"{os.uname().release}; command per count:")
    print("  " + " ".join(plan_command("DIR/N/facts.yaml", "DIR/N/list")[1:]) + " > /dev/null")
    rows = []
    for count in args.counts:
        directory = os.path.join(args.workdir, str(count))
        shutil.rmtree(directory, ignore_errors=True)
        t0 = time.perf_counter()
        stats = generate(count, directory)
        print(f"N={count}: generated {stats['disks']} disks, {stats['sources']} sources, "
              f"facts {stats['facts_bytes'] / 2**20:.1f} MiB in {time.perf_counter() - t0:.1f} s")
        verify(stats)
        walls, rss = [], []
        for _ in range(args.runs):
            wall, maxrss, _ = run_child(plan_command(stats["facts"], stats["list"]))
            walls.append(wall)
            rss.append(maxrss)
        best = min(walls)
        rows.append((count, stats["disks"], best, sorted(walls)[len(walls) // 2], max(rss),
                     stats["facts_bytes"]))
        print("  runs: " + ", ".join(f"{w:.2f} s" for w in walls)
              + f"; best {count / best:,.0f} domains/s; peak RSS {max(rss) / 1024:.1f} MiB")
        if args.profile and count == (10000 if 10000 in args.counts else max(args.counts)):
            profile(stats)
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)

    print("\n| domains | disks | facts file | best wall | median wall | domains/s (best) | peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count, disks, best, median, maxrss, facts_bytes in rows:
        print(f"| {count:,} | {disks:,} | {facts_bytes / 2**20:.1f} MiB | {best:.2f} s | "
              f"{median:.2f} s | {count / best:,.0f} | {maxrss / 1024:.1f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check `aiohook rewrite` against a corpus of domain XML that nobody here wrote.

    python benchmarks/corpus_check.py DIR [--rules default] [--facts-out F] [-v]

DIR is searched for *.xml (recursively). libvirt's own test domains are the
intended corpus: `apt-get source libvirt`, then tests/qemuxml2argvdata (and
qemuxml2xmloutdata). Nothing of the corpus is committed here.

1. A recorded facts file is generated (with aiohook's own writer, dump_facts)
   that makes every file/block source and pool volume of the corpus exist with
   a varied but deterministic class, chosen from a hash of the path: block
   devices of various transports, preallocated files, sparse files, files that
   refuse O_DIRECT, files of unknown allocation, missing sources; volumes
   resolve to such paths, to a network pool, or not at all.
2. Every domain is planned and rewritten in this process, exactly as
   `aiohook rewrite --facts F` does (fleet.iter_plans, DomainPlan.rewritten),
   and the result is checked:
   - rewrite succeeds, or fails with a one-line AiohookError whose exit code
     is documented in README.md ("Exit codes") and is not 70 (internal);
   - idempotent: rewriting the output gives the output back, byte for byte;
   - nothing but disk <driver io/cache> differs: lxml C14N of input and output
     after stripping io/cache from every disk <driver> and dropping a
     <driver name='qemu'/> that the rewrite created;
   - the output validates against /usr/share/libvirt/schemas/domain.rng
     whenever the input did;
   - io='native' is never emitted without cache none/directsync (a disk
     aiohook changed, or one where io takes effect). A disk left exactly as
     found where io has no effect (network, nvme, ...) or in a skipped domain
     is counted as "native without direct cache, left as found", not failed.
   - the libvirt hook's own path gives the same answer (issue 11): the hook
     parses with pyexpat (aiohook.domxml.lite), not lxml, so every domain is
     also planned from parse_domain_lite and must give the same error, or the
     same plan (plan JSON, each disk's line, the AIO demand as found and as
     rewritten) and the same rewritten bytes.
3. Counts are printed; the exit status is 1 on any violation, else 0.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile
import time
import zlib

from lxml import etree

from aiohook.errors import EXIT_INTERNAL, AiohookError
from aiohook.facts import HostFacts, SourceFacts, VolumeTarget

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"
DOCUMENTED_EXIT_CODES = {2, 3, 4, 5, 6, 7}  # README "Exit codes", errors that plan/rewrite may give
DIRECT_CACHES = ("none", "directsync")
IO_EFFECT_TYPES = ("file", "block", "volume")

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                          huge_tree=False, remove_blank_text=False)

# ------------------------------------------------------------- facts

BLOCK_TRANSPORTS = ("loop", "lvm", "dm", "multipath", "iscsi", "fc", "nvme", "krbd", "nbd",
                    "virtio", "ata", "scsi")
FILE_SYSTEMS = ("ext4", "xfs", "nfs4", "btrfs", "tmpfs")


def _h(text: str) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def source_facts_for(path: str, as_block: bool) -> SourceFacts:
    """A deterministic, varied class for one path (the same path always gets the same)."""
    h = _h(path)
    pick = h % 16
    if pick == 0:
        return SourceFacts(path=path, kind="missing", error="No such file or directory")
    if as_block or pick == 1:  # a few file paths turn out to be block devices
        transport = BLOCK_TRANSPORTS[(h >> 8) % len(BLOCK_TRANSPORTS)]
        return SourceFacts(path=path, kind="block", transport=transport, size=(h % 97 + 1) << 30,
                           o_direct=(h >> 16) % 11 != 0, allocated=True)
    fs = FILE_SYSTEMS[(h >> 8) % len(FILE_SYSTEMS)]
    size = ((h >> 4) % 200 + 1) << 28
    if pick < 8:  # preallocated
        return SourceFacts(path=path, kind="file", fs=fs, size=size, virtual_size=size,
                           allocated_bytes=size, allocated=True, o_direct=True)
    if pick < 12:  # sparse
        return SourceFacts(path=path, kind="file", fs=fs, size=size, virtual_size=size,
                           allocated_bytes=size // 3, allocated=False, o_direct=True)
    if pick < 15:  # O_DIRECT refused
        return SourceFacts(path=path, kind="file", fs="fuse.sshfs", size=size, virtual_size=size,
                           allocated_bytes=size, allocated=(pick != 14), o_direct=False)
    return SourceFacts(path=path, kind="file", fs=fs, error="probe timed out")  # allocation unknown


def volume_target_for(pool: str, volume: str) -> VolumeTarget:
    h = _h(pool + "/" + volume)
    pick = h % 6
    if pick == 0:
        return VolumeTarget(kind="network", protocol="rbd")
    if pick == 1:
        return VolumeTarget(kind="unknown", reason="pool definition not readable")
    kind = "block" if pick == 2 else "file"
    prefix = "/dev/corpus-pool" if kind == "block" else "/var/lib/corpus-pool"
    return VolumeTarget(kind=kind, path=f"{prefix}/{pool}/{volume}")


def collect_sources(paths: list[str]):
    """{path: is_block} and {(pool, volume)} over every parsable domain of the corpus."""
    sources: dict[str, bool] = {}
    volumes: set[tuple[str, str]] = set()
    for path in paths:
        try:
            with open(path, "rb") as fh:
                root = etree.fromstring(fh.read(), _PARSER)
        except (etree.XMLSyntaxError, ValueError, OSError):
            continue
        if root is None:
            continue
        for disk in root.iterfind("devices/disk"):
            kind = disk.get("type") or "file"
            src = disk.find("source")
            if src is None:
                continue
            if kind in ("file", "block"):
                value = src.get("file" if kind == "file" else "dev")
                if value and value.startswith("/"):
                    sources[value] = sources.get(value, False) or kind == "block"
            elif kind == "volume" and src.get("pool") and src.get("volume"):
                volumes.add((src.get("pool"), src.get("volume")))
    return sources, volumes


def write_facts(sources: dict[str, bool], volumes, out: str) -> dict[str, SourceFacts]:
    from aiohook.probe.recorded import dump_facts

    host = HostFacts(io_uring=True, qemu_version="8.2.0", qemu_io_uring=True,
                     libvirt_version="9.0.0", aio_max_nr=1048576, aio_nr=0)
    facts = {p: source_facts_for(p, b) for p, b in sorted(sources.items())}
    vols = {}
    for pool, volume in sorted(volumes):
        target = volume_target_for(pool, volume)
        vols[(pool, volume)] = target
        if target.path:
            facts.setdefault(target.path, source_facts_for(target.path, target.kind == "block"))
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(dump_facts(host, facts, vols))
    return facts


# ------------------------------------------------------------- checks


def _strip_io_cache(root: etree._Element) -> list[tuple[etree._Element, etree._Element | None]]:
    """Remove io/cache from every disk <driver>; (disk, driver) pairs in document order."""
    out = []
    for disk in root.iterfind("devices/disk"):
        driver = disk.find("driver")
        if driver is not None:
            for name in ("io", "cache"):
                driver.attrib.pop(name, None)
        out.append((disk, driver))
    return out


def c14n_minus_io_cache(before: bytes, after: bytes) -> str | None:
    """None when nothing but disk <driver io/cache> (and a created driver) differs."""
    a = etree.fromstring(before, _PARSER)
    b = etree.fromstring(after, _PARSER)
    da, db = _strip_io_cache(a), _strip_io_cache(b)
    if len(da) != len(db):
        return f"disk count changed {len(da)} -> {len(db)}"
    for (_disk_a, drv_a), (disk_b, drv_b) in zip(da, db):
        if drv_a is None and drv_b is not None:
            if dict(drv_b.attrib) != {"name": "qemu"}:
                return f"created <driver> carries {dict(drv_b.attrib)}"
            # the created driver was inserted before the original first child, with the
            # original indentation copied in front of it: drop both
            prev_text = disk_b.text
            tail = drv_b.tail
            disk_b.remove(drv_b)  # lxml drops its tail with it
            disk_b.text = tail if (prev_text or "").strip() == "" else prev_text
    ca = etree.tostring(a, method="c14n")
    cb = etree.tostring(b, method="c14n")
    if ca == cb:
        return None
    pos = next((i for i, (x, y) in enumerate(zip(ca, cb)) if x != y), min(len(ca), len(cb)))
    return (f"differs beyond io/cache at C14N byte {pos}: "
            f"{ca[max(0, pos - 40):pos + 40]!r} vs {cb[max(0, pos - 40):pos + 40]!r}")


def native_violations(output: bytes, plan) -> tuple[list[str], int]:
    """(violations, native-left-as-found count) for io='native' without an O_DIRECT cache."""
    root = etree.fromstring(output, _PARSER)
    bad, inherited = [], 0
    disks = list(root.iterfind("devices/disk"))
    for i, disk in enumerate(disks):
        driver = disk.find("driver")
        if driver is None or driver.get("io") != "native" or driver.get("cache") in DIRECT_CACHES:
            continue
        dplan = plan.disks[i] if i < len(plan.disks) else None
        changed = dplan is not None and dplan.decision.changed
        effect = (disk.get("type") or "file") in IO_EFFECT_TYPES
        if not changed and (plan.skipped or not effect):
            inherited += 1
            continue
        target = disk.find("target")
        bad.append(f"disk {target.get('dev') if target is not None else i}: io='native' with "
                   f"cache={driver.get('cache') or 'unset'} (rule {dplan.decision.rule if dplan else '?'})")
    return bad, inherited


def error_kind(exc: AiohookError) -> str:
    message = re.sub(r"\s+", " ", exc.message)
    message = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>|\d+", "…", message)
    return f"{type(exc).__name__}: {message[:70]}"


class Checker:
    def __init__(self, facts: str, rules: str = "default", schema: str = SCHEMA):
        from aiohook.policy.loader import load_ruleset
        from aiohook.probe import make_probe

        self.ruleset = load_ruleset(rules)
        self.probe = make_probe(facts)
        self.relaxng = etree.RelaxNG(file=schema) if schema and os.path.exists(schema) else None
        self.counts = collections.Counter()
        self.failures = collections.Counter()
        self.classes = collections.Counter()
        self.violations: list[str] = []

    def valid(self, data: bytes) -> bool:
        try:
            return bool(self.relaxng.validate(etree.fromstring(data, _PARSER)))
        except (etree.XMLSyntaxError, ValueError):
            return False

    def violation(self, path: str, what: str) -> None:
        self.violations.append(f"{path}: {what}")

    def rewrite(self, data: bytes, label: str):
        from aiohook.planner import plan_xml

        plan = plan_xml(data, label, self.ruleset, self.probe)
        return plan, plan.rewritten()

    def hook_path(self, data: bytes, label: str, plan, out: bytes | None,
                  error: AiohookError | None) -> str | None:
        """What differs when the hook plans this domain (parse_domain_lite: pyexpat
        when it can, else lxml) from what the CLI's path gave; None when nothing."""
        from aiohook.budget.demand import demand_for
        from aiohook.domxml.lite import LiteDocument, parse_domain_lite
        from aiohook.planner import plan_document

        try:
            doc = parse_domain_lite(data, label)
            self.counts["hook path: expat" if isinstance(doc, LiteDocument)
                        else "hook path: lxml"] += 1
            lite = plan_document(doc, self.ruleset, self.probe)
            lite_out = lite.rewritten()
        except AiohookError as exc:
            if error is None:
                return f"the hook's path fails where the CLI's does not: {exc.one_line()}"
            if (type(exc), exc.one_line()) != (type(error), error.one_line()):
                return f"the hook's path fails otherwise: {exc.one_line()} / {error.one_line()}"
            return None
        if error is not None:
            return f"the hook's path does not fail, the CLI's does: {error.one_line()}"
        if lite.to_json() != plan.to_json():
            return "the hook's path plans otherwise (plan JSON differs)"
        if [d.line for d in lite.disks] != [d.line for d in plan.disks]:
            return "the hook's path numbers disk lines otherwise"
        for as_found in (True, False):
            if demand_for(lite, as_found=as_found) != demand_for(plan, as_found=as_found):
                return f"the hook's path counts another AIO demand (as_found={as_found})"
        if lite_out != out:
            return "the hook's path rewrites other bytes"
        return None

    def check(self, path: str) -> None:
        from aiohook.domxml.files import read_xml

        self.counts["domains"] += 1
        data = None
        try:
            data = read_xml(path)
            plan, out = self.rewrite(data, path)
        except AiohookError as exc:
            line = exc.one_line()
            if "\n" in line or exc.exit_code not in DOCUMENTED_EXIT_CODES:
                self.violation(path, f"undocumented error (exit {exc.exit_code}): {line!r}")
            self.failures[error_kind(exc)] += 1
            differs = self.hook_path(data, path, None, None, exc) if data is not None else None
            if differs:
                self.violation(path, differs)
            return
        except Exception as exc:  # noqa: BLE001 - exit 70 in the CLI: a bug
            self.violation(path, f"internal error (exit {EXIT_INTERNAL}): "
                                 f"{type(exc).__name__}: {exc}")
            self.failures[f"internal: {type(exc).__name__}"] += 1
            return
        self.counts["rewrites"] += 1
        self.counts["disks"] += len(plan.disks)
        differs = self.hook_path(data, path, plan, out, None)
        if differs:
            self.violation(path, differs)
        changed = sum(1 for d in plan.disks if d.decision.changed)
        self.counts["changed disks"] += changed
        self.counts["changed domains"] += bool(changed)
        for d in plan.disks:
            self.classes[d.facts.disk_class] += 1
        if not changed and out != data:
            self.violation(path, "no disk changed, yet the output bytes differ")
        try:
            _plan2, again = self.rewrite(out, path)
        except Exception as exc:  # noqa: BLE001 - any failure on our own output is a bug
            self.violation(path, f"rewriting the output fails: {type(exc).__name__}: {exc}")
            return
        if again != out:
            self.violation(path, "not idempotent: rewriting the output changes it again")
        try:
            diff = c14n_minus_io_cache(data, out)
        except etree.XMLSyntaxError as exc:
            diff = f"output does not parse: {exc}"
        if diff:
            self.violation(path, diff)
        bad, inherited = native_violations(out, plan)
        for b in bad:
            self.violation(path, b)
        self.counts["native without direct cache, left as found"] += inherited
        if self.relaxng is not None and self.valid(data):
            self.counts["valid inputs"] += 1
            if out != data and not self.valid(out):
                err = self.relaxng.error_log.last_error
                self.violation(path, f"output invalid against domain.rng, input was valid: {err}")

    def report(self, stream=sys.stdout, verbose: bool = False) -> None:
        c = self.counts
        print(f"domains            {c['domains']}", file=stream)
        print(f"valid inputs       {c['valid inputs']}"
              + ("" if self.relaxng is not None else " (no domain.rng: schema check skipped)"),
              file=stream)
        print(f"rewrites           {c['rewrites']}  ({c['disks']} disks, "
              f"{c['changed domains']} domains changed)", file=stream)
        print(f"changed disks      {c['changed disks']}", file=stream)
        print(f"hook path          expat {c['hook path: expat']}, lxml {c['hook path: lxml']} "
              f"(same errors, plans and bytes as above, or a violation)", file=stream)
        print("disk classes       " + ", ".join(f"{k} {v}" for k, v in sorted(self.classes.items())),
              file=stream)
        print(f"native w/o direct cache, left as found (io without effect/skip): "
              f"{c['native without direct cache, left as found']}", file=stream)
        print(f"failures           {sum(self.failures.values())}", file=stream)
        for kind, n in self.failures.most_common():
            print(f"  {n:5d}  {kind}", file=stream)
        print(f"violations         {len(self.violations)}", file=stream)
        for v in self.violations[: None if verbose else 40]:
            print(f"  {v}", file=stream)
        if not verbose and len(self.violations) > 40:
            print(f"  ... {len(self.violations) - 40} more (-v shows all)", file=stream)


def find_xml(directory: str) -> list[str]:
    return sorted(glob.glob(os.path.join(directory, "**", "*.xml"), recursive=True))


_DECL = re.compile(rb"^\s*<\?xml[^>]*\?>\s*")
_DRIVER = re.compile(rb"<driver(?=[\s/>])")
VARIANTS = ("crlf", "bom", "utf16", "nsattr")


def make_variants(paths: list[str], out_dir: str) -> list[str]:
    """Byte-level variants of each input that real tools and editors produce:
    CRLF line ends, a UTF-8 BOM, UTF-16, and <driver> tags carrying a namespace
    declaration plus prefixed attributes (x:note, xml:lang)."""
    out = []
    for path in paths:
        with open(path, "rb") as fh:
            data = fh.read()
        base = os.path.basename(path)[:-4]
        forms = {
            "crlf": data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
            "bom": b"\xef\xbb\xbf" + data,
            "nsattr": _DRIVER.sub(b"<driver xmlns:x='urn:aiohook:corpus' x:note='1' "
                                  b"xml:lang='en'", data),
        }
        try:
            forms["utf16"] = _DECL.sub(b"", data).decode("utf-8").encode("utf-16")
        except UnicodeDecodeError:
            pass
        for kind, body in forms.items():
            target = os.path.join(out_dir, f"{base}.{kind}.xml")
            with open(target, "wb") as fh:
                fh.write(body)
            out.append(target)
    return out


def run(directory: str, rules: str = "default", facts_out: str | None = None,
        stream=sys.stdout, verbose: bool = False, variants: bool = False) -> Checker:
    paths = find_xml(directory)
    with tempfile.TemporaryDirectory(prefix="aiohook-corpus-") as tmp:
        if variants:
            os.mkdir(os.path.join(tmp, "variants"))
            paths += make_variants(paths, os.path.join(tmp, "variants"))
        sources, volumes = collect_sources(paths)
        facts = facts_out or os.path.join(tmp, "facts.yaml")
        expected = write_facts(sources, volumes, facts)
        checker = Checker(facts, rules)
        lost = set(expected) ^ set(checker.probe.sources)
        if lost:  # the facts writer and reader must round-trip every path
            checker.violation(facts, f"{len(lost)} source paths do not round-trip, e.g. "
                                     f"{min(lost)!r}")
        print(f"corpus {directory}: {len(paths)} XML files"
              + (" (variants included)" if variants else "")
              + f", {len(sources)} sources, {len(volumes)} volumes in "
              + (facts if facts_out else "a temporary facts file"), file=stream)
        for path in paths:
            checker.check(path)
    return checker


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("directory")
    ap.add_argument("--rules", default="default", help="rules file or profile (default: default)")
    ap.add_argument("--facts-out", help="keep the generated facts file here")
    ap.add_argument("--variants", action="store_true",
                    help="also check CRLF, BOM, UTF-16 and namespaced-<driver> variants of "
                         "every input (" + ", ".join(VARIANTS) + ")")
    ap.add_argument("-v", "--verbose", action="store_true", help="list every violation")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.directory):
        ap.error(f"{args.directory}: not a directory")
    start = time.perf_counter()
    checker = run(args.directory, args.rules, args.facts_out, verbose=args.verbose,
                  variants=args.variants)
    checker.report(verbose=args.verbose)
    print(f"took {time.perf_counter() - start:.1f} s")
    return 1 if checker.violations else 0


if __name__ == "__main__":
    sys.exit(main())

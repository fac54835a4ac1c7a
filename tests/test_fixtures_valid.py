"""The domain XML fixture corpus stays valid, covered and backed by recorded facts.

Checks tests/fixtures/domains/: every fixture parses and (bar the documented
exceptions in its README.md) validates against libvirt's domain.rng; every
file/block source is in facts.yaml or listed as deliberately unknown; and the
corpus covers every disk type, device, bus and feature the policy must meet.
Only the standard library and PyYAML are used here.
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml
from paths import FIXTURES

from aiohook.facts import HostFacts, SourceFacts

CORPUS = str(FIXTURES)
README = os.path.join(CORPUS, "README.md")
FACTS = os.path.join(CORPUS, "facts.yaml")
SCHEMA = "/usr/share/libvirt/schemas/domain.rng"
AIOHOOK_NS = "http://aiohook.org/xmlns/policy/1"
QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"

FIXTURES = sorted(glob.glob(os.path.join(CORPUS, "*.xml")))
NAMES = [os.path.basename(p) for p in FIXTURES]

DISK_TYPES = {"file", "block", "network", "volume", "nvme", "vhostuser", "vhostvdpa", "dir"}
DEVICES = {"disk", "cdrom", "floppy", "lun"}
BUSES = {"virtio", "scsi", "sata", "ide", "usb", "fdc"}
PROTOCOLS = {"rbd", "gluster", "iscsi", "nbd", "http", "https", "nfs", "ssh"}
IO_CACHE_PAIRS = {
    ("native", "none"),
    ("native", "directsync"),
    ("native", None),
    ("threads", "writeback"),
    ("io_uring", "writeback"),
    ("io_uring", "none"),
}
BLOCK_TRANSPORTS = {"iscsi", "fc", "multipath", "lvm", "nvme", "loop", "krbd"}
PREALLOCATED_FS = {"ext4", "xfs", "nfs4"}


# ---------------------------------------------------------------- helpers


def parse(path: str) -> ET.Element:
    """Parse keeping comments and processing instructions."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    with open(path, "rb") as fh:
        return ET.fromstring(fh.read(), parser=parser)


@functools.cache
def roots() -> dict[str, ET.Element]:
    return {os.path.basename(p): parse(p) for p in FIXTURES}


def readme_section(title: str) -> str:
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def readme_bullets(title: str) -> list[str]:
    """First backticked token of every '- ' bullet in a README section."""
    return re.findall(r"^- `([^`]+)`", readme_section(title), re.M)


@functools.cache
def odd_fixtures() -> frozenset[str]:
    return frozenset(readme_bullets("Deliberately odd fixtures"))


@functools.cache
def unknown_entries() -> tuple[frozenset[str], frozenset[str]]:
    """(paths, 'pool/volume' keys) listed as deliberately unknown."""
    section = readme_section("Deliberately unknown sources")
    volumes = frozenset(re.findall(r"^- volume `([^`]+)`", section, re.M))
    paths = frozenset(readme_bullets("Deliberately unknown sources"))
    return paths, volumes


@functools.cache
def facts() -> dict:
    with open(FACTS, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def disks(root: ET.Element):
    devices = root.find("devices")
    return [] if devices is None else devices.findall("disk")


def host_sources(root: ET.Element) -> set[str]:
    """Paths of file/block sources, top images and backing stores alike."""
    out = set()
    for disk in disks(root):
        for node in [disk, *disk.iter("backingStore")]:
            if node.get("type") not in ("file", "block"):
                continue
            source = node.find("source")
            if source is not None and (source.get("file") or source.get("dev")):
                out.add(source.get("file") or source.get("dev"))
    return out


def volume_keys(root: ET.Element) -> set[str]:
    out = set()
    for disk in disks(root):
        source = disk.find("source")
        if disk.get("type") == "volume" and source is not None:
            out.add(f"{source.get('pool')}/{source.get('volume')}")
    return out


def validator() -> list[str] | None:
    if not os.path.exists(SCHEMA):
        return None
    if shutil.which("xmllint"):
        return ["xmllint", "--noout", "--relaxng", SCHEMA]
    if shutil.which("virt-xml-validate"):
        return ["virt-xml-validate"]
    return None


# ---------------------------------------------------------------- size, parse, schema


def test_corpus_size():
    assert len(FIXTURES) >= 30, f"only {len(FIXTURES)} fixtures in {CORPUS}"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_parses_as_domain(name):
    root = parse(os.path.join(CORPUS, name))
    assert root.tag == "domain"
    assert root.findtext("name"), f"{name}: no <name>"
    assert disks(root), f"{name}: no <disk>"


@pytest.mark.parametrize("name", NAMES)
def test_fixture_validates_against_libvirt_schema(name):
    if name in odd_fixtures():
        pytest.skip(f"{name} is a documented exception in {README}")
    if not os.path.exists(SCHEMA):
        pytest.skip(f"{SCHEMA} missing: install the Debian package libvirt0")
    cmd = validator()
    if cmd is None:
        pytest.skip(
            "no RelaxNG validator: install libxml2-utils (xmllint) or libvirt-clients"
            " (virt-xml-validate)"
        )
    path = os.path.join(CORPUS, name)
    args = cmd + [path] + (["domain"] if cmd[0] == "virt-xml-validate" else [])
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name} does not validate:\n{result.stderr}"


def test_documented_exceptions_exist_and_are_few():
    odd = odd_fixtures()
    assert len(odd) <= 3, f"at most 3 deliberately odd fixtures, README lists {sorted(odd)}"
    missing = odd - set(NAMES)
    assert not missing, f"README lists exceptions that are not fixtures: {sorted(missing)}"


# ---------------------------------------------------------------- facts.yaml


def test_facts_file_shape():
    data = facts()
    assert data["version"] == 1
    host_fields = set(HostFacts.FIELDS)
    assert set(data["host"]) <= host_fields, set(data["host"]) - host_fields
    HostFacts(**data["host"])
    source_fields = set(SourceFacts.FIELDS) - {"path"}
    for path, entry in data["sources"].items():
        assert path.startswith("/"), path
        assert set(entry) <= source_fields, f"{path}: unknown keys {set(entry) - source_fields}"
        assert entry["kind"] in ("file", "block", "missing", "unknown"), path
        SourceFacts(path=path, **entry)
    for key, entry in data["volumes"].items():
        assert key.count("/") >= 1, key
        assert entry["kind"] in ("file", "block", "network", "unknown"), key
        if entry["kind"] in ("file", "block"):
            assert entry.get("path", "").startswith("/"), key


def test_every_source_has_facts_or_is_deliberately_unknown():
    sources = facts()["sources"]
    volumes = facts()["volumes"]
    unknown_paths, unknown_volumes = unknown_entries()
    assert unknown_paths, "README lists no deliberately-unknown path"
    problems = []
    for name, root in roots().items():
        for path in sorted(host_sources(root)):
            if path not in sources and path not in unknown_paths:
                problems.append(f"{name}: {path} has no facts and is not listed as unknown")
            if path in sources and path in unknown_paths:
                problems.append(f"{name}: {path} is in facts.yaml and listed as unknown")
        for key in sorted(volume_keys(root)):
            if key not in volumes and key not in unknown_volumes:
                problems.append(f"{name}: volume {key} has no facts and is not listed as unknown")
    assert not problems, "\n".join(problems)


def test_no_stale_facts_or_unknown_entries():
    """Every recorded path is named by a fixture or a volume; every 'unknown' is used."""
    named = set().union(*(host_sources(r) for r in roots().values()))
    vols = set().union(*(volume_keys(r) for r in roots().values()))
    data = facts()
    volume_paths = {v["path"] for v in data["volumes"].values() if v.get("path")}
    stale = set(data["sources"]) - named - volume_paths
    assert not stale, f"facts.yaml records paths no fixture uses: {sorted(stale)}"
    for path in volume_paths:
        assert path in data["sources"], f"volume target {path} has no source facts"
    unused_vols = set(data["volumes"]) - vols
    assert not unused_vols, f"facts.yaml records volumes no fixture uses: {sorted(unused_vols)}"
    unknown_paths, unknown_volumes = unknown_entries()
    assert unknown_paths <= named, sorted(unknown_paths - named)
    assert unknown_volumes <= vols, sorted(unknown_volumes - vols)


def test_facts_cover_every_disk_class():
    sources = facts()["sources"].values()
    blocks = [e for e in sources if e["kind"] == "block"]
    files = [e for e in sources if e["kind"] == "file"]
    assert BLOCK_TRANSPORTS <= {e.get("transport") for e in blocks}
    prealloc_fs = {e.get("fs") for e in files if e.get("allocated") and e.get("o_direct")}
    assert PREALLOCATED_FS <= prealloc_fs, PREALLOCATED_FS - prealloc_fs
    assert any(e.get("fs") == "nfs4" and e.get("o_direct") is True for e in files)
    assert any(e.get("o_direct") is False for e in files), "no O_DIRECT-less file"
    # sparse: raw with holes and qcow2 (off/metadata), identified via the XML formats
    fmt = {}
    for root in roots().values():
        for disk in disks(root):
            for node in [disk, *disk.iter("backingStore")]:
                source = node.find("source")
                if source is None or not source.get("file"):
                    continue
                drv = node.find("driver") if node is disk else node.find("format")
                fmt[source.get("file")] = (drv.get("type") if drv is not None else None) or "raw"
    sparse = {
        fmt.get(p)
        for p, e in facts()["sources"].items()
        if e["kind"] == "file" and e.get("allocated") is False
    }
    assert {"raw", "qcow2"} <= sparse, sparse
    assert {"file", "block", "network"} <= {v["kind"] for v in facts()["volumes"].values()}
    host = facts()["host"]
    assert {"io_uring", "qemu_version", "qemu_io_uring"} <= set(host)


# ---------------------------------------------------------------- XML coverage


def coverage() -> dict[str, set]:
    cov: dict[str, set] = {
        k: set()
        for k in ("types", "devices", "buses", "protocols", "io_cache", "cache", "features")
    }
    for root in roots().values():
        if root.find("iothreads") is not None:
            cov["features"].add("domain-iothreads")
        for node in root.iter():
            if node.tag is ET.Comment:
                cov["features"].add("comment")
            elif node.tag is ET.ProcessingInstruction:
                cov["features"].add("pi")
        if root.find(f"{{{QEMU_NS}}}commandline") is not None:
            cov["features"].add("qemu-commandline")
        metadata = root.find("metadata")
        if metadata is not None and any(
            isinstance(c.tag, str) and c.tag.startswith("{") and AIOHOOK_NS not in c.tag
            for c in metadata
        ):
            cov["features"].add("foreign-metadata")
        for ctrl in root.iter("controller"):
            driver = ctrl.find("driver")
            if ctrl.get("type") == "scsi" and driver is not None and driver.get("iothread"):
                cov["features"].add("scsi-controller-iothread")
        all_disks = disks(root)
        if len(all_disks) >= 16:
            cov["features"].add("16-disks")
        for disk in all_disks:
            cov["types"].add(disk.get("type"))
            cov["devices"].add(disk.get("device", "disk"))
            target = disk.find("target")
            if target is not None and target.get("bus"):
                cov["buses"].add(target.get("bus"))
            source = disk.find("source")
            if source is not None and source.get("protocol"):
                cov["protocols"].add(source.get("protocol"))
            driver = disk.find("driver")
            io = driver.get("io") if driver is not None else None
            cache = driver.get("cache") if driver is not None else None
            cov["io_cache"].add((io, cache))
            cov["cache"].add(cache)
            if driver is not None and driver.get("iothread"):
                cov["features"].add("disk-iothread")
            if driver is not None and driver.find("iothreads") is not None:
                cov["features"].add("per-queue-iothreads")
            if disk.get("device") == "lun" and disk.get("sgio"):
                cov["features"].add("lun-sgio")
            if disk.get("device") in ("cdrom", "floppy") and (source is None or not source.attrib):
                cov["features"].add("empty-" + disk.get("device"))
            if disk.find("readonly") is not None:
                cov["features"].add("readonly")
            if disk.find("shareable") is not None:
                cov["features"].add("shareable")
            if disk.find("backingStore/source") is not None:
                cov["features"].add("backing-chain")
                if disk.find("backingStore/backingStore/source") is not None:
                    cov["features"].add("deep-backing-chain")
    return cov


def test_coverage_disk_types_devices_buses():
    cov = coverage()
    types = cov["types"]
    assert types == DISK_TYPES, f"types: missing {DISK_TYPES - types}, extra {types - DISK_TYPES}"
    assert cov["devices"] == DEVICES, f"devices: missing {DEVICES - cov['devices']}"
    assert BUSES <= cov["buses"], f"buses: missing {BUSES - cov['buses']}"
    assert PROTOCOLS <= cov["protocols"], f"protocols: missing {PROTOCOLS - cov['protocols']}"


def test_coverage_io_cache_and_features():
    cov = coverage()
    assert IO_CACHE_PAIRS <= cov["io_cache"], IO_CACHE_PAIRS - cov["io_cache"]
    assert "unsafe" in cov["cache"]
    wanted = {
        "domain-iothreads",
        "disk-iothread",
        "scsi-controller-iothread",
        "per-queue-iothreads",
        "lun-sgio",
        "empty-cdrom",
        "empty-floppy",
        "readonly",
        "shareable",
        "backing-chain",
        "deep-backing-chain",
        "comment",
        "pi",
        "qemu-commandline",
        "foreign-metadata",
        "16-disks",
    }
    assert wanted <= cov["features"], wanted - cov["features"]


def test_aiohook_overrides_are_well_formed():
    with_policy = 0
    skip_seen = pin_seen = False
    for name, root in roots().items():
        policies = root.findall(f"metadata/{{{AIOHOOK_NS}}}policy")
        assert len(policies) <= 1, f"{name}: more than one aiohook:policy"
        if not policies:
            continue
        with_policy += 1
        targets = {d.find("target").get("dev") for d in disks(root) if d.find("target") is not None}
        for child in policies[0]:
            if not isinstance(child.tag, str):
                continue  # comments, PIs
            local = child.tag.split("}", 1)[1]
            assert child.tag.startswith(f"{{{AIOHOOK_NS}}}"), f"{name}: {child.tag}"
            if local == "skip":
                skip_seen = True
            elif local == "disk":
                pin_seen = True
                target, io = child.get("target"), child.get("io")
                assert target in targets, f"{name}: pin for unknown target {target}"
                assert io in ("native", "threads", "io_uring", "keep"), f"{name}: io={io}"
            else:
                pytest.fail(f"{name}: unexpected aiohook element {local}")
    assert with_policy >= 3, f"only {with_policy} fixtures carry an aiohook policy"
    assert skip_seen and pin_seen

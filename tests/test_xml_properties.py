"""Property tests of the rewrite over generated libvirt domains (tests/domaingen.py).

Real lxml, real engine, the packaged default ruleset, and a RecordedProbe over a
facts file generated with each domain so every disk class shows up.

- rewriting is idempotent, byte for byte;
- nothing but <disk><driver io/cache> changes (canonical XML of the rest, and
  attribute order), a created empty <driver name='qemu'/> counting as absent;
- never io='native' without cache none/directsync where io has an effect, never
  native on a sparse image or without O_DIRECT, never io_uring where the host
  can't, never io changed where it has no effect, cache none/directsync never
  set on a source that refuses O_DIRECT; a skipped domain is left alone;
- the output is valid against libvirt's domain.rng whenever the input was.
"""

from __future__ import annotations

import collections
import os
import tempfile

import domaingen
import pytest
from hypothesis import HealthCheck, given, settings
from lxml import etree

from aiohook.domxml import parse_domain
from aiohook.facts import O_DIRECT_CACHES
from aiohook.paths import packaged
from aiohook.planner import plan_xml
from aiohook.policy.engine import PIN_RULE, SKIP_RULE
from aiohook.policy.ruleset import parse_ruleset
from aiohook.policy.safety import io_has_effect
from aiohook.probe.recorded import RecordedProbe

SCHEMA = "/usr/share/libvirt/schemas/domain.rng"
EXAMPLES = int(os.environ.get("AIOHOOK_PROPERTY_EXAMPLES", "150"))
MIN_VALID_FRACTION = 0.5
ALL_CLASSES = {"block", "file-preallocated", "file-sparse", "network", "empty", "other", "unknown"}


@pytest.fixture(scope="module")
def relaxng():
    if not os.path.exists(SCHEMA):
        pytest.skip(f"{SCHEMA} missing: install Debian's libvirt0")
    return etree.RelaxNG(etree.parse(SCHEMA))  # loaded by path so its includes resolve


@pytest.fixture(scope="module")
def ruleset():
    path = packaged("rules.yaml")
    with open(path, "rb") as fh:
        return parse_ruleset(fh.read(), path)


def rewrite(xml: bytes, ruleset, probe):
    plan = plan_xml(xml, "generated.xml", ruleset, probe)
    return plan, plan.rewritten()


def _tree(data: bytes) -> etree._ElementTree:
    return parse_domain(data, "x").root.getroottree()


def without_io_cache(data: bytes, created: set[int]) -> etree._ElementTree:
    """The document with io/cache stripped from every disk driver; drivers of the
    disks in `created` (which had none in the input) are dropped with the
    indentation tail the rewrite gave them."""
    tree = _tree(data)
    for i, disk in enumerate(tree.getroot().iterfind("devices/disk")):
        driver = disk.find("driver")
        if driver is None:
            continue
        driver.attrib.pop("io", None)
        driver.attrib.pop("cache", None)
        if i in created:
            assert dict(driver.attrib) == {"name": "qemu"} and len(driver) == 0, (
                "a created <driver> must hold only name='qemu' besides io/cache")
            disk.remove(driver)  # lxml removes the tail with the element
    return tree


def c14n(tree: etree._ElementTree) -> bytes:
    return etree.tostring(tree, method="c14n")


def attribute_orders(tree: etree._ElementTree) -> list:
    return [(el.tag, list(el.attrib.keys())) for el in tree.iter() if isinstance(el.tag, str)]


def disk_drivers(data: bytes) -> list[tuple[str | None, str | None]]:
    out = []
    for disk in _tree(data).getroot().iterfind("devices/disk"):
        drv = disk.find("driver")
        out.append((None, None) if drv is None else (drv.get("io"), drv.get("cache")))
    return out


def check_safety(plan) -> None:
    for d in plan.disks:
        f, dec = d.facts, d.decision
        unchanged = dec.io_after == dec.io_before and dec.cache_after == dec.cache_before
        if plan.skipped:
            assert dec.rule == SKIP_RULE and unchanged
            continue
        if not io_has_effect(f):
            assert dec.io_after == dec.io_before, f"{f.target}: io changed on a {f.disk_class} disk"
            continue
        if dec.io_after == "native":
            assert dec.cache_after in O_DIRECT_CACHES, f"{f.target}: native with cache {dec.cache_after}"
            assert f.disk_class != "file-sparse", f"{f.target}: native on a sparse image"
            assert f.o_direct is not False, f"{f.target}: native without O_DIRECT"
            if dec.io_before != "native":
                assert f.disk_class in ("block", "file-preallocated")
        if dec.io_after == "io_uring" and dec.io_before != "io_uring":
            assert plan.host.io_uring_usable(), f"{f.target}: io_uring added on a host without it"
        if dec.io_after == "io_uring":
            assert plan.host.io_uring_usable(), f"{f.target}: io_uring kept on a host without it"
        if dec.cache_after != dec.cache_before and dec.cache_after in O_DIRECT_CACHES:
            assert f.o_direct is not False, f"{f.target}: cache {dec.cache_after} on a no-O_DIRECT source"


def test_rewrite_properties(relaxng, ruleset):
    stats = collections.Counter()
    classes = collections.Counter()

    with tempfile.TemporaryDirectory(prefix="aiohook-prop-") as tmp:
        facts_path = os.path.join(tmp, "facts.yaml")

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(domaingen.domains())
        def prop(gen: domaingen.GeneratedDomain):
            with open(facts_path, "w") as fh:
                fh.write(gen.facts)
            probe = RecordedProbe(facts_path)
            src = gen.xml
            plan, out = rewrite(src, ruleset, probe)
            stats["total"] += 1
            classes.update(d.facts.disk_class for d in plan.disks)

            # idempotent, byte for byte
            plan2, out2 = rewrite(out, ruleset, probe)
            assert out2 == out, "rewrite(rewrite(x)) != rewrite(x)"
            assert not plan2.changed

            # the XML says what the plan decided
            assert disk_drivers(out) == [(d.decision.io_after, d.decision.cache_after)
                                         for d in plan.disks]
            assert len(plan.disks) == len(gen.disks)

            # nothing but driver io/cache changes
            created = {i for i, g in enumerate(gen.disks) if not g.has_driver}
            before, after = without_io_cache(src, set()), without_io_cache(out, created)
            assert c14n(after) == c14n(before)
            assert attribute_orders(after) == attribute_orders(before)
            if plan.skipped:
                stats["skipped"] += 1
                assert c14n(_tree(out)) == c14n(_tree(src))
            for d in plan.disks:
                if d.facts.target in gen.pins and not plan.skipped:
                    assert d.decision.rule == PIN_RULE
                    stats["pinned"] += 1
                if d.decision.changed:
                    stats["changed"] += 1

            check_safety(plan)

            # valid in, valid out
            if relaxng.validate(etree.fromstring(src).getroottree()):
                stats["valid"] += 1
                ok = relaxng.validate(etree.fromstring(out).getroottree())
                assert ok, f"output invalid against domain.rng: {relaxng.error_log.last_error}"
            else:
                assert gen.invalid, f"generator drew an invalid domain: {relaxng.error_log.last_error}\n{src.decode()}"

        prop()

    print("\nproperty stats:", dict(stats), dict(classes))
    # the properties were not vacuous
    assert stats["valid"] >= MIN_VALID_FRACTION * stats["total"], stats
    assert stats["changed"] > 0 and stats["skipped"] > 0 and stats["pinned"] > 0, stats
    assert set(classes) == ALL_CLASSES, f"classes never drawn: {ALL_CLASSES - set(classes)}"


@settings(max_examples=60, deadline=None, database=None)
@given(gen=domaingen.domains(max_disks=4))
def test_created_driver_keeps_indentation(ruleset, gen):
    """A <driver> the rewrite creates sits on its own line, indented like its siblings."""
    rules = ruleset
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "facts.yaml")
        with open(path, "w") as fh:
            fh.write(gen.facts)
        plan, out = rewrite(gen.xml, rules, RecordedProbe(path))
    for disk, g in zip(_tree(out).getroot().iterfind("devices/disk"), gen.disks):
        driver = disk.find("driver")
        if g.has_driver or driver is None:
            continue
        first = next((c for c in disk if c is not driver), None)
        if first is not None and disk.text and not disk.text.strip():
            assert driver.tail == disk.text

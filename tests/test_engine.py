"""Engine unit tests: the safety checks, metadata overrides, preference lists, and the
default-rules table of issue 2, one test per row, on DiskFacts built the way the
planner builds them (classify() over SourceFacts / VolumeTarget)."""

from __future__ import annotations

import pytest

from aiohook.classify import classify
from aiohook.facts import DiskFacts, HostFacts, SourceFacts, VolumeTarget
from aiohook.paths import packaged
from aiohook.policy.engine import NO_RULE, PIN_RULE, SKIP_RULE, decide, resolve
from aiohook.policy.ruleset import Action, parse_ruleset
from aiohook.policy.safety import CHECKS

HOST = HostFacts(io_uring=True, qemu_version="8.2.2", qemu_io_uring=True, libvirt_version="10.0.0")
NO_URING_HOSTS = {
    "kernel-disabled": HostFacts(io_uring=False, qemu_version="8.2.2", qemu_io_uring=True),
    "kernel-unknown": HostFacts(io_uring=None, qemu_version="8.2.2"),
    "qemu-without-liburing": HostFacts(io_uring=True, qemu_version="8.2.2", qemu_io_uring=False),
    "qemu-too-old": HostFacts(io_uring=True, qemu_version="4.2.1"),
}
CACHE_DIRECT = ("none", "directsync")
CACHE_HOST = ("writeback", "writethrough", "unsafe")


@pytest.fixture(scope="module")
def rules():
    path = packaged("rules.yaml")
    with open(path, "rb") as fh:
        return parse_ruleset(fh.read(), path)


def _rules(text: str):
    return parse_ruleset(text.encode(), "test.yaml")


def disk(type="file", *, device="disk", io=None, cache=None, source: SourceFacts | None = None,
         volume: VolumeTarget | None = None, has_source=True, fmt="raw", bus="virtio",
         target="vda", readonly=False, domain="vm1", protocol=None) -> DiskFacts:
    cls, reason = classify(type, has_source, source, volume)
    return DiskFacts(domain=domain, target=target, type=type, device=device, bus=bus, format=fmt,
                     source=source.path if source else None, protocol=protocol, cache=cache, io=io,
                     readonly=readonly, shareable=False, disk_class=cls, class_reason=reason,
                     host=source)


def block(transport="lvm", o_direct=True, path="/dev/vg0/lv0") -> SourceFacts:
    return SourceFacts(path=path, kind="block", transport=transport, o_direct=o_direct,
                       allocated=True, size=1 << 30)


def prealloc(fs="ext4", o_direct=True, path="/var/lib/libvirt/images/a.raw") -> SourceFacts:
    return SourceFacts(path=path, kind="file", fs=fs, o_direct=o_direct, allocated=True,
                       size=1 << 30, allocated_bytes=1 << 30, virtual_size=1 << 30)


def sparse(fs="ext4", o_direct=True, path="/var/lib/libvirt/images/a.qcow2") -> SourceFacts:
    return SourceFacts(path=path, kind="file", fs=fs, o_direct=o_direct, allocated=False,
                       size=200 << 20, allocated_bytes=200 << 20, virtual_size=20 << 30)


def after(decision) -> tuple:
    return decision.io_after, decision.cache_after


# ---------------------------------------------------------------- classification sanity


def test_helpers_classify_like_the_planner():
    assert disk("block", source=block()).disk_class == "block"
    assert disk(source=prealloc()).disk_class == "file-preallocated"
    assert disk(source=sparse()).disk_class == "file-sparse"
    assert disk("network", has_source=True).disk_class == "network"
    assert disk(device="cdrom", has_source=False).disk_class == "empty"
    for t in ("nvme", "vhostuser", "vhostvdpa", "dir"):
        assert disk(t).disk_class == "other"
    assert disk("volume", volume=VolumeTarget("unknown", reason="pool gone")).disk_class == "unknown"
    assert disk(source=None).disk_class == "unknown"


# ---------------------------------------------------------------- default table, row by row


@pytest.mark.parametrize("io", [None, "native", "threads", "io_uring"])
@pytest.mark.parametrize("cache", [None, "none", "writeback"])
@pytest.mark.parametrize("facts", [
    pytest.param(lambda io, cache: disk("network", io=io, cache=cache, protocol="rbd"), id="network"),
    pytest.param(lambda io, cache: disk("nvme", io=io, cache=cache), id="nvme"),
    pytest.param(lambda io, cache: disk("vhostuser", io=io, cache=cache), id="vhostuser"),
    pytest.param(lambda io, cache: disk("vhostvdpa", io=io, cache=cache), id="vhostvdpa"),
    pytest.param(lambda io, cache: disk("dir", io=io, cache=cache, fmt="fat"), id="dir"),
    pytest.param(lambda io, cache: disk("volume", io=io, cache=cache,
                                       volume=VolumeTarget("unknown", reason="pool inactive")),
                 id="unresolved-volume"),
    pytest.param(lambda io, cache: disk("volume", io=io, cache=cache,
                                       volume=VolumeTarget("network", protocol="rbd")),
                 id="network-volume"),
])
def test_row_network_other_unresolved_volume_left_as_found(rules, facts, io, cache):
    f = facts(io, cache)
    d = decide(f, HOST, rules)
    if f.disk_class == "unknown" and io == "native" and cache not in CACHE_DIRECT:
        # native without O_DIRECT caching is impossible (QEMU refuses it): the
        # engine-level check corrects it even on an unknown source
        assert after(d) == ("threads", cache)
        return
    assert after(d) == (io, cache) and not d.changed


@pytest.mark.parametrize("device", ["cdrom", "floppy"])
@pytest.mark.parametrize("source", [prealloc(), sparse(), block(), None], ids=["prealloc", "sparse", "block", "empty"])
def test_row_removable_untouched(rules, device, source):
    typ = "block" if source is not None and source.kind == "block" else "file"
    f = disk(typ, device=device, source=source, has_source=source is not None, readonly=True)
    d = decide(f, HOST, rules)
    assert after(d) == (None, None) and not d.changed
    assert d.rule == "removable-or-empty"


def test_row_no_source_untouched(rules):
    f = disk("file", device="disk", has_source=False)
    assert f.disk_class == "empty"
    assert not decide(f, HOST, rules).changed


@pytest.mark.parametrize("cache", CACHE_HOST)
@pytest.mark.parametrize("source", [block(), prealloc(), sparse()], ids=["block", "prealloc", "sparse"])
def test_row_host_page_cache_not_native(rules, cache, source):
    typ = "block" if source.kind == "block" else "file"
    # unset io stays unset (QEMU's default, threads); cache kept
    d = decide(disk(typ, cache=cache, source=source), HOST, rules)
    assert after(d) == (None, cache)
    # explicit native is corrected to threads
    d = decide(disk(typ, io="native", cache=cache, source=source), HOST, rules)
    assert after(d) == ("threads", cache)
    # an explicit io_uring is kept where the host can
    d = decide(disk(typ, io="io_uring", cache=cache, source=source), HOST, rules)
    assert after(d) == ("io_uring", cache)
    # explicit threads kept
    assert after(decide(disk(typ, io="threads", cache=cache, source=source), HOST, rules)) == ("threads", cache)


@pytest.mark.parametrize("transport", ["lvm", "dm", "multipath", "iscsi", "fc", "nvme", "krbd",
                                       "nbd", "loop", "virtio", "scsi", None])
@pytest.mark.parametrize("device", ["disk", "lun"])
@pytest.mark.parametrize("cache", [None, "none", "directsync"])
def test_row_block_native(rules, transport, device, cache):
    f = disk("block", device=device, cache=cache, source=block(transport), bus="scsi" if device == "lun" else "virtio")
    d = decide(f, HOST, rules)
    assert after(d) == ("native", cache or "none")
    assert d.rule == "block-device"


def test_row_block_volume_native(rules):
    f = disk("volume", source=block("iscsi"), volume=VolumeTarget("block", path="/dev/vg0/lv0"))
    assert f.disk_class == "block"
    assert after(decide(f, HOST, rules)) == ("native", "none")


@pytest.mark.parametrize("fs", ["ext4", "xfs", "btrfs", "nfs4", "nfs", "tmpfs"])
@pytest.mark.parametrize("cache", [None, "none", "directsync"])
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_row_preallocated_with_o_direct_native(rules, fs, cache, fmt):
    d = decide(disk(source=prealloc(fs), cache=cache, fmt=fmt), HOST, rules)
    assert after(d) == ("native", cache or "none")
    assert d.rule == "preallocated-image"


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
@pytest.mark.parametrize("cache", [None, "none", "directsync", "writeback"])
def test_row_sparse_never_native_even_when_xml_says_native(rules, fmt, cache):
    # io_uring where usable (benchmarks/calibrate-results.md), unless the host page cache rule came first
    best = None if cache == "writeback" else "io_uring"
    d = decide(disk(source=sparse(), cache=cache, fmt=fmt), HOST, rules)
    assert after(d) == (best, cache)
    for name, host in NO_URING_HOSTS.items():
        d = decide(disk(source=sparse(), cache=cache, fmt=fmt), host, rules)
        assert after(d) == (None, cache), name  # unset = QEMU's default, threads; nothing added
    # an explicit native is corrected to what the same disk gets without an io (issue 15),
    # written out: threads where that is QEMU's default
    d = decide(disk(source=sparse(), io="native", cache=cache, fmt=fmt), HOST, rules)
    assert after(d) == (best or "threads", cache)
    assert any(v.check == "native-not-on-sparse" for v in d.vetoes)
    for name, host in NO_URING_HOSTS.items():
        d = decide(disk(source=sparse(), io="native", cache=cache, fmt=fmt), host, rules)
        assert after(d) == ("threads", cache), name


@pytest.mark.parametrize("source", [prealloc("cifs", o_direct=False), sparse("fuse.s3fs", o_direct=False),
                                    block("nbd", o_direct=False)], ids=["prealloc-cifs", "sparse-s3fs", "block"])
@pytest.mark.parametrize("cache", [None, "none", "writeback"])
def test_row_no_o_direct_threads(rules, source, cache):
    typ = "block" if source.kind == "block" else "file"
    d = decide(disk(typ, source=source, cache=cache), HOST, rules)
    assert after(d) == (None, cache)  # no native, no cache=none added
    d = decide(disk(typ, source=source, cache=cache, io="native"), HOST, rules)
    assert after(d) == ("threads", cache)


@pytest.mark.parametrize("source, missing", [
    (None, "source not probed"),
    (SourceFacts("/a", kind="missing"), "does not exist"),
    (SourceFacts("/a", kind="unknown", error="timed out after 2.0 s"), "timed out"),
    (SourceFacts("/a", kind="file", fs="ext4", o_direct=True, error="FIEMAP failed"), "allocation unknown"),
])
@pytest.mark.parametrize("io, cache", [(None, None), ("native", "none"), ("threads", "writeback")])
def test_row_unknown_untouched_reason_names_missing_fact(rules, source, missing, io, cache):
    f = disk(source=source, io=io, cache=cache)
    assert f.disk_class == "unknown"
    d = decide(f, HOST, rules)
    assert after(d) == (io, cache) and not d.changed
    assert missing in d.reason


def test_row_unknown_impossible_native_corrected(rules):
    f = disk(source=SourceFacts("/a", kind="unknown"), io="native", cache="writeback")
    assert after(decide(f, HOST, rules)) == ("threads", "writeback")


def test_row_unresolved_volume_reason(rules):
    f = disk("volume", volume=VolumeTarget("unknown", reason="pool 'scratch' not found"))
    assert "pool 'scratch' not found" in decide(f, HOST, rules).reason


@pytest.mark.parametrize("io", ["native", "threads", "io_uring"])
@pytest.mark.parametrize("source", [block(), prealloc()], ids=["block", "prealloc"])
def test_explicit_io_kept_when_safe(rules, io, source):
    typ = "block" if source.kind == "block" else "file"
    d = decide(disk(typ, source=source, io=io, cache="none"), HOST, rules)
    assert after(d) == (io, "none") and not d.changed


@pytest.mark.parametrize("name", sorted(NO_URING_HOSTS))
@pytest.mark.parametrize("source, best", [(block(), "native"), (prealloc(), "native"),
                                          (sparse(), "threads")], ids=["block", "prealloc", "sparse"])
def test_explicit_io_uring_corrected_where_impossible(rules, name, source, best):
    # what the rules give the disk without an io: native where it is known safe
    typ = "block" if source.kind == "block" else "file"
    d = decide(disk(typ, source=source, io="io_uring", cache="none"), NO_URING_HOSTS[name], rules)
    assert after(d) == (best, "none")
    assert any(v.check == "io_uring-needs-support" for v in d.vetoes)


def test_explicit_native_without_direct_cache_corrected(rules):
    d = decide(disk(source=prealloc(), io="native", cache=None), HOST, rules)
    assert d.io_after != "native" and d.cache_after is None


# ---------------------------------------------------------------- safety checks, engine level

EVERYTHING_NATIVE = """\
version: 1
rules:
  - name: all-native
    description: asks for native everywhere, with cache none
    action: {io: native, cache: none}
"""
EVERYTHING_NATIVE_NO_CACHE = """\
version: 1
rules:
  - name: all-native
    description: asks for native everywhere, may not touch cache
    action: {io: [native, io_uring]}
"""


def test_native_without_direct_cache_takes_next_preference():
    rs = _rules(EVERYTHING_NATIVE_NO_CACHE)
    f = disk("block", source=block(), cache="writeback")
    d = decide(f, HOST, rs)
    assert after(d) == ("io_uring", "writeback")
    assert [v.check for v in d.vetoes] == ["native-needs-direct-cache"]


@pytest.mark.parametrize("name", sorted(NO_URING_HOSTS))
def test_native_without_direct_cache_then_threads(name):
    rs = _rules(EVERYTHING_NATIVE_NO_CACHE)
    d = decide(disk("block", source=block(), cache="writeback", io="native"), NO_URING_HOSTS[name], rs)
    assert after(d) == ("threads", "writeback")
    d = decide(disk("block", source=block(), cache="writeback"), NO_URING_HOSTS[name], rs)
    assert d.io_after in (None, "threads") and d.cache_after == "writeback"  # unset is threads


def test_native_with_rule_set_cache():
    d = decide(disk("block", source=block(), cache="writeback"), HOST, _rules(EVERYTHING_NATIVE))
    assert after(d) == ("native", "none")


@pytest.mark.parametrize("rules_text", [EVERYTHING_NATIVE, EVERYTHING_NATIVE_NO_CACHE])
@pytest.mark.parametrize("io", [None, "native", "threads"])
def test_native_on_sparse_corrected_even_when_explicit(rules_text, io):
    d = decide(disk(source=sparse(), io=io, cache="none"), HOST, _rules(rules_text))
    assert d.io_after != "native"
    if io == "native":
        assert d.io_after == "threads" or d.io_after == "io_uring"


def test_native_on_sparse_pinned_is_refused(rules):
    d = decide(disk(source=sparse(), cache="none"), HOST, rules, pin="native")
    assert d.io_after in (None, "threads") and d.rule == PIN_RULE
    assert any(v.check == "native-not-on-sparse" for v in d.vetoes)


@pytest.mark.parametrize("name", sorted(NO_URING_HOSTS))
def test_io_uring_never_on_unsupported_host(name):
    rs = _rules("version: 1\nrules:\n  - name: u\n    description: d\n    action: {io: io_uring}\n")
    host = NO_URING_HOSTS[name]
    for source in (block(), prealloc(), sparse()):
        typ = "block" if source.kind == "block" else "file"
        d = decide(disk(typ, source=source, cache="none"), host, rs)
        assert d.io_after != "io_uring"
        assert any(v.check == "io_uring-needs-support" for v in d.vetoes)
    assert decide(disk("block", source=block()), HOST, rs).io_after == "io_uring"


@pytest.mark.parametrize("make", [
    pytest.param(lambda: disk("network", protocol="rbd"), id="network"),
    pytest.param(lambda: disk("nvme"), id="nvme"),
    pytest.param(lambda: disk("vhostuser"), id="vhostuser"),
    pytest.param(lambda: disk("vhostvdpa"), id="vhostvdpa"),
    pytest.param(lambda: disk("dir", fmt="fat"), id="dir"),
    pytest.param(lambda: disk("file", device="cdrom", has_source=False), id="empty-cdrom"),
    pytest.param(lambda: disk("block", has_source=False), id="empty-block"),
])
@pytest.mark.parametrize("rules_text", [
    EVERYTHING_NATIVE, EVERYTHING_NATIVE_NO_CACHE,
    "version: 1\nrules:\n  - name: t\n    description: d\n    action: {io: threads}\n",
    "version: 1\nrules:\n  - name: t\n    description: d\n    action: {io: [io_uring, threads]}\n",
])
def test_no_io_added_where_it_has_no_effect(make, rules_text):
    d = decide(make(), HOST, _rules(rules_text))
    assert d.io_after is None
    d = decide(make(), HOST, _rules(rules_text), pin="native")
    assert d.io_after is None


def test_no_io_changed_where_it_has_no_effect():
    f = disk("network", io="native", cache="writeback", protocol="rbd")
    d = decide(f, HOST, _rules(EVERYTHING_NATIVE_NO_CACHE), pin="threads")
    assert d.io_after == "native"


@pytest.mark.parametrize("source", [prealloc("cifs", o_direct=False), block(o_direct=False),
                                    sparse("fuse.s3fs", o_direct=False)], ids=["cifs", "block", "s3fs"])
@pytest.mark.parametrize("action", ["{io: native, cache: none}", "{io: native, cache: directsync}",
                                    "{io: native, cache_if_unset: none}", "{io: keep, cache: none}",
                                    "{io: threads, cache_if_unset: directsync}"])
def test_direct_cache_never_set_without_o_direct(source, action):
    rs = _rules(f"version: 1\nrules:\n  - name: t\n    description: d\n    action: {action}\n")
    typ = "block" if source.kind == "block" else "file"
    d = decide(disk(typ, source=source), HOST, rs)
    assert d.cache_after is None
    assert d.io_after != "native"
    assert any(v.check == "direct-cache-needs-o-direct" for v in d.vetoes)


def test_direct_cache_kept_when_already_in_xml_without_o_direct():
    """An existing cache=none is the operator's; aiohook only refuses to add it."""
    d = decide(disk(source=prealloc("cifs", o_direct=False), cache="none"), HOST, _rules(EVERYTHING_NATIVE))
    assert d.cache_after == "none" and d.io_after != "native"


def test_native_only_added_where_known_safe():
    rs = _rules(EVERYTHING_NATIVE)
    f = disk(source=SourceFacts("/a", kind="unknown"), cache="none")
    assert f.disk_class == "unknown"
    d = decide(f, HOST, rs)
    assert d.io_after != "native"
    assert any(v.check == "native-only-where-known-safe" for v in d.vetoes)


def test_every_safety_check_has_a_test():
    names = {c.name for c in CHECKS}
    assert names == {"no-io-without-effect", "direct-cache-needs-o-direct", "native-needs-direct-cache",
                     "native-needs-o-direct", "native-not-on-sparse", "native-only-where-known-safe",
                     "io_uring-needs-support"}


def test_where_io_has_no_effect_only_the_no_effect_check_judges():
    from aiohook.policy.safety import NO_EFFECT_CHECK, applicable

    assert applicable(disk("network", has_source=False, protocol="rbd")) == (NO_EFFECT_CHECK,)
    assert applicable(disk("block", source=block())) == CHECKS


def test_calibration_candidates_are_what_the_engine_allows():
    """calibrate's "best" filter asks the engine: every class, cache and mode agree."""
    from aiohook.calibrate.runner import mode_allowed
    from aiohook.policy.safety import Candidate, refusals

    caps = {"native": True, "io_uring": True}
    for cls in ("block", "file-preallocated", "file-sparse"):
        for cache in ("none", "directsync", "writeback"):
            facts = DiskFacts("cal", None, "block" if cls == "block" else "file", "disk",
                              cache=cache, disk_class=cls)
            for mode in ("native", "threads", "io_uring"):
                refused = refusals(Candidate(mode, cache), facts, HOST)
                ok, why = mode_allowed(mode, cls, cache, caps)
                assert ok == (not refused), (cls, cache, mode)
                assert why == (refused[0][1] if refused else "")


def test_native_needs_o_direct_even_with_cache_none_in_xml():
    d = decide(disk("block", source=block(o_direct=False), cache="none", io="native"), HOST,
               _rules(EVERYTHING_NATIVE))
    assert d.io_after == "threads"
    assert any(v.check == "native-needs-o-direct" for v in d.vetoes)


# ---------------------------------------------------------------- metadata overrides


@pytest.mark.parametrize("f", [
    disk(source=sparse(), io="native", cache="none"),
    disk("block", source=block(), cache=None),
    disk(source=prealloc(), io="native", cache="writeback"),
])
def test_metadata_skip_leaves_everything(rules, f):
    d = decide(f, HOST, rules, skip=True)
    assert after(d) == (f.io, f.cache) and d.rule == SKIP_RULE and not d.changed


def test_metadata_skip_wins_over_pin(rules):
    d = decide(disk("block", source=block()), HOST, rules, skip=True, pin="native")
    assert d.rule == SKIP_RULE and not d.changed


@pytest.mark.parametrize("pin, expect", [("threads", ("threads", "none")), ("keep", ("native", "none")),
                                         ("io_uring", ("io_uring", "none"))])
def test_metadata_pin(rules, pin, expect):
    f = disk("block", source=block(), io="native", cache="none")
    d = decide(f, HOST, rules, pin=pin)
    assert after(d) == expect and d.rule == PIN_RULE


def test_metadata_pin_native_never_sets_cache(rules):
    d = decide(disk("block", source=block(), cache=None), HOST, rules, pin="native")
    assert d.cache_after is None and d.io_after != "native"  # a pin only sets io
    d = decide(disk("block", source=block(), cache="directsync"), HOST, rules, pin="native")
    assert after(d) == ("native", "directsync")


def test_metadata_pin_io_uring_on_host_without(rules):
    d = decide(disk("block", source=block(), cache="none"), NO_URING_HOSTS["kernel-disabled"], rules,
               pin="io_uring")
    assert d.io_after in (None, "threads")


# ---------------------------------------------------------------- preference lists

PREF = """\
version: 1
rules:
  - name: pref
    description: io_uring, else native, else threads
    action: {io: [io_uring, native, threads], cache_if_unset: none}
"""


def test_preference_first_usable_wins():
    rs = _rules(PREF)
    assert after(decide(disk("block", source=block()), HOST, rs)) == ("io_uring", "none")
    no_uring = NO_URING_HOSTS["kernel-disabled"]
    assert after(decide(disk("block", source=block()), no_uring, rs)) == ("native", "none")
    assert after(decide(disk(source=sparse()), no_uring, rs)) == ("threads", "none")
    assert after(decide(disk(source=sparse(), cache="writeback"), no_uring, rs)) == ("threads", "writeback")
    assert after(decide(disk(source=prealloc("cifs", o_direct=False)), no_uring, rs)) == ("threads", None)


def test_preference_all_refused_falls_back_safely():
    rs = _rules("version: 1\nrules:\n  - name: p\n    description: d\n    action: {io: [native, io_uring]}\n")
    no_uring = NO_URING_HOSTS["kernel-unknown"]
    d = decide(disk(source=sparse(), io="native", cache="none"), no_uring, rs)
    assert d.io_after == "threads"
    d = decide(disk(source=sparse(), io=None, cache="none"), no_uring, rs)
    assert d.io_after is None  # kept as found: unset is already threads


def test_rule_order_first_match_wins():
    rs = _rules("""\
version: 1
rules:
  - name: a
    description: first
    match: {class: block}
    action: {io: threads}
  - name: b
    description: second
    match: {class: block}
    action: {io: native, cache_if_unset: none}
""")
    d = decide(disk("block", source=block()), HOST, rs)
    assert d.rule == "a" and d.io_after == "threads"


def test_no_rule_matched_leaves_as_found():
    rs = _rules("version: 1\nrules:\n  - name: a\n    description: d\n    match: {class: network}\n    action: {io: threads}\n")
    d = decide(disk("block", source=block(), io="native", cache="writeback"), HOST, rs)
    assert d.rule == NO_RULE and not d.changed


def test_resolve_keep_and_unset():
    f = disk("block", source=block(), io="threads", cache="none")
    assert resolve(f, HOST, Action(("keep",)), "r", "d").io_after == "threads"
    assert resolve(f, HOST, Action(("unset",)), "r", "d").io_after is None


# ---------------------------------------------------------------- a refused explicit io (issue 15)

PROFILES = ("default", "io_uring", "conservative")


@pytest.fixture(scope="module")
def profiles():
    from aiohook.policy.loader import load_ruleset

    return {name: load_ruleset(name, use_cache=False) for name in PROFILES}


@pytest.mark.parametrize("profile, with_uring, without_uring", [
    ("default", "io_uring", "threads"),
    ("io_uring", "io_uring", "threads"),
    ("conservative", "threads", "threads"),
])
@pytest.mark.parametrize("cache", [None, "none"])
def test_explicit_native_on_sparse_lands_on_the_rules_choice(profiles, profile, with_uring,
                                                             without_uring, cache):
    """The migration case: --copy-storage-all onto a sparse image, io='native' in the XML."""
    f = disk(source=sparse(), io="native", cache=cache)
    assert after(decide(f, HOST, profiles[profile])) == (with_uring, cache)
    for name, host in NO_URING_HOSTS.items():
        assert after(decide(f, host, profiles[profile])) == (without_uring, cache), name


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("host", [HOST, *NO_URING_HOSTS.values()])
@pytest.mark.parametrize("io", ["native", "io_uring"])
@pytest.mark.parametrize("cache", [None, "none", "writeback"])
@pytest.mark.parametrize("source", [block(), block("loop"), prealloc(), sparse(),
                                    prealloc("cifs", o_direct=False)],
                         ids=["block", "loop", "prealloc", "sparse", "cifs"])
def test_corrected_io_is_what_the_disk_gets_without_one(profiles, profile, host, io, cache, source):
    typ = "block" if source.kind == "block" else "file"
    f = disk(typ, source=source, io=io, cache=cache)
    d = decide(f, host, profiles[profile])
    if d.io_after == io:
        return  # kept: safe
    bare = decide(disk(typ, source=source, cache=cache), host, profiles[profile])
    if bare.cache_after == cache or bare.io_after in (None, "threads", "io_uring"):
        assert d.io_after == (bare.io_after or "threads")
    else:  # the rules would also set cache=none for native: the correction changes io only
        assert d.io_after == "threads"
    assert d.cache_after == cache


def test_reason_says_what_was_refused_and_why_the_replacement(rules):
    f = disk(source=sparse(), io="native", cache="none")
    d = decide(f, HOST, rules)
    assert d.rule == "explicit-io" and d.replaced_by == "sparse-image"
    assert "native refused: native on a sparse image" in d.reason
    assert "| io_uring instead: what rule 'sparse-image' gives this disk when the XML sets no io" in d.reason
    d = decide(f, NO_URING_HOSTS["kernel-disabled"], rules)
    assert d.io_after == "threads" and d.replaced_by == "sparse-image"
    assert "| threads instead, QEMU's default: what rule 'sparse-image' gives" in d.reason
    assert "io_uring refused: io_uring is not usable on this host/QEMU" in d.reason
    assert [v.check for v in d.vetoes][-1] == "io_uring-needs-support"


def test_correction_changes_io_only(rules):
    # without an io the rules give native with cache=none; the kept cache (unset) refuses native
    d = decide(disk(source=prealloc(), io="native", cache=None), HOST, rules)
    assert after(d) == ("threads", None) and d.replaced_by == "preallocated-image"
    assert ("| threads instead, QEMU's default: rule 'preallocated-image' gives this disk native "
            "with cache none when the XML sets no io, and a correction changes io only") in d.reason


def test_correction_without_a_deciding_rule_is_threads():
    rs = _rules("version: 1\nrules:\n  - name: k\n    description: d\n    match: {io: native}\n"
                "    action: {io: keep}\n")
    d = decide(disk(source=sparse(), io="native", cache="none"), HOST, rs)
    assert after(d) == ("threads", "none") and d.replaced_by is None
    assert "no rule decides this disk when the XML sets no io" in d.reason
    # resolve() without a ruleset (lint's use) lands on threads as well
    f = disk(source=sparse(), io="native", cache="none")
    assert resolve(f, HOST, Action(("keep",)), "r", "d").io_after == "threads"


def test_refused_pin_on_explicit_io_lands_on_the_rules_choice(rules):
    d = decide(disk(source=sparse(), io="native", cache="none"), HOST, rules, pin="native")
    assert after(d) == ("io_uring", "none") and d.rule == PIN_RULE

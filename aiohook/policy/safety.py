"""Engine-level safety checks: no rule, profile or metadata pin can override them.

Each check looks at one candidate outcome (io, cache) for a disk and returns
why it is refused, or None.
"""

from __future__ import annotations

from aiohook.facts import IO_CAPABLE_TYPES, O_DIRECT_CACHES, version_tuple
from aiohook.record import FrozenRecord, _set

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from aiohook.facts import DiskFacts, HostFacts

# Classes where io= has no effect (or no source to act on): io stays as found.
NO_IO_EFFECT_CLASSES = ("network", "other", "empty")
NATIVE_SAFE_CLASSES = ("block", "file-preallocated")


class Candidate(FrozenRecord):
    FIELDS = ("io", "cache")

    def __init__(self, io: str | None, cache: str | None):
        _set(self, "io", io)
        _set(self, "cache", cache)


class SafetyCheck(FrozenRecord):
    FIELDS = ("name", "doc", "refuse")

    def __init__(self, name: str, doc: str,
                 refuse: Callable[[Candidate, DiskFacts, HostFacts], str | None]):
        _set(self, "name", name)
        _set(self, "doc", doc)
        _set(self, "refuse", refuse)


def io_has_effect(facts: DiskFacts) -> bool:
    return facts.type in IO_CAPABLE_TYPES and facts.disk_class not in NO_IO_EFFECT_CLASSES


def _no_io_without_effect(c, f, h):
    if not io_has_effect(f) and c.io != f.io:
        return f"io has no effect on a {f.disk_class} disk of type {f.type}: left as found"
    return None


def _native_needs_direct_cache(c, f, h):
    if c.io == "native" and c.cache not in O_DIRECT_CACHES:
        return f"native needs cache none or directsync (O_DIRECT), cache is {c.cache or 'unset'}"
    return None


def _native_needs_o_direct(c, f, h):
    if c.io == "native" and f.o_direct is False:
        return "native needs O_DIRECT, which the source refused"
    return None


def _native_not_on_sparse(c, f, h):
    if c.io == "native" and f.disk_class == "file-sparse":
        return "native on a sparse image blocks QEMU on allocation (and risked corruption)"
    return None


def _native_added_only_where_known_safe(c, f, h):
    if c.io == "native" and f.io != "native" and f.disk_class not in NATIVE_SAFE_CLASSES:
        return f"native is only added to {' or '.join(NATIVE_SAFE_CLASSES)} disks, not {f.disk_class}"
    return None


def _io_uring_needs_support(c, f, h):
    if c.io == "io_uring" and not h.io_uring_usable():
        return "io_uring is not usable on this host/QEMU " + _io_uring_why(h)
    return None


def _io_uring_why(h: HostFacts) -> str:
    if h.io_uring is None:
        return "(kernel support unknown)"
    if h.io_uring is False:
        return "(kernel.io_uring_disabled forbids it)"
    if h.qemu_io_uring is False:
        return "(QEMU built without liburing)"
    if h.libvirt_version and version_tuple(h.libvirt_version) < (6, 3):
        return f"(libvirt {h.libvirt_version} is older than 6.3)"
    return f"(QEMU {h.qemu_version} is older than 5.0)"


def _direct_cache_needs_o_direct(c, f, h):
    if c.cache in O_DIRECT_CACHES and c.cache != f.cache and f.o_direct is False:
        return f"cache {c.cache} needs O_DIRECT, which the source refused"
    return None


NO_EFFECT_CHECK = SafetyCheck(
    "no-io-without-effect", "io is never added or changed where QEMU ignores it (network, nvme, "
    "vhostuser, vhostvdpa, dir, empty drives).", _no_io_without_effect)
DIRECT_CACHE_NEEDS_O_DIRECT = SafetyCheck(
    "direct-cache-needs-o-direct", "cache none/directsync is never set on a source that refuses "
    "O_DIRECT.", _direct_cache_needs_o_direct)
NATIVE_NEEDS_DIRECT_CACHE = SafetyCheck(
    "native-needs-direct-cache", "native only with cache none or directsync (libvirt and QEMU "
    "refuse it otherwise).", _native_needs_direct_cache)
NATIVE_NEEDS_O_DIRECT = SafetyCheck(
    "native-needs-o-direct", "native only where O_DIRECT works.", _native_needs_o_direct)
NATIVE_NOT_ON_SPARSE = SafetyCheck(
    "native-not-on-sparse", "native never on a sparse image.", _native_not_on_sparse)
NATIVE_ONLY_WHERE_KNOWN_SAFE = SafetyCheck(
    "native-only-where-known-safe", "native is only added to block devices and preallocated "
    "files.", _native_added_only_where_known_safe)
IO_URING_NEEDS_SUPPORT = SafetyCheck(
    "io_uring-needs-support", "io_uring only where the kernel and QEMU allow it.",
    _io_uring_needs_support)

CACHE_CHECKS: tuple[SafetyCheck, ...] = (DIRECT_CACHE_NEEDS_O_DIRECT,)
IO_CHECKS: tuple[SafetyCheck, ...] = (
    NATIVE_NEEDS_DIRECT_CACHE,
    NATIVE_NEEDS_O_DIRECT,
    NATIVE_NOT_ON_SPARSE,
    NATIVE_ONLY_WHERE_KNOWN_SAFE,
    IO_URING_NEEDS_SUPPORT,
)
CHECKS = (NO_EFFECT_CHECK,) + CACHE_CHECKS + IO_CHECKS


def applicable(facts: DiskFacts, checks: tuple[SafetyCheck, ...] = CHECKS) -> tuple[SafetyCheck, ...]:
    """The checks that judge this disk: where io has no effect, only the no-effect
    check applies (libvirt judges the rest)."""
    if io_has_effect(facts):
        return checks
    return tuple(c for c in checks if c is NO_EFFECT_CHECK)


def refusals(candidate: Candidate, facts: DiskFacts, host: HostFacts,
             checks: tuple[SafetyCheck, ...] = CHECKS) -> list[tuple[SafetyCheck, str]]:
    """(check, why) for every applicable check that refuses the candidate."""
    out = []
    for check in applicable(facts, checks):
        why = check.refuse(candidate, facts, host)
        if why:
            out.append((check, why))
    return out

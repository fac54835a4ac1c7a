"""RecordedProbe: the facts file contract, its errors (file:line), and dump round-trip."""

from __future__ import annotations

import os
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiohook.errors import EXIT_BAD_FACTS, FactsError, FileAccessError
from aiohook.facts import HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe.recorded import RecordedProbe, dump_facts, parse_facts

EXAMPLE = """\
version: 1
host: {io_uring: true, qemu_version: "7.2.0"}
sources:
  /var/lib/libvirt/images/a.qcow2: {kind: file, allocated: false, fs: ext4, o_direct: true}
  /dev/sdb: {kind: block, transport: iscsi, o_direct: true}
volumes:
  default/vm1.qcow2: {kind: file, path: /var/lib/libvirt/images/vm1.qcow2}
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "facts.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_example_from_the_contract(tmp_path):
    probe = RecordedProbe(write(tmp_path, EXAMPLE))
    host = probe.host_facts("/usr/bin/qemu-system-x86_64")
    assert host.io_uring is True and host.qemu_version == "7.2.0" and host.aio_nr is None
    facts = probe.source_facts(
        [SourceRequest("/var/lib/libvirt/images/a.qcow2", "qcow2"), SourceRequest("/dev/sdb")]
    )
    a = facts["/var/lib/libvirt/images/a.qcow2"]
    assert (a.kind, a.allocated, a.fs, a.o_direct) == ("file", False, "ext4", True)
    assert facts["/dev/sdb"].transport == "iscsi"
    assert probe.resolve_volume("default", "vm1.qcow2") == VolumeTarget(
        kind="file", path="/var/lib/libvirt/images/vm1.qcow2"
    )


def test_unrecorded_source_is_unknown_and_never_probed(tmp_path):
    facts_file = write(tmp_path, EXAMPLE)
    probe = RecordedProbe(facts_file)
    # /etc/hostname exists on the host; a recorded probe must not look at it.
    got = probe.source_facts([SourceRequest("/etc/hostname")])["/etc/hostname"]
    assert got.kind == "unknown"
    assert got.error == f"not in recorded facts {facts_file}"
    assert got.size is None
    volume = probe.resolve_volume("default", "other")
    assert volume.kind == "unknown" and facts_file in volume.reason


def test_results_are_copies(tmp_path):
    probe = RecordedProbe(write(tmp_path, EXAMPLE))
    first = probe.source_facts([SourceRequest("/dev/sdb")])["/dev/sdb"]
    first.kind = "changed"
    assert probe.source_facts([SourceRequest("/dev/sdb")])["/dev/sdb"].kind == "block"


@pytest.mark.parametrize("text,line,message", [
    ("version: 1\nrecorded_by: someone\n", 2,
     "facts file: unknown key 'recorded_by'; known keys: version, host, sources, volumes"),
    ("version: 1\nhost: {io_uring: false, future_key: [1, 2]}\n", 2,
     "host: unknown key 'future_key'"),
    ("version: 1\nsources:\n  /a: {kind: file, alocated: false}\n", 3,
     "source /a: unknown key 'alocated' (did you mean 'allocated'?)"),
    ("version: 1\nsources:\n  /a:\n    kind: file\n    newer_fact: 3\n", 5,
     "source /a: unknown key 'newer_fact'"),
    ("version: 1\nvolumes:\n  p/v: {kind: file, pth: /x}\n", 3,
     "volume p/v: unknown key 'pth' (did you mean 'path'?)"),
    ("version: 2\nrecorded_by: someone\n", 1, "unsupported facts version 2"),  # version first
])
def test_unknown_keys_are_errors_in_both_parsers(tmp_path, monkeypatch, text, line, message):
    """A mistyped fact is never silently ignored (issue 12, item 3): the fast
    event parser gives up and the node walker names the key and its line."""
    from aiohook.probe import recorded

    assert recorded._parse_fast(text) is None
    path = write(tmp_path, text)
    with pytest.raises(FactsError) as err:
        RecordedProbe(path)
    assert err.value.one_line().startswith(f"{path}:{line}: "), err.value.one_line()
    assert message in err.value.message, err.value.one_line()


def test_empty_sections_and_nulls(tmp_path):
    probe = RecordedProbe(
        write(tmp_path, "version: 1\nhost:\nsources:\n  /a: {kind: missing, fs: null}\nvolumes:\n")
    )
    assert probe.host_facts(None) == HostFacts()
    assert probe.source_facts([SourceRequest("/a")])["/a"] == SourceFacts(path="/a", kind="missing")


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("host: {}\n", 1, "missing 'version: 1'"),
        ("version: 2\n", 1, "unsupported facts version 2"),
        ("version: 1\nhost:\n  io_uring: yes please\n", 3, "io_uring must be true or false"),
        ("version: 1\nhost:\n  qemu_version: 7.2\n", 3, "(quote it)"),
        ("version: 1\nhost: {aio_nr: -1}\n", 2, "must not be negative"),
        ("version: 1\nhost: {aio_nr: true}\n", 2, "aio_nr must be an integer"),
        ("version: 1\nsources:\n  /a: {kind: disk}\n", 3, "kind must be one of"),
        ("version: 1\nsources:\n  /a: {fs: ext4}\n", 3, "kind must be one of"),
        ("version: 1\nsources:\n  rel/a: {kind: file}\n", 3, "not an absolute path"),
        ("version: 1\nsources:\n  /a: {kind: file}\n  /a: {kind: block}\n", 4, "duplicate key"),
        ("version: 1\nsources:\n  /a: [file]\n", 3, "must be a mapping"),
        ("version: 1\nsources:\n\n\n  /a: {kind: file, size: big}\n", 5, "size must be an integer"),
        ("version: 1\nvolumes:\n  novolume: {kind: file}\n", 3, "must be POOL/VOLUME"),
        ("version: 1\nvolumes:\n  p/v: {kind: nfs}\n", 3, "kind must be one of"),
        ("version: 1\nsources: {/a: {kind: file}\n", 3, "invalid YAML"),
        ("version: 1\n  bad indent: 2\n", 2, "invalid YAML"),
        ("- version\n", 1, "facts file must be a mapping"),
        ("version: 1\n---\nversion: 1\n", 2, "invalid YAML"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(FactsError) as caught:
        RecordedProbe(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words in message
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_BAD_FACTS


def test_empty_and_binary_files(tmp_path):
    empty = write(tmp_path, "")
    with pytest.raises(FactsError, match="empty facts file"):
        RecordedProbe(empty)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"version: 1\n\xff\xfe\n")
    with pytest.raises(FactsError, match="not UTF-8"):
        RecordedProbe(str(binary))


def test_unreadable_file_is_an_io_error(tmp_path):
    with pytest.raises(FileAccessError, match="cannot read facts file"):
        RecordedProbe(str(tmp_path / "nope.yaml"))
    with pytest.raises(FileAccessError):
        RecordedProbe(str(tmp_path))  # a directory


def test_dump_example_round_trip(tmp_path):
    host, sources, volumes = parse_facts(EXAMPLE)
    text = dump_facts(host, sources, volumes)
    assert "/dev/sdb: {kind: block, o_direct: true, transport: iscsi}" in text
    assert parse_facts(text) == (host, sources, volumes)


# Paths as a domain XML may spell them: anything absolute, including YAML-special text.
_paths = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=0, max_size=30).map(
    lambda s: "/" + s
)
_opt_int = st.none() | st.integers(min_value=0, max_value=1 << 62)
_opt_bool = st.none() | st.booleans()
_opt_text = st.none() | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_source = st.builds(
    SourceFacts,
    path=st.just("/"),
    kind=st.sampled_from(["file", "block", "missing", "unknown"]),
    resolved=_opt_text,
    size=_opt_int,
    allocated_bytes=_opt_int,
    virtual_size=_opt_int,
    allocated=_opt_bool,
    fs=_opt_text,
    o_direct=_opt_bool,
    transport=_opt_text,
    error=_opt_text,
)
_host = st.builds(
    HostFacts,
    io_uring=_opt_bool,
    qemu_version=_opt_text,
    qemu_io_uring=_opt_bool,
    libvirt_version=_opt_text,
    aio_max_nr=_opt_int,
    aio_nr=_opt_int,
)


@settings(max_examples=80, deadline=None)
@given(host=_host, sources=st.dictionaries(_paths, _source, max_size=4))
def test_dump_then_read_round_trips(tmp_path_factory, host, sources):
    sources = {
        path: SourceFacts(**{**facts.__dict__, "path": path}) for path, facts in sources.items()
    }
    volumes = {("default", "vm 1.qcow2"): VolumeTarget(kind="network", protocol="rbd")}
    path = os.path.join(tmp_path_factory.mktemp("facts"), "facts.yaml")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(dump_facts(host, sources, volumes))
    probe = RecordedProbe(path)
    assert probe.host_facts(None) == host
    assert probe.source_facts([SourceRequest(p) for p in sources]) == sources
    assert probe.resolve_volume("default", "vm 1.qcow2") == volumes[("default", "vm 1.qcow2")]

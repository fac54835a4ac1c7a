"""Answer probes from a recorded facts YAML file (written by `aiohook facts`).

Format (version 1; a key not listed here is an error naming file:line, so a
mistyped fact is never silently ignored; a new fact needs a new version):

    version: 1
    host: {io_uring: true, qemu_version: "7.2.0"}
    sources:
      /var/lib/libvirt/images/a.qcow2: {kind: file, allocated: false, fs: ext4, o_direct: true}
      /dev/sdb: {kind: block, transport: iscsi, o_direct: true}
    volumes:
      default/vm1.qcow2: {kind: file, path: /var/lib/libvirt/images/vm1.qcow2}

Keys are type-checked; a bad file raises FactsError naming file:line and the key.
These files are machine-written and a fleet's is 100k sources, so they have their
own readers (an event-stream fast path, a node walker naming the errors) rather
than config's loader (aiohook/config.py), whose LocatedYAML and jsonschema pass
would cost seconds and hundreds of MiB at that size.
A source that is not in the file is never probed: it is kind 'unknown'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from aiohook.errors import FactsError, FileAccessError
from aiohook.facts import HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe import DEFAULT_PROBE_BUDGET_S

FACTS_VERSION = 1
MAX_FACTS_BYTES = 64 << 20  # a fleet: ~300k sources in the format `aiohook facts` writes
SOURCE_KINDS = ("file", "block", "missing", "unknown")
VOLUME_KINDS = ("file", "block", "network", "unknown")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# key -> accepted types (None is always accepted for optional keys)
_HOST_KEYS = {
    "io_uring": bool,
    "qemu_version": str,
    "qemu_io_uring": bool,
    "libvirt_version": str,
    "aio_max_nr": int,
    "aio_nr": int,
}
_SOURCE_KEYS = {
    "kind": str,
    "resolved": str,
    "size": int,
    "allocated_bytes": int,
    "virtual_size": int,
    "allocated": bool,
    "fs": str,
    "o_direct": bool,
    "transport": str,
    "error": str,
}
_VOLUME_KEYS = {"kind": str, "path": str, "protocol": str, "reason": str}
_TOP_KEYS = ("version", "host", "sources", "volumes")
_TYPE_NAMES = {bool: "true or false", int: "an integer", str: "a string"}


class _Collection:
    """Stands for a YAML sequence or mapping where a scalar is expected."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return self.kind


class _Reader:
    """Walks the composed YAML node tree so every error carries a line number."""

    def __init__(self, filename: str, loader):
        self.filename = filename
        self.loader = loader

    def fail(self, node: yaml.Node | None, message: str) -> FactsError:
        line = node.start_mark.line + 1 if node is not None else None
        return FactsError(message, file=self.filename, line=line)

    def mapping(self, node: yaml.Node, what: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        seen: set[str] = set()
        items = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, f"{what}: keys must be strings")
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what}: keys must be strings, got {key!r}")
            if key in seen:
                raise self.fail(key_node, f"{what}: duplicate key {key!r}")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def value(self, node: yaml.Node) -> Any:
        """A scalar's value. Every known value is a scalar, and constructing a
        collection could expand an alias bomb, so collections stay unconstructed."""
        if not isinstance(node, yaml.ScalarNode):
            return _Collection("a list" if isinstance(node, yaml.SequenceNode) else "a mapping")
        return self.loader.construct_object(node, deep=True)

    def fields(self, node: yaml.Node, what: str, schema: Mapping[str, type]) -> dict:
        out = {}
        for key, key_node, value_node in self.mapping(node, what):
            if key not in schema:
                raise self.fail(key_node, _unknown(what, key, schema))
            value = self.value(value_node)
            want = schema[key]
            # bool is an int in Python; an integer field must not accept true/false.
            ok = value is None or (
                isinstance(value, want) and not (want is int and isinstance(value, bool))
            )
            if not ok:
                hint = " (quote it)" if want is str and isinstance(value, (int, float)) else ""
                raise self.fail(
                    value_node, f"{what}: {key} must be {_TYPE_NAMES[want]}, got {value!r}{hint}"
                )
            if want is int and value is not None and value < 0:
                raise self.fail(value_node, f"{what}: {key} must not be negative")
            out[key] = value
        return out


def parse_facts(
    text: str, filename: str = "<facts>"
) -> tuple[HostFacts, dict[str, SourceFacts], dict[tuple[str, str], VolumeTarget]]:
    """Parse and validate a facts document. Raises FactsError with file:line."""
    fast = _parse_fast(text)
    if fast is not None:
        return fast
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            line = mark.line + 1 if mark else None
            problem = err.problem or err.context or "invalid YAML"
            raise FactsError(f"invalid YAML: {problem}", file=filename, line=line) from None
        except yaml.YAMLError as err:
            raise FactsError(f"invalid YAML: {err}", file=filename) from None
        reader = _Reader(filename, loader)
        if root is None:
            raise FactsError("empty facts file", file=filename)
        try:
            return _parse_root(reader, root)
        except yaml.constructor.ConstructorError as err:
            mark = err.problem_mark
            raise FactsError(
                f"invalid value: {err.problem}", file=filename, line=mark.line + 1 if mark else None
            ) from None
    finally:
        loader.dispose()


def _unknown(what: str, key: str, known) -> str:
    import difflib

    hint = difflib.get_close_matches(key, list(known), n=1)
    near = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"{what}: unknown key '{key}'{near}; known keys: {', '.join(known)}"


def _parse_root(reader: _Reader, root: yaml.Node):
    sections, unknown = {}, []
    for key, key_node, node in reader.mapping(root, "facts file"):
        if key in _TOP_KEYS:
            sections[key] = node
        else:
            unknown.append((key, key_node))
    if "version" not in sections:
        raise reader.fail(root, f"missing 'version: {FACTS_VERSION}'")
    version = reader.value(sections["version"])
    if version != FACTS_VERSION or isinstance(version, bool):
        raise reader.fail(
            sections["version"], f"unsupported facts version {version!r} (expected {FACTS_VERSION})"
        )

    host = HostFacts()
    if _present(sections.get("host")):
        host = HostFacts(**reader.fields(sections["host"], "host", _HOST_KEYS))

    sources: dict[str, SourceFacts] = {}
    if _present(sections.get("sources")):
        for path, key_node, node in reader.mapping(sections["sources"], "sources"):
            if not path.startswith("/"):
                raise reader.fail(key_node, f"sources: {path!r} is not an absolute path")
            what = f"source {path}"
            values = reader.fields(node, what, _SOURCE_KEYS)
            if values.get("kind") not in SOURCE_KINDS:
                raise reader.fail(node, f"{what}: kind must be one of {', '.join(SOURCE_KINDS)}")
            sources[path] = SourceFacts(path=path, **values)

    volumes: dict[tuple[str, str], VolumeTarget] = {}
    if _present(sections.get("volumes")):
        for name, key_node, node in reader.mapping(sections["volumes"], "volumes"):
            pool, sep, volume = name.partition("/")
            if not (sep and pool and volume):
                raise reader.fail(key_node, f"volumes: {name!r} must be POOL/VOLUME")
            what = f"volume {name}"
            values = reader.fields(node, what, _VOLUME_KEYS)
            if values.get("kind") not in VOLUME_KINDS:
                raise reader.fail(node, f"{what}: kind must be one of {', '.join(VOLUME_KINDS)}")
            volumes[(pool, volume)] = VolumeTarget(**values)
    if unknown:  # after the version: a newer format's keys are its version's problem
        key, key_node = unknown[0]
        raise reader.fail(key_node, _unknown("facts file", key, _TOP_KEYS))
    return host, sources, volumes


def _present(node: yaml.Node | None) -> bool:
    """A section written as `sources:` with nothing after it counts as empty."""
    return node is not None and not (
        isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
    )


# ---------------------------------------------------------------- fast path
#
# Composing the node tree costs a Python resolver call per scalar and holds every
# node with two marks: for a fleet's facts (100k sources) that is seconds and
# hundreds of MiB. The fast path reads the event stream instead, keeps nothing but
# the facts, and gives up (returns None) on anything it does not fully handle:
# anchors, aliases, explicit tags, YAML errors, unknown keys and every invalid
# value. The node-walking reader above then parses the file again and names the
# error.


class _Fallback(Exception):
    pass


_EV = yaml.events
_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"


class _FastReader:
    def __init__(self, text: str):
        self.loader = _Loader(text)
        self.tags: dict[str, str] = {}  # plain scalar -> resolved tag (memoized resolver)
        self.ints: dict[str, int] = {}
        self.strings: dict[str, str] = {}

    def event(self):
        event = self.loader.get_event()
        if getattr(event, "anchor", None) is not None or isinstance(event, _EV.AliasEvent):
            raise _Fallback
        return event

    def scalar(self, event) -> Any:
        """The value of a scalar event: str, None, bool or int; anything else falls back."""
        if event.tag not in (None, "!"):
            raise _Fallback
        value = event.value
        if event.style or not event.implicit[0]:  # C parser: plain is "", Python: None
            return value  # quoted or block scalar: a string
        if value and value[0] not in self.loader.yaml_implicit_resolvers:
            return value  # e.g. a path: no implicit type starts with '/'
        tag = self.tags.get(value)
        if tag is None:
            tag = self.tags[value] = self.loader.resolve(yaml.ScalarNode, value, (True, False))
        if tag == _STR:
            return value
        if tag == _NULL:
            return None
        if tag == _BOOL:
            return self.loader.bool_values[value.lower()]
        if tag == _INT:
            number = self.ints.get(value)
            if number is None:
                number = self.ints[value] = self.loader.construct_yaml_int(
                    yaml.ScalarNode(tag, value))
            return number
        raise _Fallback

    def items(self):
        """(key, first event of the value) of the mapping just opened; keys unique strings."""
        seen: set[str] = set()
        while True:
            event = self.event()
            if isinstance(event, _EV.MappingEndEvent):
                return
            if not isinstance(event, _EV.ScalarEvent):
                raise _Fallback
            key = self.scalar(event)
            if not isinstance(key, str) or key in seen:
                raise _Fallback
            seen.add(key)
            yield key, self.event()

    def fields(self, start, schema: Mapping[str, type]) -> dict:
        """One flow or block mapping of facts; the hot loop of a fleet's facts file."""
        if type(start) is not _EV.MappingStartEvent or start.tag is not None \
                or start.anchor is not None:
            raise _Fallback
        get_event, scalar, strings = self.loader.get_event, self.scalar, self.strings
        out: dict = {}
        while True:
            event = get_event()
            kind = type(event)
            if kind is _EV.MappingEndEvent:
                return out
            if kind is not _EV.ScalarEvent or event.anchor is not None:
                raise _Fallback
            key = event.value
            want = schema.get(key)
            if want is None or event.tag is not None or event.style:
                key = scalar(event)  # an unknown or unusual key: resolve it for real
                want = schema.get(key) if isinstance(key, str) else None
                if want is None:
                    raise _Fallback  # an unknown key: the node walker names it
            if key in out:
                raise _Fallback
            event = self.event()
            if type(event) is not _EV.ScalarEvent:
                raise _Fallback
            value = scalar(event)
            if value is not None and (type(value) is not want or (want is int and value < 0)):
                raise _Fallback
            if want is str:
                value = strings.setdefault(value, value)  # one object per distinct fs, kind...
            out[key] = value

    def section(self, start) -> bool:
        """True for a mapping; False for an empty section (`sources:`)."""
        if isinstance(start, _EV.ScalarEvent) and self.scalar(start) is None:
            return False
        if not isinstance(start, _EV.MappingStartEvent) or start.tag not in (None, "!"):
            raise _Fallback
        return True


def _parse_fast(text: str):
    reader = _FastReader(text)
    try:
        for kind in (_EV.StreamStartEvent, _EV.DocumentStartEvent, _EV.MappingStartEvent):
            if not isinstance(reader.event(), kind):
                raise _Fallback
        version = host = None
        sources: dict[str, SourceFacts] = {}
        volumes: dict[tuple[str, str], VolumeTarget] = {}
        for key, event in reader.items():
            if key == "version":
                if not isinstance(event, _EV.ScalarEvent):
                    raise _Fallback
                version = reader.scalar(event)
            elif key == "host":
                if reader.section(event):
                    host = HostFacts(**reader.fields(event, _HOST_KEYS))
            elif key == "sources":
                if reader.section(event):
                    for path, value in reader.items():
                        values = reader.fields(value, _SOURCE_KEYS)
                        if not path.startswith("/") or values.get("kind") not in SOURCE_KINDS:
                            raise _Fallback
                        sources[path] = SourceFacts(path=path, **values)
            elif key == "volumes":
                if reader.section(event):
                    for name, value in reader.items():
                        pool, sep, volume = name.partition("/")
                        values = reader.fields(value, _VOLUME_KEYS)
                        if not (sep and pool and volume) or values.get("kind") not in VOLUME_KINDS:
                            raise _Fallback
                        volumes[(pool, volume)] = VolumeTarget(**values)
            else:
                raise _Fallback  # an unknown key: the node walker names it
        for kind in (_EV.DocumentEndEvent, _EV.StreamEndEvent):
            if not isinstance(reader.event(), kind):
                raise _Fallback
        if type(version) is not int or version != FACTS_VERSION:
            raise _Fallback
        return host or HostFacts(), sources, volumes
    except (_Fallback, yaml.YAMLError, KeyError, ValueError, TypeError):
        return None
    finally:
        reader.loader.dispose()


class RecordedProbe:
    """Probe protocol answered from a facts file; never touches the host."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_FACTS_BYTES + 1)
        except OSError as err:
            raise FileAccessError(f"cannot read facts file: {err.strerror}", file=path) from None
        if len(data) > MAX_FACTS_BYTES:
            raise FactsError(f"facts file larger than {MAX_FACTS_BYTES} bytes", file=path)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FactsError("facts file is not UTF-8", file=path) from None
        del data  # a fleet's facts file is tens of MiB: not twice in memory while parsing
        self.host, self.sources, self.volumes = parse_facts(text, path)
        self.missing = f"not in recorded facts {path}"

    @classmethod
    def from_facts(
        cls,
        host: HostFacts,
        sources: Mapping[str, SourceFacts],
        volumes: Mapping[tuple[str, str], VolumeTarget] | None = None,
        *,
        missing: str,
    ) -> RecordedProbe:
        """Facts already in memory; `missing` is the error of a source or volume not in them."""
        probe = cls.__new__(cls)
        probe.path = None
        probe.host, probe.sources, probe.volumes = host, dict(sources), dict(volumes or {})
        probe.missing = missing
        return probe

    def host_facts(self, emulator: str | None) -> HostFacts:
        return self.host._replace()

    def source_facts(
        self, requests: Sequence[SourceRequest], budget_s: float = DEFAULT_PROBE_BUDGET_S
    ) -> dict[str, SourceFacts]:
        out = {}
        for request in requests:
            recorded = self.sources.get(request.path)
            if recorded is None:
                out[request.path] = SourceFacts(
                    path=request.path, kind="unknown", error=self.missing
                )
            else:
                out[request.path] = recorded._replace()
        return out

    def resolve_volume(self, pool: str, volume: str) -> VolumeTarget:
        recorded = self.volumes.get((pool, volume))
        if recorded is None:
            return VolumeTarget(kind="unknown", reason=self.missing)
        return recorded


# ---------------------------------------------------------------- writing


class _FlowDict(dict):
    """A mapping written on one line, like the entries in the format above."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _FlowDict,
    lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True
    ),
)


def dump_facts(
    host: HostFacts,
    sources: Mapping[str, SourceFacts],
    volumes: Mapping[tuple[str, str] | str, VolumeTarget] | None = None,
) -> str:
    """The facts file text for these facts; RecordedProbe reads it back unchanged."""
    document: dict[str, Any] = {"version": FACTS_VERSION, "host": _FlowDict(host.to_dict())}
    document["sources"] = {path: _FlowDict(facts.to_dict()) for path, facts in sources.items()}
    if volumes:
        document["volumes"] = {
            (key if isinstance(key, str) else "/".join(key)): _FlowDict(
                {k: v for k, v in target._asdict().items() if v is not None}
            )
            for key, target in volumes.items()
        }
    body = yaml.dump(
        document,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=False,
        width=1 << 16,  # escapes: NEL, LS etc. survive a re-read
    )
    return "# aiohook recorded host facts (aiohook facts); see aiohook/probe/recorded.py\n" + body

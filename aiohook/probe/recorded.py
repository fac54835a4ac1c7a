"""Answer probes from a recorded facts YAML file (written by `aiohook facts`).

Format (version 1; more keys are allowed anywhere and ignored):

    version: 1
    host: {io_uring: true, qemu_version: "7.2.0"}
    sources:
      /var/lib/libvirt/images/a.qcow2: {kind: file, allocated: false, fs: ext4, o_direct: true}
      /dev/sdb: {kind: block, transport: iscsi, o_direct: true}
    volumes:
      default/vm1.qcow2: {kind: file, path: /var/lib/libvirt/images/vm1.qcow2}

Known keys are type-checked; a bad file raises FactsError naming file:line.
A source that is not in the file is never probed: it is kind 'unknown'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from aiohook.errors import FactsError, FileAccessError
from aiohook.facts import HostFacts, SourceFacts, SourceRequest, VolumeTarget
from aiohook.probe import DEFAULT_PROBE_BUDGET_S

FACTS_VERSION = 1
MAX_FACTS_BYTES = 16 << 20
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
_TYPE_NAMES = {bool: "true or false", int: "an integer", str: "a string"}


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
            key = self.loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self.fail(key_node, f"{what}: keys must be strings, got {key!r}")
            if key in seen:
                raise self.fail(key_node, f"{what}: duplicate key {key!r}")
            seen.add(key)
            items.append((key, key_node, value_node))
        return items

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def fields(self, node: yaml.Node, what: str, schema: Mapping[str, type]) -> dict:
        out = {}
        for key, _key_node, value_node in self.mapping(node, what):
            if key not in schema:
                continue  # open format: newer writers may add keys
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


def _parse_root(reader: _Reader, root: yaml.Node):
    sections = {key: node for key, _k, node in reader.mapping(root, "facts file")}
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
    return host, sources, volumes


def _present(node: yaml.Node | None) -> bool:
    """A section written as `sources:` with nothing after it counts as empty."""
    return node is not None and not (
        isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
    )


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
        self.host, self.sources, self.volumes = parse_facts(text, path)

    def host_facts(self, emulator: str | None) -> HostFacts:
        return dataclasses.replace(self.host)

    def source_facts(
        self, requests: Sequence[SourceRequest], budget_s: float = DEFAULT_PROBE_BUDGET_S
    ) -> dict[str, SourceFacts]:
        out = {}
        for request in requests:
            recorded = self.sources.get(request.path)
            if recorded is None:
                out[request.path] = SourceFacts(
                    path=request.path, kind="unknown", error=f"not in recorded facts {self.path}"
                )
            else:
                out[request.path] = dataclasses.replace(recorded)
        return out

    def resolve_volume(self, pool: str, volume: str) -> VolumeTarget:
        recorded = self.volumes.get((pool, volume))
        if recorded is None:
            return VolumeTarget(kind="unknown", reason=f"not in recorded facts {self.path}")
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
                {k: v for k, v in dataclasses.asdict(target).items() if v is not None}
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

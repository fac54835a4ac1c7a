"""YAML loading that remembers where each value came from, for file:line errors."""

from __future__ import annotations

from typing import Any

import yaml

from aiohook.errors import AiohookError

Path = tuple  # JSON-pointer-like path of keys and indexes

try:
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - libyaml missing
    _Loader = yaml.SafeLoader

MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_YAML_NODES = 1_000_000


class LocatedYAML:
    """Plain Python data plus the 1-based line of every mapping key and item."""

    def __init__(self, data: Any, lines: dict[Path, int], filename: str):
        self.data = data
        self.lines = lines
        self.filename = filename

    def line(self, path: Path) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def load_located(text: str | bytes, filename: str, error: type[AiohookError]) -> LocatedYAML:
    if isinstance(text, bytes):
        if len(text) > MAX_YAML_BYTES:
            raise error(f"file is over {MAX_YAML_BYTES} bytes", file=filename)
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"not UTF-8 text (byte {exc.start})", file=filename) from None
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"invalid YAML: {problem}", file=filename,
                    line=mark.line + 1 if mark else None) from None
    lines: dict[Path, int] = {}
    budget = [MAX_YAML_NODES]  # aliases can make a small file expand enormously
    data = _to_python(node, (), lines, filename, error, budget) if node is not None else None
    return LocatedYAML(data, lines, filename)


def _to_python(node: yaml.Node, path: Path, lines: dict, filename: str, error, budget) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise error(f"more than {MAX_YAML_NODES} values (alias expansion?)", file=filename)
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise error("mapping keys must be plain scalars", file=filename,
                            line=key_node.start_mark.line + 1)
            key = _scalar(key_node)
            if key in out:
                raise error(f"duplicate key '{key}'", file=filename,
                            line=key_node.start_mark.line + 1)
            lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_python(value_node, path + (key,), lines, filename, error, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, path + (i,), lines, filename, error, budget)
                for i, item in enumerate(node.value)]
    try:
        return _scalar(node)
    except yaml.YAMLError as exc:  # e.g. an unknown tag: !!python/name:os.system
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"invalid value: {problem}", file=filename,
                    line=node.start_mark.line + 1) from None


def _scalar(node: yaml.ScalarNode) -> Any:
    return _CONSTRUCTOR.construct_scalar_value(node)


class _ScalarConstructor(yaml.SafeLoader):
    def __init__(self):
        super().__init__("")

    def construct_scalar_value(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_object(node, deep=True)
        self.constructed_objects.clear()
        return value


_CONSTRUCTOR = _ScalarConstructor()

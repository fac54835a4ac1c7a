"""The layering drawn in docs/architecture.md holds in the code.

The table under "## Layers" in docs/architecture.md is read here, so the
document and this test cannot drift apart: every aiohook module belongs to
exactly one layer, and imports (module-level and the lazy ones inside
functions alike) go only to its own layer or the layers below it. The
module graph has no cycles, and no library module imports a command.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from paths import ROOT

PACKAGE = ROOT / "aiohook"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def _table_rows() -> list[tuple[int, list[str]]]:
    text = ARCHITECTURE.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            rows.append((int(cells[0]), re.findall(r"`(aiohook[\w.]*)`", cells[2])))
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The aiohook modules `path` imports, anywhere in it (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from aiohook.x import y`: y may be a submodule
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.startswith("aiohook") and name in modules:
                found.add(name)
    return found


def layer_of(module: str, rows) -> int | None:
    """The layer of the longest prefix that names the module or a package above it."""
    best = None
    for number, prefixes in rows:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > len(best[1]):
                    best = (number, prefix)
    return best[0] if best else None


MODULES = all_modules()
GRAPH = {m: imports_of(p, MODULES) - {m} for m, p in MODULES.items()}


def test_the_doc_has_a_layer_table():
    rows = _table_rows()
    assert len(rows) >= 5, "docs/architecture.md: no '## Layers' table with numbered rows"
    numbers = [n for n, _ in rows]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_every_module_has_a_layer():
    rows = _table_rows()
    missing = sorted(m for m in MODULES if m != "aiohook" and layer_of(m, rows) is None)
    assert not missing, f"modules in no layer of docs/architecture.md: {missing}"


def test_every_module_the_table_names_exists():
    stale = sorted(name for _, names in _table_rows() for name in names if name not in MODULES)
    assert not stale, f"docs/architecture.md names modules that do not exist: {stale}"


def test_imports_go_down_the_layers():
    rows = _table_rows()
    wrong = []
    for module, targets in GRAPH.items():
        mine = layer_of(module, rows)
        for target in targets:
            if target == "aiohook":  # the package itself: __version__ only
                continue
            theirs = layer_of(target, rows)
            if theirs is not None and mine is not None and theirs > mine:
                wrong.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not wrong, "imports against docs/architecture.md:\n" + "\n".join(sorted(wrong))


def _cycle_from(start: str) -> list[str] | None:
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(GRAPH.get(node, ())):
            if nxt == "aiohook" or _is_parent(nxt, node):
                continue  # a package's __init__ read on the way to a submodule is no cycle
            if nxt == start:
                return path + [nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None


def _is_parent(package: str, module: str) -> bool:
    return module.startswith(package + ".")


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_cycle(module):
    cycle = _cycle_from(module)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_library_module_imports_a_command():
    rows = _table_rows()
    top = rows[-1][0]
    commands = {m for m in MODULES if layer_of(m, rows) == top}
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() if m not in commands
                   for t in targets & commands)
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The walk finds lazy imports inside functions: a test that can fail."""
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from aiohook.cli import main\n    import aiohook.errors\n")
    assert imports_of(fake, MODULES) >= {"aiohook.cli", "aiohook.errors"}

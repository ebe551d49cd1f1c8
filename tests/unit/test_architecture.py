"""The import graph keeps the layers of docs/architecture.md: no import goes up a layer or
sideways into a sibling package, and no modules import each other in a circle.

The layer table is read from docs/architecture.md itself, so the picture a newcomer reads
and the rule the suite holds the code to are one and the same. Every import counts,
including those inside functions (deferred for start-up time, they are still a
dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "mirror"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def layer_table(text: str) -> list[list[str]]:
    """The `## Layers` table's rows, top layer first: the modules and packages of each."""
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[1].startswith("`"):
            continue
        rows.append(re.findall(r"`(mirror[\w.]*)`", cells[1]))
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every mirror module `path` imports, at any depth of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if m == "mirror" or m.startswith("mirror.")}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    """module -> the mirror modules it imports (`from mirror.x import y` counts as x, or
    as x.y when y is a module)."""
    edges = {}
    for name, path in MODULES.items():
        edges[name] = {m for m in imports_of(path, name) if m in MODULES and m != name}
    return edges


def owner(module: str, rows: list[list[str]]) -> tuple[int, str]:
    """(layer index, the table entry that holds `module`): the longest entry it is in."""
    best: tuple[int, str] | None = None
    for index, entries in enumerate(rows):
        for entry in entries:
            inside = module == entry or module.startswith(entry + ".")
            if inside and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    if best is None:
        raise AssertionError(f"{module} is in no layer of docs/architecture.md")
    return best


def test_the_layer_table_names_every_layer_once():
    rows = layer_table(ARCHITECTURE.read_text())
    entries = [e for row in rows for e in row]
    assert len(rows) >= 8 and len(entries) == len(set(entries))
    for module in MODULES:
        owner(module, rows)  # raises for a module no row holds


def violations(edges: dict[str, set[str]], rows: list[list[str]]) -> list[str]:
    found = []
    for module, imported in sorted(edges.items()):
        mine = owner(module, rows)
        for target in sorted(imported):
            theirs = owner(target, rows)
            if theirs[1] == mine[1] and mine[1] != "mirror":
                continue  # within one package (or module)
            if theirs[0] <= mine[0]:
                where = "up" if theirs[0] < mine[0] else "sideways"
                found.append(f"{module} imports {target} ({where}: {theirs[1]})")
    return found


def test_no_import_goes_up_or_sideways():
    assert violations(graph(), layer_table(ARCHITECTURE.read_text())) == []


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_modules_import_each_other_in_a_circle():
    assert cycles(graph()) == []


TABLE = """\
## Layers

| layer | modules | holds |
|---|---|---|
| top | `mirror.console` | commands |
| middle | `mirror.engine`, `mirror.include` | a pass |
| bottom | `mirror.oci` | protocol |
| leaves | `mirror`, `mirror.errors` | shared |

## Next
"""


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"mirror.console.cli": {"mirror.engine.sync"}}, []),
        ({"mirror.engine.sync": {"mirror.engine.copy"}}, []),
        (
            {"mirror.oci.client": {"mirror.engine.quota"}},
            ["mirror.oci.client imports mirror.engine.quota (up: mirror.engine)"],
        ),
        (
            {"mirror.engine.sync": {"mirror.include.shell"}},
            ["mirror.engine.sync imports mirror.include.shell (sideways: mirror.include)"],
        ),
        (
            {"mirror.errors": {"mirror"}},
            ["mirror.errors imports mirror (sideways: mirror)"],
        ),
    ],
)
def test_the_check_refuses_what_goes_against_the_table(edges, expected):
    assert violations(edges, layer_table(TABLE)) == expected


def test_the_check_finds_a_circle():
    edges = {"mirror.a": {"mirror.b"}, "mirror.b": {"mirror.c"}, "mirror.c": {"mirror.a"}}
    assert cycles(edges) == [["mirror.a", "mirror.b", "mirror.c"]]
    assert cycles({"mirror.a": {"mirror.b"}, "mirror.b": set()}) == []

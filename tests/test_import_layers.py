"""The library's import layers, as docs/architecture.md's table states them: a module imports its own unit and
the units of lower layers only (lazy imports inside functions included); and each named choice is owned once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "flowopd"


def layer_table() -> dict[str, int]:
    """Unit -> layer, read from the architecture page's layer table."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("### Inside the library: layers"):text.index("### Between the packages")]
    units = {}
    for line in section.splitlines():
        match = re.match(r"\| (\d+) \| (.+?) \|", line)
        if match:
            for unit in re.findall(r"`([\w.]+)`", match.group(2)):
                units[unit] = int(match.group(1))
    return units


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The ``flowopd`` modules (or ``module.name`` candidates) a file imports, relative ones resolved."""
    parts = module_name(path).split(".")
    package = parts if path.name == "__init__.py" else parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}  # `from . import x` names a module
    return {m for m in found if m == "flowopd" or m.startswith("flowopd.")}


def unit_of(module: str, units: dict[str, int]) -> str | None:
    """The longest unit of the table that ``module`` (``flowopd.x.y``) is or lies inside."""
    name = module.removeprefix("flowopd").removeprefix(".") or "__init__"
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in units:
            return ".".join(parts[:n])
    return None


def test_every_library_module_has_a_layer() -> None:
    units = layer_table()
    assert len(units) > 20
    missing = [module_name(p) for p in LIBRARY.rglob("*.py") if unit_of(module_name(p), units) is None]
    assert missing == [], f"add these to docs/architecture.md's layer table: {missing}"


def test_no_module_imports_its_layer_or_above() -> None:
    units = layer_table()
    bad = []
    for path in sorted(LIBRARY.rglob("*.py")):
        mine = unit_of(module_name(path), units)
        for target in imports(path):
            theirs = unit_of(target, units)
            if theirs is None or theirs == mine or target == "flowopd":
                continue
            if units[theirs] >= units[mine]:
                bad.append(f"{module_name(path)} ({mine}, layer {units[mine]}) imports {target} "
                           f"({theirs}, layer {units[theirs]})")
    assert bad == []


def test_the_checker_sees_a_lazy_upward_import(tmp_path: Path) -> None:
    probe = LIBRARY / "models" / "_probe_for_test.py"
    probe.write_text("def f():\n    from ..methods import get_method\n    return get_method\n")
    try:
        units = layer_table()
        found = {unit_of(t, units) for t in imports(probe)}
        assert "methods" in found and units["methods"] > units["models"]
    finally:
        probe.unlink()


CHOICES = ("LOSS_MODES", "WEIGHTINGS", "ROUTINGS", "COLDSTART_MODES", "MERGE_COMBINATIONS", "PRECISIONS",
           "EMA_WARMUPS", "LR_SCHEDULES", "EXPORT_FORMATS")


def test_each_named_choice_is_defined_once_and_imported_elsewhere() -> None:
    from flowopd.config import choices

    values = [getattr(choices, name) for name in CHOICES]
    copies = []
    for path in sorted([*LIBRARY.rglob("*.py"), *(ROOT / "flowopd_studio").rglob("*.py")]):
        if path == Path(choices.__file__):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in CHOICES for t in node.targets):
                copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
            elif isinstance(node, ast.Tuple):  # a literal copy anywhere, e.g. choices=("mean", "legacy")
                try:
                    value = ast.literal_eval(node)
                except ValueError:
                    continue
                if value in values:
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert copies == [], f"import these from flowopd.config.choices instead: {copies}"

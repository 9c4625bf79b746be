"""The package layering docs/contributing.md describes, read from the source (no import runs).

Dependencies point down: engine < feat_script (extractors, recipes, and the answerers' shared base
``feat_script.answerer``) < masn, avst < grounding_gen (AVST's stage 1, which uses avst) < webdemo, demos
(which orchestrate). Nothing imports scripts/ or tests/, and no module edits ``sys.path``: the
packages are installed (``pip install -e .``) and the entry points import them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {
    "engine": set(),
    "feat_script": {"engine"},
    "masn": {"engine", "feat_script"},
    "avst": {"engine", "feat_script"},
    "grounding_gen": {"engine", "feat_script", "avst"},
    "webdemo": {"engine", "feat_script", "masn", "avst"},
    "demos": {"engine", "feat_script", "masn", "avst", "grounding_gen"},
    "benchkit": {"engine", "feat_script", "masn", "avst", "grounding_gen"},
}
# The one place allowed to put a folder on sys.path: the authors' code (given by --original) imports its
# own modules as top-level names, so it is imported with its folder on the path, restored afterwards.
SYS_PATH_EXEMPT = {"benchkit/originals.py"}
FIRST_PARTY = {*BELOW, "scripts", "tests"}


def sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imported_packages(tree: ast.AST) -> set[str]:
    """Top-level first-party names of every import statement (also those inside functions)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & FIRST_PARTY


@pytest.mark.parametrize("package", sorted(BELOW))
def test_a_package_imports_only_the_packages_below_it(package):
    wrong = {}
    for path in sources(package):
        above = imported_packages(ast.parse(path.read_text(encoding="utf-8"))) - BELOW[package] - {package}
        if above:
            wrong[str(path.relative_to(ROOT))] = sorted(above)
    assert not wrong, f"{package} may import only {sorted(BELOW[package])}: {wrong}"


def _edits_sys_path(node: ast.AST) -> bool:
    """``sys.path.insert(...)`` (any method call), ``sys.path = ...`` or ``sys.path[...] = ...``; reading is fine."""
    def is_sys_path(n: ast.AST) -> bool:
        return (isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name)
                and n.value.id == "sys")
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return is_sys_path(node.func.value)
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value)) for t in targets)
    return False


def test_no_module_edits_sys_path():
    found = []
    for path in sources(*BELOW, "tests"):
        if str(path.relative_to(ROOT)) in SYS_PATH_EXEMPT:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if _edits_sys_path(node):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"sys.path edited (install the package instead): {found}"

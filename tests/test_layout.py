"""The package layering the README describes, read from the source (no import runs).

Dependencies point down: engine < feat_script < answering < masn, avst < grounding_gen (AVST's stage 1,
which uses avst) < webdemo, demos (which orchestrate). Nothing imports scripts/ or tests/, and no module
edits ``sys.path``: the packages are installed (``pip install -e .``) and the entry points import them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BELOW = {
    "engine": set(),
    "feat_script": {"engine"},
    "answering": {"engine", "feat_script"},
    "masn": {"engine", "feat_script", "answering"},
    "avst": {"engine", "feat_script", "answering"},
    "grounding_gen": {"engine", "feat_script", "avst"},
    "webdemo": {"engine", "feat_script", "answering", "masn", "avst"},
    "demos": {"engine", "feat_script", "answering", "masn", "avst", "grounding_gen"},
}
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


def test_no_module_edits_sys_path():
    found = []
    for path in sources(*BELOW, "tests"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
                    and node.value.id == "sys"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, f"sys.path used (install the package instead): {found}"

"""Imports point down the table of DESIGN.md ("Parts and folders"), and only p2p/ touches py-libp2p."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"protocols", "p2p", "pool", "chain", "node", "validator", "cli"}
ALLOWED = {
    "protocols": set(),
    "p2p": {"protocols"},
    "pool": {"protocols", "p2p", "chain"},
    "chain": {"protocols"},
    "node": {"protocols", "p2p", "pool", "chain"},
    "validator": {"protocols", "p2p", "pool", "chain", "node"},
    "cli": OURS,
}


def _imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def _sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.unit
@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down_the_table(package):
    wrong = {
        str(path.relative_to(ROOT)): sorted(found)
        for path in _sources(package)
        if (found := (_imports(path) & OURS) - ALLOWED[package] - {package})
    }
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package])}: {wrong}"


@pytest.mark.unit
@pytest.mark.parametrize("package", sorted(OURS - {"p2p"}))
def test_only_p2p_touches_py_libp2p(package):
    wrong = [str(p.relative_to(ROOT)) for p in _sources(package) if {"libp2p", "multiaddr"} & _imports(p)]
    assert not wrong, f"use p2p's API instead of py-libp2p in {wrong}"

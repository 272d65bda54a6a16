"""Imports point down the table of docs/architecture.md, and only p2p/ touches py-libp2p."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"runtime", "protocols", "p2p", "pool", "chain", "node", "validator", "cli"}
ALLOWED = {
    "runtime": set(),
    "protocols": set(),
    "p2p": {"protocols", "runtime"},
    "pool": {"protocols", "p2p", "chain", "runtime"},
    "chain": {"protocols", "runtime"},
    "node": {"protocols", "p2p", "pool", "chain", "runtime"},
    "validator": {"protocols", "p2p", "pool", "chain", "node", "runtime"},
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


def _modules(package: str) -> list[str]:
    """The package's own modules and subpackages, by name."""
    folder = ROOT / package
    files = [path.stem for path in folder.glob("*.py") if path.stem != "__init__"]
    return sorted(files + [path.name for path in folder.iterdir() if (path / "__init__.py").is_file()])


@pytest.mark.unit
@pytest.mark.parametrize("package", sorted(OURS))
def test_each_package_map_names_every_module(package):
    """A package's docstring is its map: every module is listed there with what it owns."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text())
    listed = ast.get_docstring(tree) or ""
    missing = [
        name
        for name in _modules(package)
        if f"`{name}`" not in listed and not re.search(rf"^\s*(- )?{name}(:|\s{{2,}})", listed, re.M)
    ]
    assert not missing, f"{package}/__init__.py's map does not name {missing}"


@pytest.mark.unit
@pytest.mark.parametrize("package", sorted(OURS - {"chain"}))
def test_only_chain_names_contract_functions(package):
    """Above chain/, contracts are read through its typed areas (`client.bonding.slashable_of(...)`)."""
    # `.call("Bonding", …)`, and the same handed on: `run_sync(chain.call, "Bonding", …)`.
    calls = re.compile(r"\.(call|transact)(\(|,)\s*\"[A-Z]\w*\",")
    wrong = [str(p.relative_to(ROOT)) for p in _sources(package) if calls.search(p.read_text())]
    assert not wrong, f"read contracts through chain.areas (ChainClient's typed reads) in {wrong}"

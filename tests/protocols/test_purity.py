"""`protocols` is sans-IO: no event loop, no network stack, no libp2p or web3 — checked in the source and
in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import protocols

pytestmark = pytest.mark.unit

FORBIDDEN = {"trio", "anyio", "asyncio", "libp2p", "web3", "brownie", "socket", "ssl", "httpx", "requests"}
OURS = {"p2p", "pool", "node", "validator", "chain", "cli"}
SOURCE = Path(protocols.__file__).parent


def _imported_roots(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("path", sorted(SOURCE.glob("*.py")), ids=lambda p: p.name)
def test_source_imports_nothing_forbidden(path):
    roots = set(_imported_roots(path))
    assert not roots & FORBIDDEN, f"{path.name} imports {roots & FORBIDDEN}"
    assert not roots & OURS, f"{path.name} imports other parts of the project: {roots & OURS}"


@pytest.mark.process
def test_fresh_import_loads_no_io_or_event_loop_module():
    code = (
        "import sys, protocols, protocols.testing; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(FORBIDDEN)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=SOURCE.parent
    )
    assert out.stdout.strip() == "[]"


def test_package_exports_what_it_says():
    for name in protocols.__all__:
        assert hasattr(protocols, name), name
    documented = protocols.__doc__
    for module in sorted(p.stem for p in SOURCE.glob("*.py") if p.stem != "__init__"):
        assert f"\n    {module} " in documented, f"module {module} missing from the package docstring"

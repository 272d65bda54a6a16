"""A clone stands alone: nothing the tests, the packages or the build read lies outside the repository.

Someone who clones the project has no folder beside it, so a path that climbs out of the checkout (the
old spec folder beside the checkout, a `parents[1].parent` lookup from a test) or names this machine's own
folders works here and fails for them.
"""

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("tests", "protocols", "p2p", "pool", "chain", "node", "validator", "cli", "contracts", ".ci")
CHECKED_FILES = ("Makefile", "pyproject.toml", "brownie-config.yaml", "package.json")

# Built from pieces so that this file does not match itself.
OUTSIDE = [
    re.compile(re.escape("..") + r"/+shared\b"),
    re.compile(r"parents\[\d+\]\s*\.\s*parent\b"),
    re.compile(r"(?<![\w/])/" + "work" + r"/(?:main|shared|wt)\b"),
    re.compile(r"\bshared/spec\b"),
]


def _tracked_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *CHECKED, *CHECKED_FILES],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [ROOT / name.decode() for name in listed if name]


@pytest.mark.process
def test_nothing_reads_outside_the_repository():
    found = []
    for path in _tracked_files():
        if path == Path(__file__).resolve() or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(pattern.search(line) for pattern in OUTSIDE):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "paths outside the repository:\n" + "\n".join(found)


@pytest.mark.unit
@pytest.mark.parametrize(
    "line",
    [
        "SPEC = Path(__file__).resolve().parents[1]" + '.parent / "shared" / "spec"',
        "cat " + ".." + "/shared/spec/rewards.md",
        "open('/" + "work/main/docs/x')",
    ],
)
def test_the_check_catches_outside_lookups(line):
    assert any(pattern.search(line) for pattern in OUTSIDE)

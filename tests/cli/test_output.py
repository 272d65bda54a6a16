"""Output reads well where it is read: no carriage-return redraws when stdout is a log file or a pipe."""

import os
import subprocess
import sys

import pytest

# What `dolphin` runs before any command: its own module, then a third-party tqdm bar as transformers'
# GGUF conversion draws one.
THIRD_PARTY_BAR = """
import cli.main
from tqdm.auto import tqdm
for _ in tqdm(range(50), desc="Converting and de-quantizing GGUF tensors..."):
    pass
"""


def _run(code: str) -> subprocess.CompletedProcess:
    # Another test may have imported cli.main in this process already, which set the variable here.
    env = {name: value for name, value in os.environ.items() if name != "TQDM_DISABLE"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=120, env=env)


@pytest.mark.process
def test_third_party_progress_bars_are_silenced():
    result = _run(THIRD_PARTY_BAR)
    assert b"\r" not in result.stdout + result.stderr  # bytes: text mode would turn \r into \n
    assert b"Converting" not in result.stderr


@pytest.mark.process
def test_the_check_sees_a_bar_when_nothing_silences_it():
    code = THIRD_PARTY_BAR.replace("import cli.main", "")
    assert b"\r" in _run(code).stderr

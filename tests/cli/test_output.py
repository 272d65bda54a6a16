"""Output reads well where it is read: no carriage-return redraws when stdout is a log file or a pipe."""

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


@pytest.mark.unit
def test_third_party_progress_bars_are_silenced():
    result = subprocess.run(
        [sys.executable, "-c", THIRD_PARTY_BAR], capture_output=True, check=True, timeout=120
    )
    assert b"\r" not in result.stdout + result.stderr  # bytes: text mode would turn \r into \n
    assert b"Converting" not in result.stderr


@pytest.mark.unit
def test_the_check_sees_a_bar_when_nothing_silences_it():
    code = THIRD_PARTY_BAR.replace("import cli.main", "")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, timeout=120)
    assert b"\r" in result.stderr

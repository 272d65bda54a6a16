"""The tier rules of tests/conftest.py, seen from a pytest run over small test files of their own."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parent.parent


def _pytest(tmp_path: Path, source: str, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(source))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:pytest-brownie", "-p", "tests.conftest",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-rs", str(tmp_path / "test_sample.py"),
         *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_test_without_a_tier_stops_the_run(tmp_path):
    run = _pytest(tmp_path, "def test_untiered():\n    pass\n")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR, run.stdout + run.stderr
    assert "test_untiered: no tier marker" in run.stderr


def test_a_unit_test_may_not_start_a_process_or_open_a_socket(tmp_path):
    source = """
        import socket, subprocess
        import pytest

        pytestmark = pytest.mark.unit

        def test_process():
            subprocess.run(["true"])

        def test_socket():
            socket.socket().connect(("127.0.0.1", 9))

        @pytest.mark.process
        def test_marked_process():
            subprocess.run(["true"], check=True)
    """
    run = _pytest(tmp_path, source)
    assert "1 passed" in run.stdout and "2 failed" in run.stdout, run.stdout
    assert "a unit test may not start a process: mark it process instead" in run.stdout
    assert "a unit test may not open a socket: mark it integration instead" in run.stdout


def test_a_unit_test_may_not_ask_for_a_model(tmp_path):
    run = _pytest(tmp_path, "import pytest\n\n@pytest.mark.unit\ndef test_model(tiny_model_dir):\n    pass\n")
    assert run.returncode == pytest.ExitCode.USAGE_ERROR
    assert "marked unit but loads a model (tiny_model_dir)" in run.stderr


def test_a_skip_inside_a_trio_test_keeps_its_reason(tmp_path):
    source = """
        import pytest
        import trio

        @pytest.mark.unit
        @pytest.mark.trio
        async def test_skipping():
            await trio.sleep(0)
            pytest.skip("no GPU on this machine")
    """
    run = _pytest(tmp_path, source)
    assert "1 skipped" in run.stdout
    assert "test_sample.py:4: no GPU on this machine" in run.stdout, run.stdout

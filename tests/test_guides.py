"""The guides (docs/operator.md, validator.md, api.md) as executable text.

Every `dolphin` command line in their shell blocks must name commands and options the CLI has (unit), so a
renamed option cannot leave a guide behind. The blocks a new user runs on a local dev network (the dev
chain and its keys, staking, bonding, registering, credits, the validator's eligibility steps and the config
files, then a node and two validators as daemons, a paid answer, a settled epoch and a claim) are run as
written, in a shell, against a dev chain (process, chain).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest

from cli.main import main

REPO = Path(__file__).resolve().parents[1]
GUIDES = ("operator.md", "validator.md", "api.md")
_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
_DOLPHIN = re.compile(r"(?:^|[\s|])(?:\S*/)?\.venv/bin/dolphin\s+(.*)$")


def _blocks(guide: str) -> list[str]:
    return _BLOCK.findall((REPO / "docs" / guide).read_text())


def _logical_lines(block: str) -> list[str]:
    """A block's commands: continuations joined, comments and trailing `&` dropped."""
    joined = block.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            lines.append(line.removesuffix("&").strip())
    return lines


def _dolphin_commands() -> list[tuple[str, list[str]]]:
    commands = []
    for guide in GUIDES:
        for block in _blocks(guide):
            for line in _logical_lines(block):
                if match := _DOLPHIN.search(line):
                    commands.append((guide, shlex.split(match[1])))
    return commands


def _check_against_cli(words: list[str]) -> None:
    """Walks the click tree along `words`; every option must be one its command declares."""
    command: click.Command = main
    options: set[str] = {"-v", "--verbose", "-h", "--help", "--version"}
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        sub = command.get_command(click.Context(command), rest[0])
        if sub is None:
            break  # an argument of a group that runs without a subcommand (`dolphin node …`)
        command, rest = sub, rest[1:]
    for param in command.params:
        options.update(param.opts + param.secondary_opts)
    for word in rest:
        name = word.split("=", 1)[0]
        if name.startswith("-") and name != "-":
            assert name in options, f"{command.name}: no option {name} (guide says {' '.join(words)})"


@pytest.mark.unit
def test_every_guide_command_names_real_commands_and_options():
    commands = _dolphin_commands()
    assert len(commands) > 30
    for guide, words in commands:
        try:
            _check_against_cli(words)
        except AssertionError as error:
            raise AssertionError(f"docs/{guide}: {error}") from None


# The dev-network blocks, in the order a new user meets them, run as written. A block is picked by a
# line it must contain, so an edited guide either still runs or fails here.
_RUN = (
    ("operator.md", "chain deploy --profile dev"),
    ("operator.md", "node init --data-dir ~/node"),
    ("operator.md", "chain stake 20000 --key-file operator.key"),
    ("validator.md", "cp ~/.dolphin/keys/validator.key validator.key"),
    ("validator.md", "validator init --data-dir ~/validator"),
    ("api.md", "cp ~/.dolphin/keys/me.key me.key"),
    ("api.md", "chain credits deposit 10 --key-file me.key"),
    ("operator.md", "chain root show $EPOCH --wait pending"),
    ("operator.md", "node receipts --data-dir ~/node --totals"),
)
# Every other block, and why a test machine cannot run it as written: what they do is run above in its dev
# network form (the node, validators and claim of the loop block) or needs what a test machine lacks.
_NOT_RUN = {
    ("operator.md", "git clone <this repository>"): "the checkout this test runs in is that setup",
    ("operator.md", "model import ~/hf/Llama-3.1-8B-Instruct ~/models/llama8b   #"): "real checkpoints",
    ("operator.md", "node --data-dir ~/node                 #"): "foreground; the loop block runs it",
    ("operator.md", "sudo useradd"): "sudo and a system user",
    ("operator.md", "systemctl daemon-reload"): "systemd",
    ("operator.md", "pip install vllm"): "a GPU",
    ("operator.md", "--engine vllm\n"): "a GPU",
    ("operator.md", "vllm.entrypoints.openai.api_server"): "a GPU",
    ("operator.md", "--tensor-parallel-size 4"): "GPUs and real checkpoints",
    ("operator.md", "chain claim --bootstrap /ip4/…"): "the loop block claims on the dev network",
    ("operator.md", "systemctl stop dolphin-node"): "systemd",
    ("validator.md", "validator --data-dir ~/validator --reference"): "foreground; the loop block runs two",
    ("validator.md", "validator audit"): "the SmolLM2 reference and a node serving it",
    ("api.md", "gateway init --data-dir ~/gateway"): "foreground, for a SmolLM2 pool",
    ("api.md", "curl -s -X POST"): "a gateway's answer to report",
    ("api.md", "ask --bootstrap /ip4/…"): "a SmolLM2 pool; the loop block asks the tiny model",
}
# The daemons those blocks leave running in the background, by data dir under the guides' home.
_DAEMONS = ("node", "validator-1", "validator-2", "relay", ".dolphin")


def _block_with(guide: str, needle: str) -> str:
    found = [block for block in _blocks(guide) if needle in block]
    assert len(found) == 1, f"docs/{guide}: {len(found)} blocks contain {needle!r}"
    return found[0]


@pytest.mark.unit
def test_every_shell_block_of_the_guides_is_run_or_says_why_not():
    chosen = [(guide, needle) for guide, needle in (*_RUN, *_NOT_RUN)]
    for guide, needle in chosen:
        _block_with(guide, needle)  # each names exactly one block
    for guide in GUIDES:
        for block in _blocks(guide):
            picked = [needle for g, needle in chosen if g == guide and needle in block]
            assert picked, f"docs/{guide}: run this block in _RUN or say in _NOT_RUN why not:\n{block}"


# What a guide leaves for the reader to fill in, filled in (the tiny model's id is the example's).
_PLACEHOLDERS = {"593b928a…2df5": "593b928a889bdcdd6aebd9df5357888e33ab8050ff32429ea954c6791aff2df5"}


@pytest.mark.process
@pytest.mark.chain
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_dev_network_blocks_of_the_guides_run_as_written(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    (work / ".venv" / "bin").mkdir(parents=True)
    shim = work / ".venv" / "bin" / "dolphin"  # `.venv/bin/dolphin` of the guides: this checkout's code
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m cli.main "$@"\n')
    shim.chmod(0o755)
    (work / ".venv" / "bin" / "python").symlink_to(sys.executable)
    env = os.environ | {"HOME": str(home), "PYTHONPATH": str(REPO), "DOLPHIN_RPC_URL": ""}
    env.pop("DOLPHIN_DATA_DIR", None)
    try:
        for guide, needle in _RUN:
            block = _block_with(guide, needle)
            for placeholder, value in _PLACEHOLDERS.items():
                block = block.replace(placeholder, value)
            script = tmp_path / "block.sh"
            script.write_text("set -e\n" + block)
            log = tmp_path / f"{guide}-{len(list(tmp_path.glob('*.log')))}.log"
            with log.open("w") as out:  # a background job (the chain) keeps writing here
                done = subprocess.run(
                    ["bash", str(script)], cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, timeout=900,
                )  # fmt: skip
            assert done.returncode == 0, (guide, needle, log.read_text()[-3000:])
            if "chain claim" in block:
                assert re.search(r"^Claimed \S+ POD\.$", log.read_text(), re.M), log.read_text()[-3000:]
        status = subprocess.run(
            [str(shim), "chain", "status", "--key-file", "me.key"], cwd=work, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert status.returncode == 0, status.stderr
        assert (home / "node" / "operator-binding.json").is_file()
        assert (home / "validator" / "validator.key").read_text() == (work / "validator.key").read_text()
    finally:
        for daemon in _DAEMONS:  # the chain last: the others drain against it
            _stop(home / daemon)


def _stop(data_dir: Path) -> None:
    """Ctrl-C to a daemon a guide started in the background (its pid is in its ready.json); one that
    ignores it for a minute is killed and the test fails."""
    ready = data_dir / "ready.json"
    if ready.is_file():
        pid = json.loads(ready.read_text())["pid"]
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while ready.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        if ready.exists():
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the daemon of {data_dir} ignored Ctrl-C for a minute")

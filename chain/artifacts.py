"""Compiled contract artifacts (Brownie's build/contracts/*.json) and decoding the custom errors in them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chain.errors import ChainError

BUILD_DIR = Path(__file__).resolve().parent.parent / "build" / "contracts"


class ArtifactError(ChainError):
    """A compiled contract artifact is missing or unreadable."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str


@cache
def load_artifact(name: str, build_dir: Path = BUILD_DIR) -> Artifact:
    path = build_dir / f"{name}.json"
    if not path.is_file():
        raise ArtifactError(f"no compiled artifact for {name} at {path}: run `make setup` (brownie compile)")
    try:
        data = json.loads(path.read_text())
        return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"])
    except (json.JSONDecodeError, KeyError) as exc:
        raise ArtifactError(f"{path} is not a Brownie artifact ({exc}); run `brownie compile` again") from exc


class ContractRevert(ChainError):
    """A call or transaction reverted; `error` names the contract's custom error when decodable."""

    def __init__(self, message: str, error: str | None = None, args: tuple = ()):
        super().__init__(message)
        self.error = error
        self.error_args = args


def decode_revert(abi: list[dict[str, Any]], data: str | bytes) -> tuple[str, tuple] | None:
    """Name and arguments of the custom error (from `abi`) that revert data `data` encodes, if any."""
    from eth_abi import decode
    from eth_utils import function_signature_to_4byte_selector

    raw = bytes.fromhex(data.removeprefix("0x")) if isinstance(data, str) else bytes(data)
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [i["type"] for i in item.get("inputs", [])]
        if raw[:4] == function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})"):
            try:
                return item["name"], tuple(decode(types, raw[4:]))
            except Exception:  # eth_abi raises several unrelated types on malformed data
                return item["name"], ()
    return None


NODE_MODULES = Path(__file__).resolve().parent.parent / "node_modules"


@cache
def load_npm_artifact(package_path: str, node_modules: Path = NODE_MODULES) -> Artifact:
    """A compiled artifact shipped in an npm package, e.g. "@uniswap/v2-core/build/UniswapV2Factory.json".

    Uniswap V2 is deployed from these (solc 0.5/0.6 output that our 0.8 compiler cannot rebuild; Router02's
    built-in pair init-code hash matches that Factory's pair bytecode).
    """
    path = node_modules / package_path
    if not path.is_file():
        raise ArtifactError(f"no compiled artifact at {path}: run `make setup` (npm install)")
    try:
        data = json.loads(path.read_text())
        bytecode = data["bytecode"] if isinstance(data["bytecode"], str) else data["bytecode"]["object"]
        return Artifact(name=path.stem, abi=data["abi"], bytecode="0x" + bytecode.removeprefix("0x"))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} is not a compiled contract artifact ({exc})") from exc

"""Finding the chain and its deployment, the way every `dolphin` command does.

- the RPC URL: given explicitly (an option or $DOLPHIN_RPC_URL), else the `ready.json` that `dolphin chain
  deploy` wrote into the chain data dir;
- the deployment file: given explicitly, else <chain data dir>/deployment-<chain id>.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from chain.client import ChainClient, ClientError
from chain.deploy import deployment_path, load_deployment
from chain.transactions import connect, read
from runtime.ready import READY_FILE

__all__ = ["ChainLocation"]


@dataclass(frozen=True)
class ChainLocation:
    """Where a chain and its deployment are (see the module docstring)."""

    rpc_url: str | None
    data_dir: Path
    deployment: Path | None = None

    def known(self) -> bool:
        """Whether a chain is named at all (explicitly, or by a ready.json in the data dir)."""
        return bool(self.rpc_url) or (self.data_dir / READY_FILE).is_file()

    def resolved_rpc_url(self) -> str:
        """The RPC URL; ClientError saying what to do when there is none."""
        if self.rpc_url:
            return self.rpc_url
        ready = self.data_dir / READY_FILE
        if ready.is_file():
            try:
                return json.loads(ready.read_text())["rpc_url"]
            except (ValueError, KeyError, TypeError):
                raise ClientError(
                    f"{ready} names no RPC URL: pass --rpc-url, or restart `dolphin chain deploy`"
                ) from None
        raise ClientError(
            f"no chain to talk to: pass --rpc-url (or set DOLPHIN_RPC_URL), or start a local one with "
            f"`dolphin chain deploy --data-dir {self.data_dir}`"
        )

    def client(self, key: str | None = None) -> ChainClient:
        """A client of the deployment on that chain (blocking: it connects and checks the contracts)."""
        rpc_url = self.resolved_rpc_url()
        path = self.deployment
        if path is None:
            chain_id = read(lambda: connect(rpc_url).eth.chain_id, "reading the chain id", rpc_url=rpc_url)
            path = deployment_path(self.data_dir, chain_id)
        return ChainClient(rpc_url, load_deployment(path), key)

"""A stand-in for the validator daemon in tests: one process running the money loop on a real host.

    python -m tests.validator.harness --data-dir DIR --rpc-url URL --deployment FILE --key-file FILE \\
        --bootstrap MULTIADDR --epoch-seconds 15 [--keeper]

It starts what the `dolphin validator` daemon starts of the money loop (validator.epochs.serve_settlement,
and validator.keeper.serve_buyback_keeper with --keeper) with dev-network timings, writes ready.json
(with `validator`: its address) and stops on SIGTERM. The validator daemon itself (issue #12) wires the
same calls in its own nursery.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio
import trio_asyncio

from chain.client import ChainClient, read_key_file
from chain.deploy import load_deployment
from p2p import HostConfig, open_host
from p2p.daemon import ready_document, write_ready_file
from validator.epochs import SettlementConfig, serve_settlement
from validator.evidence import open_evidence_store
from validator.keeper import KeeperConfig, serve_buyback_keeper


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(args.data_dir)
    chain = await trio.to_thread.run_sync(
        lambda: ChainClient(
            args.rpc_url, load_deployment(Path(args.deployment)), read_key_file(args.key_file)
        )
    )
    config = SettlementConfig(
        epoch_seconds=args.epoch_seconds,
        submit_grace_seconds=args.grace_seconds,
        sync_delay_seconds=1.0,
        sync_timeout_seconds=10.0,
        relay_stagger_seconds=1.0,
        poll_seconds=0.5,
        announce_seconds=2.0,
        first_epoch=args.first_epoch,
    )
    host_config = HostConfig(data_dir, listen=("/ip4/127.0.0.1/tcp/0",), bootstrap=tuple(args.bootstrap))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            trio_asyncio.open_loop(),
            open_evidence_store(data_dir, epoch_ms=config.epoch_seconds * 1000) as store,
            open_host(host_config) as host,
            trio.open_nursery() as nursery,
        ):
            await nursery.start(
                lambda task_status: serve_settlement(
                    host, chain, store, config, trees_dir=data_dir / "rewards", task_status=task_status
                )
            )
            if args.keeper:
                await nursery.start(serve_buyback_keeper, chain, KeeperConfig(interval_seconds=1.0))
            ready = write_ready_file(data_dir, ready_document(host, {"validator": chain.address}))
            async for _ in signals:
                break
            ready.unlink(missing_ok=True)
            nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.validator.harness", description=__doc__)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--epoch-seconds", type=int, default=15)
    parser.add_argument("--grace-seconds", type=float, default=3.0)
    parser.add_argument("--first-epoch", type=int)
    parser.add_argument("--keeper", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    logging.getLogger("libp2p").setLevel(logging.ERROR)
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

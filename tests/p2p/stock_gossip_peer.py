"""A GossipSub peer built from stock py-libp2p with none of p2p/'s hardening (for test_meshsub_frame).

Prints its listen address, then serves until killed. Not a test module: run as a script.
"""

import sys

import multiaddr
import trio
from libp2p import new_host
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V12, GossipSub
from libp2p.pubsub.pubsub import Pubsub
from libp2p.tools.anyio_service import background_trio_service


async def main() -> None:
    host = new_host()
    router = GossipSub([PROTOCOL_ID_V12], degree=6, degree_low=4, degree_high=12, heartbeat_interval=1)
    pubsub = Pubsub(host, router)
    async with (
        host.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]),
        background_trio_service(pubsub),
        background_trio_service(router),
    ):
        print(host.get_addrs()[0], flush=True)
        await trio.sleep(60)


if __name__ == "__main__":
    sys.exit(trio.run(main))

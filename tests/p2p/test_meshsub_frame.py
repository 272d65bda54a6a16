"""DESIGN.md's sharpest edge, reproduced: one 6-byte /meshsub frame ends a stock py-libp2p process.

The first test shows the bug is real in the pinned py-libp2p (if it starts failing, upstream fixed it
and the note in p2p/host.py can say so); the second shows a Dolphin peer shrugs the same frame off.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from p2p.config import HostConfig
from p2p.errors import P2PError
from p2p.host import open_host
from p2p.testing import PeerProcess

pytestmark = pytest.mark.process

SIX_BYTE_FRAME = bytes([5, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])  # length 5, then 5 bytes no protobuf parses
MESHSUB = "/meshsub/1.2.0"


async def _send_frame(tmp_path: Path, target_addr: str) -> None:
    async with open_host(HostConfig(tmp_path / "attacker")) as attacker:
        peer = await attacker.connect(target_addr)
        stream = await attacker.open_stream(peer, MESHSUB)
        await stream.write(SIX_BYTE_FRAME)
        # Held until the target has dealt with the frame (its end of the stream goes, whether the peer
        # survives or not): a host that stops hangs up, and the frame would die with the connection.
        with trio.fail_after(20):
            while True:
                try:
                    if not await stream.read(1024):
                        break
                except P2PError:
                    break


@pytest.mark.integration
@pytest.mark.trio
async def test_the_frame_kills_a_stock_py_libp2p_peer(tmp_path):
    script = Path(__file__).with_name("stock_gossip_peer.py")
    stock = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with trio.fail_after(30):
            addr = (await trio.to_thread.run_sync(stock.stdout.readline)).decode().strip()
        await _send_frame(tmp_path, addr)
        with trio.fail_after(20):
            returncode = await trio.to_thread.run_sync(stock.wait)
        assert returncode != 0
        assert b"DecodeError" in stock.stderr.read()
    finally:
        if stock.poll() is None:
            stock.kill()
            stock.wait()


@pytest.mark.integration
@pytest.mark.trio
async def test_the_frame_does_not_kill_a_dolphin_peer(tmp_path):
    target = PeerProcess(tmp_path / "target", ["--reachability", "public", "--subscribe", "/dolphin/bans/1"])
    try:
        await target.wait_ready()
        for _ in range(3):
            await _send_frame(tmp_path, target.addr)
        async with open_host(HostConfig(tmp_path / "checker", bootstrap=(target.addr,))) as checker:
            assert await checker.ping(target.peer_id) < 5
        assert target.alive(), target.log_tail()
    finally:
        assert target.stop() == 0  # and it still shuts down cleanly on SIGTERM

"""Noise frames are written whole: a cancelled writer must not break the connection under everyone else.

py-libp2p 0.8.1 encrypts a Noise transport message (which takes the next nonce) and then awaits the TCP
write lock and the socket. A writer cancelled at one of those awaits (its deadline passed, or a sibling
task cancelled it: the other DHT lookups once one has found the pool) leaves the message unsent and the
sender one nonce ahead of the receiver. The receiver then fails to authenticate every later message and
drops the connection, with every stream, circuit and answer on it: seen as a relayed `dolphin ask` over
a 100 ms link losing its circuit mid-answer (CI; 9 asks in 58 here). A cancel that lands mid-`send_all`
would instead leave half a message in the byte stream, with the same end.

So each message is written inside a shield, under its own deadline (`NOISE_FRAME_WRITE_SECONDS`): the
caller's cancellation takes effect once the message is out. A message that cannot be written in that
time (a peer that stopped reading) leaves the connection unusable whatever happens next, so it is closed
and the writer gets a `ConnectionClosedError`, as for a peer that hung up.
"""

from __future__ import annotations

import contextlib

import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.security.noise.io import BaseNoiseMsgReadWriter

# Longer than a 64 KiB message needs on any link a node should serve from; a caller whose own deadline
# is shorter waits this long at most, once, before the connection is given up.
NOISE_FRAME_WRITE_SECONDS = 20.0
_CLOSE_SECONDS = 2.0


def install_whole_noise_frames() -> None:
    """Make py-libp2p's Noise writes atomic with respect to cancellation (idempotent)."""
    if getattr(BaseNoiseMsgReadWriter.write_msg, "_whole", False):
        return
    interruptible = BaseNoiseMsgReadWriter.write_msg

    async def write_msg(self: BaseNoiseMsgReadWriter, msg: bytes, prefix_encoded: bool = False) -> None:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(NOISE_FRAME_WRITE_SECONDS) as deadline:
                await interruptible(self, msg, prefix_encoded)
            if deadline.cancelled_caught:
                with trio.move_on_after(_CLOSE_SECONDS), contextlib.suppress(Exception):
                    await self.close()
        if deadline.cancelled_caught:
            raise ConnectionClosedError(
                f"a Noise message could not be written in {NOISE_FRAME_WRITE_SECONDS:g} s: connection closed",
                transport="noise",
            )

    write_msg._whole = True  # type: ignore[attr-defined]  # marks the replacement, for idempotence
    BaseNoiseMsgReadWriter.write_msg = write_msg  # type: ignore[method-assign]  # py-libp2p has no hook

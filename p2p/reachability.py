"""Reachability: an AutoNAT-style dial-back probe (in the spirit of libp2p's autonat spec, simplified).

A peer asks a connected peer "can you reach me at these addresses?". The answering peer only tries
TCP addresses on the IP it sees the request come from, never anywhere else: otherwise anyone could
use the network to port-scan third parties (the autonat spec makes the same rule). A completed TCP
handshake to our listener is the evidence; the probe carries no libp2p session, so it works even
though the two peers are already connected.
"""

from __future__ import annotations

import logging

import msgpack
import multiaddr
import trio

from p2p.errors import P2PError
from p2p.streams import Stream

logger = logging.getLogger(__name__)

MAX_PROBE_ADDRS = 8
MAX_PROBE_REQUEST = 4096
_REACHABLE = b"\x01"
_UNREACHABLE = b"\x00"


def tcp_endpoints(addrs: list[str], only_ip: str | None = None) -> list[tuple[str, int]]:
    """(ip, port) of each plain /ip4|ip6/../tcp/.. address, optionally only those on `only_ip`."""
    endpoints = []
    for text in addrs[:MAX_PROBE_ADDRS]:
        try:
            addr = multiaddr.Multiaddr(text)
            names = [p.name for p in addr.protocols()]
            if "p2p-circuit" in names or "tcp" not in names:
                continue
            ip = addr.value_for_protocol("ip4") if "ip4" in names else addr.value_for_protocol("ip6")
            port = int(addr.value_for_protocol("tcp"))
        except Exception:  # unparsable entries are simply not probed
            continue
        if ip and (only_ip is None or ip == only_ip):
            endpoints.append((ip, port))
    return endpoints


async def answer_probe(stream: Stream, remote_ip: str | None, dial_timeout: float) -> None:
    """Server side: read the addresses, try a TCP handshake to those on the requester's IP, answer."""
    request = await stream.read_message(MAX_PROBE_REQUEST)
    try:
        addrs = msgpack.unpackb(request, raw=False, max_array_len=MAX_PROBE_ADDRS, max_str_len=512)
    except Exception:  # malformed request: answer "unreachable" rather than guess
        addrs = None
    reachable = False
    if isinstance(addrs, list) and all(isinstance(a, str) for a in addrs) and remote_ip:
        for ip, port in tcp_endpoints(addrs, only_ip=remote_ip):
            with trio.move_on_after(dial_timeout):
                try:
                    tcp = await trio.open_tcp_stream(ip, port)
                except OSError:
                    continue
                await tcp.aclose()
                reachable = True
                break
    await stream.write_message(_REACHABLE if reachable else _UNREACHABLE)
    await stream.close()


async def request_probe(stream: Stream, addrs: list[str]) -> bool:
    """Client side: True when the peer completed a TCP handshake to one of our `addrs`."""
    await stream.write_message(msgpack.packb(addrs[:MAX_PROBE_ADDRS], use_bin_type=True))
    answer = await stream.read_message(1)
    await stream.close()
    if answer not in (_REACHABLE, _UNREACHABLE):
        raise P2PError(f"peer {stream.peer_id} sent a malformed reachability answer")
    return answer == _REACHABLE

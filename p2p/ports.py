"""Listening ports: checked before a daemon does anything slow, and never shared with another process.

A daemon that finds its port busy only after loading a model wastes minutes and then dies deep inside a
nursery; so every daemon checks each port it was told to use first, and refuses a busy one in one line
that names the port and the option. py-libp2p 0.8.1 opens its TCP listeners with SO_REUSEPORT (for hole
punching, which we do not use), so a second process on the same `--listen` port starts and the kernel
splits the connections between the two: `exclusive_tcp_listeners` replaces that with plain listeners.
"""

from __future__ import annotations

import errno
import socket

import multiaddr
import trio
from libp2p.transport.exceptions import OpenConnectionError
from libp2p.transport.tcp import tcp as libp2p_tcp

from p2p.errors import ConfigError, P2PError

__all__ = [
    "PortInUse",
    "check_http_address",
    "check_listen_addrs",
    "check_tcp_port",
    "exclusive_tcp_listeners",
    "split_host_port",
]


class PortInUse(P2PError):
    """Another process already listens on a port this one was told to use."""


def split_host_port(address: str, option: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as (host, port); ConfigError naming `option` when it is not one."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{option} {address!r} is not HOST:PORT")
    return host, int(port_text)


def check_tcp_port(host: str, port: int, option: str) -> None:
    """Refuse (PortInUse, naming `option`) a TCP port another process listens on; port 0 is always free.

    The probe binds without SO_REUSEPORT, which the kernel refuses while anyone listens on the port, also
    when that listener itself set SO_REUSEPORT."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{option}: cannot resolve {host!r}: {exc.strerror}") from None
    for family, kind, proto, _name, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            # SO_REUSEADDR only lets us past connections in TIME_WAIT, never past a listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    busy = f"port {port} ({option} {host}:{port}) is in use by another process"
                    raise PortInUse(busy) from None
                raise ConfigError(f"{option} {host}:{port}: cannot listen there: {exc.strerror}") from None


def check_http_address(address: str, option: str) -> None:
    """`check_tcp_port` for a HOST:PORT setting."""
    check_tcp_port(*split_host_port(address, option), option)


def check_listen_addrs(addrs: tuple[str, ...] | list[str], option: str = "--listen") -> None:
    """`check_tcp_port` for each /ip4|ip6/…/tcp/PORT listen multiaddr."""
    for addr in addrs:
        parsed = multiaddr.Multiaddr(addr)
        names = [p.name for p in parsed.protocols()]
        host_protocol = next((name for name in ("ip4", "ip6", "dns4", "dns6", "dns") if name in names), None)
        if host_protocol is None or "tcp" not in names:
            continue
        port = int(parsed.value_for_protocol("tcp"))
        check_tcp_port(parsed.value_for_protocol(host_protocol), port, option)


async def exclusive_tcp_listeners(host: str | None, port: int) -> list[trio.SocketListener]:
    """What py-libp2p's TCP transport opens its listeners with, minus SO_REUSEPORT (see the module
    docstring). A busy port raises py-libp2p's OpenConnectionError, as its own version does."""
    try:
        return await trio.open_tcp_listeners(port, host=host or None)
    except OSError as exc:
        raise OpenConnectionError(f"Failed to listen on {host}:{port}: {exc.strerror}") from exc


def install_exclusive_tcp_listeners() -> None:
    """Make py-libp2p's TCP transport use `exclusive_tcp_listeners` (idempotent)."""
    libp2p_tcp._open_reuseport_listeners = exclusive_tcp_listeners

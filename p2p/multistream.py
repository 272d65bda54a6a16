"""Protocol selection in one round trip instead of two, and none for a connection's upgrades.

py-libp2p's multistream-select client writes its header, waits for the peer's, and only then proposes a
protocol: two round trips for every connection upgrade (security, then muxer) and every stream. The
multistream-select spec lets the initiator send the header and its first proposal together and read both
answers after (go-libp2p does); a listener reads them in order either way. So each selection here costs
one round trip, and a further one only for each protocol the peer refuses.

A connection's upgrades offer one protocol each (Noise, then Yamux: DESIGN.md), so the dialer need not
wait for the answer at all: it proposes and goes straight on with the protocol (Noise's first handshake
message, Yamux's first frames), and checks the two answers on the connection's first read, before the
protocol's own bytes (the spec's "lazy" initiator). A listener that refuses fails that read, and with it
the upgrade or the connection. A direct dial then costs one round trip (Noise's) instead of three.
The same holds for py-libp2p's own request/response streams named by the host (DHT queries, a relay's
HOP and STOP streams): the proposal leaves with the request, and the answers are read before the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import trio
from libp2p.abc import IMultiselectCommunicator
from libp2p.custom_types import TProtocol
from libp2p.io.abc import ReadWriteCloser
from libp2p.protocol_muxer import multiselect_client
from libp2p.protocol_muxer.exceptions import MultiselectClientError, MultiselectCommunicatorError
from libp2p.protocol_muxer.generic_selector import GenericMultistreamSelector
from libp2p.protocol_muxer.multiselect_client import (
    DEFAULT_NEGOTIATE_TIMEOUT,
    MULTISELECT_PROTOCOL_ID,
    PROTOCOL_NOT_FOUND_MSG,
    MultiselectClient,
)
from libp2p.protocol_muxer.multiselect_communicator import MultiselectCommunicator


async def select_one_of(
    self: MultiselectClient,
    protocols: Sequence[TProtocol],
    communicator: IMultiselectCommunicator,
    negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
) -> TProtocol:
    """The first of `protocols` the peer agrees to; MultiselectClientError as py-libp2p's says it (a
    refusal of all of them starts "protocols not supported", which callers tell from a dropped stream)."""
    if not protocols:
        raise MultiselectClientError("no protocol to propose")
    if len(protocols) == 1 and protocols[0] in _lazy_stream_protocols:
        assert isinstance(communicator, MultiselectCommunicator)  # py-libp2p's only kind
        await _select_lazily(communicator.read_writer, protocols[0], negotiate_timeout)
        return protocols[0]
    refusals: list[str] = []
    with trio.move_on_after(negotiate_timeout):
        await _write(communicator, MULTISELECT_PROTOCOL_ID, "handshake")
        await _write(communicator, protocols[0], "protocol")
        _check_header(await _read(communicator, "handshake"))
        for index, protocol in enumerate(protocols):
            if index:
                await _write(communicator, protocol, "protocol")
            answer = await _read(communicator, "protocol")
            if answer == protocol:
                return protocol
            if answer != PROTOCOL_NOT_FOUND_MSG:
                raise MultiselectClientError(
                    f"unrecognized response: {answer!r}, expected {protocol!r} or "
                    f"{PROTOCOL_NOT_FOUND_MSG!r}, protocol={protocol}"
                )
            refusals.append(f"protocol not supported: {protocol}, response={answer!r}")
        raise MultiselectClientError(
            multiselect_client._build_protocols_not_supported_message(protocols, negotiate_timeout, refusals)
        )
    raise MultiselectClientError(
        f"response timed out after {negotiate_timeout}s, protocols tried: {list(protocols)}"
    )


def _check_header(header: str) -> None:
    if header != MULTISELECT_PROTOCOL_ID:
        raise MultiselectClientError(
            f"multiselect protocol ID mismatch: expected {MULTISELECT_PROTOCOL_ID}, got {header!r}"
        )


async def _propose(communicator: IMultiselectCommunicator, protocol: TProtocol) -> None:
    await _write(communicator, MULTISELECT_PROTOCOL_ID, "handshake")
    await _write(communicator, protocol, "protocol")


async def _write(communicator: IMultiselectCommunicator, message: str, what: str) -> None:
    try:
        await communicator.write(message)
    except MultiselectCommunicatorError as error:
        raise MultiselectClientError(f"{what} write failed: {error}") from error


async def _read(communicator: IMultiselectCommunicator, what: str) -> str:
    try:
        return await communicator.read()
    except MultiselectCommunicatorError as error:
        raise MultiselectClientError(f"{what} read failed: {error}") from error


_eager_upgrade_select = GenericMultistreamSelector.select
# Request/response protocols whose initiator always reads the answer (so it reads the confirmation too)
_lazy_stream_protocols: set[str] = set()


async def select_upgrade(
    self: GenericMultistreamSelector,
    conn: ReadWriteCloser,
    is_initiator: bool,
    negotiate_timeout: int = DEFAULT_NEGOTIATE_TIMEOUT,
):
    """A connection upgrade's selection: a dialer offering one protocol proposes it and returns at once;
    the answers are checked on the connection's first read (`_confirm_on_first_read`)."""
    if not is_initiator or len(self.handlers) != 1:
        return await _eager_upgrade_select(self, conn, is_initiator, negotiate_timeout)
    ((protocol, handler),) = self.handlers.items()
    await _select_lazily(conn, protocol, negotiate_timeout)
    return protocol, handler


async def _select_lazily(conn: ReadWriteCloser, protocol: TProtocol, timeout: float) -> None:
    """Propose `protocol` on `conn` and return at once; its first read checks the answers."""
    with trio.fail_after(timeout):
        await _propose(MultiselectCommunicator(conn), protocol)
    _confirm_on_first_read(conn, protocol, timeout)


def _confirm_on_first_read(conn: ReadWriteCloser, protocol: TProtocol, timeout: float) -> None:
    """Until its first read returns, `conn.read` first reads the listener's header and its answer to
    `protocol`, and raises MultiselectClientError unless they agree to it."""

    async def first_read(n: int | None) -> bytes:
        communicator = MultiselectCommunicator(conn)
        with trio.move_on_after(timeout):
            _check_header(await _read(communicator, "handshake"))
            answer = await _read(communicator, "protocol")
            if answer != protocol:
                raise MultiselectClientError(f"the peer did not agree to {protocol}: it answered {answer!r}")
            return await conn.read(n)
        raise MultiselectClientError(f"response timed out after {timeout}s, protocols tried: [{protocol}]")

    replace_first_read(conn, first_read)


def replace_first_read(conn: Any, first_read: Callable[[int | None], Awaitable[bytes]]) -> None:
    """Make `conn`'s next read `first_read(n)`, once: the read it had before (the class's, or another
    one-shot replacement, which then still runs first) is back in place when `first_read` starts, so it
    reads the answers it checks through `conn.read` and returns the data asked for the same way. For a
    dialer that sent ahead and checks the listener's answers only when it first reads."""

    async def read(n: int | None = None) -> bytes:
        conn.read = earlier
        return await first_read(n)

    earlier = conn.read
    conn.read = read  # this connection (or stream) only, for one read


def install_pipelined_selection(lazy_stream_protocols: Iterable[str] = ()) -> None:
    """Make every py-libp2p protocol selection pipelined, a connection upgrade's lazy, and a stream's lazy
    when it proposes one of `lazy_stream_protocols` alone (idempotent)."""
    _lazy_stream_protocols.update(lazy_stream_protocols)
    MultiselectClient.select_one_of = select_one_of  # type: ignore[method-assign]  # no setting for it
    GenericMultistreamSelector.select = select_upgrade  # type: ignore[method-assign]  # nor for this

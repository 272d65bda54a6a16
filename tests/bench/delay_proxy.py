"""A user-space WAN link: a TCP proxy that delays every byte by a one-way delay and caps the bandwidth.

The kernel here has no netem, so distance is made in user space: each direction of each proxied
connection is a FIFO of (due time, chunk) pairs; a chunk read at `t` is written at
`max(t + delay, previous due) + len / rate`, which keeps order, adds the one-way delay once, and lets
a burst queue behind the bandwidth cap as it would behind a slow link. `delay_s` and `rate_bytes_s`
may be changed while connections are open; chunks read after the change use the new values.

A `FlightClock` shared by proxies adds up the time during which at least one chunk was in flight on any
of them: a sequence of N one-way flights of D each adds N * D whatever the CPU does between them, and
flights in parallel count once. Divided by a round trip, it counts the round trips on the critical
path without the noise of a shared machine's wall clock.

Listeners bind where they are told (127.0.0.1, or the outer end of a network namespace's veth): the
proxy never leaves this machine. Each direction's queue is bounded (`MAX_QUEUED_CHUNKS`): a reader
waits for the writer, which is TCP's own back-pressure.
"""

from __future__ import annotations

import dataclasses
import math

import trio

CHUNK_BYTES = 64 * 1024
MAX_QUEUED_CHUNKS = 1024
MAX_CONNECTIONS = 256


@dataclasses.dataclass
class Link:
    """The properties of one proxied hop, each way: delay in seconds, bandwidth in bytes/s (inf: none)."""

    delay_s: float = 0.0
    rate_bytes_s: float = math.inf

    def due(self, now: float, previous_due: float, size: int) -> float:
        """When a chunk of `size` bytes read at `now` leaves the link."""
        return max(now + self.delay_s, previous_due) + size / self.rate_bytes_s


@dataclasses.dataclass
class FlightClock:
    """The length of the union of the in-flight intervals recorded so far (see the module docstring)."""

    total_s: float = 0.0
    _covered_until: float = -math.inf

    def record(self, start: float, end: float) -> None:
        # Intervals arrive in order of their start (one trio clock), so the union grows at its end only.
        if end <= self._covered_until:
            return
        self.total_s += end - max(start, self._covered_until)
        self._covered_until = end

    def reset(self) -> None:
        self.total_s, self._covered_until = 0.0, -math.inf


@dataclasses.dataclass
class DelayProxy:
    """One listener forwarding to `target`, with `link` applied in both directions. Made by `serve`."""

    link: Link
    target: tuple[str, int]
    clock: FlightClock | None = None
    address: tuple[str, int] = ("", 0)
    connections: int = 0

    @property
    def port(self) -> int:
        return self.address[1]

    async def serve(
        self, host: str, port: int = 0, *, task_status: trio.TaskStatus[DelayProxy] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Accept on host:port (0: any free port) until cancelled; `task_status` gets this proxy."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.address = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self._relay_connection, listeners, handler_nursery=nursery)

    async def _relay_connection(self, inbound: trio.SocketStream) -> None:
        if self.connections >= MAX_CONNECTIONS:
            await inbound.aclose()
            return
        self.connections += 1
        try:
            outbound = await trio.open_tcp_stream(*self.target)
        except OSError:
            self.connections -= 1
            await inbound.aclose()
            return
        try:
            async with inbound, outbound, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, inbound, outbound, nursery.cancel_scope)
                nursery.start_soon(self._pump, outbound, inbound, nursery.cancel_scope)
        finally:
            self.connections -= 1

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        """One direction: read as it comes, write each chunk when it is due; EOF travels as a chunk."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](MAX_QUEUED_CHUNKS)

        async def read() -> None:
            previous_due = 0.0
            async with send:
                while True:
                    try:
                        chunk = await source.receive_some(CHUNK_BYTES)
                    except trio.BrokenResourceError:
                        chunk = b""
                    now = trio.current_time()
                    previous_due = self.link.due(now, previous_due, len(chunk))
                    if self.clock is not None and chunk:
                        self.clock.record(now, previous_due)
                    await send.send((previous_due, chunk))
                    if not chunk:
                        return

        async def write() -> None:
            async with receive:
                async for due, chunk in receive:
                    await trio.sleep_until(due)
                    try:
                        if not chunk:
                            await sink.send_eof()
                            return
                        await sink.send_all(chunk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        scope.cancel()  # the other end is gone: drop the whole connection
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(write)

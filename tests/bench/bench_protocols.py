"""protocols: how much the wire format costs on top of the bare libsodium primitives it is built on.

Paths measured, each against the bare pynacl calls doing the same cryptographic work, in the same run:

- prompt_send:     a 2 KB prompt: build the request, encode, Ed25519-sign, seal (ClientExchange)
                   vs bare: Ed25519 sign of 2 KB + crypto_kx keypair and client keys + XChaCha20-Poly1305
- prompt_receive:  the node's side: open the seal, decode, verify, check, replay-cache (NodeExchange.accept)
                   vs bare: crypto_kx server keys + XChaCha20-Poly1305 decrypt + Ed25519 verify
- chunk_send:      one small token chunk (4 tokens): encode and seal into the answer stream (node.chunk)
                   vs bare: one secretstream push of the same number of plaintext bytes
- chunk_receive:   open, decode and check one chunk (client.receive) vs bare: one secretstream pull
- signed_chunk_*:  the same small chunk as a signed envelope (how gossip messages travel)
                   vs bare: Ed25519 sign / verify of the same bytes
- receipt:         node signs the receipt and ends the stream, client opens and checks it and countersigns,
                   node verifies the countersigned receipt (fewer iterations: each needs a fresh exchange)
                   vs bare: 2 Ed25519 signs + 3 verifies

Each figure is the best of several repeats (least disturbed by other load); `slowdown` = our time per
operation / the bare primitives' time per operation.

What privacy costs (issue 15), next to the wire format before it — one frame per token padded to 32-byte
blocks, requests padded to 256-byte blocks, no object budget — measured with the same code and only the
old size rule or limit put back, in the same run:

- streaming:  an answer of 8-character tokens generated at 20, 50 and 200 tokens/s, sent as today, padded
              one frame per token, and batched by `TokenBatcher` every 25/50/100 ms (virtual clock: the
              engine's timing is simulated, the node's and client's work is real and timed). Per token:
              bytes on the wire, frames, node and client CPU; added time to first token and mean/max
              delay a token spends held back.
- sizes:      wire size of single-token chunks by token length, and of sealed requests by prompt length.
- decode_peak: tracemalloc peak of decoding 520 KB of empty maps, with and without the object budget.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import nacl.bindings as sodium
import nacl.signing

from protocols import ReplayCache, codec, e2e, envelope
from protocols.errors import LimitError
from protocols.framing import encode_uvarint
from protocols.inference import ClientExchange, NodeExchange, TokenBatcher
from protocols.messages import ResponseChunk
from protocols.schema import encode_message
from protocols.testing import encryption_keys, exchange_pair, identity, make_request

NOW = 1_700_000_000_000
PROMPT = ("The quick brown dolphin jumps over the lazy relay. " * 41)[:2048]
CHUNK_TEXT, CHUNK_IDS = " dolphins swim", (279, 11163, 1354, 23347)


def best_per_op(fn: Callable[[int], None], iterations: int, repeats: int) -> float:
    """Seconds per operation: the fastest of `repeats` runs of fn(iterations)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn(iterations)
        best = min(best, (time.perf_counter() - started) / iterations)
    return best


def measure(iterations: int = 2000, repeats: int = 5) -> dict[str, dict[str, float]]:
    client_id, node_id, node_keys = identity(1), identity(2), encryption_keys(2)
    # Every chunk below streams to one client: allow as many tokens as the schema does.
    request = make_request(node_id, prompt=PROMPT, max_tokens=1 << 20)
    signing_key = nacl.signing.SigningKey(client_id.seed)
    verify_key = signing_key.verify_key
    prompt_bytes = PROMPT.encode()
    results: dict[str, tuple[Callable[[int], None], Callable[[int], None]]] = {}

    # --- 2 KB prompt
    def prompt_send(n: int) -> None:
        for _ in range(n):
            ClientExchange(request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=NOW)

    def bare_prompt_send(n: int) -> None:
        for _ in range(n):
            signed = signing_key.sign(prompt_bytes)
            pk, sk = sodium.crypto_kx_keypair()
            _, tx = sodium.crypto_kx_client_session_keys(pk, sk, node_keys.public_key)
            sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(bytes(signed), b"", os.urandom(24), tx)

    sealed_requests = [
        ClientExchange(request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=NOW)
        for _ in range(iterations)
    ]

    def prompt_receive(n: int) -> None:
        cache = ReplayCache(per_signer=n)  # fresh each run: every request (all by one client) is new to it
        for exchange in sealed_requests[:n]:
            NodeExchange.accept(
                exchange.sealed_request, identity=node_id, encryption_keys=node_keys, now_ms=NOW, replay=cache
            )

    pk, sk = sodium.crypto_kx_keypair()
    _, tx = sodium.crypto_kx_client_session_keys(pk, sk, node_keys.public_key)
    signed_prompt = bytes(signing_key.sign(prompt_bytes))
    bare_ciphertext = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(signed_prompt, b"", b"n" * 24, tx)

    def bare_prompt_receive(n: int) -> None:
        for _ in range(n):
            rx, _ = sodium.crypto_kx_server_session_keys(node_keys.public_key, node_keys.secret_key, pk)
            plain = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(bare_ciphertext, b"", b"n" * 24, rx)
            verify_key.verify(plain)

    results["prompt_send"] = (prompt_send, bare_prompt_send)
    results["prompt_receive"] = (prompt_receive, bare_prompt_receive)

    # --- small token chunks, streamed
    chunk = ResponseChunk(seq=0, text=CHUNK_TEXT, token_ids=CHUNK_IDS)
    chunk_plain_size = len(encode_message(chunk))
    stream_key = b"k" * 32

    def make_pair() -> tuple[ClientExchange, NodeExchange]:
        client = ClientExchange(
            request, identity=client_id, node_encryption_key=node_keys.public_key, now_ms=NOW
        )
        node = NodeExchange.accept(
            client.sealed_request, identity=node_id, encryption_keys=node_keys, now_ms=NOW
        )
        client.receive(node.header())
        return client, node

    def chunk_send(n: int) -> None:
        _, node = make_pair()
        for _ in range(n):
            node.chunk(CHUNK_TEXT, CHUNK_IDS)

    def bare_chunk_send(n: int) -> None:
        state = sodium.crypto_secretstream_xchacha20poly1305_state()
        sodium.crypto_secretstream_xchacha20poly1305_init_push(state, stream_key)
        plain = b"x" * chunk_plain_size
        for _ in range(n):
            sodium.crypto_secretstream_xchacha20poly1305_push(state, plain)

    client_for_receive, node_for_receive = make_pair()
    chunk_frames = [node_for_receive.chunk(CHUNK_TEXT, CHUNK_IDS) for _ in range(iterations * repeats)]
    receive_position = [0]

    def chunk_receive(n: int) -> None:
        start = receive_position[0]
        for frame in chunk_frames[start : start + n]:
            client_for_receive.receive(frame)
        receive_position[0] = start + n

    push_state = sodium.crypto_secretstream_xchacha20poly1305_state()
    bare_header = sodium.crypto_secretstream_xchacha20poly1305_init_push(push_state, stream_key)
    bare_frames = [
        sodium.crypto_secretstream_xchacha20poly1305_push(push_state, b"x" * chunk_plain_size)
        for _ in range(iterations * repeats)
    ]
    pull_state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(pull_state, bare_header, stream_key)
    bare_position = [0]

    def bare_chunk_receive(n: int) -> None:
        start = bare_position[0]
        for frame in bare_frames[start : start + n]:
            sodium.crypto_secretstream_xchacha20poly1305_pull(pull_state, frame)
        bare_position[0] = start + n

    results["chunk_send"] = (chunk_send, bare_chunk_send)
    results["chunk_receive"] = (chunk_receive, bare_chunk_receive)

    # --- the same chunk as a signed envelope
    signed_chunk = envelope.sign(chunk, client_id, now_ms=NOW)

    def signed_chunk_send(n: int) -> None:
        for _ in range(n):
            envelope.sign(chunk, client_id, now_ms=NOW)

    def bare_sign(n: int) -> None:
        data = b"x" * len(signed_chunk)
        for _ in range(n):
            signing_key.sign(data)

    def signed_chunk_receive(n: int) -> None:
        for _ in range(n):
            envelope.open_signed(signed_chunk, ResponseChunk, now_ms=NOW)

    bare_signed = signing_key.sign(b"x" * len(signed_chunk))

    def bare_verify(n: int) -> None:
        for _ in range(n):
            verify_key.verify(bare_signed)

    results["signed_chunk_send"] = (signed_chunk_send, bare_sign)
    results["signed_chunk_receive"] = (signed_chunk_receive, bare_verify)

    # --- receipts: sign, check and countersign, verify
    # Exchanges are set up beforehand: only the receipt's own work is timed.
    receipt_pairs = iter([make_pair() for _ in range(max(1, iterations // 10) * repeats)])

    def receipt(n: int) -> None:
        for _ in range(n):
            client, node = next(receipt_pairs)
            client.receive(node.end("stop", tokens_in=5, started_at_ms=NOW, first_token_ms=1, duration_ms=2))
            node.accept_countersigned(client.countersigned_receipt())

    def bare_receipt(n: int) -> None:
        body = hashlib.sha256(b"receipt").digest() * 8
        for _ in range(n):
            node_signed = signing_key.sign(body)
            verify_key.verify(node_signed)
            client_signed = signing_key.sign(hashlib.sha256(bytes(node_signed)).digest())
            verify_key.verify(client_signed)
            verify_key.verify(node_signed)

    results["receipt"] = (receipt, bare_receipt)

    figures: dict[str, dict[str, float]] = {}
    for name, (ours, bare) in results.items():
        n = max(1, iterations // 10) if name == "receipt" else iterations
        ours_s = best_per_op(ours, n, repeats)
        bare_s = best_per_op(bare, n, repeats)
        figures[name] = {
            "ours_per_s": round(1 / ours_s),
            "bare_per_s": round(1 / bare_s),
            "ours_us": round(ours_s * 1e6, 2),
            "bare_us": round(bare_s * 1e6, 2),
            "slowdown": round(ours_s / bare_s, 2),
        }
    return figures


# ------------------------------------------------------------------------------------ what privacy costs

TODAY_REQUEST_BLOCK = 256  # before issue 15, requests were padded to 256-byte blocks
STREAM_TAG = sodium.crypto_secretstream_xchacha20poly1305_ABYTES
TOKEN = " dolphin"


def _wire(frame_size: int) -> int:
    """Bytes on the stream: the frame and its uvarint length."""
    return frame_size + len(encode_uvarint(frame_size))


@contextlib.contextmanager
def _todays_stream_padding() -> Iterator[None]:
    """The real code with the answer stream's size rule before issue 15: 32-byte blocks, no minimum."""
    bucket = e2e._power_of_two_at_least
    e2e._power_of_two_at_least = lambda size, minimum: STREAM_TAG + -(-(size - STREAM_TAG) // 32) * 32
    try:
        yield
    finally:
        e2e._power_of_two_at_least = bucket


def _stream(tokens: int, tokens_per_s: int, interval_ms: int) -> dict[str, float]:
    """One answer through TokenBatcher and ClientExchange; the engine's clock is virtual (a token every
    1000 / tokens_per_s ms, the node's timer firing exactly at the batcher's deadline). Interval 0 sends
    every token in a frame of its own, as before batching."""
    client, node = exchange_pair(max_tokens=tokens)
    client.receive(node.header())
    batcher = TokenBatcher(node, interval_ms=interval_ms)
    step_ms = 1000 / tokens_per_s
    sent: list[tuple[float, bytes]] = []  # (virtual time, frame)
    node_s = 0.0
    for i in range(tokens):
        now = i * step_ms
        started = time.perf_counter()
        while (deadline := batcher.deadline_ms) is not None and deadline <= now:  # the timer fired
            sent.append((deadline, batcher.poll(deadline)))
        if (frame := batcher.add(TOKEN, (1000 + i,), now_ms=round(now))) is not None:
            sent.append((now, frame))
        node_s += time.perf_counter() - started
    started = time.perf_counter()
    if (frame := batcher.flush()) is not None:
        sent.append((tokens * step_ms, frame))
    node_s += time.perf_counter() - started
    delays: list[float] = []
    started = time.perf_counter()
    for at, frame in sent:
        chunk = client.receive(frame, now_ms=round(at))
        first = len(delays)
        delays += [at - (first + j) * step_ms for j in range(len(chunk.token_ids))]
    client_s = time.perf_counter() - started
    assert len(delays) == tokens
    return {
        "bytes_per_token": round(sum(_wire(len(f)) for _, f in sent) / tokens, 1),
        "frames_per_token": round(len(sent) / tokens, 3),
        "node_us_per_token": round(node_s / tokens * 1e6, 2),
        "client_us_per_token": round(client_s / tokens * 1e6, 2),
        "ttft_added_ms": round(delays[0], 1),
        "mean_delay_ms": round(statistics.fmean(delays), 1),
        "max_delay_ms": round(max(delays), 1),
    }


def measure_streaming(tokens: int = 1000, repeats: int = 5) -> dict[str, dict[str, float]]:
    """Per-token cost of streaming an answer: today, padded, and padded + batched (module docstring)."""

    def best(tokens_per_s: int, interval_ms: int) -> dict[str, float]:
        runs = [_stream(tokens, tokens_per_s, interval_ms) for _ in range(repeats)]
        return min(runs, key=lambda r: r["node_us_per_token"] + r["client_us_per_token"])

    with _todays_stream_padding():
        rows = {"today": best(50, 0)}
    rows["padded"] = best(50, 0)
    for rate in (20, 50, 200):
        for interval in (25, 50, 100):
            rows[f"batched_{rate}tps_{interval}ms"] = best(rate, interval)
    return rows


def measure_sizes() -> dict[str, dict[str, dict[int, int]]]:
    """Wire sizes before and after padding: single-token chunks by token length, requests by prompt."""
    _, node = exchange_pair()
    node.header()
    lengths = (1, 3, 4, 12, 34, 35, 60)
    chunk_now = {length: len(node.chunk("x" * length, (1,))) for length in lengths}
    with _todays_stream_padding():
        chunk_today = {length: len(node.chunk("x" * length, (1,))) for length in lengths}
    request_today, request_now = {}, {}
    for chars in (1, 230, 1000, 5000, 20_000):
        exchange = ClientExchange(
            make_request(identity(2), prompt="y" * chars),
            identity=identity(1),
            node_encryption_key=encryption_keys(2).public_key,
            now_ms=NOW,
        )
        # Before: the envelope padded to 256-byte blocks, then sealed in the same layout.
        padded = sodium.sodium_pad(exchange.request_envelope, TODAY_REQUEST_BLOCK)
        request_today[chars] = len(codec.pack([1, b"k" * 32, b"e" * 32, b"n" * 24, padded + b"t" * 16]))
        request_now[chars] = len(exchange.sealed_request)
    return {
        "chunk_bytes_by_token_chars": {"today": chunk_today, "now": chunk_now},
        "request_bytes_by_prompt_chars": {"today": request_today, "now": request_now},
    }


def measure_decode_peak() -> dict[str, float]:
    """MiB allocated at the peak of decoding 520 KB of empty maps (the review's hostile request body)."""
    hostile = codec.pack([[{}] * 8192] * 63)
    peaks = {}
    for name, limits in (
        ("without_budget", codec.Limits(max_objects=1 << 30)),
        ("with_budget", codec.DEFAULT_LIMITS),
    ):
        tracemalloc.start()
        with contextlib.suppress(LimitError):
            codec.unpack(hostile, limits)
        peaks[name] = round(tracemalloc.get_traced_memory()[1] / 2**20, 2)
        tracemalloc.stop()
    return {"input_bytes": len(hostile), **peaks}


def _plot(figures: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(figures)
    fig, ax = plt.subplots(figsize=(8, 4))
    positions = range(len(names))
    ax.bar([p - 0.2 for p in positions], [figures[n]["bare_us"] for n in names], 0.4, label="bare pynacl")
    ax.bar([p + 0.2 for p in positions], [figures[n]["ours_us"] for n in names], 0.4, label="protocols")
    ax.set_xticks(list(positions), names, rotation=25, ha="right")
    ax.set_ylabel("µs per operation (lower is better)")
    ax.set_title("protocols vs bare libsodium primitives")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_streaming(rows: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(rows)
    fig, (bytes_ax, delay_ax) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    bytes_ax.bar(names, [rows[n]["bytes_per_token"] for n in names])
    bytes_ax.set_ylabel("bytes on the wire / token")
    delay_ax.bar(names, [rows[n]["mean_delay_ms"] for n in names], label="mean delay of a token")
    delay_ax.bar(names, [rows[n]["ttft_added_ms"] for n in names], label="added time to first token")
    delay_ax.set_ylabel("ms")
    delay_ax.legend()
    delay_ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    bytes_ax.set_title("streaming an answer: today vs padded vs padded + batched (8-char tokens)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out_dir: Path) -> dict:
    figures = measure()
    streaming = measure_streaming()
    _plot(figures, out_dir / "protocols.png")
    _plot_streaming(streaming, out_dir / "protocols-streaming.png")
    return {
        "paths": figures,
        "prompt_bytes": len(PROMPT.encode()),
        "chunk_tokens": len(CHUNK_IDS),
        "streaming": streaming,
        "sizes": measure_sizes(),
        "decode_peak_mib": measure_decode_peak(),
    }

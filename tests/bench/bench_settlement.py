"""Settling one epoch of 1M receipts from 10k nodes: verification, de-duplication and pricing, the engine,
the tree, against the signature-verification floor measured in the same run.

The receipts are real: each is a node-signed `Receipt` envelope countersigned by a client session key,
paid by a credit authorisation its wallet signed (50k sessions of 20 receipts, 1,000 wallets), with 1%
re-signed duplicates of an answer (same node and request, another envelope nonce). They are generated
once, in worker processes, into bench-results/cache/ (about 0.9 GB) and reused.

Phases, each timed on its own (wall seconds; the machine is shared):
- verify: every receipt decoded and both its Ed25519 signatures checked (`verify_countersigned_receipt`),
  and each distinct credit authorisation's Ethereum signature, in a pool of one process per core, giving
  the facts settlement needs (what a validator's evidence store keeps);
- dedup+price: one receipt per answer, charged to its client in order, capped (validator.settlement);
- engine: emission, base rewards and the reward engine's close over the 10k operators;
- tree: the Merkle tree of cumulative rewards.
The floor is one Ed25519 verification per signature (two per receipt), measured with the same pool on a
sample and scaled: what no verifier of these receipts can beat. On that sample each worker also verifies
the same receipts as settlement does right after, so `verify_to_floor_paired` compares the two under the
same load (the machine's load drifts between phases). Validators verify receipts as they arrive, during
the epoch (validator.receipts); what is left at the epoch's close is dedup+price, engine and tree. Peak
memory is the largest resident set of the main process and of any worker. BENCH_SETTLEMENT_RECEIPTS sets
the size (default 1,000,000).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import resource
import struct
import time
from fractions import Fraction
from pathlib import Path

from chain.rewards import POD, RewardParams
from chain.snapshot import CREDIT_READ_BATCH, ChainSnapshot
from protocols import codec, envelope
from protocols import testing as pt
from protocols.eth import EthAccount, keccak256
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import CountersignedReceipt, CreditAuthorisation, Receipt, eth_signer
from protocols.schema import decode_message
from validator.settlement import EpochMarket, ReceiptFacts, credit_digest, settle_epoch

RECEIPTS = int(os.environ.get("BENCH_SETTLEMENT_RECEIPTS", "1000000"))
NODES = 10_000
PER_SESSION = 20
WALLETS = 1_000
CHUNK = 20_000
EPOCH_MS = 86_400_000
EPOCH = 20_000
PRICE = 500_000  # 0.5 lUSD per million tokens
FLOOR_SAMPLE_CHUNKS = 2
GOAL_SECONDS = 60
GOAL_MIB = 2048
CHAIN_WALLETS = int(os.environ.get("BENCH_SETTLEMENT_WALLETS", "100000"))


def _seed(kind: str, n: int) -> bytes:
    return hashlib.sha256(f"bench-settlement:{kind}:{n}".encode()).digest()


def _node(n: int) -> Identity:
    return Identity(_seed("node", n))


def _wallet(n: int) -> EthAccount:
    return EthAccount(_seed("wallet", n))


# ---------------------------------------------------------------------------------------------- receipts


def _generate_chunk(task: tuple[Path, int, int]) -> int:
    """Write receipts [start, end) into `path` (4-byte big-endian length, then the receipt)."""
    path, start, end = task
    nodes: dict[int, Identity] = {}
    sessions: dict[int, tuple[Identity, CreditAuthorisation]] = {}
    previous: tuple[Receipt, Identity] | None = None
    with open(path, "wb") as out:
        for index in range(start, end):
            session = index // PER_SESSION
            if session not in sessions:
                client = Identity(_seed("session", session))
                sessions[session] = (client, pt.authorisation(_wallet(session % WALLETS), client.public_key))
            client, credit = sessions[session]
            if index % 100 == 99 and previous is not None:
                receipt, node = previous  # the same answer, signed again under another nonce
            else:
                node = nodes.setdefault(index % NODES, _node(index % NODES))
                receipt = Receipt(
                    request_id=_seed("request", index)[:16],
                    request_hash=_seed("request-hash", index),
                    request_bytes=600,
                    model=pt.TEST_MODEL,
                    client_key=client.public_key,
                    client=credit.client,
                    credit=credit,
                    max_tokens=512,
                    tokens_in=100 + index % 400,
                    tokens_out=index % 512,
                    output_hash=_seed("output", index),
                    started_at_ms=EPOCH * EPOCH_MS + index % EPOCH_MS,
                    first_token_ms=20,
                    duration_ms=900,
                    finish_reason="stop",
                )
            previous = (receipt, node)
            data = countersign_receipt(envelope.sign(receipt, node, now_ms=EPOCH * EPOCH_MS), client)
            out.write(struct.pack(">I", len(data)) + data)
    return end - start


def _chunks(directory: Path) -> list[Path]:
    return [directory / f"chunk-{index:04d}.bin" for index in range(-(-RECEIPTS // CHUNK))]


def _ensure_receipts(cache: Path) -> list[Path]:
    directory = cache / f"settlement-{RECEIPTS}"
    done = directory / "done.json"
    chunks = _chunks(directory)
    if done.exists():
        return chunks
    directory.mkdir(parents=True, exist_ok=True)
    tasks = [(path, i * CHUNK, min(RECEIPTS, (i + 1) * CHUNK)) for i, path in enumerate(chunks)]
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for made in pool.imap_unordered(_generate_chunk, tasks):
            print(f"generated {made} receipts", flush=True)
    done.write_text(json.dumps({"receipts": RECEIPTS, "seconds": round(time.perf_counter() - started, 1)}))
    return chunks


def _read(path: Path):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        yield data[offset + 4 : offset + 4 + size]
        offset += 4 + size


# ---------------------------------------------------------------------------------------------- phases


_checked: dict[bytes, bool] = {}  # per worker: credit authorisations already verified


def _verify_chunk(path: Path) -> tuple[list[tuple], dict[bytes, bytes]]:
    """Verify every receipt of a chunk; returns the facts and the new authorisations (wire bytes)."""
    facts, credits = [], {}
    for data in _read(path):
        verified = verify_countersigned_receipt(data)
        r = verified.receipt
        digest = credit_digest(r.credit)
        if digest not in _checked:
            _checked[digest] = eth_signer(r.credit, pt.TEST_DOMAIN) == r.credit.client
            credits[digest] = codec.pack(r.credit.to_wire())
        if not _checked[digest]:
            continue
        facts.append(
            (verified.digest, verified.node_key, r.request_hash, r.model, r.client_key, r.started_at_ms,
             r.tokens_in + r.tokens_out, digest)
        )  # fmt: skip
    return facts, credits


def _signatures(path: Path) -> list[tuple[bytes, bytes, bytes]]:
    """(public key, signed message, signature) of both signatures of every receipt in a chunk."""
    from protocols.envelope import _signing_input, domain_of
    from protocols.inference import _countersign_input

    triples = []
    for data in _read(path):
        outer = decode_message(data, CountersignedReceipt)
        _, signed_part, signature = codec.unpack(outer.receipt)
        signer = codec.unpack(signed_part)[2]
        triples.append((signer, _signing_input(domain_of(Receipt), signed_part), signature))
        client = envelope.open_signed(outer.receipt, Receipt, check_time=False).message.client_key
        triples.append((client, _countersign_input(outer.receipt), outer.client_signature))
    return triples


def _paired_chunk(path: Path) -> tuple[int, float, float]:
    """The chunk's signatures verified alone (the floor), then the chunk verified as settlement does,
    back to back in one worker so both see the same load: (signatures, floor seconds, verify seconds)."""
    import nacl.signing

    triples = _signatures(path)
    started = time.perf_counter()
    for public_key, message, signature in triples:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    floor = time.perf_counter() - started
    _checked.clear()
    started = time.perf_counter()
    _verify_chunk(path)
    verify = time.perf_counter() - started
    _checked.clear()  # the settlement phase reuses this worker: it must verify (and return) these again
    return len(triples), floor, verify


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


def credit_reads(data_dir: Path, wallets: int = CHAIN_WALLETS, sample: int = 1_000) -> dict:
    """On a fresh Anvil with the system deployed: the closing's credit reads for `wallets` distinct wallets
    (10% of them funded, the rest junk: the read costs the same) through Credits.creditsOf in batches of
    CREDIT_READ_BATCH, against the two calls per wallet it replaced (creditOf and withdrawalRequestOf),
    timed on `sample` wallets and scaled."""
    from chain.client import ChainClient
    from chain.snapshot import read_available_credit
    from chain.testing import open_deployed_chain

    addresses = [hashlib.sha256(f"bench-wallet:{n}".encode()).digest()[:20] for n in range(wallets)]
    with open_deployed_chain(data_dir) as deployed:
        reader = ChainClient(deployed.rpc_url, deployed.deployment)
        user = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[5])
        user.credits_deposit(10**9)
        block = deployed.w3.eth.block_number
        started = time.perf_counter()
        available = read_available_credit(reader, block, addresses, {}, 0)
        batched = time.perf_counter() - started
        started = time.perf_counter()
        for wallet in addresses[:sample]:
            address = reader.w3.to_checksum_address("0x" + wallet.hex())
            reader.call("Credits", "creditOf", address, block=block)
            reader.call("Credits", "withdrawalRequestOf", address, block=block)
        per_wallet = (time.perf_counter() - started) / sample
    return {
        "wallets": wallets,
        "batched_seconds": round(batched, 2),
        "batched_calls": -(-wallets // CREDIT_READ_BATCH),
        "per_wallet_calls_seconds_scaled": round(per_wallet * wallets, 2),
        "per_wallet_sample": sample,
        "wallets_read": len(available),
    }


def run(out_dir: Path) -> dict:
    chunks = _ensure_receipts(out_dir / "cache")
    workers = os.cpu_count() or 1
    result: dict = {
        "receipts": RECEIPTS,
        "nodes": NODES,
        "sessions": -(-RECEIPTS // PER_SESSION),
        "workers": workers,
    }

    with multiprocessing.Pool(workers) as pool:
        sample = chunks[: FLOOR_SAMPLE_CHUNKS * workers]
        measured = pool.map(_paired_chunk, sample)
        count = sum(signatures for signatures, _, _ in measured)
        floor_seconds = sum(floor for _, floor, _ in measured)
        paired_ratio = sum(verify for _, _, verify in measured) / floor_seconds
        # The workers verify in parallel, so the floor of the epoch is the sample's pace over all of its
        # signatures, divided among them.
        per_signature = floor_seconds / count
        result["floor"] = {
            "signatures": 2 * RECEIPTS,
            "seconds": round(per_signature * 2 * RECEIPTS / workers, 2),
            "microseconds_per_signature_per_worker": round(per_signature * 1e6, 1),
            "sample_signatures": count,
            "verify_to_floor_paired": round(paired_ratio, 3),
        }
        print(json.dumps(result["floor"]), flush=True)

        started = time.perf_counter()
        facts: list[ReceiptFacts] = []
        credits: dict[bytes, CreditAuthorisation] = {}
        interned: dict[bytes, bytes] = {}
        for rows, new in pool.imap(_verify_chunk, chunks):
            for digest, raw in new.items():
                credits.setdefault(digest, CreditAuthorisation.from_wire(codec.unpack(raw)))
            for row in rows:
                node, model, client, credit = (
                    interned.setdefault(v, v) for v in (row[1], row[3], row[4], row[7])
                )
                facts.append(ReceiptFacts(row[0], node, row[2], model, client, row[5], row[6], credit))
        verify_seconds = time.perf_counter() - started
    print(f"verified {len(facts)} receipts in {verify_seconds:.1f} s", flush=True)

    rng = random.Random(7)
    operators = {}
    for n in range(NODES):
        operators[keccak256(peer_id_from_public_key(_node(n).public_key))] = f"0x{n + 1:040x}"
    market = EpochMarket(
        prices={pt.TEST_MODEL: PRICE},
        available={_wallet(w).address: 10**15 for w in range(WALLETS)},
        operators=operators,
        pod_per_unit=Fraction(10 * POD, 10**6),
        credits_domain=pt.TEST_DOMAIN,
    )
    accounts = sorted(operators.values())
    snapshot = ChainSnapshot(
        block=1,
        timepoint=1,
        params=RewardParams(),
        active_bonds={a: rng.randrange(0, 100_000) * POD for a in accounts},
        registered=frozenset(accounts),
        slashed=frozenset(),
    )
    timings = {}
    started = time.perf_counter()
    settlement = settle_epoch(EPOCH, EPOCH_MS, facts, credits, snapshot, market, timings=timings)
    settle_seconds = time.perf_counter() - started
    tree = settlement.tree
    phases = {
        "verify": round(verify_seconds, 2),
        "dedup_and_price": round(timings["dedup_and_price"], 2),
        "engine": round(timings["engine"], 2),
        "tree": round(timings["tree"], 2),
    }
    total = sum(phases.values())
    result.update(
        phases_seconds=phases,
        settle_epoch_seconds=round(settle_seconds, 2),
        total_seconds=round(total, 2),
        ratio_to_floor=round(total / result["floor"]["seconds"], 2),
        verify_ratio_to_floor=round(verify_seconds / result["floor"]["seconds"], 2),
        counted=settlement.receipt_count,
        paid=settlement.payments.paid,
        unpaid=settlement.payments.unpaid,
        duplicates_dropped=len(facts) - settlement.receipt_count,
        operators_paid=sum(1 for r in settlement.close.accounts.values() if r.reward),
        root="0x" + tree.root.hex(),
        peak_mib_main=round(_peak_mib(resource.RUSAGE_SELF), 1),
        peak_mib_worker=round(_peak_mib(resource.RUSAGE_CHILDREN), 1),
        goal=f"under {GOAL_SECONDS} s and {GOAL_MIB} MiB",
    )
    result["meets_goal"] = total < GOAL_SECONDS and result["peak_mib_main"] < GOAL_MIB
    result["credit_reads"] = credit_reads(out_dir / "chain")
    _plot(result, out_dir / "settlement.png")
    result["plot"] = "settlement.png"
    return result


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = result["phases_seconds"]
    names = ["floor (Ed25519 only)", *phases]
    values = [result["floor"]["seconds"], *phases.values()]
    figure, axis = plt.subplots(figsize=(8, 3.6))
    axis.barh(names, values, color=["0.6", *["tab:blue"] * len(phases)])
    axis.axvline(GOAL_SECONDS, color="tab:red", linestyle="--", linewidth=1, label=f"goal ({GOAL_SECONDS} s)")
    axis.set_xlabel(f"wall seconds, {result['receipts']:,} receipts, {result['workers']} workers")
    axis.set_title(f"Settling an epoch: {result['total_seconds']} s, {result['ratio_to_floor']}x the floor")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""Settling one epoch: 1M receipts paid by 100k wallets to 10k nodes, 10% of them junk. Verification,
de-duplication and pricing, the engine and the tree against the signature-verification floor measured in the
same run; then, on Anvil with the system deployed, what a validator does with such an epoch: admission,
credit reads, a fresh validator's sync and the daemon's close.

The receipts are real: each is a node-signed `Receipt` envelope countersigned by a client session key, paid
by a credit authorisation its wallet signed, with 1% re-signed duplicates of an answer (same node and
request, another envelope nonce). Sessions of up to 20 receipts each pay from one wallet, as many per
session as spreads the paid receipts over every paying wallet (9 for the full run). A `--junk` share of the
sessions is junk, in equal thirds: paid by a wallet that holds no credit, served by nodes nobody registered,
or forged (an authorisation claiming a funded wallet signed by another key, every other receipt of it also
countersigned by a key that is not the session's). The authorisations are signed in the Credits domain of
the bench's Anvil deployment (deterministic). They are generated once, in worker processes, into
bench-results/cache/ (about 0.9 GB for the full run) and reused.

Phases, each timed on its own (wall seconds; the machine is shared):
- verify: every receipt decoded and both its Ed25519 signatures checked (`verify_countersigned_receipt`),
  and each distinct credit authorisation's Ethereum signature, in a pool of one process per core, giving
  the facts settlement needs (what a validator's evidence store keeps); forged receipts are dropped;
- dedup+price: one receipt per answer, charged to its client in order, capped (validator.settlement), with
  every paying wallet funded and the junk wallets not;
- engine: emission, base rewards and the reward engine's close over the operators;
- tree: the Merkle tree of cumulative rewards.
The floor is one Ed25519 verification per signature (two per receipt), measured with the same pool on a
sample and scaled: what no verifier of these receipts can beat. On that sample each worker also verifies
the same receipts as settlement does right after, so `verify_to_floor_paired` compares the two under the
same load (the machine's load drifts between phases). Validators verify receipts as they arrive, during
the epoch (validator.receipts); what is left at the epoch's close is dedup+price, engine and tree. Peak
memory is the largest resident set of the main process and of any worker.

On Anvil (the nodes registered to `--operators` operators with Bonding.registerNode, the paying wallets'
credit written into Credits' storage):
- credit_reads: Credits.creditsOf over the epoch's paying wallets in batches of CREDIT_READ_BATCH (time and
  calls), against the two calls per wallet it replaced, timed on a sample and scaled;
- admission: `--admission` receipts of the epoch offered in batches of MAX_RECEIPT_BATCH to a
  ReceiptService with the daemon's gate (`chain_gate`, reading the chain) and an evidence store, through
  its stream handler as a node's submission reaches it (the stream is an in-memory stand-in): receipts/s,
  the seconds in verification, the gate and the store, and the verdicts by reason;
- sync: a fresh validator (empty store) fetches that epoch, what admission stored, from the first one with
  `fetch_missing` (RECEIPT_SYNC_PROTOCOL between two libp2p hosts on 127.0.0.1): seconds and receipts/s;
- close: an evidence store holding every receipt of the epoch that verifies (junk that a gate would refuse
  included: the worst a store can hold) is closed as the validator daemon closes an epoch
  (`SettlementService._settle`: the store's facts and which authorisations the receipt service verified
  on their way in, the closing block, the chain read at it by validator.closing, settle_epoch, the
  election, the store's record and the tree file), each part timed,
  with the JSON-RPC requests it made by method. The store also holds `--earlier-epochs` settled epochs
  whose debit batches are still pending (a daily validator's steady state: signatures live six days), so
  the close reads whether each is settled. Goal: under 30 s for 1M receipts from 100k wallets.

Sizes are options of `python -m tests.bench settlement` (see `add_arguments`); the defaults are the full
run. BENCH_SETTLEMENT_RECEIPTS and BENCH_SETTLEMENT_WALLETS set the defaults of --receipts and --wallets.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import sqlite3
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

from chain.rewards import POD, RewardParams
from chain.snapshot import CREDIT_READ_BATCH, ChainSnapshot
from protocols import codec, envelope
from protocols import testing as pt
from protocols.errors import ProtocolError
from protocols.eth import EthAccount, TypedDomain, keccak256, to_checksum_address
from protocols.inference import countersign_receipt, verify_countersigned_receipt
from protocols.keys import Identity, peer_id_from_public_key
from protocols.messages import (
    MAX_RECEIPT_BATCH,
    CountersignedReceipt,
    CreditAuthorisation,
    OperatorBinding,
    Receipt,
    ReceiptBatch,
    ReceiptBatchAck,
    eth_sign,
    eth_signer,
)
from protocols.schema import decode_message, encode_message
from validator.settlement import EpochMarket, ReceiptFacts, credit_digest, settle_epoch

PER_SESSION = 20
"""The most receipts of one session (one client key, one authorisation)."""
EPOCH_MS = 86_400_000
EPOCH = 22_000
"""2030-03-27: an epoch the chain reaches by moving its clock forward after the deployment."""
PRICE = 500_000  # 0.5 lUSD per million tokens: the deployment's default price
FLOOR_SAMPLE_CHUNKS = 2
GOAL_SECONDS = 60
GOAL_MIB = 2048
CLOSE_GOAL_SECONDS = 30
JUNK_KINDS = ("unfunded wallet", "unregistered node", "forged")
JUNK_NODES = 100
WALLET_CREDIT = 10**9
"""What each paying wallet holds on chain: 1,000 lUSD, far more than its receipts cost."""
PHASES = ("settle", "credit_reads", "admission", "sync", "close")


@dataclass(frozen=True)
class Sizes:
    """What one run measures (the defaults are the full run)."""

    receipts: int = int(os.environ.get("BENCH_SETTLEMENT_RECEIPTS", "1000000"))
    wallets: int = int(os.environ.get("BENCH_SETTLEMENT_WALLETS", "100000"))
    junk: float = 0.10
    nodes: int = 10_000
    operators: int = 1_000
    admission: int = 100_000
    earlier_epochs: int = 6
    credit_sample: int = 1_000
    chunk: int = 20_000
    phases: tuple[str, ...] = PHASES

    def __post_init__(self) -> None:
        if min(self.receipts, self.wallets, self.nodes, self.operators, self.chunk) < 1:
            raise ValueError("receipts, wallets, nodes, operators and chunk must be positive")
        if not 0 <= self.junk < 1:
            raise ValueError("--junk is a share of the receipts, in [0, 1)")
        unknown = set(self.phases) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown phases {sorted(unknown)}; choose from {PHASES}")

    @property
    def junk_bps(self) -> int:
        return round(self.junk * 10_000)

    @property
    def per_session(self) -> int:
        paid = self.receipts * (10_000 - self.junk_bps) // 10_000
        return max(1, min(PER_SESSION, paid // self.wallets))

    @property
    def sessions(self) -> int:
        return -(-self.receipts // self.per_session)

    def junk_before(self, session: int) -> int:
        """How many of the sessions before `session` are junk."""
        return session * self.junk_bps // 10_000

    def junk_kind(self, session: int) -> str | None:
        """Which junk `session` is (None: an honest, paid session)."""
        before = self.junk_before(session)
        return JUNK_KINDS[before % len(JUNK_KINDS)] if self.junk_before(session + 1) > before else None

    def paying_wallet(self, session: int) -> int:
        return (session - self.junk_before(session)) % self.wallets

    def operator_of(self, node: int) -> int:
        return node % self.operators


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m tests.bench settlement`; the defaults are the full run."""
    group = parser.add_argument_group("settlement")
    default = Sizes()
    group.add_argument("--receipts", type=int, default=default.receipts, help="receipts in the epoch")
    group.add_argument("--wallets", type=int, default=default.wallets, help="distinct paying wallets")
    group.add_argument("--junk", type=float, default=default.junk, help="share of junk receipts")
    group.add_argument("--nodes", type=int, default=default.nodes, help="registered nodes")
    group.add_argument("--operators", type=int, default=default.operators, help="their operators")
    group.add_argument(
        "--admission",
        type=int,
        default=default.admission,
        help="receipts offered through the receipt service (0: all); what it stores is the sync's epoch",
    )
    group.add_argument(
        "--earlier-epochs",
        type=int,
        default=default.earlier_epochs,
        help="settled epochs before the closed one whose debit batches are still pending at its close",
    )
    group.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated, of {','.join(PHASES)} (the floor and verification always run)",
    )


def sizes_from(options: argparse.Namespace | Sizes | None) -> Sizes:
    if options is None or isinstance(options, Sizes):
        return options or Sizes()
    given = {f.name: getattr(options, f.name) for f in fields(Sizes) if hasattr(options, f.name)}
    if isinstance(given.get("phases"), str):
        given["phases"] = tuple(p for p in given["phases"].split(",") if p)
    return Sizes(**given)


def _seed(kind: str, n: int) -> bytes:
    return hashlib.sha256(f"bench-settlement:{kind}:{n}".encode()).digest()


def _node(n: int) -> Identity:
    return Identity(_seed("node", n))


def _junk_node(n: int) -> Identity:
    return Identity(_seed("junk-node", n))


def _wallet(n: int) -> EthAccount:
    return EthAccount(_seed("wallet", n))


def _operator(n: int) -> EthAccount:
    return EthAccount(_seed("operator", n))


def _peer_hash(identity: Identity) -> bytes:
    return keccak256(peer_id_from_public_key(identity.public_key))


def _wallet_addresses(span: tuple[int, int]) -> list[bytes]:
    return [_wallet(n).address for n in range(*span)]


# ---------------------------------------------------------------------------------------------- receipts


def _session(
    sizes: Sizes, domain: TypedDomain, session: int
) -> tuple[Identity, CreditAuthorisation, str | None]:
    """A session's client key, the authorisation that pays for it, and what junk it is."""
    client = Identity(_seed("session", session))
    kind = sizes.junk_kind(session)
    if kind == "unfunded wallet":
        payer = EthAccount(_seed("junk-wallet", session))
        return client, pt.authorisation(payer, client.public_key, domain=domain), kind
    victim = _wallet(sizes.paying_wallet(session))
    if kind != "forged":
        return client, pt.authorisation(victim, client.public_key, domain=domain), kind
    # Signed by a key of the forger's, claiming the victim's wallet.
    forger = pt.authorisation(EthAccount(_seed("forger", session)), client.public_key, domain=domain)
    forged = dataclasses.replace(forger, client=victim.address)
    return client, forged, kind


def _generate_chunk(task: tuple[Path, int, int, Sizes, TypedDomain]) -> int:
    """Write receipts [start, end) into `path` (4-byte big-endian length, then the receipt)."""
    path, start, end, sizes, domain = task
    nodes: dict[int, Identity] = {}
    junk_nodes: dict[int, Identity] = {}
    sessions: dict[int, tuple[Identity, CreditAuthorisation, str | None]] = {}
    previous: tuple[Receipt, Identity, Identity] | None = None
    with open(path, "wb") as out:
        for index in range(start, end):
            session = index // sizes.per_session
            if session not in sessions:
                sessions.clear()
                sessions[session] = _session(sizes, domain, session)
            client, credit, kind = sessions[session]
            signer = client
            if kind == "forged" and index % 2:
                signer = Identity(_seed("forger-key", session))  # a countersignature that does not verify
            if index % 100 == 99 and previous is not None:
                receipt, node, signer = previous  # the same answer, signed again under another nonce
            else:
                if kind == "unregistered node":
                    node = junk_nodes.setdefault(index % JUNK_NODES, _junk_node(index % JUNK_NODES))
                else:
                    node = nodes.setdefault(index % sizes.nodes, _node(index % sizes.nodes))
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
            previous = (receipt, node, signer)
            data = countersign_receipt(envelope.sign(receipt, node, now_ms=EPOCH * EPOCH_MS), signer)
            out.write(struct.pack(">I", len(data)) + data)
    return end - start


def _ensure_receipts(cache: Path, sizes: Sizes, domain: TypedDomain) -> list[Path]:
    name = (
        f"settlement-{sizes.receipts}-w{sizes.wallets}-j{sizes.junk_bps}-n{sizes.nodes}"
        f"-c{sizes.chunk}-{domain.separator.hex()[:8]}"
    )
    directory = cache / name
    done = directory / "done.json"
    chunks = [directory / f"chunk-{index:04d}.bin" for index in range(-(-sizes.receipts // sizes.chunk))]
    if done.exists():
        return chunks
    directory.mkdir(parents=True, exist_ok=True)
    tasks = [
        (path, i * sizes.chunk, min(sizes.receipts, (i + 1) * sizes.chunk), sizes, domain)
        for i, path in enumerate(chunks)
    ]
    started = time.perf_counter()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        for made in pool.imap_unordered(_generate_chunk, tasks):
            print(f"generated {made} receipts", flush=True)
    done.write_text(
        json.dumps({"receipts": sizes.receipts, "seconds": round(time.perf_counter() - started, 1)})
    )
    return chunks


def _read(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        yield data[offset + 4 : offset + 4 + size]
        offset += 4 + size


# ---------------------------------------------------------------------------------------------- phases


_checked: dict[bytes, bool] = {}  # per worker: credit authorisations already verified


def _authorised(credit: CreditAuthorisation, domain: TypedDomain) -> bool:
    try:
        return eth_signer(credit, domain) == credit.client
    except ProtocolError:
        return False


def _verify_chunk(task: tuple[Path, TypedDomain]) -> tuple[list[tuple], dict[bytes, bytes], int]:
    """Verify every receipt of a chunk: the facts of those that verify (each with its position in the
    chunk), the new authorisations (wire bytes), and how many were forged."""
    path, domain = task
    facts, credits, forged = [], {}, 0
    for position, data in enumerate(_read(path)):
        try:
            verified = verify_countersigned_receipt(data)
        except ProtocolError:
            forged += 1
            continue
        r = verified.receipt
        digest = credit_digest(r.credit)
        if digest not in _checked:
            _checked[digest] = _authorised(r.credit, domain)
            credits[digest] = codec.pack(r.credit.to_wire())
        if not _checked[digest]:
            forged += 1
            continue
        facts.append(
            (verified.digest, verified.node_key, r.request_hash, r.model, r.client_key, r.started_at_ms,
             r.tokens_in + r.tokens_out, digest, position)
        )  # fmt: skip
    return facts, credits, forged


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


def _paired_chunk(task: tuple[Path, TypedDomain]) -> tuple[int, float, float]:
    """The chunk's signatures verified alone (the floor), then the chunk verified as settlement does,
    back to back in one worker so both see the same load: (signatures, floor seconds, verify seconds)."""
    import nacl.exceptions
    import nacl.signing

    triples = _signatures(task[0])
    started = time.perf_counter()
    for public_key, message, signature in triples:
        with contextlib.suppress(nacl.exceptions.BadSignatureError):  # a forged one costs the same
            nacl.signing.VerifyKey(public_key).verify(message, signature)
    floor = time.perf_counter() - started
    _checked.clear()
    started = time.perf_counter()
    _verify_chunk(task)
    verify = time.perf_counter() - started
    _checked.clear()  # the settlement phase reuses this worker: it must verify (and return) these again
    return len(triples), floor, verify


def _peak_mib(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


# ---------------------------------------------------------------------------------------------- chain


class RequestCounter:
    """JSON-RPC requests a web3 connection makes, by method (a web3 middleware)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def install(self, w3: Any) -> None:
        from web3.middleware import Web3Middleware

        counts = self.counts

        class Counting(Web3Middleware):
            def wrap_make_request(self, make_request):  # type: ignore[no-untyped-def]
                def counted(method, params):  # type: ignore[no-untyped-def]
                    counts[str(method)] += 1
                    return make_request(method, params)

                return counted

        w3.middleware_onion.add(Counting, name=f"bench-counter-{id(self)}")
        provider = w3.provider
        batch_request = provider.make_batch_request

        def counted_batch(requests):  # type: ignore[no-untyped-def]
            counts["JSON-RPC batches"] += 1
            for method, _ in requests:
                counts[f"{method} (in batches)"] += 1
            return batch_request(requests)

        provider.make_batch_request = counted_batch

    def take(self) -> dict[str, int]:
        """The counts so far, then start again from zero."""
        counts = dict(sorted(self.counts.items()))
        self.counts.clear()
        return counts


def _rpc_batch(rpc_url: str, requests_: list[tuple[str, list]]) -> list[Any]:
    """Send JSON-RPC requests in one HTTP batch; their results (raises on any error)."""
    import requests

    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(requests_)]
    answers = sorted(requests.post(rpc_url, json=body, timeout=600).json(), key=lambda a: a["id"])
    errors = [a["error"] for a in answers if "error" in a]
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(body)} requests failed, e.g. {errors[0]}")
    return [a["result"] for a in answers]


def _register_nodes(deployed: Any, sizes: Sizes) -> dict:
    """Every node registered to its operator (Bonding.registerNode, relayed by a dev account in batches);
    returns what it took."""
    from eth_abi import encode as abi_encode
    from eth_account import Account
    from eth_utils import keccak

    from chain.client import ChainClient

    started = time.perf_counter()
    client = ChainClient(deployed.rpc_url, deployed.deployment)
    domain = client.domain("Bonding")
    bonding = deployed.deployment.address("Bonding")
    relayer = Account.from_key(deployed.keys[8]).address
    selector = keccak(text="registerNode(address,bytes32,uint256,bytes)")[:4]
    operators = [_operator(n) for n in range(sizes.operators)]
    by_operator: dict[int, list[int]] = collections.defaultdict(list)
    for node in range(sizes.nodes):
        by_operator[sizes.operator_of(node)].append(node)
    # The n-th batch holds every operator's n-th node, so each operator's binding nonces land in order; the
    # relayer's transactions carry their nonces, so Anvil mines them in order however it takes them in.
    sent = deployed.w3.eth.get_transaction_count(relayer)
    # One block per batch, not one per transaction (Anvil's automining takes ~15 ms a transaction here).
    gas_limit = deployed.w3.eth.get_block("latest")["gasLimit"]
    _rpc_batch(deployed.rpc_url, [("evm_setAutomine", [False]), ("anvil_setBlockGasLimit", [hex(10**10)])])
    for nonce in range(max(len(nodes) for nodes in by_operator.values())):
        batch = []
        for operator, nodes in by_operator.items():
            if nonce >= len(nodes):
                continue
            account = operators[operator]
            peer_hash = _peer_hash(_node(nodes[nonce]))
            binding = eth_sign(
                OperatorBinding,
                account,
                domain,
                operator=account.address,
                peer_id_hash=peer_hash,
                nonce=nonce,
            )
            data = selector + abi_encode(
                ["address", "bytes32", "uint256", "bytes"],
                [to_checksum_address(account.address), peer_hash, nonce, binding.signature],
            )
            transaction = {"from": relayer, "to": bonding, "data": "0x" + data.hex(), "gas": hex(300_000)}
            batch.append(("eth_sendTransaction", [{**transaction, "nonce": hex(sent)}]))
            sent += 1
        for start in range(0, len(batch), 1000):  # Anvil answers a batch's requests concurrently
            _rpc_batch(deployed.rpc_url, batch[start : start + 1000])
        _rpc_batch(deployed.rpc_url, [("evm_mine", [])])
    _rpc_batch(deployed.rpc_url, [("evm_setAutomine", [True]), ("anvil_setBlockGasLimit", [hex(gas_limit)])])
    if deployed.w3.eth.get_transaction_count(relayer) != sent:
        raise RuntimeError("the registrations were not all mined")
    from chain.snapshot import read_node_operators

    registered = read_node_operators(client, "latest")
    if len(registered) != sizes.nodes:
        raise RuntimeError(f"registered {len(registered)} nodes of {sizes.nodes}")
    return {
        "nodes": sizes.nodes,
        "operators": sizes.operators,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _credit_slot(deployed: Any) -> int:
    """The storage slot of Credits' credit mapping, found by a real deposit."""
    from eth_utils import keccak

    from chain.client import ChainClient

    user = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[5])
    amount = 123_456_789
    user.credits_deposit(amount)
    credits = deployed.deployment.address("Credits")
    key = bytes(12) + bytes.fromhex(user.address[2:])
    for slot in range(64):
        position = keccak(key + slot.to_bytes(32, "big"))
        if int.from_bytes(deployed.w3.eth.get_storage_at(credits, position), "big") == amount:
            return slot
    raise RuntimeError("Credits' credit mapping was not found in its first 64 storage slots")


def _fund_wallets(deployed: Any, wallets: list[bytes]) -> dict:
    """Each wallet holds WALLET_CREDIT of credit (written into Credits' storage, in batches)."""
    from eth_utils import keccak

    started = time.perf_counter()
    slot = _credit_slot(deployed).to_bytes(32, "big")
    credits = deployed.deployment.address("Credits")
    value = "0x" + WALLET_CREDIT.to_bytes(32, "big").hex()
    writes = [
        ("anvil_setStorageAt", [credits, "0x" + keccak(bytes(12) + wallet + slot).hex(), value])
        for wallet in wallets
    ]
    for start in range(0, len(writes), 2000):
        _rpc_batch(deployed.rpc_url, writes[start : start + 2000])
    return {"wallets": len(wallets), "seconds": round(time.perf_counter() - started, 2)}


def credit_reads(deployed: Any, addresses: list[bytes], sample: int = 1_000) -> dict:
    """The closing's credit reads for `addresses` (the epoch's paying wallets) through Credits.creditsOf in
    batches of CREDIT_READ_BATCH, against the two calls per wallet it replaced (creditOf and
    withdrawalRequestOf), timed on `sample` wallets and scaled."""
    from chain.client import ChainClient
    from chain.snapshot import read_available_credit

    reader = ChainClient(deployed.rpc_url, deployed.deployment)
    counter = RequestCounter()
    counter.install(reader.w3)
    block = deployed.w3.eth.block_number
    counter.take()
    started = time.perf_counter()
    available = read_available_credit(reader, block, addresses, {}, 0)
    batched = time.perf_counter() - started
    calls = counter.take()
    sample = min(sample, len(addresses))
    started = time.perf_counter()
    for wallet in addresses[:sample]:
        address = reader.w3.to_checksum_address("0x" + wallet.hex())
        reader.call("Credits", "creditOf", address, block=block)
        reader.call("Credits", "withdrawalRequestOf", address, block=block)
    per_wallet = (time.perf_counter() - started) / max(1, sample)
    return {
        "wallets": len(addresses),
        "batched_seconds": round(batched, 2),
        "batched_calls": -(-len(addresses) // CREDIT_READ_BATCH),
        "batched_rpc_requests": calls,
        "per_wallet_calls_seconds_scaled": round(per_wallet * len(addresses), 2),
        "per_wallet_sample": sample,
        "wallets_read": len(available),
        "wallets_funded": sum(1 for credit in available.values() if credit > 0),
    }


# ---------------------------------------------------------------------------------------------- the validator


class _Stream:
    """What ReceiptService.handle_submission uses of a libp2p stream: one message in, one out."""

    def __init__(self, peer_id: str, message: bytes) -> None:
        self.peer_id = peer_id
        self._message = message
        self.written: bytes | None = None

    async def read_message(self, limit: int, **_: Any) -> bytes:
        assert len(self._message) <= limit
        return self._message

    async def write_message(self, data: bytes) -> None:
        self.written = data

    async def close(self) -> None:
        pass

    async def reset(self) -> None:
        raise AssertionError("the receipt service reset a benchmark submission")


class _Timers:
    """Seconds spent in wrapped callables, by name (the wrappers are removed on exit)."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attribute: str, name: str | None = None) -> None:
        import inspect

        original = getattr(owner, attribute)
        label = name or attribute
        seconds = self.seconds
        if inspect.iscoroutinefunction(original):

            async def timed(*args, **kwargs):  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    seconds[label] += time.perf_counter() - started

        else:

            def timed(*args, **kwargs):  # type: ignore[no-untyped-def,misc]
                started = time.perf_counter()
                try:
                    return original(*args, **kwargs)
                finally:
                    seconds[label] += time.perf_counter() - started

        self._undo.append((owner, attribute, owner.__dict__.get(attribute, _MISSING)))
        setattr(owner, attribute, functools.wraps(original)(timed))

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 2) for name, value in sorted(self.seconds.items())}

    def __enter__(self) -> _Timers:
        return self

    def __exit__(self, *_: object) -> None:
        for owner, attribute, before in reversed(self._undo):
            if before is _MISSING:
                delattr(owner, attribute)
            else:
                setattr(owner, attribute, before)


_MISSING = object()


def _reason(reason: str) -> str:
    """A refusal's reason without its particulars (what follows a colon)."""
    return reason.split(":")[0]


async def _admission(service: Any, chunks: list[Path], count: int) -> dict:
    """Offer the first `count` receipts of the epoch to `service` as nodes' submissions."""
    verdicts: collections.Counter[str] = collections.Counter()
    offered = 0
    with _Timers() as timers:
        timers.wrap(service, "admit", "verify")
        timers.wrap(service.gate, "screen", "gate")
        timers.wrap(service.store, "add_receipts", "store")
        started = time.perf_counter()
        batch: list[bytes] = []
        for path in chunks:
            for data in _read(path):
                if offered + len(batch) >= count:
                    break
                batch.append(data)
                if len(batch) == MAX_RECEIPT_BATCH:
                    offered += await _submit(service, batch, offered, verdicts)
                    batch = []
        if batch:
            offered += await _submit(service, batch, offered, verdicts)
        seconds = time.perf_counter() - started
    return {
        "receipts": offered,
        "seconds": round(seconds, 2),
        "receipts_per_second": round(offered / seconds),
        "parts_seconds": timers.rounded(),
        "verdicts": dict(sorted(verdicts.items())),
        "stored": verdicts["stored"],
        "refused": sum(n for v, n in verdicts.items() if v not in ("stored", "duplicate")),
        "chain_reads": service.gate.reads,
    }


async def _submit(service: Any, batch: list[bytes], offered: int, verdicts: collections.Counter[str]) -> int:
    """One node's submission of `batch`; counts the verdicts of its acknowledgement."""
    stream = _Stream(
        f"bench-node-{offered // MAX_RECEIPT_BATCH % 100}",
        encode_message(ReceiptBatch(receipts=tuple(batch))),
    )
    await service.handle_submission(stream)
    ack = decode_message(stream.written, ReceiptBatchAck)
    for verdict in ack.verdicts:
        verdicts[verdict.status if verdict.status != "refused" else _reason(verdict.reason)] += 1
    return len(batch)


def _bulk_store(
    path: Path,
    chunks: list[Path],
    positions: list[list[tuple]],
    credits: dict[bytes, bytes],
    domain: TypedDomain,
) -> int:
    """Write the verified receipts straight into an evidence store's tables (the close's setup, not
    measured): the same rows `EvidenceStore.add_receipts` writes for the receipt service, which verified
    every authorisation the receipts carry in the Credits `domain`."""
    connection = sqlite3.connect(path)
    now = time.time_ns() // 1_000_000
    try:
        connection.execute("PRAGMA synchronous=OFF")
        connection.executemany(
            "INSERT OR IGNORE INTO credits (digest, authorisation) VALUES (?, ?)", credits.items()
        )
        carried = {row[7] for rows in positions for row in rows}
        connection.executemany(
            "INSERT OR IGNORE INTO credit_checks (digest, domain) VALUES (?, ?)",
            ((digest, domain.separator) for digest in carried),
        )
        stored = 0
        for chunk, rows in zip(chunks, positions, strict=True):
            data = list(_read(chunk))
            cursor = connection.executemany(
                "INSERT OR IGNORE INTO receipts (digest, epoch, node_key, request_hash, model, client_key,"
                " started_at_ms, tokens, credit, countersigned, received_at_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    (
                        row[0],
                        row[5] // EPOCH_MS,
                        row[1],
                        row[2],
                        row[3],
                        row[4],
                        row[5],
                        row[6],
                        row[7],
                        data[row[8]],
                        now,
                    )
                    for row in rows
                ),
            )
            stored += cursor.rowcount
        connection.commit()
    finally:
        connection.close()
    return stored


def _earlier_settlements(path: Path, sizes: Sizes, paying: list[bytes], snapshot_block: int) -> int:
    """Settlements of the `sizes.earlier_epochs` epochs before EPOCH, as a validator in its steady state
    holds them: each debited every paying wallet one unit in batches nobody relayed yet, whose signatures
    are still valid at EPOCH's close, so the close reads whether each batch is settled. Returns how many
    batches they hold."""
    from validator.settlement import Carry, debit_batches

    connection = sqlite3.connect(path)
    batches = 0
    try:
        for epoch in range(EPOCH - sizes.earlier_epochs, EPOCH):
            debits = debit_batches(epoch, dict.fromkeys(paying, 1))
            batches += len(debits)
            connection.execute(
                "INSERT INTO settlements VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    epoch,
                    snapshot_block,
                    0,
                    bytes(32),
                    None,
                    json.dumps([[b.batch_id, [u.hex() for u in b.users], list(b.amounts)] for b in debits]),
                    Carry().to_json(),
                    (EPOCH + 6) * EPOCH_MS // 1000,  # signed six days after its close: alive at EPOCH's
                    json.dumps(
                        {"revenue": len(paying), "emission": 0, "paid": 0, "unpaid": {}, "awards": {}}
                    ),
                    "none",
                    "[]",
                    0,
                    time.time_ns() // 1_000_000,
                ),
            )
        connection.commit()
    finally:
        connection.close()
    return batches


async def _validator_phases(
    deployed: Any,
    sizes: Sizes,
    chunks: list[Path],
    positions: list[list[tuple]],
    credits: dict[bytes, bytes],
    paying: list[bytes],
    work: Path,
) -> dict:
    """Admission, sync and close (module docstring), in one trio run with two libp2p hosts."""
    import trio
    import trio_asyncio

    from chain.client import ChainClient
    from chain.devchain import mine, time_travel
    from p2p.testing import open_host_group
    from pool.validator_peers import ValidatorPeer
    from validator.admission import chain_gate
    from validator.epochs import SettlementConfig, SettlementService
    from validator.evidence import EVIDENCE_FILE, open_evidence_store
    from validator.receipts import ReceiptService, ReceiptWindow, fetch_missing

    results: dict = {}
    window = ReceiptWindow(EPOCH_MS, 600_000)
    epoch_end_ms = (EPOCH + 1) * EPOCH_MS - 1
    reader = ChainClient(deployed.rpc_url, deployed.deployment)
    counter = RequestCounter()
    counter.install(reader.w3)
    domain = reader.domain("Credits")
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(trio_asyncio.open_loop())
        first_host, fresh_host = await stack.enter_async_context(open_host_group(work / "hosts", 2))
        first = await stack.enter_async_context(open_evidence_store(work / "first", epoch_ms=EPOCH_MS))
        fresh = await stack.enter_async_context(open_evidence_store(work / "fresh", epoch_ms=EPOCH_MS))
        first_service = ReceiptService(
            first, window, domain, clock=lambda: epoch_end_ms, gate=chain_gate(reader)
        )
        first_service.install(first_host)
        fresh_service = ReceiptService(fresh, window, domain, clock=lambda: epoch_end_ms)

        if "admission" in sizes.phases or "sync" in sizes.phases:
            count = sizes.admission or sizes.receipts
            print(f"admission: offering {count} receipts", flush=True)
            counter.take()
            results["admission"] = await _admission(first_service, chunks, count)
            results["admission"]["rpc_requests"] = counter.take()
            print(json.dumps(results["admission"]), flush=True)

        if "sync" in sizes.phases:
            peer = ValidatorPeer(b"", first_host.peer_id, tuple(first_host.listen_addrs()), 0, 0)
            held = (await first.commitment(EPOCH))[0]
            print(f"sync: a fresh validator fetches {held} receipts", flush=True)
            with _Timers() as timers:
                timers.wrap(first, "countersigned", "serving: reading receipts")
                timers.wrap(first, "commitment", "serving: listing's count and commitment")
                timers.wrap(fresh_service, "admit", "verify")
                timers.wrap(fresh, "add_receipts", "store")
                started = time.perf_counter()
                fetched = await fetch_missing(fresh_host, peer, fresh_service, EPOCH, ceiling_seconds=3600)
                seconds = time.perf_counter() - started
            results["sync"] = {
                "receipts_held_by_the_first": held,
                "receipts": fetched,
                "seconds": round(seconds, 2),
                "receipts_per_second": round(fetched / seconds) if seconds else None,
                "parts_seconds": timers.rounded(),
                "same_commitment": await first.commitment(EPOCH) == await fresh.commitment(EPOCH),
                "full_epoch_seconds_scaled": round(seconds / max(1, fetched) * sizes.receipts, 1),
            }
            print(json.dumps(results["sync"]), flush=True)

        if "close" in sizes.phases:
            closing = work / "closing"
            async with open_evidence_store(closing, epoch_ms=EPOCH_MS):
                pass  # the schema
            started = time.perf_counter()
            stored = await trio.to_thread.run_sync(
                _bulk_store, closing / EVIDENCE_FILE, chunks, positions, credits, domain
            )
            print(
                f"close: {stored} receipts written into a store in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            pending = _earlier_settlements(
                closing / EVIDENCE_FILE, sizes, paying, deployed.w3.eth.block_number
            )
            # The chain passes the epoch's end: its closing block is the next one.
            time_travel(deployed.w3, (EPOCH + 1) * EPOCH_MS // 1000 - reader.chain_time() + 1)
            mine(deployed.w3, 2)
            store = await stack.enter_async_context(open_evidence_store(closing, epoch_ms=EPOCH_MS))
            chain = ChainClient(deployed.rpc_url, deployed.deployment, deployed.keys[1])
            chain_counter = RequestCounter()
            chain_counter.install(chain.w3)
            daemon = SettlementService(first_host, chain, store, SettlementConfig(), trees_dir=work / "trees")
            results["close"] = await _close(daemon, chain_counter, stored, sizes)
            results["close"]["earlier_epochs"] = sizes.earlier_epochs
            results["close"]["earlier_debit_batches_pending"] = pending
            print(json.dumps(results["close"]), flush=True)
    return results


async def _close(daemon: Any, counter: RequestCounter, stored: int, sizes: Sizes) -> dict:
    import validator.closing as closing
    import validator.epochs as epochs

    parts = {}
    with _Timers() as timers:
        timers.wrap(daemon.store, "facts", "store: reading the epoch's facts")
        timers.wrap(daemon.store, "verified_credits", "store: authorisations verified on the way in")
        timers.wrap(daemon.store, "record_settlement", "store: recording the settlement")
        timers.wrap(epochs, "find_closing_block", "chain: finding the closing block")
        timers.wrap(closing, "read_snapshot", "chain: snapshot (bonds, node registrations, params)")
        timers.wrap(closing, "pending_debits", "chain: earlier epochs' pending debits")
        timers.wrap(closing, "read_prices", "chain: prices")
        timers.wrap(closing, "read_available_credit", "chain: credit (creditsOf)")
        timers.wrap(closing, "read_pod_price", "chain: POD price (TWAP)")
        timers.wrap(epochs, "read_candidates", "chain: election candidates")
        original = closing.settle_epoch

        def settle(*args, **kwargs):  # type: ignore[no-untyped-def]
            timings: dict[str, float] = {}
            started = time.perf_counter()
            try:
                return original(*args, timings=timings, **kwargs)
            finally:
                parts["settle_epoch"] = round(time.perf_counter() - started, 2)
                parts.update({f"settle_epoch: {k}": round(v, 2) for k, v in timings.items()})

        closing.settle_epoch = settle
        try:
            counter.take()
            started = time.perf_counter()
            await daemon._settle(EPOCH)
            seconds = time.perf_counter() - started
        finally:
            closing.settle_epoch = original
    record = await daemon.store.settlement(EPOCH)
    summary = record.summary
    parts.update(timers.rounded())
    accounted = sum(v for k, v in parts.items() if ":" not in k or k.startswith(("store", "chain")))
    return {
        "receipts_held": stored,
        "seconds": round(seconds, 2),
        "meets_goal": seconds < CLOSE_GOAL_SECONDS,
        "goal": f"under {CLOSE_GOAL_SECONDS} s",
        "parts_seconds": dict(sorted(parts.items())),
        "other_seconds": round(seconds - accounted, 2),
        "rpc_requests": counter.take(),
        "counted": record.receipt_count,
        "paid": summary["paid"],
        "unpaid": summary["unpaid"],
        "debited_wallets": sum(len(batch.users) for batch in record.debits),
        "debit_batches": len(record.debits),
        "revenue": summary["revenue"],
        "root": "0x" + record.tree.root.hex() if record.tree is not None else None,
        "receipts_per_second": round(stored / seconds),
    }


# ---------------------------------------------------------------------------------------------- run


def run(out_dir: Path, options: argparse.Namespace | Sizes | None = None) -> dict:
    from chain.client import ChainClient
    from chain.testing import open_deployed_chain

    sizes = sizes_from(options)
    work = Path(tempfile.mkdtemp(prefix="bench-settlement-", dir=out_dir))
    try:
        with open_deployed_chain(work / "chain") as deployed:
            return _run(out_dir, sizes, deployed, ChainClient(deployed.rpc_url, deployed.deployment), work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(out_dir: Path, sizes: Sizes, deployed: Any, reader: Any, work: Path) -> dict:
    domain = reader.domain("Credits")
    chunks = _ensure_receipts(out_dir / "cache", sizes, domain)
    workers = os.cpu_count() or 1
    tasks = [(path, domain) for path in chunks]
    result: dict = {
        "receipts": sizes.receipts,
        "nodes": sizes.nodes,
        "operators": sizes.operators,
        "sessions": sizes.sessions,
        "receipts_per_session": sizes.per_session,
        "paying_wallets": sizes.wallets,
        "junk_share": sizes.junk,
        "junk_sessions": sizes.junk_before(sizes.sessions),
        "workers": workers,
        "epoch": EPOCH,
        "phases": list(sizes.phases),
    }

    with multiprocessing.Pool(workers) as pool:
        sample = tasks[: FLOOR_SAMPLE_CHUNKS * workers]
        measured = pool.map(_paired_chunk, sample)
        count = sum(signatures for signatures, _, _ in measured)
        floor_seconds = sum(floor for _, floor, _ in measured)
        paired_ratio = sum(verify for _, _, verify in measured) / floor_seconds
        # The workers verify in parallel, so the floor of the epoch is the sample's pace over all of its
        # signatures, divided among them.
        per_signature = floor_seconds / count
        result["floor"] = {
            "signatures": 2 * sizes.receipts,
            "seconds": round(per_signature * 2 * sizes.receipts / workers, 2),
            "microseconds_per_signature_per_worker": round(per_signature * 1e6, 1),
            "sample_signatures": count,
            "verify_to_floor_paired": round(paired_ratio, 3),
        }
        print(json.dumps(result["floor"]), flush=True)

        started = time.perf_counter()
        facts: list[ReceiptFacts] = []
        credits: dict[bytes, CreditAuthorisation] = {}
        raw_credits: dict[bytes, bytes] = {}
        interned: dict[bytes, bytes] = {}
        positions: list[list[tuple]] = []
        forged = 0
        for rows, new, refused in pool.imap(_verify_chunk, tasks):
            forged += refused
            for digest, raw in new.items():
                raw_credits.setdefault(digest, raw)
                credits.setdefault(digest, CreditAuthorisation.from_wire(codec.unpack(raw)))
            for row in rows:
                node, model, client, credit = (
                    interned.setdefault(v, v) for v in (row[1], row[3], row[4], row[7])
                )
                facts.append(ReceiptFacts(row[0], node, row[2], model, client, row[5], row[6], credit))
            positions.append(rows)
        verify_seconds = time.perf_counter() - started
        print(f"verified {len(facts)} receipts in {verify_seconds:.1f} s ({forged} forged)", flush=True)
        spans = [(start, min(sizes.wallets, start + 5_000)) for start in range(0, sizes.wallets, 5_000)]
        paying = [address for part in pool.map(_wallet_addresses, spans) for address in part]

    if "settle" in sizes.phases:
        result.update(_settle_offline(sizes, facts, credits, paying, domain, verify_seconds))
        result["ratio_to_floor"] = round(result["total_seconds"] / result["floor"]["seconds"], 2)
        result["verify_ratio_to_floor"] = round(verify_seconds / result["floor"]["seconds"], 2)
    if {"admission", "sync", "close"} & set(sizes.phases):
        setup = {
            "nodes_registered": _register_nodes(deployed, sizes),
            "wallets_funded": _fund_wallets(deployed, paying),
        }
        result["chain_setup"] = setup
        print(json.dumps(setup), flush=True)
    elif "credit_reads" in sizes.phases:
        result["chain_setup"] = {"wallets_funded": _fund_wallets(deployed, paying)}
    if "credit_reads" in sizes.phases:
        result["credit_reads"] = credit_reads(deployed, paying, sizes.credit_sample)
        print(json.dumps(result["credit_reads"]), flush=True)
    if {"admission", "sync", "close"} & set(sizes.phases):
        import trio

        del facts, credits  # the close reads its own from the store
        result.update(
            trio.run(_validator_phases, deployed, sizes, chunks, positions, raw_credits, paying, work)
        )
    result["forged_receipts"] = forged
    result["peak_mib_main"] = round(_peak_mib(resource.RUSAGE_SELF), 1)
    result["peak_mib_worker"] = round(_peak_mib(resource.RUSAGE_CHILDREN), 1)
    if "settle" in sizes.phases:
        result["meets_goal"] = result["total_seconds"] < GOAL_SECONDS and result["peak_mib_main"] < GOAL_MIB
    _plot(result, out_dir / "settlement.png")
    result["plot"] = "settlement.png"
    return result


def _settle_offline(
    sizes: Sizes,
    facts: list[ReceiptFacts],
    credits: dict[bytes, CreditAuthorisation],
    paying: list[bytes],
    domain: TypedDomain,
    verify_seconds: float,
) -> dict:
    """settle_epoch on the verified facts against a snapshot and market made up to match the chain's."""
    rng = random.Random(7)
    operators = {}
    for n in range(sizes.nodes):
        operators[_peer_hash(_node(n))] = to_checksum_address(_operator(sizes.operator_of(n)).address)
    market = EpochMarket(
        prices={pt.TEST_MODEL: PRICE},
        available={wallet: WALLET_CREDIT for wallet in paying},
        operators=operators,
        pod_per_unit=Fraction(10 * POD, 10**6),
        credits_domain=domain,
    )
    accounts = sorted(set(operators.values()))
    snapshot = ChainSnapshot(
        block=1,
        timepoint=1,
        params=RewardParams(),
        active_bonds={a: rng.randrange(0, 100_000) * POD for a in accounts},
        registered=frozenset(accounts),
        slashed=frozenset(),
    )
    timings: dict[str, float] = {}
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
    return {
        "phases_seconds": phases,
        "settle_epoch_seconds": round(settle_seconds, 2),
        "total_seconds": round(total, 2),
        "counted": settlement.receipt_count,
        "paid": settlement.payments.paid,
        "unpaid": settlement.payments.unpaid,
        "duplicates_dropped": len(facts) - settlement.receipt_count,
        "operators_paid": sum(1 for r in settlement.close.accounts.values() if r.reward),
        "debited_wallets": len(settlement.payments.debits),
        "root": "0x" + tree.root.hex() if tree is not None else None,
        "goal": f"under {GOAL_SECONDS} s and {GOAL_MIB} MiB",
    }


def _plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if "phases_seconds" in result:
        phases = result["phases_seconds"]
        panels.append(
            (
                ["floor (Ed25519 only)", *phases],
                [result["floor"]["seconds"], *phases.values()],
                ["0.6", *["tab:blue"] * len(phases)],
                GOAL_SECONDS,
                f"Settling offline: {result['total_seconds']} s, {result['ratio_to_floor']}x the floor",
            )
        )
    if "close" in result:
        parts = {
            k: v for k, v in result["close"]["parts_seconds"].items() if not k.startswith("settle_epoch:")
        }
        panels.append(
            (
                [*parts, "total"],
                [*parts.values(), result["close"]["seconds"]],
                [*["tab:green"] * len(parts), "tab:red"],
                CLOSE_GOAL_SECONDS,
                f"The daemon's close on Anvil: {result['close']['seconds']} s",
            )
        )
    if not panels:
        return
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, 3.2 * len(panels)), squeeze=False)
    for axis, (names, values, colours, goal, title) in zip(axes[:, 0], panels, strict=True):
        axis.barh(names, values, color=colours)
        axis.axvline(goal, color="tab:red", linestyle="--", linewidth=1, label=f"goal ({goal} s)")
        axis.set_title(title, fontsize="medium")
        axis.tick_params(axis="y", labelsize="small")
        axis.legend(fontsize="small")
    axes[-1, 0].set_xlabel(f"wall seconds, {result['receipts']:,} receipts, {result['workers']} workers")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""The light client: ask a model, not a node. Routing, failover and credit, over `complete`.

    async with open_light_client(LightConfig(bootstrap=(relay,))) as client:
        async with client.stream(model_id, [("user", "Hi")], max_tokens=64) as answer:
            async for piece in answer:          # AnswerPiece: text, token ids, logprobs, alternatives
                print(piece.text, end="")
        answer.result                           # Answer: usage and every receipt

Each request goes to the node the router chooses (`pool.routing`) among the pool watcher's candidates
(`pool.watch`). When that node cannot be reached, refuses, stalls past a deadline (`first_token_timeout`
for the first token, `stall_timeout` between frames), goes away or fails a check mid-answer, the request
goes on with another node without the caller seeing an error: the answer so far is sent as a trailing
assistant message, which engines continue rather than answer, and the new node is asked only for the
tokens still missing. At most `max_attempts` nodes are tried per request.

Every node's receipt covers only its own work: the first node's stops where its stream stopped (a node
that died sent none), the next one's counts its prompt — which now holds the answer so far — and the
tokens it added. Nothing is counted twice; `Answer.receipts` lists them all and `Answer.usage` adds them
up. A caller that leaves early (cancellation, an HTTP client gone) resets the stream to the node, which
stops generating.

Exact bills: a receipt is countersigned only when its counts are the client's own, with the model's
tokenizer and chat template (a `TokenCounter`): given per model (`counters`), or, when the client has a
`TokenizerCache` (`LightConfig.load_counter`), fetched from the model's pool before its first request and
checked against the model id (`pool.tokenizers`). Without either, the prompt's byte bound is all a node's
`tokens_in` is held to.

Organic audits: a random sample of the completed answers (5% by default, more for a node the validators
call suspect) is handed to a current validator in the background, never through the node
(`pool.audits`); `LightConfig.sharing` sets the rates or opts out (`SharingSettings(enabled=False)`).

Session keys: a client signs its requests with its peer's own key, which `HostConfig.light_client` throws
away with the host (one per session), so the session key and the peer that may later publish a
`UserReport` about an answer are the same, as validators require. With a wallet, the client signs a
`CreditAuthorisation` of that key per model (EIP-712 against the Credits domain) so receipts name who pays.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from chain.errors import ChainError
from p2p import LOOPBACK_LISTEN, DolphinHost, HostConfig, P2PError, open_host
from pool.audits import AnswerSharer, SharingSettings
from pool.chainfacts import ChainFacts
from pool.client import AnswerPiece, Completion, chat_messages, complete
from pool.contact import NodeContact
from pool.errors import AllAttemptsFailed, AnswerFailedCheck, InferenceFailed, NoNodeAvailable
from pool.routing import Preferences, Router
from pool.tokenizers import DEFAULT_TOKENIZER_CACHE, CounterLoader, TokenizerCache
from pool.validator_peers import other_validators
from pool.watch import PoolWatcher, WatchSettings, open_pool_watcher
from protocols.eth import EthAccount, TypedDomain, to_checksum_address
from protocols.inference import TokenCounter
from protocols.keys import Identity
from protocols.messages import ChatMessage, CreditAuthorisation, eth_sign
from runtime.files import make_private_dir
from runtime.home import DOLPHIN_HOME

__all__ = [
    "VALIDATORS_DOMAIN_CONTRACT",
    "Answer",
    "AnswerStream",
    "AttemptOutcome",
    "CreditWallet",
    "LightClient",
    "LightConfig",
    "LightSettings",
    "ask_model",
    "open_light_client",
    "track_credit",
]

log = logging.getLogger(__name__)

VALIDATORS_DOMAIN_CONTRACT = "Slashing"
"""Validators sign their statements (strike reports, standings) under this contract's EIP-712 domain."""


@dataclass(frozen=True)
class LightSettings:
    max_attempts: int = 3  # nodes tried per request
    first_token_timeout: float = 60.0  # seconds a node may take to its first token (it may queue)
    stall_timeout: float = 15.0  # seconds between frames after that
    ack_timeout: float = 10.0  # seconds to wait for a node to say it stored our receipt
    wait_for_nodes: float = 20.0  # seconds to wait for a pool's first member on its first request
    # ... or longer when far away: this many round trips to the farthest peer dialled (the bootstrap's,
    # usually) for the DHT lookup, the dial of a member (through a relay, maybe) and its first heartbeat.
    wait_for_nodes_round_trips: float = 30.0


@dataclass(frozen=True)
class AttemptOutcome:
    """One node's part in a request: what it delivered and how it ended (`error` None: it finished)."""

    peer_id: str
    tokens_delivered: int
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Answer:
    """A whole answer. `request_id`/`node` are those of the attempt that finished it; `tokens_in` and
    `tokens_out` add up the signed receipts (what nodes may be paid for); `tokens_delivered` counts every
    token the caller received, a failed node's included."""

    text: str
    finish_reason: str
    model: bytes
    request_id: bytes
    node: str
    receipts: tuple[Completion, ...]
    attempts: tuple[AttemptOutcome, ...]
    tokens_delivered: int
    ttft_s: float | None

    @property
    def tokens_in(self) -> int:
        return sum(r.tokens_in for r in self.receipts)

    @property
    def tokens_out(self) -> int:
        return sum(r.receipt.tokens_out for r in self.receipts if r.receipt is not None)

    @property
    def receipt_stored(self) -> bool:
        """Every node that sent a receipt acknowledged storing our countersignature."""
        with_receipt = [r for r in self.receipts if r.countersigned_receipt is not None]
        return bool(with_receipt) and all(r.receipt_stored for r in with_receipt)

    @property
    def failovers(self) -> int:
        return len(self.attempts) - 1


@dataclass
class CreditWallet:
    """A client wallet that pays: it signs one `CreditAuthorisation` per session key and model, valid
    `lifetime_s` seconds (renewed before it runs out), for up to `cap`: the wallet's deposited credit as
    last read (`available`, kept fresh by the light client), at most `max_credits`. Nodes serve a request
    as paid only when the wallet's credit covers the authorisation's cap, so a cap above the credit would
    leave every answer unpaid."""

    account: EthAccount
    domain: TypedDomain  # the Credits contract's
    max_credits: int = 10**24
    lifetime_s: int = 3600
    available: int | None = None
    _signed: dict[tuple[bytes, bytes], CreditAuthorisation] = field(default_factory=dict, init=False)

    @property
    def cap(self) -> int:
        return self.max_credits if self.available is None else min(self.max_credits, self.available)

    def authorise(self, session_key: bytes, model: bytes) -> CreditAuthorisation:
        now = int(time.time())
        known = self._signed.get((session_key, model))
        if known is not None and known.expiry - now > 60 and known.max_credits == self.cap:
            return known
        credit = eth_sign(
            CreditAuthorisation,
            self.account,
            self.domain,
            client=self.account.address,
            session_key=session_key,
            model=model,
            max_credits=self.cap,
            nonce=secrets.randbits(64),
            expiry=now + self.lifetime_s,
        )
        self._signed[(session_key, model)] = credit
        return credit


class AnswerStream:
    """The pieces of one answer as they arrive; `result` once the iteration has ended."""

    def __init__(self, receive: trio.MemoryReceiveChannel[AnswerPiece]) -> None:
        self.node: str | None = None  # the peer id of the node answering now
        self._receive = receive
        self._result: Answer | None = None
        self._error: BaseException | None = None

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> AnswerPiece:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None

    @property
    def result(self) -> Answer:
        if self._result is None:
            raise RuntimeError("the answer is not complete: iterate the stream to its end first")
        return self._result


def _continuation(messages: Sequence[ChatMessage], delivered: str) -> tuple[ChatMessage, ...]:
    """The chat to send the next node: the answer so far as the trailing assistant turn (or added to the
    caller's own trailing assistant prefix), which engines continue."""
    messages = tuple(messages)
    if not delivered:
        return messages
    if messages[-1].role == "assistant":
        last = messages[-1]
        return (*messages[:-1], ChatMessage(role="assistant", content=last.content + delivered))
    return (*messages, ChatMessage(role="assistant", content=delivered))


class LightClient:
    """Asks models through the network (module docstring). Made by `open_light_client`, or directly over a
    host and watcher the caller runs."""

    def __init__(
        self,
        host: DolphinHost,
        watcher: PoolWatcher,
        *,
        settings: LightSettings = LightSettings(),
        router: Router | None = None,
        identity: Identity | None = None,
        wallet: CreditWallet | None = None,
        chain: Any = None,
        preferences: Preferences | None = None,
        counters: dict[bytes, TokenCounter] | None = None,
        sharer: AnswerSharer | None = None,
        tokenizers: TokenizerCache | None = None,
    ) -> None:
        self.host = host
        self.sharer = sharer  # shares a sample of the answers with validators (None: never)
        # Per model id, its tokenizer's counts: receipts for that model are countersigned only when exact.
        self.counters = dict(counters or {})
        self.tokenizers = tokenizers  # fetches the other models' counters from their pools (None: never)
        self.watcher = watcher
        self.chain = chain  # the ChainClient it reads (None without a chain)
        self.settings = settings
        self.router = router or Router()
        self.identity = identity or Identity(host.signing_seed())
        self.wallet = wallet
        # No chain: nothing to check a registration against, so any node; with one, registered nodes.
        self.preferences = preferences or Preferences(nodes="registered" if watcher.has_chain else "any")

    @contextlib.asynccontextmanager
    async def stream(
        self,
        model: bytes,
        messages: Sequence[tuple[str, str] | ChatMessage],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: Sequence[str] = (),
        top_logprobs: int = 0,
        preferences: Preferences | None = None,
        conversation: str | None = None,
        identity: Identity | None = None,
        counter: TokenCounter | None = None,
    ) -> AsyncIterator[AnswerStream]:
        """Ask `model`; yields the answer's pieces as they arrive (see `AnswerStream`). Iterating raises
        NoNodeAvailable, AllAttemptsFailed or AnswerFailedCheck. `conversation` keeps a chat on one node
        (prefix cache); `identity` signs instead of the session key; `counter` (default: `counter_of(model)`)
        is the model's tokenizer, which makes bills exact (without one, only the byte bound holds)."""
        chat = chat_messages(messages)
        send, receive = trio.open_memory_channel[AnswerPiece](16)
        answer = AnswerStream(receive)
        request = _Request(
            model=model,
            messages=chat,
            max_tokens=max_tokens,
            options={
                "temperature": temperature,
                "top_p": top_p,
                "seed": seed,
                "stop": tuple(stop),
                "top_logprobs": top_logprobs,
            },
            preferences=preferences or self.preferences,
            conversation=conversation,
            identity=identity or self.identity,
            counter=counter,
        )

        async def run() -> None:
            async with send:
                try:
                    answer._result = await self._answer(request, send, answer)
                except (NoNodeAvailable, AllAttemptsFailed, AnswerFailedCheck) as exc:
                    answer._error = exc

        raised: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            try:
                yield answer
            except Exception as exc:  # the caller's, or the answer's error: raised as is, not in a group
                raised = exc
            finally:
                nursery.cancel_scope.cancel()  # the caller left early: the node's stream is reset
        if raised is not None:
            raise raised

    async def ask(self, model: bytes, messages: Sequence[tuple[str, str] | ChatMessage], **options) -> Answer:
        """The whole answer at once (`stream` without the pieces)."""
        async with self.stream(model, messages, **options) as answer:
            async for _ in answer:
                pass
        return answer.result

    async def counter_of(self, model: bytes) -> TokenCounter | None:
        """The model's token counter: given (`counters`), else the one `tokenizers` has or fetches from the
        pool's members now; None without either."""
        counter = self.counters.get(model)
        if counter is None and self.tokenizers is not None:
            peers = [candidate.peer_id for candidate, _ in self.watcher.candidates(model)]
            counter = await self.tokenizers.counter(self.host, model, peers, self._validator_peers)
        return counter

    async def _validator_peers(self) -> list[str]:
        """The validators' peers, from their DHT record (each serves its reference model's tokenizer)."""
        try:
            return [record.peer_id for record in await other_validators(self.host)]
        except P2PError as exc:
            log.info("no validator to ask for a tokenizer: %s", exc)
            return []

    async def _answer(
        self, request: _Request, send: trio.MemorySendChannel[AnswerPiece], answer: AnswerStream
    ) -> Answer:
        tried: set[str] = set()
        attempts: list[AttemptOutcome] = []
        failures: list[InferenceFailed] = []
        receipts: list[Completion] = []
        delivered: list[AnswerPiece] = []
        first_piece_at: float | None = None
        started = time.monotonic()
        candidates = self.watcher.candidates(request.model)
        if not candidates:
            await self.watcher.wait_for_members(request.model, self._wait_for_nodes())
        counter = request.counter
        asked_again = False
        while len(attempts) < self.settings.max_attempts:
            delivered_tokens = sum(len(piece.token_ids) for piece in delivered)
            remaining = request.max_tokens - delivered_tokens
            if remaining <= 0:  # everything was delivered; only the end was lost
                return self._finish(request, "length", attempts, receipts, delivered, first_piece_at, started)
            candidates = self.watcher.candidates(request.model)
            contacts = {candidate.peer_id: contact for candidate, contact in candidates}
            chosen = self.router.choose(
                [candidate for candidate, _ in candidates],
                request.preferences,
                now=trio.current_time(),
                exclude=tried,
                conversation=request.conversation,
            )
            if chosen is None:
                if not attempts and await self._chain_facts_arrived():
                    continue  # a node just heard of was judged unregistered before the chain was read
                if not attempts and not asked_again and self._ask_chain_again():
                    asked_again = True
                    continue  # a node judged unregistered or unbonded may have registered since
                if not attempts:
                    raise NoNodeAvailable(self._why_nobody(request))
                break
            if counter is None:
                # Counted once a member is known: asked before discovery listed one, the fetch had no peer
                # to ask and the bill would be held to the byte bound, which a node can inflate to.
                counter = await self.counter_of(request.model)
            tried.add(chosen.peer_id)
            answer.node = chosen.peer_id
            contact: NodeContact = contacts[chosen.peer_id]
            mine: list[AnswerPiece] = []

            async def forward(piece: AnswerPiece, mine: list[AnswerPiece] = mine) -> None:
                nonlocal first_piece_at
                if first_piece_at is None and piece.token_ids:
                    first_piece_at = time.monotonic()
                mine.append(piece)
                delivered.append(piece)
                await send.send(piece)

            messages = _continuation(request.messages, "".join(piece.text for piece in delivered))
            try:
                completion = await complete(
                    self.host,
                    contact,
                    messages,
                    identity=request.identity,
                    max_tokens=remaining,
                    on_piece=forward,
                    first_token_timeout=self.settings.first_token_timeout,
                    timeout=self.settings.stall_timeout,
                    ack_timeout=self.settings.ack_timeout,
                    credit=self.wallet.authorise(request.identity.public_key, request.model)
                    if self.wallet is not None
                    else None,
                    counter=counter,
                    **request.options,
                )
            except InferenceFailed as exc:
                self.router.failed(chosen.peer_id, now=trio.current_time(), hard=exc.hard)
                failures.append(exc)
                attempts.append(
                    AttemptOutcome(chosen.peer_id, sum(len(p.token_ids) for p in mine), str(exc), exc.reason)
                )
                continue
            except BaseException:
                self.router.released(chosen.peer_id)
                raise
            self.router.succeeded(
                chosen.peer_id,
                now=trio.current_time(),
                ttft_s=completion.ttft_s,
                tokens=completion.tokens_out,
                duration_s=completion.duration_s,
            )
            receipts.append(completion)
            attempts.append(AttemptOutcome(chosen.peer_id, completion.tokens_out))
            if self.sharer is not None:
                self.sharer.offer(completion, request.model)
            return self._finish(
                request, completion.finish_reason, attempts, receipts, delivered, first_piece_at, started
            )
        summary = "; ".join(f"{a.peer_id}: {a.error}" for a in attempts)
        if failures and all(isinstance(f, AnswerFailedCheck) for f in failures):
            raise AnswerFailedCheck(f"every answer failed a check ({summary})", attempts=failures)
        raise AllAttemptsFailed(
            f"{len(attempts)} node(s) tried, none finished the answer ({summary})", failures
        )

    def _finish(
        self,
        request: _Request,
        finish_reason: str,
        attempts: list[AttemptOutcome],
        receipts: list[Completion],
        delivered: list[AnswerPiece],
        first_piece_at: float | None,
        started: float,
    ) -> Answer:
        last = receipts[-1] if receipts else None
        return Answer(
            text="".join(piece.text for piece in delivered),
            finish_reason=finish_reason,
            model=request.model,
            request_id=last.request_id if last is not None else b"",
            node=last.peer_id if last is not None else attempts[-1].peer_id,
            receipts=tuple(receipts),
            attempts=tuple(attempts),
            tokens_delivered=sum(len(piece.token_ids) for piece in delivered),
            ttft_s=first_piece_at - started if first_piece_at is not None else None,
        )

    def _wait_for_nodes(self) -> float:
        return self.host.deadline(self.settings.wait_for_nodes, self.settings.wait_for_nodes_round_trips)

    def _ask_chain_again(self) -> bool:
        """Have the chain read again for every node or operator it answered "no" for; whether any."""
        return self.watcher.chain is not None and self.watcher.chain.ask_again()

    async def _chain_facts_arrived(self, timeout: float = 10.0) -> bool:
        """Wait (up to `timeout` s) for the chain facts asked about but not read yet; whether they came."""
        facts = self.watcher.chain
        if facts is None or not facts.unread:
            return False
        with trio.move_on_after(timeout):
            await facts.wait_refreshed()
            return True
        return False

    def _why_nobody(self, request: _Request) -> str:
        members = self.watcher.candidates(request.model)
        name = self.watcher.name_of(request.model)
        if not members:
            return f"no node serves {name} (none heard from within {self._wait_for_nodes():.0f} s)"
        prefs = request.preferences
        hint = " (bonded-only needs a chain: give the chain's RPC URL)" if not self.watcher.has_chain else ""
        return (
            f"{len(members)} node(s) serve {name}, but none is available under the preferences "
            f"(nodes={prefs.nodes}, min_standing={prefs.min_standing}){hint}, or all are busy or failing"
        )


@dataclass(frozen=True)
class _Request:
    model: bytes
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    options: dict
    preferences: Preferences
    conversation: str | None
    identity: Identity
    counter: TokenCounter | None


@dataclass(frozen=True)
class LightConfig:
    """Where the light client's peer joins, and what it pays with. `chain_rpc_url`/`chain_deployment`/
    `chain_dir` locate the chain as `dolphin chain` does (`chain.locate`); `wallet_key` (hex private key)
    signs credit authorisations when there is a chain."""

    bootstrap: tuple[str, ...] = ()
    # The peer's listen and announce multiaddrs (HostConfig): a public one lets nodes behind NAT dial back.
    listen: tuple[str, ...] = LOOPBACK_LISTEN
    announce: tuple[str, ...] = ()
    data_dir: Path | None = None  # for the host (its key is ephemeral either way); a temp dir when None
    chain_rpc_url: str | None = None
    chain_deployment: Path | None = None
    chain_dir: Path | None = None
    wallet_key: str | None = None
    max_credits: int = 10**24
    # False: a fresh peer key per session. True: the key in data_dir, kept across restarts (a gateway,
    # which must still sign reports about answers it served before a restart).
    persistent_identity: bool = False
    chain_refresh_s: float = 30.0
    settings: LightSettings = field(default_factory=LightSettings)
    sharing: SharingSettings = field(default_factory=SharingSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    # Makes a counter of a tokenizer folder (the cli's, over node.models.tokens): given, the client fetches
    # the tokenizer of a model it has no counter for from the pool, into `tokenizer_cache`.
    load_counter: CounterLoader | None = None
    tokenizer_cache: Path = DEFAULT_TOKENIZER_CACHE


async def _open_chain(config: LightConfig):
    """The chain client when one is configured (blocking reads happen in a worker thread), else None."""
    from chain.locate import ChainLocation

    location = ChainLocation(
        config.chain_rpc_url, config.chain_dir or DOLPHIN_HOME.expanduser(), config.chain_deployment
    )
    if not location.known():
        return None
    return await trio.to_thread.run_sync(location.client)


@contextlib.asynccontextmanager
async def open_light_client(config: LightConfig) -> AsyncIterator[LightClient]:
    """A light client: its own throwaway peer (`HostConfig.light_client`), a pool watcher, and the chain's
    facts and credit domain when a chain is configured. Raises P2PError when the bootstrap peers cannot be
    reached and ChainError when a configured chain cannot be read. An error raised in the block comes out
    as itself, not inside the exception groups of the host's nurseries."""
    raised: Exception | None = None
    chain = await _open_chain(config)
    with contextlib.ExitStack() as stack:
        data_dir = config.data_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="dolphin-"))
        )
        make_private_dir(data_dir)
        host_config = HostConfig.light_client(
            data_dir,
            bootstrap=config.bootstrap,
            listen=config.listen,
            announce=config.announce,
            ephemeral_identity=not config.persistent_identity,
        )
        async with open_host(host_config) as host:
            facts = ChainFacts(chain, refresh_s=config.chain_refresh_s) if chain is not None else None
            async with open_pool_watcher(
                host,
                bindings_domain=chain.domain("Bonding") if chain is not None else None,
                validators_domain=chain.domain(VALIDATORS_DOMAIN_CONTRACT) if chain is not None else None,
                chain=facts,
                settings=config.watch,
            ) as watcher:
                wallet = None
                async with trio.open_nursery() as nursery:
                    if config.wallet_key is not None and chain is not None:
                        account = EthAccount(bytes.fromhex(config.wallet_key.removeprefix("0x")))
                        wallet = CreditWallet(
                            account, chain.domain("Credits"), max_credits=config.max_credits
                        )
                        await nursery.start(track_credit, wallet, chain, config.chain_refresh_s)
                    sharer = None
                    if facts is not None and config.sharing.enabled:
                        sharer = AnswerSharer(
                            host,
                            chain.domain("ValidatorQuorum"),
                            facts.is_validator,
                            settings=config.sharing,
                            standing=functools.partial(_status, watcher),
                        )
                        await nursery.start(sharer.serve)
                    tokenizers = None
                    if config.load_counter is not None:
                        tokenizers = TokenizerCache(config.tokenizer_cache, config.load_counter)
                    client = LightClient(
                        host,
                        watcher,
                        settings=config.settings,
                        wallet=wallet,
                        chain=chain,
                        sharer=sharer,
                        tokenizers=tokenizers,
                    )
                    try:
                        yield client
                    except Exception as exc:
                        raised = exc
                    if sharer is not None:  # answers sampled just now still go out (a one-shot ask)
                        with trio.move_on_after(config.sharing.flush_timeout):
                            await sharer.wait_sent()
                    nursery.cancel_scope.cancel()
    if raised is not None:
        raise raised


def _status(watcher: PoolWatcher, node_key: bytes, model: bytes) -> str | None:
    """The validators' status of a node, from the standings the watcher heard (None: no verdict)."""
    standing = watcher.standings.standing(node_key, model) if watcher.standings is not None else None
    return standing.status if standing is not None else None


async def track_credit(
    wallet: CreditWallet, chain, interval: float, *, task_status=trio.TASK_STATUS_IGNORED
) -> None:
    """Keep `wallet.available` at the wallet's spendable credit (read now, then every `interval` s): what
    nodes serve against, its credit less a pending withdrawal request."""
    address = to_checksum_address(wallet.account.address)
    while True:
        try:
            wallet.available = await trio.to_thread.run_sync(chain.credits.spendable_of, address)
        except ChainError as exc:
            log.warning("could not read this wallet's credit (keeping %s): %s", wallet.available, exc)
        if wallet.available == 0:
            log.warning("wallet %s has no credit deposited: nodes serve its requests unpaid", address)
        task_status.started()
        task_status = trio.TASK_STATUS_IGNORED
        await trio.sleep(interval)


async def ask_model(
    config: LightConfig,
    model: str,
    messages: Sequence[tuple[str, str] | ChatMessage],
    *,
    on_piece: Callable[[AnswerPiece], None] | None = None,
    resolve_timeout: float = 15.0,
    routing: dict | None = None,
    **options,
) -> tuple[Answer, str]:
    """One question from a fresh light client (one session): `model` by id (hex) or manifest name;
    `on_piece` sees the answer as it streams; `routing` holds `Preferences` fields (`nodes` None: the
    client's default); `options` as `LightClient.stream` takes them, except that `counter` may be a Future
    (a counter loading in a worker thread), waited for once discovery has started. Returns the answer and
    the model's name. Raises UnknownModel, NoNodeAvailable, AllAttemptsFailed, AnswerFailedCheck,
    P2PError (bootstrap unreachable), ChainError (a configured chain unreadable), ValueError (bad routing),
    and what the counter's load raised."""
    async with open_light_client(config) as client:
        routing = dict(routing or {})
        routing["nodes"] = routing.get("nodes") or client.preferences.nodes
        preferences = Preferences(**routing)
        wait = client.host.deadline(resolve_timeout, client.settings.wait_for_nodes_round_trips)
        model_id = await client.watcher.resolve(model, timeout=wait)
        await client.watcher.watch(model_id)  # discovery and dials start: the counter may load meanwhile
        if isinstance(options.get("counter"), Future):
            options["counter"] = await trio.to_thread.run_sync(
                options["counter"].result, abandon_on_cancel=True
            )
        async with client.stream(model_id, messages, preferences=preferences, **options) as answer:
            async for piece in answer:
                if on_piece is not None:
                    on_piece(piece)
        return answer.result, client.watcher.name_of(model_id)

"""`serve_gateway(config)`: an OpenAI-compatible HTTP API in front of a light client — `dolphin gateway`.

    GET  /v1/models             every model the network serves (pool.watch's catalogue) or that was asked
                                for, with live nodes: id (its name), node count, speed, price (the chain's
                                Credits price when there is a chain, null until it answers; else the
                                configured one)
    POST /v1/chat/completions   chat; "stream": true for server-sent events
    POST /v1/completions        a prompt string, continued as the assistant's text (the network serves
                                chat models through their template; token-id prompts are refused)
    POST /v1/reports            flag a bad answer by its id: {"request_id", "reason", "reporter"?}
    GET  /metrics, /health      Prometheus text format; 200 while serving, 503 while draining

Requests take OpenAI's parameters (`pool.openai_api`): max_tokens, temperature, top_p, seed, stop,
logprobs/top_logprobs, stream, stream_options.include_usage; `prompt_cache_key` keeps a conversation on
one node (its prefix cache); and a `provider` object in the manner of OpenRouter's routes the request:
`{"sort": "balanced"|"speed"|"throughput"|"latency", "nodes": "any"|"registered"|"bonded",
"bonded_only": bool, "min_verification": "good"|"suspect", "max_suspicion": 0..1, "only": [peer id, ...]}`
(`only` pins a request to some nodes, as OpenRouter's `only` pins providers; bans still apply).
`usage` adds up the nodes' signed receipts. Errors are OpenAI's JSON with 400 (bad JSON or parameters),
401 (API key), 404 (unknown model or answer), 413 (body too large), 503 (no node, all attempts failed,
draining).

The API key (`--api-key`, DOLPHIN_GATEWAY_API_KEY) is checked on every /v1 endpoint when set. A client
that disconnects mid-answer cancels it: the stream to the node is reset and the node stops generating.
The receipts of served answers are kept in the data dir (`pool.receipts`) without prompts or answers;
a report is signed by this gateway's peer key (the session key its requests were signed with, which
validators check against the receipt) and published on REPORTS_TOPIC once a validator is connected.

Operations as `dolphin node`: a config file with documented defaults, ready.json (peer id, `http` URL),
metrics, and on SIGTERM/SIGINT a drain (503 for new requests, answers in flight finish for up to
`drain_timeout` s). Nothing of a prompt or answer is logged.
"""

from __future__ import annotations

import functools
import hmac
import logging
import statistics
import time
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chain.client import USD_DECIMALS, format_units
from chain.errors import ChainError
from p2p import P2PError
from p2p.daemon import ready_document
from p2p.ports import check_http_address
from pool.audits import SharingSettings
from pool.errors import PoolError, UnknownModel
from pool.gateway_config import GatewayConfig
from pool.gateway_metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from pool.http_guard import guard_http
from pool.light import Answer, LightClient, LightConfig, LightSettings, open_light_client
from pool.openai_api import (
    AnswerEnd,
    AnswerResponse,
    CompletionShaper,
    Emit,
    OpenAIError,
    Sampling,
    ShapedPiece,
    model_not_found,
    parse_messages,
    parse_prompt,
    parse_sampling,
    read_json_body,
    send_answer,
)
from pool.receipts import ReceiptBook, ServedReceipt, open_receipt_book
from pool.routing import Preferences
from pool.tokenizers import CounterLoader
from pool.watch import WatchSettings
from protocols import envelope
from protocols.errors import ProtocolError
from protocols.ids import REPORTS_TOPIC
from protocols.inference import TokenCounter
from protocols.messages import UserReport
from runtime.http import serve_http
from runtime.lifecycle import Drain, InFlight, claim_data_dir, open_daemon

__all__ = ["Gateway", "serve_gateway"]

log = logging.getLogger(__name__)

REPORT_RETRY_SECONDS = 2.0
PRICE_READ_TIMEOUT_S = 5.0
"""How long /v1/models waits for the chain's price of a newly watched model before listing it as null."""
_SORTS = {"balanced": "balanced", "speed": "speed", "throughput": "speed", "latency": "latency"}
_PROVIDER_KEYS = {
    "sort",
    "nodes",
    "bonded_only",
    "min_verification",
    "max_suspicion",
    "conversation",
    "only",
}


def _error_of(exc: PoolError) -> OpenAIError:
    if isinstance(exc, UnknownModel):
        return model_not_found(str(exc))
    return OpenAIError(503, str(exc), "unavailable")


class Gateway:
    """The HTTP side over a light client; `app()` is the Starlette app (module docstring)."""

    def __init__(self, config: GatewayConfig, client: LightClient, book: ReceiptBook) -> None:
        self.config = config
        self.client = client
        self.book = book
        self.metrics = GatewayMetrics()
        self.draining = False
        self.in_flight = InFlight(self.metrics.in_flight.set)
        self._reports_waiting = trio.Event()
        self._chain_prices: dict[bytes, int] = {}  # model id -> Credits.priceOf, per 1M tokens
        nodes = (
            config.nodes if config.nodes != "auto" else ("registered" if client.watcher.has_chain else "any")
        )
        # GatewayConfig checked both against the choices Preferences takes.
        self.preferences = Preferences(nodes=nodes, min_standing=config.min_verification)  # type: ignore[arg-type]

    # ---- requests ----
    def _check_key(self, request: Request) -> None:
        if self.config.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.config.api_key.encode()
        ):
            raise OpenAIError(401, "invalid API key: send `Authorization: Bearer <key>`", param=None)

    def _preferences(self, body: dict) -> tuple[Preferences, str | None]:
        """The request's routing preferences and conversation key (module docstring)."""
        provider = body.get("provider") or {}
        if not isinstance(provider, dict) or set(provider) - _PROVIDER_KEYS:
            raise OpenAIError(
                400, f"provider must be an object with keys among {sorted(_PROVIDER_KEYS)}", param="provider"
            )
        conversation = provider.get("conversation") or body.get("prompt_cache_key")
        if conversation is not None and not isinstance(conversation, str):
            raise OpenAIError(400, "prompt_cache_key must be a string", param="prompt_cache_key")
        nodes = provider.get("nodes", "bonded" if provider.get("bonded_only") else self.preferences.nodes)
        only = provider.get("only", [])
        if not isinstance(only, list) or not all(isinstance(peer, str) for peer in only):
            raise OpenAIError(400, "provider.only must be a list of peer ids", param="provider")
        try:
            preferences = Preferences(
                nodes=nodes,
                min_standing=provider.get("min_verification", self.preferences.min_standing),
                max_suspicion=provider.get("max_suspicion"),
                sort=_SORTS[provider.get("sort", "balanced")],  # type: ignore[arg-type]  # a KeyError: 400
                only=frozenset(only),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise OpenAIError(400, f"bad provider preferences: {exc}", param="provider") from exc
        return preferences, conversation

    async def _model(self, body: dict) -> tuple[bytes, str]:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise OpenAIError(400, "model is required: a model name or id from /v1/models", param="model")
        watched = len(self.client.watcher.watched())
        known = self.client.watcher.known_id(name)
        if known is None and watched >= self.config.max_models:
            raise model_not_found(f"this gateway watches {watched} models already; {name!r} is not one")
        try:
            model_id = await self.client.watcher.resolve(name, timeout=self.config.resolve_timeout)
        except UnknownModel as exc:
            raise model_not_found(f"unknown model {name!r}: {exc}") from exc
        await self.client.watcher.watch(model_id)
        return model_id, name

    async def _prepare(self, request: Request, kind: str) -> tuple[dict, Sampling, tuple, bytes, str]:
        self._check_key(request)
        if self.draining:
            raise OpenAIError(503, "the gateway is shutting down; retry elsewhere", "unavailable")
        body = await read_json_body(request, self.config.max_body_bytes)
        sampling = parse_sampling(
            body,
            max_tokens_limit=self.config.max_tokens_limit,
            default_max_tokens=self.config.default_max_tokens,
        )
        if kind == "chat":
            messages = parse_messages(body)
        else:
            prompt = parse_prompt(body)
            if not isinstance(prompt, str):
                raise OpenAIError(
                    400, "token-id prompts are not served through the network; send text", param="prompt"
                )
            messages = (("assistant", prompt),)
        model_id, name = await self._model(body)
        return body, sampling, messages, model_id, name

    async def _answer(self, request: Request, kind: str) -> Any:
        endpoint = "chat" if kind == "chat" else "completions"
        try:
            body, sampling, messages, model_id, name = await self._prepare(request, kind)
            preferences, conversation = self._preferences(body)
        except OpenAIError as exc:
            self.metrics.requests.labels(endpoint, str(exc.status)).inc()
            return exc.response()
        shaper = CompletionShaper(
            kind, name, logprobs=sampling.logprobs, include_usage=sampling.include_usage
        )
        started = time.monotonic()

        async def produce(emit: Emit) -> None:
            status = "499"  # unless it ends otherwise: the client went away (cancelled)
            try:
                with self.in_flight.tracking():
                    answer = await self._stream(
                        emit, shaper, sampling, model_id, messages, preferences, conversation, started
                    )
                    await self._file(answer, shaper.id)
                status = "200"
            except OpenAIError as exc:
                status = str(exc.status)
                raise
            finally:
                self.metrics.requests.labels(endpoint, status).inc()

        return AnswerResponse(produce, streaming=sampling.stream)

    async def _stream(
        self,
        emit: Emit,
        shaper: CompletionShaper,
        sampling: Sampling,
        model_id: bytes,
        messages: tuple,
        preferences: Preferences,
        conversation: str | None,
        started: float,
    ) -> Answer:
        first_token_seen = False

        async def observe_first_token(piece: ShapedPiece) -> None:
            nonlocal first_token_seen
            if piece.token_ids and not first_token_seen:
                first_token_seen = True
                self.metrics.ttft.observe(time.monotonic() - started)

        def ended() -> AnswerEnd:
            result = answer.result
            self._count(result)
            return AnswerEnd(result.finish_reason, result.tokens_in, result.tokens_out)

        try:
            async with self.client.stream(
                model_id,
                messages,
                max_tokens=sampling.max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                stop=sampling.stop,
                top_logprobs=sampling.top_logprobs if sampling.logprobs else 0,
                preferences=preferences,
                conversation=conversation,
            ) as answer:
                await send_answer(emit, shaper, sampling, answer, ended, on_piece=observe_first_token)
        except PoolError as exc:
            self._count_attempts(getattr(exc, "attempts", []))
            raise _error_of(exc) from exc
        return answer.result

    def _count(self, answer: Answer) -> None:
        for attempt in answer.attempts:
            self.metrics.attempts.labels(attempt.reason if attempt.error else "ok").inc()
        if answer.failovers:
            self.metrics.failovers.inc()
        self.metrics.tokens.labels("prompt").inc(answer.tokens_in)
        self.metrics.tokens.labels("completion").inc(answer.tokens_out)

    def _count_attempts(self, failures: list) -> None:
        for failure in failures:
            self.metrics.attempts.labels(getattr(failure, "reason", "lost")).inc()

    async def _file(self, answer: Answer, answer_id: str) -> None:
        served = [
            ServedReceipt(
                request_id=completion.request_id,
                answer_id=answer_id,
                peer_id=completion.peer_id,
                node_key=completion.node_key,
                model=answer.model,
                tokens_in=completion.tokens_in,
                tokens_out=completion.receipt.tokens_out,
                countersigned=completion.countersigned_receipt,
            )
            for completion in answer.receipts
            if completion.countersigned_receipt is not None and completion.receipt is not None
        ]
        if served:
            with trio.CancelScope(shield=True):  # the client may go now; the evidence stays
                await self.book.add(served)

    def drain(self) -> Drain:
        """On SIGTERM/SIGINT: 503 for new requests (`_prepare`), the answers in flight finish."""

        def begin() -> None:
            log.info("draining: refusing new requests, %d in flight", self.in_flight.count)
            self.draining = True

        def unfinished() -> None:
            log.warning("stopping with %d answers unfinished", self.in_flight.count)

        return Drain(begin, self.in_flight.wait_idle, unfinished, self.config.drain_timeout)

    # ---- models ----
    def _model_entry(self, model_id: bytes) -> dict | None:
        candidates = self.client.watcher.candidates(model_id)
        if not candidates:
            return None
        name = self.client.watcher.name_of(model_id)
        records = self.client.router.statistics(trio.current_time())
        speeds = [
            float(speed)
            for c, _ in candidates
            if (speed := records.get(c.peer_id, {}).get("tokens_per_s") or c.attested_tokens_per_s)
        ]
        chain_price = self._chain_prices.get(model_id)
        if chain_price is not None:
            price = format_units(chain_price, USD_DECIMALS)
        elif self.client.chain is not None:
            price = None  # the chain has not answered yet: unknown, never the configured "0"
        else:
            price = self.config.price_of(model_id, name)
        return {
            "id": name,
            "object": "model",
            "created": 0,
            "owned_by": "dolphin-network",
            "dolphin_model_id": model_id.hex(),
            "nodes": len(candidates),
            "tokens_per_second": round(statistics.median(speeds), 1) if speeds else None,
            "pricing": {
                "prompt": price,
                "completion": price,
                "per_tokens": 1_000_000,
                "currency": "payment token",
            },
        }

    async def serve_chain_prices(self) -> None:
        """Keep the governance-set price (Credits.priceOf, per 1M tokens) of every watched model, re-read
        every `chain_refresh_seconds`; /v1/models lists it instead of the configured one. Never returns."""
        while True:
            await self._read_chain_prices(self.client.watcher.watched())
            await trio.sleep(self.config.chain_refresh_seconds)

    async def _read_chain_prices(self, pools) -> None:
        for pool in pools:
            try:
                self._chain_prices[pool.model] = await trio.to_thread.run_sync(
                    self.client.chain.price_of, pool.model
                )
            except ChainError as exc:
                log.warning("could not read the price of a model (keeping the last): %s", exc)

    async def models(self, request: Request) -> Response:
        try:
            self._check_key(request)
        except OpenAIError as exc:
            return exc.response()
        if self.client.chain is not None:  # a model watched since the last round: its price now
            unpriced = [p for p in self.client.watcher.watched() if p.model not in self._chain_prices]
            with trio.move_on_after(PRICE_READ_TIMEOUT_S):
                await self._read_chain_prices(unpriced)
        entries = [e for pool in self.client.watcher.watched() if (e := self._model_entry(pool.model))]
        return JSONResponse({"object": "list", "data": entries})

    # ---- reports ----
    async def reports(self, request: Request) -> Response:
        try:
            self._check_key(request)
            body = await read_json_body(request, self.config.max_body_bytes)
            answer_id, reason, reporter = body.get("request_id"), body.get("reason"), body.get("reporter")
            if not isinstance(answer_id, str) or not answer_id:
                raise OpenAIError(
                    400, "request_id is required: the id of the answer to report", param="request_id"
                )
            if not isinstance(reason, str) or not reason.strip():
                raise OpenAIError(400, "reason is required: what is wrong with the answer", param="reason")
            reporter_address = self._address(reporter)
            served = await self.book.find(answer_id)
            if not served:
                raise OpenAIError(404, f"this gateway served no answer {answer_id!r}", param="request_id")
            identity = self.client.identity
            ids = []
            for receipt in served:
                report = UserReport(
                    request_id=receipt.request_id,
                    node_key=receipt.node_key,
                    model=receipt.model,
                    receipt=receipt.countersigned,
                    reason=reason.encode()[:1024].decode(errors="ignore"),
                    reporter=reporter_address,
                )
                ids.append(await self.book.add_report(receipt.request_id, envelope.sign(report, identity)))
                self.metrics.reports.labels("queued").inc()
        except OpenAIError as exc:
            return exc.response()
        except ProtocolError as exc:
            return OpenAIError(400, f"cannot make the report: {exc}").response()
        self._reports_waiting.set()
        return JSONResponse(
            {"object": "report", "ids": ids, "nodes": [r.peer_id for r in served]}, status_code=202
        )

    @staticmethod
    def _address(text: object) -> bytes | None:
        if text is None:
            return None
        if not isinstance(text, str) or len(text.removeprefix("0x")) != 40:
            raise OpenAIError(400, "reporter must be an address, 0x and 40 hex digits", param="reporter")
        try:
            return bytes.fromhex(text.removeprefix("0x"))
        except ValueError:
            raise OpenAIError(
                400, "reporter must be an address, 0x and 40 hex digits", param="reporter"
            ) from None

    async def serve_reports(self) -> None:
        """Publish queued reports whenever a validator (a subscriber of REPORTS_TOPIC) is connected."""
        gossip = self.client.host.gossip
        while True:
            with trio.move_on_after(REPORT_RETRY_SECONDS):
                await self._reports_waiting.wait()
            self._reports_waiting = trio.Event()
            if not gossip.topic_peers(REPORTS_TOPIC):
                continue
            for report_id, data in await self.book.pending_reports():
                try:
                    await gossip.publish(REPORTS_TOPIC, data)
                except P2PError as exc:
                    log.warning("could not publish a report (retrying): %s", exc)
                    break
                await self.book.mark_published(report_id)
                self.metrics.reports.labels("published").inc()

    # ---- the app ----
    def app(self) -> Starlette:
        async def chat(request: Request) -> Any:
            return await self._answer(request, "chat")

        async def completions(request: Request) -> Any:
            return await self._answer(request, "completion")

        async def metrics(request: Request) -> Response:
            pools = {
                self.client.watcher.name_of(p.model): len(p.view.members())
                for p in self.client.watcher.watched()
            }
            return Response(self.metrics.render(pools), media_type=CONTENT_TYPE_LATEST)

        async def health(request: Request) -> Response:
            status = 503 if self.draining else 200
            return JSONResponse({"serving": not self.draining, "in_flight": self.in_flight.count}, status)

        bind_host = self.config.http.rpartition(":")[0]
        return Starlette(
            middleware=[
                Middleware(guard_http, bind_host=bind_host, allowed_origins=self.config.allowed_origins)
            ],
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/completions", completions, methods=["POST"]),
                Route("/v1/reports", self.reports, methods=["POST"]),
                Route("/metrics", metrics, methods=["GET"]),
                Route("/health", health, methods=["GET"]),
            ],
        )


def _light_config(config: GatewayConfig, load_counter: CounterLoader | None) -> LightConfig:
    wallet_key = None
    if config.key_file is not None:
        from chain.client import read_key_file

        wallet_key = read_key_file(config.key_file)
    return LightConfig(
        bootstrap=config.bootstrap,
        listen=config.listen,
        announce=config.announce,
        data_dir=config.data_dir / "peer",
        chain_rpc_url=config.rpc_url,
        chain_deployment=config.deployment,
        chain_dir=config.chain_dir,
        wallet_key=wallet_key,
        chain_refresh_s=config.chain_refresh_seconds,
        persistent_identity=True,
        sharing=SharingSettings(enabled=config.share_answers),
        settings=LightSettings(
            max_attempts=config.max_attempts,
            first_token_timeout=config.first_token_timeout,
            stall_timeout=config.stall_timeout,
        ),
        watch=WatchSettings(),
        load_counter=load_counter,
        tokenizer_cache=config.data_dir / "tokenizers",
    )


async def _watch_configured(client: LightClient, config: GatewayConfig) -> None:
    """Watch the configured models (names are looked up in the background, retried until found), and get
    their token counters (a tokenizer fetched from the pool: `LightClient.counter_of`) once members are
    heard, before the first request needs them."""
    async with trio.open_nursery() as nursery:
        for model in config.models:

            async def watch(model: str = model) -> None:
                while True:
                    try:
                        model_id = await client.watcher.resolve(model, timeout=config.resolve_timeout)
                        await client.watcher.wait_for_members(model_id, config.resolve_timeout)
                        await client.counter_of(model_id)
                        return
                    except UnknownModel:
                        log.info("no node serves %r yet; looking again", model)

            nursery.start_soon(watch)


async def serve_gateway(
    config: GatewayConfig,
    *,
    counters: dict[bytes, TokenCounter] | None = None,
    load_counter: CounterLoader | None = None,
    task_status: trio.TaskStatus[dict] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until SIGINT/SIGTERM (see the module docstring); started with the ready.json
    document. `counters`: by model id, the tokenizers that make those models' bills exact; `load_counter`
    makes the counters of the other models from tokenizer files fetched from their pools (cached in
    <data dir>/tokenizers; `pool.tokenizers`), None: their bills are held to the byte bound. Raises P2PError
    (bootstrap peers unreachable), ChainError (a configured chain unreadable) and OSError (the HTTP address
    is taken) at start; PortInUse and DataDirInUse before anything else."""
    check_http_address(config.http, "--http")
    claim_data_dir(config.data_dir)
    async with (
        open_daemon(config.data_dir) as daemon,
        open_receipt_book(config.data_dir) as book,
        open_light_client(_light_config(config, load_counter)) as client,
        trio.open_nursery() as nursery,
    ):
        client.counters.update(counters or {})
        gateway = Gateway(config, client, book)
        nursery.start_soon(_watch_configured, client, config)
        await client.watcher.watch_catalogue()
        nursery.start_soon(gateway.serve_reports)
        if client.chain is not None:
            nursery.start_soon(gateway.serve_chain_prices)
        serve = functools.partial(
            serve_http, gateway.app(), config.http, log_name="pool.gateway.http", graceful_timeout=1.0
        )
        url = await nursery.start(serve)
        document = ready_document(
            client.host,
            {
                "http": url,
                "api_key_required": config.api_key is not None,
                "chain": client.chain.rpc_url if client.chain is not None else None,
                "paying_wallet": "0x" + client.wallet.account.address.hex() if client.wallet else None,
                "nodes": gateway.preferences.nodes,
            },
        )
        log.info("gateway serving %s (peer %s)", url, client.host.peer_id)
        await daemon.serve(nursery, document, gateway.drain(), task_status)
    log.info("stopped")

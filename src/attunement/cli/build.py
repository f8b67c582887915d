"""``attune build | stats | split | augment``: the dataset verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from attunement.cli.common import (
    CachePath,
    Concurrency,
    NoCache,
    Retries,
    Timeout,
    console,
    fail,
    llm_options,
    out,
    run,
)


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("stats")(stats)
    app.command("split")(split)
    app.command("augment")(augment)


def _stage_list(text: str | None) -> list[str] | None:
    if not text:
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


def _stage_specs(pairs: list[str] | None) -> dict[str, str]:
    """``--model-for inspect=SPEC`` options as {stage: spec}."""
    from attunement.building.config import LLM_STAGES

    out: dict[str, str] = {}
    for pair in pairs or []:
        stage, sep, spec = pair.partition("=")
        stage = stage.strip()
        if not sep or not spec.strip():
            raise fail(
                f"--model-for takes STAGE=SPEC (e.g. inspect=openai:URL#model), not {pair!r}"
            )
        if stage not in LLM_STAGES:
            raise fail(f"--model-for: unknown stage {stage!r}; choose from {', '.join(LLM_STAGES)}")
        out[stage] = spec.strip()
    return out


ErrorTags = Literal["drop", "strip", "keep"]
Inspection = Literal["enforce", "annotate"]


def build(
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            "-s",
            help="KIND:PATH with KIND alpsbench-packets, alpsbench, chatlog or users.",
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Build folder (resumable).")
    ] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec.")] = "local",
    model_for: Annotated[
        list[str] | None,
        typer.Option(
            "--model-for",
            help="STAGE=SPEC: another model for one stage, e.g. "
            "inspect=openai:URL#judge (repeatable).",
        ),
    ] = None,
    stages: Annotated[
        str | None,
        typer.Option(
            "--stages",
            help="Comma-separated stages that may do new work (default: all of "
            "extract,filter,persona,bigfive,situations,queries,inspect,export).",
        ),
    ] = None,
    redo: Annotated[
        list[str] | None,
        typer.Option(
            "--redo",
            help="Do records again without deleting files: stale, rejected, "
            "codes:inspect.language[,...], keys:FILE (repeatable).",
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N users only.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config", help="JSON file of BuildConfig fields (stage settings, budgets...)."
        ),
    ] = None,
    filter_rules: Annotated[
        str | None,
        typer.Option(
            "--filter-rules",
            help="Depth-filter rules: a preset (default, authors) or a JSON file of rule fields.",
        ),
    ] = None,
    show_filter_rules: Annotated[
        bool,
        typer.Option(
            "--show-filter-rules",
            help="Print the filter rules (of --filter-rules) as JSON and exit.",
        ),
    ] = False,
    situations_per_category: Annotated[
        int | None,
        typer.Option(
            "--situations-per-category",
            min=1,
            max=5,
            help="Up to N situations (hence queries) per category and user.",
        ),
    ] = None,
    gates: Annotated[
        str | None,
        typer.Option(
            "--gates",
            help="Inspection checks a query must pass, comma-separated (default: "
            "emotional_support,logical_consistency,role_awareness; add language "
            "to require the user's language).",
        ),
    ] = None,
    big_five_in_prompts: Annotated[
        bool,
        typer.Option(
            "--big-five-in-prompts",
            help="Show the Big Five levels to the situation, query and inspection stages.",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--skip-invalid",
            help="Write malformed input lines to a rejects file instead of failing.",
        ),
    ] = False,
    error_tags: Annotated[
        ErrorTags,
        typer.Option("--error-tags", help="Memory items tagged [ERROR: ...]: drop, strip or keep."),
    ] = "drop",
    no_scrub: Annotated[
        bool,
        typer.Option(
            "--no-scrub",
            help="Keep e-mail addresses, phone numbers, street addresses, URLs with "
            "identifiers and id numbers (scrubbed by default).",
        ),
    ] = False,
    export_evidence: Annotated[
        bool,
        typer.Option(
            "--export-evidence", help="Keep the quoted evidence text of memories in exports."
        ),
    ] = False,
    keep_dialogues: Annotated[
        bool,
        typer.Option("--keep-dialogues", help="Write the (scrubbed) dialogues into users.jsonl."),
    ] = False,
    split_by_language: Annotated[
        bool,
        typer.Option("--split-by-language", help="Also write examples.<lang>.jsonl per language."),
    ] = False,
    inspection: Annotated[
        Inspection,
        typer.Option(
            "--inspection",
            help="enforce: export only queries passing every gate; annotate: "
            "export all inspected queries with the verdict in meta.",
        ),
    ] = "enforce",
    concurrency: Concurrency = 4,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Build a personalized-empathy dataset from user histories (resumable)."""
    from attunement.building import BuildConfig, FilterRules, build_dataset
    from attunement.llm import load_chat_model

    try:
        rules = FilterRules.load(filter_rules) if filter_rules else None
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if show_filter_rules:
        out.print_json((rules or FilterRules()).model_dump_json())
        raise typer.Exit()
    if source is None or out_dir is None:
        raise fail("--source and --out are required")
    specs = _stage_specs(model_for)

    def make_config() -> BuildConfig:
        config = BuildConfig.from_file(config_file) if config_file else BuildConfig()
        update: dict = {"inspection": inspection}
        if rules is not None:
            update["filter_rules"] = rules
        if situations_per_category is not None:
            update["situations_per_category"] = situations_per_category
        if gates is not None:
            update["inspection_gates"] = _stage_list(gates) or []
        flags = {
            "big_five_in_prompts": big_five_in_prompts,
            "export_evidence": export_evidence,
            "keep_dialogues": keep_dialogues,
            "split_by_language": split_by_language,
        }
        update.update({name: True for name, on in flags.items() if on})
        options = config.import_options
        update["import_options"] = options.model_copy(
            update={
                "skip_invalid": skip_invalid,
                "error_tags": error_tags,
                "scrub": options.scrub.model_copy(update={"enabled": False})
                if no_scrub
                else options.scrub,
                "rejects": out_dir / "input.rejects.jsonl" if skip_invalid else None,
            }
        )
        return BuildConfig.model_validate({**config.model_dump(), **update})

    async def go():
        config = make_config()
        options = llm_options(concurrency, timeout, retries, cache, no_cache)
        loaded = {spec: load_chat_model(spec, options) for spec in {model, *specs.values()}}
        try:
            return await build_dataset(
                source,
                out_dir,
                loaded[model],
                config,
                stage_models={stage: loaded[spec] for stage, spec in specs.items()},
                stages=_stage_list(stages),
                redo=redo or (),
                limit=limit,
                seed=seed,
                concurrency=concurrency,
                on_estimate=_print_estimate,
            )
        finally:
            for chat in loaded.values():
                await chat.aclose()

    report = run(go())
    table = Table(
        title=f"build of {report.users} users -> {report.accepted} examples "
        f"({report.accepted_users} users) in {report.seconds:.0f} s"
    )
    cols = ("input", "ok", "rejected", "new", "resumed", "pending")
    for col in ("stage", *cols, "calls", "tokens in/out"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, c in report.stages.items():
        table.add_row(
            name,
            *(str(getattr(c, f)) for f in cols),
            str(c.usage.calls),
            f"{c.usage.prompt_tokens}/{c.usage.completion_tokens}",
        )
    out.print(table)
    if report.rejection_reasons:
        out.print(
            "rejections: " + ", ".join(f"{k} {v}" for k, v in report.rejection_reasons.items()),
            soft_wrap=True,
        )
    if report.languages:
        out.print("languages: " + ", ".join(f"{k} {v}" for k, v in report.languages.items()))
    if report.scrubbed:
        out.print(
            "personal data replaced at import: "
            + ", ".join(f"{k} {v}" for k, v in report.scrubbed.items())
        )
    if report.import_warnings:
        console.print(
            f"[yellow]{report.import_warnings} input problems were tolerated "
            "(see meta.import_warnings in users.jsonl)[/]"
        )
    if skip_invalid and (out_dir / "input.rejects.jsonl").exists():
        console.print(
            f"[yellow]malformed input lines written to {out_dir / 'input.rejects.jsonl'}[/]"
        )
    console.print(f"output: {out_dir}  (manifest: {report.paths.get('manifest')})", soft_wrap=True)


def _print_estimate(estimate) -> None:
    parts = ", ".join(f"{stage} {s.calls}" for stage, s in estimate.stages.items() if s.calls)
    tokens = sum(s.prompt_tokens for s in estimate.stages.values())
    completion = sum(s.max_completion_tokens for s in estimate.stages.values())
    console.print(
        f"estimate: {estimate.users} users kept by the filter; at most "
        f"{estimate.calls} calls ({parts or 'none'}), about {tokens} prompt tokens, "
        f"at most {completion} completion tokens",
        highlight=False,
        soft_wrap=True,
    )


def stats(
    build_dir: Annotated[Path, typer.Argument(help="A build folder (or an examples.jsonl).")],
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG figure.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Big Five levels, query categories, stage acceptance and rejection reasons."""
    from attunement.building.stats import compute_stats, plot_stats

    def go():
        return compute_stats(build_dir)

    try:
        s = go()
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if as_json:
        out.print_json(s.model_dump_json())
    else:
        _print_stats(s)
    if plot is not None:
        path = plot_stats(s, plot)
        console.print(f"figure: {path}")


def _print_stats(s) -> None:
    from attunement.records import BIG_FIVE_TRAITS

    share = "-" if s.all_medium_share is None else f"{s.all_medium_share:.0%}"
    t = Table(
        title=f"Big Five levels of {s.users} users ({s.all_medium_users} all-medium, {share})"
    )
    t.add_column("trait")
    for lvl in ("low", "medium", "high"):
        t.add_column(lvl, justify="right")
    for trait in BIG_FIVE_TRAITS:
        row = s.big_five.get(trait, {})
        t.add_row(trait, *(str(row.get(lvl, 0)) for lvl in ("low", "medium", "high")))
    out.print(t)
    c = Table(title=f"{s.examples} queries by category")
    c.add_column("category")
    c.add_column("queries", justify="right")
    for cat, n in s.categories.items():
        c.add_row(cat, str(n))
    out.print(c)
    if s.stages:
        st = Table(title="stages")
        for col in ("stage", "done", "ok", "rejected", "acceptance"):
            st.add_column(col, justify="left" if col == "stage" else "right")
        for name, row in s.stages.items():
            rate = "-" if row.acceptance is None else f"{row.acceptance:.0%}"
            st.add_row(name, str(row.done), str(row.ok), str(row.rejected), rate)
        out.print(st)
    if s.rejection_reasons:
        r = Table(title="rejection reasons")
        r.add_column("reason")
        r.add_column("count", justify="right")
        for k, v in s.rejection_reasons.items():
            r.add_row(k, str(v))
        out.print(r)


def split(
    data: Annotated[Path, typer.Option("--data", help="examples.jsonl to split.")],
    mode: Annotated[
        Literal["random", "ood"],
        typer.Option("--mode", help="random (by user) or ood (k-modes on Big Five)."),
    ] = "random",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for train/test.")] = Path(
        "split"
    ),
    ratio: Annotated[float, typer.Option("--ratio", help="Train share of users (random).")] = 0.9,
    k: Annotated[int, typer.Option("--k", min=2, help="Clusters (ood).")] = 4,
    holdout: Annotated[
        str,
        typer.Option(
            "--holdout",
            help="Cluster held out as test (ood): a number (0 = largest), smallest or largest.",
        ),
    ] = "0",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the split (and the cluster table) without writing files."
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Split examples by user: random 9:1, or hold out one Big Five cluster (OOD)."""
    from attunement.jsonl import read_jsonl
    from attunement.records import Example
    from attunement.splits import split_ood, split_random, write_split

    try:
        examples = read_jsonl(data, Example)
        if mode == "random":
            result = split_random(examples, ratio=ratio, seed=seed)
        else:
            result = split_ood(
                examples,
                k=k,
                seed=seed,
                holdout_cluster=int(holdout) if holdout.isdigit() else holdout,
            )
        paths = None if dry_run else write_split(result, out_dir, source=data)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if result.clusters:
        total = sum(c.users for c in result.clusters)
        t = Table(title=f"k-modes clusters of users on Big Five (k={k}, seed={seed})")
        t.add_column("cluster", justify="right")
        t.add_column("users", justify="right")
        t.add_column("share", justify="right")
        for trait in ("O", "C", "E", "A", "N"):
            t.add_column(trait)
        t.add_column("")
        for c in result.clusters:
            t.add_row(
                str(c.index),
                str(c.users),
                f"{c.users / total:.0%}",
                *c.profile,
                "held out" if c.index == result.holdout_cluster else "",
            )
        out.print(t)
    out.print(
        f"train: {result.manifest['train_users']} users / {len(result.train)} examples; "
        f"test: {result.manifest['test_users']} users / {len(result.test)} examples"
    )
    if paths is None:
        console.print("dry run: nothing written")
    else:
        console.print(
            f"written: {paths['train']}, {paths['test']}, {paths['manifest']}", soft_wrap=True
        )


def augment(
    data: Annotated[
        Path,
        typer.Option(
            "--data", help="EmpatheticDialogues-like JSONL: conv_id, emotion, situation, utterance."
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec.")] = "local",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")] = Path(
        "augmented"
    ),
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    skip_invalid: Annotated[bool, typer.Option("--skip-invalid")] = False,
    concurrency: Concurrency = 4,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """PERM-style augmentation: a fuller scenario and a light persona per row."""
    from attunement.building.augment import augment_dataset
    from attunement.llm import load_chat_model

    async def go():
        chat = load_chat_model(model, llm_options(concurrency, timeout, retries, cache, no_cache))
        try:
            return await augment_dataset(
                data,
                out_dir,
                chat,
                limit=limit,
                seed=seed,
                concurrency=concurrency,
                skip_invalid=skip_invalid,
            )
        finally:
            await chat.aclose()

    report = run(go())
    out.print(
        f"{report.rows} rows -> {report.accepted} examples, {report.rejected} rejected"
        + (f" ({json.dumps(report.rejection_reasons)})" if report.rejection_reasons else "")
    )
    console.print(f"output: {out_dir}")

"""``attune build | stats | split | augment``: the dataset verbs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

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


def build(
    source: Annotated[str | None, typer.Option(
        "--source", "-s", help="KIND:PATH with KIND alpsbench-packets, alpsbench, chatlog "
                               "or users.")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Build folder "
                                                 "(resumable).")] = None,
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec.")] = "local",
    stages: Annotated[str | None, typer.Option(
        "--stages", help="Comma-separated stages that may do new work (default: all of "
                         "extract,filter,persona,bigfive,situations,queries,inspect,export)."
    )] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="First N users only.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    config_file: Annotated[Path | None, typer.Option(
        "--config", help="JSON file of BuildConfig fields (stage settings, budgets...).")] = None,
    filter_rules: Annotated[Path | None, typer.Option(
        "--filter-rules", help="JSON file overriding the depth-filter rules.")] = None,
    show_filter_rules: Annotated[bool, typer.Option(
        "--show-filter-rules", help="Print the default filter rules as JSON and exit.")] = False,
    skip_invalid: Annotated[bool, typer.Option(
        "--skip-invalid", help="Write malformed input lines to a rejects file instead of "
                               "failing.")] = False,
    error_tags: Annotated[str, typer.Option(
        "--error-tags", help="Memory items tagged [ERROR: ...]: drop, strip or keep.")] = "drop",
    inspection: Annotated[str, typer.Option(
        "--inspection", help="enforce: export only queries passing every inspection check; "
                             "annotate: export all inspected queries with the verdict in "
                             "meta.")] = "enforce",
    concurrency: Concurrency = 4,
    timeout: Timeout = 120.0,
    retries: Retries = 4,
    cache: CachePath = None,
    no_cache: NoCache = False,
) -> None:
    """Build a personalized-empathy dataset from user histories (resumable)."""
    from attunement.building import BuildConfig, FilterRules, build_dataset
    from attunement.llm import load_chat_model

    if show_filter_rules:
        out.print_json(FilterRules().model_dump_json())
        raise typer.Exit()
    if source is None or out_dir is None:
        raise fail("--source and --out are required")
    if inspection not in ("enforce", "annotate"):
        raise fail(f"--inspection must be enforce or annotate, not {inspection!r}")
    if error_tags not in ("drop", "strip", "keep"):
        raise fail(f"--error-tags must be drop, strip or keep, not {error_tags!r}")

    def make_config() -> BuildConfig:
        config = BuildConfig.from_file(config_file) if config_file else BuildConfig()
        update: dict = {"inspection": inspection}
        if filter_rules is not None:
            update["filter_rules"] = FilterRules.from_file(filter_rules)
        update["import_options"] = config.import_options.model_copy(update={
            "skip_invalid": skip_invalid, "error_tags": error_tags,
            "rejects": out_dir / "input.rejects.jsonl" if skip_invalid else None})
        return config.model_copy(update=update)

    async def go():
        config = make_config()
        chat = load_chat_model(model, llm_options(concurrency, timeout, retries, cache, no_cache))
        try:
            return await build_dataset(source, out_dir, chat, config, stages=_stage_list(stages),
                                       limit=limit, seed=seed, concurrency=concurrency)
        finally:
            await chat.aclose()

    report = run(go())
    table = Table(title=f"build of {report.users} users -> {report.accepted} examples "
                        f"({report.accepted_users} users) in {report.seconds:.0f} s")
    for col in ("stage", "input", "ok", "rejected", "new", "resumed", "pending"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, c in report.stages.items():
        table.add_row(name, *(str(getattr(c, f)) for f in
                              ("input", "ok", "rejected", "new", "resumed", "pending")))
    out.print(table)
    if report.rejection_reasons:
        out.print("rejections: " + ", ".join(f"{k} {v}" for k, v in
                                             report.rejection_reasons.items()))
    if skip_invalid and (out_dir / "input.rejects.jsonl").exists():
        console.print(f"[yellow]malformed input lines written to "
                      f"{out_dir / 'input.rejects.jsonl'}[/]")
    console.print(f"output: {out_dir}  (manifest: {report.paths.get('manifest')})")


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

    t = Table(title=f"Big Five levels of {s.users} users")
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
    mode: Annotated[str, typer.Option("--mode", help="random (by user) or ood (k-modes on "
                                                     "Big Five).")] = "random",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for train/test.")] = Path(
        "split"),
    ratio: Annotated[float, typer.Option("--ratio", help="Train share of users (random).")] = 0.9,
    k: Annotated[int, typer.Option("--k", min=2, help="Clusters (ood).")] = 4,
    holdout: Annotated[int, typer.Option("--holdout", min=0,
                                         help="Cluster held out as test (ood).")] = 0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Split examples by user: random 9:1, or hold out one Big Five cluster (OOD)."""
    from attunement.jsonl import read_jsonl
    from attunement.records import Example
    from attunement.splits import split_ood, split_random, write_split

    if mode not in ("random", "ood"):
        raise fail(f"--mode must be random or ood, not {mode!r}")
    try:
        examples = read_jsonl(data, Example)
        if mode == "random":
            result = split_random(examples, ratio=ratio, seed=seed)
        else:
            result = split_ood(examples, k=k, holdout_cluster=holdout, seed=seed)
        paths = write_split(result, out_dir, source=data)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from None
    if result.clusters:
        t = Table(title=f"k-modes clusters of users on Big Five (k={k}, seed={seed})")
        t.add_column("cluster", justify="right")
        t.add_column("users", justify="right")
        for trait in ("O", "C", "E", "A", "N"):
            t.add_column(trait)
        t.add_column("")
        for c in result.clusters:
            t.add_row(str(c.index), str(c.users), *c.profile,
                      "held out" if c.index == result.holdout_cluster else "")
        out.print(t)
    out.print(f"train: {result.manifest['train_users']} users / {len(result.train)} examples; "
              f"test: {result.manifest['test_users']} users / {len(result.test)} examples")
    console.print(f"written: {paths['train']}, {paths['test']}, {paths['manifest']}")


def augment(
    data: Annotated[Path, typer.Option("--data", help="EmpatheticDialogues-like JSONL: "
                                                      "conv_id, emotion, situation, utterance.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model spec.")] = "local",
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")] = Path(
        "augmented"),
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
            return await augment_dataset(data, out_dir, chat, limit=limit, seed=seed,
                                         concurrency=concurrency, skip_invalid=skip_invalid)
        finally:
            await chat.aclose()

    report = run(go())
    out.print(f"{report.rows} rows -> {report.accepted} examples, {report.rejected} rejected"
              + (f" ({json.dumps(report.rejection_reasons)})" if report.rejection_reasons else ""))
    console.print(f"output: {out_dir}")

"""``attune build | augment | stats | split``: the dataset verbs.

``build`` layers its options over ``--config FILE`` (fields of
:class:`~attunement.building.BuildConfig`) over the config's defaults: an
option that sets a config field is built from that field and counts only
when given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import typer
from rich.table import Table

from attunement.building import (
    FILTER_PRESETS,
    INSPECTION_CHECKS,
    STAGES,
    BuildConfig,
    BuildReport,
    FilterRules,
    ImportOptions,
    build_dataset,
)
from attunement.building.augment import augment_dataset
from attunement.building.config import LLM_STAGES
from attunement.building.manifest import previous_settings
from attunement.cli.common import fail, out, run, say, show
from attunement.cli.options import (
    SPEC_FORMS,
    ModelRun,
    field_option,
    fields_bundle,
    limit_option,
    model_option,
    model_run,
    param_default,
    seed_option,
    skip_invalid_option,
    verb,
)
from attunement.cli.paths import data_option, out_option, path_check, path_option
from attunement.llm import load_chat_model

#: the config fields ``build`` sets from options (when given)
CONFIG_FIELDS = fields_bundle(
    BuildConfig,
    "situations_per_category",
    "inspection",
    "big_five_in_prompts",
    "export_evidence",
    "keep_dialogues",
    "split_by_language",
    unset=True,
    decls={
        name: (f"--{name.replace('_', '-')}/--no-{name.replace('_', '-')}",)
        for name in (
            "big_five_in_prompts",
            "export_evidence",
            "keep_dialogues",
            "split_by_language",
        )
    },
)


def _csv(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [s.strip() for s in text.split(",") if s.strip()]


def _stage_specs(pairs: list[str] | None) -> dict[str, str]:
    """``--model-for inspect=SPEC`` options as {stage: spec}."""
    found: dict[str, str] = {}
    for pair in pairs or []:
        stage, sep, spec = pair.partition("=")
        stage = stage.strip()
        if not sep or not spec.strip():
            raise fail(
                f"--model-for takes STAGE=SPEC (e.g. inspect=openai:URL#model), not {pair!r}"
            )
        if stage not in LLM_STAGES:
            raise fail(f"--model-for: unknown stage {stage!r}; choose from {', '.join(LLM_STAGES)}")
        found[stage] = spec.strip()
    return found


def _config(
    base: BuildConfig,
    fields: dict[str, Any],
    gates: str | None,
    rules: FilterRules | None,
    imports: dict[str, Any],
    out_dir: Path,
) -> BuildConfig:
    """``base`` (the ``--config`` file's, the last run's, or the defaults) with
    the options given on top (``imports`` holds only the import options given)."""
    update = dict(fields)
    if rules is not None:
        update["filter_rules"] = rules
    if gates is not None:
        update["inspection_gates"] = _csv(gates)
    options = base.import_options
    if imports.pop("no_scrub", False):
        imports["scrub"] = options.scrub.model_copy(update={"enabled": False})
    if imports.get("skip_invalid"):
        imports["rejects"] = out_dir / "input.rejects.jsonl"
    update["import_options"] = options.model_copy(update=imports)
    return BuildConfig.model_validate({**base.model_dump(), **update})


class Rerun:
    """The settings of a build folder's last run, for the options not given now.

    A rerun of the same folder without options repeats what the last run did
    (its source, models, seed and every BuildConfig setting) instead of
    starting from the defaults, which would make its records stale; each
    option given still wins, and the verb says what it took from where.
    """

    def __init__(self, out_dir: Path, config_file: Path | None):
        self.previous = previous_settings(out_dir) if out_dir.is_dir() else None
        self.config_file = config_file
        self.taken: list[str] = []

    def value(self, given: Any, key: str, flag: str, default: Any = None) -> Any:
        if given is not None:
            return given
        if self.previous is not None and self.previous.get(key) is not None:
            self.taken.append(flag)
            return self.previous[key]
        return default

    def spec(self, given: str | None, name: str, flag: str, default: str | None) -> str | None:
        specs = (self.previous or {}).get("specs", {})
        if given is None and name in specs:
            self.taken.append(flag)
            return specs[name]
        return given if given is not None else default

    def base_config(self) -> BuildConfig:
        if self.config_file is not None:
            return BuildConfig.from_file(self.config_file)
        if self.previous is not None:
            self.taken.append("settings")
            return self.previous["config"]
        return BuildConfig()

    def say(self, out_dir: Path) -> None:
        if self.taken:
            say(
                f"rerun of {out_dir}: {', '.join(self.taken)} taken from its manifest.json "
                "(the last run's); options given here override them",
                style="yellow",
            )


async def _build(
    source: str, out_dir: Path, model: str, specs: dict[str, str], llm: ModelRun, **kwargs: Any
) -> BuildReport:
    options = llm.options()
    loaded = {spec: load_chat_model(spec, options) for spec in {model, *specs.values()}}
    try:
        return await build_dataset(
            source,
            out_dir,
            loaded[model],
            stage_models={stage: loaded[spec] for stage, spec in specs.items()},
            concurrency=options.concurrency,
            on_estimate=_print_estimate,
            specs={"model": model, **specs},
            **kwargs,
        )
    finally:
        for chat in loaded.values():
            await chat.aclose()


@verb(fields=CONFIG_FIELDS, llm=model_run(concurrency=param_default(build_dataset, "concurrency")))
def build(
    source: str | None = typer.Option(
        None,
        "--source",
        "-s",
        help="KIND:PATH with KIND alpsbench-packets, alpsbench, chatlog or users.",
    ),
    out_dir: Path | None = out_option("Build folder (resumable).", kind="new folder", default=None),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        metavar="SPEC",
        help=f"The model that builds ({SPEC_FORMS}).",
        show_default="local, or the last run's in this folder",
    ),
    model_for: list[str] | None = typer.Option(
        None,
        "--model-for",
        metavar="STAGE=SPEC",
        help="Another model for one stage, e.g. inspect=openai:URL#judge (repeatable).",
    ),
    stages: str | None = typer.Option(
        None,
        "--stages",
        help=f"Comma-separated stages that may do new work (all when not given): {','.join(STAGES)}.",
    ),
    redo: list[str] | None = typer.Option(
        None,
        "--redo",
        help="Do records again without deleting files: stale, rejected, "
        "codes:inspect.language[,...], keys:FILE (repeatable).",
    ),
    limit: int | None = limit_option(),
    seed: int | None = typer.Option(
        None, "--seed", help="Sampling seed.", show_default="0, or the last run's in this folder"
    ),
    config_file: Path | None = path_option(
        "file",
        "JSON file of BuildConfig fields (stage settings, budgets...); "
        "without it, a rerun starts from the last run's settings.",
        "--config",
        default=None,
    ),
    filter_rules: str | None = typer.Option(
        None,
        "--filter-rules",
        help=f"Depth-filter rules: a preset ({', '.join(map(repr, FILTER_PRESETS))}) "
        "or a JSON file of rule fields.",
    ),
    show_filter_rules: bool = typer.Option(
        False,
        "--show-filter-rules",
        help="Print the filter rules (of --filter-rules) as JSON and exit.",
    ),
    *,
    fields: dict[str, Any],
    gates: str | None = typer.Option(
        None,
        "--gates",
        help=f"Inspection checks a query must pass, comma-separated ({', '.join(INSPECTION_CHECKS)}).",
    ),
    skip_invalid: bool = skip_invalid_option(),
    error_tags: Literal["drop", "strip", "keep"] | None = field_option(
        ImportOptions,
        "error_tags",
        help="Memory items tagged [ERROR: ...]: drop, strip or keep.",
        unset=True,
    ),
    no_scrub: bool = typer.Option(
        False,
        "--no-scrub",
        help="Keep e-mail addresses, phone numbers, street addresses, URLs with "
        "identifiers and id numbers (scrubbed otherwise).",
    ),
    llm: ModelRun,
) -> None:
    """Build a personalized-empathy dataset from user histories (resumable)."""
    rules = FilterRules.load(filter_rules) if filter_rules else None
    if show_filter_rules:
        out.print_json((rules or FilterRules()).model_dump_json())
        raise typer.Exit()
    if out_dir is None:
        raise fail("--out is required")
    rerun = Rerun(out_dir, config_file)
    source = rerun.value(source, "source", "--source")
    if source is None:
        raise fail("--source is required (the folder holds no earlier build to take it from)")
    model = rerun.spec(model, "model", "--model", "local")
    specs = _stage_specs(model_for)
    for stage in LLM_STAGES:
        if not model_for and (spec := rerun.spec(None, stage, f"--model-for {stage}", None)):
            specs[stage] = spec
    seed = rerun.value(seed, "seed", "--seed", 0)
    imports = {
        k: v
        for k, v in {
            "skip_invalid": skip_invalid or None,
            "error_tags": error_tags,
            "no_scrub": no_scrub or None,
        }.items()
        if v is not None
    }
    config = _config(rerun.base_config(), fields, gates, rules, imports, out_dir)
    rerun.say(out_dir)
    report = run(
        _build(
            source,
            out_dir,
            model,
            specs,
            llm,
            config=config,
            stages=_csv(stages),
            redo=redo or (),
            limit=limit,
            seed=seed,
        )
    )
    _print_report(report)
    if skip_invalid and (out_dir / "input.rejects.jsonl").exists():
        say(f"malformed input lines written to {out_dir / 'input.rejects.jsonl'}", style="yellow")
    say(f"output: {out_dir}  (manifest: {report.paths.get('manifest')})")
    if report.accepted == 0 and "export" in report.stages:
        raise fail(_nothing_exported(report))


def _nothing_exported(report: BuildReport) -> str:
    """Why a build that ran its export wrote no example, and what would fix it."""
    if report.users == 0:
        return "no example was exported: the source holds no user history; check --source"
    if report.rejected:
        return (
            "no example was exported: every user or query was rejected ("
            + _counts(report.rejection_reasons)
            + "); change the settings that rejected them (--gates, --filter-rules, --config) "
            "and run again with --redo rejected"
        )
    return (
        "no example was exported: no query reached the export; "
        "run again without --stages or --limit"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _print_report(report: BuildReport) -> None:
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
        show("rejections: " + _counts(report.rejection_reasons))
    if report.languages:
        show("query languages: " + _counts(report.languages))
    if report.user_languages:
        show("user languages: " + _counts(report.user_languages))
    if report.draws.get("queries"):
        show(_draws_line(report.draws))
    trimmed = {k: c.trimmed for k, c in report.stages.items() if c.trimmed}
    if trimmed:
        say(
            "answers over a length limit after being asked again, trimmed at a sentence end "
            "(flagged in meta.trimmed): " + _counts(trimmed),
            style="yellow",
        )
    if report.scrubbed:
        show("personal data replaced at import: " + _counts(report.scrubbed))
    if report.import_warnings:
        say(
            f"{report.import_warnings} input problems were tolerated "
            "(see meta.import_warnings in users.jsonl)",
            style="yellow",
        )


def _draws_line(draws: dict[str, Any]) -> str:
    """The inspector's rejection rate and the redraw rate, in one line."""

    def pct(x: Any) -> str:
        return "-" if x is None else f"{x:.0%}"

    return (
        f"inspection: {draws['rejected_verdicts']} of {draws['verdicts']} query texts "
        f"rejected ({pct(draws['rejection_rate'])}); {draws['redrawn']} of {draws['queries']} "
        f"queries redrawn ({pct(draws['redraw_rate'])}), {draws['mean_draws']} draws per query"
    )


def _print_estimate(estimate) -> None:
    parts = ", ".join(f"{stage} {s.calls}" for stage, s in estimate.stages.items() if s.calls)
    tokens = sum(s.prompt_tokens for s in estimate.stages.values())
    completion = sum(s.max_completion_tokens for s in estimate.stages.values())
    say(
        f"estimate: {estimate.users} users kept by the filter; at most "
        f"{estimate.calls} calls ({parts or 'none'}), about {tokens} prompt tokens, "
        f"at most {completion} completion tokens"
    )


@verb(llm=model_run(concurrency=param_default(augment_dataset, "concurrency")))
def augment(
    data: Path = data_option(
        "EmpatheticDialogues-like JSONL: conv_id, emotion, situation, utterance."
    ),
    model: str = model_option(),
    out_dir: Path = out_option(
        "Output folder (resumable).", kind="new folder", default=Path("augmented")
    ),
    limit: int | None = limit_option(),
    seed: int = seed_option(),
    skip_invalid: bool = skip_invalid_option(),
    *,
    llm: ModelRun,
) -> None:
    """PERM-style augmentation: a fuller scenario and a light persona per row."""

    async def go():
        async with load_chat_model(model, llm.options()) as chat:
            return await augment_dataset(
                data,
                out_dir,
                chat,
                limit=limit,
                seed=seed,
                concurrency=llm.concurrency,
                skip_invalid=skip_invalid,
            )

    report = run(go())
    show(
        f"{report.rows} rows -> {report.accepted} examples, {report.rejected} rejected"
        + (f" ({json.dumps(report.rejection_reasons)})" if report.rejection_reasons else "")
    )
    say(f"output: {out_dir}")


def stats(
    build_dir: Path = typer.Argument(
        ..., help="A build folder (or an examples.jsonl).", callback=path_check("path")
    ),
    plot: Path | None = path_option("new file", "Write a PNG figure here.", "--plot", default=None),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Big Five levels, query categories, stage acceptance and rejection reasons."""
    from attunement.building.stats import compute_stats, plot_stats

    s = compute_stats(build_dir)
    if as_json:
        out.print_json(s.model_dump_json())
    else:
        _print_stats(s)
    if plot is not None:
        say(f"figure: {plot_stats(s, plot)}")


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    t = Table(title=title)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(str(x) for x in row))
    out.print(t)


def _print_stats(s) -> None:
    from attunement.records import BIG_FIVE_TRAITS

    levels = ("low", "medium", "high")
    share = "-" if s.all_medium_share is None else f"{s.all_medium_share:.0%}"
    _table(
        f"Big Five levels of {s.users} users ({s.all_medium_users} all-medium, {share})",
        ("trait", *levels),
        [(t, *(s.big_five.get(t, {}).get(lvl, 0) for lvl in levels)) for t in BIG_FIVE_TRAITS],
    )
    _table(f"{s.examples} queries by category", ("category", "queries"), list(s.categories.items()))
    if s.languages:
        langs = sorted(
            set(s.languages) | set(s.user_languages), key=lambda k: -s.languages.get(k, 0)
        )
        _table(
            "languages",
            ("language", "queries written in it", "queries of users who write it"),
            [(k, s.languages.get(k, 0), s.user_languages.get(k, 0)) for k in langs],
        )
    if s.stages:
        _table(
            "stages",
            ("stage", "done", "ok", "rejected", "acceptance"),
            [
                (
                    n,
                    r.done,
                    r.ok,
                    r.rejected,
                    "-" if r.acceptance is None else f"{r.acceptance:.0%}",
                )
                for n, r in s.stages.items()
            ],
        )
    if s.rejection_reasons:
        _table("rejection reasons", ("reason", "count"), list(s.rejection_reasons.items()))
    if s.draws.get("queries"):
        show(_draws_line(s.draws))
    if s.stages_from == "stage files":
        say("no manifest.json: stage figures count every record of the stage files", style="yellow")


@verb(renamed={"--k": "--clusters"})
def split(
    data: Path = data_option("examples.jsonl to split."),
    mode: Literal["random", "ood"] = typer.Option(
        "random", "--mode", help="random (by user) or ood (k-modes on Big Five)."
    ),
    out_dir: Path = out_option("Folder for train/test.", kind="new folder", default=Path("split")),
    ratio: float = typer.Option(
        0.9, "--ratio", help="Train share of users, between 0 and 1 (random)."
    ),
    clusters: int = typer.Option(4, "--clusters", min=2, help="Clusters of users (ood)."),
    holdout: str = typer.Option(
        "0",
        "--holdout",
        help="Cluster held out as test (ood): a number (0 = largest), smallest or largest. "
        "It sets the test size: 0 often holds a third of the users at --clusters 4; "
        "smallest tests the rarest profile on few users.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the split (and the cluster table) without writing files."
    ),
    seed: int = seed_option("Seed of the shuffle (random) or of k-modes (ood)."),
) -> None:
    """Split examples by user: random 9:1, or hold out one Big Five cluster (OOD)."""
    from attunement.jsonl import read_jsonl
    from attunement.records import Example
    from attunement.splits import split_ood, split_random, write_split

    examples = read_jsonl(data, Example)
    if mode == "random":
        result = split_random(examples, ratio=ratio, seed=seed)
    else:
        which = int(holdout) if holdout.isdigit() else holdout
        result = split_ood(examples, k=clusters, seed=seed, holdout_cluster=which)
    if result.clusters:
        _print_clusters(result, clusters, seed)
    show(
        f"train: {result.manifest['train_users']} users / {len(result.train)} examples; "
        f"test: {result.manifest['test_users']} users / {len(result.test)} examples"
    )
    if dry_run:
        say("dry run: nothing written")
        return
    paths = write_split(result, out_dir, source=data)
    say(f"written: {paths['train']}, {paths['test']}, {paths['manifest']}")


def _print_clusters(result, clusters: int, seed: int) -> None:
    total = sum(c.users for c in result.clusters)
    t = Table(title=f"k-modes clusters of users on Big Five (k={clusters}, seed={seed})")
    for col in ("cluster", "users", "share"):
        t.add_column(col, justify="right")
    for col in ("O", "C", "E", "A", "N", ""):
        t.add_column(col)
    for c in result.clusters:
        t.add_row(
            str(c.index),
            str(c.users),
            f"{c.users / total:.0%}",
            *c.profile,
            "held out" if c.index == result.holdout_cluster else "",
        )
    out.print(t)
    held = next(c for c in result.clusters if c.index == result.holdout_cluster)
    smallest = min(result.clusters, key=lambda c: (c.users, -c.index))
    rank = "the largest" if held.index == 0 else "the smallest" if held is smallest else "one"
    show(
        f"held out: cluster {held.index} ({rank} of {len(result.clusters)}), "
        f"{held.users} of {total} users ({held.users / total:.0%}) as the test set; "
        f"the smallest cluster holds {smallest.users} ({smallest.users / total:.0%})"
    )

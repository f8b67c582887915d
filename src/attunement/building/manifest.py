"""The manifest of a build folder: how the current files were made, and every run.

``OUT/manifest.json`` holds the settings of the last run (source, models,
seed, limit, the whole :class:`~attunement.building.config.BuildConfig`,
prompt versions, privacy), its report, and ``runs``: one short entry per run
the folder has seen (when, which models, which redo, what it added), oldest
first. A redo only ever appends records, so the history says how the dataset
came to be: how many runs, how many redraws, under which models.

:func:`previous_settings` reads the last run's settings back, so that a rerun
of the same folder without options repeats them instead of starting from the
defaults (``attune build --out OUT`` says so when it does).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attunement.building.config import STAGE_PROMPTS, STAGES, BuildConfig
from attunement.building.privacy import SCRUB_KINDS
from attunement.building.report import BuildReport
from attunement.jsonl import write_manifest
from attunement.prompts import load_prompt
from attunement.records import UserHistory

MANIFEST = "manifest.json"


def read_manifest(out_dir: Path) -> dict[str, Any] | None:
    """The folder's manifest, or None when there is none (or it is unreadable)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) and doc.get("kind") == "attunement.build" else None


def previous_settings(out_dir: Path) -> dict[str, Any] | None:
    """What the folder's last run was run with: ``source`` (when it was a
    ``KIND:PATH``), ``specs`` (the model specs as given: ``model`` and one per
    stage given its own), ``seed`` and ``config`` (a BuildConfig); None when
    the folder has no build manifest."""
    doc = read_manifest(out_dir)
    if doc is None or "config" not in doc:
        return None
    source = doc.get("source")
    return {
        "source": source if isinstance(source, str) and not source.startswith("<") else None,
        "specs": dict(doc.get("specs") or {}),
        "seed": doc.get("seed", 0),
        "config": BuildConfig.model_validate(doc["config"]),
    }


def _run_entry(report: BuildReport, **settings: Any) -> dict[str, Any]:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **settings,
        "accepted": report.accepted,
        "rejected": report.rejected,
        "calls": report.usage.calls,
        "new": {stage: c.new for stage, c in report.stages.items() if c.new},
        "redone": {stage: c.redone for stage, c in report.stages.items() if c.redone},
        "draws": report.draws,
        "seconds": report.seconds,
    }


def write_build_manifest(
    out_dir: Path,
    report: BuildReport,
    config: BuildConfig,
    *,
    source: str,
    model: str,
    stage_models: dict[str, str],
    selected: set[str],
    redo: list[str],
    limit: int | None,
    seed: int,
    concurrency: int,
    specs: dict[str, str],
) -> Path:
    """Write ``OUT/manifest.json`` for this run, keeping the runs before it."""
    runs = list((read_manifest(out_dir) or {}).get("runs", []))
    stages = sorted(selected, key=STAGES.index)
    runs.append(
        _run_entry(
            report,
            model=model,
            stage_models=stage_models,
            stages=stages,
            redo=redo,
            limit=limit,
            seed=seed,
        )
    )
    return write_manifest(
        Path(out_dir) / MANIFEST,
        kind="attunement.build",
        source=source,
        limit=limit,
        seed=seed,
        model=model,
        stage_models=stage_models,
        specs=specs,
        stages=stages,
        redo=redo,
        concurrency=concurrency,
        prompts={
            stage: {"name": name, "version": load_prompt(name).version}
            for stage, name in STAGE_PROMPTS.items()
        },
        filter_rules_version=config.filter_rules.version,
        categories=[c.value for c in config.categories],
        privacy={
            "scrub": config.import_options.scrub.model_dump(),
            "scrubbed": report.scrubbed,
            "export_evidence": config.export_evidence,
            "keep_dialogues": config.keep_dialogues,
        },
        config=json.loads(config.model_dump_json()),
        report=json.loads(report.model_dump_json()),
        runs=runs,
    )


def write_scrub_report(path: Path, users: Sequence[UserHistory], config: BuildConfig) -> Path:
    """``OUT/scrub_report.json``: what the import scrubbed, per kind (every kind,
    zeros included, so a missing kind is visible) and per user."""
    options = config.import_options.scrub
    per_user = {
        u.user_id: dict(u.meta.get("scrubbed", {})) for u in users if u.meta.get("scrubbed")
    }
    total: Counter[str] = Counter()
    for counts in per_user.values():
        total.update(counts)
    doc = {
        "enabled": options.enabled,
        "kinds": {k: total.get(k, 0) if k in options.kinds else None for k in SCRUB_KINDS},
        "region": options.region or "from each user's language",
        "users": len(users),
        "users_scrubbed": len(per_user),
        "per_user": per_user,
    }
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

"""The run folder of a training job, and the callbacks that fill it.

::

    OUT/
      config.json        the settings, whole (``--config OUT/config.json`` repeats the run)
      manifest.json      versions, model source, data hash, reward manifest, status, counts
      metrics.jsonl      one line per optimiser step: everything TRL logged, same keys each step
      metrics.png        the reward and each dimension against the step (GRPO)
      breakdowns.jsonl   every reply the policy wrote and its reward breakdown (GRPO)
      checkpoints/       TRL checkpoints (checkpoint-N): what a re-run resumes from
      final/             the trained policy, merged: ``hf:OUT/final``
      adapter/           the LoRA adapter alone (``--lora``)

The manifest records the prompt the policy was trained on (``policy_prompt``:
memory mode, persona and situation switches, seed, top-k), so evaluating the
policy can show it the same prompt: :func:`run_prompt` finds the run of a
checkpoint folder (``RUN``, ``RUN/final`` or ``RUN/checkpoints/checkpoint-N``)
and reads it back.

Running the same command again resumes from the last checkpoint; the
metrics and breakdowns written after that checkpoint are dropped first, so
each step appears once. Settings that change what is learnt must match the
saved ``config.json`` (a new ``--out`` is needed otherwise); the number of
steps, checkpointing and the judge's runtime options may change.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attunement.jsonl import read_manifest
from attunement.policy import PROMPT_MANIFEST_KEY, PromptContext
from attunement.training.config import changed_fields

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def plot(self) -> Path:
        return self.root / "metrics.png"

    @property
    def monitor_plot(self) -> Path:
        return self.root / "monitor.png"

    @property
    def breakdowns(self) -> Path:
        return self.root / "breakdowns.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def adapter(self) -> Path:
        return self.root / "adapter"

    def last_checkpoint(self) -> Path | None:
        """The checkpoint with the highest step that holds a trainer state."""
        if not self.checkpoints.is_dir():
            return None
        found = [
            (int(m.group(1)), p)
            for p in self.checkpoints.iterdir()
            if (m := _CHECKPOINT.match(p.name)) and (p / "trainer_state.json").exists()
        ]
        return max(found)[1] if found else None

    def prepare(self, settings: dict[str, Any]) -> Path | None:
        """Check a resumed run's settings, drop records past its checkpoint, save the
        config; return the checkpoint to resume from (None: a fresh start)."""
        if self.config.exists():
            saved = json.loads(self.config.read_text(encoding="utf-8"))
            changed = changed_fields(saved, settings)
            if changed:
                detail = "; ".join(
                    f"{k}: {saved.get(k)!r} -> {settings.get(k)!r}" for k in changed[:5]
                )
                raise ValueError(
                    f"{self.root} holds a run made with other settings ({detail}); "
                    "resume with the same settings or choose a new --out"
                )
        checkpoint = self.last_checkpoint()
        step = int(_CHECKPOINT.match(checkpoint.name).group(1)) if checkpoint else 0
        keep_rows(self.metrics, lambda row: row.get("step", 0) <= step)
        keep_rows(self.breakdowns, lambda row: row.get("step", 0) < step)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(json.dumps(settings, indent=2, default=str) + "\n", encoding="utf-8")
        return checkpoint


@dataclass(frozen=True)
class RunPrompt:
    """The run a policy checkpoint belongs to and the prompt it was trained on.

    ``policy`` is the checkpoint folder to load (``RUN/final`` when the run
    folder itself was named); ``context`` is None when the run records no
    prompt settings, ``missing`` then says why.
    """

    run: Path
    policy: Path
    context: PromptContext | None
    missing: str | None = None


def _training_manifest(folder: Path) -> dict[str, Any] | None:
    doc = read_manifest(RunFolder(folder).manifest)
    command = doc.get("command") if doc is not None else None
    return doc if isinstance(command, str) and command.startswith("train ") else None


def _older_grpo_prompt(run: RunFolder) -> PromptContext | None:
    """A GRPO run from before the manifest recorded its prompt: its config.json is whole."""
    try:
        doc = json.loads(run.config.read_text(encoding="utf-8"))
        fields = {"memory_mode": doc["memory"], "persona": doc["persona"]}
        return PromptContext(**fields, situation=doc["situation"], seed=doc["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_prompt(folder: str | Path) -> RunPrompt | None:
    """The run of a checkpoint folder (the folder itself, its parent, or the run of a
    ``checkpoints/checkpoint-N``) and its recorded prompt; None when the folder is
    not a training run's."""
    folder = Path(folder)
    for root in (folder, folder.parent, folder.parent.parent):
        manifest = _training_manifest(root)
        if manifest is None:
            continue
        run = RunFolder(root)
        policy = run.final if root == folder else folder
        recorded = manifest.get(PROMPT_MANIFEST_KEY)
        if isinstance(recorded, dict):
            return RunPrompt(root, policy, PromptContext.model_validate(recorded))
        if PROMPT_MANIFEST_KEY not in manifest and manifest["command"] == "train grpo":
            older = _older_grpo_prompt(run)
            if older is not None:
                return RunPrompt(root, policy, older)
        why = manifest.get(f"{PROMPT_MANIFEST_KEY}_missing") or "its manifest records none"
        return RunPrompt(root, policy, None, why)
    return None


def keep_rows(path: Path, keep) -> int:
    """Rewrite a JSONL file with only the rows ``keep`` accepts (a torn line is dropped)."""
    if not path.exists():
        return 0
    kept = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if keep(row):
                kept.append(line if line.endswith("\n") else line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    tmp.replace(path)
    return len(kept)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- plot


#: a panel: one metric key, or several drawn as lines with a legend, and its title
Panel = tuple[str | tuple[str, ...], str]


def _points(rows: list[dict[str, Any]], key: str) -> list[tuple[Any, float]]:
    return [
        (r["step"], r[key])
        for r in rows
        if isinstance(r.get(key), int | float) and math.isfinite(r[key])
    ]


def plot_metrics(
    rows: list[dict[str, Any]], png: Path, *, panels: list[Panel], title: str
) -> Path | None:
    """One panel per ``(metric key, label)`` against the step (a tuple of keys: one line
    each, with a legend); None if there is nothing to draw. Needs matplotlib (the
    ``plots`` or ``train`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    def keys(key: str | tuple[str, ...]) -> tuple[str, ...]:
        return (key,) if isinstance(key, str) else key

    panels = [(k, label) for k, label in panels if any(c in r for r in rows for c in keys(k))]
    if not rows or not panels:
        return None
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.0 * nrows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels, strict=False):
        for one in keys(key):
            points = _points(rows, one)
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="o" if len(points) < 30 else None,
                    linewidth=1.4,
                    label=one.rsplit("/", 1)[-1],
                )
        if not isinstance(key, str):
            ax.legend(fontsize=7)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    tmp = png.with_name(png.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(png)
    return png


# --------------------------------------------------------------------------- callbacks


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "-"


def progress_line(
    row: dict[str, Any],
    *,
    max_steps: int,
    started: float,
    start_step: int,
    fields: list[tuple[str, str, int]],
) -> str:
    """``step 3/10 | reward 0.612 | resonation 3.10 | ... | 12.3 s/step | eta 1m26s``.

    >>> progress_line({"step": 2, "reward": 0.5, "rewards/perm/resonation": 3.2}, max_steps=4,
    ...               started=0.0, start_step=0, fields=[("reward", "reward", 3),
    ...               ("rewards/perm/resonation", "resonation", 2)]).split(" | ")[:3]
    ['step 2/4', 'reward 0.500', 'resonation 3.20']
    """
    step = row.get("step", 0)
    parts = [f"step {step}/{max_steps}" if max_steps > 0 else f"step {step}"]
    parts += [
        f"{label} {_fmt(row.get(key), digits)}" for key, label, digits in fields if key in row
    ]
    done = step - start_step
    if done > 0 and started:
        per = (time.monotonic() - started) / done
        parts.append(f"{per:.1f} s/step")
        if max_steps > 0:
            left = int(per * max(0, max_steps - step))
            parts.append(f"eta {left // 60}m{left % 60:02d}s")
    return " | ".join(parts)


def make_recorder(
    run: RunFolder,
    *,
    panels: list[Panel],
    title: str,
    progress_fields: list[tuple[str, str, int]],
    print_progress: bool,
    plot: bool,
    row_extra: Callable[[], dict[str, Any]] | None = None,
) -> Any:
    """A ``TrainerCallback`` that appends each step's logs to ``metrics.jsonl`` (with what
    ``row_extra`` adds, e.g. the monitor's warning lines), prints a progress line per
    step when asked (no terminal: TRL's bar is off), and draws the plot at each
    checkpoint and at the end."""
    from transformers import TrainerCallback

    class RunRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.summary: dict[str, Any] = {}
            self.started = 0.0
            self.start_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            self.start_step = state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            if "train_runtime" in logs:  # the end-of-training summary, not a step
                self.summary = dict(logs)
                return
            row = {"step": state.global_step, **logs, **(row_extra() if row_extra else {})}
            with run.metrics.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row, default=_jsonable) + "\n")
            if print_progress:
                print(
                    progress_line(
                        row,
                        max_steps=state.max_steps,
                        started=self.started,
                        start_step=self.start_step,
                        fields=progress_fields,
                    ),
                    file=sys.stderr,
                    flush=True,
                )

        def on_save(self, args, state, control, **kwargs):
            if plot and state.is_world_process_zero:
                draw(run, panels=panels, title=title)

        def on_train_end(self, args, state, control, **kwargs):
            if plot and state.is_world_process_zero:
                draw(run, panels=panels, title=title)

    return RunRecorder()


def _jsonable(value: Any) -> Any:
    return float(value) if hasattr(value, "__float__") else str(value)


def draw(
    run: RunFolder, *, panels: list[Panel], title: str, png: Path | None = None
) -> Path | None:
    """Draw ``panels`` of the run's metrics into ``png`` (default ``metrics.png``)."""
    try:
        return plot_metrics(read_metrics(run.metrics), png or run.plot, panels=panels, title=title)
    except ImportError:
        print(
            "note: matplotlib is not installed, so metrics.png was not drawn "
            "(pip install 'attunement[plots]')",
            file=sys.stderr,
        )
        return None

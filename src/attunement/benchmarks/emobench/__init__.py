"""EmoBench (Sabour et al., 2024): EU and EA multiple-choice accuracy (``attune emobench``).

- :mod:`~attunement.benchmarks.emobench.data`: the published items, read and checked;
- :mod:`~attunement.benchmarks.emobench.prompts`: what the model is asked and how
  its answer is read (the one place of this project's EmoBench prompts);
- :mod:`~attunement.benchmarks.emobench.official`: the official EmoBench prompt
  files, read from the user's folder, asked and read as upstream does;
- :mod:`~attunement.benchmarks.emobench.scoring`: grading and accuracies;
- :mod:`~attunement.benchmarks.emobench.run`: asking, resuming;
- :mod:`~attunement.benchmarks.emobench.report`: results.md and report.html.
"""

from attunement.benchmarks.emobench.data import EAItem, EUItem, read_ea, read_eu, read_items
from attunement.benchmarks.emobench.official import OfficialPrompts, load_official_prompts
from attunement.benchmarks.emobench.prompts import AnswerFormat
from attunement.benchmarks.emobench.report import write_emobench_report
from attunement.benchmarks.emobench.run import EmoBenchSettings, run_emobench
from attunement.benchmarks.emobench.scoring import EmoBenchAnswer, EmoBenchResults

__all__ = [
    "AnswerFormat",
    "EAItem",
    "EUItem",
    "EmoBenchAnswer",
    "EmoBenchResults",
    "EmoBenchSettings",
    "OfficialPrompts",
    "load_official_prompts",
    "read_ea",
    "read_eu",
    "read_items",
    "run_emobench",
    "write_emobench_report",
]

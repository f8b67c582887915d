"""EmoBench (Sabour et al., 2024): EU and EA multiple-choice accuracy (``attune emobench``).

:mod:`~attunement.benchmarks.emobench.data` reads the published items;
:mod:`~attunement.benchmarks.emobench.run` asks, grades and reports.
"""

from attunement.benchmarks.emobench.data import EAItem, EUItem, read_ea, read_eu
from attunement.benchmarks.emobench.run import (
    AnswerFormat,
    EmoBenchAnswer,
    EmoBenchSettings,
    read_items,
    run_emobench,
    write_emobench_report,
)

__all__ = [
    "AnswerFormat",
    "EAItem",
    "EUItem",
    "EmoBenchAnswer",
    "EmoBenchSettings",
    "read_ea",
    "read_eu",
    "read_items",
    "run_emobench",
    "write_emobench_report",
]

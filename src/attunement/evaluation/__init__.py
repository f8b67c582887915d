"""Evaluation: PersonaEmp's tables, and the pieces every report shares.

``attune evaluate`` (PersonaEmp's tables from reply sets and judges):

- :mod:`~attunement.evaluation.evaluate`: settings, inputs and the run's steps;
- :mod:`~attunement.evaluation.runs`: the data model (results rows, systems, the
  finished run), below both the code that computes it and the code that writes it;
- :mod:`~attunement.evaluation.tables`: the numbers, computed from score files;
- :mod:`~attunement.evaluation.views`: each table's rows, for Markdown and HTML;
- :mod:`~attunement.evaluation.report`: results.json, results.md, plots, report.html.

Shared by every report (EmoBench, EQ-Bench 3 and the judge card too):
:mod:`~attunement.evaluation.stats` (every interval and test),
:mod:`~attunement.evaluation.reporting` (numbers as text, Markdown tables, the
report folder), :mod:`~attunement.evaluation.html` (one self-contained page
style) and :mod:`~attunement.evaluation.plots` (PNG plots). The benchmarks live
in :mod:`attunement.benchmarks`, the judge card in :mod:`attunement.judge_card`.
Formulas and the mapping to the papers: docs/evaluation.md.

>>> from attunement.evaluation import EvalInputs, EvalSettings, run_evaluation
"""

from __future__ import annotations

import importlib
from typing import Any

#: the face's names and the module each comes from (imported on first use)
_FROM = {
    "DialogueSet": "dialogues",
    "EvalInputs": "evaluate",
    "EvalRun": "runs",
    "EvalSettings": "evaluate",
    "Results": "runs",
    "Row": "runs",
    "read_dialogue_set": "dialogues",
    "run_evaluation": "evaluate",
}
__all__ = [
    "DialogueSet",
    "EvalInputs",
    "EvalRun",
    "EvalSettings",
    "Results",
    "Row",
    "read_dialogue_set",
    "run_evaluation",
]


def __getattr__(name: str) -> Any:
    # lazily, so importing the light shared modules (stats, html) loads no judge code
    if name in _FROM:
        return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

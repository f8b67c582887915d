"""Evaluation: fixed-criteria reports, statistics, EmoBench, EQ-Bench 3, the judge card.

Shared pieces live here so every report reads the same way:
:mod:`attunement.evaluation.stats` (bootstrap and paired intervals, tests),
:mod:`attunement.evaluation.html` (one self-contained page style) and
:mod:`attunement.benchmarks.emobench.data` (EmoBench items).

The runners: :mod:`attunement.evaluation.evaluate` (``attune evaluate``: PersonaEmp's
tables from reply sets and judges, computed in :mod:`~attunement.evaluation.tables`
and written by :mod:`~attunement.evaluation.report`),
:mod:`attunement.benchmarks.emobench.run` and :mod:`attunement.benchmarks.eqbench3.run`.
Formulas and the mapping to the papers: docs/evaluation.md.

>>> from attunement.evaluation import EvalInputs, EvalSettings, run_evaluation
"""

from __future__ import annotations

from typing import Any

__all__ = ["EvalInputs", "EvalRun", "EvalSettings", "run_evaluation"]


def __getattr__(name: str) -> Any:
    # lazily, so importing the light shared modules (stats, html) loads no judge code
    if name in __all__:
        from attunement.evaluation import evaluate

        return getattr(evaluate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Evaluation: fixed-criteria reports, statistics, EmoBench, EQ-Bench 3, the judge card.

Shared pieces live here so every report reads the same way:
:mod:`attunement.evaluation.stats` (bootstrap and paired intervals, tests),
:mod:`attunement.evaluation.html` (one self-contained page style) and
:mod:`attunement.evaluation.emobench_data` (EmoBench items).
"""

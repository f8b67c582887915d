"""The docstring examples of the evaluation modules hold."""

from __future__ import annotations

import doctest

import pytest

from attunement.benchmarks.emobench import prompts as emobench_prompts
from attunement.benchmarks.emobench import scoring as emobench_scoring
from attunement.evaluation import evaluate, html, reporting, runs, stats, tables


@pytest.mark.parametrize(
    "module",
    [emobench_prompts, emobench_scoring, evaluate, html, reporting, runs, stats, tables],
    ids=lambda m: m.__name__,
)
def test_docstring_examples_hold(module):
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0, module.__name__

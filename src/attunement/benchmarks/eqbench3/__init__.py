"""EQ-Bench 3 (Paech, MIT): the rubric pass over its scripted role-plays (``attune eqbench3``).

- :mod:`~attunement.benchmarks.eqbench3.data`: the published files, read and checked;
- :mod:`~attunement.benchmarks.eqbench3.records`: the settings, and the transcripts
  and verdicts a run appends;
- :mod:`~attunement.benchmarks.eqbench3.rubric`: the judge's prompt, reading its
  answer, upstream's rubric score;
- :mod:`~attunement.benchmarks.eqbench3.run`: playing the scenarios and judging them;
- :mod:`~attunement.benchmarks.eqbench3.baseline`: which judge a score is comparable
  under, and what a judge scoring at random gets;
- :mod:`~attunement.benchmarks.eqbench3.report`: results.md and report.html.
"""

from attunement.benchmarks.eqbench3.data import EQBenchData, load_eqbench_data
from attunement.benchmarks.eqbench3.records import (
    EQBenchSettings,
    JudgeFormat,
    RubricVerdict,
    Transcript,
    TranscriptStyle,
)
from attunement.benchmarks.eqbench3.report import (
    random_judge_text,
    score_notes,
    write_eqbench_report,
)
from attunement.benchmarks.eqbench3.rubric import EQBenchResults
from attunement.benchmarks.eqbench3.run import PLAY_FAILED, run_eqbench3

__all__ = [
    "PLAY_FAILED",
    "EQBenchData",
    "EQBenchResults",
    "EQBenchSettings",
    "JudgeFormat",
    "RubricVerdict",
    "Transcript",
    "TranscriptStyle",
    "load_eqbench_data",
    "random_judge_text",
    "run_eqbench3",
    "score_notes",
    "write_eqbench_report",
]

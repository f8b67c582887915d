"""EQ-Bench 3 (Paech, MIT): the rubric pass over its scripted role-plays (``attune eqbench3``)."""

from attunement.benchmarks.eqbench3.run import (
    EQBenchSettings,
    JudgeFormat,
    TranscriptStyle,
    load_eqbench_data,
    run_eqbench3,
    write_eqbench_report,
)

__all__ = [
    "EQBenchSettings",
    "JudgeFormat",
    "TranscriptStyle",
    "load_eqbench_data",
    "run_eqbench3",
    "write_eqbench_report",
]

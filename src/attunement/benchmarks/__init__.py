"""Published benchmarks run the way their authors run them, next to their numbers.

- :mod:`attunement.benchmarks.emobench`: EmoBench's emotional understanding (EU)
  and emotional application (EA) multiple-choice tasks (``attune emobench``);
- :mod:`attunement.benchmarks.eqbench3`: EQ-Bench 3's rubric pass over its scripted
  role-plays (``attune eqbench3``).

Each reads the benchmark's own files from a path the user gives (nothing is
bundled), writes resumable JSONL and a report, and states what its number is
comparable with. A new benchmark is a package here with the same shape: data
(reading the published files), what the model or judge is asked and how the
answer is scored (EmoBench's ``prompts`` and ``scoring``, EQ-Bench 3's
``rubric``), run (asking the model), report; its package ``__init__`` is its
face. Intervals come from :mod:`attunement.evaluation.stats`, and a report is
written with :mod:`attunement.evaluation.reporting`, ``html`` and ``plots``.
"""

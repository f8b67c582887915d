"""Benchmarks (``attune bench ...``) and the simulated OpenAI-compatible server
they and the tests run against.

Library code only: each benchmark returns its figures and the checks they
meet; the options and the printing live in :mod:`attunement.cli.bench`.

- :mod:`~attunement.perf.simserver`: the simulated judge server (latency model,
  faults, servers that support less of the API);
- :mod:`~attunement.perf.judge`: :class:`RealisticJudge`, its responder that
  answers every judge prompt in the prompt's own format, recognising the prompt
  by name (:mod:`~attunement.perf.prompt_names`);
- :mod:`~attunement.perf.synthetic`: a deterministic batch of examples and replies;
- :mod:`~attunement.perf.processes`: the servers in their own processes;
- :mod:`~attunement.perf.reward_bench`, :mod:`~attunement.perf.serve_bench`,
  :mod:`~attunement.perf.train_bench`, :mod:`~attunement.perf.llm_bench`: the
  benchmarks.

Nothing outside :mod:`attunement.cli` imports this package (tests aside).
"""

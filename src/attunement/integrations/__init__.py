"""attunement's rewards inside other trainers: verl and OpenRLHF (cluster training).

- :mod:`attunement.integrations.verl`: ``compute_score`` (sync and async, one
  sample per call, or a chunk per call), run in verl's reward workers;
- :mod:`attunement.integrations.verl_data`: the parquet verl trains on (the
  example travels in each row's ``extra_info``), written and read back;
- :mod:`attunement.integrations.server`: ``attune serve``, an HTTP reward server
  speaking OpenRLHF's remote reward protocol and a whole-group endpoint;
- :mod:`attunement.integrations.openrlhf`: the OpenRLHF side (prompt export and
  a ``reward_func`` file that calls the server with its token);
- :mod:`attunement.integrations.groups`: how per-sample calls are regrouped,
  bounded in time, and answered when the judge fails;
- :mod:`attunement.integrations.outcomes`: what each sample gets back, under
  keys named in one place.

Guide and verified upstream facts: docs/scale-out.md. Each submodule imports
its optional packages (pyarrow, starlette, uvicorn) only when used.
"""

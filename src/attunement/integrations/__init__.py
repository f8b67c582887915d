"""attunement's rewards inside other trainers: verl and OpenRLHF (cluster training).

- :mod:`attunement.integrations.verl`: ``compute_score`` (sync and async, one
  sample per call, or a chunk per call) and the parquet export verl trains on;
- :mod:`attunement.integrations.server.app`: ``attune serve``, an HTTP reward server
  speaking OpenRLHF's remote reward protocol and a whole-group endpoint;
- :mod:`attunement.integrations.openrlhf`: the OpenRLHF side (prompt export and
  a ``reward_func`` file that calls the server with its token);
- :mod:`attunement.integrations.groups`: how per-sample calls are regrouped,
  bounded in time, and answered when the judge fails.

Guide and verified upstream facts: docs/scale-out.md. Each submodule imports
its optional packages (pyarrow, starlette, uvicorn) only when used.
"""

"""SAGE ("Sentient Agent as a Judge", Tencent, MIT): talks with its 100 simulated users.

>>> from attunement.benchmarks.sage import load_sage, run_sage       # doctest: +SKIP
>>> result = await run_sage(load_sage(path), policy, simulator, "sage.jsonl")  # doctest: +SKIP

SAGE's prompts are read from its scripts at the path given; see docs/multi-turn.md.
"""

from attunement.benchmarks.sage.data import (
    SageData,
    SageDataError,
    SageProfile,
    SageReference,
    load_sage,
    read_profiles,
    read_reference,
)
from attunement.benchmarks.sage.report import SAGE_STEPS, write_sage_report
from attunement.benchmarks.sage.run import (
    SAGE_PROFILES,
    SageResult,
    SageSettings,
    comparability_note,
    run_sage,
    sage_manifest,
    sage_random_policy,
    sage_user,
    sage_users,
)
from attunement.benchmarks.sage.simulator import SageSimulator, fill

__all__ = [
    "SAGE_PROFILES",
    "SAGE_STEPS",
    "SageData",
    "SageDataError",
    "SageProfile",
    "SageReference",
    "SageResult",
    "SageSettings",
    "SageSimulator",
    "comparability_note",
    "fill",
    "load_sage",
    "read_profiles",
    "read_reference",
    "run_sage",
    "sage_manifest",
    "sage_random_policy",
    "sage_user",
    "sage_users",
    "write_sage_report",
]

"""Build a personalized-empathy dataset from long-term user histories.

The stages follow PersonaEmp (section 3 of the PereGRM paper): import user
histories, extract memories for plain chat logs, filter users by the depth of
their memories, infer a persona with a depth gate and Big Five levels, write
situations per query category, write one query per situation in the user's
voice, inspect each query, and export examples with TRL-style prompt rows.

>>> from attunement.building import build_dataset, BuildConfig
>>> report = await build_dataset("alpsbench-packets:sessions.jsonl", Path("out"), model)  # doctest: +SKIP
"""

from attunement.building.calls import StageRecord
from attunement.building.config import INSPECTION_CHECKS, STAGES, BuildConfig
from attunement.building.filters import FILTER_PRESETS, FilterDecision, FilterRules, filter_user
from attunement.building.importers import ImportOptions, load_users, parse_source
from attunement.building.llm_io import StageSettings
from attunement.building.pipeline import build_dataset
from attunement.building.privacy import ScrubOptions
from attunement.building.report import BuildEstimate, BuildReport, StageCount
from attunement.building.runner import EndpointError, StageFailedError
from attunement.building.store import BuildLockedError, StaleRecordsError, load_stage_records

__all__ = [
    "FILTER_PRESETS",
    "INSPECTION_CHECKS",
    "STAGES",
    "BuildConfig",
    "BuildEstimate",
    "BuildLockedError",
    "BuildReport",
    "EndpointError",
    "FilterDecision",
    "FilterRules",
    "ImportOptions",
    "ScrubOptions",
    "StageCount",
    "StageFailedError",
    "StageRecord",
    "StageSettings",
    "StaleRecordsError",
    "build_dataset",
    "filter_user",
    "load_stage_records",
    "load_users",
    "parse_source",
]

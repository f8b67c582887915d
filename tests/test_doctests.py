"""Every docstring example in the package runs, module by module.

Doctests are the small pure functions' specifications (aggregation, parsing,
settings checks); a module that cannot even be imported fails here too.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import attunement

MODULES = sorted(m.name for m in pkgutil.walk_packages(attunement.__path__, prefix="attunement."))
#: modules built on an optional trainer's classes: skipped where it is not installed
NEEDS = {"attunement.integrations.verl_agent": "verl"}


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name], reason=f"the {NEEDS[name]} extra is not installed")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"

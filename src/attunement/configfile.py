"""Settings files and ``FIELD=VALUE`` overrides, read the same way by every entry point.

A reward, a training run or a verl worker can be configured from a JSON or
TOML file of fields, then adjusted with ``FIELD=VALUE`` pairs (the CLI's
``--set``); both readers live here so the CLI and the library integrations
(verl's ``reward_config``) accept exactly the same files.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON (``.json``) or TOML (any other suffix) file holding one table of settings."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table of settings, got {type(data).__name__}")  # noqa: TRY004
    return data


def parse_assignments(items: list[str] | None) -> dict[str, Any]:
    """``["k=4", "use_bystander=false", "aggregation=softmin"]`` -> a dict.

    >>> parse_assignments(["k=4", "use_bystander=false", "aggregation=softmin"])
    {'k': 4, 'use_bystander': False, 'aggregation': 'softmin'}
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out

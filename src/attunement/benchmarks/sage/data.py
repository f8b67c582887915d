"""SAGE's published files, read as data from a folder the user gives.

SAGE ("Sentient Agent as a Judge", Tencent digitalhuman, MIT licence) ships
its 100 simulated users as ``profiles.jsonl`` and its simulator and driver as
Python scripts. Nothing of it is bundled or copied here: the profiles are read
as JSON, and the prompts are read out of the scripts with :mod:`ast` (the
scripts are parsed, never run):

- ``reference_simulator_response.py``: ``target_prompt`` (what the simulated
  user wants from a talk), ``emo_count`` (the level thresholds), the
  ``template`` of ``planning_reply`` (the inner analysis, ending in
  ``Change:``) and of ``player_reply`` (the next message, after
  ``Response:``), the role names of the history (``mapping``) and how an
  analysis is passed on to the reply step (the string pieces and analysis
  parts that ``player_reply`` joins into ``{{planning}}``);
- ``reference_npc_response.py``: ``role_system``, the tested model's system
  prompt;
- ``reference_test_npc.py``: the farewell words that end a talk and the turn
  cap.

The thresholds, start emotion and turn cap found there are checked against
:mod:`attunement.dialogue.emotion` (SAGE's rules as attunement applies them):
a copy of the scripts whose numbers differ is refused, naming the figure,
since its scores would not be SAGE's.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from attunement.dialogue import LEVEL_FLOORS, MAX_USER_TURNS, START_EMOTION, Level
from attunement.jsonl import read_jsonl
from attunement.records import Record

FILES = {
    "profiles": "profiles.jsonl",
    "simulator": "reference_simulator_response.py",
    "npc": "reference_npc_response.py",
    "driver": "reference_test_npc.py",
}

#: the analysis parts an assessment answer must hold, and the label of the change
CHANGE_LABEL = "Change"


class SageDataError(ValueError):
    """A SAGE file that is missing or does not hold what the benchmark reads."""


class SageProfile(Record):
    """One simulated user of SAGE, as published."""

    id: str = Field(min_length=1)
    player: str = Field(min_length=1)
    scene: str = Field(min_length=1)
    main_cha: str = ""
    cha_group: list[str] = Field(default_factory=list)
    task: str = Field(min_length=1)
    first_talk: str = Field(min_length=1)


#: one piece of the planning text: literal text, or the name of an analysis part
Piece = tuple[str, str]


@dataclass(frozen=True)
class SageReference:
    """Everything read from SAGE's scripts (see the module docstring)."""

    target: str
    analysis_template: str
    reply_template: str
    npc_system: str
    roles: dict[str, str]
    planning: tuple[Piece, ...]
    state_names: dict[Level, str]
    farewells: tuple[str, ...]
    analysis_labels: tuple[str, ...]
    reply_labels: tuple[str, ...]
    digests: dict[str, str]


def _tree(path: Path) -> ast.Module:
    if not path.is_file():
        raise SageDataError(f"{path}: no such file (expected SAGE's {path.name})")
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise SageDataError(f"{path}:{exc.lineno}: not Python ({exc.msg})") from None


def _function(tree: ast.Module, name: str, path: Path) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise SageDataError(f"{path}: no function {name}()")


def _assigned(scope: ast.AST, name: str, path: Path) -> ast.expr:
    """The value of the first ``name = ...`` in ``scope`` (nested blocks included)."""
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return node.value
    raise SageDataError(f"{path}: no assignment to {name!r}")


def _string(scope: ast.AST, name: str, path: Path) -> str:
    value = _assigned(scope, name, path)
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        raise SageDataError(f"{path}: {name!r} is not a string literal")
    return value.value


def _literal(scope: ast.AST, name: str, path: Path) -> object:
    try:
        return ast.literal_eval(_assigned(scope, name, path))
    except ValueError:
        raise SageDataError(f"{path}: {name!r} is not a literal") from None


def _planning_pieces(function: ast.FunctionDef, path: Path) -> tuple[Piece, ...]:
    """The pieces ``player_reply`` joins into ``{{planning}}`` after an analysis."""
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "replace"
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "{{planning}}"
            and isinstance(node.args[1], ast.BinOp)
        ):
            return tuple(_flatten(node.args[1], path))
    raise SageDataError(f"{path}: player_reply() never fills {{{{planning}}}} from an analysis")


def _flatten(node: ast.expr, path: Path) -> list[Piece]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _flatten(node.left, path) + _flatten(node.right, path)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [("text", node.value)]
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return [("part", str(node.slice.value))]
    raise SageDataError(f"{path}:{node.lineno}: unexpected piece in the planning text")


def _labels(template: str) -> tuple[str, ...]:
    """The answer's part labels, as the template's output format lists them."""
    return tuple(re.findall(r"^([A-Za-z]+):[ \t]*$", template, re.MULTILINE))


def _state_names(emo_count: object, path: Path) -> dict[Level, str]:
    if not isinstance(emo_count, dict) or not all(isinstance(k, str) for k in emo_count):
        raise SageDataError(f"{path}: emo_count is not a dict of level names")
    floors = {name[-1]: value for name, value in emo_count.items()}
    if floors != dict(LEVEL_FLOORS):
        raise SageDataError(
            f"{path}: emo_count {emo_count} differs from SAGE's published thresholds "
            f"{dict(LEVEL_FLOORS)}; scores made with it would not be SAGE's"
        )
    prefix = next(iter(emo_count))[:-1]
    return {level: prefix + level for level in ("S", "A", "B", "C", "F")}


def _driver(path: Path) -> tuple[str, ...]:
    """The farewell words the driver looks for and its turn cap."""
    farewells: list[str] = []
    caps: list[int] = []
    for node in ast.walk(_tree(path)):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1:
            continue
        left, right = node.left, node.comparators[0]
        if isinstance(node.ops[0], ast.In) and isinstance(left, ast.Constant):
            if isinstance(left.value, str) and left.value not in farewells:
                farewells.append(left.value)
        elif (
            isinstance(node.ops[0], ast.Gt)
            and isinstance(left, ast.Name)
            and left.id == "turns"
            and isinstance(right, ast.Constant)
        ):
            caps.append(int(right.value))
    if not farewells or not caps:
        raise SageDataError(f"{path}: no farewell words or no turn cap found")
    if set(caps) != {MAX_USER_TURNS}:
        raise SageDataError(f"{path}: turn cap {caps[0]} differs from SAGE's {MAX_USER_TURNS}")
    return tuple(farewells)


def _start_emotion(function: ast.FunctionDef, path: Path) -> None:
    for node in ast.walk(function):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "emo_point":
                    if not (isinstance(value, ast.Constant) and value.value == START_EMOTION):
                        raise SageDataError(
                            f"{path}: the start emotion differs from SAGE's {START_EMOTION}"
                        )
                    return
    raise SageDataError(f"{path}: player_init() sets no start emotion")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def read_reference(folder: str | Path) -> SageReference:
    """Read SAGE's prompts, thresholds and driver rules from its scripts in ``folder``."""
    folder = Path(folder)
    sim_path, npc_path, driver_path = (folder / FILES[k] for k in ("simulator", "npc", "driver"))
    sim = _tree(sim_path)
    planning_fn = _function(sim, "planning_reply", sim_path)
    reply_fn = _function(sim, "player_reply", sim_path)
    _start_emotion(_function(sim, "player_init", sim_path), sim_path)
    roles = _literal(planning_fn, "mapping", sim_path)
    if not (isinstance(roles, dict) and set(roles) == {"user", "assistant"}):
        raise SageDataError(f"{sim_path}: the history's role names (mapping) are not readable")
    analysis_template = _string(planning_fn, "template", sim_path)
    reply_template = _string(reply_fn, "template", sim_path)
    analysis_labels, reply_labels = _labels(analysis_template), _labels(reply_template)
    if not analysis_labels or analysis_labels[-1] != CHANGE_LABEL or len(reply_labels) < 2:
        raise SageDataError(
            f"{sim_path}: the analysis must end in '{CHANGE_LABEL}:' and the reply name its "
            f"parts (found {analysis_labels} and {reply_labels})"
        )
    farewells = _driver(driver_path)
    return SageReference(
        target=_string(sim, "target_prompt", sim_path),
        analysis_template=analysis_template,
        reply_template=reply_template,
        npc_system=_string(
            _function(_tree(npc_path), "call_npc", npc_path), "role_system", npc_path
        ),
        roles={str(k): str(v) for k, v in roles.items()},
        planning=_planning_pieces(reply_fn, sim_path),
        state_names=_state_names(_literal(sim, "emo_count", sim_path), sim_path),
        farewells=farewells,
        analysis_labels=analysis_labels,
        reply_labels=reply_labels,
        digests={name: _digest(folder / FILES[name]) for name in ("simulator", "npc", "driver")},
    )


def read_profiles(folder: str | Path) -> list[SageProfile]:
    """SAGE's simulated users, validated (a bad line names its file, line and field)."""
    path = Path(folder) / FILES["profiles"]
    if not path.is_file():
        raise SageDataError(f"{path}: no such file (expected SAGE's profiles.jsonl)")
    profiles = read_jsonl(path, SageProfile)
    seen: set[str] = set()
    for profile in profiles:
        if profile.id in seen:
            raise SageDataError(f"{path}: profile id {profile.id!r} appears twice")
        seen.add(profile.id)
    return profiles


@dataclass(frozen=True)
class SageData:
    """SAGE's profiles and reference scripts, read from one folder."""

    folder: Path
    profiles: list[SageProfile]
    reference: SageReference


def load_sage(folder: str | Path) -> SageData:
    """Read everything the SAGE benchmark needs from ``folder`` (before any model call)."""
    folder = Path(folder)
    return SageData(folder=folder, profiles=read_profiles(folder), reference=read_reference(folder))

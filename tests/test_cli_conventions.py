"""The command line's conventions, read from the command tree typer builds (docs/cli.md).

Every verb's options are walked: a name means one thing on every verb, no help
restates a default (the help machinery shows it, from the field), a bound in
the help is the settings field's bound and the command line refuses exactly
what the field refuses, every old spelling still works and says it is
deprecated, and the help fits 80 columns without cutting an option name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from attunement.cli import build_app, commands
from attunement.cli.options import FIELD_HELP, MEMORY_HELP, describe_bounds, field_bounds
from attunement.judging import RewardConfig
from attunement.policy import GenerationSettings

#: the order ``attune --help`` lists the verbs in: the pipeline
PIPELINE = [
    "demo",
    "build",
    "augment",
    "stats",
    "split",
    "generate",
    "distill",
    "converse",
    "score",
    "criteria",
    "judge-card",
    "train",
    "evaluate",
    "emobench",
    "eqbench3",
    "sage",
    "export",
    "serve",
    "bench",
    "chat",
    "doctor",
]
ROOT = get_command(build_app())


def _verbs(group: Any = ROOT, path: tuple[str, ...] = ()) -> dict[str, Any]:
    found = {}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            found.update(_verbs(cmd, (*path, name)))
        else:
            found[" ".join((*path, name))] = cmd
    return found


VERBS = _verbs()
OPTIONS = [
    (verb, p) for verb, cmd in VERBS.items() for p in cmd.params if p.param_type_name == "option"
]


def names(param: Any) -> list[str]:
    return [*param.opts, *param.secondary_opts]


def carrying(name: str) -> list[tuple[str, Any]]:
    return [(verb, p) for verb, p in OPTIONS if name in names(p)]


def help_of(param: Any) -> str:
    return param.help or ""


# --------------------------------------------------------------------------- order


def test_help_lists_the_verbs_in_pipeline_order():
    result = CliRunner().invoke(build_app(), ["--help"], env={"COLUMNS": "80"})
    section = result.output.split("Commands:")[1].splitlines()
    assert [line.split()[0] for line in section if line.startswith("  ")] == PIPELINE
    # the same order in the tree, and the list is the explicit one (nothing discovered)
    assert list(ROOT.list_commands(None)) == PIPELINE
    assert [e.name if hasattr(e, "name") else e[0] for e in commands()] == PIPELINE


def test_no_verb_module_registers_itself():
    from attunement import cli

    folder = Path(cli.__file__).parent
    for module in folder.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "pkgutil" not in text and "def register(" not in text, module.name


# --------------------------------------------------------------------------- one meaning per name

SPEC_NAMES = ("--judge", "--policy", "--model")


def _spec(p: Any) -> bool:
    return "SPEC" in str(p.metavar or "")


#: name -> (what it means, a check every option carrying it passes)
MEANINGS: dict[str, tuple[str, Any]] = {
    "--judge": ("the judge model", _spec),
    "--policy": ("the model that answers", _spec),
    "--model": ("the model that builds, trains or is talked to", _spec),
    "--simulator": ("the model that plays the simulated users", _spec),
    "-m": ("short for --model", lambda p: names(p)[:2] == ["--model", "-m"]),
    "--samples": (
        "judge samples per dimension",
        lambda p: (
            names(p) == ["-k", "--samples"] and help_of(p).startswith("Judge samples per dimension")
        ),
    ),
    "-k": ("short for --samples only", lambda p: names(p) == ["-k", "--samples"]),
    "--top-k": (
        "retrieved memories",
        lambda p: (
            names(p) == ["--top-k"]
            and help_of(p).rstrip(".") == GenerationSettings.model_fields["k"].description
        ),
    ),
    "--clusters": ("clusters of a split", lambda p: p.min == 2),
    "--memory": (
        "what the policy sees of the memories",
        lambda p: (
            help_of(p).startswith(MEMORY_HELP.rstrip("."))
            and set(p.type_descriptor.choices) <= {"full", "none", "mismatch", "summary", "rag"}
        ),
    ),
    "--limit": ("the first N input records", lambda p: p.min == 1 or _field_min(p) == 1),
    "--no-cache": ("no completion cache", lambda p: p.default is False),
    "-c": ("short for --concurrency", lambda p: names(p) == ["--concurrency", "-c"]),
    "-o": ("short for --out", lambda p: names(p) == ["--out", "-o"]),
    "--format": (
        "the format of a model's answers",
        lambda p: "json" in help_of(p) and "text" in help_of(p),
    ),
}
#: where each name may appear (None: anywhere)
ONLY_ON = {
    "--clusters": {"split"},
    "--top-k": {"generate", "distill", "export verl", "export openrlhf"},
}


def _field_min(p: Any) -> Any:
    ref = getattr(p, "attune_field", None)
    bounds = field_bounds(*ref) if ref else {}
    return bounds.get("ge")


@pytest.mark.parametrize("name", sorted(MEANINGS))
def test_each_name_means_one_thing_on_every_verb(name):
    meaning, check = MEANINGS[name]
    found = carrying(name)
    assert found, f"{name} ({meaning}) is on no verb"
    wrong = [verb for verb, p in found if not check(p)]
    assert not wrong, f"{name} does not mean {meaning} on: {', '.join(wrong)}"
    if name in ONLY_ON:
        assert {verb for verb, _ in found} <= ONLY_ON[name]


def test_the_old_spellings_are_no_option_of_any_verb():
    """They work through the deprecation table (below), never as declared options."""
    for old in ("--k", "--teacher", "--endpoint", "-e", "--memory-mode", "--generations"):
        assert not carrying(old), old
    for verb in ("emobench", "eqbench3"):
        assert not [p for v, p in carrying("--model") if v == verb]
    assert not [v for v, p in carrying("--replies") if v.startswith("bench")]


LONG_RUNNING = {
    "build",
    "augment",
    "generate",
    "distill",
    "converse",
    "sage",
    "score",
    "criteria",
    "judge-card",
    "evaluate",
    "emobench",
    "eqbench3",
    "export verl",
    "export openrlhf",
}
MODEL_VERBS = {
    "build",
    "augment",
    "generate",
    "distill",
    "converse",
    "sage",
    "score",
    "criteria",
    "judge-card",
    "train grpo",
    "evaluate",
    "emobench",
    "eqbench3",
    "serve",
    "chat",
}


def test_every_long_running_verb_takes_limit():
    assert LONG_RUNNING <= {verb for verb, _ in carrying("--limit")}


def test_every_verb_with_a_cache_can_turn_it_off():
    with_cache = {verb for verb, _ in carrying("--cache")}
    assert MODEL_VERBS <= with_cache
    assert with_cache == {verb for verb, _ in carrying("--no-cache")}


def test_every_model_verb_sets_its_model_with_one_of_the_spec_names():
    for verb in MODEL_VERBS | {"doctor", "bench llm", "demo"}:
        assert any(n in names(p) for v, p in OPTIONS if v == verb for n in SPEC_NAMES), verb


# --------------------------------------------------------------------------- defaults and bounds


def _restates(help_text: str, default: Any) -> bool:
    """Whether ``help_text`` names ``default`` as a default: ``(8)``, ``default 8``."""
    value = re.escape(str(default))
    return bool(re.search(rf"\(\s*{value}\s*\)|default:?\s+{value}\b", help_text))


@pytest.mark.parametrize(("verb", "param"), OPTIONS, ids=[f"{v} {p.name}" for v, p in OPTIONS])
def test_no_help_restates_a_default(verb, param):
    text = help_of(param)
    if text not in FIELD_HELP:  # a field's description may say what None means
        unquoted = re.sub(r"'[^']*'", "", text)  # a value named 'default' is no default
        assert "default" not in unquoted.lower(), f"{verb} {param.opts}: {text!r}"
    for default in (param.default, getattr(param, "show_default", None)):
        if isinstance(default, int | float | str) and not isinstance(default, bool) and default:
            assert not _restates(text, default), f"{verb} {param.opts}: {text!r}"


def test_the_default_check_catches_a_restated_default():
    assert _restates("LoRA rank (16).", 16) and _restates(
        "Empathy aggregate (default harmonic).", "harmonic"
    )
    assert not _restates("Token budget of one reply (upstream: 12000).", 4096)


FIELD_OPTIONS = [(v, p) for v, p in OPTIONS if getattr(p, "attune_field", None)]
BOUNDED = [(v, p) for v, p in FIELD_OPTIONS if field_bounds(*p.attune_field)]


@pytest.mark.parametrize(("verb", "param"), BOUNDED, ids=[f"{v} {p.name}" for v, p in BOUNDED])
def test_bounds_in_help_are_the_fields(verb, param):
    bounds = field_bounds(*param.attune_field)
    assert param._get_number_range_help_str() == describe_bounds(bounds)
    record = param.get_help_record(ROOT.make_context("attune", [], resilient_parsing=True))
    assert describe_bounds(bounds) in record[1]


def _just_outside(bounds: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, which bound) just outside each bound: the bound itself when open."""
    out = []
    for key, value in bounds.items():
        step = 1 if isinstance(value, int) else 0.001
        shifted = {"ge": value - step, "gt": value, "le": value + step, "lt": value}[key]
        out.append((str(shifted), key))
    return out


CASES = [
    (verb, p, value, key)
    for verb, p in BOUNDED
    for value, key in _just_outside(field_bounds(*p.attune_field))
]


@pytest.mark.parametrize(
    ("verb", "param", "value", "key"),
    CASES,
    ids=[f"{v} {p.opts[-1]} {k} {x}" for v, p, x, k in CASES],
)
def test_the_command_line_refuses_what_the_field_refuses(verb, param, value, key):
    """``train grpo --temperature 0`` once passed the command line and failed in the
    settings; now every bound is the field's, open bounds included."""
    flag = next((n for n in names(param) if n.startswith("--")), names(param)[0]).split("/")[0]
    with pytest.raises(typer.TyperException) as refused:  # read only: the verb never runs
        VERBS[verb].make_context(verb, [flag, value])
    assert refused.value.exit_code == 2 and f"'{flag}'" in refused.value.format_message()


def test_temperature_is_the_fields_everywhere():
    temperatures = carrying("--temperature")
    assert len(temperatures) >= 6
    assert all(getattr(p, "attune_field", None) for _, p in temperatures)
    grpo = CliRunner().invoke(build_app(), ["train", "grpo", "--temperature", "0", "--out", "x"])
    assert grpo.exit_code == 2 and "greater than 0" in grpo.output
    assert RewardConfig.model_fields["temperature"].metadata  # the judge's may be 0


# --------------------------------------------------------------------------- deprecated spellings


@pytest.fixture
def files(tmp_path):
    data = tmp_path / "ex.jsonl"
    data.write_text("")
    return {"data": str(data), "out": str(tmp_path / "out"), "dir": str(tmp_path)}


#: (verb, required arguments, old spelling, value, parameter it sets, value it gets)
DEPRECATED = [
    ("split", ["--data", "{data}"], "--k", "3", "clusters", 3),
    (
        "score",
        ["--judge", "j", "--data", "{data}", "--replies", "{data}", "--out", "{out}"],
        "--k",
        "2",
        "k",
        2,
    ),
    ("judge-card", ["--judge", "j", "--out", "{out}"], "--k", "2", "k", 2),
    ("generate", ["--data", "{data}", "--policy", "x", "--out", "{out}"], "-k", "5", "k", 5),
    ("distill", ["--data", "{data}", "--out", "{out}"], "--teacher", "big", "policy", "big"),
    ("distill", ["--data", "{data}", "--policy", "x", "--out", "{out}"], "-k", "5", "k", 5),
    (
        "distill",
        ["--data", "{data}", "--policy", "x", "--out", "{out}"],
        "--format",
        "messages",
        "row_format",
        "messages",
    ),
    ("emobench", ["--data", "{data}", "--out", "{out}"], "--model", "m", "policy", "m"),
    (
        "eqbench3",
        ["--judge", "j", "--data", "{dir}", "--out", "{out}"],
        "--model",
        "m",
        "policy",
        "m",
    ),
    (
        "export verl",
        ["--data", "{data}", "--out", "{out}"],
        "--memory-mode",
        "none",
        "memory_mode",
        "none",
    ),
    ("export openrlhf", ["--data", "{data}", "--out", "{out}"], "-k", "4", "k", 4),
    ("export verl", ["--data", "{data}", "--out", "{out}"], "--k", "4", "k", 4),
    ("doctor", [], "--endpoint", "e", "model", "e"),
    ("doctor", [], "-e", "e", "model", "e"),
    ("demo", [], "-k", "4", "k_scaling", 4),
    ("train grpo", ["--out", "{out}"], "--generations", "4", "num_generations", 4),
    ("bench rewards", [], "--replies", "4", "replies", 4),
    ("bench rewards", [], "--k", "2", "k", 2),
    ("bench train", [], "--generations", "3", "generations", 3),
]


@pytest.mark.parametrize(
    ("verb", "required", "old", "value", "param", "expected"),
    DEPRECATED,
    ids=[f"{d[0]} {d[2]}" for d in DEPRECATED],
)
def test_an_old_spelling_still_works_and_says_so(
    verb, required, old, value, param, expected, files, capsys
):
    cmd = VERBS[verb]
    args = [a.format(**files) for a in required] + [old, value]
    ctx = cmd.make_context(verb, args)
    assert ctx.params[param] == expected
    new = next(n for n in (cmd.callback.renamed.get(old),) if n)
    assert capsys.readouterr().err.splitlines() == [f"{old} is deprecated; use {new}"]


def test_an_old_spelling_runs_the_verb_end_to_end(tmp_path):
    data = tmp_path / "ex.jsonl"
    data.write_text("")
    result = CliRunner().invoke(build_app(), ["split", "--data", str(data), "--k", "1"])
    # the old spelling reached --clusters, whose bound refused the value
    assert result.exit_code == 2 and "'--clusters'" in result.output
    assert result.stderr.splitlines()[0] == "--k is deprecated; use --clusters"


# --------------------------------------------------------------------------- help width


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_fits_80_columns_and_shows_every_option_name_whole(verb):
    result = CliRunner().invoke(build_app(), [*verb.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    for p in VERBS[verb].params:
        for name in names(p):
            if name.startswith("-"):
                whole = rf"(?<![\w-]){re.escape(name)}(?![\w-])"
                assert re.search(whole, result.output), f"{verb}: {name} cut or missing"

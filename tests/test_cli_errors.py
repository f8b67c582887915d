"""Every user error ends in one line and an exit code, never a traceback (docs/cli.md).

Each verb is run with each input a person gets wrong: a missing file, a folder
where a file belongs (or the reverse), malformed JSONL, an output folder that
cannot be written, a locked build folder, reward settings the library refuses,
and a command line that cannot be read. The table says which inputs a verb
takes; the assertions are the same for all: the exit code (2: the command line
could not be read; 1: it could, and the command cannot run), one ``error:``
line naming the file (``file:line: field`` for a record) or the option, whole
at a 40-column terminal, and no traceback unless ``ATTUNE_DEBUG=1``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attunement.building.pipeline import BuildLock
from attunement.cli import build_app

#: a model spec nothing answers: a verb that got as far as calling it would hang or fail late
DEAD = "openai:http://127.0.0.1:9/v1#nobody"
USERS = resources.files("attunement").joinpath("data/example_users.jsonl")

#: verb -> (arguments with {data}, {replies}, {out} slots, the kinds it takes)
#: kinds: missing, folder (a folder given for the input file), file_dir (a file
#: given for an input folder), malformed, unwritable, out_file (a file where an
#: output folder belongs), out_dir (a folder where an output file belongs), reward
VERBS: dict[str, tuple[list[str], set[str]]] = {
    "build": (
        ["build", "--source", "users:{data}", "--model", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_file"},
    ),
    "augment": (
        ["augment", "--data", "{data}", "--model", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_file"},
    ),
    "stats": (["stats", "{data}", "--plot", "{out}"], {"missing", "unwritable", "out_dir"}),
    "split": (
        ["split", "--data", "{data}", "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_file"},
    ),
    "generate": (
        ["generate", "--data", "{data}", "--policy", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_dir"},
    ),
    "distill": (
        ["distill", "--data", "{data}", "--policy", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_dir"},
    ),
    "score": (
        ["score", "--data", "{data}", "--replies", "{replies}", "--judge", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_dir", "reward"},
    ),
    "criteria": (
        ["criteria", "--data", "{data}", "--judge", DEAD, "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_dir"},
    ),
    "judge-card": (
        # --data needs good replies to them (issue 17: alone it was silently unused)
        [
            "judge-card",
            "--data",
            "{data}",
            "--replies",
            "{replies}",
            "--judge",
            DEAD,
            "--out",
            "{out}",
        ],
        {"missing", "folder", "malformed", "unwritable", "out_file", "reward"},
    ),
    "evaluate": (
        [
            "evaluate",
            "--data",
            "{data}",
            "--replies",
            "{replies}",
            "--judge",
            DEAD,
            "--out",
            "{out}",
        ],
        {"missing", "folder", "malformed", "unwritable", "out_file", "reward"},
    ),
    "emobench": (
        ["emobench", "--data", "{data}", "--policy", DEAD, "--out", "{out}"],
        {"missing", "malformed", "unwritable", "out_file"},
    ),
    "eqbench3": (
        ["eqbench3", "--data", "{data}", "--policy", DEAD, "--judge", DEAD, "--out", "{out}"],
        {"missing", "file_dir", "unwritable", "out_file"},
    ),
    "export verl": (
        ["export", "verl", "--data", "{data}", "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_file"},
    ),
    "export openrlhf": (
        ["export", "openrlhf", "--data", "{data}", "--out", "{out}"],
        {"missing", "folder", "malformed", "unwritable", "out_file"},
    ),
    "serve": (
        ["serve", "--data", "{data}", "--judge", DEAD],
        {"missing", "folder", "malformed", "reward"},
    ),
    "train grpo": (["train", "grpo", "--out", "{out}"], {"unwritable", "out_file", "reward"}),
    "train sft": (["train", "sft", "--out", "{out}"], {"unwritable", "out_file"}),
    "train merge": (
        ["train", "merge", "--adapter", "{data}", "--out", "{out}"],
        {"missing", "file_dir"},
    ),
}


@pytest.fixture
def place(tmp_path):
    """Good inputs and outputs; each case spoils one of them."""
    good = tmp_path / "good.jsonl"
    good.write_text("")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"not json\n')
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("not a folder\n")
    return {
        "tmp": tmp_path,
        "good": good,
        "bad": bad,
        "file": a_file,
        "missing": tmp_path / "missing" / "nothing-here.jsonl",
        "out": tmp_path / "out",
    }


def unwritable(tmp_path: Path) -> Path:
    """A place no file can be created: a read-only folder, or for root (whom
    permission bits do not stop) the kernel's /sys."""
    if os.geteuid() == 0:
        return Path("/sys/attunement-cli-test/out")
    locked = tmp_path / "read-only"
    locked.mkdir()
    locked.chmod(0o500)
    return locked / "out"


def invoke(args: list[str]):
    return CliRunner().invoke(build_app(), args, env={"COLUMNS": "40"})


def one_error_line(result) -> str:
    """The single ``error:`` line, which must end stderr; no traceback anywhere."""
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    return errors[0]


def _args(verb: str, place: dict, **slots: Path) -> list[str]:
    template, _ = VERBS[verb]
    values = {"data": place["good"], "replies": place["good"], "out": place["out"], **slots}
    if verb == "eqbench3" and "data" not in slots:
        values["data"] = place["tmp"]
    if verb in ("stats", "generate", "distill", "score", "criteria") and "out" not in slots:
        values["out"] = place["tmp"] / "out.jsonl"
    if verb == "stats" and "out" not in slots:
        values["out"] = place["tmp"] / "stats.png"
    return [part.format(**{k: str(v) for k, v in values.items()}) for part in template]


def _cases(kind: str) -> list[str]:
    return [verb for verb, (_, kinds) in VERBS.items() if kind in kinds]


#: verbs whose input is an option checked before the verb runs (the line names the option)
CHECKED = {"--data": set(_cases("missing")) - {"build", "evaluate", "stats", "train merge"}}
CHECKED |= {"--adapter": {"train merge"}, "BUILD_DIR": {"stats"}}


def _named(verb: str) -> str:
    """What the line starts with after ``error: ``: the option, where it is checked early."""
    return next((f"{flag}: " for flag, verbs in CHECKED.items() if verb in verbs), "")


@pytest.mark.parametrize("verb", _cases("missing"))
def test_a_missing_input_is_one_line(verb, place):
    result = invoke(_args(verb, place, data=place["missing"]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"{_named(verb)}{place['missing']}" in line and "no such" in line


@pytest.mark.parametrize("verb", _cases("folder"))
def test_a_folder_given_for_a_file_is_one_line(verb, place):
    result = invoke(_args(verb, place, data=place["tmp"]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"{_named(verb)}{place['tmp']}: is a folder" in line


@pytest.mark.parametrize("verb", _cases("file_dir"))
def test_a_file_given_for_a_folder_is_one_line(verb, place):
    result = invoke(_args(verb, place, data=place["file"]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert str(place["file"]) in line


@pytest.mark.parametrize("verb", _cases("malformed"))
def test_malformed_jsonl_names_file_and_line(verb, place):
    result = invoke(_args(verb, place, data=place["bad"]))
    assert result.exit_code == 1
    assert f"{place['bad']}:1: not valid JSON" in one_error_line(result)


@pytest.mark.parametrize("verb", ["score", "criteria", "export verl"])
def test_a_bad_record_names_file_line_and_field(verb, place):
    bad = place["tmp"] / "no-query.jsonl"
    good = '{"example_id": "e1", "user_id": "u", "query": "hi"}'
    bad.write_text(good + "\n" + '{"example_id": "e2", "user_id": "u"}\n')
    result = invoke(_args(verb, place, data=bad))
    assert result.exit_code == 1
    assert f"error: {bad}:2: query: Field required" == one_error_line(result)


@pytest.mark.parametrize("verb", _cases("unwritable"))
def test_an_output_that_cannot_be_written_is_one_line(verb, place):
    out = unwritable(place["tmp"])
    try:
        result = invoke(_args(verb, place, out=out))
    finally:
        if out.parent.exists() and out.parent.parent == place["tmp"]:
            out.parent.chmod(0o700)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert str(out) in line and "cannot be written" in line


@pytest.mark.parametrize("verb", _cases("out_file"))
def test_a_file_where_the_output_folder_belongs_is_one_line(verb, place):
    result = invoke(_args(verb, place, out=place["file"]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"--out: {place['file']}: is a file" in line


@pytest.mark.parametrize("verb", _cases("out_dir"))
def test_a_folder_where_the_output_file_belongs_is_one_line(verb, place):
    result = invoke(_args(verb, place, out=place["tmp"]))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert f"{place['tmp']}: is a folder" in line


@pytest.mark.parametrize("verb", _cases("reward"))
@pytest.mark.parametrize(
    ("option", "named"),
    [
        (["--reward", "peregrm@0"], "k: Input should be greater than or equal to 1"),
        (["--set", "k=abc"], "k: Input should be a valid integer"),
        (["--reward", "nope"], "unknown reward 'nope'"),
    ],
)
def test_reward_settings_refused_are_one_human_line(verb, option, named, place):
    result = invoke([*_args(verb, place), *option])
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith("error: reward options: ") and named in line
    assert "https://" not in line and "pydantic" not in line


def test_a_locked_build_folder_is_one_line(place):
    out = place["out"]
    with BuildLock(out):
        result = invoke(_args("build", place, data=Path(str(USERS))))
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"{out}: another build is running on this folder" in line


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_a_command_line_that_cannot_be_read_exits_2(verb, place):
    result = invoke([*_args(verb, place), "--no-such-option"])
    assert result.exit_code == 2
    assert "--no-such-option" in one_error_line(result)


def test_a_value_out_of_range_names_the_option(place):
    result = invoke([*_args("score", place), "--samples", "0"])
    assert result.exit_code == 2
    assert "'-k' / '--samples'" in one_error_line(result) or "'--samples'" in result.stderr


def test_attune_debug_shows_the_traceback_above_the_line(place, monkeypatch):
    monkeypatch.setenv("ATTUNE_DEBUG", "1")
    result = invoke(_args("split", place, data=place["bad"]))
    assert result.exit_code == 1
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"error: {place['bad']}:1")


def test_an_unexpected_failure_is_one_line_that_points_to_the_debug_switch(place, monkeypatch):
    from attunement import splits

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(splits, "split_random", broken)
    good = place["tmp"] / "one.jsonl"
    good.write_text('{"example_id": "e", "user_id": "u", "query": "hi"}\n')
    result = invoke(["split", "--data", str(good), "--out", str(place["out"])])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "internal error: KeyError" in line and "ATTUNE_DEBUG=1" in line


def test_an_interrupt_exits_130_and_says_the_work_is_kept(place, monkeypatch):
    from attunement import splits

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(splits, "split_random", interrupted)
    good = place["tmp"] / "one.jsonl"
    good.write_text('{"example_id": "e", "user_id": "u", "query": "hi"}\n')
    result = invoke(["split", "--data", str(good), "--out", str(place["out"])])
    assert result.exit_code == 130 and "Traceback" not in result.output
    assert result.stderr.splitlines()[-1].startswith("interrupted: what was finished is kept")


def test_a_missing_package_is_named_and_a_broken_import_of_ours_is_internal():
    from attunement.cli.errors import one_line

    missing = ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
    assert one_line(missing) == ("uvicorn is not installed (No module named 'uvicorn')", 1)
    ours = ImportError("cannot import name 'x'", name="attunement.integrations.openrlhf")
    assert one_line(ours)[0].startswith("internal error: ImportError")
    worded = ImportError("attune train needs torch: pip install 'attunement[train]'")
    assert one_line(worded) == ("attune train needs torch: pip install 'attunement[train]'", 1)

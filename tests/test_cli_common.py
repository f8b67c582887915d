"""Plain CLI lines are printed whole at any terminal width.

A person copies the path in ``error: FILE:LINE: field: message`` or in
``written: PATH``, and a test reads the line: neither may be broken where the
terminal happens to end. The consoles are narrowed here to far less than the
paths, as a narrow terminal (or ``COLUMNS=40``) and a long temp path would.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attunement.cli import build_app, common, errors
from attunement.jsonl import RecordError


@pytest.fixture
def narrow(monkeypatch):
    for console in (common.console, common.out):
        monkeypatch.setattr(console, "_width", 30)


@pytest.fixture
def deep(tmp_path):
    folder = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-one-more-level"
    folder.mkdir(parents=True)
    return folder


def test_errors_naming_a_file_line_and_field_are_not_wrapped(narrow, deep, capsys):
    async def bad_input():
        raise RecordError(deep / "bad.jsonl", 2, "memories.0.value", "Field required")

    with pytest.raises(RecordError) as failure:
        common.run(bad_input())
    assert errors.report(failure.value) == 1  # the one place failures become lines
    err = capsys.readouterr().err
    assert f"error: {deep / 'bad.jsonl'}:2: memories.0.value: Field required" in err.splitlines()


def test_plain_lines_are_not_wrapped_nor_read_as_markup(narrow, deep, capsys):
    path = deep / "[draft] replies.jsonl"
    common.say(f"written: {path} (12 replies)")
    common.console.print(f"train: 4 users / 12 examples; written: {path}", markup=False)
    assert capsys.readouterr().err.splitlines() == [
        f"written: {path} (12 replies)",
        f"train: 4 users / 12 examples; written: {path}",
    ]


def test_cli_error_for_a_missing_file_is_one_line(narrow, deep):
    app = build_app()
    missing = deep / "schema.json"
    result = CliRunner().invoke(
        app,
        ["chat", "hi", "--model", "openai:http://127.0.0.1:9/v1#m", "--json-schema", str(missing)],
    )
    assert result.exit_code == 2
    assert f"error: {missing}: no such file" in result.stderr.splitlines()


def test_a_corrupt_cache_is_one_clear_line(narrow, deep):
    app = build_app()
    cache = deep / "cache.sqlite"
    cache.write_bytes(b"not a database " * 200)
    result = CliRunner().invoke(
        app, ["chat", "hi", "--model", "openai:http://127.0.0.1:9/v1#m", "--cache", str(cache)]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {cache}: cannot use this completion cache")

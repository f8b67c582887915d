"""The OpenRLHF and attune commands of the cluster docs: OpenRLHF's flags checked
against the parser of OpenRLHF 0.11.2 (its flags, recorded in
tests/fixtures/openrlhf_0.11.2_train_ppo_ray_flags.txt), and every ``attune``
command of those pages parsed by our own CLI (a renamed option fails here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from attunement.cli import build_app

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("scale-out.md", "training.md")
FLAGS = ROOT / "tests" / "fixtures" / "openrlhf_0.11.2_train_ppo_ray_flags.txt"


def commands(entry: str) -> list[tuple[str, list[str]]]:
    """(page, words after ``entry``) of every shell command on the cluster pages."""
    found = []
    for page in PAGES:
        text = (ROOT / "docs" / page).read_text()
        for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if entry in words:
                    found.append((page, words[words.index(entry) + 1 :]))
    return found


def test_documented_openrlhf_flags_exist_in_openrlhf():
    known = {line.strip() for line in FLAGS.read_text().splitlines() if line.startswith("--")}
    found = commands("openrlhf.cli.train_ppo_ray")
    assert {page for page, _ in found} == set(PAGES)
    for page, words in found:
        flags = {w for w in words if w.startswith("--")}
        assert flags and flags <= known, (page, sorted(flags - known))


ATTUNE = [c for c in commands("attune") if c[1][0] in ("serve", "export")]


@pytest.mark.parametrize("page,words", ATTUNE, ids=[f"{p}:{w[0]}" for p, w in ATTUNE])
def test_documented_attune_commands_parse(page, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = []
    for word in words:  # files the command reads exist (absolute ones moved under tmp)
        if re.search(r"\.(jsonl|token)$", word):
            path = tmp_path / word.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x" * 40 + "\n")
            word = str(path)
        args.append(word)
    group = typer.main.get_command(build_app())
    ctx = group.make_context("attune", list(args))
    command = group.get_command(ctx, args[0])
    if isinstance(command, typer.core.TyperGroup):
        sub = command.make_context(args[0], args[1:], parent=ctx)
        command, args = command.get_command(sub, args[1]), args[1:]
        ctx = sub
    command.make_context(args[0], args[1:], parent=ctx)  # raises on an unknown option

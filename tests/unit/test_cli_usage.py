"""Bare `enrich` shows what it can do, as `enrich --help` does, and exits 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from enrich.cli import build_parser, main

COMMANDS = ("run", "submit", "jobs", "report", "query", "migrate", "compact", "tag", "status", "show", "models")


def assert_top_level_help(text: str) -> None:
    assert text.startswith("usage: enrich ")
    assert "{" + ",".join(COMMANDS) + "}" in text
    for command in COMMANDS:
        assert f"\n    {command} " in text, command


def test_bare_enrich_prints_the_help_and_exits_0():
    proc = subprocess.run([sys.executable, "-m", "enrich"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert_top_level_help(proc.stdout)
    assert proc.stdout == build_parser().format_help()


def test_enrich_with_no_arguments_in_process(capsys):
    assert main([]) == 0
    assert_top_level_help(capsys.readouterr().out)


def test_enrich_help_still_works(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert_top_level_help(capsys.readouterr().out)


def test_an_unknown_command_is_still_an_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["bogus"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("enrich: error: argument command: invalid choice")

"""The command line's shared behaviour."""

from __future__ import annotations

import subprocess
import sys

from medfm_hf.cli import build_parser, main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "medfm_hf" in out and "torch" in out and "angiography" in out


def test_subcommands_registered():
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)  # noqa: SLF001
    assert {"info", "demo-data"} <= names


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_console_script_runs():
    res = subprocess.run([sys.executable, "-m", "medfm_hf.cli", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and "medfm_hf" in res.stdout

"""The README stays honest: its --help excerpts match the real output; its set-up commands are CI's."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import ROOT, CliResult

README = (ROOT / "README.md").read_text()
HELP_BLOCKS = re.findall(r"```text\n\$ (vramcalc[^\n]*--help)\n(.*?)```", README, flags=re.S)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[dev]' && .venv/bin/pytest"
MAIN_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install . && "
    ".venv/bin/vramcalc estimate gemma-2-27b --bits 4 --ctx 4096 --users 10"
)


def test_readme_has_help_excerpts() -> None:
    assert HELP_BLOCKS


@pytest.mark.parametrize(("command", "expected"), HELP_BLOCKS, ids=[c for c, _ in HELP_BLOCKS])
def test_help_excerpt_matches(run_cli, monkeypatch: pytest.MonkeyPatch, command: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COLUMNS", "80")
    result: CliResult = run_cli(*shlex.split(command)[1:])
    assert result.exit_code == 0
    assert result.stdout == expected


def test_setup_commands_are_in_the_readme_and_ci() -> None:
    assert MAIN_COMMAND in README
    assert TEST_COMMAND in README
    assert TEST_COMMAND in (ROOT / ".ci/run").read_text()

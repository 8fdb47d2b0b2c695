"""The README stays honest: its --help excerpts match the real output; its set-up commands are CI's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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


def _readme_commands() -> list[str]:
    """`vramcalc ...` lines of the README's shell blocks that need no file of the reader's own."""
    out = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith("vramcalc ") and not re.search(r"(^|\s)(\./|~/)", command):
                out.append(command)
    return out


@pytest.fixture(scope="module")
def reader_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the README's commands run, in order: files they write (a profile from `calibrate
    --save`) land here, not in the checkout, and later commands find them."""
    return tmp_path_factory.mktemp("reader")


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_commands_run_as_shown(
    run_cli, command: str, reader_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(reader_dir)
    # Paths of the repository (tests/fixtures/...) as a reader in the checkout would type them.
    args = [str(ROOT / a) if "/" in a and (ROOT / a).exists() else a for a in shlex.split(command)[1:]]
    result: CliResult = run_cli(*args)
    assert result.exit_code in (0, 1), result.stderr
    assert result.stderr == "" or result.exit_code == 1


def test_readme_lists_enough_commands() -> None:
    assert len(_readme_commands()) >= 6

"""Layer 5: one CLI surface. Every command that prints a result takes --format, --json and -o/--output
the same way; its help reads without type placeholders; every hint names an option it has."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from tests.conftest import CliResult
from tests.importer_fixtures import CONFIGS, write_config
from vramcalc.cli import app

Run = Callable[..., CliResult]
LOG = "tests/fixtures/logs/llamacpp-gemma2-27b-q4km-8192.log"
PLAN = "examples/plans/gemma-2-27b-4090-2-users.yaml"

# Each result-printing command, an invocation of it, and its formats (the default first).
COMMANDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "estimate": (("estimate", "gemma-2-27b", "--users", "3"), ("table", "json", "markdown", "csv")),
    "recommend": (("recommend", "llama-3.1-8b", "--users", "2"), ("table", "json", "markdown")),
    "calibrate": (("calibrate", LOG), ("table", "json")),
    "bench": (
        ("bench", "tests/fixtures/bench/llama-bench.json", "--model", "llama-3.1-8b", "--gpu", "rtx-4090"),
        ("table", "json"),
    ),
    "diagnose": (("diagnose", "--gpu", "rtx-4090", "--used", "12GB"), ("text", "json")),
    "observe": (
        (
            "observe",
            "tests/fixtures/metrics/04-vllm-v0-llama31-8b-idle-blog.txt",
            "--model",
            "llama-3.1-8b",
            "--gpu",
            "rtx-4090",
            "--ctx",
            "2048",
        ),
        ("text", "json"),
    ),
    "check": (("check", PLAN), ("text", "json", "junit", "github", "markdown")),
    "models list": (("models", "list"), ("table", "json")),
    "models show": (("models", "show", "gemma-2-27b"), ("table", "json")),
    "gpus list": (("gpus", "list"), ("table", "json")),
    "gpus show": (("gpus", "show", "h100"), ("table", "json")),
    "schema plan": (("schema", "plan"), ("json",)),
    "plan emit": (("plan", "emit", PLAN), ("text", "json")),
}
CASES = [(name, fmt) for name, (_, formats) in COMMANDS.items() for fmt in formats]


def _commands() -> dict[str, object]:
    """Every leaf command of the app by its path ('models list'), walked from the click tree."""
    out: dict[str, object] = {}

    def walk(cmd: object, path: str) -> None:
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, f"{path} {name}".strip())
        else:
            out[path] = cmd

    walk(typer.main.get_command(app), "")
    return out


def _options(path: str) -> set[str]:
    cmd = _commands()[path]
    return {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))}  # type: ignore[attr-defined]


def test_every_result_command_is_covered() -> None:
    printing = {p for p in _commands() if "--format" in _options(p)}
    assert printing == set(COMMANDS)
    for path in COMMANDS:
        assert {"--format", "--json", "-o", "--output", "--debug"} <= _options(path), path


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_json_alias_equals_format_json(run_cli: Run, path: str) -> None:
    args = COMMANDS[path][0]
    a, b = run_cli(*args, "--json"), run_cli(*args, "--format", "json")
    assert a.exit_code == b.exit_code and a.exit_code in (0, 1), a.stderr
    assert a.stdout == b.stdout
    json.loads(a.stdout)


@pytest.mark.parametrize(("path", "fmt"), CASES, ids=[f"{p}-{f}" for p, f in CASES])
def test_output_writes_the_bytes_stdout_gets(run_cli: Run, tmp_path: Path, path: str, fmt: str) -> None:
    args = (*COMMANDS[path][0], "--format", fmt)
    shown = run_cli(*args)
    target = tmp_path / "out"
    written = run_cli(*args, "-o", str(target))
    assert written.exit_code == shown.exit_code and shown.exit_code in (0, 1), shown.stderr
    assert written.stdout == ""
    assert written.stderr.startswith(f"vramcalc: wrote {target}")
    assert target.read_text() == shown.stdout
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("path", sorted(COMMANDS))
def test_conflicting_formats_are_an_error(run_cli: Run, path: str) -> None:
    args, formats = COMMANDS[path]
    other = next((f for f in formats if f != "json"), "markdown")
    r = run_cli(*args, "--json", "--format", other)
    assert r.exit_code == 2 and r.stdout == ""
    if other in formats:
        assert (
            r.stderr
            == f"vramcalc: error: --json and --format {other} ask for different formats; give one of them\n"
        )
    bad = run_cli(*args, "--format", "xml")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("vramcalc: error: unknown format 'xml'; choose ")


@pytest.mark.parametrize("path", sorted(_commands()))
def test_help_has_no_type_placeholders(run_cli: Run, path: str) -> None:
    r = run_cli(*path.split(), "--help")
    assert r.exit_code == 0
    assert not re.search(r"<\w+(\[[^\]]*\])?>|\{\w+\}", r.stdout), r.stdout


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_subcommand(run_cli: Run, where: str) -> None:
    args = ["check", "no-such-plan.yaml"]
    r = run_cli("--debug", *args) if where == "before" else run_cli(*args, "--debug")
    assert r.exit_code == 2
    assert "Traceback" in r.stderr and r.stderr.rstrip().endswith("no such file or directory")


def test_values_are_read_in_words(run_cli: Run) -> None:
    r = run_cli("estimate", "gemma-2-27b", "--ctx", "lots")
    assert r.stderr == (
        "vramcalc: error: Invalid value for '--ctx': 'lots' is not a whole number "
        "(see `vramcalc estimate --help`)\n"
    )
    assert "is not a number" in run_cli("estimate", "gemma-2-27b", "--fill", "half").stderr
    engine = run_cli("plan", "emit", PLAN, "--engine", "tgi")
    assert engine.stderr == (
        "vramcalc: error: unknown engine 'tgi' for --engine; choose vllm, sglang, llama.cpp or ollama\n"
    )


def _hints(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


@pytest.mark.parametrize(
    ("path", "args"),
    [
        ("estimate", ("estimate", "gemma-2-27b", "--ctx", "1000000")),
        ("recommend", ("recommend", "gemma-2-27b", "--ctx", "1000000")),
        ("estimate", ("estimate", "gemma-2-27b", "--shared-prefix", "5000")),
        ("estimate", ("estimate", "gemma-2-27b", "--bits", "4", "--quant", "fp8")),
        ("recommend", ("recommend", "--per-tier", "0")),
        ("plan emit", ("plan", "emit", "examples/plans/gemma-2-27b-4090-10-users.yaml")),
        ("check", ("check", PLAN, "--json", "--format", "junit")),
    ],
)
def test_each_hint_names_an_option_of_that_command(run_cli: Run, path: str, args: tuple[str, ...]) -> None:
    r = run_cli(*args)
    assert r.exit_code in (1, 2) and r.stderr
    assert _hints(r.stderr) <= _options(path), r.stderr


def test_recommend_takes_allow_long_ctx(run_cli: Run) -> None:
    r = run_cli("recommend", "llama-3.2-1b", "--ctx", "200000", "--allow-long-ctx", "--users", "1", "--json")
    assert r.exit_code in (0, 1), r.stderr
    assert json.loads(r.stdout)["options"]


def test_check_output_mode_follows_the_umask(run_cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    old = os.umask(0o022)
    try:
        assert run_cli("check", PLAN, "--output", str(target)).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_models_import_creates_the_directory(run_cli: Run, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ds", CONFIGS["deepseek-v3"])
    target = tmp_path / "new" / "models" / "ds-copy.yaml"
    r = run_cli("models", "import", str(cfg), "-o", str(target))
    assert r.exit_code == 0, r.stderr
    assert target.exists()


def test_markdown_carries_a_chart_from_the_table_rows(run_cli: Run) -> None:
    md = run_cli(
        "estimate", "gemma-2-27b", "--users", "3", "--gpu", "rtx-4090", "--format", "markdown"
    ).stdout
    doc = json.loads(run_cli("estimate", "gemma-2-27b", "--users", "3", "--gpu", "rtx-4090", "--json").stdout)
    chart = md.split("```mermaid\n", 1)[1].split("```", 1)[0]
    assert chart.startswith("xychart-beta\n")
    bars = [f"{row['per_gpu_bytes'] / 2**30:.2f}" for row in doc["by_users"]]
    assert f"    bar [{', '.join(bars)}]" in chart
    assert f"{doc['gpu']['usable_bytes'] / 2**30:.2f}" in chart.split("line [", 1)[1]
    check_md = run_cli("check", PLAN, "--format", "markdown").stdout
    assert '```mermaid\nxychart-beta\n    title "gemma-27b-4090-2-users' in check_md
    assert '    x-axis "users" [1, 2]' in check_md

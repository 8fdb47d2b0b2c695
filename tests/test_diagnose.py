"""`vramcalc diagnose`: nvidia-smi outputs and bare readings explained with figures (issue 16).

Published outputs live in tests/fixtures/smi/ with their sources (sources.yaml); each test says
what the output shows and what the finding must say about it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vramcalc.errors import SpecError
from vramcalc.readings.smi import parse_smi

Run = Callable[..., CliResult]


def _json(r: CliResult) -> dict:  # type: ignore[type-arg]
    return json.loads(r.stdout)


def test_a_reading_above_the_card(run_cli: Run) -> None:
    """33 GB on a 24 GB RTX 4090 (24,564 MiB = 23.99 GiB): not one card's VRAM; exit 1."""
    r = run_cli("diagnose", "--gpu", "rtx-4090", "--used", "33GB", "--json")
    assert r.exit_code == 1
    d = _json(r)
    codes = [f["code"] for f in d["findings"]]
    assert codes == ["above_physical_limit"]
    figures = d["findings"][0]["figures"]
    assert figures == {"reading_gib": 33.0, "card_gib": 23.988, "beyond_vram_gib": 9.012}


def test_the_4090_story_adds_card_and_host(run_cli: Run) -> None:
    """Gemma-2-27B Q4_K_M on Ollama, 10 users x 4,096 tokens, one RTX 4090: the assessment keeps
    35 of 47 layers on the card (22.71 GiB there) and 7.90 GiB of weights and KV in host memory;
    a monitor showing ~30 GB adds the two (22.71 + 7.90 = 30.62 GiB). Decode at 3 tokens/s is
    the offload cliff the assessment predicts (4.9)."""
    r = run_cli(
        "diagnose", "--gpu", "rtx-4090", "--used", "30GB", "--model", "gemma-2-27b", "--bits", "4",
        "--engine", "ollama", "--users", "10", "--ctx", "4096", "--tokens-per-s", "3", "--json",
    )  # fmt: skip
    assert r.exit_code == 1
    d = _json(r)
    assert [f["code"] for f in d["findings"]] == ["above_physical_limit", "offload_cliff"]
    assert "= 30.62 GiB, the reading's size: the monitor adds the two" in d["findings"][0]["message"]
    cliff = d["findings"][1]["figures"]
    assert cliff["offloaded_gib"] == pytest.approx(7.90, abs=0.01) and cliff["observed_tokens_per_s"] == 3
    assert {c["quantity"] for c in d["comparisons"]} == {
        "GPU memory in use (GiB, the busiest card)",
        "decode tokens/s per user",
    }


def test_vllm_full_by_design_is_not_a_problem(run_cli: Run) -> None:
    """23.5 GB of a 4090 under vLLM (it pre-allocates ~0.9 of the card and more): near_full, a note,
    exit 0; the same reading under transformers is a problem."""
    args = ("diagnose", "--gpu", "rtx-4090", "--used", "23.5GB", "--model", "gemma-2-27b", "--bits", "4")
    vllm = run_cli(*args, "--json")
    assert vllm.exit_code == 0
    f = _json(vllm)["findings"]
    assert (
        [x["code"] for x in f] == ["near_full"]
        and f[0]["problem"] is False
        and "not a leak" in f[0]["message"]
    )
    hf = run_cli(*args, "--engine", "transformers", "--json")
    assert hf.exit_code == 1 and _json(hf)["findings"][0]["problem"] is True


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lots", "--used 'lots': give a size like 33GB"),
        ("0GB", "--used '0GB': a positive size"),
        ("-3GB", "--used '-3GB': give a size like 33GB"),
        ("nanGB", "--used 'nanGB': give a size like 33GB"),
    ],
)
def test_bad_used(run_cli: Run, value: str, message: str) -> None:
    r = run_cli("diagnose", "--gpu", "rtx-4090", "--used", value)
    assert r.exit_code == 2 and message in r.stderr and r.stdout == ""


def test_nothing_to_read(run_cli: Run) -> None:
    r = run_cli("diagnose", "--gpu", "rtx-4090")
    assert r.exit_code == 2 and "give nvidia-smi output" in r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>\n",
            "an HTML or XML page, not nvidia-smi output",
        ),
        ("hello world\n", "no memory figure in the row"),
        ("", "the file is empty"),
        ("memory.used [MiB], memory.total [MiB]\nnan MiB, 24564 MiB\n", "is not a valid reading"),
        ("memory.used [MiB], memory.total [MiB]\n-5 MiB, 24564 MiB\n", "is not a valid reading"),
        ("memory.used [MiB], memory.total [MiB]\n5 MiB\n", "1 values for 2 columns"),
        ("x" * 10_000 + "\n", "a line of 10,000 characters is not nvidia-smi output"),
        ("1, 2, 3, 4\n", "4 memory figures in a row without a header"),
    ],
)
def test_hostile_input_is_one_line(tmp_path: Path, run_cli: Run, content: str, message: str) -> None:
    f = tmp_path / "smi.txt"
    f.write_text(content)
    r = run_cli("diagnose", str(f), "--gpu", "rtx-4090")
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_binary_fifo_and_huge_files(tmp_path: Path, run_cli: Run) -> None:
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x00\x01\x02")
    assert "binary (it holds NUL bytes)" in run_cli("diagnose", str(binary)).stderr
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = run_cli("diagnose", str(fifo))
    assert r.exit_code == 2 and "not a regular file" in r.stderr
    big = tmp_path / "big.txt"
    with big.open("wb") as f:
        f.truncate(65 * 1024 * 1024)
    r = run_cli("diagnose", str(big))
    assert r.exit_code == 2 and "too large" in r.stderr


def test_csv_without_header_takes_used_and_total() -> None:
    """`--format=csv,noheader,nounits` of memory.used,memory.total: used is the smaller figure."""
    r = parse_smi("1234, 24564\n", "x")
    assert r.kind == "query-gpu" and (r.samples[0].used_mib, r.samples[0].total_mib) == (1234, 24564)
    with pytest.raises(SpecError, match="add the header"):
        parse_smi("0, 1234, 24564, 99\n", "x")

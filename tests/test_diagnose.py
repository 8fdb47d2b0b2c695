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
    35 of 47 layers on the card (22.73 GiB there) and 7.90 GiB of weights and KV in host memory;
    a monitor showing ~30 GB adds the two (22.73 + 7.90 = 30.63 GiB). Decode at 3 tokens/s is
    the offload cliff the assessment predicts (4.9)."""
    r = run_cli(
        "diagnose", "--gpu", "rtx-4090", "--used", "30GB", "--model", "gemma-2-27b", "--bits", "4",
        "--engine", "ollama", "--users", "10", "--ctx", "4096", "--tokens-per-s", "3", "--json",
    )  # fmt: skip
    assert r.exit_code == 1
    d = _json(r)
    assert [f["code"] for f in d["findings"]] == ["above_physical_limit", "offload_cliff"]
    assert "= 30.63 GiB, the reading's size: the monitor adds the two" in d["findings"][0]["message"]
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
    with pytest.raises(SpecError, match="pass --header with the --query-gpu fields"):
        parse_smi("0, 1234, 24564, 99\n", "x")


# --- published nvidia-smi outputs (tests/fixtures/smi/sources.yaml) ----------------------------

SMI = Path(__file__).parent / "fixtures" / "smi"


def _smi(name: str) -> Path:
    return next(SMI.glob(f"{name}-*.txt"))


def test_every_published_output_is_read() -> None:
    """17 published outputs (tables of drivers 390-610, query-gpu and compute-apps CSV): every
    one reads, except the noheader time series, which needs its columns named (--header)."""
    import yaml

    from vramcalc.readings.smi import read_smi

    sources = yaml.safe_load((SMI / "sources.yaml").read_text())["outputs"]
    assert len(sources) == 17 and all(s["source"] for s in sources)
    for s in sources:
        if s["file"].startswith("13-"):
            with pytest.raises(SpecError, match="pass --header with the --query-gpu fields"):
                read_smi(str(SMI / s["file"]))
        else:
            assert read_smi(str(SMI / s["file"])).samples or read_smi(str(SMI / s["file"])).processes


def test_table_figures() -> None:
    """The figures each table prints: a 2080 Ti at 8,840 / 11,264 MiB with python 8,832 and Xorg
    4 (driver 535); three 3090s, GPU 0 at 24,238 / 24,576 (530); a GB10 whose memory reads "Not
    Supported" (unified memory); a Windows laptop whose processes read N/A (WDDM); the H200 row
    whose process memory nvidia-smi cut to "13020..." (570)."""
    from vramcalc.readings.smi import read_smi

    t = read_smi(str(_smi("01")))
    assert (t.samples[0].used_mib, t.samples[0].total_mib) == (8840, 11264)
    assert [(p.name, p.used_mib) for p in t.processes] == [("python", 8832), ("/usr/lib/Xorg", 4)]
    assert next((s.used_mib, s.total_mib) for s in read_smi(str(_smi("02"))).samples) == (24238, 24576)
    gb10 = read_smi(str(_smi("06")))
    assert gb10.samples[0].used_mib is None and len(gb10.processes) == 11
    laptop = read_smi(str(_smi("08")))
    assert len(laptop.processes) == 18 and all(p.used_mib is None for p in laptop.processes)
    h200 = read_smi(str(_smi("03")))
    assert h200.processes[0].name == "VLLM::EngineCore" and h200.processes[0].used_mib is None


def test_vllm_at_ninety_percent_is_by_design(run_cli: Run) -> None:
    """8 x H200, GPU 0 at 130,215 of 143,771 MiB (vLLM's 0.9): near_full, a note; exit 0."""
    r = run_cli("diagnose", str(_smi("03")), "--json")
    assert r.exit_code == 0
    d = _json(r)
    assert d["gpu"] == "h200" and [f["code"] for f in d["findings"]] == ["near_full"]
    assert d["findings"][0]["figures"]["used_gib"] == pytest.approx(130215 / 1024, abs=0.001)


def test_two_engines_on_one_card(run_cli: Run) -> None:
    """Two VLLM::EngineCore processes on one card (6,265 and 5,530 MiB, within 15%):
    duplicate_model_copies, 2 copies; the extra cost is one copy (the mean, 5,897.5 MiB)."""
    r = run_cli("diagnose", str(_smi("16")), "--json")
    assert r.exit_code == 1
    f = _json(r)["findings"][0]
    assert f["code"] == "duplicate_model_copies" and f["figures"]["copies"] == 2
    assert f["figures"]["extra_gib"] == pytest.approx(5897.5 / 1024, abs=0.001)


def test_processes_on_different_cards_are_not_copies(run_cli: Run) -> None:
    """compute-apps keyed by gpu_uuid: three python processes of ~127 GiB on three H200s are one
    each, not copies on one card."""
    r = run_cli("diagnose", str(_smi("15")), "--json")
    assert [f["code"] for f in _json(r)["findings"]] == [] and r.exit_code == 0


def test_memory_nobody_owns_is_a_container(run_cli: Run) -> None:
    """Two 3090s at 23,074 and 23,106 MiB with "No running processes found" (vLLM in docker):
    processes_not_visible, 46,180 MiB unowned."""
    d = _json(run_cli("diagnose", str(_smi("05")), "--json"))
    f = next(x for x in d["findings"] if x["code"] == "processes_not_visible")
    assert f["figures"]["unowned_gib"] == pytest.approx(46180 / 1024, abs=0.001) and f["problem"] is False


def test_a_noheader_time_series_with_its_columns(run_cli: Run) -> None:
    """OmniOpt's noheader samples of 3 A100-40GB with their documented columns: memory.used goes
    4 -> 38,803 -> 39,671 MiB (loading, then steady): no growing_memory; the fullest card (39,671
    of 40,960 MiB) is near_full."""
    header = (
        "timestamp, name, pci.bus_id, driver_version, pstate, pcie.link.gen.max, pcie.link.gen.current, "
        "temperature.gpu, utilization.gpu [%], utilization.memory [%], memory.total [MiB], memory.free [MiB], "
        "memory.used [MiB]"
    )
    d = _json(run_cli("diagnose", str(_smi("13")), "--header", header, "--json"))
    assert d["gpu"] == "a100-40gb-sxm"
    assert [f["code"] for f in d["findings"]] == ["near_full"]
    assert d["findings"][0]["figures"]["used_gib"] == pytest.approx(39671 / 1024, abs=0.001)


def test_growing_memory_by_hand() -> None:
    """A synthetic -l 60 series (hand-made, not published: no published leak series was found) of
    one 24 GiB card: 8,000, 8,500, 9,000, 9,600, 10,100 MiB: +2,100 MiB over 5 samples, 525 MiB a
    sample, above 5% of 24,576 MiB: growing_memory; (24,576 - 10,100) / 525 = 27.6 samples left."""
    from vramcalc.core.diagnose import diagnose as explain

    rows = "\n".join(
        f"2026/01/01 00:0{i}:00.000, {used} MiB, 24576 MiB"
        for i, used in enumerate((8000, 8500, 9000, 9600, 10100))
    )
    reading = parse_smi("timestamp, memory.used [MiB], memory.total [MiB]\n" + rows + "\n", "series")
    d = explain([reading])
    f = next(x for x in d.findings if x.code == "growing_memory")
    assert f.figures["mib_per_sample"] == 525.0 and "full in 28 more samples" in f.message


def test_cut_names_match_by_their_total(run_cli: Run) -> None:
    """nvidia-smi cuts long names: "NVIDIA RTX PRO 6000 Blac..." at 97,887 MiB is the catalog's RTX PRO
    6000 Blackwell (nvidia-smi total 97,887 MiB); "NVIDIA GeForce RTX 4060 ..." at 8,188 MiB (a laptop
    part) is not the 16 GB RTX 4060 Ti the cut name also starts."""
    assert _json(run_cli("diagnose", str(_smi("04")), "--json"))["gpu"] == "rtx-pro-6000-blackwell"
    laptop = _json(run_cli("diagnose", str(_smi("08")), "--json"))
    assert laptop["gpu"] is None and laptop["gpu_names"] == ["NVIDIA GeForce RTX 4060 ..."]

"""Layer 5: the CLI through its real entry point: exit codes 0/1/2, stdout vs stderr, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, CliResult

Run = Callable[..., CliResult]
HEADLINE = ("estimate", "gemma-2-27b", "--bits", "4", "--ctx", "4096", "--users", "10")


def test_headline_json(run_cli: Run) -> None:
    """The issue's example: ~15 GiB int4 weights, 14.375 GiB KV, total low-to-mid 30s GiB.

    Current vLLM on no named GPU: weights + rotary cache 15,895,135,232; sampler (FlashInfer's
    kernels, the default path of 0.33 and 0.34) 256 rows x 256,000 x 14 B = 917,504,000; reserve 1,213,328,261
    (see test_formulas.test_headline_total)."""
    r = run_cli(*HEADLINE, "--json")
    assert r.exit_code == 0 and r.stderr == ""
    d = json.loads(r.stdout)
    assert d["schema_version"] == 2
    assert d["model"] == {
        "id": "gemma-2-27b",
        "name": "Gemma 2 27B",
        "params": 27_227_128_320,
        "params_active": 27_227_128_320,
    }
    assert d["workload"] == {
        "ctx_tokens": 4096,
        "users": 10,
        "fill": 1.0,
        "workers": 1,
        "shared_prefix_tokens": 0,
    }
    assert d["engine"]["name"] == "vllm" and d["engine"]["version"] == "0.34"
    assert d["engine"]["settings"]["max_num_seqs"] == 256
    assert d["weights"]["format"] == "awq-int4" and d["weights"]["bytes"] == 15_895_135_232
    assert d["weights"]["checkpoint_bytes"] == 15_893_038_080
    assert d["kv_cache"]["bytes_per_token"] == 376_832
    assert d["kv_cache"]["bytes_per_sequence"] == 4096 * 376_832
    assert d["kv_cache"]["bytes"] == 15_435_038_720
    assert d["activations"]["bytes"] == 917_504_000
    assert d["reserve"]["bytes"] == 1_213_328_261
    assert d["total_bytes"] == 33_461_006_213
    assert 30 * 2**30 < d["total_bytes"] < 36 * 2**30
    assert [row["users"] for row in d["by_users"]] == list(range(1, 11))
    assert d["by_users"][-1]["verdict"] is None  # no --gpu named
    # each tier is assessed on its reference card: vLLM on a 4090 holds 1 request, so 10 queue
    assert d["by_users"][-1]["verdicts"] == {
        "rtx-4090": "queues",
        "l40s": "fits",
        "h100-sxm": "fits",
    }
    assert [row["verdicts"]["rtx-4090"] for row in d["by_users"]][:3] == ["fits", "queues", "queues"]
    assert d["gpu"] is None and d["assessment"] is None
    assert all(isinstance(d[k]["bytes"], int) for k in ("weights", "kv_cache", "activations", "reserve"))
    assert d["assumptions"] and d["warnings"] == []
    assert {t["key"] for t in d["terms"]} == {"weights", "kv_cache", "activations", "reserve", "copies"}


def test_json_short_flag_equals_format_json(run_cli: Run) -> None:
    assert run_cli(*HEADLINE, "--json").stdout == run_cli(*HEADLINE, "--format", "json").stdout


def test_gpu_fit_and_exit_codes(run_cli: Run) -> None:
    """On an RTX 4090 10 users queue (exit 1): vLLM 0.34's KV cache sized after warmup (2.56 GiB at
    the sampler range's low end, test_check hand figures) holds 1.78 requests of 4,096 tokens, so 1
    runs and 9 wait; on an L40S all 10 fit."""
    r = run_cli(*HEADLINE, "--gpu", "rtx-4090", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert [row["verdict"] for row in doc["by_users"]][:4] == ["fits", "queues", "queues", "queues"]
    assert [row["users_at_once"] for row in doc["by_users"]][:4] == [1, 1, 1, 1]
    assert doc["by_users"][2]["verdicts"] == {"rtx-4090": "queues"}
    assert doc["gpu"] == {
        "id": "rtx-4090",
        "usable_bytes": 24564 * 2**20,
        "usable_basis": "24,564 MiB total as nvidia-smi/rocm-smi reports it",
    }
    a = doc["assessment"]
    assert (a["verdict"], a["users"], a["users_at_once"]) == ("queues", 10, 1)
    # vLLM 0.34 holds the context, what it measured, its cache and the profiled peak, whatever the
    # users (test_check hand figures)
    assert a["per_gpu_bytes"] == 23_626_252_288
    assert a["headroom_bytes"] == 24564 * 2**20 - 23_626_252_288
    assert a["ttft_s"] > a["wait_s"] > 0  # the first token waits for a place (core.serving)
    assert a["serving"]["running"] == 1 and a["serving"]["median_ttft_s"] == pytest.approx(
        a["ttft_s"], rel=1e-3
    )
    assert {"verdict", "users", "users_at_once", "per_gpu_bytes", "usable_bytes", "headroom_bytes",
            "decode_tokens_per_s_per_user", "aggregate_tokens_per_s", "ttft_s", "wait_s", "regime",
            "reasons"} <= set(a)  # fmt: skip
    ok = run_cli(*HEADLINE, "--gpu", "l40s")
    assert ok.exit_code == 0 and "Fits l40s" in ok.stdout
    two_users = run_cli("estimate", "gemma-2-27b", "--bits", "4", "--users", "2", "--gpu", "4090")
    assert two_users.exit_code == 1  # the sampler's larger peak leaves a pool for 1
    capped = run_cli(
        "estimate", "gemma-2-27b", "--bits", "4", "--users", "2", "--gpu", "4090", "--max-num-seqs", "2"
    )
    assert capped.exit_code == 0


def test_markdown_and_csv(run_cli: Run) -> None:
    md = run_cli(*HEADLINE, "--format", "markdown")
    assert md.exit_code == 0 and "| Total | 31.16 | 100% |" in md.stdout
    csv = run_cli(*HEADLINE, "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("model,format,kv_dtype,ctx_tokens,users,kv_bytes,total_bytes")
    assert csv[-1] == "gemma-2-27b,awq-int4,bf16,4096,10,15435038720,33461006213,queues,fits,fits"


def test_explain_shows_formulas_and_sources(run_cli: Run) -> None:
    r = run_cli(*HEADLINE, "--explain")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "23 full-length layers x 10 users x 4,096 tokens" in text
    assert "source:" in text and "pytorch#107667" in text


def test_users_above_16_are_a_geometric_selection(run_cli: Run) -> None:
    d = json.loads(run_cli("estimate", "llama-3.1-8b", "--users", "20", "--json").stdout)
    assert [row["users"] for row in d["by_users"]] == [1, 2, 4, 8, 16, 20]


def test_models_and_gpus_commands(run_cli: Run) -> None:
    models = json.loads(run_cli("models", "list", "--json").stdout)
    assert len(models) >= 35 and {"id", "params", "kv_bytes_per_token_bf16"} <= set(models[0])
    gpus = json.loads(run_cli("gpus", "list", "--json").stdout)
    assert len(gpus) >= 45
    shown = json.loads(run_cli("models", "show", "google/gemma-2-27b-it", "--json").stdout)
    assert shown["hidden_size"] == 4608 and shown["computed"]["params"] == 27_227_128_320
    gpu = json.loads(run_cli("gpus", "show", "H100", "--json").stdout)
    assert gpu["id"] == "h100-sxm" and gpu["usable_mib"] == 81559
    assert run_cli("models", "list").exit_code == 0
    assert "rtx-4090" in run_cli("gpus", "list").stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("estimate", "gemma-2-72b"), "unknown model 'gemma-2-72b'; did you mean gemma-2-2b, gemma-2-27b"),
        (("estimate", "gemma-2-27b", "--gpu", "rtx4091"), "unknown GPU 'rtx4091'; did you mean rtx-4090"),
        (("estimate", "gemma-2-27b", "--users", "0"), "--users must be a positive integer"),
        (("estimate", "gemma-2-27b", "--users", "-3"), "--users must be a positive integer"),
        (("estimate", "gemma-2-27b", "--users", "2.5"), "Invalid value for '--users'"),
        (("estimate", "gemma-2-27b", "--ctx", "0"), "--ctx must be a positive integer"),
        (("estimate", "gemma-2-27b", "--ctx", "lots"), "Invalid value for '--ctx'"),
        (
            ("estimate", "gemma-2-27b", "--ctx", "16384"),
            "exceeds gemma-2-27b's max_position_embeddings (8192)",
        ),
        (("estimate", "gemma-2-27b", "--quant", "q4km"), "unknown weight format 'q4km'"),
        (("estimate", "gemma-2-27b", "--bits", "5"), "--bits 5: no conventional 5-bit format"),
        (("estimate", "gemma-2-27b", "--bits", "4", "--quant", "fp8"), "give --bits or --quant, not both"),
        (("estimate", "gemma-2-27b", "--kv-dtype", "fp9"), "unknown --kv-dtype 'fp9'"),
        (("estimate", "gemma-2-27b", "--engine", "vlm"), "unknown --engine 'vlm'; did you mean vllm?"),
        (("estimate", "gemma-2-27b", "--fill", "0"), "--fill must be in (0, 1]"),
        (("estimate", "gemma-2-27b", "--shared-prefix", "5000"), "exceeds --ctx 4096"),
        (
            ("estimate", "gemma-2-27b", "--format", "xml"),
            "unknown format 'xml'; choose table, json, markdown or csv",
        ),
        (("estimate",), "Missing argument 'MODEL'"),
        (("models", "show", "llama-9"), "unknown model 'llama-9'"),
    ],
)
def test_bad_input_is_one_line_exit_2(run_cli: Run, args: tuple[str, ...], needle: str) -> None:
    r = run_cli(*args)
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("vramcalc: error: ")
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_long_ctx_allowed_with_flag(run_cli: Run) -> None:
    r = run_cli("estimate", "gemma-2-27b", "--ctx", "16384", "--allow-long-ctx", "--json")
    assert r.exit_code == 0
    assert "exceeds" in json.loads(r.stdout)["warnings"][0]


def _user_catalog(tmp_path: Path, name: str, text: str, kind: str = "models") -> Path:
    folder = tmp_path / kind
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return tmp_path


GOOD = (ROOT / "models/llama-3.1-8b.yaml").read_text()


def test_user_catalog_adds_and_overrides(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user entry with the built-in id overrides it; a new id is added; the env var works too."""
    data = yaml.safe_load(GOOD)
    data.update(id="my-llama", hf_id="acme/my-llama", aliases=[])
    custom = yaml.safe_dump(data)
    cat = _user_catalog(tmp_path, "my-llama.yaml", custom)
    r = run_cli("estimate", "my-llama", "--catalog", str(cat), "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["model"]["id"] == "my-llama"
    override = GOOD.replace("max_position_embeddings: 131072", "max_position_embeddings: 4096")
    _user_catalog(tmp_path, "llama-3.1-8b.yaml", override)
    monkeypatch.setenv("VRAMCALC_CATALOG_PATH", str(cat))
    r = run_cli("estimate", "llama-3.1-8b", "--ctx", "8192")
    assert r.exit_code == 2 and "(4096)" in r.stderr


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("id: [unclosed\n", "llama-3.1-8b.yaml:2: malformed YAML"),
        (
            GOOD.replace("hidden_size: 4096", "hiden_size: 4096"),
            "unknown key 'hiden_size'; did you mean 'hidden_size'?",
        ),
        (
            GOOD.replace("hidden_size: 4096", "hidden_size: lots"),
            "hidden_size: Input should be a valid integer",
        ),
        (GOOD.replace("hidden_size: 4096\n", ""), "missing required field 'hidden_size'"),
        ("!!python/object/apply:os.system ['echo hi']\n", "YAML tag not allowed"),
        ("- just\n- a list\n", "expected a mapping of spec fields, the file is a list"),
        ("", "the file is empty"),
        (GOOD.replace("id: llama-3.1-8b", "id: other"), "does not match the file name"),
    ],
)
def test_bad_user_catalog_file(run_cli: Run, tmp_path: Path, text: str, needle: str) -> None:
    cat = _user_catalog(tmp_path, "llama-3.1-8b.yaml", text)
    r = run_cli("estimate", "llama-3.1-8b", "--catalog", str(cat))
    assert (r.exit_code, r.stdout) == (2, "")
    assert r.stderr.count("\n") == 1 and needle in r.stderr, r.stderr


def test_unknown_key_reports_its_line(run_cli: Run, tmp_path: Path) -> None:
    text = GOOD.replace("hidden_size: 4096", "hiden_size: 4096")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if s.startswith("hiden_size"))
    cat = _user_catalog(tmp_path, "llama-3.1-8b.yaml", text)
    assert (
        f"llama-3.1-8b.yaml:{line}: unknown key"
        in run_cli("estimate", "llama-3.1-8b", "--catalog", str(cat)).stderr
    )


def test_duplicate_ids_across_user_catalogs(run_cli: Run, tmp_path: Path) -> None:
    a = _user_catalog(tmp_path / "a", "llama-3.1-8b.yaml", GOOD)
    b = _user_catalog(tmp_path / "b", "llama-3.1-8b.yaml", GOOD)
    r = run_cli("estimate", "llama-3.1-8b", "--catalog", str(a), "--catalog", str(b))
    assert r.exit_code == 2 and "two catalog entries with id 'llama-3.1-8b'" in r.stderr
    r = run_cli("models", "list", "--catalog", str(a), "--catalog", str(b))
    assert r.exit_code == 2 and "two catalog entries" in r.stderr


def test_empty_or_missing_catalog_dir(run_cli: Run, tmp_path: Path) -> None:
    r = run_cli("estimate", "gemma-2-27b", "--catalog", str(tmp_path))
    assert r.exit_code == 2 and "is empty" in r.stderr
    r = run_cli("estimate", "gemma-2-27b", "--catalog", str(tmp_path / "nope"))
    assert r.exit_code == 2 and "does not exist" in r.stderr


def test_version_and_help(run_cli: Run) -> None:
    assert run_cli("--version").stdout.startswith("vramcalc 0.")
    help_text = run_cli("estimate", "--help")
    assert help_text.exit_code == 0 and "--users" in help_text.stdout
    assert run_cli().exit_code == 0


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "vramcalc", "estimate", "qwen3-8b", "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"]["id"] == "qwen3-8b"


def test_progress_bar_only_for_a_person_at_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """check and recommend show a transient progress bar on stderr only when stdout and stderr are
    both terminals and the format is one a person reads; piped, redirected (-o keeps stdout a
    terminal, so it shows) and machine formats (json, junit, github, csv) never get one. Short
    runs (under PROGRESS_AT_LEAST items) pass their items through untouched."""
    import io

    from vramcalc import cli

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert cli._tracker("text") is None  # pytest captures: not a terminal
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr(sys, "stderr", Tty())
    for machine in ("json", "junit", "github", "csv"):
        assert cli._tracker(machine) is None
    track = cli._tracker("text")
    assert track is not None
    short = list(range(cli.PROGRESS_AT_LEAST - 1))
    assert track(short, "checking") is short
    long = list(range(cli.PROGRESS_AT_LEAST))
    tracked = track(long, "checking")
    assert tracked is not long and list(tracked) == long
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # piped: stdout is no terminal
    assert cli._tracker("table") is None

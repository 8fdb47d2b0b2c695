"""`vramcalc observe`: /metrics snapshots of a running server against its assessment (issue 16).

Published pages in tests/fixtures/metrics (sources.yaml). Most do not name their GPU; where a test
needs a deployment it says which one it assumes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import CliResult
from vramcalc.errors import SpecError
from vramcalc.readings.metrics import parse_metrics, read_metrics

Run = Callable[..., CliResult]
METRICS = Path(__file__).parent / "fixtures" / "metrics"


def _page(n: str) -> Path:
    return next(METRICS.glob(f"{n}-*.txt"))


@pytest.mark.parametrize(
    ("n", "engine", "names", "capacity", "running", "waiting"),
    [
        ("01", "vllm", "v1", 34470 * 16, None, None),  # 551,520 = its kv_cache_size_tokens label
        ("02", "vllm", "v1", None, 0, 0),  # cut by `head -40`: ends on a dangling # HELP line
        ("03", "vllm", "v0", 2340 * 16, 0, 0),  # V1 engine still on the old gauge name
        ("04", "vllm", "v0", 2375 * 16, 0, 0),
        ("05", "vllm", "v0", 11560 * 16, 3, 2),
        ("06", "sglang", "", None, 162, 2826),
        ("07", "sglang", "", 161721, 0, 0),  # first metrics: num_requests_running / _waiting
        ("08", "llama.cpp", "", None, 0, 0),  # "-nan(ind)" of MSVC in a metric we do not use
        ("09", "llama.cpp", "", None, 0, 0),
    ],
)
def test_published_pages(n: str, engine: str, names: str, capacity, running, waiting) -> None:  # type: ignore[no-untyped-def]
    s = read_metrics(_page(n))
    assert (s.engine, s.names, s.kv_capacity_tokens, s.running, s.waiting) == (
        engine, names, capacity, running, waiting,
    )  # fmt: skip


def test_histogram_medians() -> None:
    """vllm 05: TTFT and TPOT medians from the cumulative buckets, linear within the bucket that
    holds the middle observation (Prometheus' histogram_quantile); SGLang 07 the same way."""
    s = read_metrics(_page("05"))
    assert s.ttft_p50_s == pytest.approx(0.5526, abs=1e-4) and s.tpot_p50_s == pytest.approx(
        0.03828, abs=1e-5
    )
    assert read_metrics(_page("07")).ttft_p50_s == pytest.approx(0.2109, abs=1e-4)


def test_waiting_while_the_plan_says_all_run(run_cli: Run) -> None:
    """Page 05: 3 running, 2 waiting. Held against Llama-3.1-8B on an H100 at 2,048 tokens
    (assumed: the page hides model and GPU), where the plan runs all 5 at once: `queueing`, exit 1."""
    r = run_cli("observe", str(_page("05")), "--model", "llama-3.1-8b", "--gpu", "h100-sxm",
                "--ctx", "2048", "--engine", "vllm@0.6.5", "--json")  # fmt: skip
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["snapshots"][0]["users"] == 5 and d["snapshots"][0]["planned"]["users_at_once"] == 5
    assert "queueing" in [f["code"] for f in d["findings"]]


def test_write_profile_carries_the_measured_pool(tmp_path: Path, run_cli: Run) -> None:
    """Page 04: Llama-3.1-8B, max_model_len 2,048, V0 (0.6.5 accounting), 2,375 blocks = 38,000
    tokens. On an RTX 4090 (assumed) the plan's pool is larger; --write-profile stores the non-torch
    term that makes it 38,000 tokens, and the estimate with that profile shows 38,000 (to a block)."""
    profile = tmp_path / "pool.yaml"
    args = ("--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--ctx", "2048", "--engine", "vllm@0.6.5")
    r = run_cli("observe", str(_page("04")), *args, "--write-profile", str(profile), "--json")
    assert r.exit_code in (0, 1) and profile.exists()
    est = run_cli("estimate", "llama-3.1-8b", "--gpu", "rtx-4090", "--ctx", "2048", "--engine", "vllm@0.6.5",
                  "--calibration", str(profile), "--json")  # fmt: skip
    tokens = json.loads(est.stdout)["engine"]["kv_capacity_tokens"]
    assert abs(tokens - 38_000) <= 16


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<html><body>404</body></html>", "an HTML or XML page, not /metrics text"),
        ("", "the file is empty"),
        (
            "# TYPE go_gc gauge\ngo_gc 1\n",
            "neither a /metrics page of vLLM, SGLang or llama-server nor nvidia-smi",
        ),
        ("vllm:num_requests_running 1\nvllm:num_requests_waiting NaN\n", "not a valid reading"),
        ("vllm:num_requests_running -3\n", "not a valid reading"),
        (
            'vllm:cache_config_info{num_gpu_blocks="' + "9" * 20 + '",block_size="16"} 1\n',
            "is not a whole number",
        ),
        ('vllm:num_requests_running{model_name="' + "x" * 100_000 + '"} 1\n', "is not a /metrics line"),
        ("vllm:num_requests_running one\n", "not valid Prometheus text"),
    ],
)
def test_hostile_pages(tmp_path: Path, run_cli: Run, content: str, message: str) -> None:
    page = tmp_path / "m.txt"
    page.write_text(content)
    r = run_cli("observe", str(page), "--model", "llama-3.1-8b", "--gpu", "h100-sxm")
    assert r.exit_code == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_page_of_another_engine(run_cli: Run) -> None:
    r = run_cli(
        "observe", str(_page("07")), "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--engine", "vllm"
    )
    assert r.exit_code == 2 and "a sglang /metrics page; the deployment runs vllm" in r.stderr


@pytest.fixture
def server() -> Iterator[str]:
    """A local HTTP server: /metrics serves page 04, /away redirects to another host."""
    body = _page("04").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", "http://example.invalid/metrics")
                self.end_headers()
                return
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_url_fetches_and_never_leaves_the_host(server: str, run_cli: Run) -> None:
    args = (
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "rtx-4090",
        "--ctx",
        "2048",
        "--engine",
        "vllm@0.6.5",
        "--json",
    )
    ok = run_cli("observe", "--url", f"{server}/metrics", *args)
    assert ok.exit_code in (0, 1) and json.loads(ok.stdout)["snapshots"][0]["kv_capacity_tokens"] == 38_000
    away = run_cli("observe", "--url", f"{server}/away", *args)
    assert away.exit_code == 2 and "redirected to another host (example.invalid); not followed" in away.stderr
    creds = run_cli("observe", "--url", "http://user:pw@127.0.0.1:1/metrics", *args)
    assert creds.exit_code == 2 and "credentials in the address are not sent" in creds.stderr


def test_parse_is_bounded() -> None:
    with pytest.raises(SpecError, match="is not a /metrics line"):
        parse_metrics("vllm:x " + "1" * 70_000, "big")


def test_nvidia_smi_against_the_plan(run_cli: Run) -> None:
    """nvidia-smi of 8 x H200 (GPU 0 at 130,215 MiB = 127.16 GiB) held against Llama-3.1-70B bf16 on
    one H200 (assumed): the busiest card against the plan's per-GPU bytes, within 5%: exit 0."""
    r = run_cli("observe", "tests/fixtures/smi/03-table-8xh200-570-vllm-90pct-truncated-mem.txt",
                "--model", "llama-3.1-70b", "--gpu", "h200", "--quant", "bf16", "--json")  # fmt: skip
    d = json.loads(r.stdout)
    c = d["comparisons"][0]
    assert c["quantity"] == "GPU memory in use (GiB, the busiest card)" and c["observed"] == 127.163
    assert r.exit_code == 0 and d["findings"] == []


def test_a_directory_is_a_series_and_a_plan_names_the_deployment(tmp_path: Path, run_cli: Run) -> None:
    """Two vLLM pages in a directory (notes beside them are not read) become two rows; a plan's
    deployment is named with --deployment, and a wrong name gets the close match."""
    import shutil

    for n in ("04", "05"):
        shutil.copy(_page(n), tmp_path / _page(n).name)
    (tmp_path / "notes.md").write_text("# not a snapshot\n")
    plan = "examples/plans/gemma-2-27b-4090-2-users.yaml"
    r = run_cli("observe", str(tmp_path), "--plan", plan, "--deployment", "gemma-27b-4090-2-users", "--json")
    assert [s["source"].rsplit("/", 1)[-1][:2] for s in json.loads(r.stdout)["snapshots"]] == ["04", "05"]
    bad = run_cli("observe", str(tmp_path), "--plan", plan, "--deployment", "gemma-27b-4090-2-user")
    assert bad.exit_code == 2 and "did you mean 'gemma-27b-4090-2-users'?" in bad.stderr


def test_stdin_fifo_and_huge_files(tmp_path: Path, run_cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """`-` reads stdin; a FIFO and a file past the size limit are one-line errors (the reader never
    blocks on the FIFO nor reads the 2 GB file)."""
    import io
    import os

    monkeypatch.setattr("sys.stdin", io.StringIO(_page("04").read_text()))
    args = ("--model", "llama-3.1-8b", "--gpu", "rtx-4090", "--ctx", "2048", "--json")
    r = run_cli("observe", "-", *args)
    assert json.loads(r.stdout)["snapshots"][0]["source"] == "<stdin>"
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert "not a regular file" in run_cli("observe", str(fifo), *args).stderr
    big = tmp_path / "big.prom"
    with big.open("wb") as f:
        f.truncate(2 * 1024**3)
    r = run_cli("observe", str(big), *args)
    assert r.exit_code == 2 and "too large" in r.stderr


def test_a_v1_profile_pins_the_pool_and_drops_the_sampler_range(tmp_path: Path, run_cli: Run) -> None:
    """Page 03 (vLLM V1, Qwen3-0.6B, 2,340 blocks = 37,440 tokens; an RTX 4090 and 2,048 tokens are
    assumed): --write-profile, then the estimate with it shows 37,440 tokens (to a block) and no
    sampler range: the measured pool holds the install's own path."""
    profile = tmp_path / "v1.yaml"
    args = ("--model", "qwen3-0.6b", "--gpu", "rtx-4090", "--ctx", "2048", "--engine", "vllm@0.10")
    run_cli("observe", str(_page("03")), *args, "--write-profile", str(profile))
    est = json.loads(
        run_cli("estimate", "qwen3-0.6b", *args[2:], "--calibration", str(profile), "--json").stdout
    )
    assert abs(est["engine"]["kv_capacity_tokens"] - 37_440) <= 16
    assert est["engine"]["ranges"] == {}


def test_vllm_034_unset_utilization_label_reads_as_unset() -> None:
    """vLLM exports CacheConfig as str(value) labels (vllm/config/cache.py metrics_info); 0.34 leaves
    gpu_memory_utilization unset unless given (its extensible KV cache resolves it to 1.0), so the
    label reads "None": not a number, and not an error either."""
    page = (
        "# TYPE vllm:cache_config_info gauge\n"
        'vllm:cache_config_info{block_size="64",cache_dtype="auto",gpu_memory_utilization="None",'
        'num_gpu_blocks="7576",enable_extensible_kv_cache="True"} 1.0\n'
    )
    s = parse_metrics(page, "page")
    assert (s.gpu_memory_utilization, s.num_gpu_blocks, s.block_size) == (None, 7576, 64)
    assert s.kv_capacity_tokens == 7576 * 64
    with pytest.raises(SpecError, match="gpu_memory_utilization 'nine' is not a number"):
        parse_metrics(page.replace('"None"', '"nine"'), "page")

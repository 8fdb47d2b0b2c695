"""What each engine does past its limit, on the cases that used to contradict each other."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.conftest import CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.assess import Deployment, assess
from vramcalc.core.engines.base import EngineSettings
from vramcalc.core.speed import PCIE_BANDWIDTH_GBS, speed

Run = Callable[..., CliResult]
CAT = Catalog()
GEMMA = CAT.models.get("gemma-2-27b")
RTX4090 = CAT.gpus.get("rtx-4090")


def _gemma(users: int, **kw: object) -> Deployment:
    return Deployment(model=GEMMA, gpu=RTX4090, users=users, bits=4, **kw)  # type: ignore[arg-type]


def test_twelve_and_thirteen_users_queue_and_slow_down_smoothly() -> None:
    """vLLM 0.34 holds 1 of them either way (pool 2.56 GiB at the sampler range's low end / 1.44 GiB
    per user): the one running streams at the same speed (one TPOT); the others wait for a place,
    W = (N - 1) / 1 x latency (core.serving), so 13 users wait 12/11 as long as 12, and the first
    token comes later."""
    twelve, thirteen = assess(_gemma(12)), assess(_gemma(13))
    assert (twelve.verdict, thirteen.verdict) == ("queues", "queues")
    assert twelve.users_at_once == thirteen.users_at_once == 1
    assert twelve.speed is not None and thirteen.speed is not None
    assert twelve.speed.step_s == thirteen.speed.step_s
    assert twelve.decode_tokens_per_s_per_user == pytest.approx(thirteen.decode_tokens_per_s_per_user)
    assert twelve.wait_s is not None and thirteen.wait_s is not None
    assert thirteen.wait_s == pytest.approx(twelve.wait_s * 12 / 11, rel=1e-9)
    assert (thirteen.ttft_s or 0) > (twelve.ttft_s or 0)
    assert twelve.offloaded_bytes == thirteen.offloaded_bytes == 0


def test_three_users_queue_they_do_not_refuse_to_start() -> None:
    a = assess(_gemma(3))
    assert a.verdict == "queues" and a.users_at_once == 1
    assert not any("refuse" in r for r in a.reasons)
    assert a.per_gpu_bytes == assess(_gemma(1)).per_gpu_bytes  # the pre-allocation, not the users


def test_llama_cpp_five_users_offload_one_layer() -> None:
    """--fit keeps 1 GiB free: 46 of 47 layers on the GPU, the verdict says so (it used to say fits)."""
    a = assess(_gemma(5, engine="llama.cpp"))
    assert a.verdict == "offloads"
    assert a.scenario.view is not None and a.scenario.view.value("gpu_layers") == 46
    assert a.offloaded_bytes > 0 and a.per_gpu_bytes <= a.usable_bytes


def test_three_vllm_workers_do_not_start_together() -> None:
    """Each of 3 processes sizes its KV cache to all the memory it finds (vLLM 0.34's extensible
    cache, gpu_memory_utilization unset = 1.0): 3 x 1 > 1, whatever the model's size."""
    a = assess(Deployment(model=CAT.models.get("qwen2.5-0.5b"), gpu=RTX4090, users=4, workers=3))
    assert a.verdict == "does_not_start"
    assert "3 x gpu_memory_utilization 1 > 1" in a.reasons[0]
    assert (
        a.per_gpu_bytes
        == 3 * assess(Deployment(model=CAT.models.get("qwen2.5-0.5b"), gpu=RTX4090, users=4)).per_gpu_bytes
    )
    one = assess(Deployment(model=CAT.models.get("qwen2.5-0.5b"), gpu=RTX4090, users=4, workers=3,
                            settings=EngineSettings(gpu_util=0.3)))  # fmt: skip
    assert one.verdict == "fits"


def test_weights_alone_over_the_card_do_not_fit() -> None:
    a = assess(Deployment(model=CAT.models.get("llama-3.1-70b"), gpu=RTX4090, users=1, quant="fp8"))
    assert a.verdict == "does_not_fit" and "weights alone" in a.reasons[0]


def test_cpu_offload_gb_streams_over_pcie_by_hand() -> None:
    """Llama-3.1-70B fp8 on one H100 SXM, 2 users: without offload vLLM has no KV pool left; with
    --cpu-offload-gb 10 it starts, and each step also copies 10 GiB over PCIe at 25 GB/s:
    10 x 2^30 / 25e9 = 0.4295 s on top of the GPU part (whose weights are 10 GiB smaller)."""
    h100 = CAT.gpus.get("h100-sxm")
    model = CAT.models.get("llama-3.1-70b")
    plain = assess(Deployment(model=model, gpu=h100, users=2, quant="fp8"))
    assert plain.verdict == "does_not_start"
    off = assess(
        Deployment(model=model, gpu=h100, users=2, quant="fp8", settings=EngineSettings(cpu_offload_gb=10))
    )
    assert off.verdict == "offloads" and off.offloaded_bytes == 10 * 2**30
    assert off.scenario.estimate.weights_bytes == plain.scenario.estimate.weights_bytes - 10 * 2**30
    host_s = 10 * 2**30 / (PCIE_BANDWIDTH_GBS * 1e9)
    assert host_s == pytest.approx(0.4295, abs=1e-4)
    gpu_part = speed(off.scenario.estimate, h100, 2).step_s
    assert off.speed is not None and off.speed.step_s == pytest.approx(gpu_part + host_s, rel=1e-9)


def test_check_and_estimate_agree_on_the_ten_user_plan(run_cli: Run) -> None:
    """The 10-user 4090 plan: check's speed and estimate's speed are the same assessment's."""
    plan = json.loads(
        run_cli("check", "examples/plans/gemma-2-27b-4090-10-users.yaml", "--format", "json").stdout
    )
    est = json.loads(run_cli("estimate", "gemma-2-27b", "--bits", "4", "--users", "10", "--gpu", "rtx-4090",
                             "--json").stdout)  # fmt: skip
    a, b = plan["deployments"][0]["assessment"], est["assessment"]
    keys = ("verdict", "users_at_once", "per_gpu_bytes", "decode_tokens_per_s_per_user", "ttft_s", "wait_s")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}

"""Layer 1: formula tests, each value computed by hand with the arithmetic in the docstring."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import toy_model
from vramcalc.catalog import Catalog
from vramcalc.core.activations import activation_bytes
from vramcalc.core.estimate import Workload, usable_gpu_bytes, users_selection, weight_bytes
from vramcalc.core.formats import (
    format_for_bits,
    kv_bytes,
    resolve_format,
    stored_tensor_types,
)
from vramcalc.core.kv import kv_bytes_per_token, kv_cache_bytes
from vramcalc.core.scenario import run
from vramcalc.core.tensors import param_counts, tensor_inventory
from vramcalc.errors import SpecError, UnknownFormatError
from vramcalc.specs import ModelSpec
from vramcalc.units import GIB, MIB


def test_toy_param_count() -> None:
    """embed 1000x256 = 256,000; lm_head 256,000; per layer q 256x256 = 65,536, k and v
    256x128 = 32,768 each, o 65,536, MLP 3 x 256 x 512 = 393,216, norms 2 x 256 = 512
    -> 590,336 per layer; 2 layers = 1,180,672; final norm 256.
    Total 256,000 + 256,000 + 1,180,672 + 256 = 1,692,928."""
    assert param_counts(toy_model()).total == 1_692_928


def test_toy_qkv_bias_and_tied_embeddings() -> None:
    """Tied: minus the 256,000 lm_head; qkv bias adds (256 + 128 + 128) x 2 layers = 1,024."""
    assert (
        param_counts(toy_model(tie_word_embeddings=True, qkv_bias=True)).total == 1_692_928 - 256_000 + 1_024
    )


def test_gemma2_27b_kv_bytes_per_token(gemma2_27b: ModelSpec) -> None:
    """2 (K,V) x 46 layers x 16 kv_heads x 128 head_dim x 2 B = 376,832 B (issue 2's figure)."""
    assert kv_bytes_per_token(gemma2_27b, "bf16") == 376_832


def test_gemma2_27b_sliding_window_per_sequence(gemma2_27b: ModelSpec) -> None:
    """At 8192 tokens: 23 global layers x 8192 x 8192 B + 23 sliding layers x 4096 x 8192 B
    (8192 B = 2 x 16 x 128 x 2 per layer per token) = 1,543,503,872 + 771,751,936
    = 2,315,255,808 B = 2.15625 GiB (engines.md 0.1: 2.156 GiB)."""
    use = kv_cache_bytes(gemma2_27b, "bf16", 8192, 1)
    assert use.global_bytes == 1_543_503_872
    assert use.local_bytes == 771_751_936
    assert use.bytes / GIB == 2.15625


def test_headline_kv_ten_users(gemma2_27b: ModelSpec) -> None:
    """10 users x 4096 tokens x 376,832 B (window 4096 >= ctx, no saving) = 15,435,038,720 B
    = 14.375 GiB exactly (issue 2)."""
    assert kv_cache_bytes(gemma2_27b, "bf16", 4096, 10).bytes == 15_435_038_720


def test_mla_latent_cache(catalog: Catalog) -> None:
    """DeepSeek-V3: (512 kv_lora_rank + 64 rope) x 61 layers x 2 B = 70,272 B per token,
    not 2 x 128 heads x 192 x 61 x 2 (the expanded per-head figure)."""
    assert kv_bytes_per_token(catalog.models.get("deepseek-v3"), "bf16") == 70_272


def test_quantized_kv_dtypes(llama31_8b: ModelSpec) -> None:
    """Llama-3.1-8B has 2 x 8 x 128 = 2048 values per layer per token.
    q8_0: 2048/32 blocks x 34 B = 2176 B/layer -> x 32 layers = 69,632 B/token.
    q4_0: 64 x 18 = 1152 B/layer -> 36,864 B/token. fp8: 2048 x 32 = 65,536 B/token.
    At 8192 tokens q8_0 = 544 MiB and q4_0 = 288 MiB (engines.md 2.6)."""
    assert kv_bytes("q8_0", 2048) == 2176
    assert kv_bytes_per_token(llama31_8b, "q8_0") == 69_632
    assert kv_bytes_per_token(llama31_8b, "q4_0") == 36_864
    assert kv_bytes_per_token(llama31_8b, "fp8") == 65_536
    assert kv_cache_bytes(llama31_8b, "q8_0", 8192, 1).bytes == 544 * MIB
    assert kv_cache_bytes(llama31_8b, "q4_0", 8192, 1).bytes == 288 * MIB


def test_gpt_oss_window_and_chunked_llama4(catalog: Catalog) -> None:
    """gpt-oss-20b at 4096: 12 global x 4096 x 2048 B + 12 sliding x 128 x 2048 B
    (2048 = 2 x 8 x 64 x 2) = 100,663,296 + 3,145,728 = 103,809,024 B.
    Llama-4-Scout at 32768: 12 global x 32768 x 4096 B + 36 chunked x 8192 x 4096 B
    = 1,610,612,736 + 1,207,959,552 = 2,818,572,288 B = 2.625 GiB."""
    assert kv_cache_bytes(catalog.models.get("gpt-oss-20b"), "bf16", 4096, 1).bytes == 103_809_024
    assert kv_cache_bytes(catalog.models.get("llama-4-scout"), "bf16", 32768, 1).bytes == 2_818_572_288


def test_shared_prefix_held_once(llama31_8b: ModelSpec) -> None:
    """4 users x 1000 tokens with a 600-token shared prefix: 4 x 1000 - 3 x 600 = 2200 token
    slots x 131,072 B (2 x 8 x 128 x 2 x 32 layers) = 288,358,400 B."""
    assert kv_cache_bytes(llama31_8b, "bf16", 1000, 4, 600).bytes == 2200 * 131_072


def test_shared_prefix_leaves_the_window(gemma2_27b: ModelSpec) -> None:
    """Gemma-2 at 6000 tokens, 2 users, 1000-token prefix. Global layers: 2 x 6000 - 1000 = 11,000
    slots. Sliding layers keep tokens [1904, 6000): the prefix [0, 1000) has left the window,
    so nothing is shared: 2 x 4096 = 8192 slots. 23 x 8192 B x (11,000 + 8192) = 3,616,145,408."""
    assert kv_cache_bytes(gemma2_27b, "bf16", 6000, 2, 1000).bytes == 23 * 8192 * (11_000 + 8192)


def test_awq_int4_bits_per_weight() -> None:
    """AWQ g128: 4 bits + 16-bit scale / 128 + 4-bit zero / 128 = 4.15625 bits per weight.
    A 256 x 512 matrix: 131,072 params x 4.15625 / 8 = 68,096 B."""
    from vramcalc.core.formats import DENSE_FORMATS
    from vramcalc.core.tensors import Tensor

    assert DENSE_FORMATS["awq-int4"].matrix_bytes(Tensor("ffn_up", 0, 256, 512)) == 68_096


def test_nf4_and_gptq_bits() -> None:
    """NF4 with double quant: 4 + 8/64 + 32/(64 x 256) = 4.126953125 bits -> 131,072 params =
    67,616 B. GPTQ int4 g128: AWQ's 68,096 B + g_idx 256 rows x 4 B = 69,120 B."""
    from vramcalc.core.formats import DENSE_FORMATS
    from vramcalc.core.tensors import Tensor

    t = Tensor("ffn_up", 0, 256, 512)
    assert DENSE_FORMATS["nf4"].matrix_bytes(t) == 67_616
    assert DENSE_FORMATS["gptq-int4"].matrix_bytes(t) == 69_120


def test_headline_weights_int4(gemma2_27b: ModelSpec) -> None:
    """Gemma-2-27B int4 g128: decoder matrices = 27,227,128,320 - 1,179,648,000 (tied embedding)
    - 46 x 4 x 4608 - 4608 (norms) = 26,046,627,840 params x 4.15625 / 8 = 13,532,037,120 B;
    16-bit embedding 2,359,296,000 B; norms 852,480 x 2 = 1,704,960 B.
    Total 15,893,038,080 B = 14.80 GiB (engines.md 5.4: 14.80 GiB)."""
    use = weight_bytes(gemma2_27b, resolve_format("int4-g128"))
    assert use.checkpoint_bytes == use.gpu_bytes == 15_893_038_080


# engines.md 2.5 "Estimator check": tensor bytes computed from the llama-quant.cpp rules.
GGUF_TABLE_GB = {
    ("llama-3.1-8b", "Q3_K_M"): 4.011,
    ("llama-3.1-8b", "Q4_0"): 4.653,
    ("llama-3.1-8b", "Q4_K_M"): 4.913,
    ("llama-3.1-8b", "Q5_K_M"): 5.725,
    ("llama-3.1-8b", "Q6_K"): 6.588,
    ("llama-3.1-8b", "Q8_0"): 8.533,
    ("llama-3.1-8b", "F16"): 16.061,
    ("gemma-2-27b", "Q3_K_M"): 13.419,
    ("gemma-2-27b", "Q4_0"): 15.622,
    ("gemma-2-27b", "Q4_K_M"): 16.639,
    ("gemma-2-27b", "Q5_K_M"): 19.402,
    ("gemma-2-27b", "Q6_K"): 22.337,
    ("gemma-2-27b", "Q8_0"): 28.931,
}


@pytest.mark.parametrize(("model_id", "quant"), list(GGUF_TABLE_GB))
def test_gguf_tensor_bytes_match_llama_quant_rules(catalog: Catalog, model_id: str, quant: str) -> None:
    """GGUF tensor bytes equal shared/reference/engines.md section 2.5's table (GB = 1e9, 3 decimals),
    which applies llama.cpp src/llama-quant.cpp per tensor."""
    use = weight_bytes(catalog.models.get(model_id), resolve_format(quant))
    assert round(use.checkpoint_bytes / 1e9, 3) == GGUF_TABLE_GB[(model_id, quant)]


def test_gguf_gpu_buffer_excludes_host_embedding(llama31_8b: ModelSpec, gemma2_27b: ModelSpec) -> None:
    """llama.cpp keeps token_embd on the host: Llama-3.1-8B Q4_K_M GPU model buffer 4403.5 MiB and
    host 281.8 MiB (128256 x 4096 Q4_K = 295,501,824 B); Gemma-2 (tied) keeps the whole file's
    tensors on the GPU (output duplicated): 15,868 MiB (engines.md 2.5)."""
    llama = weight_bytes(llama31_8b, resolve_format("Q4_K_M"))
    assert llama.host_bytes == 128256 * 4096 // 256 * 144 == 295_501_824
    assert round(llama.gpu_bytes / MIB, 1) == 4403.5
    gemma = weight_bytes(gemma2_27b, resolve_format("Q4_K_M"))
    assert round(gemma.gpu_bytes / MIB) == 15_868


def test_q4_k_m_more_bits_layers(llama31_8b: ModelSpec, gemma2_27b: ModelSpec) -> None:
    """use_more_bits selects 16 of 32 layers (Llama-3.1-8B) and 22 of 46 (Gemma-2-27B) for Q6_K
    attn_v and ffn_down; the output matrix is Q6_K (engines.md 2.5)."""
    for model, n in ((llama31_8b, 16), (gemma2_27b, 22)):
        tensors = tensor_inventory(model)
        types = stored_tensor_types(resolve_format("Q4_K_M"), model, tensors)
        q6_v = [t.layer for t, ty in zip(tensors, types, strict=True) if t.role == "attn_v" and ty == "Q6_K"]
        q6_down = [
            t.layer for t, ty in zip(tensors, types, strict=True) if t.role == "ffn_down" and ty == "Q6_K"
        ]
        assert len(q6_v) == len(q6_down) == n
    llama_types = dict(
        zip(
            (t.role for t in tensor_inventory(llama31_8b)),
            stored_tensor_types(resolve_format("Q4_K_M"), llama31_8b, tensor_inventory(llama31_8b)),
            strict=False,
        )
    )
    assert llama_types["output"] == "Q6_K"
    assert llama_types["norm"] == "F32"


def test_activation_peak_formula(gemma2_27b: ModelSpec) -> None:
    """2048-token chunk with one hidden buffer: 2048 x (3 x 36,864 + (32 + 2 x 16) x 128 + 4608) x 2 B
    = 2048 x 123,392 x 2 = 505,413,632 B. Sampler for 10 rows: 10 x 256,000 x 38.9 B = 99,584,000.
    Peak = the larger = 505,413,632 B. vLLM V0 keeps fp32 logits beside the forward: 505,413,632 +
    10 x 256,000 x 4 B = 515,653,632 B, still larger than its sampler."""
    act = activation_bytes(gemma2_27b, 2048, 10, sampler_bytes_per_logit=38.9, hidden_temporaries=1.0)
    assert act.forward_bytes == 505_413_632
    assert act.sampler_bytes == 99_584_000
    assert act.bytes == 505_413_632
    both = activation_bytes(
        gemma2_27b, 2048, 10, sampler_bytes_per_logit=38.9, hidden_temporaries=1, forward_logit_bytes=4
    )
    assert both.bytes == 515_653_632


def test_sampler_dominates_with_many_rows(gemma2_27b: ModelSpec) -> None:
    """1024 rows x 256,000 x 38.9 B = 10,197,401,600 B (9.50 GiB) > the forward chunk."""
    act = activation_bytes(gemma2_27b, 2048, 1024, sampler_bytes_per_logit=38.9, hidden_temporaries=1.0)
    assert act.bytes == 10_197_401_600


def test_eager_attention_scores(gemma2_27b: ModelSpec) -> None:
    """transformers runs Gemma-2 eagerly: one layer's scores 32 heads x 8192 x 8192 x 6 B =
    12,884,901,888 B (12 GiB, engines.md 5.3) replace the MLP temporaries
    (8192 x 3 x 36,864 x 2 = 1,811,939,328 B); plus qkv + 3 hidden buffers
    8192 x (8192 + 3 x 4608) x 2 = 360,710,144 B."""
    act = activation_bytes(
        gemma2_27b, 8192, 1, sampler_bytes_per_logit=6, hidden_temporaries=3.0,
        eager_attention=True, attention_score_bytes=6, attention_kv_tokens=8192,
    )  # fmt: skip
    assert act.attention_bytes == 12_884_901_888
    assert act.forward_bytes == 12_884_901_888 + 360_710_144


# vLLM 0.33 on no named GPU: 256 sequences / 2048 batched tokens (the < 70 GiB defaults).
HEADLINE_WEIGHTS = 15_893_038_080 + 8192 * 128 * 2  # + rotary cos/sin cache
HEADLINE_ACT = 256 * 256_000 * 14  # FlashInfer sampler (0.33's images) over max_num_seqs rows dominates
HEADLINE_RESERVE = 512 * MIB + int(0.13 * GIB) + 512 * MIB  # context + non-torch + CUDA graphs


def test_headline_total(gemma2_27b: ModelSpec) -> None:
    """vLLM: weights 15,893,038,080 + rotary cache 8192 x 128 x 2 = 2,097,152; KV 15,435,038,720;
    activations = FlashInfer's sampler (0.33's default path) 256 rows x 256,000 x 14 B = 917,504,000;
    reserve 512 MiB context + 0.13 GiB non-torch + 512 MiB graphs = 1,213,328,261 ->
    33,461,006,213 B = 31.16 GiB: over 24 GiB, under 48 GiB."""
    e = run(gemma2_27b, Workload(4096, 10), bits=4).estimate
    assert e.total_bytes == HEADLINE_WEIGHTS + 15_435_038_720 + int(HEADLINE_ACT) + HEADLINE_RESERVE
    assert e.total_bytes == 33_461_006_213
    assert 24 * GIB < e.by_users[-1].total_bytes < 48 * GIB
    assert e.weight_format.name == "awq-int4"


def test_workers_pay_weights_again(gemma2_27b: ModelSpec) -> None:
    """3 workers: copies = 2 x (weights + activations + reserve); KV is shared out, not copied."""
    one = run(gemma2_27b, Workload(4096, 10), quant="awq-int4").estimate
    three = run(gemma2_27b, Workload(4096, 10, workers=3), quant="awq-int4").estimate
    per_process = HEADLINE_WEIGHTS + int(HEADLINE_ACT) + HEADLINE_RESERVE
    assert three.copies_bytes == 2 * per_process
    assert three.total_bytes == one.total_bytes + 2 * per_process


def test_fill_scales_kv(gemma2_27b: ModelSpec) -> None:
    """fill 0.5 at ctx 4096: each user holds 2048 tokens -> KV 10 x 2048 x 376,832 = 7,717,519,360 B."""
    e = run(gemma2_27b, Workload(4096, 10, fill=0.5), quant="awq-int4").estimate
    assert e.kv.bytes == 7_717_519_360
    assert e.kv_bytes_per_sequence == 4096 * 376_832  # per sequence is always at the full ctx


def test_vllm_block_rounding_and_window(gemma2_27b: ModelSpec) -> None:
    """vLLM 0.33, ctx 8000, 1 user: global layers round 8000 up to 8000 (500 blocks of 16);
    sliding layers keep min(8000, 4096 + 2 x 2048 in flight) = 8000 -> no saving below ~8.2K.
    At ctx 8192 with --max-num-batched-tokens 512 sliding layers keep 4096 + 1024 = 5120 tokens:
    23 x 8192 B x (8192 + 5120) = 2,508,193,792 B."""
    from vramcalc.core.engines.base import EngineSettings

    full = run(gemma2_27b, Workload(8000, 1)).estimate
    assert full.kv.bytes == 46 * 8192 * 8000
    capped = run(gemma2_27b, Workload(8192, 1), settings=EngineSettings(max_num_batched_tokens=512)).estimate
    assert capped.kv.bytes == 23 * 8192 * (8192 + 5120) == 2_508_193_792


def test_users_selection() -> None:
    assert users_selection(10) == list(range(1, 11))
    assert users_selection(16) == list(range(1, 17))
    assert users_selection(20) == [1, 2, 4, 8, 16, 20]
    assert users_selection(64) == [1, 2, 4, 8, 16, 32, 64]


def test_usable_gpu_bytes(catalog: Catalog) -> None:
    """RTX 4090: nvidia-smi 24,564 MiB = 25,757,220,864 B. M3 Max (unified 128 GB x 0.75 wired)
    = 103,079,215,104 B. B200: nvidia-smi 183,359 MiB (not the marketed 180 GiB = 184,320 MiB).
    Intel Gaudi 3 has no measured total: 128 x GiB, stated as an assumption."""
    assert usable_gpu_bytes(catalog.gpus.get("rtx-4090"))[0] == 24564 * MIB == 25_757_220_864
    assert usable_gpu_bytes(catalog.gpus.get("apple-m3-max"))[0] == 103_079_215_104
    assert usable_gpu_bytes(catalog.gpus.get("b200"))[0] == 183359 * MIB
    usable, basis = usable_gpu_bytes(catalog.gpus.get("gaudi3"))
    assert usable == 128 * GIB and "marketed" in basis


def test_bits_pick_conventional_formats() -> None:
    assert format_for_bits(4, gguf_engine=False).name == "awq-int4"
    assert format_for_bits(4, gguf_engine=True).name == "Q4_K_M"
    assert format_for_bits(8, gguf_engine=False).name == "fp8"
    with pytest.raises(UnknownFormatError, match="--bits 5"):
        format_for_bits(5, gguf_engine=False)


def test_bits_keep_a_checkpoint_shipped_at_that_width(run_cli: Any) -> None:
    """A model shipped at the asked width keeps its own format on PyTorch engines: gpt-oss --bits 4
    is its MXFP4 checkpoint (no AWQ of it is needed), DeepSeek-R1 --bits 8 its FP8 one; another width,
    or a GGUF engine, takes the conventional format."""
    assert format_for_bits(4, gguf_engine=False, native="mxfp4-moe").name == "mxfp4-moe"
    assert format_for_bits(8, gguf_engine=False, native="fp8").name == "fp8"
    assert format_for_bits(16, gguf_engine=False, native="mxfp4-moe").name == "bf16"
    assert format_for_bits(4, gguf_engine=True, native="mxfp4-moe").name == "Q4_K_M"
    assert format_for_bits(4, gguf_engine=False, native="fp8").name == "awq-int4"
    out = json.loads(run_cli("recommend", "gpt-oss-120b", "--users", "2", "--json").stdout)
    assert out["scenario"]["format"] == "mxfp4-moe"


def test_long_ctx_is_an_error_unless_allowed(gemma2_27b: ModelSpec) -> None:
    with pytest.raises(SpecError, match="max_position_embeddings"):
        run(gemma2_27b, Workload(9000, 1))
    e = run(gemma2_27b, Workload(9000, 1, allow_long_ctx=True)).estimate
    assert e.warnings and "9000" in e.warnings[0]


def test_kv_arithmetic_runs_once_per_layer_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cost follows the distinct layer kinds, not the layers: Llama-3.1-70B's 80 identical layers
    are one group (one call of the per-layer byte formula), Gemma-2's 46 alternating layers two."""
    from vramcalc.catalog import Catalog
    from vramcalc.core import kv

    calls = []
    real = kv.kv_bytes

    def counting(dtype: str, elements: int) -> int:
        calls.append(elements)
        return real(dtype, elements)

    monkeypatch.setattr(kv, "kv_bytes", counting)
    kv.kv_cache_bytes.cache_clear()  # memoised: count the arithmetic, not a remembered answer
    cat = Catalog()
    llama = cat.models.get("llama-3.1-70b")
    use = kv.kv_cache_bytes(llama, "bf16", 4096, 10)
    assert len(calls) == 1
    # 80 layers x 2 x 8 KV heads x 128 head_dim x 2 B x 4,096 tokens x 10 users
    assert use.bytes == 80 * 2 * 8 * 128 * 2 * 4096 * 10
    calls.clear()
    kv.kv_cache_bytes(cat.models.get("gemma-2-27b"), "bf16", 8192, 3)
    assert len(calls) == 2

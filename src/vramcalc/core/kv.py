"""KV-cache bytes per layer type: the one formula every command uses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Literal

from vramcalc.core.formats import kv_bytes
from vramcalc.specs import ModelSpec

LayerKind = Literal["global", "sliding", "chunked"]


@dataclass(frozen=True, slots=True)
class KvLayer:
    """What one layer caches per token, and how many tokens it keeps at most."""

    kind: LayerKind
    elements_per_token: int  # K and V values (or the MLA latent) for one token in this layer
    window_tokens: int | None  # None: keeps the whole context


def kv_heads_per_gpu(m: ModelSpec, tp: int = 1) -> int:
    """KV heads each tensor-parallel rank stores: max(1, kv_heads // tp); heads are replicated
    once tp exceeds them (vLLM ModelConfig.get_num_kv_heads, QKVParallelLinear)."""
    return max(1, m.num_key_value_heads // tp)


@cache
def kv_layers(m: ModelSpec, tp: int = 1) -> tuple[KvLayer, ...]:
    """Per layer: cached elements per token (on one GPU) and the window that caps them.

    GQA/MHA layers cache K and V: 2 x kv_heads_per_gpu x head_dim values per token.
    MLA layers (DeepSeek) cache one latent: kv_lora_rank + qk_rope_head_dim values per token,
    replicated on every tensor-parallel rank (vLLM MLAAttentionSpec).
    """
    if m.mla is not None:
        per_token = m.mla.kv_lora_rank + m.mla.qk_rope_head_dim
    else:
        per_token = 2 * kv_heads_per_gpu(m, tp) * m.head_dim
    pattern = m.layer_pattern
    out: list[KvLayer] = []
    for layer in range(m.num_hidden_layers):
        if pattern.is_global(layer):
            out.append(KvLayer("global", per_token, None))
        else:
            assert pattern.local_attention is not None
            out.append(KvLayer(pattern.local_attention, per_token, pattern.window_tokens))
    return tuple(out)


@cache
def kv_layer_groups(m: ModelSpec, tp: int = 1) -> tuple[tuple[KvLayer, int], ...]:
    """The distinct layers of kv_layers with how many layers share each (first-seen order): a
    uniform 80-layer model is one group, Gemma-2/3 two; the KV formulas run once per group."""
    counts: dict[KvLayer, int] = {}
    for layer in kv_layers(m, tp):
        counts[layer] = counts.get(layer, 0) + 1
    return tuple(counts.items())


def kv_bytes_per_token(m: ModelSpec, dtype: str, tp: int = 1) -> int:
    """What one token adds to one sequence while every layer still stores it (per GPU).

    Sum over layers of kv_bytes(elements per token) - e.g. Gemma-2-27B in bf16:
    46 x (2 x 16 x 128) x 2 B = 376,832 B.
    """
    return sum(n * kv_bytes(dtype, layer.elements_per_token) for layer, n in kv_layer_groups(m, tp))


def layer_window(layer: KvLayer, frees_windows: bool = True, extra_tokens: int = 0) -> int | None:
    """Tokens a layer may hold at most: None (whole context) for global layers, and for windowed
    layers when the engine does not free out-of-window KV; else window + tokens in flight."""
    if layer.window_tokens is None or not frees_windows:
        return None
    return layer.window_tokens + extra_tokens


def tokens_kept(window: int | None, tokens: int) -> int:
    """Tokens a layer holds for a sequence of `tokens`: all of them, or at most its window.

    A chunked layer (Llama-4) holds at most one chunk; counted as a full chunk (worst case).
    """
    return tokens if window is None else min(tokens, window)


def shared_tokens_kept(window: int | None, tokens: int, shared_prefix: int) -> int:
    """Tokens of a shared prefix that are still inside a layer's window at length `tokens`.

    A global layer keeps the whole prefix; a windowed layer keeps the part of [0, prefix) that
    overlaps its window [tokens - window, tokens).
    """
    prefix = min(shared_prefix, tokens)
    if window is None:
        return prefix
    return max(0, prefix - max(0, tokens - window))


def _round_up(tokens: int, block: int) -> int:
    return -(-tokens // block) * block


@dataclass(frozen=True, slots=True)
class KvUse:
    """KV bytes for a workload, and the per-layer-type split behind it."""

    bytes: int
    global_bytes: int
    local_bytes: int


@lru_cache(maxsize=4096)
def kv_cache_bytes(
    m: ModelSpec,
    dtype: str,
    tokens_per_sequence: int,
    sequences: int,
    shared_prefix_tokens: int = 0,
    *,
    frees_windows: bool = True,
    window_extra_tokens: int = 0,
    block_tokens: int = 1,
    tp: int = 1,
) -> KvUse:
    """KV bytes on one GPU for `sequences` sequences of `tokens_per_sequence` tokens each.

    Per layer (computed once per group of identical layers, kv_layer_groups):
    bytes_per_token(layer) x (sequences x kept - (sequences - 1) x shared), where kept
    is min(tokens, window + in-flight tokens) rounded up to the engine's block, and shared is the
    part of the common prefix still in the window, in whole blocks (prefix caching shares only
    full blocks), held once. Engines that do not free out-of-window KV (SGLang and TGI for
    Gemma, vLLM before 0.9.1) pass frees_windows=False.
    """
    global_bytes = local_bytes = 0
    if sequences <= 0 or tokens_per_sequence <= 0:
        return KvUse(0, 0, 0)
    for layer, count in kv_layer_groups(m, tp):
        per_token = kv_bytes(dtype, layer.elements_per_token)
        window = layer_window(layer, frees_windows, window_extra_tokens)
        kept = _round_up(tokens_kept(window, tokens_per_sequence), block_tokens)
        shared = shared_tokens_kept(window, tokens_per_sequence, shared_prefix_tokens)
        shared = shared // block_tokens * block_tokens
        layer_bytes = count * per_token * (sequences * kept - (sequences - 1) * shared)
        if layer.kind == "global":
            global_bytes += layer_bytes
        else:
            local_bytes += layer_bytes
    return KvUse(global_bytes + local_bytes, global_bytes, local_bytes)

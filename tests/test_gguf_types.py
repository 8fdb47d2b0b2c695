"""GGUF tensor types for every llama.cpp file type, against llama-quant.cpp and published files.

Rules: llama.cpp src/llama-quant.cpp @007dbbf3 (llama_tensor_get_type_impl, tensor_type_fallback,
llama_ftype_get_default_type). Published sizes: tests/calibration/gguf_sizes.yaml (its header
explains the tolerance). scripts/gguf_size_table.py prints the same comparison as a table.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

from tests.conftest import toy_model
from vramcalc.catalog import Catalog
from vramcalc.core.formats import (
    GGML_BLOCKS,
    GGUF_MIXES,
    WeightFormat,
    ggml_tensor_bytes,
    gguf_tensor_type,
    resolve_format,
    stored_tensor_types,
    tensor_bytes,
)
from vramcalc.core.tensors import Tensor, tensor_inventory
from vramcalc.specs import ModelSpec

SIZES = Path(__file__).resolve().parent / "calibration" / "gguf_sizes.yaml"

# Tolerance of a published file against sum(tensor_bytes): the metadata a GGUF file adds (KV pairs
# with the tokenizer, tensor infos, alignment). ~60 B per vocab entry is what the tokenizer costs
# (Llama 3: 7.84 MB for 128,256 tokens; gpt-oss: 13.0 MB for 201,088), plus 1 MB per file.
META_BYTES_PER_VOCAB = 64
META_BYTES_PER_FILE = 1_000_000


def _types(quant: str, m: ModelSpec) -> dict[tuple[str, int | None], str]:
    tensors = tensor_inventory(m)
    types = stored_tensor_types(resolve_format(quant, prefer_gguf=True), m, tensors)
    return {(t.role, t.layer): ty for t, ty in zip(tensors, types, strict=True) if t.role != "norm"}


@pytest.fixture(scope="module")
def llama8b(catalog: Catalog) -> ModelSpec:
    return catalog.models.get("llama-3.1-8b")


def test_q4_k_s_llama31_8b(llama8b: ModelSpec) -> None:
    """Llama-3.1-8B, 32 layers, n_gqa = 32/8 = 4. Q4_K_S defaults to Q4_K
    (llama_ftype_get_default_type: `case LLAMA_FTYPE_MOSTLY_Q4_K_S: ... return GGML_TYPE_Q4_K`).
    attn_v: `else if (ftype == LLAMA_FTYPE_MOSTLY_Q4_K_S && qs.i_attention_wv < 4) new_type = Q5_K`
    -> layers 0-3 Q5_K, layer 4 Q4_K. ffn_down: `ftype == Q4_K_S && arch != FALCON &&
    i_layer < n_layer/8` -> layers 0-3 (32/8 = 4) Q5_K, layer 16 Q4_K. output.weight:
    `else if (new_type != GGML_TYPE_Q8_0) new_type = GGML_TYPE_Q6_K`. token_embd (untied, no
    Q4_K_S rule): the default Q4_K."""
    ty = _types("Q4_K_S", llama8b)
    assert ty[("attn_v", 0)] == ty[("attn_v", 3)] == "Q5_K"
    assert ty[("attn_v", 4)] == "Q4_K"
    assert ty[("ffn_down", 0)] == ty[("ffn_down", 3)] == "Q5_K"
    assert ty[("ffn_down", 4)] == ty[("ffn_down", 16)] == "Q4_K"
    assert ty[("output", None)] == "Q6_K"
    assert ty[("token_embd", None)] == "Q4_K"


def test_q5_k_s_llama31_8b(llama8b: ModelSpec) -> None:
    """Q5_K_S defaults to Q5_K and llama_tensor_get_type_impl has no Q5_K_S branch: every matrix
    Q5_K (attn_v and ffn_down of layers 0 and 16 included) except output.weight -> Q6_K."""
    ty = _types("Q5_K_S", llama8b)
    assert {ty[("attn_v", 0)], ty[("ffn_down", 0)], ty[("ffn_down", 16)], ty[("attn_q", 9)]} == {"Q5_K"}
    assert ty[("token_embd", None)] == "Q5_K"
    assert ty[("output", None)] == "Q6_K"


def test_q2_k_llama31_8b_types_and_total(llama8b: ModelSpec) -> None:
    """Q2_K defaults to Q2_K. attn_v: `if (ftype == Q2_K) new_type = n_gqa() >= 4 ? Q4_K : Q3_K`
    -> Q4_K (n_gqa 4). ffn_down: `if (ftype == LLAMA_FTYPE_MOSTLY_Q2_K) new_type = GGML_TYPE_Q3_K`.
    attn_output (not 8 experts): `if (ftype == Q2_K) new_type = GGML_TYPE_Q3_K`. output: Q6_K.

    Total by hand (Q2_K 84 B, Q3_K 110 B, Q4_K 144 B, Q6_K 210 B per 256 values):
    token_embd 128256 x 4096 = 525,336,576 values / 256 x 84 = 172,376,064 B;
    output 525,336,576 / 256 x 210 = 430,940,160 B. Per layer: attn_q 4096 x 4096 / 256 x 84
    = 5,505,024; attn_k 4096 x 1024 / 256 x 84 = 1,376,256; attn_v 16,384 x 144 = 2,359,296;
    attn_output 65,536 x 110 = 7,208,960; ffn_gate + ffn_up 2 x 229,376 x 84 = 38,535,168;
    ffn_down 229,376 x 110 = 25,231,360; 2 norms 2 x 4096 x 4 = 32,768 -> 80,248,832 B;
    x 32 layers = 2,567,962,624. Final norm 16,384.
    Sum 172,376,064 + 430,940,160 + 2,567,962,624 + 16,384 = 3,171,295,232 B
    (bartowski's file: 3,179,136,416 B, i.e. 7,841,184 B of metadata)."""
    ty = _types("Q2_K", llama8b)
    assert ty[("attn_v", 0)] == "Q4_K"
    assert ty[("ffn_down", 0)] == ty[("ffn_down", 16)] == "Q3_K"
    assert ty[("attn_output", 5)] == "Q3_K"
    assert ty[("attn_q", 5)] == ty[("token_embd", None)] == "Q2_K"
    assert ty[("output", None)] == "Q6_K"
    fmt = resolve_format("Q2_K")
    assert sum(tensor_bytes(fmt, llama8b, tensor_inventory(llama8b))) == 3_171_295_232


def test_iq2_xxs_llama31_8b(llama8b: ModelSpec) -> None:
    """IQ2_XXS (the IQ1/IQ2 branch). attn_v: `if (n_gqa() >= 4 || n_expert >= 4) new_type =
    Q4_K` -> Q4_K. ffn_down: `if (qs.i_ffn_down < qs.n_ffn_down/8) new_type = ... Q2_K` -> layers
    0-3 Q2_K, layer 16 IQ2_XXS. attn_output (n_expert != 8, not IQ1/IQ2_S/M): IQ2_XXS.
    output: `ftype == IQ2_XXS || ... -> new_type = GGML_TYPE_Q5_K`. token_embd: `ftype ==
    IQ2_XXS || IQ2_XS || IQ1_S || IQ1_M -> new_type = GGML_TYPE_Q2_K`."""
    ty = _types("IQ2_XXS", llama8b)
    assert ty[("attn_v", 0)] == ty[("attn_v", 31)] == "Q4_K"
    assert ty[("ffn_down", 0)] == ty[("ffn_down", 3)] == "Q2_K"
    assert ty[("ffn_down", 4)] == ty[("ffn_down", 16)] == "IQ2_XXS"
    assert ty[("attn_output", 0)] == ty[("ffn_gate", 0)] == "IQ2_XXS"
    assert ty[("output", None)] == "Q5_K"
    assert ty[("token_embd", None)] == "Q2_K"


def test_iq3_xs_and_iq2_s_defaults(llama8b: ModelSpec) -> None:
    """IQ3_XS defaults to IQ3_S; attn_q and attn_k -> IQ3_XXS; ffn_gate/ffn_up of layers
    n/8 <= i < 7n/8 (4..27) -> IQ3_XXS, others IQ3_S. IQ2_S defaults to IQ2_XS
    (`case LLAMA_FTYPE_MOSTLY_IQ2_S: return GGML_TYPE_IQ2_XS`), its first-n/8 ffn_down and
    attn_output IQ3_S, token_embd IQ3_S."""
    ty = _types("IQ3_XS", llama8b)
    assert ty[("attn_q", 0)] == ty[("attn_k", 0)] == "IQ3_XXS"
    assert ty[("ffn_gate", 3)] == ty[("ffn_up", 28)] == "IQ3_S"
    assert ty[("ffn_gate", 4)] == ty[("ffn_up", 27)] == "IQ3_XXS"
    assert ty[("ffn_down", 10)] == ty[("attn_output", 10)] == "IQ3_S"
    ty = _types("IQ2_S", llama8b)
    assert ty[("ffn_down", 10)] == ty[("attn_q", 0)] == "IQ2_XS"
    assert ty[("ffn_down", 0)] == ty[("attn_output", 10)] == ty[("token_embd", None)] == "IQ3_S"


def test_tq_and_f16_files(llama8b: ModelSpec) -> None:
    """TQ1_0/TQ2_0: token_embd -> Q4_K (`ftype == TQ1_0 || TQ2_0 ... new_type = Q4_K`), output Q6_K.
    F16/BF16 files: ggml_is_quantized(default_type) is false, so llama_tensor_get_type_impl is
    never called and output.weight stays F16 (vramcalc used to give it Q6_K)."""
    ty = _types("TQ1_0", llama8b)
    assert ty[("token_embd", None)] == "Q4_K"
    assert ty[("output", None)] == "Q6_K"
    assert ty[("attn_q", 0)] == "TQ1_0"
    for quant in ("F16", "BF16"):
        assert set(_types(quant, llama8b).values()) == {quant}


def test_moe_and_70b_rules(catalog: Catalog) -> None:
    """Mixtral (n_expert == 8): attn_v and attn_k -> Q8_0, attn_output Q5_K for Q4_K_M; in the
    IQ1/IQ2 branch attn_k -> Q4_K and attn_output Q5_K. Qwen3-30B-A3B IQ2_XXS attn_v -> Q4_K
    (n_expert 128 >= 4). Llama-3.1-70B is LLM_TYPE_70B (llama arch, 80 layers, GQA): Q2_K and
    Q3_K_S attn_v Q4_K/Q3_K -> Q5_K."""
    mixtral = catalog.models.get("mixtral-8x7b")
    ty = _types("Q4_K_M", mixtral)
    assert ty[("attn_v", 0)] == ty[("attn_k", 0)] == "Q8_0"
    assert ty[("attn_output", 0)] == "Q5_K"
    ty = _types("IQ2_XXS", mixtral)
    assert ty[("attn_k", 0)] == "Q4_K"
    assert ty[("attn_output", 0)] == "Q5_K"
    assert _types("IQ2_XXS", catalog.models.get("qwen3-30b-a3b"))[("attn_v", 0)] == "Q4_K"
    llama70 = catalog.models.get("llama-3.1-70b")
    assert _types("Q2_K", llama70)[("attn_v", 0)] == "Q5_K"
    assert _types("Q3_K_S", llama70)[("attn_v", 0)] == "Q5_K"
    assert _types("Q3_K_S", llama70)[("attn_q", 0)] == "Q3_K"


def test_row_length_fallbacks() -> None:
    """tensor_type_fallback: ncols 2880 (not a multiple of 256): IQ types -> IQ4_NL, Q2_K/Q3_K/TQ
    -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0; ncols 48 (not a multiple of 32) -> F16."""
    m = toy_model(hidden_size=2880, num_attention_heads=45, head_dim=64, num_key_value_heads=5)
    t = Tensor("attn_q", 0, 2880, 2880)
    expect = {"IQ2_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "Q2_K": "Q4_0", "TQ1_0": "Q4_0", "Q4_K_S": "Q5_0"}
    expect |= {"Q5_K_S": "Q5_1", "Q6_K": "Q8_0", "IQ4_XS": "IQ4_NL", "Q4_0": "Q4_0"}
    for quant, ggml in expect.items():
        assert gguf_tensor_type(quant, GGUF_MIXES[quant], m, t, 0) == ggml
    odd = Tensor("attn_q", 0, 48, 64)
    assert gguf_tensor_type("Q4_K_M", GGUF_MIXES["Q4_K_M"], m, odd, 0) == "F16"


def test_block_sizes_match_gguf_py() -> None:
    """Every GGML_BLOCKS entry equals gguf-py's GGML_QUANT_SIZES (ggml-common.h block structs)."""
    for name, blocks in GGML_BLOCKS.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType[name]] == blocks, name
    for mix in GGUF_MIXES.values():
        assert mix.base in GGML_BLOCKS


@pytest.mark.parametrize("name", sorted(GGUF_MIXES))
def test_every_file_type_resolves(name: str, llama8b: ModelSpec) -> None:
    """Every ftype resolves by name in any case (`--quant iq2_xxs`, `--quant gguf-q4-k-s`) and
    sizes Llama-3.1-8B with block-compatible types."""
    for typed in (name, name.lower(), "gguf-" + name.lower().replace("_", "-")):
        fmt = resolve_format(typed, prefer_gguf=True)
        assert fmt.is_gguf and fmt.name == name
    if name not in ("F16", "BF16"):  # these two names mean the dense 16-bit formats by default
        assert resolve_format(name.lower()).name == name
    fmt = resolve_format(name, prefer_gguf=True)
    tensors = tensor_inventory(llama8b)
    for t, ty in zip(tensors, stored_tensor_types(fmt, llama8b, tensors), strict=True):
        ggml_tensor_bytes(ty, t)  # raises if a type cannot store the row length


# --- published file sizes -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizeCheck:
    """One record of gguf_sizes.yaml against sum(tensor_bytes)."""

    id: str
    model: str
    quant: str
    published: int  # bytes (a file_gb record: the printed GB x 1e9)
    printed: str
    ours: int
    low: int  # allowed published - ours
    high: int
    xfail: str | None

    @property
    def diff(self) -> int:
        return self.published - self.ours

    @property
    def within(self) -> bool:
        return self.low <= self.diff <= self.high

    @property
    def rel_error(self) -> float:
        """(ours - published) / published."""
        return (self.ours - self.published) / self.published


def load_records() -> list[dict[str, Any]]:
    data = yaml.safe_load(SIZES.read_text())
    records: list[dict[str, Any]] = data["records"]
    return records


@cache
def _catalog() -> Catalog:
    return Catalog()


def check(record: dict[str, Any], fmt: WeightFormat | None = None) -> SizeCheck:
    m = _catalog().models.get(record["model"])
    fmt = fmt or resolve_format(record["quant"], prefer_gguf=True)
    ours = sum(tensor_bytes(fmt, m, tensor_inventory(m)))
    high = META_BYTES_PER_VOCAB * m.vocab_size + META_BYTES_PER_FILE * int(record.get("shards", 1))
    low = 0
    if "file_bytes" in record:
        published, printed = int(record["file_bytes"]), f"{record['file_bytes']} B"
    else:
        gb = Decimal(str(record["file_gb"]))
        half = int(Decimal(5) * Decimal(10) ** (8 - int(record["decimals"])))  # half a printed unit
        published, printed = int(gb * Decimal(10) ** 9), f"{record['file_gb']} GB"
        low, high = -half, high + half
    return SizeCheck(
        record["id"],
        record["model"],
        record["quant"],
        published,
        printed,
        ours,
        low,
        high,
        record.get("xfail"),
    )


def _params() -> list[Any]:
    out = []
    for r in load_records():
        marks = [pytest.mark.xfail(strict=True, reason=r["xfail"])] if r.get("xfail") else []
        out.append(pytest.param(r, id=r["id"], marks=marks))
    return out


def test_records_cover_models_and_types() -> None:
    records = load_records()
    assert len(records) >= 20
    assert len({r["model"] for r in records}) >= 3
    assert len({r["quant"] for r in records}) >= 12
    assert all(r["quant"] in GGUF_MIXES and r["source"] and r["quote"] for r in records)


@pytest.mark.parametrize("record", _params())
def test_published_gguf_size(record: dict[str, Any]) -> None:
    """published - sum(tensor_bytes) lies in [0, metadata bound] (gguf_sizes.yaml header)."""
    c = check(record)
    assert c.within, f"published {c.printed} - ours {c.ours} = {c.diff} B, allowed {c.low}..{c.high}"


def test_q4_0_with_imatrix_matches_imatrix_uploads() -> None:
    """The Q4_0 records marked xfail are imatrix uploads: with `imatrix` set, llama-quant.cpp's
    `(ftype == Q4_0 || Q5_0) && qs.has_imatrix && i_layer < n_layer/8 -> Q4_1` reproduces them."""
    imatrix = dataclasses.replace(GGUF_MIXES["Q4_0"], imatrix=True)
    checked = 0
    for r in load_records():
        if r["quant"] != "Q4_0" or not r.get("xfail"):
            continue
        m = _catalog().models.get(r["model"])
        tensors = tensor_inventory(m)
        i_v = [sum(1 for u in tensors[:i] if u.role in ("attn_v", "attn_qkv")) for i in range(len(tensors))]
        ours = sum(
            ggml_tensor_bytes(gguf_tensor_type("Q4_0", imatrix, m, t, i_v[i]), t)
            for i, t in enumerate(tensors)
        )
        meta = r["file_bytes"] - ours
        assert 0 <= meta <= META_BYTES_PER_VOCAB * m.vocab_size + META_BYTES_PER_FILE, r["id"]
        checked += 1
    assert checked == 3

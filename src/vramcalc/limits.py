"""Bounds on every number and size vramcalc accepts, checked before any arithmetic, loop or read.

Each bound is far above the largest real value (named beside it) and low enough that the loops
over layers, experts and users stay fast and every product of them stays an exact integer. The
README's "Limits on input" section lists them; tests/test_fuzz.py checks it against this module.
"""

from __future__ import annotations

# --- architecture (catalog entries, config.json, GGUF headers) ------------------------------------
MAX_LAYERS = 1_024  # largest in the catalog: Llama-3.1-405B 126, DeepSeek-V3 61
MAX_HIDDEN = 131_072  # largest in the catalog: Llama-3.1-405B 16,384
MAX_INTERMEDIATE = 1_048_576  # largest in the catalog: Llama-3.1-405B 53,248
MAX_HEADS = 4_096  # largest in the catalog: Llama-3.1-405B and DeepSeek-V3 128
MAX_HEAD_DIM = 4_096  # largest in the catalog: Gemma-2/3 256, DeepSeek-V3 MLA 192
MAX_VOCAB = 4_194_304  # largest in the catalog: Gemma-3 262,208 (the GGUF array bound is the same 2^22)
MAX_POSITIONS = 134_217_728  # 2^27; largest in the catalog: Llama-4-Scout 10,485,760
MAX_EXPERTS = 4_096  # largest in the catalog: DeepSeek-V3 256 (Kimi-K2 has 384)
MAX_SHARED_EXPERTS = 64  # DeepSeek-V3 has 1
MAX_NORMS_PER_LAYER = 16  # largest in the catalog: Gemma-2/3 4
MAX_PARAMS = 10**14  # 100 T parameters; largest in the catalog: DeepSeek-V3 671 B

# --- workload and engine settings (flags, plan files, project files, startup logs) ----------------
MAX_CTX_TOKENS = MAX_POSITIONS  # --ctx, also with --allow-long-ctx; every token count below it
MAX_USERS = 1_000_000  # --users, --max-num-seqs
MAX_WORKERS = 64  # --workers: processes that each load the model on one GPU
MAX_TP = 64  # --tp, a plan's gpu_count
MAX_GIB = 1_048_576.0  # --cpu-offload-gb (1 PiB)
MAX_BANDWIDTH_GBS = 100_000.0  # --host-bandwidth; HBM3e peaks near 8,000 GB/s
MAX_TOKENS_PER_S = 1_000_000.0  # --min-speed, goals.min_tokens_per_s
MAX_SECONDS = 86_400.0  # goals.max_ttft_s (one day)

# --- GPU catalog entries ---------------------------------------------------------------------------
MAX_GPU_GB = 65_536.0  # memory_gb_marketed; largest in the catalog: MI355X 288, Apple M3 Ultra 512
MAX_GPU_MIB = 67_108_864  # usable_mib, cuda_total_mib (64 TiB)
MAX_GPU_RATE = 1_000_000.0  # GB/s, TFLOPS, TOPS; largest in the catalog: 13,500 fp4 TFLOPS
MAX_WATTS = 100_000.0
MAX_PRICE_USD = 1e9
MIN_YEAR, MAX_YEAR = 1990, 2100

# --- files -------------------------------------------------------------------------------------------
MAX_JSON_DEPTH = 64  # config.json, safetensors headers and indexes: real files nest 3-4 levels
MAX_JSON_INT_DIGITS = 20  # any JSON integer; the largest real one is a tensor offset (~1e12)
MAX_INDEX_BYTES = 16 * 1024 * 1024  # model.safetensors.index.json (real ones ~100 KB)
MAX_CHECKPOINT_FILES = 10_000  # safetensors files one index may name (the largest real ones ~200)
MAX_REF_BYTES = 4_096  # a Hugging Face cache refs/<branch> file holds one 40-character commit
MAX_PROJECT_FILE_BYTES = 1_000_000  # vramcalc.toml / .vramcalc.yaml
MAX_LOG_LINE_CHARS = 16_384  # startup-log lines are cut here before matching (vLLM's longest ~4 KB)
MAX_PLAN_FILES = 10_000  # files that `check` PATHs may expand to
MAX_WALK_ENTRIES = 1_000_000  # directory entries `check` looks at while expanding them

"""Read a saved Prometheus `/metrics` snapshot of a serving engine (vLLM with its V1 and V0 names,
SGLang, llama.cpp's llama-server), parsed by prometheus-client, as the figures a capacity plan is
held against. The engine is recognised from the metric names, never the file name."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from vramcalc import files
from vramcalc.errors import SpecError

# A /metrics page is tens of kB (vLLM with many models and buckets: a few hundred kB).
MAX_METRICS_BYTES = 16 * 1024 * 1024
# Prometheus lines are short; a longer one (a 10 MB label) is refused before the parser sees it.
MAX_LINE_CHARS = 64 * 1024
EXPECTED = "expected a Prometheus /metrics page of vLLM, SGLang or llama.cpp's llama-server"
ENGINE_PREFIXES = (("vllm:", "vllm"), ("sglang:", "sglang"), ("llamacpp:", "llama.cpp"))
_NAN = re.compile(r" -?nan(?:\(ind\))?$", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """What one /metrics page says about the server's memory, load and latency. Each figure is None
    when the engine or its version does not export it; sums over every model and engine label."""

    source: str
    engine: str  # "vllm" | "sglang" | "llama.cpp"
    names: str  # vLLM: "v1" (kv_cache_usage_perc) or "v0" (gpu_cache_usage_perc); else ""
    kv_capacity_tokens: int | None  # vLLM num_gpu_blocks x block_size; SGLang max_total_num_tokens
    num_gpu_blocks: int | None
    block_size: int | None
    gpu_memory_utilization: float | None
    cache_dtype: str | None
    kv_usage: float | None  # 0..1
    running: float | None
    waiting: float | None
    swapped: float | None
    preemptions: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    tpot_p50_s: float | None
    tpot_p95_s: float | None
    prompt_tokens_per_s: float | None = None  # llama.cpp: llamacpp:prompt_tokens_seconds
    predicted_tokens_per_s: float | None = None  # llama.cpp: llamacpp:predicted_tokens_seconds


def read_metrics(path: Path) -> MetricsSnapshot:
    data = files.read_bytes(path, MAX_METRICS_BYTES, "/metrics snapshot", SpecError)
    if b"\x00" in data:
        raise SpecError(f"{path}: binary (it holds NUL bytes); {EXPECTED}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (bad byte at offset {exc.start:,}); {EXPECTED}") from None
    return parse_metrics(text, str(path))


def looks_like_metrics(text: str) -> bool:
    """Prometheus text of one of the engines (what `observe` reads), not nvidia-smi output."""
    return any(prefix in text for prefix, _ in ENGINE_PREFIXES)


def parse_metrics(text: str, source: str) -> MetricsSnapshot:
    from prometheus_client.parser import text_string_to_metric_families

    body = text.strip()
    if not body:
        raise SpecError(f"{source}: the file is empty; {EXPECTED}")
    if body.startswith("<"):
        raise SpecError(f"{source}: an HTML or XML page, not /metrics text; {EXPECTED}")
    for n, line in enumerate(text.split("\n"), 1):
        if len(line) > MAX_LINE_CHARS:
            raise SpecError(f"{source}:{n}: a line of {len(line):,} characters is not a /metrics line")
    engine = next((name for prefix, name in ENGINE_PREFIXES if prefix in text), None)
    # MSVC prints NaN as "-nan(ind)" (llama-server on Windows): Prometheus spells it NaN.
    text = _NAN.sub(" NaN", text)
    if engine is None:
        raise SpecError(f"{source}: no vllm:, sglang: or llamacpp: metric; {EXPECTED}")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    except (ValueError, TypeError, IndexError) as exc:
        raise SpecError(
            f"{source}: not valid Prometheus text ({files.short(str(exc), 120)}); {EXPECTED}"
        ) from None

    def total(*names: str) -> float | None:
        for name in names:
            values = [v for _, v in samples.get(name, [])]
            if values:
                for v in values:
                    if not math.isfinite(v) or v < 0:
                        raise SpecError(
                            f"{source}: {name} is {v}: not a valid reading (NaN, infinite or negative)"
                        )
                return sum(values)
        return None

    def labels(name: str) -> dict[str, str]:
        rows = samples.get(name, [])
        return rows[0][0] if rows else {}

    def quantile(name: str, q: float) -> float | None:
        return _histogram_quantile(samples.get(f"{name}_bucket", []), q, source, name)

    if engine == "vllm":
        info = labels("vllm:cache_config_info")
        blocks = _int(info.get("num_gpu_blocks"), source, "num_gpu_blocks")
        block_size = _int(info.get("block_size"), source, "block_size")
        util = info.get("gpu_memory_utilization")
        capacity = _int(info.get("kv_cache_size_tokens"), source, "kv_cache_size_tokens")
        if capacity is None and blocks is not None and block_size is not None:
            capacity = blocks * block_size
        v1 = "vllm:kv_cache_usage_perc" in samples
        tpot = "vllm:time_per_output_token_seconds"
        if f"{tpot}_bucket" not in samples:
            tpot = "vllm:inter_token_latency_seconds"
        return MetricsSnapshot(
            source, engine, "v1" if v1 else "v0", capacity, blocks, block_size,
            _float(util, source, "gpu_memory_utilization"), info.get("cache_dtype"),
            total("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            total("vllm:num_requests_running"), total("vllm:num_requests_waiting"),
            total("vllm:num_requests_swapped"), total("vllm:num_preemptions_total", "vllm:num_preemptions"),
            quantile("vllm:time_to_first_token_seconds", 0.5), quantile("vllm:time_to_first_token_seconds", 0.95),
            quantile(tpot, 0.5), quantile(tpot, 0.95),
        )  # fmt: skip
    if engine == "sglang":
        capacity_f = total("sglang:max_total_num_tokens")
        return MetricsSnapshot(
            source, engine, "", int(capacity_f) if capacity_f is not None else None, None, None, None, None,
            total("sglang:token_usage"),
            total("sglang:num_running_reqs", "sglang:num_requests_running"),
            total("sglang:num_queue_reqs", "sglang:num_requests_waiting", "sglang:queue_req"),
            None, None,
            quantile("sglang:time_to_first_token_seconds", 0.5), quantile("sglang:time_to_first_token_seconds", 0.95),
            quantile("sglang:inter_token_latency_seconds", 0.5) or quantile("sglang:time_per_output_token_seconds", 0.5),
            quantile("sglang:inter_token_latency_seconds", 0.95) or quantile("sglang:time_per_output_token_seconds", 0.95),
        )  # fmt: skip
    return MetricsSnapshot(
        source, engine, "", None, None, None, None, None,
        total("llamacpp:kv_cache_usage_ratio"), total("llamacpp:requests_processing"),
        total("llamacpp:requests_deferred"), None, None, None, None, None, None,
        total("llamacpp:prompt_tokens_seconds"), total("llamacpp:predicted_tokens_seconds"),
    )  # fmt: skip


# vLLM exports its cache config as label strings, str(value) of each field
# (vllm/config/cache.py CacheConfig.metrics_info): a field left unset reads "None" (0.34 leaves
# gpu_memory_utilization unset unless given, and resolves it to 1.0 with its extensible KV cache).
_UNSET = "None"


def _int(text: str | None, source: str, name: str) -> int | None:
    if text is None or text == _UNSET:
        return None
    if not text.isdigit() or len(text) > 15:
        raise SpecError(f"{source}: {name} {files.short(text)} is not a whole number")
    return int(text)


def _float(text: str | None, source: str, name: str) -> float | None:
    if text is None or text == _UNSET:
        return None
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{source}: {name} {files.short(text)} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{source}: {name} {text!r} is not a valid reading")
    return value


def _histogram_quantile(
    buckets: Iterable[tuple[dict[str, str], float]], q: float, source: str, name: str
) -> float | None:
    """Prometheus' histogram_quantile over the buckets of every label set added together: linear
    within the bucket that holds the q-th observation; None with no observations."""
    counts: dict[float, float] = {}
    for labels, value in buckets:
        le = labels.get("le", "")
        try:
            bound = math.inf if le in ("+Inf", "Inf", "inf") else float(le)
        except ValueError:
            raise SpecError(f"{source}: {name} bucket le={files.short(le)} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise SpecError(f"{source}: {name} bucket count {value} is not a valid reading")
        counts[bound] = counts.get(bound, 0.0) + value
    if not counts:
        return None
    bounds = sorted(counts)
    total = counts[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = counts[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its upper bound, as Prometheus does
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def fetch_metrics(url: str) -> str:
    """GET `url` once (a /metrics page): 5 s timeout, at most MAX_METRICS_BYTES, no credentials,
    no redirect to another host."""
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SpecError(f"--url {url!r}: give http(s)://host:port/metrics")
    if parts.username or parts.password:
        raise SpecError(f"--url: credentials in the address are not sent; drop them from {parts.hostname}")

    class _SameHost(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
            if urllib.parse.urlsplit(newurl).hostname != parts.hostname:
                fp.close()
                raise SpecError(
                    f"--url {url}: redirected to another host ({urllib.parse.urlsplit(newurl).hostname}); not followed"
                )
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.build_opener(_SameHost())
    opener.addheaders = [("User-Agent", "vramcalc-observe")]
    try:
        with opener.open(url, timeout=5) as response:
            data: bytes = response.read(MAX_METRICS_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SpecError(f"--url {url}: cannot fetch ({getattr(exc, 'reason', exc)})") from None
    if len(data) > MAX_METRICS_BYTES:
        raise SpecError(f"--url {url}: the page is larger than a /metrics page can be")
    return data.decode("utf-8", errors="replace")

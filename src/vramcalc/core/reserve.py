"""Memory a process holds outside the model: CUDA context, library workspaces, allocator slack."""

from __future__ import annotations

from vramcalc.units import MIB

# Source: pytorch/pytorch#107667 (CUDA context ~300 MB with lazy loading), #20532 (300-400 MB
# per process), #28113 (200-700 MB by machine); shared/reference/gpus.yaml advises ~500 MiB.
CUDA_CONTEXT_BYTES = 512 * MIB

# Source: cuBLAS/cuBLASLt workspaces (32 MiB per handle on Hopper, pytorch PR #120925) plus
# memory outside PyTorch's allocator and caching-allocator slack; vLLM logs in
# tests/calibration/measurements.yaml show non_torch_memory 0.13-0.35 GiB.
RUNTIME_OVERHEAD_BYTES = 256 * MIB


def reserve_bytes(processes: int = 1) -> int:
    """Framework and CUDA reserve: processes x (CUDA context + runtime overhead)."""
    return processes * (CUDA_CONTEXT_BYTES + RUNTIME_OVERHEAD_BYTES)

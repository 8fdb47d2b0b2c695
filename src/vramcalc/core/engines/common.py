"""Constants and helpers several engine profiles share (CUDA context, CUDA-visible memory, versions)."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

from vramcalc.units import GIB, MIB

if TYPE_CHECKING:
    from vramcalc.specs import GpuSpec

# Source: pytorch/pytorch#107667 (CUDA context ~300 MB with lazy loading), #20532 (300-400 MB
# per process), #28113 (200-700 MB by machine); shared/reference/gpus.yaml advises ~500 MiB.
CUDA_CONTEXT_BYTES = 512 * MIB

# Source: cuBLAS/cuBLASLt workspaces (32 MiB per handle on Hopper, pytorch PR #120925) plus
# caching-allocator slack, for engines without a measured figure of their own.
RUNTIME_OVERHEAD_BYTES = 256 * MIB

# Source: gap between nvidia-smi's total and what CUDA reports on the three cards with both
# figures in the catalog: RTX 3090 430 MiB, H100 479 MiB, A100-80GB 804 MiB (median 479).
CUDA_TOTAL_GAP_BYTES = 480 * MIB

# Source: links at or above this per-direction rate are NVLink/xGMI class (PCIe 5.0 x16 = 63 GB/s).
NVLINK_CLASS_GBS = 100.0


def default_p2p(gpu: GpuSpec | None) -> bool:
    """Whether the GPUs of a tensor-parallel group reach each other peer to peer where the plan does
    not say: not on NVIDIA GeForce cards (stock driver: NVIDIA/nccl#1127, nccl-tests#117), not on
    AMD cards joined only by PCIe (RCCL takes its P2P transport over PCIe only with
    HSA_FORCE_FINE_GRAIN_PCIE=1 and large BARs: ROCm RCCL docs, "RCCL usage tips", "Enabling
    peer-to-peer transport"), yes elsewhere (NVLink, xGMI, and NVIDIA datacenter and workstation
    cards over PCIe)."""
    if gpu is None:
        return True
    if gpu.vendor == "NVIDIA":
        return gpu.form_factor != "consumer"
    if gpu.vendor == "AMD" and gpu.link_gbs is not None:
        return gpu.link_gbs >= NVLINK_CLASS_GBS
    return True


def cuda_total_bytes(gpu: GpuSpec) -> int:
    """Device memory as cudaMemGetInfo reports it: measured where the catalog has it, else the
    nvidia-smi total minus the typical gap, else the marketed figure read as GiB."""
    if gpu.cuda_total_mib is not None:
        return gpu.cuda_total_mib * MIB
    if gpu.usable_mib is not None:
        return gpu.usable_mib * MIB - CUDA_TOTAL_GAP_BYTES
    return int(gpu.memory_gb_marketed * GIB)


@cache
def parse_version(text: str) -> tuple[int, ...] | None:
    """'0.19.1' -> (0, 19, 1); None when it is not dotted numbers."""
    if not re.fullmatch(r"[0-9]{1,6}(\.[0-9]{1,6}){0,3}", text):
        return None
    return tuple(int(p) for p in text.split("."))


def version_at_least(version: str, floor: str) -> bool:
    v, f = parse_version(version), parse_version(floor)
    assert v is not None and f is not None
    return v >= f

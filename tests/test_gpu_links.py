"""GPU-to-GPU link bandwidth (link_gbs): PCIe arithmetic, NVLink parts, and every figure sourced."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from vramcalc.catalog import read_yaml_mapping
from vramcalc.specs import GpuSpec

GPUS = {
    spec.id: spec
    for spec in (GpuSpec.model_validate(read_yaml_mapping(p)) for p in sorted((ROOT / "gpus").glob("*.yaml")))
}

# NVIDIA SXM/HGX parts (and GH200): their interconnect entry names NVLink first, PCIe only as host link.
NVLINK_DATACENTER = {"a100-40gb-sxm", "a100-80gb-sxm", "h100-sxm", "h200", "h20", "gh200", "b200", "b300"}


def pcie_gbs(gt_per_s: float, lanes: int = 16) -> float:
    """One direction of a PCIe 3.0+ link: GT/s per lane x lanes x 128/130 (encoding) / 8 bits, GB/s."""
    return gt_per_s * lanes * 128 / 130 / 8


def test_pcie_4_x16_by_hand() -> None:
    """PCIe 4.0 x16, one direction: 16 GT/s x 16 lanes = 256 Gb/s raw; x 128/130 = 252.06 Gb/s;
    / 8 = 31.51 GB/s, stored as 31.5. (5.0: 32 GT/s -> 63.02, stored 63.0; 3.0: 8 GT/s -> 15.75;
    4.0 x8 -> 15.75.) Source: PCI-SIG PCIe base specifications, 128b/130b encoding."""
    assert pcie_gbs(16) == pytest.approx(31.508, abs=1e-3)
    assert GPUS["rtx-4090"].link_gbs == round(pcie_gbs(16), 1)
    assert round(pcie_gbs(16), 1) == 31.5
    assert round(pcie_gbs(32), 1) == 63.0
    assert round(pcie_gbs(8), 2) == 15.75
    assert round(pcie_gbs(16, lanes=8), 2) == 15.75


def test_nvlink_datacenter_parts_have_a_fast_link() -> None:
    found = {
        g.id
        for g in GPUS.values()
        if g.vendor == "NVIDIA"
        and g.form_factor == "datacenter"
        and (g.interconnect or "").startswith("NVLink")
    }
    assert found == NVLINK_DATACENTER
    for gpu_id in sorted(found):
        link = GPUS[gpu_id].link_gbs
        assert link is not None and link >= 150, gpu_id


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("PCIe 3.0 x16", 15.75), ("PCIe 4.0 x8", 15.75), ("PCIe 4.0 x16", 31.5), ("PCIe 5.0 x16", 63.0)],
)
def test_pcie_cards_carry_their_pcie_rate(prefix: str, expected: float) -> None:
    """Cards whose first-named link is PCIe get the PCIe rate; an optional bridge is not counted."""
    cards = [g for g in GPUS.values() if (g.interconnect or "").startswith(prefix)]
    assert cards
    for g in cards:
        assert g.link_gbs == expected, g.id


def test_a_set_link_cites_its_source() -> None:
    for g in GPUS.values():
        if g.link_gbs is not None:
            assert any("link_gbs" in s for s in g.source), g.id


def test_single_unified_devices_have_no_link() -> None:
    for g in GPUS.values():
        if g.form_factor == "unified":
            assert g.link_gbs is None, g.id


def test_known_values() -> None:
    assert GPUS["h100-sxm"].link_gbs == 450.0  # NVLink 4: 900 GB/s bidirectional
    assert GPUS["a100-80gb-sxm"].link_gbs == 300.0  # NVLink 3: 600 GB/s bidirectional
    assert GPUS["b200"].link_gbs == 900.0  # NVLink 5: 1.8 TB/s bidirectional
    assert GPUS["mi300x"].link_gbs == 448.0  # 7 xGMI links x 64 GB/s
    assert GPUS["rtx-3090"].link_gbs == 31.5  # PCIe; the 2-way bridge is optional

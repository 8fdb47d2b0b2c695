"""Calibration profiles: what one startup log measured, written by `calibrate --save` and read by
`--calibration FILE` (estimate, check, recommend) and a plan's `calibration:`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vramcalc import limits as lim
from vramcalc.catalog import dump_yaml, read_yaml_mapping, validate_spec
from vramcalc.core.engines import ENGINE_NAMES
from vramcalc.core.types import Measured
from vramcalc.errors import SpecError

KIND = "vramcalc-calibration-profile"
# A profile is a few hundred bytes; anything far larger is not one.
MAX_PROFILE_BYTES = 64 * 1024


class Profile(BaseModel):
    """The file `vramcalc calibrate LOG --save FILE` (memory terms) or `vramcalc bench FILE --save
    FILE` (speed factors) writes: one engine, model, GPU and weight format."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    kind: Literal["vramcalc-calibration-profile"] = Field(description="Marks the file as a profile.")
    source: str = Field(max_length=300, description="The log it was measured from (file name).")
    engine: str = Field(description="Engine the log came from (vllm).")
    version: str = Field(max_length=40, description="The engine profile the log was modelled with.")
    model: str = Field(max_length=128, description="Catalog model id the log served.")
    gpu: str = Field(max_length=128, description="Catalog GPU id the log ran on.")
    weights_format: str = Field(max_length=40, description="Weight format of the log's checkpoint.")
    tp: int = Field(ge=1, le=lim.MAX_TP, description="Tensor-parallel size of the log.")
    cuda_total_bytes: int | None = Field(default=None, gt=0, le=lim.MAX_GPU_MIB * 2**20)
    weights_bytes_per_gpu: int | None = Field(default=None, ge=0, le=lim.MAX_GPU_MIB * 2**20)
    activation_scale: float | None = Field(
        default=None, gt=0, le=100, description="The log's activation peak over ours at its settings."
    )
    non_torch_bytes: int | None = Field(default=None, ge=0, le=lim.MAX_GPU_MIB * 2**20)
    cuda_graph_bytes: int | None = Field(
        default=None, ge=-(lim.MAX_GPU_MIB * 2**20), le=lim.MAX_GPU_MIB * 2**20
    )
    decode_speed_factor: float | None = Field(
        default=None, gt=0, le=100, description="A benchmark's decode speed over ours (bench --save)."
    )
    prefill_speed_factor: float | None = Field(
        default=None, gt=0, le=100, description="A benchmark's prompt speed over ours (bench --save)."
    )
    request_overhead_s: float | None = Field(
        default=None, ge=0, le=60, description="A serving benchmark's time to first token beyond the prefill."
    )


def read_profile(path: Path) -> Measured:
    """A calibration profile file, validated; one line naming the file and field when it is not one."""
    data = read_yaml_mapping(path, max_bytes=MAX_PROFILE_BYTES, what="calibration profile")
    if data.get("kind") != KIND:
        raise SpecError(
            f"{path}: not a calibration profile (no `kind: {KIND}`); write one with "
            "`vramcalc calibrate LOG --save FILE`"
        )
    p = validate_spec(Profile, data, path)
    if p.engine not in ENGINE_NAMES:
        raise SpecError(
            f"{path}: engine {p.engine!r} is not one vramcalc models (known: {', '.join(ENGINE_NAMES)})"
        )
    return Measured(**p.model_dump(exclude={"kind"}))


def profile_text(measured: Measured) -> str:
    """The YAML text of a profile (validated by reading it back as a Profile)."""
    data = {"kind": KIND, **asdict(measured)}
    Profile.model_validate(data)
    header = (
        f"# vramcalc calibration profile: measured by {measured.engine} on {measured.gpu} serving "
        f"{measured.model} ({measured.weights_format}).\n# Use it with --calibration FILE (estimate, check, "
        "recommend, bench) or `calibration:` in a plan.\n"
    )
    return header + dump_yaml({k: v for k, v in data.items() if v is not None})


def check_matches(measured: Measured, path: Path, *, engine: str, model: str, gpu: str | None = None) -> None:
    """A profile is for one engine, model and GPU: another one is refused, naming the field. Speed
    factors alone (bench --save) hold for any model on that GPU, engine and weight format."""
    name = engine.split("@")[0].lower()
    if measured.engine != name:
        raise SpecError(f"{path}: the profile's engine is {measured.engine}, this runs {name} (field engine)")
    if measured.has_memory_terms and measured.model != model:
        raise SpecError(f"{path}: the profile's model is {measured.model}, this sizes {model} (field model)")
    if gpu is not None and measured.gpu != gpu:
        raise SpecError(f"{path}: the profile's GPU is {measured.gpu}, this sizes {gpu} (field gpu)")

"""Project defaults for `recommend`: vramcalc.toml or .vramcalc.yaml in the working directory, or --config FILE."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vramcalc.catalog import read_yaml_mapping
from vramcalc.errors import CatalogError

PROJECT_FILES = ("vramcalc.toml", ".vramcalc.yaml")


class ProjectDefaults(BaseModel):
    """Scenario defaults a team keeps next to its code; command-line flags override each one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = Field(default=None, description="Catalog model id or alias.")
    bits: int | None = Field(default=None, description="Weight width (conventional format per engine).")
    quant: str | None = Field(default=None, description="Exact weight format.")
    ctx: int | None = Field(default=None, gt=0, description="Context tokens per user.")
    engine: str | None = Field(default=None, description="Serving engine NAME[@VERSION].")
    kv_dtype: str | None = Field(default=None, description="KV cache dtype.")
    users: int | None = Field(default=None, gt=0, description="Concurrent users to serve.")
    fill: float | None = Field(default=None, gt=0, le=1, description="Average share of the context in use.")
    shared_prefix: int | None = Field(default=None, ge=0, description="Shared system-prompt tokens.")
    headroom: float | None = Field(default=None, ge=0, lt=1, description="Memory kept free (share).")
    max_gpus: int | None = Field(default=None, gt=0, description="Most GPUs in one deployment.")
    min_speed: float | None = Field(default=None, ge=0, description="Slowest acceptable tokens/s per user.")


def find_project_file(cwd: Path, explicit: Path | None) -> Path | None:
    if explicit is not None:
        if not explicit.is_file():
            raise CatalogError(f"--config {explicit}: no such file")
        return explicit
    return next((cwd / name for name in PROJECT_FILES if (cwd / name).is_file()), None)


def load_project_defaults(path: Path) -> ProjectDefaults:
    """Read a TOML or YAML project file (a [vramcalc] table in TOML is accepted too)."""
    if path.suffix == ".toml":
        try:
            data: object = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CatalogError(f"{path}: malformed TOML ({exc})") from exc
        if isinstance(data, dict) and set(data) == {"vramcalc"}:
            data = data["vramcalc"]
    else:
        data = read_yaml_mapping(path)
    try:
        return ProjectDefaults.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(ProjectDefaults.model_fields)
            raise CatalogError(f"{path}: unknown key {where!r} (allowed: {allowed})") from exc
        raise CatalogError(f"{path}: {where}: {err['msg']}") from exc

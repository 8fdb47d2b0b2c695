"""Project defaults for `recommend`: vramcalc.toml or .vramcalc.yaml in the working directory, or --config FILE."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vramcalc import files
from vramcalc import limits as lim
from vramcalc.catalog import read_yaml_mapping
from vramcalc.core.engines import resolve_engine
from vramcalc.core.formats import resolve_format
from vramcalc.errors import CatalogError, VramcalcError
from vramcalc.limits import MAX_PROJECT_FILE_BYTES

PROJECT_FILES = ("vramcalc.toml", ".vramcalc.yaml")


class ProjectDefaults(BaseModel):
    """Scenario defaults a team keeps next to its code; command-line flags override each one."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str | None = Field(default=None, description="Catalog model id or alias.")
    bits: int | None = Field(default=None, description="Weight width (conventional format per engine).")
    quant: str | None = Field(default=None, description="Exact weight format.")
    ctx: int | None = Field(default=None, gt=0, le=lim.MAX_CTX_TOKENS, description="Context tokens per user.")
    engine: str | None = Field(default=None, description="Serving engine NAME[@VERSION].")
    kv_dtype: str | None = Field(default=None, description="KV cache dtype.")
    users: int | None = Field(default=None, gt=0, le=lim.MAX_USERS, description="Concurrent users to serve.")
    fill: float | None = Field(default=None, gt=0, le=1, description="Average share of the context in use.")
    shared_prefix: int | None = Field(
        default=None, ge=0, le=lim.MAX_CTX_TOKENS, description="Shared system-prompt tokens."
    )
    headroom: float | None = Field(default=None, ge=0, lt=1, description="Memory kept free (share).")
    max_gpus: int | None = Field(
        default=None, gt=0, le=lim.MAX_TP, description="Most GPUs in one deployment."
    )
    min_speed: float | None = Field(
        default=None, ge=0, le=lim.MAX_TOKENS_PER_S, description="Slowest acceptable tokens/s per user."
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str | None) -> str | None:
        if engine is not None:
            try:
                resolve_engine(engine)
            except VramcalcError as exc:
                raise ValueError(str(exc)) from exc
        return engine

    @field_validator("quant")
    @classmethod
    def _known_format(cls, quant: str | None) -> str | None:
        if quant is not None:
            try:
                resolve_format(quant)
            except VramcalcError as exc:
                raise ValueError(str(exc)) from exc
        return quant


def find_project_file(cwd: Path, explicit: Path | None) -> Path | None:
    if explicit is not None:
        if files.kind(explicit) == "missing":
            raise CatalogError(f"--config {explicit}: no such file")
        return explicit
    return next((cwd / name for name in PROJECT_FILES if files.kind(cwd / name) != "missing"), None)


def load_project_defaults(path: Path) -> ProjectDefaults:
    """Read a TOML or YAML project file (a [vramcalc] table in TOML is accepted too)."""
    if path.suffix == ".toml":
        text = files.read_text(path, MAX_PROJECT_FILE_BYTES, "project file", CatalogError)
        try:
            data: object = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CatalogError(f"{path}: malformed TOML ({exc})") from exc
        except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
            raise CatalogError(f"{path}: a number too long for a project setting ({str(exc)[:60]})") from exc
        except RecursionError:
            raise CatalogError(f"{path}: TOML nested too deeply for a project file") from None
        if isinstance(data, dict) and set(data) == {"vramcalc"}:
            data = data["vramcalc"]
    else:
        data = read_yaml_mapping(path, max_bytes=MAX_PROJECT_FILE_BYTES, what="project file")
    try:
        return ProjectDefaults.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(ProjectDefaults.model_fields)
            raise CatalogError(f"{path}: unknown key {where!r} (allowed: {allowed})") from exc
        raise CatalogError(f"{path}: {where}: {str(err['msg']).removeprefix('Value error, ')}") from exc

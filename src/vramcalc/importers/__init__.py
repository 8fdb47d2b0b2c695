"""Resolve a MODEL argument: a catalog name, a local config.json / model directory / .gguf file, or a
Hugging Face id from the local cache (or the Hub with --online), into a spec and measured weights."""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from vramcalc import files
from vramcalc.core.formats import StoredWeights, WeightFormat
from vramcalc.errors import ModelFileError, UnknownModelError
from vramcalc.specs import CONTROL_CHARACTERS, ModelSpec

if TYPE_CHECKING:
    from vramcalc.catalog import Catalog
    from vramcalc.importers import gguf_file, hf_cache, safetensors

_PATH_SUFFIXES = (".gguf", ".json", ".safetensors")


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """A model to size: its spec, the measured weights of the concrete file (None for a catalog
    entry or a config.json alone), where it came from and what to tell the user about it."""

    spec: ModelSpec
    stored: WeightFormat | None = None
    origin: str = "catalog"
    files: tuple[Path, ...] = ()
    warnings: tuple[str, ...] = ()
    bytes_read: int = 0

    @property
    def default_engine(self) -> str:
        """llama.cpp for a GGUF file, else vLLM."""
        return "llama.cpp" if self.stored is not None and self.stored.is_gguf else "vllm"


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.lower().endswith(_PATH_SUFFIXES)


def resolve_model(name: str, catalog: Catalog, *, online: bool = False) -> ResolvedModel:
    """The one resolver every command uses for MODEL.

    Order: an explicit path (starts with / ./ ../ ~ or ends in .gguf/.json/.safetensors) is read
    from disk; otherwise a catalog id or alias; otherwise an existing local path; otherwise an
    `org/name` Hugging Face id from the local cache, or fetched (config and safetensors headers
    only) with `online`; otherwise the catalog's unknown-model error with close matches.
    """
    from vramcalc.importers import hf_cache  # the file readers load lazily

    text = name.strip()
    if _looks_like_path(text):
        return load_path(files.expand_user(text, ModelFileError))
    try:
        return ResolvedModel(catalog.models.get(text))
    except UnknownModelError as exc:
        path = files.expand_user(text, ModelFileError)
        if files.kind(path) != "missing":
            return load_path(path)
        if hf_cache.HF_ID.match(text):
            snap = hf_cache.find_snapshot(text)
            if snap is not None:
                return load_snapshot(snap)
            if online:
                return load_online(text)
            raise ModelFileError(hf_cache.not_cached_message(text)) from exc
        raise


def load_path(path: Path) -> ResolvedModel:
    """A model directory, a config.json, a .safetensors file (with its directory's config) or a .gguf."""
    found = files.kind(path)
    if found == "missing":
        raise ModelFileError(f"{path}: {_missing_reason(path)}")
    if found == "dir":
        if files.kind(path / "config.json") != "missing":
            return load_directory(path)
        ggufs = _gguf_choices(path)
        if len(ggufs) == 1:
            return load_gguf(ggufs[0])
        if ggufs:
            listed = ", ".join(p.name for p in ggufs[:5])
            raise ModelFileError(f"{path}: holds several GGUF models ({listed}); pass the file you mean")
        raise ModelFileError(
            f"{path}: no config.json and no .gguf file in this directory; point at a model directory "
            "(config.json + *.safetensors), a config.json or a .gguf file"
        )
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return load_gguf(path)
    if suffix == ".safetensors":
        if files.kind(path.parent / "config.json") == "missing":
            raise ModelFileError(f"{path}: no config.json beside it; the architecture comes from config.json")
        return load_directory(path.parent)
    if suffix == ".json":
        return load_config(path)
    raise ModelFileError(f"{path}: not a config.json, .safetensors, .gguf file or model directory")


def _gguf_choices(folder: Path) -> list[Path]:
    """One path per GGUF model in a folder (the first shard of a split file); mmproj files skipped."""
    from vramcalc.importers import gguf_file  # the file readers load lazily

    out = []
    for p in sorted(folder.glob("*.gguf")):
        if p.name.startswith("mmproj"):
            continue
        m = gguf_file._SHARD.match(p.name)
        if m and int(m.group("i")) != 1:
            continue
        out.append(p)
    return out


def _printable(name: str) -> str:
    """A model name from a file (a directory name, GGUF general.name) as one line of text."""
    return CONTROL_CHARACTERS.sub("?", name)[:200] or "model"


def _missing_reason(path: Path) -> str:
    """Why a path that does not resolve does not: its OSError's words, else no such file."""
    try:
        path.stat()
    except OSError as exc:
        return files.reason(exc) if exc.errno != errno.ENOENT else "no such file or directory"
    except ValueError:
        return "a NUL byte in the name"
    return "no such file or directory"


def _sha256(path: Path) -> str:
    import hashlib

    from vramcalc.importers import config_json  # the file readers load lazily

    return hashlib.sha256(config_json.read_config_bytes(path)).hexdigest()


def _validate(data: dict[str, Any], where: str) -> ModelSpec:
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ModelFileError(f"{where}: cannot build a model spec: {loc}: {err['msg']}") from exc


def load_config(
    path: Path, *, hf_id: str | None = None, revision: str | None = None, model_id: str | None = None
) -> ResolvedModel:
    """A config.json alone: the architecture; weights computed from its format."""
    from vramcalc.importers import config_json  # the file readers load lazily

    cfg = config_json.read_config(path)
    where = str(path)
    label = _printable(hf_id or (path.parent.name if path.name == "config.json" else path.stem))
    source = [
        f"{hf_id} @ {revision} config.json" if hf_id else f"{path} (config.json sha256:{_sha256(path)[:16]})"
    ]
    imported = config_json.spec_from_config(
        cfg,
        model_id=model_id or config_json.stem_id(label.rsplit("/", 1)[-1]),
        name=label,
        source=source,
        where=where,
        hf_id=hf_id,
    )
    return ResolvedModel(imported.spec, None, "config.json", (path,), tuple(imported.warnings))


def _dense_stored(
    cfg: dict[str, Any],
    spec: ModelSpec,
    tensors: list[safetensors.StoredTensor],
    what: str,
    count: int,
    where: str,
) -> WeightFormat:
    from vramcalc.importers import config_json, safetensors  # the file readers load lazily

    stored = safetensors.stored_weights(
        ((t.name, t.dtype, t.nbytes) for t in tensors), spec.num_hidden_layers, what, count
    )
    name, basis = config_json.quant_format(cfg, where) or safetensors.dense_format_of(tensors)
    return WeightFormat(
        name, "dense", f"{name} as stored in {what}", basis=None if basis == name else basis, stored=stored
    )


def load_directory(folder: Path, *, hf_id: str | None = None, revision: str | None = None) -> ResolvedModel:
    """config.json for the architecture plus every safetensors header for the stored bytes."""
    from vramcalc.importers import config_json, safetensors  # the file readers load lazily

    base = load_config(folder / "config.json", hf_id=hf_id, revision=revision)
    files = safetensors.checkpoint_files(folder)
    if not files:
        return base
    headers = [safetensors.read_header(f) for f in files]
    tensors = [t for h in headers for t in h.tensors]
    what = files[0].name if len(files) == 1 else f"{len(files)} safetensors files ({files[0].name}, ...)"
    cfg = config_json.read_config(folder / "config.json")
    stored = _dense_stored(cfg, base.spec, tensors, what, len(tensors), str(folder))
    warnings = list(base.warnings)
    short = [h.path.name for h in headers if h.short]
    if short:
        warnings.append(
            f"{', '.join(short[:3])}: shorter than its tensors claim (partial download?); sized from the header"
        )
    sources = list(base.spec.source) + [f"{h.path.name} header sha256:{h.sha256[:16]}" for h in headers[:16]]
    if len(headers) > 16:
        sources.append(f"... and {len(headers) - 16} more safetensors files")
    spec = base.spec.model_copy(update={"source": tuple(sources)})
    read = sum(h.header_bytes for h in headers)
    return ResolvedModel(spec, stored, "safetensors", (folder / "config.json", *files), tuple(warnings), read)


def load_gguf(path: Path, *, hf_id: str | None = None, revision: str | None = None) -> ResolvedModel:
    """A .gguf file (every shard of a split one): architecture and exact model buffer from headers."""
    from vramcalc.importers import config_json, gguf_file, safetensors  # the file readers load lazily

    model = gguf_file.read_model(path)
    first = model.paths[0]
    base_name = gguf_file._SHARD.sub(r"\g<base>", first.name).removesuffix(".gguf")
    general = model.metadata.get("general.name")
    label = _printable(hf_id or (general[:200] if isinstance(general, str) and general else base_name))
    sources = [f"{hf_id} @ {revision}" if hf_id else str(first)] + [
        f"{p.name} header sha256:{gguf_file.header_sha256(p, _header_len(p, model))[:16]}"
        for p in model.paths
    ]
    data, warnings = gguf_file.spec_from_gguf(
        model, model_id=config_json.stem_id(base_name), name=label, source=sources
    )
    if hf_id:
        data["hf_id"] = hf_id
    spec = _validate(data, str(first))
    what = first.name if len(model.paths) == 1 else f"{len(model.paths)} GGUF shards ({first.name}, ...)"
    stored = safetensors.stored_weights(
        ((t.name, t.ggml_type, t.nbytes) for t in model.tensors), spec.num_hidden_layers, what
    )
    fmt = gguf_file.file_format(model, stored)
    return ResolvedModel(spec, fmt, "gguf", tuple(model.paths), tuple(warnings), model.bytes_read)


def _header_len(path: Path, model: gguf_file.GgufModel) -> int:
    from vramcalc.importers import gguf_file  # the file readers load lazily

    # Hash the metadata and tensor infos only (the first data_offset bytes of each shard).
    return gguf_file.read_header(path).data_offset if len(model.paths) > 1 else model.header_bytes


def load_snapshot(snap: hf_cache.Snapshot) -> ResolvedModel:
    """A cached Hugging Face repository: config.json (+ safetensors), or its single GGUF model."""
    if files.kind(snap.path / "config.json") != "missing":
        return load_directory(snap.path, hf_id=snap.repo_id, revision=snap.revision)
    ggufs = _gguf_choices(snap.path)
    if len(ggufs) == 1:
        return load_gguf(ggufs[0], hf_id=snap.repo_id, revision=snap.revision)
    if ggufs:
        listed = ", ".join(p.name for p in ggufs[:5])
        raise ModelFileError(
            f"{snap.repo_id}: the cached snapshot holds several GGUF files ({listed}); pass one path"
        )
    raise ModelFileError(
        f"{snap.repo_id}: cached snapshot {snap.path} has no config.json or .gguf file; "
        f"download it with `huggingface-cli download {snap.repo_id} config.json`"
    )


def load_online(repo_id: str) -> ResolvedModel:
    """--online: config.json and the safetensors headers through huggingface_hub."""
    from vramcalc.importers import config_json, hf_cache, safetensors  # the file readers load lazily

    fetched = hf_cache.fetch(repo_id)
    base = load_config(fetched.config_path, hf_id=repo_id, revision=fetched.revision)
    if not fetched.files:
        return ResolvedModel(base.spec, None, "hf-online", base.files, base.warnings)
    tensors = [
        safetensors.StoredTensor(name, dtype, shape, nbytes)
        for items in fetched.files.values()
        for name, dtype, shape, nbytes in items
    ]
    names = sorted(fetched.files)
    what = f"{repo_id} @ {fetched.revision[:12]} ({len(names)} safetensors files)"
    cfg = config_json.read_config(fetched.config_path)
    stored = _dense_stored(cfg, base.spec, tensors, what, len(tensors), repo_id)
    spec = base.spec.model_copy(
        update={"source": (*base.spec.source, f"{repo_id} @ {fetched.revision} safetensors headers")}
    )
    return ResolvedModel(spec, stored, "hf-online", base.files, base.warnings)


def measured_note(stored: StoredWeights) -> str:
    """One line for a catalog entry's notes: what the file stores."""
    kinds = ", ".join(f"{k} {v:,} B" for k, v in stored.types[:4])
    return f"Stored weights measured from {stored.source}: {stored.total_bytes:,} B in {stored.tensor_count:,} tensors ({kinds})."


__all__ = ["ResolvedModel", "load_path", "resolve_model"]


def catalog_entry(resolved: ResolvedModel, stem: str) -> ModelSpec:
    """The spec `models import` writes: id from the file name, the measured weights and the
    checkpoint's own format recorded, every default and warning kept in `notes`."""
    if resolved.origin == "catalog":
        raise ModelFileError(
            f"{resolved.spec.id!r} is already a catalog entry; `models import` reads a model directory, "
            "config.json, .gguf file or a Hugging Face id"
        )
    model_id = stem.lower()
    notes = list(resolved.spec.notes)
    update: dict[str, Any] = {"id": model_id}
    stored = resolved.stored
    if stored is not None and stored.stored is not None:
        notes.append(measured_note(stored.stored) + f" Format: {stored.name}.")
        if not stored.is_gguf and stored.rules not in ("bf16", "fp16"):
            update["native_weight_format"] = stored.rules
    update["notes"] = tuple(notes)
    data = resolved.spec.model_dump() | update
    return _validate(data, f"-o {stem}.yaml (the file name becomes the id; use [a-z0-9._-])")

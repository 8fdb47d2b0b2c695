"""Load model and GPU specs from YAML catalogs, lazily, with one-line errors naming file and line."""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib.resources
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from vramcalc import files
from vramcalc.errors import CatalogError, UnknownGpuError, UnknownModelError, UnknownNameError
from vramcalc.specs import GpuSpec, ModelSpec

ENV_CATALOG_PATH = "VRAMCALC_CATALOG_PATH"
MAX_CATALOG_FILE_BYTES = 1_000_000  # a spec is a few KB; refuse anything that is clearly not one
# A spec or plan is a few KB of plain data: a few anchors for shared settings are fine, but
# hundreds of aliases (a "billion laughs" expansion) or deep nesting mean the file is not one.
MAX_YAML_ALIASES = 50
MAX_YAML_DEPTH = 20

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# A composed YAML document (node tree), for line numbers; opaque outside this module.
YamlNode = yaml.Node

SpecT = TypeVar("SpecT", ModelSpec, GpuSpec)
ModelT = TypeVar("ModelT", bound=BaseModel)


def builtin_root() -> Path:
    """Directory holding the shipped `models/` and `gpus/`.

    In an installed wheel they live in the package (vramcalc/_catalog); in a source checkout,
    at the repository top level.
    """
    packaged = Path(str(importlib.resources.files("vramcalc"))) / "_catalog"
    if (packaged / "models").is_dir():
        return packaged
    return Path(__file__).resolve().parents[2]


def _line_of(path: Path, loc: Sequence[int | str]) -> int | None:
    """1-based line of the YAML node at `loc` in the file at `path` (best effort; for error
    messages: the file is composed again, once per run, keyed by its size and mtime)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return line_in(_composed(str(path), stat.st_size, stat.st_mtime_ns), loc)


def line_in(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """1-based line of the node at `loc` under `node` (the nearest enclosing one when `loc` goes
    past what the document holds)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            key, match = next(((k, v) for k, v in node.value if k.value == part), (None, None))
            if match is None:
                return line
            line, node = (key.start_mark.line + 1 if key else line), match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


@functools.lru_cache(maxsize=64)
def _composed(path: str, size: int, mtime_ns: int) -> yaml.Node | None:
    """The YAML node tree of a file (keyed by its size and mtime, so an edited file is read again)."""
    try:
        text = files.read_text(Path(path), MAX_CATALOG_FILE_BYTES, "YAML file", CatalogError)
        node: yaml.Node | None = yaml.compose(text, Loader=_Loader)
    except (CatalogError, yaml.YAMLError, ValueError, RecursionError):
        return None
    return node


def _check_structure(text: str, path: Path) -> None:
    """Refuse alias bombs and deep nesting from the event stream, before any object is built."""
    aliases = depth = 0
    for event in yaml.parse(text, Loader=_Loader):
        line = event.start_mark.line + 1 if event.start_mark else "?"
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_YAML_ALIASES:
                raise CatalogError(
                    f"{path}:{line}: more than {MAX_YAML_ALIASES} YAML aliases (*name); "
                    "write the values out instead of expanding anchors"
                )
        elif isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise CatalogError(
                    f"{path}:{line}: YAML nested deeper than {MAX_YAML_DEPTH} levels; a spec or plan is shallow data"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def read_yaml_mapping(
    path: Path,
    *,
    max_bytes: int = MAX_CATALOG_FILE_BYTES,
    what: str = "catalog entry",
    expected: str = "spec fields",
) -> dict[str, object]:
    """Parse one YAML file safely into a mapping (read_yaml_document without its node tree)."""
    return read_yaml_document(path, max_bytes=max_bytes, what=what, expected=expected)[0]


def read_yaml_document(
    path: Path,
    *,
    max_bytes: int = MAX_CATALOG_FILE_BYTES,
    what: str = "catalog entry",
    expected: str = "spec fields",
) -> tuple[dict[str, object], yaml.Node]:
    """Parse one YAML file safely into a mapping and the node tree it was built from (for line
    numbers): the file is read once, its size checked before reading, aliases and nesting
    counted from the event stream before anything is built, and no tag may construct an object."""
    text = files.read_text(path, max_bytes, what, CatalogError)
    try:
        _check_structure(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except ValueError as exc:  # an integer past Python's 4,300-digit conversion limit
        raise CatalogError(f"{path}: a number too long to be a spec value ({str(exc)[:60]})") from exc
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise CatalogError(
            f"{path}:{line}: YAML tag not allowed ({exc.problem}); a {what} is plain data, no tags"
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CatalogError(f"{path}:{line}: malformed YAML ({problem})") from exc
    if not isinstance(data, dict):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        where = str(path) if data is None else f"{path}:{line_in(node, ()) or 1}"
        raise CatalogError(f"{where}: expected a mapping of {expected}, the file is {kind}")
    assert node is not None  # a mapping came from a node
    return data, node


def validate_spec(cls: type[ModelT], data: dict[str, object], path: Path) -> ModelT:
    """Validate `data` as `cls`, turning the first pydantic error into one line with file:line,
    the field, the problem and what the field expects (its description)."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt key also shows up as a missing one: report the typo, it explains both.
        err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        line = _line_of(path, loc)
        prefix = f"{path}:{line}" if line else str(path)
        if err["type"] == "extra_forbidden":
            fields = _field_names(cls, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(fields)}"
            raise CatalogError(f"{prefix}: unknown key {where!r}{hint}") from exc
        expects = _field_description(cls, loc)
        expects = f" ({loc[-1]}: {expects})" if expects else ""
        if err["type"] == "missing":
            raise CatalogError(f"{prefix}: missing required field {where!r}{expects}") from exc
        if err["type"] == "value_error":  # our own validators: the message is complete
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise CatalogError(f"{prefix}: {where}: {msg}") from exc
        value = err.get("input")
        got = f" (got {files.short(value)})" if isinstance(value, str | int | float | bool) else ""
        raise CatalogError(f"{prefix}: {where}: {err['msg']}{got}{expects}") from exc


def _model_at(cls: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The pydantic model that holds the fields at `loc` (list indices and optionals looked through)."""
    model: type[BaseModel] = cls
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        ann = getattr(info, "annotation", None) if info else None
        inner = next(
            (a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if inner is None:
            return None
        model = inner
    return model


def _field_names(cls: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    model = _model_at(cls, loc)
    return sorted(model.model_fields) if model else []


def _field_description(cls: type[BaseModel], loc: Sequence[int | str]) -> str | None:
    """The description of the field `loc` ends with (None when it ends with a list index)."""
    if not loc or not isinstance(loc[-1], str):
        return None
    model = _model_at(cls, loc[:-1])
    info = model.model_fields.get(loc[-1]) if model else None
    return info.description if info else None


@dataclass
class _Kind(Generic[SpecT]):
    """One kind of entry (models or GPUs) across the built-in and user catalog directories."""

    subdir: str
    cls: type[SpecT]
    not_found: type[UnknownNameError]
    dirs: list[Path]  # user directories first, the built-in one last
    n_user_dirs: int
    _cache: dict[Path, SpecT] = field(default_factory=dict)
    _all: dict[str, SpecT] | None = None

    def _load(self, path: Path) -> SpecT:
        if path not in self._cache:
            spec = validate_spec(self.cls, read_yaml_mapping(path), path)
            if spec.id != path.stem:
                raise CatalogError(
                    f"{path}: id {spec.id!r} does not match the file name; "
                    f"rename the file to {spec.id}.yaml or set id: {path.stem}"
                )
            self._cache[path] = spec
        return self._cache[path]

    def _paths_for(self, stem: str) -> list[Path]:
        found = [d / self.subdir / f"{stem}.yaml" for d in self.dirs]
        return [p for p in found if files.kind(p) != "missing"]

    def _check_user_duplicates(self, stem: str, paths: list[Path]) -> None:
        user = [p for p in paths if p.parents[1] in self.dirs[: self.n_user_dirs]]
        if len(user) > 1:
            raise CatalogError(
                f"two catalog entries with id {stem!r}: {user[0]} and {user[1]}; remove or rename one"
            )

    def get(self, name: str) -> SpecT:
        """Resolve an id or alias (any case): the file named after it first, all files if needed."""
        key = name.strip()
        lowered = key.lower()
        stems = [lowered, lowered.rsplit("/", 1)[-1]]
        for suffix in ("-it", "-instruct", "-chat"):
            if stems[-1].endswith(suffix):
                stems.append(stems[-1].removesuffix(suffix))
        for stem in dict.fromkeys(stems):
            if not stem or "/" in stem or stem.startswith("."):
                continue
            paths = self._paths_for(stem)
            if paths:
                self._check_user_duplicates(stem, paths)
                spec = self._load(paths[0])
                if lowered in _names(spec):
                    return spec
        index = self._index()
        if lowered in index:
            return index[lowered]
        ids = sorted(self.all())
        close = difflib.get_close_matches(lowered, list(index), n=3, cutoff=0.6)
        close_ids = list(dict.fromkeys(index[c].id for c in close))
        hint = f"; did you mean {', '.join(close_ids)}?" if close_ids else ""
        what = "model" if self.cls is ModelSpec else "GPU"
        raise self.not_found(
            f"unknown {what} {files.short(name)}{hint} (`vramcalc {self.subdir} list` shows all {len(ids)})"
        )

    def all(self) -> dict[str, SpecT]:
        """Every entry by id; user entries override built-in ones of the same id."""
        if self._all is None:
            entries: dict[str, SpecT] = {}
            user_paths: dict[str, Path] = {}
            for i, d in enumerate(self.dirs):
                folder = d / self.subdir
                if not files.is_dir(folder):
                    continue
                for path in sorted(folder.glob("*.yaml")):
                    spec = self._load(path)
                    if i < self.n_user_dirs:
                        if spec.id in user_paths:
                            raise CatalogError(
                                f"two catalog entries with id {spec.id!r}: "
                                f"{user_paths[spec.id]} and {path}; remove or rename one"
                            )
                        user_paths[spec.id] = path
                    entries.setdefault(spec.id, spec)
            self._all = dict(sorted(entries.items()))
        return self._all

    def _index(self) -> dict[str, SpecT]:
        index: dict[str, SpecT] = {}
        owner: dict[str, str] = {}
        for spec in self.all().values():
            for n in _names(spec):
                if n in owner and owner[n] != spec.id:
                    raise CatalogError(
                        f"name {n!r} is claimed by both {owner[n]!r} and {spec.id!r}; "
                        "remove the alias from one of them"
                    )
                owner[n] = spec.id
                index[n] = spec
        return index


def _names(spec: ModelSpec | GpuSpec) -> set[str]:
    names = {spec.id.lower(), *(a.lower() for a in spec.aliases)}
    hf_id = getattr(spec, "hf_id", None)
    if hf_id:
        names.add(hf_id.lower())
    return names


def _user_dirs(cli_dirs: Iterable[Path], env: str | None) -> list[Path]:
    dirs = [Path(p) for p in cli_dirs]
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    for d in dirs:
        if not files.is_dir(d):
            raise CatalogError(
                f"catalog directory {d} does not exist (from --catalog or ${ENV_CATALOG_PATH})"
            )
        subdirs = [d / "models", d / "gpus"]
        if not any(files.is_dir(s) and any(s.glob("*.yaml")) for s in subdirs):
            raise CatalogError(
                f"catalog directory {d} is empty: put model specs in {d / 'models'}/*.yaml "
                f"and GPU specs in {d / 'gpus'}/*.yaml"
            )
    return dirs


class Catalog:
    """Models and GPUs from user catalog directories (first) and the built-in catalog."""

    def __init__(self, user_dirs: Sequence[Path] = (), env: str | None = None) -> None:
        users = _user_dirs(user_dirs, env)
        dirs = [*users, builtin_root()]
        self.models: _Kind[ModelSpec] = _Kind("models", ModelSpec, UnknownModelError, dirs, len(users))
        self.gpus: _Kind[GpuSpec] = _Kind("gpus", GpuSpec, UnknownGpuError, dirs, len(users))

    @classmethod
    def from_environment(cls, user_dirs: Sequence[Path] = ()) -> Catalog:
        return cls(user_dirs, os.environ.get(ENV_CATALOG_PATH))


def dump_yaml(data: dict[str, object]) -> str:
    """Plain YAML text for a mapping of plain values (keys in the given order)."""
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110))


def write_model_entry(path: Path, spec: ModelSpec, header: str, force: bool = False) -> None:
    """Write `spec` as a catalog entry at `path` (YAML, fields in spec order, defaults left out),
    atomically (a temporary file in the same directory, then a rename); refuse to overwrite an
    existing file unless `force`. The written text is read back and validated before the rename."""
    if files.kind(path) != "missing" and not force:
        raise CatalogError(f"{path} already exists; pass --force to overwrite it")
    if not files.is_dir(path.parent):
        raise CatalogError(f"{path.parent}: no such directory")
    data = spec.model_dump(mode="json", exclude_defaults=True)
    text = "".join(f"# {line}\n" for line in header.splitlines())
    text += yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)
    loaded = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    written = ModelSpec.model_validate(loaded)
    if written != spec:
        raise CatalogError(f"{path}: the entry would not read back as the same spec; not written")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CatalogError(f"{path}: cannot write ({files.reason(exc)})") from exc

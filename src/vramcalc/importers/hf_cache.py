"""The local Hugging Face cache (models--org--name/snapshots/<rev>/) and, with --online, the Hub."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramcalc.errors import ModelFileError

HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def cache_root(env: dict[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps repositories.

    Source: huggingface_hub constants.py: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else
    HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
    """
    e = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if e.get(key):
            return Path(e[key]).expanduser()
    if e.get("HF_HOME"):
        return Path(e["HF_HOME"]).expanduser() / "hub"
    base = Path(e["XDG_CACHE_HOME"]).expanduser() if e.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "huggingface" / "hub"


@dataclass(frozen=True, slots=True)
class Snapshot:
    repo_id: str
    revision: str  # the commit the snapshot folder is named after
    path: Path


def find_snapshot(repo_id: str, revision: str = "main", root: Path | None = None) -> Snapshot | None:
    """The cached snapshot of `repo_id` at `revision` (a branch in refs/ or a commit), if any.

    Layout (huggingface_hub file_download.py): models--{org}--{name}/refs/{branch} holds the
    commit; snapshots/{commit}/ holds the files (symlinks into blobs/).
    """
    folder = (root or cache_root()) / f"models--{repo_id.replace('/', '--')}"
    if not folder.is_dir():
        return None
    commit = None
    ref = folder / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif _COMMIT.match(revision):
        commit = revision
    snaps = folder / "snapshots"
    if commit and (snaps / commit).is_dir():
        return Snapshot(repo_id, commit, snaps / commit)
    candidates = sorted(
        (p for p in snaps.iterdir() if p.is_dir()) if snaps.is_dir() else [],
        key=lambda p: p.stat().st_mtime,
    )
    if not candidates:
        return None
    return Snapshot(repo_id, candidates[-1].name, candidates[-1])


def not_cached_message(repo_id: str) -> str:
    return (
        f"{repo_id!r} is not in the catalog nor in the Hugging Face cache ({cache_root()}); "
        f"download its config and headers with `huggingface-cli download {repo_id} config.json "
        f"--include '*.json'` (or the whole repo), pass a local path, or rerun with --online "
        "(needs `pip install 'llm-vramcalc[hf]'`)"
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """What --online fetched: the config.json path (in the cache), the commit, and per safetensors
    file its tensors as (name, dtype, shape, nbytes)."""

    config_path: Path
    revision: str
    files: dict[str, list[tuple[str, str, tuple[int, ...], int]]]


def fetch(repo_id: str) -> Fetched:
    """config.json and safetensors headers only, through huggingface_hub (optional extra `hf`)."""
    try:
        hub: Any = importlib.import_module("huggingface_hub")  # optional extra, only for --online
    except ImportError:
        raise ModelFileError(
            "--online needs the huggingface_hub package: pip install 'llm-vramcalc[hf]'"
        ) from None
    try:
        config_path = Path(hub.hf_hub_download(repo_id, "config.json"))
        files: dict[str, list[tuple[str, str, tuple[int, ...], int]]] = {}
        try:
            meta = hub.get_safetensors_metadata(repo_id)
        except Exception as exc:
            if type(exc).__name__ != "NotASafetensorsRepoError":
                raise
            meta = None
        for fname, fmeta in meta.files_metadata.items() if meta else []:
            files[fname] = [
                (name, str(t.dtype), tuple(t.shape), int(t.data_offsets[1]) - int(t.data_offsets[0]))
                for name, t in fmeta.tensors.items()
            ]
    except ModelFileError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ModelFileError(
            f"{repo_id}: cannot fetch from the Hugging Face Hub ({type(exc).__name__}: {first})"
        ) from exc
    parent = config_path.parent.name
    revision = parent if _COMMIT.match(parent) else "unknown"
    return Fetched(config_path, revision, files)

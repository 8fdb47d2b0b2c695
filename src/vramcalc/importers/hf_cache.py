"""The local Hugging Face cache (models--org--name/snapshots/<rev>/) and, with --online, the Hub."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vramcalc import files
from vramcalc.errors import ModelFileError
from vramcalc.limits import MAX_REF_BYTES

# Source: the Hub's repository names: at most 96 characters for the owner and for the name.
HF_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def cache_root(env: dict[str, str] | None = None) -> Path:
    """Where huggingface_hub keeps repositories.

    Source: huggingface_hub constants.py: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else
    HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
    """
    e = os.environ if env is None else env
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if e.get(key):
            return files.expand_user(e[key], ModelFileError)
    if e.get("HF_HOME"):
        return files.expand_user(e["HF_HOME"], ModelFileError) / "hub"
    if e.get("XDG_CACHE_HOME"):
        base = files.expand_user(e["XDG_CACHE_HOME"], ModelFileError)
    else:
        base = files.expand_user("~", ModelFileError) / ".cache"
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
    if not files.is_dir(folder):
        return None
    commit = None
    ref = folder / "refs" / revision
    if files.kind(ref) != "missing":
        commit = files.read_text(ref, MAX_REF_BYTES, "Hugging Face cache ref", ModelFileError).strip()
    elif _COMMIT.match(revision):
        commit = revision
    snaps = folder / "snapshots"
    if commit and _COMMIT.match(commit) and files.is_dir(snaps / commit):
        return Snapshot(repo_id, commit, snaps / commit)
    candidates = [p for _, p in sorted(_snapshot_dirs(snaps), key=lambda pair: pair[0])]
    if not candidates:
        return None
    return Snapshot(repo_id, candidates[-1].name, candidates[-1])


def _snapshot_dirs(snaps: Path) -> list[tuple[float, Path]]:
    """(mtime, folder) of each snapshot folder; unreadable entries are skipped."""
    out = []
    try:
        entries = list(snaps.iterdir()) if files.is_dir(snaps) else []
    except OSError:
        return []
    for p in entries:
        try:
            st = p.stat()
        except OSError:
            continue
        if files.is_dir(p):
            out.append((st.st_mtime, p))
    return out


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

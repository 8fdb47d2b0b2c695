"""Read what nvidia-smi prints, as people paste it: the default table, `--query-gpu=... --format=csv`
(with or without header and units, with a timestamp when taken with -l) and
`--query-compute-apps=pid,process_name,used_memory --format=csv`. Formats are recognised from the
text, never the file name."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from vramcalc import files
from vramcalc.errors import SpecError

# A pasted nvidia-smi output is a few kB; a day of `-l 1` samples on 8 GPUs is ~50 MB.
MAX_SMI_BYTES = 64 * 1024 * 1024
# Samples one file may hold (a day of one-second samples on 8 GPUs is 691,200).
MAX_SAMPLES = 1_000_000
# nvidia-smi prints at most a few hundred characters a line; a longer one is not its output.
MAX_LINE_CHARS = 4_096
# The most memory a reading may claim: 16 TiB in MiB (no card is within 50x of it).
MAX_MIB = 16 * 1024 * 1024
EXPECTED = (
    "expected the nvidia-smi table, `nvidia-smi --query-gpu=... --format=csv` or "
    "`nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv`"
)


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One GPU at one moment: its memory use as nvidia-smi printed it (MiB)."""

    index: int | None  # the GPU column of the table; the row's position in a CSV sample
    name: str | None
    used_mib: float | None
    total_mib: float | None
    timestamp: str | None = None  # as printed (query-gpu with a timestamp column)
    utilization_pct: float | None = None
    key: str | None = None  # the GPU's uuid or PCI bus id where the output prints one

    @property
    def gpu(self) -> str:
        """Which GPU this is, for grouping samples: its uuid or bus id, else its index."""
        return self.key or str(self.index)


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """One process holding GPU memory (the table's Processes section, or --query-compute-apps)."""

    gpu: int | None  # None where the output does not say (compute-apps without gpu_bus_id)
    pid: int | None
    name: str
    used_mib: float | None  # None where the driver does not report it (Windows WDDM: N/A)
    gpu_key: str | None = None  # compute-apps: the gpu_uuid / gpu_bus_id column

    @property
    def card(self) -> str | None:
        """Which GPU the process is on (None: the output does not say)."""
        return self.gpu_key or (None if self.gpu is None else str(self.gpu))


@dataclass(frozen=True, slots=True)
class SmiReading:
    kind: str  # "table" | "query-gpu" | "compute-apps"
    source: str
    samples: tuple[GpuSample, ...]
    processes: tuple[GpuProcess, ...]


def read_smi(path: str, header: str | None = None) -> SmiReading:
    """A file of nvidia-smi output, validated; `header` names the columns of a noheader CSV."""
    from pathlib import Path

    data = files.read_bytes(Path(path), MAX_SMI_BYTES, "nvidia-smi output", SpecError)
    return parse_smi(_decode(data, path), path, header)


def _decode(data: bytes, source: str) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{source}: UTF-16 text (PowerShell's > writes it); save the output as UTF-8")
    if b"\x00" in data:
        raise SpecError(f"{source}: binary (it holds NUL bytes); {EXPECTED}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (bad byte at offset {exc.start:,}); {EXPECTED}") from None


def parse_smi(text: str, source: str, header: str | None = None) -> SmiReading:
    """Recognise the output from its text: the table's "NVIDIA-SMI" banner or MiB-per-GPU rows, a
    CSV header naming nvidia-smi's query fields, else CSV rows of memory figures. `header` (the
    --query-gpu field list) names the columns of output taken with --format=csv,noheader."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if header is not None:
        if len(header) > MAX_LINE_CHARS or ("," not in header and "memory" not in header):
            raise SpecError(
                f"--header {files.short(header)}: give the --query-gpu fields, e.g. "
                "'timestamp, memory.used [MiB], memory.total [MiB]'"
            )
        lines = [header.replace(";", ","), *lines]
    if not any(line.strip() for line in lines):
        raise SpecError(f"{source}: the file is empty; {EXPECTED}")
    for n, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise SpecError(f"{source}:{n}: a line of {len(line):,} characters is not nvidia-smi output")
    if text.lstrip().startswith("<"):
        raise SpecError(f"{source}: an HTML or XML page, not nvidia-smi output; {EXPECTED}")
    boxed = any(line.lstrip().startswith("|") for line in lines)
    if boxed and any("NVIDIA-SMI" in line or _MEMORY_CELL.search(line) for line in lines):
        return _table(lines, source)
    return _csv(lines, source)


# --- the default table --------------------------------------------------------------------------

# "|   0  NVIDIA GeForce RTX 4090        Off |   00000000:01:00.0  On |                  Off |"
_GPU_ROW = re.compile(r"^\|\s{0,8}(\d{1,3})\s{1,8}(\S[^|]{0,120}?)\s{1,40}(?:On|Off|WDDM|TCC|N/A)\s{0,8}\|")
# "|  0%   45C    P8    28W / 450W |   1234MiB / 24564MiB |   0%   Default |"
_MEMORY_CELL = re.compile(r"\|\s{0,40}(\d{1,9})MiB\s{0,8}/\s{0,8}(\d{1,9})MiB\s{0,40}\|")
_NOT_SUPPORTED = re.compile(r"\|\s{0,40}Not Supported\s{0,40}\|")
# "|    0   N/A  N/A     12345      C   python                           7800MiB |"
_PROCESS_ROW = re.compile(
    r"^\|\s{0,8}(\d{1,3})\s{1,12}(?:\S{1,8}\s{1,12}\S{1,8}\s{1,12})?(\d{1,10})\s{1,12}"
    r"(C\+G|M\+C|C|G|M)\s{1,12}(\S.{0,300}?)\s{1,80}(\d{1,9}MiB|N/A|\d{1,9}\.\.\.)\s{0,8}\|$"
)


def _table(lines: list[str], source: str) -> SmiReading:
    samples: list[GpuSample] = []
    processes: list[GpuProcess] = []
    pending: tuple[int, str] | None = None
    in_processes = False
    for line in lines:
        text = line.rstrip()
        if "Processes:" in text:
            in_processes = True
            continue
        if in_processes:
            p = _PROCESS_ROW.match(text)
            if p:
                # "N/A" (Windows WDDM), or "13020..." where a wide figure was cut by the column
                raw = p.group(5)
                used = None if raw == "N/A" or raw.endswith("...") else _mib(raw.removesuffix("MiB"), source)
                processes.append(GpuProcess(int(p.group(1)), int(p.group(2)), p.group(4).strip(), used))
            continue
        g = _GPU_ROW.match(text)
        if g and not _MEMORY_CELL.search(text):
            pending = (int(g.group(1)), g.group(2).strip())
            continue
        if pending and _NOT_SUPPORTED.search(text):
            # unified memory (GB10, Jetson): the driver reports no per-card figure
            samples.append(GpuSample(pending[0], pending[1], None, None))
            pending = None
            continue
        m = _MEMORY_CELL.search(text)
        if m:
            index, name = pending if pending else (len(samples), None)
            used, total = _mib(m.group(1), source), _mib(m.group(2), source)
            util = re.search(r"\|\s{0,12}(\d{1,3})%\s{1,12}\S{1,20}\s{0,12}\|?$", text)
            samples.append(GpuSample(index, name, used, total, None, float(util.group(1)) if util else None))
            pending = None
            _bounded(len(samples), source)
    if not samples and not processes:
        raise SpecError(f"{source}: no GPU rows found; {EXPECTED}")
    return SmiReading("table", source, tuple(samples), tuple(processes))


# --- CSV (--query-gpu / --query-compute-apps) ---------------------------------------------------

_GPU_WORDS = re.compile(r"nvidia|geforce|tesla|quadro|rtx|radeon|instinct", re.IGNORECASE)
_BUS_ID = re.compile(r"^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$")
_UUID = re.compile(r"^(?:GPU|MIG)-[0-9A-Fa-f-]{8,64}$")
_TIMESTAMP = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?$")
_NUMBER = re.compile(r"^(-?\d{1,12}(?:\.\d{1,6})?|nan|inf|-inf)(?:\s?(MiB|%|W|C))?$", re.IGNORECASE)


def _csv(lines: list[str], source: str) -> SmiReading:
    rows = [(n, [c.strip() for c in line.split(",")]) for n, line in enumerate(lines, 1) if line.strip()]
    header: list[str] | None = None
    if (
        rows
        and not any(_NUMBER.match(c) for c in rows[0][1])
        and any("." in c or "[" in c for c in rows[0][1])
    ):
        header = [c.lower() for c in rows[0][1]]
        rows = rows[1:]
    if header is not None and any(
        h.startswith(("pid", "process_name", "used_gpu_memory", "used_memory")) for h in header
    ):
        return _compute_apps(header, rows, source)
    if (
        header is None
        and rows
        and len(rows[0][1]) == 3
        and rows[0][1][0].isdigit()
        and not _NUMBER.match(rows[0][1][1])
        and not _GPU_WORDS.search(rows[0][1][1])
    ):
        # "12345, python, 7800 MiB": a compute-apps row without its header
        return _compute_apps(["pid", "process_name", "used_gpu_memory"], rows, source)
    samples: list[GpuSample] = []
    per_stamp: dict[str | None, int] = {}
    for n, cells in rows:
        if header is not None and len(cells) != len(header):
            raise SpecError(f"{source}:{n}: {len(cells)} values for {len(header)} columns; {EXPECTED}")
        sample = _gpu_row(header, cells, f"{source}:{n}")
        stamp = sample.timestamp
        index = sample.index if sample.index is not None else per_stamp.get(stamp, 0)
        per_stamp[stamp] = per_stamp.get(stamp, 0) + 1
        samples.append(
            GpuSample(
                index,
                sample.name,
                sample.used_mib,
                sample.total_mib,
                stamp,
                sample.utilization_pct,
                sample.key,
            )
        )
        _bounded(len(samples), source)
    if not samples:
        raise SpecError(f"{source}: no rows; {EXPECTED}")
    return SmiReading("query-gpu", source, tuple(samples), ())


def _gpu_row(header: list[str] | None, cells: list[str], where: str) -> GpuSample:
    if header is not None:
        values = dict(zip(header, cells, strict=True))

        def field(*names: str) -> str | None:
            for key, value in values.items():
                if key.split(" [")[0] in names:
                    return value
            return None

        used, total = field("memory.used"), field("memory.total")
        if used is None and total is None:
            raise SpecError(f"{where}: no memory.used or memory.total column; {EXPECTED}")
        util = field("utilization.gpu")
        index = field("index")
        if index is not None and not index.isdigit():
            raise SpecError(f"{where}: index {files.short(index)} is not a whole number")
        return GpuSample(
            int(index) if index is not None else None,
            field("name"),
            _value(used, where) if used is not None else None,
            _value(total, where) if total is not None else None,
            field("timestamp"),
            _value(util, where) if util is not None else None,
            field("uuid", "gpu_uuid", "pci.bus_id", "gpu_bus_id"),
        )
    stamp = name = key = None
    mib: list[float] = []
    pct: list[float] = []
    for cell in cells:
        if _TIMESTAMP.match(cell):
            stamp = cell
            continue
        if _BUS_ID.match(cell) or _UUID.match(cell):
            key = cell
            continue
        m = _NUMBER.match(cell)
        if m is None:
            if name is None and cell:
                name = cell
                continue
            raise SpecError(
                f"{where}: {files.short(cell)} is not a value vramcalc reads without the column names; for "
                "--format=csv,noheader output pass --header with the --query-gpu fields"
            )
        if m.group(2) in ("W", "C"):
            continue
        (pct if m.group(2) == "%" else mib).append(_value(cell, where))
    if not mib:
        raise SpecError(f"{where}: no memory figure in the row; {EXPECTED}")
    if len(mib) > 2:
        raise SpecError(
            f"{where}: {len(mib)} memory figures in a row without a header; pass --header with the --query-gpu "
            "fields (or drop noheader from --format) so each column is named"
        )
    low, high = (min(mib), max(mib)) if len(mib) == 2 else (mib[0], None)
    return GpuSample(None, name, low, high, stamp, pct[0] if pct else None, key)


def _compute_apps(header: list[str], rows: list[tuple[int, list[str]]], source: str) -> SmiReading:
    names = [h.split(" [")[0] for h in header]
    processes: list[GpuProcess] = []
    for n, cells in rows:
        where = f"{source}:{n}"
        if len(cells) != len(names):
            raise SpecError(f"{where}: {len(cells)} values for {len(names)} columns; {EXPECTED}")
        values = dict(zip(names, cells, strict=True))
        pid_text = values.get("pid", "")
        if pid_text and not pid_text.isdigit():
            raise SpecError(f"{where}: pid {files.short(pid_text)} is not a whole number")
        used_text = values.get("used_gpu_memory", values.get("used_memory"))
        used = None if used_text in (None, "[N/A]", "N/A", "[Not Supported]") else _value(used_text, where)
        key = values.get("gpu_uuid") or values.get("gpu_bus_id")
        processes.append(
            GpuProcess(None, int(pid_text) if pid_text else None, values.get("process_name", "?"), used, key)
        )
        _bounded(len(processes), source)
    if not processes:
        raise SpecError(f"{source}: a header and no processes; nothing holds GPU memory")
    return SmiReading("compute-apps", source, (), tuple(processes))


def _value(text: str, where: str) -> float:
    m = _NUMBER.match(text.strip())
    if m is None:
        raise SpecError(f"{where}: {files.short(text)} is not a number nvidia-smi prints")
    value = float(m.group(1))
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{where}: {text.strip()!r} is not a valid reading (NaN, infinite or negative)")
    if value > MAX_MIB:
        raise SpecError(f"{where}: {text.strip()} MiB is more memory than any machine has")
    return value


def _mib(text: str, source: str) -> float:
    return _value(text, source)


def _bounded(n: int, source: str) -> None:
    if n > MAX_SAMPLES:
        raise SpecError(f"{source}: more than {MAX_SAMPLES:,} samples; split the file")

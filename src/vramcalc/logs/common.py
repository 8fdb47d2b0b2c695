"""Shared parts of the startup-log readers: the LogFacts/LogFigure values, file reading, text matching."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vramcalc import files
from vramcalc.errors import SpecError
from vramcalc.limits import MAX_LOG_LINE_CHARS
from vramcalc.units import GIB, KIB, MIB

# A line longer than MAX_LOG_LINE_CHARS, kept to its first MAX_LOG_LINE_CHARS characters (only
# line starts can begin a match, so the substitution is one pass).
_LONG_LINE = re.compile(rf"^([^\n]{{{MAX_LOG_LINE_CHARS}}})[^\n]+", re.MULTILINE)

# Refuse bigger files without reading them: a startup log is a few hundred KB at most; a 5 MB file
# is a whole day of request logs, where the startup lines may be from several restarts.
MAX_LOG_BYTES = 5 * 10**6

_UNITS = {"B": 1, "bytes": 1, "KiB": KIB, "MiB": MIB, "GiB": GIB, "Gib": GIB}
# Every pattern here and in the engine readers runs in time linear in the log: each starts with a
# literal (or a lookbehind that rejects most positions at once), and every repetition is bounded,
# so no match attempt scans far before it fails. Numbers have at most 20 digits (a longer run is
# not a figure and matches nothing, instead of its first 20 digits).
DIGITS = r"\d{1,20}(?!\d)"
NUM = r"(-?\d{1,20}(?:\.\d{1,20})?(?!\d))"
INT = r"(\d{1,3}(?:,\d{3}){1,6}(?![\d,])|\d{1,20}(?!\d))"  # 23648 or 1,215,552
_ANSI = re.compile(r"\x1b\[[0-9;]{0,32}[A-Za-z]")

Setting = int | float | bool | str


# A figure printed with two decimals is only known to half its last digit (0.005 GiB = 5 MiB); the
# original text is kept beside every value (LogFigure.text) so the comparison can say so.
@dataclass(frozen=True, slots=True)
class LogFigure:
    """One figure the engine printed, converted to bytes / tokens / a ratio, with its text."""

    key: str  # the vramcalc engine-figure key it is compared with (EngineFigure.key)
    label: str  # the engine's own words
    value: int | float | bool
    unit: str  # "bytes", "tokens", "blocks", "x", "layers" or "" (starts)
    text: str  # as printed, e.g. "3.81GiB", "15868.49 MiB", "1.56x"
    line: int  # 1-based line number in the log (0: derived from several lines)


@dataclass(frozen=True, slots=True)
class LogFacts:
    """What a startup log says: engine, version/era, model, GPU, settings, figures, what it lacks."""

    engine: str  # "vllm" | "llama.cpp" | "ollama"
    version: str | None  # as printed ("0.6.4.post1", "b4589", "0.6.0"), None when not printed
    era: str | None  # vLLM "V0" / "V1" from the log's wording; None when the wording does not tell
    era_evidence: str  # the phrase that decided the era (or why it is unknown)
    model: str | None  # as printed (HF id, path, GGUF general.name)
    gpu: str | None  # as printed ("NVIDIA GeForce RTX 4090")
    settings: dict[str, Setting]  # only what the log states
    figures: tuple[LogFigure, ...]
    missing: tuple[str, ...]  # what a calibration needs but the log does not say (MISSING_HINTS keys)
    markers: tuple[str, ...] = ()  # engine phrases recognised (they decide the era)
    notes: tuple[str, ...] = ()

    def figure(self, key: str) -> LogFigure | None:
        return next((f for f in self.figures if f.key == key), None)

    def missing_hint(self, key: str) -> str:
        """What a missing item (model, context, gpu, figures) is, in this engine's log terms."""
        return MISSING_HINTS[key][self.engine]

    def found(self) -> str:
        """One clause: what was recognised, for error messages."""
        era = f" {self.era}" if self.era else ""
        version = f" {self.version}" if self.version else ""
        parts = [f"{_ENGINE_TITLE[self.engine]}{era}{version} log"]
        if self.model:
            parts.append(f"model {self.model}")
        if self.gpu:
            parts.append(f"GPU {self.gpu}")
        ctx = self.settings.get("max_model_len", self.settings.get("n_ctx"))
        if ctx is not None:
            parts.append(f"{'max_model_len' if self.engine == 'vllm' else 'n_ctx'} {ctx}")
        labels = [f.label for f in self.figures]
        parts.append(f"figures: {', '.join(labels)}" if labels else "no memory figures")
        return "; ".join(parts)


_ENGINE_TITLE = {"vllm": "vLLM", "llama.cpp": "llama.cpp", "ollama": "Ollama"}


def read_log_file(path: Path) -> str:
    """The text of a log file, or a one-line SpecError (missing, directory, empty, binary, > 5 MB).

    The size is checked before reading; at most MAX_LOG_BYTES + 1 bytes are ever read.
    """
    kind = files.kind(path)
    if kind == "missing":
        raise SpecError(f"{path}: no such file")
    if kind == "dir":
        raise SpecError(f"{path} is a directory; give the log file itself")
    if kind != "file":
        raise SpecError(f"{path} is not a regular file; save the log to a file first")
    with contextlib.suppress(OSError):
        size = path.stat().st_size
        if size > MAX_LOG_BYTES:
            raise SpecError(
                f"{path} is {size / 1e6:.1f} MB; calibrate reads startup logs up to "
                f"{MAX_LOG_BYTES / 1e6:.0f} MB: cut out the part from the engine's start to 'ready'"
            )
    data = files.read_bytes(path, MAX_LOG_BYTES, "startup log", SpecError)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SpecError(f"{path} is UTF-16 text (PowerShell's > writes it); save the log as UTF-8")
    if b"\x00" in data:
        raise SpecError(f"{path} is binary (it holds NUL bytes), not a text log")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise SpecError(f"{path} is empty")
    return text


# ---------------------------------------------------------------------------------------------
# Matching helpers


class LogText:
    """The log, normalised (no ANSI colours, \\n line ends), with line numbers for match offsets."""

    def __init__(self, raw: str) -> None:
        text = _ANSI.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
        # No engine line is this long: cut it, so that no match attempt can scan far.
        self.text = _LONG_LINE.sub(r"\1", text)

    def line_of(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    @property
    def n_lines(self) -> int:
        return self.text.count("\n") + 1

    def last_line(self, literal: str, pattern: str) -> re.Match[str] | None:
        """The match of `pattern` searched from `literal` in the last line holding both: each
        line is looked at once, so a log of such lines costs no more than one pass."""
        end = len(self.text)
        compiled = re.compile(pattern)
        while (at := self.text.rfind(literal, 0, end)) >= 0:
            start = self.text.rfind("\n", 0, at) + 1
            stop = self.text.find("\n", at)
            m = compiled.search(self.text, at, len(self.text) if stop < 0 else stop)
            if m is not None:
                return m
            end = start
        return None

    def all(self, pattern: str, start: int = 0) -> Iterator[re.Match[str]]:
        return re.compile(pattern, re.MULTILINE).finditer(self.text, start)

    def last(self, *patterns: str, start: int = 0) -> re.Match[str] | None:
        """The last match of the first pattern that matches at all (patterns in order of preference)."""
        for pattern in patterns:
            found = None
            for found in self.all(pattern, start):  # noqa: B007 - keep the last
                pass
            if found is not None:
                return found
        return None

    def first(self, pattern: str, start: int = 0) -> re.Match[str] | None:
        return re.compile(pattern, re.MULTILINE).search(self.text, start)

    def has(self, phrase: str) -> bool:
        return phrase in self.text


def to_bytes(number: str, unit: str) -> int:
    return round(float(number) * _UNITS[unit])


def parse_int(text: str) -> int:
    return int(text.replace(",", ""))


def is_int(text: str) -> bool:
    """ASCII digits only, at most 20 ('²'.isdigit() is True, but int('²') fails)."""
    return 0 < len(text) <= 20 and text.isascii() and text.isdigit()


def after_word(name: str) -> str:
    r"""`name` not preceded by a word character or a dot, literal first (so the regex engine can
    skip to it): name(?<![\w.]name)."""
    escaped = re.escape(name)
    return rf"{escaped}(?<![\w.]{escaped})"


class Collector:
    """Accumulates settings and figures (first writer of a key wins) with their line numbers."""

    def __init__(self, t: LogText) -> None:
        self.t = t
        self.settings: dict[str, Setting] = {}
        self.figures: dict[str, LogFigure] = {}
        self.markers: list[str] = []
        self.notes: list[str] = []

    def setting(self, key: str, value: Setting | None) -> None:
        if value is None or key in self.settings:
            return
        self.settings[key] = value

    def figure(
        self, key: str, label: str, value: int | float | bool, unit: str, text: str, m: re.Match[str] | None
    ) -> None:
        if key not in self.figures:
            line = self.t.line_of(m.start()) if m else 0
            self.figures[key] = LogFigure(key, label, value, unit, text.strip(), line)

    def size(self, key: str, label: str, m: re.Match[str] | None, number: int = 1, unit: int = 2) -> None:
        """A memory figure from groups `number` (value) and `unit` of a match."""
        if m is not None:
            unit_text = m.group(unit)
            if (
                unit_text == "GB"
            ):  # vLLM's weights line: bytes / 2^30 printed as "GB" (see vramcalc.logs.vllm)
                unit_text = "GiB"
            self.figure(key, label, to_bytes(m.group(number), unit_text), "bytes", m.group(0), m)

    def arg(self, key: str, *names: str, kind: type = int) -> None:
        """`name=value`, `name='value'` or `'name': value` (argparse Namespace, engine config, dict)."""
        for name in names:
            m = self.t.last(rf"{after_word(name)}(?:=|': )'?([\w.\-/:]{{1,256}})'?")
            if m is None or m.group(1) in ("None", "none", "null"):
                continue
            raw = m.group(1)
            try:
                value: Setting = kind(raw) if kind is not str else raw
            except ValueError:
                continue
            self.setting(key, value)
            return


def parse_bool(text: str) -> bool | None:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "on", "enabled", "yes"):
        return True
    if lowered in ("0", "false", "off", "disabled", "no"):
        return False
    return None  # "auto" and anything else: the engine decides


# What each missing item means, per engine, for the one-line error.
MISSING_HINTS = {
    "model": {
        "vllm": "the model (vLLM's model='...' args or config line; or pass --model)",
        "llama.cpp": "the model (general.name; or pass --model)",
        "ollama": "the model (Ollama's log does not name it: pass --model)",
    },
    "context": {
        "vllm": "max_model_len",
        "llama.cpp": "the context size (n_ctx)",
        "ollama": "the context size (--ctx-size of 'starting llama server', or n_ctx)",
    },
    "gpu": {
        "vllm": "the GPU (vLLM V1 logs neither its name nor its total memory at INFO level: pass --gpu)",
        "llama.cpp": "the GPU (ggml_cuda_init 'Device 0: ...'; or pass --gpu)",
        "ollama": 'the GPU (msg="inference compute" ... name=...; or pass --gpu)',
    },
    "figures": {
        "vllm": "memory figures ('Model loading took', 'Available KV cache memory', '# GPU blocks', ...)",
        "llama.cpp": "buffer sizes ('CUDA0 model/KV/compute buffer size = ... MiB')",
        "ollama": "memory figures (the 'msg=offload ... memory.required.*' line or the runner's buffer sizes)",
    },
}

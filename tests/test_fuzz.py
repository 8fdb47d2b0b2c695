"""Fuzz: hostile inputs on every surface, each through the real CLI entry point (vramcalc.cli.main)
with a time and a memory bound, against one contract.

The contract: exit 0, 1 or 2; every stderr line starts with `vramcalc: `; on exit 2 nothing on
stdout and the error names the file, field or flag; never "internal error"; under 5 s and 500 MiB
each; JUnit XML that parses; no workflow command (a line starting with `::`) but the `::error`
annotations of `--format github`; Markdown table rows with the header's cell count.

The corpus (tests/fuzz_corpus.py) is built once per session; the flag surfaces are hypothesis
strategies with a fixed seed. `test_the_fuzz_covers_at_least_1000_inputs` counts what ran.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import fuzz_corpus
from tests.conftest import ROOT
from tests.fuzz_corpus import Case
from vramcalc import cli

TIME_LIMIT_S = 5.0
MEMORY_LIMIT_BYTES = 500 * 2**20
RAN: list[str] = []  # every input run, for the count


class _TimeUp(BaseException):
    """The time bound fired (a BaseException: the CLI boundary must not take it for an error)."""


@dataclass
class Outcome:
    code: int | str
    out: str
    err: str
    seconds: float


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")


def call(args: tuple[str, ...]) -> Outcome:
    """`vramcalc ARGS` in this process: stdout/stderr captured, at most TIME_LIMIT_S of wall time
    (SIGALRM) and MEMORY_LIMIT_BYTES more address space than now (RLIMIT_AS; past it an allocation
    fails with MemoryError, which the boundary would report as an internal error)."""
    RAN.append(shlex.join(a.replace("\x00", "\\0") for a in args)[:200])
    out, err = io.StringIO(), io.StringIO()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space() + MEMORY_LIMIT_BYTES
    resource.setrlimit(
        resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard)
    )
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_LIMIT_S)
    start = time.perf_counter()
    code: int | str
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except _TimeUp:
        code = "timeout"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    return Outcome(code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def _alarm(signum: int, frame: object) -> None:
    raise _TimeUp


def _lines(text: str) -> list[str]:
    """Lines as a CI runner splits them: at \\n, \\r and \\r\\n only (not at U+2028 or \\x0b)."""
    return re.split(r"\r\n|\r|\n", text.removesuffix("\n")) if text else []


_GITHUB_ERROR = re.compile(r"^::error file=[^,:\r\n]*,line=\d+,title=[^,:\r\n]*::[^\r\n]*$")
_CELL = re.compile(r"(?<!\\)\|")


def violations(case: Case, o: Outcome) -> list[str]:
    """What breaks the contract (empty when nothing does)."""
    bad: list[str] = []
    if o.code == "timeout":
        return [f"ran past {TIME_LIMIT_S:g} s"]
    if o.code not in (0, 1, 2):
        bad.append(f"exit {o.code}")
    if "internal error" in o.err:
        bad.append(o.err.strip().splitlines()[-1][:300])
    if o.seconds > TIME_LIMIT_S:
        bad.append(f"took {o.seconds:.1f} s")
    lines = _lines(o.err)
    stray = [line for line in lines if not line.startswith("vramcalc: ")]
    if stray:
        bad.append(f"stderr line without the vramcalc: prefix: {stray[0][:120]!r}")
    if o.code == 2:
        if o.out:
            bad.append(f"exit 2 with stdout: {o.out[:80]!r}")
        errors = [line for line in lines if line.startswith("vramcalc: error: ")]
        if not errors:
            bad.append("exit 2 without a `vramcalc: error:` line")
        elif case.names and not any(n[:40] in o.err for n in case.names if n):
            bad.append(f"the error names none of {[n[-60:] for n in case.names]}: {errors[-1][:200]!r}")
    out_lines = _lines(o.out)
    commands = [line for line in out_lines if line.startswith("::")]
    if case.fmt != "github" and commands:
        bad.append(f"a workflow command in {case.fmt} output: {commands[0][:120]!r}")
    if case.fmt == "github":
        forged = [c for c in commands if not _GITHUB_ERROR.match(c)]
        if forged:
            bad.append(f"an injected workflow command: {forged[0][:120]!r}")
    if o.code in (0, 1) and case.fmt == "json":
        try:
            json.loads(o.out)
        except ValueError as exc:
            bad.append(f"JSON that does not parse: {exc}")
    if o.code in (0, 1) and case.fmt == "junit":
        try:
            ET.fromstring(o.out.encode("utf-8", "surrogatepass"))
        except ET.ParseError as exc:
            bad.append(f"JUnit XML that does not parse: {exc}")
    if o.code in (0, 1) and case.fmt == "markdown":
        width = None  # the cell count of the table the line is in (its header row)
        for line in out_lines:
            if not line.startswith("|"):
                width = None
                continue
            cells = len(_CELL.findall(line))
            width = cells if width is None else width
            if cells != width:
                bad.append(f"a Markdown row with another cell count: {line[:120]!r}")
                break
    return bad


def run_all(cases: list[Case]) -> None:
    failures = []
    for case in cases:
        o = call(case.args)
        for v in violations(case, o):
            failures.append(f"{case.name}: {v}")
    assert not failures, f"{len(failures)} contract violations:\n" + "\n".join(failures[:25])


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Case]]]:
    """Each surface's folder and inputs, built once."""
    root = tmp_path_factory.mktemp("fuzz")
    built: dict[str, tuple[Path, list[Case]]] = {}
    for builder in fuzz_corpus.BUILDERS:
        folder = root / builder.__name__
        folder.mkdir()
        built[builder.__name__] = (folder, builder(folder))
    return built


@pytest.fixture(autouse=True)
def _quiet_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No user catalog, an empty Hugging Face cache, no project file in the working directory."""
    monkeypatch.delenv("VRAMCALC_CATALOG_PATH", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.mark.parametrize("surface", [b.__name__ for b in fuzz_corpus.BUILDERS])
def test_corpus(
    surface: str, corpus: dict[str, tuple[Path, list[Case]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every built input of one surface meets the contract."""
    folder, cases = corpus[surface]
    monkeypatch.setenv("HF_HUB_CACHE", str(folder / "hf"))  # special_cases keeps a hostile cache there
    run_all(cases)


# --- flags: hypothesis -------------------------------------------------------------------------------

_INTS = st.one_of(
    st.integers(min_value=-5, max_value=70),
    st.integers(min_value=-(10**6), max_value=2 * 10**6),
    st.sampled_from([0, 1, 2**27, 2**27 + 1, 10**6, 10**6 + 1, 64, 65, 10**18 - 1, 10**18, 10**400]),
).map(str)
_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "NaN", "1e400", "-0", "0", "1", "1.0000001", "0.379", "1e-320"]),
)
_JUNK = st.sampled_from(["", " ", "x", "²", "٣", "1_000", "0x10", "9" * 5000, "1e3", "--", "-1", "\u2028"])
_VALUES = st.one_of(_INTS, _FLOATS, _JUNK)
INT_FLAGS = ("--users", "--ctx", "--workers", "--shared-prefix", "--max-num-seqs", "--max-num-batched-tokens",
             "--ubatch", "--tp", "--prompt-tokens", "--output-tokens", "--bits")  # fmt: skip
FLOAT_FLAGS = ("--fill", "--gpu-util", "--cpu-offload-gb", "--host-bandwidth")
ENGINES = st.sampled_from(["vllm", "vllm@", "vllm@0.19", "vllm@9" + "9" * 400, "vllm@0.6.0.0.0", "sglang", "tgi",
                           "transformers", "llama.cpp", "llama.cpp@", "ollama", "ollama@0.12", "ollama@0.6", "Ollama",
                           "nosuch", "@", "vllm@@", "vllm@x"])  # fmt: skip
MODELS = st.sampled_from(["llama-3.1-8b", "gemma-2-27b", "qwen2.5-7b", "qwen3-30b-a3b", "gpt-oss-20b",
                          "deepseek-v3", "nosuch", "m" * 300, "org/" + "n" * 300, "~nosuchuser/x.json", "./x.gguf"])  # fmt: skip
GPUS = st.sampled_from(["rtx-4090", "h100-sxm", "l40s", "rtx-4060-ti-16gb", "nosuch", "g" * 300, None])
FORMATS = st.sampled_from(["table", "json", "markdown", "csv"])


@settings(max_examples=240, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    MODELS,
    GPUS,
    ENGINES,
    FORMATS,
    st.lists(st.tuples(st.sampled_from(INT_FLAGS + FLOAT_FLAGS), _VALUES), max_size=4),
    st.lists(
        st.sampled_from(["--flash-attn", "--no-flash-attn", "--allow-long-ctx", "--explain"]), max_size=2
    ),
)
def test_estimate_flags(
    model: str, gpu: str | None, engine: str, fmt: str, flags: list[tuple[str, str]], switches: list[str]
) -> None:
    args = ["estimate", model, "--engine", engine, "--format", fmt]
    if gpu:
        args += ["--gpu", gpu]
    for flag, value in flags:
        args += [flag, value]
    args += switches
    # --tp reaches the deployment as its GPU count: assess.validate names it gpu_count.
    named = (
        *(f for f, _ in flags),
        model,
        model.removeprefix("./"),
        engine,
        gpu or "",
        "--engine",
        "--format",
        "gpu_count",
    )
    case = Case("estimate flags", tuple(args), named, fmt)
    assert not (broken := violations(case, call(case.args))), (args, broken)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    MODELS,
    st.lists(
        st.tuples(
            st.sampled_from(["--users", "--ctx", "--max-gpus", "--min-speed", "--headroom", "--fill",
                             "--shared-prefix", "--output-tokens", "--per-tier", "--max-price", "--bits"]),
            _VALUES,
        ),
        max_size=3,
    ),
    st.sampled_from(["json", "markdown", "table"]),
)  # fmt: skip
def test_recommend_flags(model: str, flags: list[tuple[str, str]], fmt: str) -> None:
    args = ["recommend", model, "--format", fmt]
    for flag, value in flags:
        args += [flag, value]
    named = (*(f for f, _ in flags), model, model.removeprefix("./"), "--format")
    case = Case("recommend flags", tuple(args), named, fmt)
    assert not (broken := violations(case, call(case.args))), (args, broken)


_PLAN_VALUES = st.one_of(
    st.integers(min_value=-3, max_value=3000),
    st.sampled_from([10**30, 2**27 + 1, 10**6 + 1, 65]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.none(),
    st.booleans(),
)
PLAN_KEYS = ("ctx", "users", "workers", "fill", "headroom", "shared_prefix", "output_tokens", "gpu_count",
             "host_bandwidth_gbs", "bits", "kv_dtype", "engine", "layout", "name", "quant", "model", "gpu")  # fmt: skip


@settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(st.sampled_from(PLAN_KEYS), _PLAN_VALUES, max_size=3),
    st.sampled_from(["text", "json", "junit", "github", "markdown"]),
)
def test_plan_values(tmp_path_factory: pytest.TempPathFactory, changes: dict[str, object], fmt: str) -> None:
    path = tmp_path_factory.mktemp("plan") / "plan.yaml"
    deployment = {**fuzz_corpus.PLAN_BASE, **changes}
    path.write_text(fuzz_corpus._plan_yaml([deployment, {**fuzz_corpus.PLAN_FAIL, "name": "fails"}]))
    case = Case("plan values", ("check", str(path), "--format", fmt), (str(path),), fmt)
    assert not (broken := violations(case, call(case.args))), (changes, broken)


# --- the net, pipes and disks -----------------------------------------------------------------------------


def test_the_last_net_is_one_line_and_the_suite_sees_it(
    monkeypatch: pytest.MonkeyPatch, internal_errors: list[BaseException]
) -> None:
    """An exception no validator expected still ends as one line and exit 2; the autouse
    `internal_errors` fixture (tests/conftest.py) records it, and would fail this test."""
    from vramcalc.core import scenario

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(scenario, "estimate", broken)
    o = call(("estimate", "llama-3.1-8b"))
    assert o.code == 2 and o.out == ""
    assert o.err.count("\n") == 1 and "internal error: ZeroDivisionError: planted" in o.err
    assert [type(e) for e in internal_errors] == [ZeroDivisionError]
    internal_errors.clear()


def _shell(command: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "vramcalc"
    return subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command.replace('vramcalc', shlex.quote(str(exe)))}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "command",
    [
        "vramcalc --help | (exec 0<&-)",
        "vramcalc check examples/plans/ --format junit | (exec 0<&-)",
        "vramcalc models list --json | (exec 0<&-)",
        "vramcalc estimate gemma-2-27b --users 100 --explain | (exec 0<&-)",
    ],
)
def test_a_closed_pipe_ends_quietly_with_141(command: str) -> None:
    """128 + SIGPIPE, what the shell reports for a tool a closed pipe killed; nothing on stderr."""
    r = _shell(command)
    assert (r.returncode, r.stderr) == (cli.CLOSED_PIPE_EXIT, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize(
    "command",
    [
        "vramcalc models list --json > /dev/full",
        "vramcalc --help > /dev/full",
        "vramcalc check examples/plans/ > /dev/full",
    ],
)
def test_a_full_disk_is_one_line_and_exit_2(command: str) -> None:
    r = _shell(command)
    assert r.returncode == 2
    assert r.stderr == "vramcalc: error: cannot write output: No space left on device\n"


def test_the_fuzz_covers_at_least_1000_inputs(corpus: dict[str, tuple[Path, list[Case]]]) -> None:
    """The built corpus plus the hypothesis examples: every surface, at least 1,000 inputs."""
    sizes = {name: len(cases) for name, (_, cases) in corpus.items()}
    examples = 240 + 60 + 120
    assert sum(sizes.values()) + examples >= 1000, (sizes, examples)
    assert all(n >= 10 for n in sizes.values()), sizes


def test_the_readme_states_every_bound() -> None:
    """README's "Limits on input" table says what vramcalc.limits enforces."""
    from vramcalc import limits as lim

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Limits on input") : text.index("## Command reference")]
    for value in (lim.MAX_LAYERS, lim.MAX_HIDDEN, lim.MAX_INTERMEDIATE, lim.MAX_HEADS, lim.MAX_HEAD_DIM,
                  lim.MAX_VOCAB, lim.MAX_POSITIONS, lim.MAX_EXPERTS, lim.MAX_SHARED_EXPERTS, lim.MAX_USERS,
                  lim.MAX_WORKERS, lim.MAX_TP, int(lim.MAX_GIB), int(lim.MAX_BANDWIDTH_GBS), int(lim.MAX_GPU_GB),
                  lim.MAX_GPU_MIB, int(lim.MAX_GPU_RATE), lim.MAX_LOG_LINE_CHARS, lim.MAX_PLAN_FILES,
                  lim.MAX_WALK_ENTRIES):  # fmt: skip
        assert f"{value:,}" in section, value
    assert lim.MAX_PARAMS == 10**14 and "10^14" in section
    assert f"{lim.MAX_JSON_DEPTH} levels" in section and f"{lim.MAX_JSON_INT_DIGITS} digits" in section

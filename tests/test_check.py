"""Plan files, `vramcalc check`, `vramcalc schema plan` and `vramcalc plan emit`: the examples with their
exit codes in every format, hand-computed misses, verified fixes, and one clear line for bad input."""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, CliResult
from vramcalc.catalog import Catalog
from vramcalc.core.assess import Miss
from vramcalc.core.check import CheckResult, check_all
from vramcalc.core.recommend import evaluate
from vramcalc.plans import Deployment, load_plans

Run = Callable[..., CliResult]
EXAMPLES = ROOT / "examples" / "plans"
FIXTURES = ROOT / "tests" / "fixtures" / "plans"
GIB = 2**30

# Every example with the exit code `vramcalc check` gives it.
EXPECTED_EXIT = {
    "gemma-2-27b-4090-2-users.yaml": 0,
    "gemma-2-27b-4090-10-users.yaml": 1,
    "gemma-2-27b-l40s-10-users.yaml": 0,
    "gemma-2-27b-h100-20-users-8k.yaml": 0,
    "gemma-2-27b-2x4090-replicas.yaml": 0,
    "deepseek-v3-8xh200.yaml": 0,
    "gemma-2-27b-4090-ollama.yaml": 0,
}
FORMATS = ("text", "json", "junit", "github", "markdown")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _deployment_lines(path: Path) -> list[int]:
    """1-based lines where each deployment starts (the `  - ` item under `deployments:`)."""
    return [i for i, s in enumerate(path.read_text().splitlines(), 1) if s.startswith("  - ")]


def _check(path: Path) -> list[CheckResult]:
    return check_all(load_plans([str(path)], Catalog()))


@pytest.fixture(autouse=True)
def _in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths in reports are the paths as given: run from the repository root, as CI does."""
    monkeypatch.chdir(ROOT)


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.yaml")) == sorted(EXPECTED_EXIT)
    assert len(EXPECTED_EXIT) >= 6


# --- layer 1: hand-computed figures -----------------------------------------------------------------


def test_ten_users_on_a_4090_miss_by_hand() -> None:
    """Gemma-2-27B awq-int4 on vLLM 0.34 (the default), 10 users x 4,096 tokens on an RTX 4090, 10%
    headroom.

    0.34 sizes its extensible KV cache after warmup (vllm/v1/worker/extensible_kv_cache.py
    measure_kv_cache_bytes), with gpu_memory_utilization unset = 1.0: requested R = 25,253,904,384
    CUDA bytes, free at init I = R - CUDA context 536,870,912 = 24,717,033,472. The engine then holds
    used = weights 15,895,135,232 + non-torch 139,586,437 + graphs 536,870,912 = 16,571,592,581.
    The sampler path is unknown, so the verdict counts its larger peak (the sort path, 2,549,350,400):
    transient T = 2,549,350,400 + graphs 536,870,912 = 3,086,221,312; margin = max(1 GiB,
    0.75 x T = 2,314,665,984) = 2,314,665,984.
    KV = min(R - used = 8,682,311,803, I - used - margin = 5,830,774,907) - T = 2,744,553,595 B.
    One user's KV is 4,096 x 376,832 = 1,543,503,872 B: the pool holds floor(1.78) = 1 user, 9 wait.
    The process at the main value (FlashInfer's sampler, peak 917,504,000; pool 5,600,284,795):
    context + used + pool + peak = 23,626,252,288 B. In use with 1 running: weights + peak 917,504,000
    + the range's gap 2,855,731,200 + reserve 1,213,328,261 + 1,543,503,872 = 22,425,202,565 B, under
    the budget int(0.9 x 25,757,220,864) = 23,181,498,777 B (no memory miss).
    """
    [r] = _check(EXAMPLES / "gemma-2-27b-4090-10-users.yaml")
    a = r.assessment
    assert not r.passed and a.verdict == "queues"
    assert a.per_gpu_bytes == 23_626_252_288
    assert a.kv_pool_bytes == 2_744_553_595
    assert a.users_at_once == 1
    assert a.budget_bytes == 23_181_498_777
    assert a.demand_bytes == 22_425_202_565
    assert a.kv_bytes == 15_435_038_720
    kinds = [m.kind for m in r.misses]
    assert kinds == ["queue"]  # the one running streams at full speed; the queue is the miss
    queue = r.misses[0]
    assert (queue.value, queue.limit, queue.unit) == (1, 10, "users")
    assert r.most_users == 1


def test_miss_arithmetic() -> None:
    """A speed miss: 22.5 tokens/s against a goal of 30 is 7.5 short, 25% of the goal."""
    m = Miss("speed", 22.5, 30.0, "tokens/s", "")
    assert (m.by, m.share) == (7.5, 0.25)
    assert Miss("offload", 10, 0, "bytes", "").share is None


def test_two_users_fit_a_4090_with_headroom() -> None:
    """2 users with --max-num-seqs 2 on vLLM 0.34: the profile samples 2 rows, so the peak is the
    forward's, 505,413,632 B, whatever the sampler path (no range). Transient T = 505,413,632 +
    graphs 536,870,912 = 1,042,284,544; margin = max(1 GiB, 0.75 x T) = 1,073,741,824; used =
    16,571,592,581 (see test_ten_users_on_a_4090_miss_by_hand).
    KV = min(25,253,904,384 - used, 24,717,033,472 - used - margin = 7,071,699,067) - T
    = 6,029,414,523 B; 2 x 1,543,503,872 = 3,087,007,744 B of KV fits it. In use: weights
    15,895,135,232 + peak 505,413,632 + reserve 1,213,328,261 + KV 3,087,007,744 = 20,700,884,869 B
    = 19.28 GiB, under the 21.59 GiB budget."""
    [r] = _check(EXAMPLES / "gemma-2-27b-4090-2-users.yaml")
    assert r.passed and r.misses == () and r.fixes == ()
    a = r.assessment
    assert a.verdict == "fits" and a.users_at_once == 2
    assert a.kv_pool_bytes == 6_029_414_523
    assert a.kv_bytes == 3_087_007_744
    assert a.demand_bytes == 20_700_884_869 < a.budget_bytes
    assert round(a.demand_bytes / GIB, 2) == 19.28


def test_replicas_split_the_users() -> None:
    """Two replicas serve 4 users as two copies of the 2-user single-card deployment."""
    [two] = _check(EXAMPLES / "gemma-2-27b-4090-2-users.yaml")
    [replicas] = _check(EXAMPLES / "gemma-2-27b-2x4090-replicas.yaml")
    assert replicas.passed and replicas.planned.users_per_replica == 2
    assert replicas.assessment.per_gpu_bytes == two.assessment.per_gpu_bytes
    assert replicas.assessment.users_at_once == 2 * two.assessment.users_at_once
    total = replicas.assessment.aggregate_tokens_per_s
    assert total is not None and two.assessment.aggregate_tokens_per_s is not None
    assert total == pytest.approx(2 * two.assessment.aggregate_tokens_per_s)


# --- the verdict is recommend's: same estimator, same fits --------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED_EXIT))
def test_verdict_matches_recommend_evaluate(name: str) -> None:
    [r] = _check(EXAMPLES / name)
    p = r.planned
    option = evaluate(p.request, p.gpu, p.count, p.layout)
    assert option.assessment == r.assessment
    assert r.passed == option.serves == (EXPECTED_EXIT[name] == 0)


def test_more_users_never_pass_when_fewer_fail(tmp_path: Path) -> None:
    """Layer 3: the verdict is monotone in users (the fix search depends on it)."""
    verdicts = []
    for users in range(1, 7):
        plan = tmp_path / f"u{users}.yaml"
        text = (EXAMPLES / "gemma-2-27b-4090-2-users.yaml").read_text()
        plan.write_text(text.replace("users: 2", f"users: {users}"))
        verdicts.append(_check(plan)[0].passed)
    assert verdicts == sorted(verdicts, reverse=True)
    assert verdicts[:2] == [True, True] and not verdicts[2]


# --- fixes: each one verified by applying it -------------------------------------------------------------


def _apply(plan: Path, fields: dict[str, object], out: Path) -> Path:
    data = yaml.safe_load(plan.read_text())
    data["deployments"][0].update(fields)
    data["deployments"][0] = {k: v for k, v in data["deployments"][0].items() if v is not None}
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.mark.parametrize(
    "plan",
    [EXAMPLES / "gemma-2-27b-4090-10-users.yaml", FIXTURES / "valid/slow-decode.yaml"],
    ids=lambda p: p.stem,
)
def test_every_fix_passes_and_is_the_smallest(run_cli: Run, tmp_path: Path, plan: Path) -> None:
    [r] = _check(plan)
    assert r.fixes
    kinds = {k for f in r.fixes for k, _ in f.fields}
    assert {"users", "gpu_count"} <= kinds
    for i, fix in enumerate(r.fixes):
        fixed = _apply(plan, fix.plan_fields, tmp_path / f"fix{i}.yaml")
        assert run_cli("check", str(fixed)).exit_code == 0, fix.change
        # one step further (one more user, 256 more tokens, one GPU fewer) fails
        further = dict(fix.plan_fields)
        if "users" in further:
            further["users"] = int(fix.fields[0][1]) + 1
        elif "ctx" in further:
            further["ctx"] = int(fix.fields[0][1]) + 256
        elif further.get("layout", r.planned.layout) == "tensor-parallel" and "gpu_count" in further:
            further["gpu_count"] = int(further["gpu_count"]) // 2
            if further["gpu_count"] == 1:
                further["layout"] = "single"
        else:
            continue
        worse = _apply(plan, further, tmp_path / f"worse{i}.yaml")
        assert run_cli("check", str(worse)).exit_code == 1, further


def test_ten_users_on_a_4090_fixes() -> None:
    """The guide's question: what makes 10 users of Gemma-2-27B 4-bit work on one 4090?

    No single engine setting does (fp8 KV alone holds about 4; max_num_seqs alone about 4, gpu_util
    is already 1.0 on vLLM 0.34), so the search combines them and finds another engine with a 4-bit
    KV cache: llama.cpp with Q4_K_M weights (15.5 GiB on the GPU) and q4_0 KV (10 x 4,096 x 376,832
    x 18/64 B = 4.04 GiB) fits the card. The context cap (512 tokens) and more GPUs also pass; 1
    user is the most as planned (vLLM's pool holds 1 at its sampler range's low end). Every fix is
    verified by assess() (test_every_fix_passes_and_is_the_smallest)."""
    [r] = _check(EXAMPLES / "gemma-2-27b-4090-10-users.yaml")
    changes = [f.change for f in r.fixes]
    assert "engine: llama.cpp (Q4_K_M), kv_dtype: q4_0" in changes
    assert "ctx: 512" in changes and "users: 1" in changes
    assert "gpu_count: 2, layout: tensor-parallel" in changes
    assert changes[-1] == "users: 1"  # fewer users serve less of the ask: ranked last
    assert all(f.assessment.passes for f in r.fixes)


def test_ttft_goal_miss_and_fix() -> None:
    """A 3,584-token prompt (4,096 ctx less 512 output tokens) takes 2.51 s on one 4090 (chunked
    prefill next to the other users' decodes, plus the request overhead); a 1 s goal needs a
    shorter context. 4-way tensor parallelism no longer makes it: the 4090s have no P2P, so each of
    the prompt's all-reduces (3,584 x 4,608 x 2 B) crosses host memory at 3.6 GB/s."""
    results = _check(FIXTURES / "valid/two-deployments.yaml")
    chat, long_prompts = results
    assert chat.passed and not long_prompts.passed
    [miss] = long_prompts.misses
    assert miss.kind == "ttft" and miss.limit == 1.0 and miss.value == pytest.approx(2.51, abs=0.01)
    assert long_prompts.most_users == 0  # the first token does not come sooner with fewer users
    assert [f.change for f in long_prompts.fixes] == ["ctx: 1792"]


# --- every example through the CLI, in every format --------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(EXPECTED_EXIT))
def test_example_in_every_format(run_cli: Run, name: str, fmt: str) -> None:
    path = EXAMPLES / name
    rel = _rel(path)
    [line] = _deployment_lines(path)
    passes = EXPECTED_EXIT[name] == 0
    r = run_cli("check", rel, "--format", fmt)
    assert r.exit_code == EXPECTED_EXIT[name], r.stderr
    assert r.stderr == ""
    if fmt == "text":
        first = r.stdout.splitlines()[0]
        assert re.fullmatch(rf"(PASS|FAIL) \S+ \({re.escape(rel)}:{line}\)", first)
        assert first.startswith("PASS" if passes else "FAIL")
        assert r.stdout.endswith(f"{int(passes)} passed, {int(not passes)} failed.\n")
    elif fmt == "json":
        doc = json.loads(r.stdout)
        assert doc["passed"] is passes and doc["summary"] == {
            "deployments": 1,
            "passed": int(passes),
            "failed": int(not passes),
        }
        [d] = doc["deployments"]
        assert (d["file"], d["line"], d["passed"]) == (rel, line, passes)
        assert isinstance(d["assessment"]["per_gpu_bytes"], int)
        assert d["assessment"]["verdict"] in ("fits", "queues", "offloads", "does_not_start", "does_not_fit")
        assert bool(d["misses"]) is not passes and bool(d["fixes"]) is not passes
    elif fmt == "junit":
        root = ET.fromstring(r.stdout)
        assert root.tag == "testsuites" and root.get("tests") == "1"
        assert root.get("failures") == str(int(not passes))
        [suite] = root.findall("testsuite")
        [case] = suite.findall("testcase")
        assert (case.get("file"), case.get("line"), case.get("classname")) == (rel, str(line), rel)
        assert (case.find("failure") is None) is passes
    elif fmt == "github":
        annotations = re.findall(
            r"^::error file=([^,]+),line=(\d+),title=([^:]+)::(.+)$", r.stdout, flags=re.M
        )
        if passes:
            assert annotations == [] and "PASS " in r.stdout
        else:
            [(file, at, title, message)] = annotations
            assert (file, int(at)) == (rel, line)
            assert "does not pass" in title and "%0A" in message and "\n" not in message
    else:
        assert r.stdout.startswith("### vramcalc check: ")
        assert re.search(
            rf"^\| {'✅' if passes else '❌'} \| .+`{re.escape(rel)}:{line}` \|$", r.stdout, flags=re.M
        )


def test_directory_of_examples(run_cli: Run) -> None:
    r = run_cli("check", "examples/plans")
    assert r.exit_code == 1
    assert r.stdout.count("\nPASS ") + r.stdout.startswith("PASS ") == 6
    assert r.stdout.count("FAIL ") == 1
    assert r.stdout.endswith("7 deployments in 7 files: 6 passed, 1 failed.\n")


def test_glob_and_multiple_paths(run_cli: Run) -> None:
    r = run_cli("check", "examples/plans/*4090-2-users.yaml", "examples/plans/gemma-2-27b-l40s-10-users.yaml")
    assert r.exit_code == 0 and r.stdout.endswith("2 deployments in 2 files: 2 passed, 0 failed.\n")


def test_two_deployments_in_one_file(run_cli: Run) -> None:
    path = FIXTURES / "valid/two-deployments.yaml"
    rel = _rel(path)
    chat_line, long_line = _deployment_lines(path)
    r = run_cli("check", rel, "--format", "junit")
    assert r.exit_code == 1
    [suite] = ET.fromstring(r.stdout).findall("testsuite")
    cases = suite.findall("testcase")
    assert [(c.get("name"), c.get("line")) for c in cases] == [
        ("chat", str(chat_line)),
        ("long-prompts", str(long_line)),
    ]
    assert [c.find("failure") is not None for c in cases] == [False, True]
    gh = run_cli("check", rel, "--format", "github").stdout
    assert re.search(rf"^::error file={re.escape(rel)},line={long_line},", gh, flags=re.M)
    assert gh.count("::error") == 1


def test_output_file_is_written_when_the_run_completes(run_cli: Run, tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    r = run_cli("check", "examples/plans", "--format", "junit", "--output", str(out))
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr == f"vramcalc: wrote {out}: 7 deployments in 7 files: 6 passed, 1 failed.\n"
    assert ET.parse(out).getroot().get("tests") == "7"
    assert [p.name for p in tmp_path.iterdir()] == ["report.xml"]  # no temporary file left behind


def test_output_into_a_missing_directory(run_cli: Run, tmp_path: Path) -> None:
    r = run_cli(
        "check", "examples/plans/gemma-2-27b-4090-2-users.yaml", "--output", str(tmp_path / "no/such/r.txt")
    )
    assert r.exit_code == 2 and r.stdout == "" and r.stderr.count("\n") == 1
    assert "--output" in r.stderr and "cannot write" in r.stderr


def test_github_escapes_percent_and_newlines() -> None:
    from vramcalc.render.check import _gh_data, _gh_property

    assert _gh_data("90% of\nx\r") == "90%25 of%0Ax%0D"
    assert _gh_property("a:b,c") == "a%3Ab%2Cc"


# --- bad input: one line, file and line, exit 2, nothing written --------------------------------------


BAD = [
    ("unknown-key.yaml", 6, "unknown key 'deployments.0.usrs'; did you mean 'users'?"),
    ("missing-field.yaml", 2, "missing required field 'deployments.0.gpu' (gpu: Catalog GPU id"),
    ("wrong-type.yaml", 6, "deployments.0.users: Input should be a valid integer"),
    ("unknown-model.yaml", 2, "deployments.0.model: unknown model 'gemma-2-72b'; did you mean"),
    ("unknown-gpu.yaml", 4, "deployments.0.gpu: unknown GPU 'rtx-9090'; did you mean"),
    ("not-a-mapping.yaml", 1, "expected a mapping of plan fields (deployments: [...]), the file is a list"),
    ("empty.yaml", None, "expected a mapping of plan fields (deployments: [...]), the file is empty"),
    ("python-tag.yaml", 1, "YAML tag not allowed"),
    ("alias-bomb.yaml", 7, "more than 50 YAML aliases"),
    ("deeply-nested.yaml", 1, "YAML nested deeper than 20 levels"),
    ("layout-engine.yaml", 7, "deployments.0.layout: llama.cpp has no tensor parallelism"),
]


def _assert_one_line_exit_2(r: CliResult, where: str, needle: str) -> None:
    assert r.exit_code == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"vramcalc: error: {where}"), r.stderr
    assert needle in r.stderr, r.stderr


@pytest.mark.parametrize(("name", "line", "needle"), BAD, ids=[b[0] for b in BAD])
def test_bad_plan(run_cli: Run, tmp_path: Path, name: str, line: int | None, needle: str) -> None:
    rel = f"tests/fixtures/plans/bad/{name}"
    out = tmp_path / "report.json"
    r = run_cli("check", rel, "--format", "json", "--output", str(out))
    _assert_one_line_exit_2(r, f"{rel}:{line}: " if line else f"{rel}: ", needle)
    assert not out.exists()


def test_ten_megabyte_plan_is_refused_unread(run_cli: Run, tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(10 * 2**20)  # sparse: refused by its size, before a byte is read
    r = run_cli("check", str(big))
    _assert_one_line_exit_2(r, f"{big}: ", "10,485,760 bytes is too large for a plan file (limit 1 MB)")


def test_directory_without_plans(run_cli: Run, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("no plans here\n")
    r = run_cli("check", str(tmp_path))
    _assert_one_line_exit_2(r, f"{tmp_path}: ", "no plan files (*.yaml, *.yml) in this directory")


def test_missing_path_and_empty_glob(run_cli: Run) -> None:
    _assert_one_line_exit_2(run_cli("check", "nope.yaml"), "nope.yaml: ", "no such file or directory")
    _assert_one_line_exit_2(
        run_cli("check", "examples/plans/*.yml"), "examples/plans/*.yml: ", "no file matches"
    )


def test_one_bad_file_reports_nothing_as_passing(run_cli: Run, tmp_path: Path) -> None:
    """A good plan next to a bad one: exit 2, no report at all, one line per bad file."""
    for name in ("gemma-2-27b-4090-2-users.yaml", "gemma-2-27b-l40s-10-users.yaml"):
        (tmp_path / name).write_text((EXAMPLES / name).read_text())
    (tmp_path / "typo.yaml").write_text((FIXTURES / "bad/unknown-key.yaml").read_text())
    (tmp_path / "empty.yml").write_text("")
    out = tmp_path / "report.txt"
    r = run_cli("check", str(tmp_path), "--output", str(out))
    assert (r.exit_code, r.stdout) == (2, "")
    lines = r.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("vramcalc: error: ") for line in lines)
    assert "empty.yml" in lines[0] and "typo.yaml:6: unknown key" in lines[1]
    assert not out.exists()


def test_anchors_for_shared_settings_are_fine(run_cli: Run, tmp_path: Path) -> None:
    plan = tmp_path / "anchors.yaml"
    plan.write_text(
        "common: &common {model: gemma-2-27b, bits: 4, gpu: l40s, ctx: 4096}\n"
        "deployments:\n"
        "  - {<<: *common, name: five, users: 5}\n"
        "  - {<<: *common, name: ten, users: 10}\n"
    )
    r = run_cli("check", str(plan))
    # `common` is not a plan field: anchors must live inside the schema's keys
    assert r.exit_code == 2 and "unknown key 'common'" in r.stderr
    plan.write_text(
        "deployments:\n"
        "  - &five {model: gemma-2-27b, bits: 4, gpu: l40s, ctx: 4096, name: five, users: 5}\n"
        "  - {<<: *five, name: ten, users: 10}\n"
    )
    assert run_cli("check", str(plan)).exit_code == 0


def test_plan_level_checks(run_cli: Run, tmp_path: Path) -> None:
    base = "deployments:\n  - model: gemma-2-27b\n    gpu: rtx-4090\n    ctx: 4096\n    users: 2\n"
    cases = [
        ("    gpu_count: 2\n", "gpu_count 2 needs layout: tensor-parallel, pipeline-parallel or replicas"),
        ("    layout: replicas\n", "replicas needs gpu_count of 2 or more"),
        ("    bits: 4\n    quant: Q4_K_M\n", "give quant or bits, not both"),
        ("    quant: int3\n", "deployments.0.quant: unknown weight format 'int3'"),
        ("    kv_dtype: fp4\n", "deployments.0.kv_dtype: Input should be"),
        ("    engine: vllm@9.9\n", "deployments.0.engine: --engine 'vllm@9.9': no profile for vllm 9.9"),
    ]
    for extra, needle in cases:
        plan = tmp_path / "p.yaml"
        plan.write_text(base + extra)
        r = run_cli("check", str(plan))
        assert r.exit_code == 2 and r.stderr.count("\n") == 1 and needle in r.stderr, (extra, r.stderr)
        assert r.stderr.startswith(f"vramcalc: error: {plan}:")
    plan.write_text(base.replace("4096", "100000"))
    r = run_cli("check", str(plan))
    assert r.exit_code == 2 and f"{plan}:4: deployments.0.ctx: 100,000 tokens exceed" in r.stderr
    plan.write_text("deployments: []\n")
    assert "deployments: Tuple should have at least 1 item" in run_cli("check", str(plan)).stderr
    plan.write_text(base + base.split("\n", 1)[1])
    plan.write_text(plan.read_text().replace("  - model", "  - name: same\n    model"))
    assert "deployment names must be unique in a file: same repeats" in run_cli("check", str(plan)).stderr


# --- schema ---------------------------------------------------------------------------------------------


def test_schema_command_and_the_shipped_file(run_cli: Run) -> None:
    r = run_cli("schema", "plan")
    assert r.exit_code == 0 and r.stderr == ""
    schema = json.loads(r.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["deployments"] and schema["additionalProperties"] is False
    dep = schema["$defs"]["Deployment"]
    assert set(dep["properties"]) == set(Deployment.model_fields)
    assert set(dep["required"]) == {"model", "ctx", "users", "gpu"}
    assert all(p.get("description") for p in dep["properties"].values())
    assert dep["additionalProperties"] is False
    assert set(schema["$defs"]["Goals"]["properties"]) == {"min_tokens_per_s", "max_ttft_s"}
    assert (ROOT / "examples/plan.schema.json").read_text() == r.stdout, (
        "run: vramcalc schema plan > examples/plan.schema.json"
    )


@pytest.mark.parametrize("name", sorted(EXPECTED_EXIT))
def test_examples_name_the_schema_for_editors(name: str) -> None:
    first = (EXAMPLES / name).read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../plan.schema.json"


# --- plan emit ---------------------------------------------------------------------------------------------


def _argv(text: str) -> list[str]:
    return shlex.split(text.replace("\\\n", " "), comments=True)


def test_emit_vllm(run_cli: Run) -> None:
    r = run_cli("plan", "emit", "examples/plans/gemma-2-27b-4090-2-users.yaml", "--engine", "vllm")
    assert r.exit_code == 0 and r.stderr == ""
    argv = _argv(r.stdout)
    assert argv[:3] == ["vllm", "serve", "google/gemma-2-27b-it"]
    flags = dict(zip(argv[3::2], argv[4::2], strict=True))
    assert flags == {
        "--max-model-len": "4096",
        "--max-num-seqs": "2",
        "--max-num-batched-tokens": "2048",
        "--gpu-memory-utilization": "1",
        "--tensor-parallel-size": "1",
        "--kv-cache-dtype": "auto",
        "--quantization": "awq",
    }


def test_emit_vllm_fp8_kv_and_tensor_parallel(run_cli: Run) -> None:
    h100 = _argv(run_cli("plan", "emit", "examples/plans/gemma-2-27b-h100-20-users-8k.yaml").stdout)
    assert h100[h100.index("--kv-cache-dtype") + 1] == "fp8"
    assert h100[h100.index("--max-model-len") + 1] == "8192"
    ds = _argv(run_cli("plan", "emit", "examples/plans/deepseek-v3-8xh200.yaml").stdout)
    assert ds[0] == "CUDA_VISIBLE_DEVICES=0,1,2,3,4,5,6,7"
    assert ds[ds.index("--tensor-parallel-size") + 1] == "8"
    assert "--quantization" not in ds  # the checkpoint is fp8 already


def test_emit_launches_a_pinned_regime_as_assessed(run_cli: Run) -> None:
    """A plan that pins vLLM's sampler and MXFP4 kernel gets the environment that makes vLLM take
    them (vllm/envs.py VLLM_USE_FLASHINFER_SAMPLER; Triton needs triton_kernels installed, said in
    a comment); an unpinned plan gets no environment."""
    r = run_cli("plan", "emit", "tests/fixtures/plans/valid/gpt-oss-h100-pinned.yaml")
    assert r.exit_code == 0 and r.stderr == ""
    assert _argv(r.stdout)[:3] == ["VLLM_USE_FLASHINFER_SAMPLER=1", "vllm", "serve"]
    assert "# the plan pins the triton MXFP4 MoE kernel: vLLM takes it only with triton_kernels" in r.stdout
    plain = _argv(run_cli("plan", "emit", "examples/plans/gemma-2-27b-4090-2-users.yaml").stdout)
    assert plain[0] == "vllm"


def test_emit_replicas(run_cli: Run) -> None:
    out = run_cli("plan", "emit", "examples/plans/gemma-2-27b-2x4090-replicas.yaml").stdout
    commands = [c for c in out.split("\nCUDA_VISIBLE_DEVICES=")[1:]]
    assert len(commands) == 2
    for i, c in enumerate(commands):
        argv = _argv(f"CUDA_VISIBLE_DEVICES={c}")
        assert argv[0] == f"CUDA_VISIBLE_DEVICES={i}" and argv[argv.index("--port") + 1] == str(8000 + i)
        assert argv[argv.index("--max-model-len") + 1] == "4096"


def test_emit_llamacpp(run_cli: Run) -> None:
    """-c is the whole server's context: 2 slots x 4,096 = 8,192 cells."""
    r = run_cli("plan", "emit", "tests/fixtures/plans/valid/llamacpp-4090.yaml", "--engine", "llama.cpp")
    assert r.exit_code == 0
    argv = _argv(r.stdout)
    assert argv[0] == "llama-server"
    flags = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert flags["-c"] == "8192" and flags["-np"] == "2" and flags["-ngl"] == "99"
    assert flags["-fa"] == "on" and flags["-ctk"] == "f16" and flags["-ctv"] == "f16"
    assert flags["-m"] == "gemma-2-27b-it-Q4_K_M.gguf"


def test_emit_ollama(run_cli: Run) -> None:
    r = run_cli("plan", "emit", "examples/plans/gemma-2-27b-4090-ollama.yaml", "--engine", "ollama")
    assert r.exit_code == 0
    assert "PARAMETER num_ctx 4096\n" in r.stdout
    argv = _argv(r.stdout.split("EOF\n")[-1])
    assert argv == [
        "OLLAMA_NUM_PARALLEL=2",
        "OLLAMA_KV_CACHE_TYPE=f16",
        "OLLAMA_FLASH_ATTENTION=1",
        "ollama",
        "serve",
    ]


def test_emit_sglang(run_cli: Run) -> None:
    r = run_cli("plan", "emit", "tests/fixtures/plans/valid/sglang-2xh100.yaml", "--engine", "sglang")
    argv = _argv(r.stdout)
    assert argv[:4] == ["CUDA_VISIBLE_DEVICES=0,1", "python", "-m", "sglang.launch_server"]
    flags = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert flags["--model-path"] == "Qwen/Qwen3-32B" and flags["--context-length"] == "16384"
    assert flags["--tp-size"] == "2" and flags["--kv-cache-dtype"] == "fp8_e4m3"
    assert flags["--max-running-requests"] == "32" and 0 < float(flags["--mem-fraction-static"]) < 1


def test_emit_uses_the_settings_the_check_used(run_cli: Run) -> None:
    """The emitted vLLM values are the resolved ones the estimate was computed with (JSON of check)."""
    [r] = _check(EXAMPLES / "gemma-2-27b-h100-20-users-8k.yaml")
    s = r.assessment.scenario.estimate.plan.settings
    argv = _argv(run_cli("plan", "emit", "examples/plans/gemma-2-27b-h100-20-users-8k.yaml").stdout)
    assert argv[argv.index("--max-num-seqs") + 1] == str(s["max_num_seqs"])
    assert argv[argv.index("--gpu-memory-utilization") + 1] == f"{s['gpu_memory_utilization']:g}"


def test_emit_refuses_another_engine_and_unknown_names(run_cli: Run, tmp_path: Path) -> None:
    rel = "examples/plans/gemma-2-27b-4090-ollama.yaml"
    r = run_cli("plan", "emit", rel, "--engine", "vllm")
    _assert_one_line_exit_2(r, f"{rel}:4: ", "planned and checked for ollama, not vllm")
    r = run_cli("plan", "emit", "tests/fixtures/plans/valid/two-deployments.yaml", "--deployment", "chat")
    assert r.exit_code == 0 and r.stdout.count("vllm serve") == 1
    r = run_cli("plan", "emit", "tests/fixtures/plans/valid/two-deployments.yaml", "--deployment", "nope")
    assert (
        r.exit_code == 2 and "no deployment named 'nope' in the plan (names: chat, long-prompts)" in r.stderr
    )
    tgi = tmp_path / "tgi.yaml"
    tgi.write_text(
        (EXAMPLES / "gemma-2-27b-4090-10-users.yaml")
        .read_text()
        .replace("engine: vllm", "engine: tgi")
        .replace("users: 10", "users: 2")
    )
    r = run_cli("plan", "emit", str(tgi))
    _assert_one_line_exit_2(r, f"{tgi}:6: ", "no launch settings for tgi yet")


# --- integrations -------------------------------------------------------------------------------------------


def test_pre_commit_hook() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "vramcalc-check" and hook["language"] == "python"
    assert hook["entry"] == "vramcalc check"
    files = re.compile(hook["files"])
    assert files.search("plans/chat.yaml") and files.search("ops/plans/team/a.yml")
    assert files.search("deploy/chat.plan.yaml")
    assert not files.search("models/gemma-2-27b.yaml") and not files.search("plans/README.md")


def test_github_workflow() -> None:
    text = (ROOT / "examples/github-workflow.yml").read_text()
    wf = yaml.safe_load(text)
    steps = wf["jobs"]["vramcalc-check"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any(r.startswith("pip install ") for r in runs)
    assert "vramcalc check plans/ --format github" in runs


# --- the README's plan section stays honest --------------------------------------------------------------

README = (ROOT / "README.md").read_text()
README_RUNS = re.findall(r"```text\n\$ (vramcalc (?:check|plan emit) [^\n]*)\n(.*?)```", README, flags=re.S)


def test_readme_plan_example_is_a_valid_plan(run_cli: Run, tmp_path: Path) -> None:
    section = README.split("## Capacity plans in CI", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, flags=re.S)
    assert block is not None
    plan = tmp_path / "readme.yaml"
    plan.write_text(block.group(1))
    assert run_cli("check", str(plan)).exit_code == 0


def test_readme_has_check_and_emit_runs() -> None:
    assert {c.split()[1] for c, _ in README_RUNS} == {"check", "plan"}


@pytest.mark.parametrize(("command", "expected"), README_RUNS, ids=[c for c, _ in README_RUNS])
def test_readme_run_matches(run_cli: Run, command: str, expected: str) -> None:
    r = run_cli(*shlex.split(command)[1:])
    assert r.stdout == expected


def test_more_replicas_fix(tmp_path: Path) -> None:
    """8 users on 2 x 4090 replicas: 4 users per card miss (the pool holds 2.33 sequences); 4 replicas
    of 2 users each pass, 3 replicas (3 users each) do not."""
    plan = tmp_path / "r.yaml"
    plan.write_text(
        (EXAMPLES / "gemma-2-27b-2x4090-replicas.yaml").read_text().replace("users: 4", "users: 8")
    )
    [r] = _check(plan)
    assert not r.passed and r.planned.users_per_replica == 4
    replicas = [f for f in r.fixes if "gpu_count" in f.plan_fields and "layout" not in f.plan_fields]
    assert [(f.change, f.assessment.users_at_once) for f in replicas] == [("gpu_count: 4", 8)]


def test_emit_refuses_a_plan_that_does_not_pass(run_cli: Run) -> None:
    """A failing plan prints no launch and exits 1 with the failure; --force prints it with a warning."""
    plan = "examples/plans/gemma-2-27b-4090-10-users.yaml"
    r = run_cli("plan", "emit", plan)
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr == (
        "vramcalc: error: gemma-27b-4090-10-users does not pass its check: vllm runs 1 of 10 users at "
        "once; the rest wait up to 119.3 s; fix the plan (vramcalc check shows the changes that pass) "
        "or pass --force\n"
    )
    forced = run_cli("plan", "emit", plan, "--force")
    assert forced.exit_code == 0 and forced.stdout.startswith("# gemma-27b-4090-10-users")
    assert forced.stderr.startswith("vramcalc: warning: gemma-27b-4090-10-users does not pass its check: ")


def test_emit_replicas_are_separate_processes_started_together(run_cli: Run) -> None:
    r = run_cli("plan", "emit", "examples/plans/gemma-2-27b-2x4090-replicas.yaml")
    assert r.exit_code == 0, r.stderr
    commands = r.stdout.split("CUDA_VISIBLE_DEVICES=")[1:]
    assert len(commands) == 2
    assert all(c.rstrip().endswith(("&", "& \\\nwait", "&\nwait")) for c in commands)
    assert "2 replicas: separate processes" in r.stdout and r.stdout.rstrip().endswith("wait")
    doc = json.loads(
        run_cli("plan", "emit", "examples/plans/gemma-2-27b-2x4090-replicas.yaml", "--json").stdout
    )
    assert [c["env"]["CUDA_VISIBLE_DEVICES"] for c in doc[0]["commands"]] == ["0", "1"]


def test_plan_with_a_local_model_directory(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A plan can name a local model directory (config.json), relative to the plan file: it resolves
    through the same importer as `estimate` and sizes like the catalog entry (Gemma-2-27B)."""
    from tests.importer_fixtures import CONFIGS, write_config

    write_config(tmp_path / "my-gemma", CONFIGS["gemma-2-27b"])
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "deployments:\n  - model: ./my-gemma\n    bits: 4\n    gpu: l40s\n    ctx: 4096\n    users: 10\n"
    )
    local = run_cli("check", str(plan), "--format", "json")
    assert local.exit_code == 0, local.stderr
    plan.write_text(plan.read_text().replace("./my-gemma", "gemma-2-27b"))
    catalog = run_cli("check", str(plan), "--format", "json")
    assert catalog.exit_code == 0
    a, b = json.loads(local.stdout), json.loads(catalog.stdout)
    assert a["deployments"][0]["assessment"] == b["deployments"][0]["assessment"]


def test_walking_a_directory_skips_yaml_that_is_not_a_plan(run_cli: Run) -> None:
    """examples/ holds a GitHub workflow beside the plans: walked, it is skipped with a note on
    stderr; named explicitly, it is still an error."""
    r = run_cli("check", "examples")
    assert r.exit_code == 1 and r.stdout.endswith("7 deployments in 7 files: 6 passed, 1 failed.\n")
    assert (
        r.stderr == "vramcalc: skipped examples/github-workflow.yml: not a plan (no top-level deployments)\n"
    )
    named = run_cli("check", "examples/github-workflow.yml")
    assert named.exit_code == 2 and "unknown key 'name'" in named.stderr


def test_check_reads_each_plan_file_once(
    run_cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`check` reads each plan file once per run: the mapping, the skip test for walked files and
    every deployment's line number come from one read and one parse (it used to read a file three
    times and parse it four; a 1,000-deployment file composed once per deployment was quadratic).
    Counted for a named file with 40 deployments (the 4th of each 4 fails: 10 users on a 4090, so
    the fix search runs and error lines are looked up) and for a directory holding a plan and a
    YAML file that is not one (skipped after its one read)."""
    from vramcalc import files

    one = "  - name: d{i}\n    model: gemma-2-27b\n    bits: 4\n    gpu: rtx-4090\n    ctx: 4096\n    users: {users}\n"
    plans = tmp_path / "plans"
    plans.mkdir()
    plan = plans / "many.yaml"
    plan.write_text(
        "deployments:\n" + "".join(one.format(i=i, users=10 if i % 4 == 3 else 1) for i in range(40))
    )
    other = plans / "workflow.yaml"
    other.write_text("on: push\njobs: {}\n")
    reads: list[Path] = []
    real = files.read_text

    def counting(path: Path, *args: object, **kwargs: object) -> str:
        reads.append(Path(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files, "read_text", counting)
    result = run_cli("check", str(plan), "--format", "github")
    assert result.exit_code == 1, result.stderr
    assert result.stdout.count("::error file=") == 10  # the line lookups happened
    assert reads.count(plan) == 1
    reads.clear()
    assert run_cli("check", str(plans)).exit_code == 1
    assert reads.count(plan) == 1
    assert reads.count(other) == 1


def test_check_json_is_the_document_written_one_deployment_at_a_time() -> None:
    """`check --format json` writes check_dict's document deployment by deployment (so 10,000
    deployments' dicts never exist at once): the text must equal dumping the whole document, for
    every example plan together (passing and failing, fixes included) and for one plan alone."""
    from vramcalc.render import check_dict, check_json, to_json

    results = check_all(load_plans([str(EXAMPLES)], Catalog()))
    assert len(results) == len(EXPECTED_EXIT) and any(r.fixes for r in results)
    text = "".join(check_json(results))
    assert text == to_json(check_dict(results))
    assert "".join(check_json(results[:1])) == to_json(check_dict(results[:1]))
    assert json.loads(text)["summary"]["failed"] == 1


def test_plan_calibration_profile(run_cli: Run, tmp_path: Path) -> None:
    """A deployment's `calibration:` (relative to the plan) applies a profile from
    `calibrate LOG --save`: the check's assessment then uses the log's measured terms (the KV pool
    of the V0 RTX 3090 log, 3.81 GiB, where the defaults give 3.78 GiB); a profile for another
    GPU is refused with the plan's file, line and field."""
    log = ROOT / "tests" / "fixtures" / "logs" / "vllm-v0-3090-llama31-8b-mml20k.log"
    assert run_cli("calibrate", str(log), "--save", str(tmp_path / "p.yaml")).exit_code == 1
    body = "deployments:\n  - model: llama-3.1-8b\n    engine: vllm@0.6\n    gpu: {gpu}\n    ctx: 20000\n    users: 1\n"
    plan = tmp_path / "plan.yaml"
    plan.write_text(body.format(gpu="rtx-3090") + "    calibration: p.yaml\n")
    doc = json.loads(run_cli("check", str(plan), "--json").stdout)
    pool = doc["deployments"][0]["assessment"]["kv_pool_bytes"]
    assert abs(pool - 3.81 * GIB) <= 0.005 * GIB
    plan.write_text(body.format(gpu="rtx-4090") + "    calibration: p.yaml\n")
    wrong = run_cli("check", str(plan))
    assert wrong.exit_code == 2
    assert f"{plan}:7: deployments.0.calibration" in wrong.stderr and "field gpu" in wrong.stderr


def test_emit_llamacpp_experts_in_ram(run_cli: Run, tmp_path: Path) -> None:
    """A plan's n_cpu_moe reaches llama-server as --n-cpu-moe; its check counts the 16.35 GiB of
    experts in host memory as an offload (a miss, as vLLM's --cpu-offload-gb is), so emit needs
    --force."""
    plan = tmp_path / "moe.yaml"
    plan.write_text(
        "deployments:\n  - name: qwen3-moe-4060\n    model: qwen3-30b-a3b\n    quant: Q4_K_M\n"
        "    engine: llama.cpp\n    gpu: rtx-4060-ti-16gb\n    ctx: 8192\n    users: 1\n"
        "    settings:\n      n_cpu_moe: 48\n"
    )
    refused = run_cli("plan", "emit", str(plan), "--engine", "llama.cpp")
    assert refused.exit_code == 1 and "16.35 GiB of the model run from host memory" in refused.stderr
    r = run_cli("plan", "emit", str(plan), "--engine", "llama.cpp", "--force")
    assert r.exit_code == 0, r.stderr
    flags = dict(zip(_argv(r.stdout)[1::2], _argv(r.stdout)[2::2], strict=True))
    assert flags["--n-cpu-moe"] == "48"
    checked = run_cli("check", str(plan))
    assert checked.exit_code == 1 and "offload" in checked.stdout


def test_emit_llamacpp_ngl(run_cli: Run, tmp_path: Path) -> None:
    """A plan's n_gpu_layers is llama-server's -ngl (99, every layer, when unset)."""
    plan = tmp_path / "ngl.yaml"
    plan.write_text(
        "deployments:\n  - name: llama-8b-4090\n    model: llama-3.1-8b\n    quant: Q4_K_M\n"
        "    engine: llama.cpp\n    gpu: rtx-4090\n    ctx: 4096\n    users: 1\n"
        "    settings:\n      n_gpu_layers: 30\n"
    )
    r = run_cli("plan", "emit", str(plan), "--engine", "llama.cpp", "--force")
    assert r.exit_code == 0, r.stderr
    flags = dict(zip(_argv(r.stdout)[1::2], _argv(r.stdout)[2::2], strict=True))
    assert flags["-ngl"] == "30"

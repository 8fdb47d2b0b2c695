"""Show check results for `check`: text, JSON, JUnit XML, GitHub annotations or Markdown."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vramcalc.core.estimate import SCHEMA_VERSION
from vramcalc.render.assessment import assessment_dict, miss_dict
from vramcalc.render.common import _md_cell, md_code, plain, to_json, users_chart, xml_text
from vramcalc.units import gib, plural

if TYPE_CHECKING:
    from vramcalc.core.assess import Assessment, Miss
    from vramcalc.core.check import CheckResult


_LAYOUT_WORDS = {
    "single": "",
    "tensor-parallel": " tensor-parallel",
    "pipeline-parallel": " pipeline-parallel",
}


def _where(r: CheckResult) -> str:
    """file:line, the file as given (render it with plain(), md_code() or an escape per format)."""
    p = r.planned
    return f"{p.source}:{p.line}" if p.line else p.source


def check_setup(r: CheckResult) -> str:
    """One line: model, formats, engine, GPUs and load, e.g. 'gemma-2-27b awq-int4, KV bf16, vllm 0.33
    on 1 x rtx-4090 | 2 users x 4,096 tokens | 10% headroom'."""
    p, e = r.planned, r.assessment.scenario.estimate
    gpus = f"{p.count} x {p.gpu.id}" + (
        f" replicas ({plural(p.users_per_replica, 'user')} each)"
        if p.layout == "replicas"
        else _LAYOUT_WORDS[p.layout]
    )
    return (
        f"{e.model.id} {e.weight_format.name}, KV {e.kv_dtype}, {e.plan.engine} {e.plan.version} on {gpus} | "
        f"{plural(p.request.users, 'user')} x {p.request.ctx_tokens:,} tokens | {p.request.headroom:.0%} headroom"
    )


def _pct(m: Miss) -> str:
    if m.share is None or m.kind in ("queue", "offload", "fit", "start"):
        return ""
    return f" ({m.share:+.0%})" if m.kind != "speed" else f" (-{m.share:.0%})"


def miss_text(r: CheckResult, m: Miss) -> str:
    """How far one limit is missed, in GiB, users, tokens/s or seconds and as a share of the limit."""
    return m.text + _pct(m)


def _pass_lines(r: CheckResult) -> list[str]:
    a, req = r.assessment, r.planned.request
    spare = a.budget_bytes - a.demand_bytes
    pool = (
        f"; KV {gib(a.kv_bytes):.2f} GiB in {a.scenario.estimate.plan.engine}'s {gib(a.kv_pool_bytes):.2f} GiB pool"
        if a.kv_pool_bytes is not None
        else ""
    )
    lines = [
        f"{a.verdict}: needs {gib(a.demand_bytes):.2f} of {gib(a.budget_bytes):.2f} GiB per GPU "
        f"({gib(spare):.2f} GiB to spare; the engine holds {gib(a.per_gpu_bytes):.2f} GiB){pool}"
    ]
    if a.decode_tokens_per_s_per_user is not None:
        goal = f" (goal >= {req.min_tokens_per_s:g})" if req.min_tokens_per_s > 0 else ""
        ttft = "" if a.ttft_s is None else f", first token in {a.ttft_s:.2f} s"
        ttft_goal = f" (goal <= {req.max_ttft_s:g})" if req.max_ttft_s is not None and ttft else ""
        lines.append(f"speed: {a.decode_tokens_per_s_per_user:.1f} tokens/s per user{goal}{ttft}{ttft_goal}")
    return lines


def _serves_text(r: CheckResult) -> str:
    users = r.planned.request.users
    most = r.most_users or 0
    if not most:
        return "as planned it passes for no number of users"
    return f"as planned it passes for {most} of {plural(users, 'user')}"


def check_lines(r: CheckResult) -> list[str]:
    """The body of one deployment's report: what it uses, or what it misses and how to make it pass."""
    if r.passed:
        return _pass_lines(r)
    a = r.assessment
    lines = [f"{a.verdict}: {a.reasons[0]}"] if a.reasons else []
    lines += [miss_text(r, m) for m in r.misses if not (m.kind in ("fit", "start") and a.reasons)]
    lines.append(_serves_text(r))
    if r.fixes:
        lines.append("smallest changes that pass (any one, each verified):")
        lines += [f"  {f.change}  ->  {f.detail}" for f in r.fixes]
    else:
        lines.append(
            "no change searched (settings, KV dtype, engine, format, ctx, GPUs, users) makes it pass"
        )
    return lines


def check_summary(results: list[CheckResult]) -> str:
    failed = sum(not r.passed for r in results)
    files = len({r.planned.source for r in results})
    n = len(results)
    return (
        f"{n} deployment{'s' if n != 1 else ''} in {files} file{'s' if files != 1 else ''}: "
        f"{n - failed} passed, {failed} failed."
    )


def check_text(results: list[CheckResult]) -> Iterator[str]:
    """The text report, one deployment's lines at a time."""
    for r in results:
        lines = [f"{'PASS' if r.passed else 'FAIL'} {plain(r.planned.name)} ({plain(_where(r))})"]
        lines += [f"     {line}" for line in [check_setup(r), *check_lines(r)]]
        yield "\n".join(lines) + "\n"
    yield check_summary(results) + "\n"


def check_dict(results: list[CheckResult]) -> dict[str, Any]:
    """The JSON document for `check --format json`; bytes are integers."""
    return {**_envelope(results), "deployments": [_deployment_doc(r) for r in results]}


def check_json(results: list[CheckResult]) -> Iterator[str]:
    """to_json(check_dict(results)) in pieces, one deployment at a time: the dicts of 10,000
    deployments never exist at once (they took ~300 MB), nor does the whole text (~37 MB)."""
    head = to_json({**_envelope(results), "deployments": []})
    if not results:
        yield head
        return
    yield head[: head.rindex("[]")] + "["
    for i, r in enumerate(results):
        doc = json.dumps(_deployment_doc(r), indent=2, ensure_ascii=False)
        yield ("\n" if i == 0 else ",\n") + textwrap.indent(doc, "    ")
    yield "\n  ]\n}\n"


def _envelope(results: list[CheckResult]) -> dict[str, Any]:
    failed = sum(not r.passed for r in results)
    return {
        "schema_version": SCHEMA_VERSION,
        "passed": failed == 0,
        "summary": {"deployments": len(results), "passed": len(results) - failed, "failed": failed},
    }


def _deployment_doc(r: CheckResult) -> dict[str, Any]:
    p, a, req = r.planned, r.assessment, r.planned.request
    e = a.scenario.estimate
    return {
        "name": p.name,
        "file": p.source,
        "line": p.line,
        "passed": r.passed,
        "model": e.model.id,
        "weights_format": e.weight_format.name,
        "kv_dtype": e.kv_dtype,
        "engine": f"{e.plan.engine}@{e.plan.version}",
        "gpu": p.gpu.id,
        "gpu_count": p.count,
        "layout": p.layout,
        "users": req.users,
        "users_per_replica": p.users_per_replica,
        "ctx_tokens": req.ctx_tokens,
        "headroom": req.headroom,
        "most_users": r.most_users,
        "goals": {
            "min_tokens_per_s": req.min_tokens_per_s or None,
            "max_ttft_s": req.max_ttft_s,
        },
        "assessment": assessment_dict(a),
        "misses": [{**miss_dict(m), "text": miss_text(r, m)} for m in r.misses],
        "fixes": [
            {
                "change": f.change,
                "fields": f.plan_fields,
                "detail": f.detail,
                "assessment": assessment_dict(f.assessment),
            }
            for f in r.fixes
        ],
    }


def check_junit(results: list[CheckResult]) -> str:
    """JUnit XML: one test suite per plan file, one test case per deployment; a failure carries
    the misses in its message and the whole report in its text."""
    import xml.etree.ElementTree as ET

    failed = sum(not r.passed for r in results)
    root = ET.Element(
        "testsuites", name="vramcalc check", tests=str(len(results)), failures=str(failed), errors="0"
    )
    for source in dict.fromkeys(r.planned.source for r in results):
        cases = [r for r in results if r.planned.source == source]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=source,
            tests=str(len(cases)),
            failures=str(sum(not r.passed for r in cases)),
            errors="0",
            skipped="0",
        )
        for r in cases:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=source,
                name=r.planned.name,
                file=source,
                line=str(r.planned.line or 1),
            )
            body = "\n".join([check_setup(r), *check_lines(r)])
            if r.passed:
                ET.SubElement(case, "system-out").text = body
            else:
                failure = ET.SubElement(
                    case, "failure", type="capacity", message="; ".join(miss_text(r, m) for m in r.misses)
                )
                failure.text = body
    for element in root.iter():  # names and paths are user text: keep only what XML 1.0 allows
        element.text = xml_text(element.text) if element.text else element.text
        element.attrib = {k: xml_text(v) for k, v in element.attrib.items()}
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _gh_data(text: str) -> str:
    """Escape a GitHub workflow-command message (actions/toolkit command.ts escapeData)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """Escape a workflow-command property value (actions/toolkit command.ts escapeProperty)."""
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def check_github(results: list[CheckResult]) -> str:
    """GitHub Actions workflow commands: an ::error annotation at the file and line of each failing
    deployment (its misses and fixes as the message), plain log lines for the ones that pass."""
    out: list[str] = []
    for r in results:
        p = r.planned
        if r.passed:
            out.append(f"PASS {plain(p.name)} ({plain(_where(r))})")  # a log line: never a command
            continue
        title = f"vramcalc: {p.name} does not pass"
        message = "\n".join([check_setup(r), *check_lines(r)])
        out.append(
            f"::error file={_gh_property(p.source)},line={p.line or 1},title={_gh_property(title)}::{_gh_data(message)}"
        )
    out.append(check_summary(results))
    return "\n".join(out) + "\n"


def check_markdown(results: list[CheckResult], curves: list[tuple[Assessment, ...]] | None = None) -> str:
    """A pull-request comment: a table of every deployment, then each failure with its fixes; with
    `curves` (each deployment assessed at 1..users), a chart of memory per GPU against users each."""
    failed = [r for r in results if not r.passed]
    n = len(results)
    head = f"all {n} pass" if not failed else f"{len(failed)} of {n} fail"
    lines = [
        f"### vramcalc check: {head}",
        "",
        "| | Deployment | GPUs | Users x ctx | Per GPU GiB | Budget GiB | Verdict | tok/s/user | TTFT s | Plan |",
        "|---|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in results:
        p, a = r.planned, r.assessment
        mark = "✅" if r.passed else "❌"
        gpus = f"{p.count} x {p.gpu.id}{'' if p.layout == 'single' else ' ' + p.layout}"
        tps = "-" if a.decode_tokens_per_s_per_user is None else f"{a.decode_tokens_per_s_per_user:.1f}"
        ttft = "-" if a.ttft_s is None else f"{a.ttft_s:.2f}"
        lines.append(
            f"| {mark} | {_md_cell(p.name)} | {gpus} | {p.request.users} x {p.request.ctx_tokens:,} | "
            f"{gib(a.demand_bytes):.2f} | {gib(a.budget_bytes):.2f} | {a.verdict} | {tps} | {ttft} | {md_code(_where(r))} |"
        )
    for r, curve in zip(results, curves or [], strict=False):
        title = f"{r.planned.name}: GiB per GPU by users on {r.planned.gpu.id} (bar), usable memory (line)"
        bars, usable = [a.per_gpu_bytes for a in curve], [a.usable_bytes for a in curve]
        lines += ["", *users_chart(title, [a.users for a in curve], [bars], [usable])]
    for r in failed:
        lines += [
            "",
            f"**{_md_cell(r.planned.name)}** ({md_code(_where(r))}) does not pass: {_md_cell(check_setup(r))}",
            "",
        ]
        lines += [f"- {miss_text(r, m)}" for m in r.misses]
        lines.append(f"- {_serves_text(r)}")
        if r.fixes:
            lines += ["", "Smallest changes that pass (any one):", ""]
            lines += [f"- `{f.change}`: {f.detail}" for f in r.fixes]
    lines += ["", check_summary(results)]
    return "\n".join(lines) + "\n"

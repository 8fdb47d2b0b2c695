"""Show results as JSON, Markdown, CSV, text or rich tables, one module per command; never prints."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vramcalc.render.calibrate import (
        bench_dict,
        bench_table,
        calibration_dict,
        calibration_headline,
        calibration_table,
    )
    from vramcalc.render.catalog import (
        detail_table,
        gpu_detail,
        gpu_summary,
        gpus_table,
        model_detail,
        model_summary,
        models_table,
    )
    from vramcalc.render.check import (
        check_dict,
        check_github,
        check_json,
        check_junit,
        check_lines,
        check_markdown,
        check_setup,
        check_summary,
        check_text,
        miss_text,
    )
    from vramcalc.render.common import BAR_WIDTH, to_json
    from vramcalc.render.diagnose import diagnose_dict, diagnose_text
    from vramcalc.render.emit import launch_dict, launch_text
    from vramcalc.render.estimate import (
        engine_dict,
        engine_lines,
        estimate_csv,
        estimate_dict,
        estimate_markdown,
        estimate_table,
        verdict,
    )
    from vramcalc.render.observe import observe_dict, observe_text
    from vramcalc.render.recommend import (
        option_name,
        recommendation_dict,
        recommendation_markdown,
        recommendation_summary,
        recommendation_table,
        recommendation_verdict,
        recommendations_dict,
    )

# Each name's module, imported on first use: a command pays only for the renderer it calls
# (render.calibrate alone pulls in the log readers, ~25 ms of a ~150 ms start).
_WHERE = {
    "BAR_WIDTH": "vramcalc.render.common",
    "bench_dict": "vramcalc.render.calibrate",
    "bench_table": "vramcalc.render.calibrate",
    "calibration_dict": "vramcalc.render.calibrate",
    "calibration_headline": "vramcalc.render.calibrate",
    "calibration_table": "vramcalc.render.calibrate",
    "check_dict": "vramcalc.render.check",
    "check_github": "vramcalc.render.check",
    "check_json": "vramcalc.render.check",
    "check_junit": "vramcalc.render.check",
    "check_lines": "vramcalc.render.check",
    "check_markdown": "vramcalc.render.check",
    "check_setup": "vramcalc.render.check",
    "check_summary": "vramcalc.render.check",
    "check_text": "vramcalc.render.check",
    "detail_table": "vramcalc.render.catalog",
    "diagnose_dict": "vramcalc.render.diagnose",
    "diagnose_text": "vramcalc.render.diagnose",
    "observe_dict": "vramcalc.render.observe",
    "observe_text": "vramcalc.render.observe",
    "engine_dict": "vramcalc.render.estimate",
    "engine_lines": "vramcalc.render.estimate",
    "estimate_csv": "vramcalc.render.estimate",
    "estimate_dict": "vramcalc.render.estimate",
    "estimate_markdown": "vramcalc.render.estimate",
    "estimate_table": "vramcalc.render.estimate",
    "gpu_detail": "vramcalc.render.catalog",
    "gpu_summary": "vramcalc.render.catalog",
    "gpus_table": "vramcalc.render.catalog",
    "launch_dict": "vramcalc.render.emit",
    "launch_text": "vramcalc.render.emit",
    "miss_text": "vramcalc.render.check",
    "model_detail": "vramcalc.render.catalog",
    "model_summary": "vramcalc.render.catalog",
    "models_table": "vramcalc.render.catalog",
    "option_name": "vramcalc.render.recommend",
    "recommendation_dict": "vramcalc.render.recommend",
    "recommendation_markdown": "vramcalc.render.recommend",
    "recommendation_summary": "vramcalc.render.recommend",
    "recommendation_table": "vramcalc.render.recommend",
    "recommendation_verdict": "vramcalc.render.recommend",
    "recommendations_dict": "vramcalc.render.recommend",
    "to_json": "vramcalc.render.common",
    "verdict": "vramcalc.render.estimate",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'vramcalc.render' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BAR_WIDTH",
    "bench_dict",
    "bench_table",
    "calibration_dict",
    "calibration_headline",
    "calibration_table",
    "check_dict",
    "check_github",
    "check_json",
    "check_junit",
    "check_lines",
    "check_markdown",
    "check_setup",
    "check_summary",
    "check_text",
    "detail_table",
    "diagnose_dict",
    "diagnose_text",
    "engine_dict",
    "engine_lines",
    "estimate_csv",
    "estimate_dict",
    "estimate_markdown",
    "estimate_table",
    "gpu_detail",
    "gpu_summary",
    "gpus_table",
    "launch_dict",
    "launch_text",
    "miss_text",
    "model_detail",
    "model_summary",
    "models_table",
    "observe_dict",
    "observe_text",
    "option_name",
    "recommendation_dict",
    "recommendation_markdown",
    "recommendation_summary",
    "recommendation_table",
    "recommendation_verdict",
    "recommendations_dict",
    "to_json",
    "verdict",
]

"""Show results as JSON, Markdown, CSV, text or rich tables, one module per command; never prints."""

from __future__ import annotations

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
    check_junit,
    check_lines,
    check_markdown,
    check_setup,
    check_summary,
    check_text,
    miss_text,
)
from vramcalc.render.common import BAR_WIDTH, to_json
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
from vramcalc.render.recommend import (
    option_name,
    recommendation_dict,
    recommendation_markdown,
    recommendation_summary,
    recommendation_table,
    recommendation_verdict,
    recommendations_dict,
)

__all__ = [
    "BAR_WIDTH",
    "bench_dict",
    "bench_table",
    "calibration_dict",
    "calibration_headline",
    "calibration_table",
    "check_dict",
    "check_github",
    "check_junit",
    "check_lines",
    "check_markdown",
    "check_setup",
    "check_summary",
    "check_text",
    "detail_table",
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

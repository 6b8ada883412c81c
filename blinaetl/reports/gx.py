"""Great Expectations: cohort-level expectations on `curated.patients`, with Data Docs per run.

The GX project lives in the repository (`gx/`: expectation suite, validation definition,
checkpoint), generated from `SUITE` by `python -m blinaetl.reports.gx build`. A run copies it into
a scratch folder, validates a pandas frame pulled from the analytics database (GX has no working
DuckDB source here; stack-notes), and copies the rendered Data Docs into the run's report folder.
Results use the SUMMARY format with no partial unexpected values, so no raw value is written.
`import great_expectations` takes seconds: it happens only inside these functions.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from blinaetl.resources import resource_root

PROJECT_DIR = "gx"
DATA_SOURCE = "blinaetl_frames"
ASSET = "curated_patients"
CHECKPOINT = "curated_patients_checkpoint"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}

# The suite, declared as data: (expectation class name, keyword arguments).
SUITE: list[tuple[str, dict[str, Any]]] = [
    ("ExpectColumnValuesToBeUnique", {"column": "patient_key"}),
    ("ExpectColumnValuesToNotBeNull", {"column": "patient_key"}),
    # completeness at cohort level
    ("ExpectColumnValuesToNotBeNull", {"column": "best_response"}),
    ("ExpectColumnValuesToNotBeNull", {"column": "cd19_baseline", "mostly": 0.8}),
    ("ExpectColumnValuesToNotBeNull", {"column": "bm_blasts_pct", "mostly": 0.9}),
    # plausibility: the response rate within a plausible band for R/R B-ALL on blinatumomab
    (
        "ExpectColumnMeanToBeBetween",
        {"column": "responder_num", "min_value": 0.2, "max_value": 0.8},
    ),
    # study days are never negative
    ("ExpectColumnValuesToBeBetween", {"column": "os_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "efs_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "rfs_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "response_day", "min_value": 1}),
    ("ExpectColumnValuesToBeBetween", {"column": "age_at_start", "min_value": 0, "max_value": 110}),
    # coded columns within their sets
    (
        "ExpectColumnValuesToBeInSet",
        {
            "column": "best_response",
            "value_set": ["CR", "CRh", "CRi", "hypoplastic", "refractory", "NE"],
        },
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "cd19_baseline", "value_set": ["negative", "dim", "moderate", "strong"]},
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "cd19_at_failure", "value_set": ["negative", "dim", "moderate", "strong"]},
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {
            "column": "failure_pattern",
            "value_set": ["isolated_marrow", "isolated_em", "combined", "none"],
        },
    ),
    ("ExpectColumnValuesToBeInSet", {"column": "sex", "value_set": ["M", "F", "U"]}),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "ph_status", "value_set": ["positive", "negative", "unknown"]},
    ),
]


def project_source() -> Path:
    return resource_root() / PROJECT_DIR


def build_project(root: Path) -> Path:
    """(Re)write the file-based GX project under `root/gx` from `SUITE`."""
    import great_expectations as gx

    shutil.rmtree(root / PROJECT_DIR, ignore_errors=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    source = context.data_sources.add_pandas(name=DATA_SOURCE)
    asset = source.add_dataframe_asset(name=ASSET)
    batch = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = gx.ExpectationSuite(name="curated_patients_cohort")
    for name, kwargs in SUITE:
        suite.add_expectation(getattr(gx.expectations, name)(**kwargs))
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="curated_patients_validation", data=batch, suite=suite)
    )
    context.checkpoints.add(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format=RESULT_FORMAT,
        )
    )
    return root / PROJECT_DIR


def run_gx_checkpoint(analytics_path: Path, report_dir: Path) -> dict[str, Any]:
    """Validate curated.patients with the committed checkpoint; Data Docs to report_dir/data_docs."""
    import duckdb

    con = duckdb.connect(str(analytics_path), read_only=True)
    try:
        frame = con.sql(
            "SELECT *, responder::INTEGER AS responder_num FROM curated.patients ORDER BY patient_key"
        ).df()
    finally:
        con.close()
    return validate_frame(frame, report_dir)


def validate_frame(frame: Any, report_dir: Path) -> dict[str, Any]:
    """Run the checkpoint on a pandas frame of curated.patients (plus responder_num)."""
    import logging
    import os

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage reporting off this machine
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    scratch = report_dir / "_gx_run"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(
        project_source(), scratch / PROJECT_DIR, ignore=shutil.ignore_patterns("uncommitted")
    )
    try:
        context = gx.get_context(mode="file", project_root_dir=str(scratch))
        # no tqdm bars in the run's output (they bury the stage log lines)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        result = context.checkpoints.get(CHECKPOINT).run(batch_parameters={"dataframe": frame})
        site = scratch / PROJECT_DIR / "uncommitted" / "data_docs" / "local_site"
        target = report_dir / "data_docs"
        shutil.rmtree(target, ignore_errors=True)
        if site.is_dir():
            shutil.copytree(site, target)
        outcomes = []
        for run_result in result.run_results.values():
            for r in run_result.results:
                cfg = r.expectation_config
                outcomes.append(
                    {
                        "expectation": cfg.type,
                        "column": cfg.kwargs.get("column"),
                        "success": bool(r.success),
                    }
                )
        return {
            "success": bool(result.success),
            "evaluated": len(outcomes),
            "failed": [o for o in outcomes if not o["success"]],
            "data_docs": str(target / "index.html") if (target / "index.html").exists() else None,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build_project(Path.cwd()))
    else:
        print("usage: python -m blinaetl.reports.gx build   (run from the repository root)")

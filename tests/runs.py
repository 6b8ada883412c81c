"""Run configs of the tests about the warehouse, the gate and the queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from blinaetl.config import RunConfig


def warehouse_run(landing: Path, warehouse: Path, reports: Path, **overrides: Any) -> RunConfig:
    """A demo-key run without the Great Expectations checkpoint and the study report.

    For the runs of tests that read the warehouse, the gate's outcome, the queries or the
    steward report, never the checkpoint's Data Docs or `study_report.html` (their child
    processes cost about 5.6 and 3.1 s CPU per run): tests/test_gx.py,
    tests/test_report_children.py, tests/test_study_report.py and the demo run test those."""
    settings: dict[str, Any] = {"demo": True, "gx": False, "study_report": False} | overrides
    return RunConfig(landing=landing, warehouse=warehouse, reports=reports, **settings)

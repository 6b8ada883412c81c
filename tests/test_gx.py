"""Great Expectations on the curated table: Data Docs per run, and no raw value written."""

from __future__ import annotations

import json

import duckdb

from blinaetl.reports.gx import SUITE, validate_frame


def test_checkpoint_runs_in_the_flow_and_writes_data_docs(demo_run):
    _, _, (summary, _) = demo_run
    manifest = json.loads((summary.report_dir / "manifest.json").read_text())
    gx = manifest["great_expectations"]
    assert gx["success"] is True
    assert gx["evaluated"] == len(SUITE)
    assert (summary.report_dir / "data_docs" / "index.html").exists()
    assert 'href="data_docs/index.html"' in (summary.report_dir / "index.html").read_text()
    assert not (summary.report_dir / "_gx_run").exists(), "the scratch project is removed"


def test_failing_expectations_leave_no_raw_value_in_any_file(tmp_path, demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        frame = con.sql("SELECT *, responder::INTEGER AS responder_num FROM curated.patients").df()
    finally:
        con.close()
    planted = "ZZ-SECRET-MRN-4711"
    frame.loc[0, "sex"] = planted  # an identifier in a coded column: the set expectation fails
    frame.loc[1, "best_response"] = planted
    frame.loc[2, "os_days"] = -5
    result = validate_frame(frame, tmp_path)
    assert result["success"] is False
    failed = {(f["expectation"], f["column"]) for f in result["failed"]}
    assert ("expect_column_values_to_be_in_set", "sex") in failed
    assert ("expect_column_values_to_be_between", "os_days") in failed
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written
    for path in written:
        assert planted not in path.read_bytes().decode("utf-8", errors="replace"), path.name

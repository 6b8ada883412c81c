"""The report's child processes (`blinaetl/reports/child.py`): the Great Expectations
checkpoint (`gx.GxWorker`) and the study report (`study.StudyWorker`).

Each child's output must be what the same work in the run's own process gives (the study
report byte for byte); a failing child fails the report stage with a message; a run that never
asks for the work (refused, failed) leaves no child behind.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from blinaetl import pipeline
from blinaetl.config import RunConfig
from blinaetl.reports.child import ReportChildError
from blinaetl.reports.gx import SUITE, GxWorker, run_gx_checkpoint
from blinaetl.reports.study import StudyWorker, write_study_report

RUN_TIME = re.compile(r"\d{8}T\d{6}\.\d+Z")


def _pages(root: Path) -> dict[str, str]:
    """Data Docs pages by path, the checkpoint run's time in a path written as <run>."""
    return {
        RUN_TIME.sub("<run>", str(p.relative_to(root))): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_child_summary_and_data_docs_equal_the_in_process_checkpoint(tmp_path, demo_run):
    _, cfg, _ = demo_run
    here, there = tmp_path / "in_process", tmp_path / "child"
    expected = run_gx_checkpoint(cfg.analytics_path, here)
    worker = GxWorker()
    try:
        worker.submit_checkpoint(cfg.analytics_path, there)
        got = worker.result()
    finally:
        worker.close()
    assert expected["success"] is True and expected["evaluated"] > 10
    assert got == {**expected, "data_docs": str(there / "data_docs" / "index.html")}
    pages_here, pages_there = _pages(here / "data_docs"), _pages(there / "data_docs")
    assert sorted(pages_here) == sorted(pages_there) and len(pages_here) >= 3
    # run names and times differ between two checkpoint runs; the validated columns do not
    columns = {kwargs["column"] for _, kwargs in SUITE}
    for name, page in pages_here.items():
        if name.startswith("validations"):
            for column in columns:
                assert (column in page) == (column in pages_there[name]), (name, column)


def test_a_failing_child_raises_with_its_error(tmp_path):
    worker = GxWorker()
    try:
        worker.submit_checkpoint(tmp_path / "no_such.duckdb", tmp_path / "report")
        with pytest.raises(
            ReportChildError, match=r"checkpoint failed in its child process \(exit"
        ):
            worker.result()
    finally:
        worker.close()


def test_result_without_a_job_is_refused():
    worker = GxWorker()
    try:
        with pytest.raises(ReportChildError, match="no job was submitted to the Great Exp"):
            worker.result()
    finally:
        worker.close()
    assert worker._proc.returncode is not None


def test_child_study_report_equals_the_in_process_one_byte_for_byte(tmp_path, demo_run):
    _, cfg, _ = demo_run
    here, _ = write_study_report(cfg.analytics_path, tmp_path / "in_process")
    worker = StudyWorker()
    try:
        worker.submit_report(cfg.analytics_path, tmp_path / "child")
        got = worker.result()
    finally:
        worker.close()
    there = tmp_path / "child" / "study_report.html"
    assert got == {"path": str(there)}
    assert there.read_bytes() == here.read_bytes()
    assert b"data:image/png;base64," in there.read_bytes()


def test_a_failing_study_child_raises_with_its_error(tmp_path):
    worker = StudyWorker()
    try:
        worker.submit_report(tmp_path / "no_such.duckdb", tmp_path / "report")
        with pytest.raises(ReportChildError, match=r"^the study report failed in its child"):
            worker.result()
    finally:
        worker.close()


def test_prestart_registers_the_run_children_and_ends_them_when_unused(tmp_path):
    cfg = RunConfig(landing=tmp_path, run_id="run-unused")
    with pipeline.prestart_reports(cfg):
        children = dict(pipeline._REPORT_CHILDREN["run-unused"])
        assert sorted(children) == ["gx", "study"]
        assert all(c._proc.poll() is None for c in children.values())  # importing, waiting
    assert "run-unused" not in pipeline._REPORT_CHILDREN
    deadline = time.monotonic() + 10
    while any(c._proc.poll() is None for c in children.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(c._proc.returncode is not None for c in children.values())
    off = RunConfig(landing=tmp_path, run_id="run-off", gx=False)
    with pipeline.prestart_reports(off):
        assert sorted(pipeline._REPORT_CHILDREN["run-off"]) == ["study"]
    assert "run-off" not in pipeline._REPORT_CHILDREN

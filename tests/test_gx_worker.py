"""The Great Expectations checkpoint in its child process (`blinaetl.reports.gx.GxWorker`).

The child's summary and Data Docs must be what the checkpoint run in the run's own process
gives; a failing child fails the report stage with a message; a run that never asks for the
checkpoint (refused, failed) leaves no child behind.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from blinaetl import pipeline
from blinaetl.config import RunConfig
from blinaetl.reports.gx import SUITE, GxWorker, GxWorkerError, run_gx_checkpoint

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
        worker.submit(cfg.analytics_path, there)
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
        worker.submit(tmp_path / "no_such.duckdb", tmp_path / "report")
        with pytest.raises(GxWorkerError, match=r"checkpoint failed in its child process \(exit"):
            worker.result()
    finally:
        worker.close()


def test_result_without_a_job_is_refused():
    worker = GxWorker()
    try:
        with pytest.raises(GxWorkerError, match="no checkpoint was submitted"):
            worker.result()
    finally:
        worker.close()
    assert worker._proc.returncode is not None


def test_prestart_registers_one_child_per_run_and_ends_it_when_unused(tmp_path):
    cfg = RunConfig(landing=tmp_path, run_id="run-unused")
    with pipeline.prestart_gx(cfg):
        worker = pipeline._GX_WORKERS["run-unused"]
        assert worker._proc.poll() is None  # importing GX, waiting for a job
    assert "run-unused" not in pipeline._GX_WORKERS
    deadline = time.monotonic() + 10
    while worker._proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert worker._proc.returncode is not None
    off = RunConfig(landing=tmp_path, run_id="run-off", gx=False)
    with pipeline.prestart_gx(off):
        assert "run-off" not in pipeline._GX_WORKERS

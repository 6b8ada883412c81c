"""Publish is atomic under a real crash: a child process running the pipeline is SIGKILLed at
the moment it swaps the new analytics file in (an audit hook in the child sees the rename or
replace onto the live file and kills its own process; nothing is patched). The published
database is then the old one, byte for byte, never missing; the next run publishes the new."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from pathlib import Path

import duckdb

from blinaetl.pipeline import run_pipeline
from blinaetl.synth import generate
from tests.runs import warehouse_run

CHILD = """
import os, signal, sys
from pathlib import Path

landing, warehouse, reports = (Path(a).resolve() for a in sys.argv[1:4])
live = str(warehouse / "blina.duckdb")


def kill_at_swap(event, args):
    # os.rename and os.replace raise the "os.rename" audit event (src, dst, ...) before acting
    if event == "os.rename" and str(Path(os.fspath(args[1])).resolve()) == live:
        os.kill(os.getpid(), signal.SIGKILL)


sys.addaudithook(kill_at_swap)
from blinaetl.pipeline import RunConfig, run_pipeline

run_pipeline(
    RunConfig(
        landing=landing, warehouse=warehouse, reports=reports, demo=True, gx=False, study_report=False,
        definitions={"hct_landmark_day": 90},
    )
)
print("the swap was never reached")
"""


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _landmark(path: Path) -> str:
    con = duckdb.connect(str(path), read_only=True)
    try:
        n_views = con.execute(
            "SELECT count(*) FROM duckdb_views() WHERE schema_name = 'endpoints'"
        ).fetchall()[0][0]
        assert n_views > 0, "the endpoint views are there"
        return con.execute(
            "SELECT value FROM curated.definitions WHERE name = 'hct_landmark_day'"
        ).fetchall()[0][0]
    finally:
        con.close()


def test_a_crash_at_the_swap_leaves_the_old_database_and_the_next_run_publishes(tmp_path):
    cohort = tmp_path / "cohort"
    generate(cohort, n_patients=12, seed=3)
    landing, warehouse, reports = cohort / "landing", tmp_path / "wh", tmp_path / "reports"
    run_pipeline(warehouse_run(landing, warehouse, reports))
    live = warehouse / "blina.duckdb"
    old_sha = _sha(live)
    assert _landmark(live) == "100"

    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(landing), str(warehouse), str(reports)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert live.exists(), "the published database went missing at the swap"
    assert _sha(live) == old_sha, "the published database is the old one, untouched"
    assert _landmark(live) == "100"

    # the killed run's lock died with it; the next run removes its build file and publishes
    run_pipeline(warehouse_run(landing, warehouse, reports, definitions={"hct_landmark_day": 90}))
    assert _landmark(live) == "90"
    assert not list(warehouse.glob(".blina.duckdb.*")), "no build file left behind"

"""benchmarks/model_fit_benchmark.py reports publish's model fit on a published database
(behaviour, never timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "model_fit_benchmark.py"


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_model_fit_benchmark_times_each_query_family_and_the_cache_on_the_demo_run(
    demo_run, tmp_path
):
    _, cfg, _ = demo_run
    db = cfg.analytics_path
    con = duckdb.connect(str(db), read_only=True)
    try:
        ((patients,),) = con.execute("SELECT count(*) FROM curated.patients").fetchall()
        published = con.execute(
            "SELECT analysis, count(*) FROM endpoints.model_results GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    out = tmp_path / "fit.json"
    run = _bench("--db", str(db), "--repeat", "2", "--json", str(out))
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    # the rows the pipeline published, counted by the test from the database
    assert doc["patients"] == patients == 65
    assert doc["model_rows"] == sum(n for _, n in published)
    by_analysis = dict(published)
    assert doc["family_rows"]["logrank"] == by_analysis["logrank"]
    assert doc["family_rows"]["cox"] == by_analysis.get("cox_landmark", 0) + by_analysis.get(
        "cox_time_dependent", 0
    )
    assert doc["family_rows"]["fisher"] == by_analysis["fisher"]
    assert doc["input_rows"]["patients"] == patients
    assert doc["cached_equal"] is True
    assert set(doc["seconds"]) == {
        "query km_input",
        "query hct_landmark",
        "query hct_landmark_summary",
        "query hct_counting_process",
        "query patients",
        "inputs_key (frames read)",
        "fit logrank",
        "fit cox",
        "fit logistic",
        "fit fisher",
        "model_rows cold (no cache)",
        "model_rows, cache matching",
    }
    assert all(s > 0 for s in doc["seconds"].values())
    assert doc["peak_rss_bytes"] > 50 * 2**20
    assert "65 patients, " in run.stdout and "cached rows equal the fitted rows: yes" in run.stdout


def test_model_fit_benchmark_refuses_a_missing_file_and_a_file_that_is_no_database(tmp_path):
    missing = _bench("--db", str(tmp_path / "nope.duckdb"))
    assert missing.returncode == 2 and "no such file (give a published blina.duckdb)" in (
        missing.stderr
    )
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    wrong = _bench("--db", str(empty))
    assert wrong.returncode == 2
    assert "cannot be read as a published analytics database" in wrong.stderr
    assert "Traceback" not in wrong.stderr

"""Steward report: query listing against the planted defects, lifecycle across runs, changes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from blinaetl.pipeline import run_pipeline
from blinaetl.synth import generate
from tests.runs import warehouse_run

ASM = "clinical/SITE01/assessments_20260901.csv"
ASM_NEW = "clinical/SITE01/assessments_20261001.csv"


def test_query_listing_has_one_row_per_planted_defect(demo_run):
    cohort, _, (summary, _) = demo_run
    queries = pl.read_csv(summary.report_dir / "queries.csv", infer_schema=False)
    defects = pl.read_csv(cohort / "truth" / "defects.csv", infer_schema=False)
    checks = queries.filter(~pl.col("rule_id").str.starts_with("DRV_"))
    got = set(checks.select("source_file", "source_row", "rule_id").iter_rows())
    expected = set(defects.select("file", "row", "check_id").iter_rows())
    assert got == expected
    assert checks.height == defects.height
    # the derivations' queries: one per hard case the generator planted (truth written apart)
    derived = queries.filter(pl.col("rule_id").str.starts_with("DRV_"))
    planted = pl.read_csv(cohort / "truth" / "derivation_queries.csv", infer_schema=False)
    assert set(derived.select("source_file", "source_row", "rule_id").iter_rows()) == set(
        planted.select("file", "row", "rule_id").iter_rows()
    )
    assert queries["query_id"].n_unique() == queries.height
    assert set(queries["status"]) == {"new"}
    assert queries["patient_key"].null_count() == 0
    assert (summary.report_dir / "queries.xlsx").stat().st_size > 0


def test_report_sections_and_files(demo_run):
    _, _, (summary, _) = demo_run
    html = (summary.report_dir / "index.html").read_text()
    for anchor in (
        "files",
        "queries",
        "kahn",
        "top-failing",
        "changes",
        "vocabulary",
        "all-checks",
    ):
        assert f'id="{anchor}"' in html
    assert "queries.csv" in html and "queries.xlsx" in html
    assert "http://" not in html and "https://" not in html, "works offline"
    dq = json.loads((summary.report_dir / "dq_results.json").read_text())
    assert {"check_id", "rows_failed", "pct_failed", "threshold", "status"} <= set(dq[0])
    statuses = {r["status"] for r in dq}
    assert statuses <= {"error", "not_applicable", "failed", "passed"}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    cohort = root / "cohort"
    generate(cohort, n_patients=80, seed=41)
    landing, reports = cohort / "landing", root / "reports"
    # the lifecycle, the superseded extract and the changes section are read from the
    # queries and the steward report; the Great Expectations checkpoint and the study report
    # are off (`warehouse_run`): tests/test_gx.py, tests/test_report_children.py,
    # tests/test_study_report.py and the demo run test them
    first = warehouse_run(landing, root / "wh", reports)
    run_pipeline(first)
    defects = pl.read_csv(cohort / "truth" / "defects.csv", infer_schema=False).filter(
        pl.col("file") == ASM
    )
    # the site's next cumulative extract: fix the ANC and range defects, keep the others,
    # and deliver a new impossible blast count on a clean row
    frame = pl.read_csv(landing / ASM, infer_schema=False)
    fixed_rows = (
        defects.filter(pl.col("kind").is_in(["impossible_value", "mis_scaled_unit"]))["row"]
        .cast(pl.Int64)
        .to_list()
    )
    idx = [r - 2 for r in fixed_rows]
    frame = frame.with_row_index("_i").with_columns(
        pl.when(pl.col("_i").is_in(idx))
        .then(pl.lit("1.5"))
        .otherwise(pl.col("anc_10e9l"))
        .alias("anc_10e9l"),
        pl.when(pl.col("_i").is_in(idx))
        .then(pl.lit("150"))
        .otherwise(pl.col("platelets_10e9l"))
        .alias("platelets_10e9l"),
    )
    clean = frame.filter(pl.col("marrow_blasts_pct").is_not_null() & ~pl.col("_i").is_in(idx))[
        "_i"
    ][0]
    frame = frame.with_columns(
        pl.when(pl.col("_i") == clean)
        .then(pl.lit("140"))
        .otherwise(pl.col("marrow_blasts_pct"))
        .alias("marrow_blasts_pct")
    ).drop("_i")
    (landing / ASM_NEW).write_text(frame.write_csv())
    second = warehouse_run(landing, root / "wh", reports)
    summary2, result2 = run_pipeline(second)
    q1 = pl.read_csv(reports / first.run_id / "queries.csv", infer_schema=False)
    q2 = pl.read_csv(summary2.report_dir / "queries.csv", infer_schema=False)
    return q1, q2, fixed_rows, clean + 2, result2, summary2


def test_lifecycle_new_open_resolved(two_runs):
    q1, q2, fixed_rows, new_row, _, _ = two_runs
    before = q1.filter(pl.col("source_file") == ASM)
    fixed_ids = set(
        before.filter(pl.col("source_row").cast(pl.Int64).is_in(fixed_rows))["query_id"]
    )
    assert fixed_ids and set(q2.filter(pl.col("status") == "resolved")["query_id"]) == fixed_ids
    still = set(before["query_id"]) - fixed_ids
    assert still == set(
        q2.filter((pl.col("status") == "open") & (pl.col("source_file") == ASM_NEW))["query_id"]
    ), "same defect, same id, even in a new file"
    new = q2.filter(pl.col("status") == "new")
    assert new.filter(pl.col("source_file") == ASM_NEW)["rule_id"].to_list() == ["ASM_BLASTS_RANGE"]
    assert new.filter(pl.col("source_file") == ASM_NEW)["source_row"].cast(pl.Int64).to_list() == [
        new_row
    ]
    other_files = q1.filter(pl.col("source_file") != ASM)
    assert set(other_files["query_id"]) <= set(q2.filter(pl.col("status") == "open")["query_id"])


def test_second_run_supersedes_the_old_extract_and_reports_changes(two_runs):
    _, _, _, _, result2, summary2 = two_runs
    old = result2.files.filter(pl.col("path") == ASM).row(0, named=True)
    assert old["status"] == "superseded"
    html = (summary2.report_dir / "index.html").read_text()
    assert "Compared with run" in html
    assert Path(summary2.report_dir / "patients_snapshot.parquet").exists()


def test_a_run_without_the_study_report_writes_none_and_links_none(two_runs):
    # two_runs runs with study_report=False: no child writes it, and the steward report's
    # contents line does not point at a missing file (the demo run tests the other side)
    summary2 = two_runs[5]
    assert summary2.gate is None or summary2.gate.get("published", True), "it was published"
    assert not (summary2.report_dir / "study_report.html").exists()
    index = (summary2.report_dir / "index.html").read_text()
    assert 'href="study_report.html"' not in index
    assert 'href="#files"' in index, "the contents line itself is still there"


def test_the_run_config_key_study_report_is_read_and_a_misspelling_is_refused(tmp_path):
    from blinaetl.config import load_run_config

    good = tmp_path / "run.yaml"
    good.write_text("landing: x\nstudy_report: false\ngx: false\n")
    assert load_run_config(good) == {"landing": "x", "study_report": False, "gx": False}
    bad = tmp_path / "typo.yaml"
    bad.write_text("landing: x\nstudy_reports: false\n")
    with pytest.raises(KeyError, match=r"typo\.yaml: unknown key\(s\) study_reports; allowed: "):
        load_run_config(bad)

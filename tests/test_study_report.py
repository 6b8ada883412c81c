"""The reproduction report: its numbers, checked against hand counts and the demo's truth."""

from __future__ import annotations

import polars as pl
import pytest

from blinaetl.reports.study import compute, two_by_two


def test_two_by_two_counts_and_fisher_p():
    # Fisher's tea-tasting table [[3, 1], [1, 3]]: two-sided p = 34/70 = 0.4857...
    frame = pl.DataFrame(
        {
            "factor": [True] * 4 + [False] * 4 + [None],
            "outcome": [True, True, True, False, True, False, False, False, True],
        }
    )
    t = two_by_two(frame, "factor", "outcome", "f")
    assert (t.n_with, t.events_with, t.n_without, t.events_without) == (4, 3, 4, 1)
    assert t.p_value == pytest.approx(34 / 70, abs=1e-12)


def test_two_by_two_without_comparison_group_has_no_p():
    frame = pl.DataFrame({"factor": [True, True], "outcome": [True, False]})
    assert two_by_two(frame, "factor", "outcome", "f").p_value is None


def _truth_counts(truth: pl.DataFrame) -> dict:
    t = truth.with_columns(
        [pl.col(c).str.to_lowercase().eq("true") for c in ("responder", "hct_in_cr", "relapsed")]
    )
    return {
        "n": t.height,
        "responders": int(t["responder"].sum()),
        "hct_in_cr": int(t["hct_in_cr"].sum()),
        "relapsed": int(t["relapsed"].sum()),
        "refractory": t.filter(pl.col("best_response") == "refractory").height,
    }


def test_study_report_numbers_equal_truth(demo_run):
    cohort, cfg, (summary, _) = demo_run
    html = (summary.report_dir / "study_report.html").read_text()
    for section in ("table1", "response", "em-risk", "failure", "km"):
        assert f'id="{section}"' in html
    assert "data:image/png;base64," in html, "Kaplan-Meier figures are embedded"
    truth = pl.read_csv(cohort / "truth" / "patients.csv", infer_schema=False)
    expected = _truth_counts(truth)
    import duckdb

    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        numbers = compute(con.sql("SELECT * FROM curated.patients").pl())
    finally:
        con.close()
    for key in ("n", "responders", "hct_in_cr", "relapsed"):
        assert numbers[key] == expected[key], key
    refractory = next(r for r in numbers["failure_patterns"] if r["group"] == "refractory")
    assert refractory["n"] == expected["refractory"]
    # response by marrow blasts > 50%, counted from the truth by hand
    gt50 = truth.filter(pl.col("bm_blasts_gt50") == "true")
    row = next(r for r in numbers["response_by_predictor"] if r["factor"] == "bm_blasts_gt50")
    assert row["n_with"] == gt50.height
    assert row["events_with"] == gt50.filter(pl.col("responder") == "true").height

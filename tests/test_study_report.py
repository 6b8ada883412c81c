"""The study report: formatting rules, numbers read from the views, equal to the demo's truth."""

from __future__ import annotations

import inspect

import duckdb
import polars as pl
import pytest

from blinaetl.reports import study
from blinaetl.reports.study import fmt_count, fmt_p


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (None, "-"),
        (0.0, "<0.001"),
        (0.000999, "<0.001"),
        (0.001, "0.001"),
        (0.0456, "0.046"),
        (1.0, "1.000"),
    ],
)
def test_p_values_print_as_a_journal_prints_them(p, text):
    assert fmt_p(p) == text


def test_counts_print_with_their_percentage():
    assert fmt_count(13, 32) == "13/32 (41%)"
    assert fmt_count(0, 0) == "-" and fmt_count(None, 5) == "-"


def test_the_report_reads_views_not_patient_rows():
    source = inspect.getsource(study)
    assert "curated.patients" not in source, "the report must not recompute from patient rows"
    assert "fisher_exact" not in source and "scipy" not in source


def _truth_counts(truth: pl.DataFrame) -> dict:
    t = truth.with_columns(
        [pl.col(c).str.to_lowercase().eq("true") for c in ("responder", "hct_in_cr", "relapsed")]
    )
    return {
        "n": t.height,
        "responders": int(t["responder"].sum()),
        "hct_in_cr": int(t["hct_in_cr"].sum()),
        "relapsed": int(t["relapsed"].sum()),
    }


def test_study_report_shows_the_seed_analyses_from_the_views(demo_run):
    cohort, cfg, (summary, _) = demo_run
    html = (summary.report_dir / "study_report.html").read_text()
    for section in (
        "seed",
        "table1",
        "response",
        "em-risk",
        "cd19-risk",
        "failure",
        "km",
        "km-summary",
        "landmark",
        "incidence",
        "multiple-testing",
    ):
        assert f'id="{section}"' in html, section
    assert html.count("data:image/png;base64,") >= 7, "six KM figures and the incidence plot"
    # the steward report's contents line links it (a run with study_report=False does not:
    # tests/test_report.py)
    assert (
        '<a href="study_report.html">study report</a>'
        in (summary.report_dir / "index.html").read_text()
    )
    assert "0.000<" not in html, "p-values print as <0.001, not 0.000"
    assert "Days from the landmark (day 100)" not in html  # axis labels are inside the images
    truth = _truth_counts(pl.read_csv(cohort / "truth" / "patients.csv", infer_schema=False))
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        numbers = study.read_numbers(con)
    finally:
        con.close()
    overall = next(r for r in numbers["response_rates"] if r["predictor"] == "overall")
    assert (overall["n"], overall["responders"]) == (truth["n"], truth["responders"])
    default = next(r for r in numbers["landmarks"] if r["default_landmark"])
    assert default["hct_in_cr"] == truth["hct_in_cr"]
    relapsed = next(r for r in numbers["failure_patterns"] if r["failure_group"] == "relapsed")
    assert relapsed["n"] == truth["relapsed"]
    seed = {r["figure"]: r["cohort"] for r in study.seed_comparison(numbers)}
    assert seed["Patients"] == str(truth["n"])
    assert seed["Responders who relapsed"].startswith(f"{truth['relapsed']}/{truth['responders']}")
    assert f">{seed['Responders to allogeneic HCT in CR']}<" in html
    # the discordance sentence is the published summary row, printed as read
    assert numbers["cd19_discordance"][0]["window_days"] == 7
    assert f'<p id="cd19-discordance">{study.cd19_discordance_text(numbers)}</p>' in html


def test_cd19_discordance_sentence_reads_the_summary_row():
    row = {
        "window_days": 7,
        "patients_paired": 4,
        "patients_discordant": 3,
        "patients_em_negative": 1,
        "patients_marrow_negative": 2,
        "pairs": 5,
        "pairs_discordant": 3,
    }
    assert study.cd19_discordance_text({"cd19_discordance": [row]}) == (
        "EM specimen (tissue or CSF) vs marrow within 7 days: CD19 class discordant in "
        "3/4 (75%) patients with such a pair (3 of 5 pairs); CD19-negative EM beside "
        "CD19-expressing marrow in 1/4 (25%), the reverse in 2/4 (50%)."
    )
    none = row | {"window_days": 14, "patients_paired": 0, "pairs": 0}
    assert study.cd19_discordance_text({"cd19_discordance": [none]}) == (
        "No patient has an EM specimen (tissue or CSF) and a marrow specimen within 14 days "
        "with CD19 classified in both."
    )

"""endpoints.model_results against references that do not share its code.

Univariable logistic odds ratios equal the 2x2 cross-product ratio with Woolf's interval (exact
identities for one binary predictor); the log-rank chi-square equals (O - E)^2 / V summed by
hand; the landmark Cox hazard ratio equals statsmodels' PHReg (Efron ties); the Fisher odds
ratio and its interval equal R's fisher.test on Fisher's tea-tasting table.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.duration.hazard_regression import PHReg

from blinaetl.warehouse import statistics
from tests.test_survival_views import cohort, survival_db


@pytest.fixture(scope="module")
def results():
    patients = cohort(400, 3)
    con = survival_db(patients)
    n = statistics.write_model_results(con)
    frame = con.sql("SELECT * FROM endpoints.model_results").df()
    assert n == len(frame)
    return patients, con, frame


def test_univariable_logistic_equals_the_cross_product_ratio(results):
    patients, _, frame = results
    for term in ("bm_blasts_gt50", "prior_em", "active_em_at_start"):
        d = patients[[term, "responder"]].dropna()
        f, o = d[term].astype(bool), d["responder"].astype(bool)
        a, b = (f & o).sum(), (f & ~o).sum()
        c, e = (~f & o).sum(), (~f & ~o).sum()
        ratio = a * e / (b * c)
        se = math.sqrt(1 / a + 1 / b + 1 / c + 1 / e)
        row = frame[
            (frame.analysis == "logistic") & (frame.term == term) & (frame.model == "univariable")
        ].iloc[0]
        assert row["estimate"] == pytest.approx(ratio, rel=1e-6)
        assert row["ci_lower"] == pytest.approx(ratio * math.exp(-1.959963984540054 * se), rel=1e-6)
        assert row["ci_upper"] == pytest.approx(ratio * math.exp(1.959963984540054 * se), rel=1e-6)
        assert row["n"] == len(d) and row["events"] == o.sum()
    multi = frame[(frame.analysis == "logistic") & (frame.model == "multivariable")]
    assert sorted(multi.term) == sorted(statistics.PREDICTORS)
    assert multi["estimate"].notna().all()


def test_logrank_equals_observed_minus_expected_by_hand(results):
    _, con, frame = results
    km = con.sql(
        "SELECT time_days, event, stratum_value FROM endpoints.km_input "
        "WHERE param = 'OS' AND stratum_variable = 'prior_em'"
    ).df()
    o_minus_e, var = 0.0, 0.0
    for t in sorted(km.loc[km.event == 1, "time_days"].unique()):
        risk = km[km.time_days >= t]
        n, n1 = len(risk), (risk.stratum_value == "true").sum()
        dead = risk[(risk.time_days == t) & (risk.event == 1)]
        d, d1 = len(dead), (dead.stratum_value == "true").sum()
        o_minus_e += d1 - d * n1 / n
        if n > 1:
            var += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1)
    row = frame[
        (frame.analysis == "logrank") & (frame.outcome == "OS") & (frame.term == "prior_em")
    ].iloc[0]
    assert row["statistic"] == pytest.approx(o_minus_e**2 / var, rel=1e-9)
    assert row["df"] == 1


def test_landmark_cox_equals_statsmodels(results):
    _, con, frame = results
    lm = con.sql(
        "SELECT days_from_landmark, event, hct_in_cr_by_landmark::INTEGER AS hct "
        "FROM endpoints.hct_landmark WHERE landmark_day = 100 AND param = 'OS'"
    ).df()
    ref = PHReg(lm["days_from_landmark"], lm[["hct"]], status=lm["event"], ties="efron").fit()
    row = frame[
        (frame.analysis == "cox_landmark") & (frame.outcome == "OS") & (frame.landmark_day == 100)
    ].iloc[0]
    assert row["estimate"] == pytest.approx(math.exp(ref.params[0]), rel=1e-5)
    lo, hi = np.exp(ref.conf_int()[0])
    assert row["ci_lower"] == pytest.approx(lo, rel=1e-5)
    assert row["ci_upper"] == pytest.approx(hi, rel=1e-5)
    assert set(frame.loc[frame.analysis == "cox_landmark", "landmark_day"]) == {60, 100, 180}
    td = frame[frame.analysis == "cox_time_dependent"]
    assert sorted(td.outcome) == ["EFS", "OS", "RFS"] and td["estimate"].notna().all()


def test_fisher_odds_ratio_equals_r_on_the_tea_tasting_table():
    import duckdb

    con = duckdb.connect()
    con.execute(
        "CREATE SCHEMA curated; CREATE TABLE curated.patients (patient_key VARCHAR, "
        "responder BOOLEAN, bm_blasts_gt50 BOOLEAN, prior_em BOOLEAN, active_em_at_start BOOLEAN, "
        "cd19_baseline VARCHAR, em_at_failure BOOLEAN, cd19_at_failure VARCHAR)"
    )
    # [[3, 1], [1, 3]]: R fisher.test: p = 0.4857, OR 6.408309, 95% CI 0.2117329 - 621.9337
    pairs = [(True, True)] * 3 + [(True, False)] + [(False, True)] + [(False, False)] * 3
    for i, (f, o) in enumerate(pairs):
        con.execute(
            "INSERT INTO curated.patients VALUES (?, ?, ?, FALSE, FALSE, NULL, NULL, NULL)",
            [f"p{i}", o, f],
        )
    row = next(
        r
        for r in statistics.fisher_rows(con)
        if r["outcome"] == "responder" and r["term"] == "bm_blasts_gt50"
    )
    assert (row["n_with"], row["events_with"], row["n_without"], row["events_without"]) == (
        4,
        3,
        4,
        1,
    )
    assert row["p_value"] == pytest.approx(34 / 70, abs=1e-12)
    assert row["estimate"] == pytest.approx(6.408309, rel=1e-5)
    assert row["ci_lower"] == pytest.approx(0.2117329, rel=1e-4)
    # the upper limit sits where the conditional likelihood is flat: scipy finds 626.24, R's
    # uniroot 621.93 (0.7% apart, measured); both are the same exact (Cornfield) interval
    assert row["ci_upper"] == pytest.approx(621.9337, rel=1e-2)
    # a factor nobody has: a row with the reason, not a missing row
    empty = next(r for r in statistics.fisher_rows(con) if r["term"] == "prior_em")
    assert empty["estimate"] is None and "no patient" in empty["note"]

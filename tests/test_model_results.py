"""endpoints.model_results against references that do not share its code.

Univariable logistic odds ratios equal the 2x2 cross-product ratio with Woolf's interval (exact
identities for one binary predictor); the log-rank chi-square equals (O - E)^2 / V summed by
hand; the landmark Cox hazard ratio equals statsmodels' PHReg (Efron ties); the Fisher odds
ratio and its interval equal R's fisher.test on Fisher's tea-tasting table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
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


# lifelines run to the maximum of the partial likelihood (its default stopping ends up to about
# 5e-4 standard errors short of it; tests/test_survival_fit.py)
TIGHT = {"precision": 1e-16, "r_precision": 0.0}


def _lifelines_hr(fit) -> dict:
    s = fit.summary.loc["hct"]
    return {
        "estimate": s["exp(coef)"],
        "ci_lower": s["exp(coef) lower 95%"],
        "ci_upper": s["exp(coef) upper 95%"],
        "statistic": s["z"],
        "p_value": s["p"],
    }


def _assert_rows_equal_lifelines(con, rows) -> int:
    """Every fitted cox_* and logrank row of `rows` equals lifelines on the same model inputs;
    returns how many fitted rows were compared."""
    import warnings

    from lifelines import CoxPHFitter, CoxTimeVaryingFitter
    from lifelines.statistics import multivariate_logrank_test

    inputs = statistics.Inputs(con)

    def frame(name: str) -> pd.DataFrame:
        if name == "km_input":  # read as counts of distinct rows: the rows themselves
            return inputs.km_rows().to_pandas()
        return con.sql(statistics.INPUTS[name]).df()

    compared = 0
    for row in rows:
        if row["note"] is not None:
            assert row["estimate"] is None and row["statistic"] is None
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if row["analysis"] == "logrank":
                km = frame("km_input")
                g = km[(km.param == row["outcome"]) & (km.stratum_variable == row["term"])]
                ref = multivariate_logrank_test(g["time_days"], g["stratum_value"], g["event"])
                assert row["statistic"] == pytest.approx(ref.test_statistic, rel=1e-10)
                assert row["df"] == ref.degrees_of_freedom
                assert row["p_value"] == pytest.approx(ref.p_value, rel=1e-9)
                compared += 1
                continue
            if row["analysis"] == "cox_landmark":
                lm = frame("hct_landmark")
                g = lm[(lm.landmark_day == row["landmark_day"]) & (lm.param == row["outcome"])]
                fit = CoxPHFitter().fit(
                    g[["days_from_landmark", "event", "hct"]],
                    duration_col="days_from_landmark",
                    event_col="event",
                    fit_options=TIGHT,
                )
            else:
                cp = frame("hct_counting_process")
                g = cp[cp.param == row["outcome"]]
                fit = CoxTimeVaryingFitter().fit(
                    g[["patient_key", "start_day", "stop_day", "event", "hct"]],
                    id_col="patient_key",
                    start_col="start_day",
                    stop_col="stop_day",
                    event_col="event",
                    fit_options=TIGHT,
                )
        ref = _lifelines_hr(fit)
        z = abs(ref["statistic"])
        for column in ("estimate", "ci_lower", "ci_upper"):
            assert row[column] == pytest.approx(ref[column], rel=1e-7), (row, column)
        assert row["statistic"] == pytest.approx(ref["statistic"], rel=1e-7, abs=1e-8)
        assert row["p_value"] == pytest.approx(ref["p_value"], rel=1e-7 * (1 + z) ** 2)
        compared += 1
    return compared


def test_demo_cohort_cox_and_logrank_rows_equal_lifelines(demo_run):
    import duckdb

    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        published = con.sql(
            "SELECT * FROM endpoints.model_results WHERE analysis IN "
            "('logrank', 'cox_landmark', 'cox_time_dependent')"
        ).df()
        rows = [
            {k: (None if pd.isna(v) else v) for k, v in r.items()}
            for r in published.to_dict("records")
        ]
        assert len([r for r in rows if r["analysis"].startswith("cox")]) == 12
        fitted = _assert_rows_equal_lifelines(con, rows)
        assert fitted >= 10
        # and the rows are what the functions give now, in the same order
        fresh = statistics.logrank_rows(con) + statistics.cox_rows(con)
        assert [(r["analysis"], r["outcome"], r["landmark_day"], r["term"]) for r in fresh] == [
            (r["analysis"], r["outcome"], r["landmark_day"], r["term"]) for r in rows
        ]
    finally:
        con.close()


def _endpoint_db(landmark: list[tuple], counting: list[tuple]):
    import duckdb

    con = duckdb.connect()
    con.execute(
        "CREATE SCHEMA endpoints; CREATE TABLE endpoints.hct_landmark (landmark_day INTEGER, "
        "param VARCHAR, patient_key VARCHAR, hct_in_cr_by_landmark BOOLEAN, "
        "days_from_landmark BIGINT, event INTEGER); "
        "CREATE TABLE endpoints.hct_counting_process (param VARCHAR, patient_key VARCHAR, "
        "start_day BIGINT, stop_day BIGINT, event INTEGER, hct INTEGER)"
    )
    con.executemany("INSERT INTO endpoints.hct_landmark VALUES (?, ?, ?, ?, ?, ?)", landmark)
    con.executemany(
        "INSERT INTO endpoints.hct_counting_process VALUES (?, ?, ?, ?, ?, ?)", counting
    )
    con.execute(
        "CREATE VIEW endpoints.hct_landmark_summary AS "
        "SELECT DISTINCT landmark_day FROM endpoints.hct_landmark"
    )
    return con


def test_cox_rows_keep_a_row_with_a_note_for_every_model_not_fitted():
    rng = np.random.default_rng(3)
    landmark, counting = [], []
    for i in range(80):
        hct = i % 4 == 0
        days, event = int(rng.integers(1, 40)), int(rng.random() < 0.6)
        # OS: every event among no-HCT patients (separation: the HR is 0, no finite estimate)
        landmark.append((60, "OS", f"p{i}", hct, days, 0 if hct else event))
        landmark.append((60, "EFS", f"p{i}", hct, days, event))  # fitted
        landmark.append((60, "RFS", f"p{i}", hct, days, 0))  # no event
        start = int(rng.integers(20, 40))
        stop = start + int(rng.integers(1, 60))
        if hct and stop - start > 1:  # transplanted in CR during follow-up: two rows
            switch = start + (stop - start) // 2
            counting += [
                ("OS", f"p{i}", start, switch, 0, 0),
                ("OS", f"p{i}", switch, stop, event, 1),
            ]
        else:
            counting.append(("OS", f"p{i}", start, stop, event, 0))
        counting.append(("EFS", f"p{i}", start, stop, event, 0))  # nobody transplanted
    con = _endpoint_db(landmark, counting)
    rows = statistics.cox_rows(con)
    keys = [(r["analysis"], r["outcome"], r["landmark_day"]) for r in rows]
    assert keys == [
        ("cox_landmark", "OS", 60),
        ("cox_landmark", "EFS", 60),
        ("cox_landmark", "RFS", 60),
        ("cox_time_dependent", "OS", None),
        ("cox_time_dependent", "EFS", None),
        ("cox_time_dependent", "RFS", None),
    ]
    notes = [r["note"] for r in rows]
    assert notes == [
        "not fitted: ConvergenceError",
        None,
        "no event",
        None,
        "no patient transplanted in CR",
        "no patient transplanted in CR",  # RFS has no rows at all
    ]
    assert rows[0]["estimate"] is None and rows[0]["n"] == 80 and rows[0]["events"] > 0
    assert rows[3]["n"] == 80  # patients, not rows
    assert _assert_rows_equal_lifelines(con, rows) == 2

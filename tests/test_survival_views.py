"""Survival views against lifelines (within 1e-9) and against hand-worked values.

The views read `curated.patients` and `curated.time_to_event`; the tests build those tables
from generated patients (a 65-patient and a 3,000-patient synthetic cohort written here, with
ties) and run the endpoint models on them. lifelines is the independent reference: KM,
medians (its rule on its own survival rounded to 12 decimals, see km_decimals), survival at
fixed times, Aalen-Johansen (on tie-free data: lifelines jitters ties), reverse KM, and
CoxTimeVaryingFitter accepting the counting-process rows.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from lifelines import AalenJohansenFitter, CoxTimeVaryingFitter, KaplanMeierFitter
from lifelines.utils import qth_survival_time

from blinaetl.resources import sql_dir
from blinaetl.warehouse import models

ENDPOINTS = sql_dir() / "endpoints"
SURVIVAL_MODELS = (
    "10_time_to_event.sql",
    "11_hct_landmark_status.sql",
    "11_hct_landmark.sql",
    "12_hct_landmark_summary.sql",
    "20_km_input.sql",
    "21_km.sql",
    "22_km_summary.sql",
    "23_km_at_risk.sql",
    "24_cumulative_incidence.sql",
    "25_follow_up.sql",
    "51_hct_counting_process.sql",
)

PATIENT_COLUMNS = {
    "patient_key": "VARCHAR",
    "responder": "BOOLEAN",
    "response_day": "INTEGER",
    "os_days": "BIGINT",
    "relapsed": "BOOLEAN",
    "relapse_day": "BIGINT",
    "hct_in_cr": "BOOLEAN",
    "hct_day": "BIGINT",
    "bm_blasts_gt50": "BOOLEAN",
    "prior_em": "BOOLEAN",
    "active_em_at_start": "BOOLEAN",
    "cd19_baseline": "VARCHAR",
    "rfs_days": "BIGINT",
    "rfs_event": "INTEGER",
    "em_at_failure": "BOOLEAN",
    "cd19_at_failure": "VARCHAR",
}


def cohort(n: int, seed: int) -> pd.DataFrame:
    """Patients with response, relapse, HCT, death and follow-up days (ties on purpose)."""
    rng = np.random.default_rng(seed)
    responder = rng.random(n) < 0.5
    response_day = np.where(responder, rng.integers(14, 85, n), -1)
    death = rng.integers(5, 900, n).astype(float)
    death[rng.random(n) < 0.35] = np.inf
    last_contact = rng.integers(30, 1000, n)
    os_days = np.minimum(death, last_contact).astype(int)
    died = death <= last_contact
    # relapse after response for some responders, before the end of follow-up
    relapse = response_day + rng.integers(1, 400, n)
    relapsed = responder & (rng.random(n) < 0.6) & (relapse < os_days)
    relapse_day = np.where(relapsed, relapse, -1)
    # deaths on the response day and relapse on the death day are planted, as ties
    hct = response_day + rng.integers(0, 200, n)
    has_hct = responder & (rng.random(n) < 0.45) & (hct < os_days + 20)
    hct_in_cr = has_hct & (hct > response_day) & (~relapsed | (hct < relapse_day))
    rows = []
    for i in range(n):
        r = bool(responder[i])
        rfs_end = relapse_day[i] if relapsed[i] else os_days[i]
        rows.append(
            {
                "patient_key": f"p{i:05d}",
                "responder": r,
                "response_day": int(response_day[i]) if r else None,
                "os_days": int(os_days[i]),
                "os_event": int(died[i]),
                "relapsed": bool(relapsed[i]) if r else None,
                "relapse_day": int(relapse_day[i]) if relapsed[i] else None,
                "hct_in_cr": bool(hct_in_cr[i]) if r else None,
                "hct_day": int(hct[i]) if has_hct[i] else None,
                "bm_blasts_gt50": [True, False, None][i % 3],
                "prior_em": bool(i % 2),
                "active_em_at_start": bool(i % 5 == 0),
                "cd19_baseline": ["dim", "moderate", "strong", None][i % 4],
                "rfs_days": max(int(rfs_end - response_day[i]), 0) if r else None,
                "rfs_event": int(bool(relapsed[i]) or bool(died[i])) if r else None,
                "em_at_failure": bool(i % 3 == 0) if relapsed[i] else None,
                "cd19_at_failure": ["negative", "dim", None, "strong"][i % 4]
                if relapsed[i]
                else None,
                "efs_days": 0 if not r else int(rfs_end),
                "efs_event": 1 if not r else int(bool(relapsed[i]) or bool(died[i])),
            }
        )
    return pd.DataFrame(rows)


def survival_db(patients: pd.DataFrame, definitions: dict | None = None):
    con = duckdb.connect()
    models.install_definitions(con, models.load_definitions(overrides=definitions))
    cols = ", ".join(f"{c} {t}" for c, t in PATIENT_COLUMNS.items())
    con.execute(f"CREATE TABLE curated.patients ({cols})")
    frame = patients[list(PATIENT_COLUMNS)]  # noqa: F841 (read by DuckDB by name)
    if len(patients):
        con.execute("INSERT INTO curated.patients SELECT * FROM frame")
    tte = []
    for p in patients.itertuples():
        tte.append(("OS", p.patient_key, 0, p.os_days, 1 - p.os_event))
        tte.append(("EFS", p.patient_key, 0, p.efs_days, 1 - p.efs_event))
        if p.responder:
            tte.append(("RFS", p.patient_key, p.response_day, p.rfs_days, 1 - p.rfs_event))
    con.execute(
        "CREATE TABLE curated.time_to_event (param VARCHAR, patient_key VARCHAR, "
        "start_day BIGINT, aval_days BIGINT, cnsr INTEGER, event_desc VARCHAR)"
    )
    if tte:
        con.executemany("INSERT INTO curated.time_to_event VALUES (?, ?, ?, ?, ?, 'x')", tte)
    con.execute("CREATE SCHEMA endpoints")
    for name in SURVIVAL_MODELS:
        con.execute((ENDPOINTS / name).read_text())
    return con


@pytest.fixture(scope="module", params=[(65, 2017), (3000, 7)], ids=["n65", "n3000"])
def db(request):
    n, seed = request.param
    patients = cohort(n, seed)
    return patients, survival_db(patients)


def frame(con, sql: str, *params) -> pd.DataFrame:
    return con.execute(sql, list(params)).df()


def km_input_groups(con):
    rows = frame(
        con,
        "SELECT param, stratum_variable, stratum_value, time_days, event FROM endpoints.km_input",
    )
    return rows.groupby(["param", "stratum_variable", "stratum_value"])


def lifelines_median(series: pd.Series) -> float | None:
    t = qth_survival_time(0.5, series.round(12))
    return None if math.isinf(t) else float(t)


def test_every_km_row_equals_lifelines(db):
    _, con = db
    km = frame(con, "SELECT * FROM endpoints.km")
    checked = 0
    for (param, var, val), g in km_input_groups(con):
        kmf = KaplanMeierFitter().fit(g["time_days"], g["event"])
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_
        mine = km[(km.param == param) & (km.stratum_variable == var) & (km.stratum_value == val)]
        assert len(mine) == g["time_days"].nunique()
        for r in mine.itertuples():
            assert r.survival == pytest.approx(sf.loc[r.time_days], abs=1e-9)
            table = kmf.event_table.loc[r.time_days]
            assert (r.n_risk, r.n_event, r.n_censor) == (
                table["at_risk"],
                table["observed"],
                table["censored"],
            )
            if r.survival > 0:  # lifelines fills the bounds with 1.0 once S = 0 (log 0)
                assert r.ci_lower == pytest.approx(ci.loc[r.time_days].iloc[0], abs=1e-9)
                assert r.ci_upper == pytest.approx(ci.loc[r.time_days].iloc[1], abs=1e-9)
            checked += 1
    assert checked > 100


def test_km_summary_equals_lifelines(db):
    _, con = db
    summary = frame(con, "SELECT * FROM endpoints.km_summary").set_index(
        ["param", "stratum_variable", "stratum_value"]
    )
    groups = km_input_groups(con)
    assert len(summary) == len(groups)
    for key, g in groups:
        row = summary.loc[key]
        kmf = KaplanMeierFitter().fit(g["time_days"], g["event"])
        assert row["n"] == len(g) and row["events"] == g["event"].sum()
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_.copy()
        ci[sf.values == 0] = 0.0  # lifelines' 1.0 fill after S = 0 is log(0), not a bound
        for col, ref in (
            ("median_days", lifelines_median(sf)),
            ("median_ci_lower_days", lifelines_median(ci.iloc[:, 0])),
            ("median_ci_upper_days", lifelines_median(ci.iloc[:, 1])),
        ):
            got = None if pd.isna(row[col]) else float(row[col])
            assert got == ref, (key, col)
        for months in (6, 12, 24):
            t = months * 30.4375
            got = row[f"surv_{months}m"]
            if t > g["time_days"].max():
                assert pd.isna(got)
                continue
            assert got == pytest.approx(kmf.survival_function_at_times(t).iloc[0], abs=1e-9)
            last = ci.index[ci.index <= t].max()
            assert row[f"surv_{months}m_ci_lower"] == pytest.approx(ci.loc[last].iloc[0], abs=1e-9)
            assert row[f"surv_{months}m_ci_upper"] == pytest.approx(ci.loc[last].iloc[1], abs=1e-9)


def test_exact_half_is_a_median_where_the_log_sum_is_not():
    # 4 patients, deaths on days 1 and 2: S(2) = 3/4 x 2/3 = 1/2 exactly, so the median is day 2
    patients = pd.DataFrame(
        [
            {c: None for c in PATIENT_COLUMNS}
            | {"patient_key": f"h{i}", "responder": False, "os_days": d, "os_event": e}
            | {"efs_days": 0, "efs_event": 1}
            for i, (d, e) in enumerate([(1, 1), (2, 1), (3, 0), (4, 0)])
        ]
    )
    con = survival_db(patients)
    row = con.execute(
        "SELECT median_days FROM endpoints.km_summary WHERE param = 'OS' "
        "AND stratum_variable = 'overall'"
    ).fetchone()
    assert row == (2,)
    s = con.execute(
        "SELECT survival FROM endpoints.km WHERE param = 'OS' AND stratum_variable = 'overall' "
        "AND time_days = 2"
    ).fetchone()[0]
    assert s == 0.5 and Fraction(3, 4) * Fraction(2, 3) == Fraction(1, 2)


def test_km_at_risk_equals_counts_of_the_input(db):
    _, con = db
    risk = frame(con, "SELECT * FROM endpoints.km_at_risk")
    for (param, var, val), g in km_input_groups(con):
        mine = risk[
            (risk.param == param) & (risk.stratum_variable == var) & (risk.stratum_value == val)
        ]
        assert list(mine.time_days) == list(range(0, int(g.time_days.max()) + 1, 90))
        kmf = KaplanMeierFitter().fit(g["time_days"], g["event"])
        et = kmf.event_table
        for r in mine.itertuples():
            # lifelines' event table: at risk at t = removed at or after t
            assert r.n_at_risk == et.loc[et.index >= r.time_days, "removed"].sum()
            assert r.events_before == et.loc[et.index < r.time_days, "observed"].sum()
            assert r.censored_before == et.loc[et.index < r.time_days, "censored"].sum()
            assert r.n_at_risk + r.events_before + r.censored_before == len(g)


def test_follow_up_equals_lifelines_reverse_km(db):
    patients, con = db
    row = frame(con, "SELECT * FROM endpoints.follow_up").iloc[0]
    kmf = KaplanMeierFitter().fit(patients["os_days"], 1 - patients["os_event"])
    assert row["median_follow_up_days"] == lifelines_median(kmf.survival_function_.iloc[:, 0])
    assert row["alive_censored"] == (1 - patients["os_event"]).sum()
    assert row["n"] == len(patients)


def _tie_free(patients: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same responders with distinct RFS times (a random permutation of 1..n)."""
    p = patients.copy()
    resp = p["responder"].to_numpy(dtype=bool)
    rng = np.random.default_rng(seed)
    p.loc[resp, "rfs_days"] = rng.permutation(np.arange(1, resp.sum() + 1))
    # keep the relapse day consistent with the new RFS time
    p.loc[resp & p["relapsed"].fillna(False).to_numpy(bool), "relapse_day"] = (
        p["response_day"] + p["rfs_days"]
    )
    return p


# lifelines' variance loops over every time in Python (quadratic): 1,000 patients, not 3,000
@pytest.mark.parametrize(("n", "seed"), [(65, 2017), (1000, 7)])
def test_cumulative_incidence_equals_lifelines_on_tie_free_data(n, seed):
    patients = _tie_free(cohort(n, seed), seed)
    con = survival_db(patients)
    ci = frame(con, "SELECT * FROM endpoints.cumulative_incidence")
    resp = patients[patients["responder"]]
    relapse = resp["relapsed"].astype(bool)
    causes = {
        "relapse": np.where(relapse, 1, np.where(resp["rfs_event"] == 1, 2, 0)),
        "em_relapse": np.where(
            relapse & resp["em_at_failure"].fillna(False).astype(bool),
            1,
            np.where(resp["rfs_event"] == 1, 2, 0),
        ),
        "cd19_negative_relapse": np.where(
            relapse & (resp["cd19_at_failure"] == "negative"),
            1,
            np.where(resp["rfs_event"] == 1, 2, 0),
        ),
    }
    compared = 0
    for endpoint, cause in causes.items():
        ajf = AalenJohansenFitter(calculate_variance=True).fit(
            resp["rfs_days"], cause, event_of_interest=1
        )
        ref = ajf.cumulative_density_.iloc[:, 0]
        var = ajf.variance_
        bounds = ajf.confidence_interval_
        mine = ci[(ci.endpoint == endpoint) & (ci.stratum_variable == "overall")]
        mine = mine.set_index("time_days")
        assert len(mine) == resp["rfs_days"].nunique()
        for t, r in mine.iterrows():
            assert r["cumulative_incidence"] == pytest.approx(ref.loc[t], abs=1e-9)
            assert r["variance"] == pytest.approx(var.loc[t], abs=1e-9)
            if 0 < r["cumulative_incidence"] < 1:
                lo, hi = sorted(bounds.loc[t])
                assert r["ci_lower"] == pytest.approx(lo, abs=1e-9)
                assert r["ci_upper"] == pytest.approx(hi, abs=1e-9)
            compared += 1
    assert compared == 3 * resp["rfs_days"].nunique()
    # each stratum of prior_em is its own Aalen-Johansen
    for value, part in resp.groupby("prior_em"):
        rel = part["relapsed"].astype(bool)
        cause = np.where(rel, 1, np.where(part["rfs_event"] == 1, 2, 0))
        ajf = AalenJohansenFitter(calculate_variance=True).fit(
            part["rfs_days"], cause, event_of_interest=1
        )
        mine = ci[
            (ci.endpoint == "relapse")
            & (ci.stratum_variable == "prior_em")
            & (ci.stratum_value == str(value).lower())
        ].set_index("time_days")
        assert len(mine) == part["rfs_days"].nunique()
        ref = ajf.cumulative_density_.iloc[:, 0]
        for t, r in mine.iterrows():
            assert r["cumulative_incidence"] == pytest.approx(ref.loc[t], abs=1e-9)
            assert r["variance"] == pytest.approx(ajf.variance_.loc[t], abs=1e-9)


def test_cumulative_incidence_with_ties_hand_worked():
    # 5 responders; day 10: one relapse and one death in remission (tied), day 20: censored,
    # day 30: relapse, day 40: censored.
    # day 10: n=5, S(10-)=1, F = 1/5 = 0.2; S(10) = 3/5
    # day 30: n=2, F = 0.2 + 3/5 x 1/2 = 0.5
    rows = [(10, "relapse"), (10, "death"), (20, None), (30, "relapse"), (40, None)]
    patients = pd.DataFrame(
        [
            {c: None for c in PATIENT_COLUMNS}
            | {
                "patient_key": f"t{i}",
                "responder": True,
                "response_day": 30,
                "os_days": 30 + d + (0 if f == "death" else 5),
                "os_event": int(f == "death"),
                "relapsed": f == "relapse",
                "relapse_day": 30 + d if f == "relapse" else None,
                "rfs_days": d,
                "rfs_event": int(f is not None),
                "em_at_failure": True if f == "relapse" else None,
                "efs_days": 30 + d,
                "efs_event": int(f is not None),
            }
            for i, (d, f) in enumerate(rows)
        ]
    )
    con = survival_db(patients)
    got = con.execute(
        "SELECT time_days, n_risk, n_event, n_competing, cumulative_incidence "
        "FROM endpoints.cumulative_incidence WHERE endpoint = 'relapse' "
        "AND stratum_variable = 'overall' ORDER BY time_days"
    ).fetchall()
    assert [g[:4] for g in got] == [(10, 5, 1, 1), (20, 3, 0, 0), (30, 2, 1, 0), (40, 1, 0, 0)]
    assert [g[4] for g in got] == pytest.approx([0.2, 0.2, 0.5, 0.5], abs=1e-12)


def test_counting_process_is_accepted_by_cox_time_varying_fitter(db):
    patients, con = db
    cp = frame(con, "SELECT * FROM endpoints.hct_counting_process")
    assert (cp.stop_day > cp.start_day).all(), "no zero-length interval"
    for param in ("OS", "EFS", "RFS"):
        part = cp[cp.param == param]
        ctv = CoxTimeVaryingFitter().fit(
            part[["patient_key", "start_day", "stop_day", "event", "hct"]],
            id_col="patient_key",
            start_col="start_day",
            stop_col="stop_day",
            event_col="event",
        )
        assert ctv.summary.shape[0] == 1 and np.isfinite(ctv.summary["coef"].iloc[0])
    # rows rebuilt by hand from the patients for OS
    resp = patients[patients["responder"]]
    expected = []
    for p in resp.itertuples():
        if p.os_days <= p.response_day:
            continue
        h = p.hct_day if p.hct_in_cr else None
        if h is not None and p.response_day < h < p.os_days:
            expected += [(p.patient_key, p.response_day, h, 0, 0)]
            expected += [(p.patient_key, h, p.os_days, p.os_event, 1)]
        else:
            expected += [(p.patient_key, p.response_day, p.os_days, p.os_event, 0)]
    got = cp[cp.param == "OS"][["patient_key", "start_day", "stop_day", "event", "hct"]]
    assert sorted(map(tuple, got.itertuples(index=False))) == sorted(expected)


def test_landmark_set_rebuilt_by_hand(db):
    patients, con = db
    lm = frame(con, "SELECT * FROM endpoints.hct_landmark WHERE param = 'OS'")
    summary = frame(con, "SELECT * FROM endpoints.hct_landmark_summary").set_index("landmark_day")
    assert sorted(summary.index) == [60, 100, 180]
    for day in (60, 100, 180):
        expected = {}
        resp = patients[patients["responder"]]
        for p in resp.itertuples():
            relapse_free = p.relapse_day is None or pd.isna(p.relapse_day) or p.relapse_day > day
            if p.response_day <= day and p.os_days > day and relapse_free:
                hct = bool(p.hct_in_cr) and p.hct_day is not None and p.hct_day <= day
                expected[p.patient_key] = (hct, p.os_days - day, p.os_event)
        mine = lm[lm.landmark_day == day]
        got = {
            r.patient_key: (bool(r.hct_in_cr_by_landmark), r.days_from_landmark, r.event)
            for r in mine.itertuples()
        }
        assert got == expected
        s = summary.loc[day]
        assert s["landmark_set"] == len(expected)
        hct_cr = resp[resp["hct_in_cr"].astype(bool)]
        assert s["hct_in_cr"] == len(hct_cr)
        assert s["hct_in_cr_after_landmark"] == (hct_cr["hct_day"] > day).sum()
        assert (
            s["landmark_set"]
            + s["excluded_response_after"]
            + s["excluded_dead_or_censored"]
            + s["excluded_relapsed"]
            == s["responders"]
        )


# --- hand-worked cases through the whole chain from curated.* (tests/survival_chain/*.yaml, in
# --- the given/expect format; the model files' own cases in sql/endpoints/ give each model's
# --- direct inputs and run in tests/test_sql_models.py)

CHAIN = Path(__file__).parent / "survival_chain"


def _yaml_cases():
    import yaml

    for name in SURVIVAL_MODELS:
        spec = CHAIN / name.replace(".sql", ".yaml")
        if spec.exists():
            for case in yaml.safe_load(spec.read_text())["tests"]:
                yield pytest.param(name, case, id=f"{name[:-4]}::{case['name']}")


def _close(a, b) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) and b is None
    if isinstance(b, float) or isinstance(a, float):
        return abs(float(a) - float(b)) <= 1e-9
    return str(a).lower() == str(b).lower()


@pytest.mark.parametrize(("model", "case"), list(_yaml_cases()))
def test_given_expect(model, case):
    given = case["given"]
    empty = pd.DataFrame({c: [] for c in [*PATIENT_COLUMNS, "os_event", "efs_days", "efs_event"]})
    con = survival_db(empty, case.get("definitions"))
    for table, rows in given.items():
        for row in rows:
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            con.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))
    view = "endpoints." + model[3:-4]
    expect = case["expect"]
    cols = expect.get("columns") or list(expect["rows"][0])
    got = [tuple(r) for r in con.execute(f"SELECT {', '.join(cols)} FROM {view}").fetchall()]
    want = [tuple(r.get(c) for c in cols) for r in expect["rows"]]
    unmatched = list(got)
    for w in want:
        hit = next((g for g in unmatched if all(map(_close, g, w))), None)
        assert hit is not None, f"expected row {w} not in {got}"
        unmatched.remove(hit)
    assert not unmatched, f"unexpected rows {unmatched}"


# --- on the published demo database (the pipeline's own curated tables) ----------------------


def _aalen_johansen(times, causes):
    """Tie-exact Aalen-Johansen written independently of the view: F += S(t-) d1 / n."""
    out, surv, cif = {}, 1.0, 0.0
    for t in sorted(set(times)):
        n = sum(1 for x in times if x >= t)
        d1 = sum(1 for x, c in zip(times, causes, strict=True) if x == t and c == 1)
        d = sum(1 for x, c in zip(times, causes, strict=True) if x == t and c != 0)
        cif += surv * d1 / n
        surv *= 1 - d / n
        out[t] = cif
    return out


def test_published_demo_views_equal_lifelines(demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        km = frame(con, "SELECT * FROM endpoints.km")
        summary = frame(con, "SELECT * FROM endpoints.km_summary").set_index(
            ["param", "stratum_variable", "stratum_value"]
        )
        worst = 0.0
        for key, g in km_input_groups(con):
            kmf = KaplanMeierFitter().fit(g["time_days"], g["event"])
            sf = kmf.survival_function_.iloc[:, 0]
            mine = km[
                (km.param == key[0])
                & (km.stratum_variable == key[1])
                & (km.stratum_value == key[2])
            ]
            diff = (mine.set_index("time_days")["survival"] - sf.loc[mine.time_days].values).abs()
            worst = max(worst, float(diff.max()))
            median = summary.loc[key, "median_days"]
            assert (None if pd.isna(median) else float(median)) == lifelines_median(sf), key
        assert worst <= 1e-9
        ci = frame(con, "SELECT * FROM endpoints.cumulative_incidence")
        patients = frame(
            con,
            "SELECT rfs_days, rfs_event, relapsed, relapse_day, response_day FROM curated.patients "
            "WHERE responder AND rfs_days IS NOT NULL",
        )
        cause = [
            0 if e == 0 else 1 if r and rd == sd + t else 2
            for t, e, r, rd, sd in patients.itertuples(index=False)
        ]
        ref = _aalen_johansen(list(patients["rfs_days"]), cause)
        mine = ci[(ci.endpoint == "relapse") & (ci.stratum_variable == "overall")]
        mine = mine.set_index("time_days")["cumulative_incidence"]
        assert len(mine) == len(ref)
        for t, f in ref.items():
            assert mine.loc[t] == pytest.approx(f, abs=1e-12)
    finally:
        con.close()

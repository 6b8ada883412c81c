"""Endpoint SQL: Kaplan-Meier against lifelines, admiral's time-to-event rule, response rules."""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import numpy as np
import pytest
from lifelines import KaplanMeierFitter

from blinaetl.resources import sql_dir
from blinaetl.warehouse import models
from tests.sqlfixtures import insert_rows, one_patient, restricted_db

ENDPOINTS = sql_dir() / "endpoints"
HARMONIZED = sql_dir() / "harmonized"
CURATED = sql_dir() / "curated"
DAY0 = dt.date(2015, 3, 1)


def _km_sql(times: np.ndarray, events: np.ndarray) -> list[tuple]:
    con = duckdb.connect()
    models.install_definitions(con, models.load_definitions())
    con.execute("CREATE SCHEMA endpoints")
    con.execute(
        "CREATE TABLE endpoints.km_input (param VARCHAR, stratum_variable VARCHAR, "
        "stratum_value VARCHAR, origin_day INTEGER, patient_key VARCHAR, time_days INTEGER, "
        "event INTEGER)"
    )
    con.executemany(
        "INSERT INTO endpoints.km_input VALUES ('OS', 'overall', 'all', 0, ?, ?, ?)",
        [(f"p{i}", int(t), int(e)) for i, (t, e) in enumerate(zip(times, events, strict=True))],
    )
    con.execute((ENDPOINTS / "21_km.sql").read_text())
    return con.execute(
        "SELECT time_days, n_risk, n_event, n_censor, survival, std_err, ci_lower, ci_upper FROM endpoints.km ORDER BY time_days"
    ).fetchall()


def _cohorts():
    rng = np.random.default_rng(11)
    yield (
        "small with ties",
        np.array([5, 5, 8, 8, 8, 12, 15, 15, 20, 30]),
        np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0]),
    )
    yield (
        "censoring at event times",
        np.array([3, 3, 3, 7, 7, 9, 9, 9, 9]),
        np.array([1, 0, 0, 1, 0, 1, 1, 0, 0]),
    )
    yield "all events, last drops to zero", np.array([1, 2, 2, 4, 6]), np.array([1, 1, 1, 1, 1])
    for k in range(3):
        n = int(rng.integers(30, 300))
        times = rng.integers(0, 400, n)
        events = (rng.random(n) < 0.6).astype(int)
        yield f"random {k} (n={n})", times, events


@pytest.mark.parametrize(
    ("name", "times", "events"), list(_cohorts()), ids=[c[0] for c in _cohorts()]
)
def test_km_equals_lifelines(name, times, events):
    rows = _km_sql(times, events)
    kmf = KaplanMeierFitter().fit(times, events)
    sf = kmf.survival_function_["KM_estimate"]
    ci = kmf.confidence_interval_
    for t, n_risk, n_event, n_censor, surv, _se, lo, hi in rows:
        assert surv == pytest.approx(sf.loc[t], abs=1e-9), t
        table = kmf.event_table.loc[t]
        assert (n_risk, n_event, n_censor) == (
            table["at_risk"],
            table["observed"],
            table["censored"],
        )
        lo_ref, hi_ref = ci.loc[t].iloc[0], ci.loc[t].iloc[1]
        if not math.isnan(lo_ref):
            assert lo == pytest.approx(lo_ref, abs=1e-9), t
            assert hi == pytest.approx(hi_ref, abs=1e-9), t
    # Greenwood standard error recomputed by its formula
    d = {r[0]: r for r in rows}
    acc = 0.0
    for t in sorted(d):
        _, n, e, _, surv, se, _, _ = d[t]
        if e < n:
            acc += e / (n * (n - e))
        if surv > 0:
            assert se == pytest.approx(surv * math.sqrt(acc), abs=1e-12)


def test_km_is_independent_of_input_order():
    times, events = np.array([4, 2, 9, 2, 7, 4]), np.array([1, 0, 1, 1, 0, 1])
    order = np.array([5, 3, 1, 0, 4, 2])
    assert _km_sql(times, events) == _km_sql(times[order], events[order])


# --- time to event, from fixture patients -----------------------------------------------


def _curated_db(
    events: dict[str, list[tuple[str, int]]], defs: dict | None = None
) -> duckdb.DuckDBPyConnection:
    """curated.patient_events from (source, day) lists per patient, then the tte models."""
    con = restricted_db(definitions=defs)
    con.execute(
        "CREATE TABLE curated.patient_events (patient_key VARCHAR, source VARCHAR, study_day INTEGER)"
    )
    insert_rows(
        con,
        "curated.patient_events",
        [
            {"patient_key": k, "source": s, "study_day": d}
            for k, evs in events.items()
            for s, d in evs
        ],
    )
    con.execute((CURATED / "31_tte_sources.sql").read_text())
    con.execute((CURATED / "32_time_to_event.sql").read_text())
    return con


def _tte(con, param: str) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT patient_key, start_day, aval_days, cnsr, event_desc FROM curated.time_to_event WHERE param = ? ORDER BY 1",
        [param],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_time_to_event_first_event_else_last_censoring():
    con = _curated_db(
        {
            "dead": [("study_start", 0), ("death", 200), ("last_contact", 200)],
            "alive": [("study_start", 0), ("last_contact", 350)],
            "responder_relapsed": [
                ("study_start", 0),
                ("response", 30),
                ("relapse", 150),
                ("death", 300),
                ("last_contact", 300),
            ],
            "nonresponder": [
                ("study_start", 0),
                ("nonresponse", 0),
                ("death", 90),
                ("last_contact", 90),
            ],
        }
    )
    os_, efs, rfs = _tte(con, "OS"), _tte(con, "EFS"), _tte(con, "RFS")
    assert os_["dead"] == (0, 200, 0, "Death")
    assert os_["alive"] == (0, 350, 1, "Censored at last known alive")
    assert efs["nonresponder"][:3] == (0, 0, 0), "refractory: EFS event at day 0 by default"
    assert efs["responder_relapsed"][:3] == (0, 150, 0)
    assert rfs["responder_relapsed"] == (30, 120, 0, "Relapse")
    assert set(rfs) == {"responder_relapsed"}, "RFS only for responders"


def test_time_to_event_ties_follow_source_order():
    con = _curated_db(
        {
            "p": [
                ("study_start", 0),
                ("response", 20),
                ("relapse", 100),
                ("death", 100),
                ("last_contact", 100),
            ]
        }
    )
    assert _tte(con, "EFS")["p"][3] == "Relapse after response"


def test_aval_never_negative():
    con = _curated_db(
        {"p": [("study_start", 0), ("response", 40), ("death", 30), ("last_contact", 30)]}
    )
    assert _tte(con, "RFS")["p"][:2] == (40, 0)


# --- response category of one assessment (docs/derivations.md) ----------------------------


def _category(blasts, anc, plt, em_days: list[int] | None = None, day: int = 28) -> str | None:
    con = restricted_db(
        {
            **one_patient(DAY0.isoformat()),
            "assessments": [
                {
                    "mrn": "M0",
                    "patient_key": "k0",
                    "assessment_date": (DAY0 + dt.timedelta(days=day)).isoformat(),
                    "marrow_blasts_pct": blasts,
                    "anc_10e9l": anc,
                    "platelets_10e9l": plt,
                    "_source_file": "a",
                    "_source_row": 2,
                }
            ],
        }
    )
    for i, d in enumerate(em_days or []):
        insert_rows(
            con,
            "harmonized.em_mentions",
            [
                {
                    "_source_file": "i",
                    "_source_row": i + 2,
                    "patient_key": "k0",
                    "site": "S",
                    "report_date": (DAY0 + dt.timedelta(days=d)).isoformat(),
                    "modality": "CT",
                    "sentence_no": 1,
                    "sentence": "x",
                    "term": "testis",
                    "site_group": "testis",
                    "icdo3": "C62.9",
                    "laterality": None,
                    "assertion": "present",
                }
            ],
        )
    for name in (
        "00_patient_timeline.sql",
        "05_assessments.sql",
        "20_cns_status.sql",
        "21_em_findings.sql",
        "22_em_start_sites.sql",
        "22_em_patient_baseline.sql",
        "29_em_clearing_evidence.sql",
        "30_assessment_response.sql",
    ):
        con.execute((HARMONIZED / name).read_text())
    row = con.execute("SELECT category FROM harmonized.assessment_response").fetchone()
    return row[0] if row else None


@pytest.mark.parametrize(
    ("blasts", "anc", "plt", "expected"),
    [
        (5.0, 1.01, 100.1, "CR"),  # blasts at the 5% limit still count as remission
        (5.1, 3.0, 300.0, "refractory"),
        (3.0, 1.0, 300.0, "CRh"),  # ANC exactly 1.0 is not above the CR threshold
        (3.0, 3.0, 100.0, "CRh"),  # platelets exactly 100 is not above
        (3.0, 0.51, 50.1, "CRh"),
        (
            3.0,
            0.5,
            50.1,
            "hypoplastic",
        ),  # ANC 0.5 fails CRh, and neither ANC > 1 nor platelets > 100
        (3.0, 1.2, 20.0, "CRi"),
        (3.0, 0.2, 120.0, "CRi"),
        (3.0, 0.4, 30.0, "hypoplastic"),
        (3.0, None, 150.0, "NE"),
    ],
)
def test_response_category_boundaries(blasts, anc, plt, expected):
    assert _category(blasts, anc, plt) == expected


def test_em_disease_blocks_remission_within_the_lookback():
    assert (
        _category(2.0, 2.0, 200.0, em_days=[5]) == "refractory"
    )  # day 5 within 28 days before day 28
    # EM present on day 0 is active EM at start, outside the lookback: the marrow remission
    # counts as CR only once the EM is shown resolved (issue 16 rule 1)
    assert _category(2.0, 2.0, 200.0, em_days=[0]) == "CR_em_not_reassessed"
    assert _category(2.0, 2.0, 200.0, em_days=[29]) == "CR"  # after the assessment


def test_assessments_outside_the_window_are_not_categorised():
    assert _category(2.0, 2.0, 200.0, day=85) is None
    assert _category(2.0, 2.0, 200.0, day=84) == "CR"
    assert _category(2.0, 2.0, 200.0, day=0) is None

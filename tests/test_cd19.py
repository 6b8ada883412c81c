"""CD19 harmonization in SQL: lexicon, numeric cut-offs per laboratory, precedence, timepoints."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pytest

from blinaetl.resources import sql_dir
from blinaetl.synth.phrases import CD19_PHRASES
from tests.sqlfixtures import insert_rows, restricted_db

CASES = list(
    csv.DictReader((Path(__file__).parent / "data" / "cd19_cases.csv").open(encoding="utf-8"))
)
HARMONIZED = sql_dir() / "harmonized"


def _patients(n: int = 1) -> dict:
    return {
        "patients": [
            {
                "mrn": f"M{i}",
                "site": "S",
                "patient_key": f"k{i}",
                "birth_date": "1970-01-01",
                "diagnosis_date": "2014-01-01",
            }
            for i in range(n)
        ],
        "treatments": [
            {
                "mrn": f"M{i}",
                "patient_key": f"k{i}",
                "treatment": "blinatumomab",
                "cycle": 1,
                "start_date": "2015-03-01",
            }
            for i in range(n)
        ],
    }


def _flow(rows: list[dict]) -> list[dict]:
    out = []
    for i, r in enumerate(rows):
        base = {
            "mrn": "M0",
            "patient_key": "k0",
            "site": "S",
            "patient_site": "S",
            "specimen_id": f"F{i}",
            "collection_date": "2015-02-20",
            "specimen_type": "marrow",
            "_source_id": "labtxt_flow",
            "_source_file": "flow.tsv",
            "_source_row": i + 2,
        }
        out.append({**base, **r})
    return out


def _run(con: duckdb.DuckDBPyConnection, *models: str) -> None:
    for name in ("00_patient_timeline.sql", *models):
        con.execute((HARMONIZED / name).read_text())


def classify(rows: list[dict], cutoffs: list[tuple] | None = None) -> list[tuple]:
    con = restricted_db({**_patients(), "flow_results": _flow(rows)})
    for row in cutoffs or []:
        con.execute("INSERT INTO ref.cd19_lab_cutoffs VALUES (?, ?, ?, ?, ?, ?, 'test')", list(row))
    _run(con, "10_cd19_specimens.sql")
    return con.execute(
        "SELECT cd19_class, partial, rule_id, evidence_conflict, unreadable FROM harmonized.cd19_specimens "
        "ORDER BY _source_row"
    ).fetchall()


def test_descriptor_set_has_at_least_80_phrasings():
    assert len(CASES) >= 80


def test_every_descriptor_phrasing_gets_its_class():
    got = classify([{"cd19_descriptor": c["descriptor"]} for c in CASES])
    wrong = [
        (c["descriptor"], c["expected_class"], g[0], c["expected_partial"], g[1])
        for c, g in zip(CASES, got, strict=True)
        if g[0] != c["expected_class"] or str(g[1]).lower() != c["expected_partial"]
    ]
    assert not wrong, wrong
    assert all(g[2].startswith("LEX_") for g in got)


def test_every_generator_phrase_gets_its_class():
    phrases = [(cls, p) for cls, ps in CD19_PHRASES.items() for p in ps]
    got = classify([{"cd19_descriptor": p} for _, p in phrases])
    assert [g[0] for g in got] == [cls for cls, _ in phrases]


NUMERIC = [
    # pct positive, MFI, reference MFI, expected class, expected partial, rule
    (5.0, 500.0, 20000.0, "negative", True, "NUM_PCT_NEG"),
    (19.9, 9000.0, 20000.0, "negative", True, "NUM_PCT_NEG"),
    (20.0, 2000.0, 20000.0, "dim", True, "NUM_MFI_DIM"),  # 20% is positive (>= cut-off)
    (95.0, 5999.0, 20000.0, "dim", False, "NUM_MFI_DIM"),  # ratio 0.29995
    (95.0, 6000.0, 20000.0, "moderate", False, "NUM_MFI_MODERATE"),  # ratio 0.3 exactly
    (95.0, 15999.0, 20000.0, "moderate", False, "NUM_MFI_MODERATE"),
    (95.0, 16000.0, 20000.0, "strong", False, "NUM_MFI_STRONG"),  # ratio 0.8 exactly
    (79.9, 30000.0, 20000.0, "strong", True, "NUM_MFI_STRONG"),
    (80.0, 30000.0, 20000.0, "strong", False, "NUM_MFI_STRONG"),
]


@pytest.mark.parametrize(("pct", "mfi", "ref", "cls", "partial", "rule"), NUMERIC)
def test_numeric_cut_offs(pct, mfi, ref, cls, partial, rule):
    got = classify(
        [{"cd19_pct_positive": pct, "cd19_mfi": mfi, "ref_mfi": ref, "_source_id": "labnum_flow"}]
    )
    assert got[0][:3] == (cls, partial, rule)


def test_percent_positive_without_mfi_leaves_intensity_to_words():
    got = classify(
        [
            {"cd19_pct_positive": 90.0, "_source_id": "labnum_flow"},
            {"cd19_pct_positive": 90.0, "cd19_descriptor": "CD19 bright"},
        ]
    )
    assert got[0][0] is None
    assert got[1][:3] == ("strong", False, "LEX_STRONG")


def test_per_laboratory_cut_offs_override_the_default():
    rows = [
        {
            "cd19_pct_positive": 15.0,
            "cd19_mfi": 9000.0,
            "ref_mfi": 20000.0,
            "_source_id": "labnum_flow",
        }
    ]
    assert classify(rows)[0][0] == "negative"  # default cut-off 20%
    lab10 = [("labnum_flow", 10, 0.5, 0.9, 80, "numeric_first")]
    assert (
        classify(rows, lab10)[0][0] == "dim"
    )  # this lab counts >= 10% as positive; ratio 0.45 < 0.5


def test_precedence_numeric_first_by_default_and_text_first_when_configured():
    row = [
        {
            "cd19_pct_positive": 95.0,
            "cd19_mfi": 2000.0,
            "ref_mfi": 20000.0,
            "cd19_descriptor": "CD19 bright",
            "_source_id": "labmix",
        }
    ]
    cls, _, rule, conflict, _ = classify(row)[0]
    assert (cls, rule, conflict) == ("dim", "NUM_MFI_DIM", True)
    cls, _, rule, conflict, _ = classify(row, [("labmix", 20, 0.3, 0.8, 80, "text_first")])[0]
    assert (cls, rule, conflict) == ("strong", "LEX_STRONG", True)


def test_unreadable_descriptors_are_flagged_and_listed():
    con = restricted_db(
        {
            **_patients(),
            "flow_results": _flow(
                [
                    {"cd19_descriptor": "CD19 see comment"},
                    {"cd19_descriptor": "CD19 see comment"},
                    {"cd19_descriptor": "CD19 dim"},
                ]
            ),
        }
    )
    _run(con, "10_cd19_specimens.sql", "12_cd19_unreadable.sql")
    flags = con.execute(
        "SELECT unreadable, cd19_class FROM harmonized.cd19_specimens ORDER BY _source_row"
    ).fetchall()
    assert flags == [(True, None), (True, None), (False, "dim")]
    assert con.execute(
        "SELECT descriptor, n_specimens FROM harmonized.cd19_unreadable"
    ).fetchall() == [("CD19 see comment", 2)]


def _baseline(specimens: list[dict], window: int | None = None) -> tuple | None:
    defs = {"cd19_baseline_window_days": window} if window else None
    con = restricted_db({**_patients(), "flow_results": _flow(specimens)}, definitions=defs)
    _run(con, "10_cd19_specimens.sql", "11_cd19_baseline.sql")
    return con.execute(
        "SELECT cd19_baseline, study_day, specimen_type FROM harmonized.cd19_baseline"
    ).fetchone()


def _on(day: int, cls: str, kind: str = "marrow") -> dict:
    import datetime as dt

    date = dt.date(2015, 3, 1) + dt.timedelta(days=day)
    return {
        "collection_date": date.isoformat(),
        "cd19_descriptor": f"CD19 {cls}",
        "specimen_type": kind,
    }


def test_baseline_window_edges():
    assert _baseline([_on(-60, "dim")]) == ("dim", -60, "marrow")  # first day inside
    assert _baseline([_on(-61, "dim")]) is None  # one day outside
    assert _baseline([_on(0, "bright")]) == ("strong", 0, "marrow")  # day 0 counts
    assert _baseline([_on(1, "bright")]) is None  # after start: not baseline
    assert _baseline([_on(-61, "dim")], window=61) == ("dim", -61, "marrow")  # configurable


def test_baseline_prefers_marrow_then_the_closest_day():
    assert _baseline([_on(-2, "bright", "blood"), _on(-20, "dim")]) == ("dim", -20, "marrow")
    assert _baseline([_on(-30, "negative"), _on(-5, "dim")]) == ("dim", -5, "marrow")
    assert _baseline([_on(-3, "bright", "blood"), _on(-9, "dim", "blood")]) == (
        "strong",
        -3,
        "blood",
    )
    assert _baseline([_on(-3, "bright", "tissue")]) is None, "only marrow and blood count"


def test_baseline_is_independent_of_row_order():
    rows = [_on(-2, "bright", "blood"), _on(-20, "dim"), _on(-7, "negative")]
    assert _baseline(rows) == _baseline(list(reversed(rows))) == ("negative", -7, "marrow")


def _at_failure(specimens: list[dict], failure_day: int) -> tuple | None:
    con = restricted_db({**_patients(), "flow_results": _flow(specimens)})
    con.execute(
        "CREATE TABLE harmonized.patient_response (patient_key VARCHAR, failure_day INTEGER, failure_type VARCHAR)"
    )
    insert_rows(
        con,
        "harmonized.patient_response",
        [{"patient_key": "k0", "failure_day": failure_day, "failure_type": "relapse"}],
    )
    _run(con, "10_cd19_specimens.sql", "40_cd19_at_failure.sql")
    return con.execute(
        "SELECT cd19_at_failure, study_day, specimen_type FROM harmonized.cd19_at_failure"
    ).fetchone()


def test_cd19_at_failure_window_and_ties():
    assert _at_failure([_on(99, "dim"), _on(100, "negative")], 100) == ("negative", 100, "marrow")
    assert _at_failure([_on(130, "dim")], 100) == ("dim", 130, "marrow")  # last day of the window
    assert _at_failure([_on(131, "dim")], 100) is None
    same_day = [_on(105, "bright", "tissue"), _on(105, "negative", "marrow")]
    assert _at_failure(same_day, 100) == ("negative", 105, "marrow")  # marrow first on a tie


def test_em_versus_marrow_discordance_flag():
    con = restricted_db(
        {
            **_patients(),
            "flow_results": _flow(
                [_on(100, "negative"), _on(103, "bright", "tissue"), _on(200, "dim", "csf")]
            ),
        }
    )
    _run(con, "10_cd19_specimens.sql", "41_cd19_discordance.sql")
    rows = con.execute(
        "SELECT em_cd19_class, marrow_cd19_class, discordant FROM harmonized.cd19_discordance"
    ).fetchall()
    assert rows == [("strong", "negative", True)]


def test_cd19_model_reads_cutoff_defaults_from_the_table_not_the_sql():
    text = (HARMONIZED / "10_cd19_specimens.sql").read_text()
    assert "0.3" not in text and "0.8" not in text and " 20 " not in text

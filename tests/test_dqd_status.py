"""DQD status of each check (OHDSI Data Quality Dashboard semantics), hand-counted:
`passed` when the share of failing rows is at most the threshold (a clean check included),
`failed` above it, `not_applicable` when the table has no rows, `error` when the check cannot
run. A clean check must never read `not_applicable`."""

from __future__ import annotations

import dataclasses

import polars as pl

from blinaetl.validate.executor import validate_tables
from tests.test_validate import ASSESSMENT, BASE, CONTRACTS, mapped


def _dq(overrides: dict[str, list[dict]], contracts=CONTRACTS) -> pl.DataFrame:
    tables = {t: mapped(t, overrides.get(t, rows)) for t, rows in BASE.items()}
    return validate_tables(tables, contracts).dq_results


def _row(dq: pl.DataFrame, check_id: str) -> dict:
    return dq.filter(pl.col("check_id") == check_id).row(0, named=True)


def test_every_clean_check_on_a_table_with_rows_is_passed():
    dq = _dq({})
    n_checks = sum(len(c.checks) for c in CONTRACTS.values())
    assert dq.height == n_checks
    assert dq["status"].to_list() == ["passed"] * n_checks
    assert set(dq["rows_checked"]) == {1} and set(dq["rows_failed"]) == {0}
    assert set(dq["pct_failed"]) == {0.0}


def test_checks_of_an_empty_table_are_not_applicable_and_the_others_passed():
    dq = _dq({"imaging_reports": []})
    empty = dq.filter(pl.col("table_name") == "imaging_reports")
    assert empty.height == len(CONTRACTS["imaging_reports"].checks) > 0
    assert set(empty["status"]) == {"not_applicable"}
    assert set(empty["rows_checked"]) == {0} and empty["pct_failed"].null_count() == empty.height
    rest = dq.filter(pl.col("table_name") != "imaging_reports")
    assert set(rest["status"]) == {"passed"}


def test_a_failing_error_check_with_threshold_zero_is_failed():
    dq = _dq(
        {
            "assessments": [
                ASSESSMENT,
                {**ASSESSMENT, "assessment_date": "2015-02-02", "marrow_blasts_pct": "150"},
            ]
        }
    )
    row = _row(dq, "ASM_BLASTS_RANGE")
    assert (row["rows_checked"], row["rows_failed"], row["pct_failed"], row["status"]) == (
        2,
        1,
        50.0,
        "failed",
    )
    # the other checks of the same rows stay passed
    others = dq.filter(
        (pl.col("table_name") == "assessments") & (pl.col("check_id") != "ASM_BLASTS_RANGE")
    )
    assert set(others["status"]) == {"passed"}


def _responses(n_rows: int, n_bad: int) -> list[dict]:
    # ASM_RESPONSE_SET (threshold 5%): a reported response outside the allowed set fails it
    rows = []
    for i in range(n_rows):
        day = f"2015-{2 + i // 28:02d}-{1 + i % 28:02d}"
        rows.append(
            {
                **ASSESSMENT,
                "assessment_date": day,
                **({"reported_response": "C R"} if i < n_bad else {}),
            }
        )
    return rows


def test_threshold_below_on_and_above():
    assert _row(_dq({}), "ASM_RESPONSE_SET")["threshold"] == 5.0
    below = _row(_dq({"assessments": _responses(40, 1)}), "ASM_RESPONSE_SET")  # 2.5 %
    on = _row(_dq({"assessments": _responses(20, 1)}), "ASM_RESPONSE_SET")  # 5 % exactly
    above = _row(_dq({"assessments": _responses(20, 2)}), "ASM_RESPONSE_SET")  # 10 %
    assert (below["pct_failed"], below["status"]) == (2.5, "passed")
    assert (on["rows_failed"], on["pct_failed"], on["status"]) == (1, 5.0, "passed")
    assert (above["rows_failed"], above["pct_failed"], above["status"]) == (2, 10.0, "failed")


def test_a_check_that_cannot_run_is_error_and_the_others_still_run():
    contract = CONTRACTS["assessments"]
    broken = dataclasses.replace(contract.checks[0], id="ASM_BROKEN", check="no_such_check_type")
    contracts = {
        **CONTRACTS,
        "assessments": dataclasses.replace(contract, checks=(*contract.checks, broken)),
    }
    dq = _dq({}, contracts)
    assert _row(dq, "ASM_BROKEN")["status"] == "error"
    assert set(dq.filter(pl.col("check_id") != "ASM_BROKEN")["status"]) == {"passed"}

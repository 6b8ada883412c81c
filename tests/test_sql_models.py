"""Every `sql/**/<model>.tests.yaml` test, run by the given/expect harness (tests/sqlharness.py).

Also: the harness itself (it reports differing rows, casts by name, compares floats to 1e-9 and
NULLs, refuses malformed tests) on small models in temporary folders, and the list of models of
sql/harmonized, sql/curated and sql/endpoints that still have no test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from blinaetl.resources import sql_dir
from tests import sqlharness as h

SQL_ROOT = sql_dir()


def _collect() -> list:
    params = []
    for path in h.find_tests_files(SQL_ROOT):
        try:
            tests = h.load_tests_file(path)
        except h.TestsFileError as exc:  # a malformed file is a failing test, not a crash
            params.append(pytest.param(None, exc, id=f"{path.parent.name}/{path.name}"))
            continue
        params.extend(pytest.param(t, None, id=t.id) for t in tests)
    return params


@pytest.mark.parametrize(("test", "error"), _collect())
def test_sql_model(test: h.ModelTest | None, error: Exception | None) -> None:
    if error is not None:
        pytest.fail(str(error), pytrace=False)
    assert test is not None
    failure = None
    try:
        h.run_model_test(test, SQL_ROOT)
    except (h.ModelTestFailure, h.TestsFileError) as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)


def test_every_tests_file_parses_and_belongs_to_a_model() -> None:
    problems = []
    for path in h.find_tests_files(SQL_ROOT):
        try:
            h.load_tests_file(path)
        except h.TestsFileError as exc:
            problems.append(str(exc))
    assert not problems, "\n".join(problems)


def test_every_model_has_a_given_expect_test() -> None:
    """Every model of harmonized, curated and endpoints has a tests file with at least one test."""
    missing = h.models_without_tests(SQL_ROOT)
    assert missing == [], f"SQL model(s) without a given/expect test: {', '.join(missing)}"


def test_coverage_check_names_a_model_without_tests_and_one_with_an_empty_file(
    tmp_path: Path,
) -> None:
    for layer in h.TESTED_LAYERS:
        (tmp_path / layer).mkdir()
    (tmp_path / "harmonized" / "10_a.sql").write_text("CREATE TABLE harmonized.a AS SELECT 1 AS x;")
    (tmp_path / "curated" / "10_b.sql").write_text("CREATE TABLE curated.b AS SELECT 1 AS x;")
    (tmp_path / "curated" / "10_b.tests.yaml").write_text("tests: []\n")
    (tmp_path / "endpoints" / "10_c.sql").write_text("CREATE VIEW endpoints.c AS SELECT 1 AS x;")
    (tmp_path / "endpoints" / "10_c.tests.yaml").write_text(
        "tests:\n  - name: one\n    rule: toy\n    given: {}\n    expect: {rows: [{x: 1}]}\n"
    )
    assert h.models_without_tests(tmp_path) == ["harmonized/10_a.sql", "curated/10_b.sql"]


# --- the harness on small models in a temporary sql folder ----------------------------------

SCORE_SQL = """\
-- a toy model: per patient the number of marrow assessments and the mean blast count
CREATE OR REPLACE TABLE harmonized.toy_scores AS
SELECT
    patient_key,
    count(*) AS n_assessments,
    avg(marrow_blasts_pct) AS mean_blasts,
    max(assessment_date) AS last_date,
    max(marrow_blasts_pct) > def_num('response_marrow_blasts_max_pct') AS above_cutoff
FROM staging.assessments
GROUP BY patient_key;
"""


def _toy(tmp_path: Path, tests_yaml: str, sql: str = SCORE_SQL) -> list[h.ModelTest]:
    folder = tmp_path / "sql" / "harmonized"
    folder.mkdir(parents=True)
    (folder / "50_toy_scores.sql").write_text(sql, encoding="utf-8")
    (folder / "50_toy_scores.tests.yaml").write_text(tests_yaml, encoding="utf-8")
    return h.load_tests_file(folder / "50_toy_scores.tests.yaml")


GIVEN = """\
    given:
      staging.assessments:
        - {patient_key: p1, assessment_date: 2020-01-29, marrow_blasts_pct: 3}
        - {patient_key: p1, assessment_date: "2020-02-05", marrow_blasts_pct: 4}
        - {patient_key: p2, assessment_date: 2020-03-01, marrow_blasts_pct: null}
"""


def test_harness_passes_matching_rows_as_multisets_with_casts_nulls_and_floats(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: ok\n    rule: toy\n"
        + GIVEN
        + """\
    expect:
      rows:
        - {patient_key: p2, n_assessments: 1, mean_blasts: null, last_date: 2020-03-01, above_cutoff: null}
        - {patient_key: p1, n_assessments: 2, mean_blasts: 3.5000000000001, last_date: 2020-02-05, above_cutoff: false}
""",
    )
    h.run_model_test(test, tmp_path / "sql")  # reversed order, a string date, 1e-13 off: passes


def test_harness_reports_the_differing_rows_and_names_the_test(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: wrong_mean\n    rule: toy rule\n"
        + GIVEN
        + """\
    expect:
      columns: [patient_key, mean_blasts]
      rows:
        - {patient_key: p1, mean_blasts: 3.5001}
        - {patient_key: p2, mean_blasts: null}
""",
    )
    with pytest.raises(h.ModelTestFailure) as caught:
        h.run_model_test(test, tmp_path / "sql")
    msg = str(caught.value)
    assert "50_toy_scores.tests.yaml :: wrong_mean" in msg
    assert "rule: toy rule" in msg
    assert "harmonized/50_toy_scores.sql -> harmonized.toy_scores" in msg
    assert "expected but not found (1):\n    {patient_key: 'p1', mean_blasts: 3.5001}" in msg
    assert "found but not expected (1):\n    {patient_key: 'p1', mean_blasts: 3.5}" in msg


def test_harness_multiset_counts_duplicates(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: dup\n    rule: toy\n"
        + GIVEN
        + """\
    expect:
      columns: [n_assessments]
      rows:
        - {n_assessments: 1}
        - {n_assessments: 1}
""",
    )
    with pytest.raises(
        h.ModelTestFailure, match=r"found but not expected \(1\):\n    \{n_assessments: 2\}"
    ):
        h.run_model_test(test, tmp_path / "sql")


def test_harness_ordered_compares_positions(tmp_path):
    sql = SCORE_SQL.replace("GROUP BY patient_key;", "GROUP BY patient_key\nORDER BY patient_key;")
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: order\n    rule: toy\n"
        + GIVEN
        + """\
    expect:
      columns: [patient_key]
      ordered: true
      rows:
        - {patient_key: p2}
        - {patient_key: p1}
""",
        sql,
    )
    with pytest.raises(h.ModelTestFailure, match="rows differ in order or content from row 1"):
        h.run_model_test(test, tmp_path / "sql")


def test_harness_applies_definition_overrides(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: cutoff\n    rule: toy\n    definitions: {response_marrow_blasts_max_pct: 3.5}\n"
        + GIVEN
        + """\
    expect:
      columns: [patient_key, above_cutoff]
      rows:
        - {patient_key: p1, above_cutoff: true}
        - {patient_key: p2, above_cutoff: null}
""",
    )
    h.run_model_test(test, tmp_path / "sql")


def test_harness_empty_expectation_checks_no_rows(tmp_path):
    (test,) = _toy(
        tmp_path, "tests:\n  - name: none\n    rule: toy\n" + GIVEN + "    expect: {rows: []}\n"
    )
    with pytest.raises(h.ModelTestFailure, match="0 rows expected, 2 found"):
        h.run_model_test(test, tmp_path / "sql")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  - name: a\n    rule: r\n    expected: {rows: []}\n",
            r"unknown key\(s\) \['expected'\]",
        ),
        ("  - name: a\n    expect: {rows: []}\n", "`rule:` must say where the rule comes from"),
        (
            "  - name: a\n    rule: r\n    expect: {rows: []}\n  - name: a\n    rule: r\n    expect: {rows: []}\n",
            "test name 'a' is used twice",
        ),
        (
            "  - name: a\n    rule: r\n    given: {assessments: [{patient_key: p}]}\n    expect: {rows: []}\n",
            "must be schema-qualified",
        ),
    ],
)
def test_harness_refuses_malformed_tests_files(tmp_path, body, message):
    with pytest.raises(h.TestsFileError, match=message):
        _toy(tmp_path, "tests:\n" + body)


@pytest.mark.parametrize(
    ("given", "expect", "message"),
    [
        (
            "staging.assessments: [{patient_key: p1, marow_blasts_pct: 3}]",
            "rows: []",
            r"names column\(s\) \['marow_blasts_pct'\] the table lacks",
        ),
        (
            "staging.assesments: [{patient_key: p1}]",
            "rows: []",
            "given staging.assesments, which harmonized/50_toy_scores.sql does not read",
        ),
        (
            "staging.assessments: [{patient_key: p1, assessment_date: not-a-date}]",
            "rows: []",
            "cannot be cast to the column types",
        ),
        (
            "staging.assessments: [{patient_key: p1}]",
            "rows: [{patient_key: p1, n_visits: 1}]",
            r"expected column\(s\) \['n_visits'\] are not in harmonized.toy_scores",
        ),
        (
            "staging.assessments: [{patient_key: p1}]",
            "rows: [{patient_key: p1, n_assessments: 1}, {patient_key: p1}]",
            r"expected row 2 .* lacking \['n_assessments'\]",
        ),
    ],
)
def test_harness_refuses_bad_given_or_expected_rows(tmp_path, given, expect, message):
    (test,) = _toy(
        tmp_path,
        f"tests:\n  - name: bad\n    rule: toy\n    given: {{{given}}}\n    expect: {{{expect}}}\n",
    )
    with pytest.raises(h.TestsFileError, match=message):
        h.run_model_test(test, tmp_path / "sql")


def test_harness_unknown_definition_override_is_an_error(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: bad\n    rule: toy\n    definitions: {no_such_definition: 1}\n    expect: {rows: []}\n",
    )
    with pytest.raises(
        h.TestsFileError, match=r"definitions \['no_such_definition'\] are overridden but"
    ):
        h.run_model_test(test, tmp_path / "sql")


def test_harness_yaml_booleans_are_yaml_1_2(tmp_path):
    (test,) = _toy(
        tmp_path,
        "tests:\n  - name: b\n    rule: toy\n    given: {staging.assessments: [{patient_key: NO}]}\n"
        "    expect: {rows: [{patient_key: NO}]}\n",
    )
    assert test.given["staging.assessments"][0]["patient_key"] == "NO"
    h.run_model_test(test, tmp_path / "sql")


def test_harness_upstream_tables_exist_empty_and_a_given_view_becomes_a_table(tmp_path):
    root = tmp_path / "sql"
    (root / "curated").mkdir(parents=True)
    (root / "endpoints").mkdir(parents=True)
    (root / "curated" / "10_up.sql").write_text(
        "CREATE OR REPLACE TABLE curated.up AS SELECT patient_key, 1 AS one FROM staging.patients;\n"
    )
    (root / "endpoints" / "10_v.sql").write_text(
        "CREATE OR REPLACE VIEW endpoints.v AS SELECT patient_key, one FROM curated.up;\n"
    )
    (root / "endpoints" / "20_w.sql").write_text(
        "CREATE OR REPLACE VIEW endpoints.w AS\nSELECT count(*) AS n, sum(one) AS s FROM endpoints.v;\n"
    )
    (root / "endpoints" / "20_w.tests.yaml").write_text(
        "tests:\n"
        "  - name: empty_upstream\n    rule: toy\n    expect: {rows: [{n: 0, s: null}]}\n"
        "  - name: given_view\n    rule: toy\n"
        "    given: {endpoints.v: [{patient_key: a, one: '2'}, {patient_key: b, one: 3}]}\n"
        "    expect: {rows: [{n: 2, s: 5}]}\n"
    )
    for test in h.load_tests_file(root / "endpoints" / "20_w.tests.yaml"):
        h.run_model_test(test, root)


def test_the_tables_python_writes_have_the_harness_columns_and_types():
    """The harness declares the tables Python stages write; they must match what the stages
    write (through the same DuckDB writer), or model tests would run on a stale shape."""
    import duckdb
    import polars as pl

    from blinaetl.privacy import DEMO_KEY, date_shifts
    from blinaetl.text import read_em_text
    from blinaetl.warehouse.frames import write_frame

    reports = pl.DataFrame(
        {
            "patient_key": ["k1"],
            "site": ["S1"],
            "_source_file": ["imaging/S1/imaging_reports_20260101.csv"],
            "_source_row": [2],
            "report_date": [__import__("datetime").date(2020, 1, 5)],
            "modality": ["CT"],
            "report_text": ["Testicular enlargement consistent with leukemic infiltration."],
        },
        schema_overrides={"_source_row": pl.Int64},
    )
    mentions, unmapped = read_em_text(reports)
    written = {
        "harmonized.em_mentions": mentions,
        "harmonized.em_unmapped_terms": unmapped,
        "harmonized.date_shift": date_shifts(pl.Series(["k1"]), DEMO_KEY, 365),
    }
    real, declared = duckdb.connect(), duckdb.connect()
    for con in (real, declared):
        con.execute("CREATE SCHEMA harmonized")
    for ddl in h.PYTHON_TABLES_DDL:
        declared.execute(ddl)
    for table, frame in written.items():
        write_frame(real, table, frame, replace=True)
        assert h.column_types(real, table) == h.column_types(declared, table), table

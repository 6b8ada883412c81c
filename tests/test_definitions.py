"""Definitions fail loud: every definition is used, every used name is defined, an unknown or
mistyped name is an error naming the model and the name, and overrides are checked."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from blinaetl.resources import schemas_dir
from blinaetl.validate.contracts import read_yaml
from blinaetl.warehouse import models
from tests import sqlfixtures

ENGINE = Path(models.__file__).resolve().parents[1]


def _python_uses(name: str) -> list[Path]:
    """Engine modules that name the definition as a quoted string (e.g. `def_num('x')` in Python)."""
    pattern = re.compile(rf"""['"]{re.escape(name)}['"]""")
    return [
        p for p in sorted(ENGINE.rglob("*.py")) if pattern.search(p.read_text(encoding="utf-8"))
    ]


def test_every_definition_is_used_by_a_model_or_the_engine():
    defined = set(read_yaml(schemas_dir() / "definitions.yaml")["definitions"])
    used_by_models = set().union(*(m.definitions for m in models.discover_models()))
    unused = sorted(n for n in defined - used_by_models if not _python_uses(n))
    assert not unused, f"definitions no model (def_num/def_text) or engine module reads: {unused}"


def test_every_definition_a_model_names_is_defined():
    defined = set(models.load_definitions())
    problems = [
        f"{m.name}: {sorted(m.definitions - defined)}"
        for m in models.discover_models()
        if m.definitions - defined
    ]
    assert not problems, f"models name undefined definitions: {problems}"


def test_the_scan_finds_the_names_a_model_reads(tmp_path):
    path = tmp_path / "harmonized" / "10_x.sql"
    path.parent.mkdir()
    path.write_text(
        "-- def_num('in_a_comment') is not a use\n"
        "CREATE OR REPLACE TABLE harmonized.x AS\n"
        "SELECT def_num('cr_anc_min') AS a, DEF_TEXT( 'responder_categories' ) AS b;\n"
    )
    assert models.read_model("harmonized", path).definitions == {
        "cr_anc_min",
        "responder_categories",
    }


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    models.install_definitions(con, models.load_definitions())
    return con


@pytest.mark.parametrize("macro", ["def_num", "def_text"])
def test_an_unknown_name_is_an_error_through_duckdb(macro):
    con = _con()
    with pytest.raises(
        duckdb.InvalidInputException, match=f'unknown definition "cr_anc_mn" in {macro}'
    ):
        con.execute(f"SELECT {macro}('cr_anc_mn')").fetchall()


def test_known_names_read_their_values():
    con = _con()
    got = con.execute(
        "SELECT def_num('cr_platelets_min'), def_text('responder_categories')"
    ).fetchall()
    assert got == [(100.0, "CR,CRh,CRi")]


def test_a_model_naming_an_unknown_definition_stops_the_run_before_any_model(tmp_path):
    (tmp_path / "harmonized").mkdir()
    (tmp_path / "harmonized" / "00_ok.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT 1 AS one;\n"
    )
    (tmp_path / "endpoints").mkdir()
    (tmp_path / "endpoints" / "10_x.sql").write_text(
        "CREATE OR REPLACE VIEW endpoints.x AS\nSELECT def_num('hct_landmark_dya') AS d;\n"
    )
    con = _con()
    with pytest.raises(
        models.SqlModelError, match=r"endpoints/10_x\.sql uses definition\(s\) 'hct_landmark_dya'"
    ):
        models.run_layer(con, "harmonized", tmp_path)
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ok'"
    ).fetchall() == [(0,)]


def test_a_name_computed_in_sql_is_an_error_naming_the_model(tmp_path):
    (tmp_path / "harmonized").mkdir()
    (tmp_path / "harmonized" / "10_x.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.x AS\n"
        "SELECT CASE WHEN def_num('cr' || '_anc_minimum') > 0 THEN 'CR' ELSE 'not CR' END AS r;\n"
    )
    with pytest.raises(
        models.SqlModelError,
        match=r'harmonized/10_x\.sql failed: .*unknown definition "cr_anc_minimum" in def_num',
    ):
        models.run_layer(_con(), "harmonized", tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cr_anc_mn": 1}, "unknown definition 'cr_anc_mn' in the run's overrides"),
        ({"cr_anc_min": "one"}, "definition cr_anc_min in the run's overrides must be a number"),
        ({"cr_anc_min": True}, "must be a number"),
        (
            {"study_day_origin": "diagnosis"},
            "the models implement only 'blinatumomab_cycle1_start'",
        ),
    ],
)
def test_bad_overrides_are_refused(overrides, message):
    with pytest.raises(models.DefinitionError, match=message):
        models.load_definitions(overrides=overrides)


def test_good_overrides_are_used():
    defs = models.load_definitions(
        overrides={"cr_anc_min": 2, "study_day_origin": "blinatumomab_cycle1_start"}
    )
    assert defs["cr_anc_min"]["value"] == 2
    assert defs["study_day_origin"]["value"] == "blinatumomab_cycle1_start"


def test_study_day_origin_is_read_by_the_timeline_and_refuses_another_value():
    con = sqlfixtures.restricted_db(sqlfixtures.one_patient(day0="2015-03-01"))
    sqlfixtures.run_models(con)
    assert con.execute("SELECT day0_date::VARCHAR FROM harmonized.patient_timeline").fetchall() == [
        ("2015-03-01",)
    ]
    # a value past the override check (written into the table directly) still fails loud
    con.execute(
        "UPDATE curated.definitions SET value = 'diagnosis' WHERE name = 'study_day_origin'"
    )
    with pytest.raises(
        models.SqlModelError, match='study_day_origin = "diagnosis" is not implemented'
    ):
        models.run_layer(con, "harmonized")


def test_def_num_of_a_text_definition_is_an_error_before_any_model(tmp_path):
    (tmp_path / "harmonized").mkdir()
    (tmp_path / "harmonized" / "00_ok.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT 1 AS one;\n"
    )
    (tmp_path / "harmonized" / "10_x.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT def_num('responder_categories') AS n;\n"
    )
    con = _con()
    with pytest.raises(
        models.SqlModelError,
        match=r"harmonized/10_x\.sql reads definition 'responder_categories' with def_num, but its value "
        r"'CR,CRh,CRi' is not a number",
    ):
        models.run_layer(con, "harmonized", tmp_path)
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'ok'"
    ).fetchall() == [(0,)]
    # the same name read as text runs
    (tmp_path / "harmonized" / "10_x.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT def_text('responder_categories') AS n;\n"
    )
    models.run_layer(con, "harmonized", tmp_path)
    assert con.execute("SELECT n FROM harmonized.x").fetchall() == [("CR,CRh,CRi",)]

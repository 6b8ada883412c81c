"""SQL run order comes from the models' references; cycles, missing upstreams and reads a layer
cannot serve are errors before any model runs, naming the model."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from blinaetl.warehouse import models


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, sql in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql, encoding="utf-8")
    return root


def _db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA staging")
    con.execute("CREATE TABLE staging.patients AS SELECT 'p1' AS patient_key")
    return con


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT schema_name || '.' || table_name FROM duckdb_tables()").fetchall()
    return {r[0] for r in rows}


def test_order_follows_references_not_file_names(tmp_path):
    root = _write(
        tmp_path,
        {
            # 10 reads what 90 creates, 50 reads 10: the run order is 90, 10, 50
            "harmonized/10_b.sql": "CREATE OR REPLACE TABLE harmonized.b AS\n"
            "SELECT patient_key, n + 1 AS n FROM harmonized.a;\n",
            "harmonized/50_c.sql": "CREATE OR REPLACE TABLE harmonized.c AS\nSELECT n * 10 AS n FROM harmonized.b;\n",
            "harmonized/90_a.sql": "CREATE OR REPLACE TABLE harmonized.a AS\n"
            "SELECT patient_key, 1 AS n FROM staging.patients;\n",
        },
    )
    con = _db()
    assert models.run_layer(con, "harmonized", root) == ["90_a.sql", "10_b.sql", "50_c.sql"]
    assert con.execute("SELECT n FROM harmonized.c").fetchall() == [(20,)]


def test_independent_models_keep_file_name_order(tmp_path):
    root = _write(
        tmp_path,
        {
            f"harmonized/{n}_{t}.sql": f"CREATE OR REPLACE TABLE harmonized.{t} AS\nSELECT * FROM staging.patients;\n"
            for n, t in (("30", "x"), ("10", "z"), ("20", "y"))
        },
    )
    assert models.run_layer(_db(), "harmonized", root) == ["10_z.sql", "20_y.sql", "30_x.sql"]


def test_a_cycle_is_an_error_naming_its_models_and_nothing_runs(tmp_path):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT * FROM staging.patients;\n",
            "harmonized/10_x.sql": "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT * FROM harmonized.y;\n",
            "harmonized/20_y.sql": "CREATE OR REPLACE TABLE harmonized.y AS\nSELECT * FROM harmonized.x;\n",
        },
    )
    con = _db()
    with pytest.raises(
        models.SqlModelError, match=r"cycle .*: harmonized/10_x\.sql, harmonized/20_y\.sql"
    ):
        models.run_layer(con, "harmonized", root)
    assert "harmonized.ok" not in _tables(con)


def test_a_cycle_in_a_later_layer_stops_the_first_layer(tmp_path):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT * FROM staging.patients;\n",
            "endpoints/10_x.sql": "CREATE OR REPLACE VIEW endpoints.x AS\nSELECT * FROM endpoints.y;\n",
            "endpoints/20_y.sql": "CREATE OR REPLACE VIEW endpoints.y AS\nSELECT * FROM endpoints.x;\n",
        },
    )
    con = _db()
    with pytest.raises(
        models.SqlModelError, match=r"cycle .*endpoints/10_x\.sql, endpoints/20_y\.sql"
    ):
        models.run_layer(con, "harmonized", root)
    assert "harmonized.ok" not in _tables(con)


def test_a_missing_upstream_is_an_error_naming_the_model_and_table(tmp_path):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT * FROM staging.patients;\n",
            "curated/10_x.sql": "CREATE OR REPLACE TABLE curated.x AS\nSELECT * FROM harmonized.patient_timelin;\n",
        },
    )
    con = _db()
    with pytest.raises(
        models.SqlModelError,
        match=r"curated/10_x\.sql reads harmonized\.patient_timelin, which no SQL model creates",
    ):
        models.run_layer(con, "harmonized", root)
    assert "harmonized.ok" not in _tables(con)


def test_a_missing_source_table_is_an_error_before_the_layer_runs(tmp_path):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT * FROM staging.patients;\n",
            "harmonized/10_x.sql": "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT * FROM staging.asessments;\n",
        },
    )
    con = _db()
    with pytest.raises(
        models.SqlModelError,
        match=r"harmonized/10_x\.sql reads staging\.asessments, which this database lacks",
    ):
        models.run_layer(con, "harmonized", root)
    assert "harmonized.ok" not in _tables(con)


@pytest.mark.parametrize(
    ("rel", "sql", "message"),
    [
        (
            "endpoints/10_x.sql",
            "CREATE OR REPLACE VIEW endpoints.x AS\nSELECT * FROM harmonized.ok;\n",
            r"endpoints/10_x\.sql reads harmonized\.ok, but endpoints models read only curated, endpoints",
        ),
        (
            "harmonized/10_x.sql",
            "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT * FROM curated.y;\n",
            r"harmonized/10_x\.sql reads curated\.y, but harmonized models read only",
        ),
        (
            "curated/10_x.sql",
            "CREATE OR REPLACE TABLE curated.x AS\nSELECT * FROM curated.patient_dates;\n",
            r"curated/10_x\.sql reads curated\.patient_dates, created by date_shift/10_d\.sql, which runs "
            r"after the curated layer or only in date-shift mode",
        ),
        (
            "curated/10_x.sql",
            "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT * FROM harmonized.ok;\n",
            r"curated/10_x\.sql creates harmonized\.x; models of sql/curated/ create tables in the curated schema",
        ),
        (
            "harmonized/10_x.sql",
            "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT 1 AS one;\n",
            r"harmonized/00_ok\.sql and harmonized/10_x\.sql both create harmonized\.ok",
        ),
        (
            "harmonized/10_x.sql",
            "SELECT 1 AS one;\n",
            r"harmonized/10_x\.sql must create exactly one schema-qualified table or view",
        ),
    ],
)
def test_reads_and_writes_a_layer_cannot_serve_are_errors(tmp_path, rel, sql, message):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT * FROM staging.patients;\n",
            "curated/05_p.sql": "CREATE OR REPLACE TABLE curated.p AS\nSELECT * FROM harmonized.ok;\n",
            "date_shift/10_d.sql": "CREATE OR REPLACE TABLE curated.patient_dates AS\nSELECT * FROM curated.p;\n",
            rel: sql,
        },
    )
    with pytest.raises(models.SqlModelError, match=message):
        models.run_layer(_db(), "harmonized", root)


def test_names_in_comments_and_strings_are_not_reads(tmp_path):
    path = _write(
        tmp_path,
        {
            "curated/10_x.sql": "-- built like harmonized.old_thing\n"
            "CREATE OR REPLACE TABLE curated.x AS\n"
            "SELECT 'from staging.nothing' AS note, /* ref.none */ p.patient_key\n"
            "FROM harmonized.ok AS p;\n"
            "COMMENT ON TABLE curated.x IS 'Like endpoints.y; it''s from curated.z.';\n"
            "COMMENT ON COLUMN curated.x.note IS 'A note.';\n",
        },
    )
    model = models.read_model("curated", path / "curated" / "10_x.sql")
    assert model.output == "curated.x"
    assert model.reads == {"harmonized.ok"}


def test_the_shipped_models_run_after_every_model_they_read():
    all_models = models.discover_models()
    models.check_model_graph(all_models)
    for layer in models.LAYERS:
        ordered = models.order_models([m for m in all_models if m.layer == layer])
        seen: set[str] = set()
        made_here = {m.output for m in ordered}
        for model in ordered:
            assert not (model.reads & made_here) - seen, (
                f"{model.name} runs before a table it reads"
            )
            seen.add(model.output)
    by_output = {m.output: m for m in all_models}
    # spot checks written from the SQL: the response chain reads the timeline and EM findings
    assert by_output["harmonized.patient_response"].reads >= {
        "harmonized.best_response",
        "harmonized.relapse_evidence",
        "harmonized.patient_timeline",
        "harmonized.em_findings",
    }
    assert by_output["harmonized.best_response"].reads >= {"harmonized.assessment_response"}
    assert by_output["endpoints.km"].reads == {"endpoints.km_input"}


def test_check_models_checks_graph_and_definitions_statically(tmp_path):
    root = _write(
        tmp_path,
        {
            "harmonized/00_ok.sql": "CREATE OR REPLACE TABLE harmonized.ok AS\n"
            "SELECT def_num('cr_anc_min') AS anc FROM staging.patients;\n",
        },
    )
    defs = models.load_definitions()
    assert [m.name for m in models.check_models(defs, root)] == ["harmonized/00_ok.sql"]
    (root / "harmonized" / "00_ok.sql").write_text(
        "CREATE OR REPLACE TABLE harmonized.ok AS\nSELECT def_num('cr_anc_minimum') AS anc;\n"
    )
    with pytest.raises(
        models.SqlModelError, match=r"00_ok\.sql uses definition\(s\) 'cr_anc_minimum'"
    ):
        models.check_models(defs, root)


def test_a_broken_model_graph_stops_the_pipeline_before_it_reads_anything(tmp_path, monkeypatch):
    from blinaetl.pipeline import RunConfig, run_pipeline

    root = _write(
        tmp_path / "sql",
        {
            "harmonized/10_x.sql": "CREATE OR REPLACE TABLE harmonized.x AS\nSELECT * FROM harmonized.y;\n",
            "harmonized/20_y.sql": "CREATE OR REPLACE TABLE harmonized.y AS\nSELECT * FROM harmonized.x;\n",
        },
    )
    monkeypatch.setattr(models, "sql_dir", lambda: root)  # the shipped sql/ folder replaced
    cfg = RunConfig(
        landing=tmp_path / "landing",
        warehouse=tmp_path / "wh",
        reports=tmp_path / "rp",
        demo=True,
        gx=False,
    )
    with pytest.raises(
        models.SqlModelError, match=r"cycle .*harmonized/10_x\.sql, harmonized/20_y\.sql"
    ):
        run_pipeline(cfg)
    assert not (tmp_path / "wh").exists() and not (tmp_path / "rp").exists()

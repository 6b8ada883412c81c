"""blinaetl.analytics and the examples of docs/analysis.md, run on the published demo database."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl import analytics

DOC = Path(__file__).resolve().parents[1] / "docs" / "analysis.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_connect_is_read_only_and_helpers_return_the_view_rows(demo_run):
    _, cfg, _ = demo_run
    con = analytics.connect(cfg.analytics_path)
    try:
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE curated.x (a INTEGER)")
        km = analytics.km_summary(con, param="OS", stratum_variable="overall")
        direct = con.sql(
            "SELECT * FROM endpoints.km_summary WHERE param = 'OS' AND stratum_variable = 'overall'"
        ).pl()
        assert isinstance(km, pl.DataFrame) and km.height == 1
        assert km.equals(direct)
        with pytest.raises(ValueError, match="has no column"):
            analytics.km(con, stratum="overall")
        with pytest.raises(ValueError, match="unknown view"):
            analytics.read(con, "staging.patients")
    finally:
        con.close()


def test_connect_without_a_database_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="make run"):
        analytics.connect(tmp_path / "missing.duckdb")


def test_every_sql_example_of_the_analysis_doc_runs_and_returns_rows(demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        statements = [s.strip() for b in _blocks("sql") for s in b.split(";") if s.strip()]
        assert len(statements) >= 8
        for sql in statements:
            assert con.sql(sql).fetchall(), sql
    finally:
        con.close()


def test_every_python_example_of_the_analysis_doc_runs(demo_run, monkeypatch, capsys):
    _, cfg, _ = demo_run
    monkeypatch.setenv("BLINAETL_ANALYTICS_DB", str(cfg.analytics_path))
    namespace: dict = {}
    blocks = _blocks("python")
    assert len(blocks) == 6
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    namespace["con"].close()
    assert capsys.readouterr().out
    assert namespace["rates"].height == 2, "true and false rows of bm_blasts_gt50"
    assert set(namespace["cox"]["analysis"]) == {"cox_landmark", "cox_time_dependent"}
    assert namespace["table"].height == 2 and "0" in namespace["table"].columns
    assert namespace["by_class"]["failed"].sum() == namespace["failed"].height

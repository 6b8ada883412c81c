"""The fitted-rows cache of `endpoints.model_results` (`statistics.write_model_results(cache=)`).

A cached table must equal a fresh fit value for value (floats compared exactly), be used only
when every input the models read is the same, and never be trusted when unreadable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blinaetl.warehouse import database, statistics
from tests.test_survival_views import cohort, survival_db

TABLE = "SELECT * FROM endpoints.model_results"


def _no_fit(_con):
    raise AssertionError("the models were fitted although the cache matched")


@pytest.fixture
def con():
    return survival_db(cohort(120, 5))


def test_cached_table_equals_a_fresh_fit_and_no_model_is_fitted(con, tmp_path, monkeypatch):
    cache = tmp_path / "blina.duckdb.model_results.json"
    statistics.write_model_results(con)  # no cache: what publish wrote before the cache
    fresh = con.sql(TABLE).fetchall()
    assert len(fresh) > 20
    assert statistics.write_model_results(con, cache=cache) == len(fresh)
    assert con.sql(TABLE).fetchall() == fresh
    stored = json.loads(cache.read_text())
    assert stored["key"] == statistics.inputs_key(con) and len(stored["rows"]) == len(fresh)
    monkeypatch.setattr(statistics, "all_rows", _no_fit)
    con.execute("DROP TABLE endpoints.model_results")
    assert statistics.write_model_results(con, cache=cache) == len(fresh)
    # exact equality: every estimate, interval and p-value read back from the cache unchanged
    assert con.sql(TABLE).fetchall() == fresh
    assert con.sql(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'model_results' "
        "AND comment IS NOT NULL"
    ).fetchall() == [(len(statistics.COLUMNS),)]


def test_a_changed_input_is_fitted_again(con, tmp_path):
    cache = tmp_path / "models.json"
    statistics.write_model_results(con, cache=cache)
    before_key, before = statistics.inputs_key(con), con.sql(TABLE).fetchall()
    # one patient's death becomes a censoring (or the reverse): the OS inputs change
    con.execute(
        "UPDATE curated.time_to_event SET cnsr = 1 - cnsr "
        "WHERE param = 'OS' AND patient_key = 'p00003'"
    )
    assert statistics.inputs_key(con) != before_key
    statistics.write_model_results(con, cache=cache)
    after = con.sql(TABLE).fetchall()
    assert after != before
    statistics.write_model_results(con)
    assert con.sql(TABLE).fetchall() == after  # what a fit without the cache gives
    assert json.loads(cache.read_text())["key"] == statistics.inputs_key(con)


def test_a_predictor_change_and_a_library_version_change_change_the_key(con, monkeypatch):
    key = statistics.inputs_key(con)
    assert statistics.inputs_key(con) == key  # deterministic
    con.execute("UPDATE curated.patients SET prior_em = NOT prior_em WHERE patient_key = 'p00007'")
    changed = statistics.inputs_key(con)
    assert changed != key
    real = statistics.metadata.version
    monkeypatch.setattr(
        statistics.metadata,
        "version",
        lambda name: "0.0.0" if name == "statsmodels" else real(name),
    )
    assert statistics.inputs_key(con) != changed


def test_the_key_covers_the_source_of_every_module_the_fit_runs(con, tmp_path, monkeypatch):
    from blinaetl.warehouse import exact

    assert {Path(statistics.__file__), Path(exact.__file__)} <= set(statistics.FITTING_SOURCES)
    copies = []
    for source in statistics.FITTING_SOURCES:
        copies.append(tmp_path / source.name)
        copies[-1].write_bytes(source.read_bytes())
    monkeypatch.setattr(statistics, "FITTING_SOURCES", tuple(copies))
    key = statistics.inputs_key(con)
    assert key == statistics.inputs_key(con)
    for copy in copies:  # one byte more in any of them is another key
        copy.write_bytes(copy.read_bytes() + b"#")
        assert statistics.inputs_key(con) != key
        key = statistics.inputs_key(con)


@pytest.mark.parametrize(
    "content",
    ["", "not json", '{"key": 1}', "[]", '{"key": "K", "rows": [{"analysis": "logrank"}]}'],
    ids=["empty", "not-json", "no-rows", "list", "wrong-columns"],
)
def test_an_unreadable_or_foreign_cache_is_fitted_and_replaced(con, tmp_path, content):
    cache = tmp_path / "models.json"
    cache.write_text(content.replace('"K"', json.dumps(statistics.inputs_key(con))))
    statistics.write_model_results(con, cache=cache)
    fitted = con.sql(TABLE).fetchall()
    statistics.write_model_results(con)
    assert con.sql(TABLE).fetchall() == fitted
    assert json.loads(cache.read_text())["key"] == statistics.inputs_key(con)


def test_publish_keeps_the_cache_beside_the_live_file(tmp_path):
    live = tmp_path / "blina.duckdb"
    assert database.model_cache_path(live) == tmp_path / "blina.duckdb.model_results.json"


def test_the_key_covers_the_source_of_the_cox_and_logrank_fits(con, tmp_path, monkeypatch):
    from pathlib import Path

    from blinaetl.warehouse import survival_fit

    sources = {p.resolve() for p in statistics.FITTING_SOURCES}
    assert Path(survival_fit.__file__).resolve() in sources
    assert Path(statistics.__file__).resolve() in sources
    key = statistics.inputs_key(con)
    copies = []
    for source in statistics.FITTING_SOURCES:
        copy = tmp_path / source.name
        copy.write_bytes(source.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(statistics, "FITTING_SOURCES", tuple(copies))
    assert statistics.inputs_key(con) == key  # byte-identical copies: the same key
    fit = tmp_path / "survival_fit.py"
    fit.write_bytes(fit.read_bytes() + b"\n# one changed line\n")
    assert statistics.inputs_key(con) != key


def test_lifelines_is_not_in_the_key_as_no_fitting_module_imports_it():
    assert "lifelines" not in statistics.FITTING_PACKAGES
    for source in statistics.FITTING_SOURCES:
        text = source.read_text(encoding="utf-8")
        assert "import lifelines" not in text and "from lifelines" not in text


def test_km_rows_are_the_ordered_rows_of_km_input(con):
    # what the log-rank tests read: the view's rows ORDER BY ALL, value for value and in order
    reference = con.sql(
        "SELECT param, stratum_variable, stratum_value, time_days, event FROM endpoints.km_input "
        "WHERE stratum_variable <> 'overall' AND param <> 'OS_REVERSE' ORDER BY ALL"
    ).pl()
    rows = statistics.Inputs(con).km_rows()
    assert reference.height > 1000 and rows.schema == reference.schema
    assert rows.equals(reference)
    counted = statistics.Inputs(con).frame("km_input")
    assert counted.height < reference.height and counted["n_rows"].sum() == reference.height


def test_one_fit_runs_each_input_query_once_and_the_key_is_the_same(con, tmp_path, monkeypatch):
    key = statistics.inputs_key(con)  # a fresh Inputs per call: every query run again
    fresh = statistics.all_rows(con)
    ran: list[str] = []
    real = statistics.Inputs.frame

    def counting(self, name):
        if name not in self._frames:
            ran.append(name)
        return real(self, name)

    monkeypatch.setattr(statistics.Inputs, "frame", counting)
    rows = statistics.model_rows(con, tmp_path / "models.json")
    assert sorted(ran) == sorted(statistics.INPUTS)  # each query once, key and fit together
    assert rows == fresh  # the same rows as reading each input per family
    assert json.loads((tmp_path / "models.json").read_text())["key"] == key


def test_the_key_changes_when_one_km_row_is_repeated(con):
    # a count of a distinct km_input row is in the key: a duplicated row (same values) changes it
    key = statistics.inputs_key(con)
    con.execute(
        "INSERT INTO curated.time_to_event SELECT param || '', 'zz_copy', start_day, aval_days, "
        "cnsr, event_desc FROM curated.time_to_event WHERE patient_key = 'p00003'"
    )
    con.execute(
        "INSERT INTO curated.patients SELECT * REPLACE ('zz_copy' AS patient_key) "
        "FROM curated.patients WHERE patient_key = 'p00003'"
    )
    assert statistics.inputs_key(con) != key


def test_the_patients_frame_is_the_pandas_frame_of_the_query(con):
    import pandas as pd

    # logistic and Fisher fit the same pandas frame (dtypes included) as `.df()` of the query gave
    expected = con.sql(statistics.INPUTS["patients"]).df()
    inputs = statistics.Inputs(con)
    pd.testing.assert_frame_equal(inputs.patients(), expected, check_exact=True)
    assert inputs.patients() is inputs.patients()  # converted once

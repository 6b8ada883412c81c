"""Build a restricted DuckDB database from fixture rows, for SQL model tests.

`restricted_db(rows)` creates the staging tables from the contracts, installs definitions
(optionally overridden), loads the vocabularies, creates the Python-produced interface tables
(`harmonized.em_mentions`, `harmonized.em_unmapped_terms`) and inserts the given rows. Rows are
dicts with canonical column names; lineage columns may be omitted.
"""

from __future__ import annotations

from typing import Any

import duckdb

from blinaetl.validate.contracts import load_contracts
from blinaetl.warehouse import models
from tests.sqlharness import PYTHON_TABLES_DDL

# the tables Python stages write, as the model-test harness declares them (one declaration)
EM_MENTIONS_DDL, EM_UNMAPPED_DDL = (
    ddl.replace("CREATE TABLE", "CREATE OR REPLACE TABLE") for ddl in PYTHON_TABLES_DDL[:2]
)


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        con.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values()))


def restricted_db(
    rows: dict[str, list[dict[str, Any]]] | None = None,
    definitions: dict[str, Any] | None = None,
) -> duckdb.DuckDBPyConnection:
    """In-memory restricted database with staging tables filled from `rows` (table -> rows).

    Keys of `rows` are staging table names (`patients`, `treatments`, ...) or qualified names
    (`harmonized.em_mentions`).
    """
    con = duckdb.connect()
    models.create_staging(con, load_contracts())
    models.install_definitions(con, models.load_definitions(overrides=definitions))
    models.load_vocab(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS harmonized")
    con.execute(EM_MENTIONS_DDL)
    con.execute(EM_UNMAPPED_DDL)
    for table, table_rows in (rows or {}).items():
        name = table if "." in table else f"staging.{table}"
        insert_rows(con, name, table_rows)
    return con


def run_models(con: duckdb.DuckDBPyConnection, layers: tuple[str, ...] = ("harmonized",)) -> None:
    for layer in layers:
        models.run_layer(con, layer)


def one_patient(day0: str = "2015-03-01", key: str = "k0") -> dict[str, list[dict[str, Any]]]:
    """Staging rows of one patient (site S) whose blinatumomab cycle 1 starts on `day0`."""
    return {
        "patients": [
            {
                "mrn": "M0",
                "site": "S",
                "patient_key": key,
                "birth_date": "1970-01-01",
                "diagnosis_date": "2014-01-01",
            }
        ],
        "treatments": [
            {
                "mrn": "M0",
                "patient_key": key,
                "treatment": "blinatumomab",
                "cycle": 1,
                "start_date": day0,
            }
        ],
    }

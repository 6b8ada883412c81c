"""The two DuckDB databases: the restricted one the pipeline builds, the analytics one it publishes.

The restricted database (identifiers, lineage, quarantine, harmonized intermediates) is written
with owner-only permissions. The analytics database holds only `curated.*` tables and
`endpoints.*` views; it is built as a new file beside the live one and swapped in with
`os.replace`, so a reader never sees a half-built database and a failed run leaves the last
published one intact (stack-notes: DuckDB 2.0 publishing).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import duckdb
import polars as pl

from blinaetl import sqlrun
from blinaetl.contracts import Contract

FORBIDDEN_PUBLISHED_TYPES = ("DATE", "TIMESTAMP", "TIME", "INTERVAL")
# the only published table that may hold (shifted) calendar dates, and only in date-shift mode
DATE_SHIFT_TABLES = ("patient_dates",)

QUARANTINE_DDL = (
    "CREATE OR REPLACE TABLE quarantine.rows (_source_id VARCHAR, _source_file VARCHAR, "
    "_source_row BIGINT, table_name VARCHAR, site VARCHAR, patient_key VARCHAR, raw_json VARCHAR)",
    "CREATE OR REPLACE TABLE quarantine.failures (_source_id VARCHAR, _source_file VARCHAR, "
    "_source_row BIGINT, site VARCHAR, patient_key VARCHAR, row_hash VARCHAR, table_name VARCHAR, "
    "check_id VARCHAR, column_name VARCHAR, kahn VARCHAR, severity VARCHAR, message VARCHAR)",
)


class PublishError(RuntimeError):
    """The analytics database could not be published; the live one is unchanged."""


def _owner_only(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.chmod(0o600)


def connect_restricted(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating) the restricted database: its folder 0700, the file 0600.

    The folder holds nothing else, so the write-ahead log and DuckDB's spill directory, which
    appear beside the database with the process umask and hold the same identifiers, are out of
    other users' reach too.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    con = duckdb.connect(str(path))
    _owner_only(path)
    return con


def reset_restricted(path: Path) -> None:
    """Remove the restricted database of an earlier run (it is rebuilt from the landing files)."""
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def write_frame(
    con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, replace: bool = False
) -> None:
    """Write a polars frame to `table`: `CREATE OR REPLACE TABLE` (replace) or `INSERT BY NAME`.

    The frame is handed to DuckDB as Arrow, which DuckDB scans on all its threads; a polars
    frame handed over as such is converted and scanned on one (about 2.5x slower at 600,000 rows).
    """
    if not replace and frame.height == 0:
        return
    con.register("_frame", frame.to_arrow())
    try:
        if replace:
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM _frame")
        else:
            con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _frame")
    finally:
        con.unregister("_frame")


def load_staging(
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    tables: dict[str, pl.DataFrame],
    quarantine_rows: pl.DataFrame,
    quarantine_failures: pl.DataFrame,
    files: pl.DataFrame,
    dq_results: pl.DataFrame,
) -> dict[str, int]:
    """Write validated rows, quarantine and run metadata; returns rows loaded per table."""
    sqlrun.create_staging(con, contracts)
    for name in contracts:
        write_frame(con, f"staging.{name}", tables.get(name, pl.DataFrame()))
    con.execute("CREATE SCHEMA IF NOT EXISTS quarantine")
    for ddl in QUARANTINE_DDL:
        con.execute(ddl)
    write_frame(con, "quarantine.rows", quarantine_rows)
    write_frame(con, "quarantine.failures", quarantine_failures)
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    write_frame(con, "meta.files", files, replace=True)
    write_frame(con, "meta.dq_results", dq_results, replace=True)
    return {
        name: con.execute(f"SELECT count(*) FROM staging.{name}").fetchone()[0]
        for name in contracts
    }


def _published_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "SELECT table_name FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'curated' ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def check_publishable(con: duckdb.DuckDBPyConnection, date_shift: bool = False) -> None:
    """Refuse to publish a curated table with a calendar-date column or without comments.

    In date-shift mode the tables of `DATE_SHIFT_TABLES` (shifted dates) may hold dates; no
    other table may, in any mode.
    """
    problems = []
    cols = con.execute(
        "SELECT table_name, column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = 'curated'"
    ).fetchall()
    for table, column, dtype, comment in cols:
        dates_allowed = date_shift and table in DATE_SHIFT_TABLES
        if not dates_allowed and dtype.upper().startswith(FORBIDDEN_PUBLISHED_TYPES):
            problems.append(f"curated.{table}.{column} has type {dtype} (dates may identify)")
        if not comment:
            problems.append(f"curated.{table}.{column} has no COMMENT")
    tables = con.execute(
        "SELECT table_name, comment FROM duckdb_tables() "
        "WHERE database_name = current_database() AND schema_name = 'curated'"
    ).fetchall()
    problems += [f"curated.{t} has no COMMENT" for t, c in tables if not c]
    if problems:
        raise PublishError(
            "the curated layer breaks the analytics contract, nothing was published:\n  "
            + "\n  ".join(problems)
        )


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def publish(
    restricted: duckdb.DuckDBPyConnection,
    analytics_path: Path,
    build_tag: str,
    date_shift: bool = False,
) -> Path:
    """Build the analytics database from `curated.*` and swap it in atomically.

    The new file is built beside the live one (same filesystem), checkpointed and closed, then
    `os.replace`d over it. Any failure removes the partial file and leaves the live one as it was.
    """
    check_publishable(restricted, date_shift=date_shift)
    analytics_path.parent.mkdir(parents=True, exist_ok=True)
    building = analytics_path.with_name(f".{analytics_path.name}.{build_tag}.building")
    # leftovers of killed runs (the caller holds the single-writer lock, so none is in use)
    for stale in analytics_path.parent.glob(f".{analytics_path.name}.*.building*"):
        stale.unlink(missing_ok=True)
    tables = _published_tables(restricted)
    try:
        restricted.execute(f"ATTACH {_sql_str(str(building))} AS analytics_build")
        try:
            restricted.execute("CREATE SCHEMA analytics_build.curated")
            for t in tables:
                restricted.execute(
                    f"CREATE TABLE analytics_build.curated.{t} AS "
                    f"SELECT * FROM curated.{t} ORDER BY ALL"
                )
            comments = restricted.execute(
                "SELECT table_name, NULL AS column_name, comment FROM duckdb_tables() "
                "WHERE database_name = current_database() AND schema_name = 'curated' "
                "UNION ALL "
                "SELECT table_name, column_name, comment FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'curated'"
            ).fetchall()
            for table, column, comment in comments:
                target = f"analytics_build.curated.{table}"
                if column is None:
                    restricted.execute(f"COMMENT ON TABLE {target} IS {_sql_str(comment)}")
                else:
                    restricted.execute(
                        f'COMMENT ON COLUMN {target}."{column}" IS {_sql_str(comment)}'
                    )
        finally:
            restricted.execute("DETACH analytics_build")
        con = duckdb.connect(str(building))
        try:
            sqlrun.install_macros(con)
            sqlrun.run_layer(con, "endpoints")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        building.chmod(0o644)
        os.replace(building, analytics_path)
    except BaseException:
        building.unlink(missing_ok=True)
        building.with_name(building.name + ".wal").unlink(missing_ok=True)
        raise
    return analytics_path


def open_analytics(path: Path) -> duckdb.DuckDBPyConnection:
    """Read-only connection to the published analytics database."""
    if not path.exists():
        raise FileNotFoundError(
            f"no analytics database at {path}; run `make run` (or `blinaetl run`) first"
        )
    return duckdb.connect(str(path), read_only=True)

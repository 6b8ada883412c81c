"""The two DuckDB databases: the restricted one the pipeline builds, the analytics one it publishes.

The restricted database (identifiers, lineage, quarantine, harmonized intermediates) is written
with owner-only permissions. The analytics database holds only `curated.*` tables and
`endpoints.*` views; it is built as a new file beside the live one (the curated models write
into it directly, `building`) and swapped in with `os.replace`, so a reader never sees a
half-built database and a failed run leaves the last published one intact (stack-notes:
DuckDB 2.0 publishing).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl

from blinaetl.validate.contracts import Contract
from blinaetl.warehouse import models, statistics
from blinaetl.warehouse.frames import TableAppend, write_frame, write_frames
from blinaetl.warehouse.quarantine import Quarantine

FORBIDDEN_PUBLISHED_TYPES = ("DATE", "TIMESTAMP", "TIME", "INTERVAL")
# the only published table that may hold (shifted) calendar dates, and only in date-shift mode
DATE_SHIFT_TABLES = ("patient_dates",)

QUARANTINE_DDL = (
    "CREATE OR REPLACE TABLE quarantine.rows (_source_id VARCHAR, _source_file VARCHAR, "
    "_source_row BIGINT, table_name VARCHAR, site VARCHAR, patient_key VARCHAR, raw_json VARCHAR)",
    "CREATE OR REPLACE TABLE quarantine.failures (_source_id VARCHAR, _source_file VARCHAR, "
    "_source_row BIGINT, site VARCHAR, patient_key VARCHAR, row_hash VARCHAR, table_name VARCHAR, "
    "check_id VARCHAR, column_name VARCHAR, kahn VARCHAR, severity VARCHAR, message VARCHAR, "
    "root_cause VARCHAR)",
)


class PublishError(RuntimeError):
    """The analytics database could not be published; the live one is unchanged."""


def _owner_only(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.chmod(0o600)


def connect_restricted(path: Path) -> duckdb.DuckDBPyConnection:
    """Open (creating) the restricted database: its folder 0700, the file 0600.

    The folder holds only restricted data, so the write-ahead log and DuckDB's spill directory,
    which appear beside the database with the process umask and hold the same identifiers, are
    out of other users' reach too; so is the per-file cache of incremental runs beside it
    (`file_cache/`, `blinaetl/ingest/cache.py`), which survives `reset_restricted`.
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


def load_staging(
    con: duckdb.DuckDBPyConnection,
    contracts: dict[str, Contract],
    tables: dict[str, pl.DataFrame],
    quarantine: Quarantine,
    files: pl.DataFrame,
    dq_results: pl.DataFrame,
    staging: bool = True,
    staged: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Write validated rows, quarantine and run metadata; returns rows loaded per table.

    The copies of streamed files are expanded into `quarantine.rows` and
    `quarantine.failures` inside DuckDB (`warehouse/quarantine.py`). `staging=False`: the
    staging tables already hold these rows (a reused build, `blinaetl/ingest/reuse.py`).
    `staged(name)` is called once a table's rows are appended (`frames.write_frames`), so the
    caller can let go of that frame while the others are written."""
    if staging:
        models.create_staging(con, contracts)
    con.execute("CREATE SCHEMA IF NOT EXISTS quarantine")
    for ddl in QUARANTINE_DDL:
        con.execute(ddl)
    writes: list[tuple[str, pl.DataFrame | TableAppend]] = [
        ("quarantine.rows", quarantine.rows_writer()),
        ("quarantine.failures", quarantine.failures_writer()),
    ]
    if staging:
        writes += [(f"staging.{name}", tables.get(name, pl.DataFrame())) for name in contracts]

    def written(table: str) -> None:
        if staged is not None and table.startswith("staging."):
            staged(table.removeprefix("staging."))

    write_frames(con, writes, written)
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    write_frame(con, "meta.files", files, replace=True)
    write_frame(con, "meta.dq_results", dq_results, replace=True)
    return {
        name: con.execute(f"SELECT count(*) FROM staging.{name}").fetchall()[0][0]
        for name in contracts
    }


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


def building_path(analytics_path: Path, build_tag: str) -> Path:
    """The new analytics file of a run, built beside the live one (same filesystem)."""
    return analytics_path.with_name(f".{analytics_path.name}.{build_tag}.building")


def _remove_build(building: Path) -> None:
    building.unlink(missing_ok=True)
    building.with_name(building.name + ".wal").unlink(missing_ok=True)


@contextlib.contextmanager
def building(
    restricted: duckdb.DuckDBPyConnection, analytics_path: Path, build_tag: str
) -> Iterator[Path]:
    """Build the run's new analytics file from the restricted database, on its connection.

    Inside the block the new file is the connection's default database, so a model's
    `CREATE TABLE curated.x` writes there directly (the curated tables are written once, in the
    file that is published), while `staging.*`, `harmonized.*` and `ref.*` are read from the
    restricted database through the search path. Leftover build files of killed runs are
    removed first (the caller holds the single-writer lock, so none is in use); on failure the
    partial file is removed and the live analytics file is untouched.
    """
    analytics_path.parent.mkdir(parents=True, exist_ok=True)
    for stale in analytics_path.parent.glob(f".{analytics_path.name}.*.building*"):
        stale.unlink(missing_ok=True)
    path = building_path(analytics_path, build_tag)
    home = restricted.execute("SELECT current_database()").fetchall()[0][0]
    restricted.execute(f"ATTACH {_sql_str(str(path))} AS analytics_build")
    try:
        restricted.execute("USE analytics_build")
        restricted.execute("CREATE SCHEMA curated")  # the search path names existing schemas only
        restricted.execute(
            "SET search_path = 'analytics_build.main,analytics_build.curated,"
            f"{home}.staging,{home}.harmonized,{home}.ref'"
        )
        yield path
    except BaseException:
        _detach(restricted, home)
        _remove_build(path)
        raise
    _detach(restricted, home)


def _detach(con: duckdb.DuckDBPyConnection, home: str) -> None:
    con.execute("RESET search_path")
    con.execute(f"USE {home}")
    con.execute("DETACH analytics_build")


def discard_build(analytics_path: Path, build_tag: str) -> None:
    """Remove the run's new analytics file (refused by the gate); the live file is untouched."""
    _remove_build(building_path(analytics_path, build_tag))


def model_cache_path(analytics_path: Path) -> Path:
    """Beside the live file: the fitted `endpoints.model_results` rows and their inputs key."""
    return analytics_path.with_name(analytics_path.name + ".model_results.json")


def publish(analytics_path: Path, build_tag: str, finished: bool = False) -> Path:
    """Finish the run's new analytics file and swap it in atomically.

    The file `building` wrote (definitions and macros, curated tables, checked by
    `check_publishable`) gets the endpoint views, is checkpointed and closed, then `os.replace`d
    over the live file. Any failure removes the new file and leaves the live one as it was.
    `finished`: the file is complete already (a copy of the live file, `blinaetl/ingest/reuse.py`).
    """
    path = building_path(analytics_path, build_tag)
    if not path.exists():
        raise PublishError(
            f"no analytics file was built for run {build_tag} ({path.name}); run the transform "
            "stage first"
        )
    try:
        if not finished:
            con = duckdb.connect(str(path))
            try:
                models.run_layer(con, "endpoints")
                # the models on the views, in the same file, before the swap (publish stays
                # atomic); the last fit's rows are reused when every input is the same
                # (statistics.py)
                statistics.write_model_results(con, cache=model_cache_path(analytics_path))
                con.execute("CHECKPOINT")
            finally:
                con.close()
        path.chmod(0o644)
        os.replace(path, analytics_path)
    except BaseException:
        _remove_build(path)
        raise
    return analytics_path


def open_analytics(path: Path) -> duckdb.DuckDBPyConnection:
    """Read-only connection to the published analytics database."""
    if not path.exists():
        raise FileNotFoundError(
            f"no analytics database at {path}; run `make run` (or `blinaetl run`) first"
        )
    return duckdb.connect(str(path), read_only=True)

"""The query audit trail: every query event, append-only, and each query's current state.

Kept in its own DuckDB file beside the restricted database
(`warehouse/restricted/query_audit.duckdb`, owner-only), because the restricted database is
rebuilt from the landing files on every run while the history of a query must outlive runs.
`query_events` only ever grows (this module has no UPDATE or DELETE on it); `query_state` is
the lifecycle's working copy, one row per query, rewritten each run from the events' outcome;
`query_runs` lists the runs that advanced the lifecycle (ages in runs count them).

Rows name patients by pseudonymous key and rows by file and row number, never by value; the
delivered values a site sees are read from the restricted database when its workbook is
written.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

AUDIT_FILE = "query_audit.duckdb"

# Casts wrap these in `pl.Schema(...)`: polars types `cast` as a Mapping keyed by column name,
# selector or dtype, and a Mapping's key is invariant, so a plain `dict[str, ...]` does not match.

# what the lifecycle knows of the discrepancy behind a query (pseudonymous)
SNAPSHOT_SCHEMA: dict[str, Any] = {
    "discrepancy_id": pl.Utf8,
    "sender": pl.Utf8,
    "source_id": pl.Utf8,
    "row_hash": pl.Utf8,
    "table_name": pl.Utf8,
    "rule_id": pl.Utf8,
    "field": pl.Utf8,
    "site": pl.Utf8,
    "patient_key": pl.Utf8,
    "source_file": pl.Utf8,
    "source_row": pl.Int64,
    "file_sha256": pl.Utf8,
    "kahn": pl.Utf8,
    "severity": pl.Utf8,
    "message": pl.Utf8,
}

STATE_SCHEMA: dict[str, Any] = {
    "query_id": pl.Utf8,
    "status": pl.Utf8,
    **SNAPSHOT_SCHEMA,
    "opened_run": pl.Utf8,
    "opened_at": pl.Datetime("us", "UTC"),
    "corrected_sha": pl.Utf8,
    "last_seen_run": pl.Utf8,
    "last_event_run": pl.Utf8,
    "resolution": pl.Utf8,
    "site_comment": pl.Utf8,
}

EVENT_SCHEMA: dict[str, Any] = {
    "run_id": pl.Utf8,
    "at": pl.Datetime("us", "UTC"),
    "query_id": pl.Utf8,
    "event": pl.Utf8,
    "status": pl.Utf8,
    "reply": pl.Utf8,
    "site_comment": pl.Utf8,
    "note": pl.Utf8,
    "sender": pl.Utf8,
    "discrepancy_id": pl.Utf8,
    "table_name": pl.Utf8,
    "rule_id": pl.Utf8,
    "field": pl.Utf8,
    "patient_key": pl.Utf8,
    "source_file": pl.Utf8,
    "source_row": pl.Int64,
}

EVENTS = ("opened", "answered", "resolved", "closed", "reopened", "miscorrected", "reply_rejected")
LIVE = ("open", "corrected", "miscorrected")
CLOSED = ("closed_confirmed", "closed_unresolvable")


def _ddl(schema: dict[str, Any]) -> str:
    types = {
        pl.Utf8: "VARCHAR",
        pl.Int64: "BIGINT",
    }
    cols = []
    for name, dtype in schema.items():
        sql = "TIMESTAMPTZ" if isinstance(dtype, pl.Datetime) else types[dtype]
        cols.append(f'"{name}" {sql}')
    return ", ".join(cols)


class QueryAudit:
    """The audit file of one warehouse: open, read the state, record a run's outcome."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
        try:
            con.execute(
                "CREATE TABLE IF NOT EXISTS query_events (event_seq BIGINT, "
                + _ddl(EVENT_SCHEMA)
                + ")"
            )
            con.execute("CREATE TABLE IF NOT EXISTS query_state (" + _ddl(STATE_SCHEMA) + ")")
            con.execute(
                'CREATE TABLE IF NOT EXISTS query_runs (run_id VARCHAR PRIMARY KEY, "at" TIMESTAMPTZ)'
            )
            con.execute(
                "CREATE TABLE IF NOT EXISTS reply_files (sha256 VARCHAR, path VARCHAR, "
                "run_id VARCHAR, replies BIGINT, applied BIGINT, rejected BIGINT)"
            )
        finally:
            con.close()
        path.chmod(0o600)

    @classmethod
    def of(cls, restricted_path: Path) -> QueryAudit:
        """The audit file beside a restricted database."""
        return cls(restricted_path.parent / AUDIT_FILE)

    def _read(self, sql: str, schema: dict[str, Any]) -> pl.DataFrame:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            frame = con.sql(sql).pl()
        finally:
            con.close()
        if frame.height == 0:
            return pl.DataFrame(schema=schema)
        return frame.select(list(schema)).cast(schema)

    def state(self) -> pl.DataFrame:
        return self._read("SELECT * FROM query_state ORDER BY query_id", STATE_SCHEMA)

    def events(self) -> pl.DataFrame:
        return self._read(
            "SELECT * FROM query_events ORDER BY event_seq", {"event_seq": pl.Int64, **EVENT_SCHEMA}
        )

    def runs(self) -> list[tuple[str, dt.datetime]]:
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            return con.execute('SELECT run_id, "at" FROM query_runs ORDER BY run_id').fetchall()
        finally:
            con.close()

    def reply_files(self) -> set[str]:
        """sha256 of every returned workbook already read (a file is applied once)."""
        con = duckdb.connect(str(self.path), read_only=True)
        try:
            return {r[0] for r in con.execute("SELECT sha256 FROM reply_files").fetchall()}
        finally:
            con.close()

    def record(
        self,
        run_id: str,
        at: dt.datetime,
        events: pl.DataFrame,
        state: pl.DataFrame,
        reply_files: pl.DataFrame | None = None,
    ) -> None:
        """Append the run's events and replace the state, in one transaction.

        A run id already recorded is refused: the trail never holds a run twice.
        """
        events = events.select(list(EVENT_SCHEMA)).cast(pl.Schema(EVENT_SCHEMA))
        state = state.select(list(STATE_SCHEMA)).cast(pl.Schema(STATE_SCHEMA))
        con = duckdb.connect(str(self.path))
        try:
            con.execute("BEGIN TRANSACTION")
            con.execute("INSERT INTO query_runs VALUES (?, ?)", [run_id, at])
            start = con.execute("SELECT coalesce(max(event_seq), 0) FROM query_events").fetchall()
            numbered = events.with_row_index("event_seq", offset=start[0][0] + 1).with_columns(
                pl.col("event_seq").cast(pl.Int64)
            )
            con.register("new_events", numbered.to_arrow())
            con.execute("INSERT INTO query_events SELECT * FROM new_events")
            con.unregister("new_events")
            con.execute("DELETE FROM query_state")
            con.register("new_state", state.to_arrow())
            con.execute("INSERT INTO query_state SELECT * FROM new_state")
            con.unregister("new_state")
            if reply_files is not None and reply_files.height:
                con.register("new_files", reply_files.to_arrow())
                con.execute(
                    "INSERT INTO reply_files SELECT sha256, path, ?, replies, applied, rejected "
                    "FROM new_files",
                    [run_id],
                )
                con.unregister("new_files")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()

"""The query listing data managers send back to sites, with a lifecycle across runs.

One query per discrepancy: a failed check on a row, a file that could not be loaded, or a
record that disappeared from a cumulative refresh. A query's id depends on what was delivered
(source, table, rule, field and the row's content), not on row numbers, so the same defect
delivered again keeps its id. The lifecycle across runs and the sites' replies are in
`reports.lifecycle` (states), `reports.roundtrip` (one run) and `reports.audit` (the trail);
`write_queries` writes the run's listing to `reports/<run_id>/`. Patients appear by
pseudonymous key; rows by file and row number; never by value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

QUERY_SCHEMA: dict[str, Any] = {
    "query_id": pl.Utf8,
    "status": pl.Utf8,
    "first_seen_run": pl.Utf8,
    "patient_key": pl.Utf8,
    "site": pl.Utf8,
    "source_file": pl.Utf8,
    "source_row": pl.Int64,
    "table_name": pl.Utf8,
    "field": pl.Utf8,
    "rule_id": pl.Utf8,
    "kahn": pl.Utf8,
    "severity": pl.Utf8,
    "message": pl.Utf8,
}


def _id(*parts: pl.Expr) -> pl.Expr:
    key = pl.concat_str([p.cast(pl.Utf8).fill_null("") for p in parts], separator="|")
    return pl.lit("Q") + key.hash(2026).cast(pl.Utf8).str.slice(0, 12)


def derivation_discrepancies(restricted_path: Path) -> pl.DataFrame:
    """Queries the SQL derivations raised (`harmonized.derivation_queries`), as listing rows.

    The id hashes the table, rule, field and the model's `content_key` (what was delivered,
    not the row number), so the same question keeps its id across runs; `source_id` is the
    mapping of the file the row came from (`meta.files`), `row_hash` the content key.
    """
    import duckdb

    schema = {
        "query_id": pl.Utf8,
        "source_id": pl.Utf8,
        "row_hash": pl.Utf8,
        **{
            k: v
            for k, v in QUERY_SCHEMA.items()
            if k not in ("query_id", "status", "first_seen_run")
        },
    }
    con = duckdb.connect(str(restricted_path), read_only=True)
    try:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() "
            "WHERE schema_name = 'harmonized' AND table_name = 'derivation_queries'"
        ).fetchall()[0][0]
        if not exists:
            return pl.DataFrame(schema=schema)
        raw = con.sql(
            "SELECT q.*, f.source_id FROM harmonized.derivation_queries AS q "
            "LEFT JOIN meta.files AS f ON q._source_file = f.path"
        ).pl()
    finally:
        con.close()
    return raw.select(
        _id(pl.col("table_name"), pl.col("rule_id"), pl.col("field"), pl.col("content_key")).alias(
            "query_id"
        ),
        pl.col("source_id").cast(pl.Utf8),
        pl.col("content_key").alias("row_hash"),
        "patient_key",
        "site",
        pl.col("_source_file").alias("source_file"),
        pl.col("_source_row").cast(pl.Int64).alias("source_row"),
        "table_name",
        "field",
        "rule_id",
        "kahn",
        "severity",
        "message",
    ).cast(schema)


def current_discrepancies(result: Any, derived: pl.DataFrame | None = None) -> pl.DataFrame:
    """Discrepancies of this run, before the lifecycle is applied.

    `derived`: the derivations' queries (`derivation_discrepancies`), listed after the failed
    checks, file problems and disappeared records.
    """
    # each later copy of a row has the same failures with the same query ids as its first
    # copy, and `unique` below keeps the first of each id: the copies but the first are left out
    failures = result.quarantine.failures(first_copies=True)
    if (
        "root_cause" in failures.columns
    ):  # rows waiting for a rejected file: its one query counts them
        failures = failures.filter(pl.col("root_cause").is_null())
    rows = failures.select(
        _id(
            pl.col("_source_id"),
            pl.col("table_name"),
            pl.col("check_id"),
            pl.col("column_name"),
            pl.col("row_hash"),
        ).alias("query_id"),
        pl.col("_source_id").alias("source_id"),
        "row_hash",
        "patient_key",
        "site",
        pl.col("_source_file").alias("source_file"),
        pl.col("_source_row").alias("source_row"),
        "table_name",
        pl.col("column_name").alias("field"),
        pl.col("check_id").alias("rule_id"),
        "kahn",
        "severity",
        "message",
    )
    bad_files = result.files.filter(pl.col("status").is_in(["rejected", "unmatched"])).select(
        pl.when(pl.col("status") == "unmatched")
        .then(_id(pl.col("path"), pl.col("status")))
        .otherwise(_id(pl.col("source_id"), pl.col("table_name"), pl.col("status")))
        .alias("query_id"),
        "source_id",
        pl.lit(None, pl.Utf8).alias("row_hash"),
        pl.lit(None, pl.Utf8).alias("patient_key"),
        pl.lit(None, pl.Utf8).alias("site"),
        pl.col("path").alias("source_file"),
        pl.lit(None, pl.Int64).alias("source_row"),
        "table_name",
        pl.lit(None, pl.Utf8).alias("field"),
        ("FILE_" + pl.col("status").str.to_uppercase()).alias("rule_id"),
        pl.lit("conformance.value").alias("kahn"),
        pl.lit("error").alias("severity"),
        (pl.col("error") + pl.lit(". Fix: ") + pl.col("fix").fill_null("")).alias("message"),
    )
    gone = result.disappeared.select(
        _id(
            pl.col("table_name"), pl.col("source_id"), pl.col("patient_key"), pl.col("record_key")
        ).alias("query_id"),
        "source_id",
        pl.lit(None, pl.Utf8).alias("row_hash"),
        "patient_key",
        "site",
        pl.col("current_file").alias("source_file"),
        pl.lit(None, pl.Int64).alias("source_row"),
        "table_name",
        pl.lit(None, pl.Utf8).alias("field"),
        pl.lit("REFRESH_DISAPPEARED").alias("rule_id"),
        pl.lit("completeness").alias("kahn"),
        pl.lit("warning").alias("severity"),
        pl.lit(
            "A record delivered in the previous extract is missing from this one; confirm it was removed on purpose."
        ).alias("message"),
    )
    parts = [rows, bad_files, gone] + ([derived] if derived is not None else [])
    return pl.concat(parts, how="vertical_relaxed").unique(
        "query_id", keep="first", maintain_order=True
    )


def previous_listing(reports: Path, run_id: str) -> pl.DataFrame | None:
    """queries.csv of the latest earlier run folder under `reports/`, if any, unescaped.

    The lifecycle itself reads the audit trail (`reports.audit`), not this listing.
    """
    earlier = (
        sorted(
            p
            for p in reports.iterdir()
            if p.is_dir() and p.name < run_id and (p / "queries.csv").exists()
        )
        if reports.is_dir()
        else []
    )
    if not earlier:
        return None
    return csv_unescape(
        pl.read_csv(earlier[-1] / "queries.csv", schema_overrides=QUERY_SCHEMA, infer_schema=False)
    )


# OWASP "CSV Injection": a cell starting with one of these is run as a formula by spreadsheet
# programs. Such cells get a leading single quote in the CSV (and so do cells that already start
# with quotes before one, so that reading the listing back gives the text as written).
FORMULA_START = r"^'*[=+\-@\t\r\x00]"


def csv_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Text cells that a spreadsheet would evaluate, prefixed with `'` (OWASP CSV injection)."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dtype in frame.schema.items()
        if dtype == pl.Utf8
    )


def csv_unescape(frame: pl.DataFrame) -> pl.DataFrame:
    """The text as written before `csv_safe`: one leading `'` removed where it added one."""
    return frame.with_columns(
        pl.when(pl.col(c).str.contains("^'" + FORMULA_START[1:]))
        .then(pl.col(c).str.slice(1))
        .otherwise(pl.col(c))
        .alias(c)
        for c, dtype in frame.schema.items()
        if dtype == pl.Utf8
    )


LISTING_COLUMNS = (
    *QUERY_SCHEMA,
    "resolution",
    "sender",
    "age_runs",
    "age_days",
)


def write_queries(listing: pl.DataFrame, out_dir: Path) -> None:
    """queries.csv (every field quoted, formula-like cells escaped) and queries.xlsx.

    Pseudonymous: no delivered value and no site comment (those stay in the outbox).

    In the workbook every text cell is written as a string cell, never as a formula or a link,
    so it shows the text as delivered and nothing in it runs when the file is opened.
    """
    import xlsxwriter

    if "opened_run" in listing.columns:
        listing = listing.with_columns(pl.col("opened_run").alias("first_seen_run"))
    listing = listing.with_columns(
        pl.lit(None, pl.Utf8).alias(c) for c in LISTING_COLUMNS if c not in listing.columns
    ).select(list(LISTING_COLUMNS))
    csv_safe(listing).write_csv(out_dir / "queries.csv", quote_style="always")
    workbook = xlsxwriter.Workbook(
        str(out_dir / "queries.xlsx"),
        {"strings_to_formulas": False, "strings_to_urls": False, "strings_to_numbers": False},
    )
    try:
        listing.write_excel(
            workbook, worksheet="queries", autofit=True, freeze_panes=(1, 0), autofilter=True
        )
    finally:
        workbook.close()

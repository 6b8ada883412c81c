"""The per-site outbox: one query workbook per site or laboratory, in the restricted zone.

`warehouse/restricted/outbox/<SITE>/queries_<run_id>.xlsx` holds one row per open query of
what that site (or laboratory) itself delivered: where (file, row), which patient in the
site's own reference (the MRN as delivered) and which visit or specimen date, the column by the
site's own name, the delivered value, what was expected and how to fix it in words for the
site (`schemas/site_messages.yaml`), and two reply columns: `site_reply` (a validated list:
corrected / confirmed_as_is / cannot_resolve) and `site_comment`. One sheet per table, frozen
header, filters, and a cover sheet with the counts. Values come from the restricted database
(`quarantine.rows.raw_json` for quarantined rows, the staging tables for loaded rows with a
warning). Every cell is written as a string, so a delivered value starting with `=` stays text.

A workbook never holds another site's rows: the rows are chosen by the sender of the file
the discrepancy was found in, and a test checks every identifier against the other outboxes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.ingest.sources import SourceMapping, load_sources
from blinaetl.resources import schemas_dir
from blinaetl.validate.contracts import CheckSpec, Contract, load_contracts

REPLIES = ("corrected", "confirmed_as_is", "cannot_resolve")
COVER = "cover"
# the date that places a record in the patient's history, per table
RECORD_DATE = {
    "patients": "diagnosis_date",
    "treatments": "start_date",
    "assessments": "assessment_date",
    "outcomes": "event_date",
    "reported_responses": "response_date",
    "flow_results": "collection_date",
    "imaging_reports": "report_date",
}
# columns of a query sheet: (header, width); the reply columns come last
COLUMNS = (
    ("query_id", 16),
    ("status", 13),
    ("opened_on", 11),
    ("age_runs", 9),
    ("age_days", 9),
    ("file", 34),
    ("row", 6),
    ("patient_ref", 14),
    ("record_date", 12),
    ("column", 18),
    ("delivered_value", 18),
    ("expected", 30),
    ("how_to_fix", 60),
    ("site_reply", 16),
    ("site_comment", 40),
)
HEADERS = tuple(c for c, _ in COLUMNS)
VALUE_COLUMNS = HEADERS[: HEADERS.index("site_reply")]
STATUS_TEXT = {
    "new": "new",
    "reopened": "reopened",
    "open": "open",
    "miscorrected": "still failing",
    "corrected": "awaiting data",
}
TYPE_WORDS = {
    "date": "date",
    "int": "whole number",
    "float": "number",
    "bool": "yes/no value",
    "string": "text",
}
FILE_RULES = ("FILE_REJECTED", "FILE_UNMATCHED")


# --- words for the site ---------------------------------------------------------------------


@dataclass(frozen=True)
class SiteText:
    reply_hint: str
    types: dict[str, dict[str, str]]
    checks: dict[str, dict[str, str]]
    rules: dict[str, dict[str, str]]


def load_site_text(path: Path | None = None) -> SiteText:
    import yaml

    doc = yaml.safe_load((path or schemas_dir() / "site_messages.yaml").read_text("utf-8"))
    return SiteText(doc["reply_hint"], doc["types"], doc.get("checks") or {}, doc["rules"])


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def check_words(
    text: SiteText, check: CheckSpec, contract: Contract, names: dict[str, str]
) -> tuple[str, str]:
    """(expected, how to fix) of one check for the site, with the site's own column names."""
    base = text.types.get(check.check, {})
    own = text.checks.get(check.id, {})
    field = contract.field(check.column) if check.column else None
    params = check.params

    def name(f: str | None) -> str:
        return names.get(f, f) if f else ""

    values = params.get("values") or (field.allowed if field else None) or []
    fill = _Blank(
        column=name(check.column),
        min=params.get("min", ""),
        max=params.get("max", ""),
        unit=f" {field.unit}" if field is not None and getattr(field, "unit", None) else "",
        values=", ".join(str(v) for v in values),
        columns=", ".join(name(c) for c in params.get("columns") or []),
        before=name(params.get("before") or params.get("start")),
        after=name(params.get("after") or params.get("end")),
        type=TYPE_WORDS.get(field.type, field.type) if field else "",
    )
    expected = (own.get("expected") or base.get("expected") or "").format_map(fill)
    fix = (own.get("fix") or base.get("fix") or check.message).format_map(fill)
    return expected, f"{fix} {text.reply_hint}"


def rule_words(text: SiteText, rule_id: str, error: str) -> tuple[str, str]:
    rule = text.rules.get(rule_id) or text.rules["default"]
    fill = _Blank(error=(error or "").split(". Fix:")[0].rstrip("."), expected="")
    return rule["expected"].format_map(fill), f"{rule['fix'].format_map(fill)} {text.reply_hint}"


# --- who sent what --------------------------------------------------------------------------


def sender_of(source: SourceMapping | None, path: str | None) -> str | None:
    """The site or laboratory that delivered a file: its mapping's site or lab, else the
    folder of the landing path (`<kind>/<SITE>/...`)."""
    if source is not None and (source.site or source.lab):
        return source.site or source.lab
    parts = (path or "").split("/")
    return parts[1] if len(parts) > 2 else None


def with_senders(
    current: pl.DataFrame, files: pl.DataFrame, sources: list[SourceMapping]
) -> pl.DataFrame:
    """This run's discrepancies with `sender`, `file_sha256` and `discrepancy_id`."""
    by_id = {s.source: s for s in sources}
    sha = files.select(pl.col("path").alias("source_file"), pl.col("sha256").alias("file_sha256"))
    out = current.join(sha, on="source_file", how="left", maintain_order="left")
    pairs = out.select("source_id", "source_file").unique()
    senders = pl.DataFrame(
        {
            "source_id": pairs["source_id"],
            "source_file": pairs["source_file"],
            "sender": [
                sender_of(by_id.get(sid), path)
                for sid, path in pairs.select("source_id", "source_file").iter_rows()
            ],
        },
        schema={"source_id": pl.Utf8, "source_file": pl.Utf8, "sender": pl.Utf8},
    )
    return out.join(
        senders, on=["source_id", "source_file"], how="left", nulls_equal=True
    ).with_columns(pl.col("query_id").alias("discrepancy_id"))


# --- the delivered details (restricted zone) ------------------------------------------------


def _involved(check: CheckSpec | None) -> list[str]:
    if check is None:
        return []
    if check.column:
        return [check.column]
    p = check.params
    if check.check == "known_patient":
        return ["mrn"]
    cols = [c for c in (p.get("columns") or []) if c]
    cols += [p[k] for k in ("before", "after", "start", "end") if p.get(k)]
    return list(dict.fromkeys(cols))


DETAIL_COLUMNS = (
    "query_id",
    "patient_ref",
    "record_date",
    "column",
    "delivered_value",
    "expected",
    "how_to_fix",
)
# what decides the words and the columns shown of a query
WORD_KEY = ["source_id", "table_name", "rule_id", "field", "source_file", "message"]
ROW_KEY = ["source_file", "source_row"]
_WORD_SCHEMA = pl.Schema(
    {
        "source_id": pl.String(),
        "table_name": pl.String(),
        "rule_id": pl.String(),
        "field": pl.String(),
        "source_file": pl.String(),
        "message": pl.String(),
        "expected": pl.String(),
        "how_to_fix": pl.String(),
        "fields": pl.List(pl.String()),
        "names": pl.List(pl.String()),
        "mrn_name": pl.String(),
        "date_field": pl.String(),
        "date_name": pl.String(),
    }
)


def site_column_names(source: SourceMapping | None, table: str | None) -> dict[str, str]:
    """Canonical column -> the site's own column name, from the source's mapping of `table`."""
    if source is None:
        return {}
    mapping = next((f for f in source.files if f.table == table), None)
    return dict(mapping.columns) if mapping is not None else {}


def derive_query_words(
    queries: pl.DataFrame,
    contracts: dict[str, Contract],
    sources: list[SourceMapping],
    files: pl.DataFrame | None,
) -> pl.DataFrame:
    """Per distinct `WORD_KEY` of the queries (one step per kind of discrepancy, not per row):
    expected and how to fix in words for the site, the fields involved (`fields`, canonical;
    `names`, the site's), and the site's names of the MRN and of the record date."""
    text = load_site_text()
    by_id = {s.source: s for s in sources}
    checks = {c.id: (c, t) for t in contracts.values() for c in t.checks}
    errors = (
        dict(files.select("path", pl.concat_str("error", pl.lit(""))).iter_rows())
        if files is not None
        else {}
    )
    out = []
    for key in queries.select(WORD_KEY).unique(maintain_order=True).iter_rows(named=True):
        names = site_column_names(by_id.get(key["source_id"]), key["table_name"])
        spec = checks.get(key["rule_id"])
        if spec is not None:
            expected, fix = check_words(text, spec[0], spec[1], names)
        else:
            error = errors.get(key["source_file"]) or key["message"] or ""
            expected, fix = rule_words(text, key["rule_id"], error)
        involved = _involved(spec[0] if spec else None)
        if spec is not None and not involved and key["field"]:
            involved = [key["field"]]
        date_field = RECORD_DATE.get(key["table_name"] or "")
        out.append(
            {
                **key,
                "expected": expected,
                "how_to_fix": fix,
                "fields": involved,
                "names": [names.get(f, f) for f in involved],
                "mrn_name": names.get("mrn", "mrn"),
                "date_field": date_field,
                "date_name": names.get(date_field, date_field) if date_field else None,
            }
        )
    return pl.DataFrame(out, schema=_WORD_SCHEMA)


def list_wanted_values(queries: pl.DataFrame, words: pl.DataFrame) -> pl.DataFrame:
    """One row per value a query shows: `role` (mrn, date, involved), `position` among the
    involved fields, the canonical `field` and the site's `name` of it."""
    q = queries.select("query_id", *WORD_KEY, "source_row").join(
        words, on=WORD_KEY, how="left", nulls_equal=True, maintain_order="left"
    )
    base = ["query_id", *ROW_KEY]
    involved = (
        q.select(
            *base,
            "fields",
            "names",
            pl.int_ranges(pl.col("fields").list.len(), dtype=pl.Int64).alias("position"),
        )
        .explode("fields", "names", "position")
        .filter(pl.col("fields").is_not_null())
        .select(
            *base,
            pl.lit("involved").alias("role"),
            "position",
            pl.col("fields").alias("field"),
            pl.col("names").alias("name"),
        )
    )
    mrn = q.select(
        *base,
        pl.lit("mrn").alias("role"),
        pl.lit(0, pl.Int64).alias("position"),
        pl.lit("mrn").alias("field"),
        pl.col("mrn_name").alias("name"),
    )
    date = q.filter(pl.col("date_field").is_not_null()).select(
        *base,
        pl.lit("date").alias("role"),
        pl.lit(0, pl.Int64).alias("position"),
        pl.col("date_field").alias("field"),
        pl.col("date_name").alias("name"),
    )
    return pl.concat([involved, mrn, date])


def read_delivered_values(
    restricted_path: Path, queries: pl.DataFrame, contracts: dict[str, Contract]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The values of the queried records, as two long frames (`source_file`, `source_row`,
    `name`/`field`, `value`, all text): as delivered for quarantined rows (`raw_json`, by the
    site's column name) and as loaded for staged rows (by canonical name). A record found in
    quarantine is shown as delivered only. Each frame has a row (with a NULL name) for every
    record it holds, so a record without any value is still known to be there."""
    raw_schema = {"source_file": pl.Utf8, "source_row": pl.Int64, "name": pl.Utf8, "value": pl.Utf8}
    typed_schema = {**raw_schema, "field": pl.Utf8}
    del typed_schema["name"]
    keys = (
        queries.filter(pl.col("source_row").is_not_null())
        .select(pl.col("source_file").alias("f"), pl.col("source_row").alias("r"), "table_name")
        .unique()
    )
    if keys.height == 0 or not restricted_path.exists():
        return pl.DataFrame(schema=raw_schema), pl.DataFrame(schema=typed_schema)
    con = duckdb.connect(str(restricted_path), read_only=True)
    try:
        con.register("wanted", keys.to_arrow())
        raw = con.sql(RAW_VALUES_SQL).pl()
        typed = [
            read_staged_values(con, table, contracts[table])
            for table in keys["table_name"].unique().sort().to_list()
            if table in contracts
        ]
        con.unregister("wanted")
    finally:
        con.close()
    raw = raw.cast(pl.Schema(raw_schema)).unique([*ROW_KEY, "name"], keep="last")
    typed_all = pl.concat([t.cast(pl.Schema(typed_schema)) for t in typed]) if typed else None
    if typed_all is None:
        typed_all = pl.DataFrame(schema=typed_schema)
    return raw, typed_all.unique([*ROW_KEY, "field"], keep="last")


# every key of each queried quarantined row's raw_json, its value as Python's str() of the
# decoded JSON value would write it (text as is, true/false as True/False, null as NULL);
# a row with an empty or NULL raw_json still gives one row with a NULL name
RAW_VALUES_SQL = """
SELECT
    q._source_file AS source_file,
    q._source_row AS source_row,
    e.key AS name,
    CASE json_type(e.value)
        WHEN 'VARCHAR' THEN e.value ->> '$'
        WHEN 'NULL' THEN NULL
        WHEN 'BOOLEAN' THEN CASE WHEN CAST(e.value AS BOOLEAN) THEN 'True' ELSE 'False' END
        ELSE CAST(e.value AS VARCHAR)
    END AS value
FROM quarantine.rows AS q
INNER JOIN wanted AS w
    ON q._source_file = w.f AND q._source_row = w.r AND q.table_name = w.table_name
LEFT JOIN LATERAL json_each(coalesce(nullif(q.raw_json, ''), '{}')) AS e ON TRUE
"""


def read_staged_values(
    con: duckdb.DuckDBPyConnection, table: str, contract: Contract
) -> pl.DataFrame:
    """The queried loaded rows of `staging.<table>`, one row per (record, canonical field)."""
    fields = contract.field_names
    sel = ", ".join(f"CAST(s.{c} AS VARCHAR) AS {c}" for c in fields)
    wide = con.sql(
        f"SELECT s._source_file AS source_file, s._source_row AS source_row, {sel} "
        f"FROM staging.{table} s "
        "JOIN wanted w ON s._source_file = w.f AND s._source_row = w.r AND w.table_name = ?",
        params=[table],
    ).pl()
    return wide.unpivot(index=ROW_KEY, variable_name="field", value_name="value")


def resolve_values(wanted: pl.DataFrame, raw: pl.DataFrame, typed: pl.DataFrame) -> pl.DataFrame:
    """`wanted` with the `value` of each: as delivered where the record is quarantined, else as
    loaded, else NULL."""
    in_raw = raw.select(ROW_KEY).unique().with_columns(pl.lit(True).alias("_raw"))
    in_typed = typed.select(ROW_KEY).unique().with_columns(pl.lit(True).alias("_typed"))
    return (
        wanted.join(in_raw, on=ROW_KEY, how="left", maintain_order="left")
        .join(in_typed, on=ROW_KEY, how="left", maintain_order="left")
        .join(
            raw.drop_nulls("name").rename({"value": "_raw_value"}),
            on=[*ROW_KEY, "name"],
            how="left",
            maintain_order="left",
        )
        .join(
            typed.drop_nulls("field").rename({"value": "_typed_value"}),
            on=[*ROW_KEY, "field"],
            how="left",
            maintain_order="left",
        )
        .with_columns(
            pl.when(pl.col("_raw"))
            .then(pl.col("_raw_value"))
            .when(pl.col("_typed"))
            .then(pl.col("_typed_value"))
            .otherwise(pl.lit(None, pl.Utf8))
            .alias("value")
        )
    )


def delivered_details(
    restricted_path: Path,
    queries: pl.DataFrame,
    contracts: dict[str, Contract] | None = None,
    sources: list[SourceMapping] | None = None,
    files: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per query: the site's column name(s), the delivered value(s), the MRN and record date as
    delivered, expected and how to fix. Restricted: never write this frame outside the zone.

    One field involved shows its value; several show `name=value; name=value` in the check's
    order (an empty value as nothing after `=`)."""
    contracts = contracts or load_contracts()
    sources = sources if sources is not None else load_sources(None, contracts)
    words = derive_query_words(queries, contracts, sources, files)
    raw, typed = read_delivered_values(restricted_path, queries, contracts)
    values = resolve_values(list_wanted_values(queries, words), raw, typed)
    involved = (
        values.filter(pl.col("role") == "involved")
        .sort("query_id", "position")
        .group_by("query_id", maintain_order=True)
        .agg(
            pl.len().alias("_n"),
            pl.col("value").first().alias("_only"),
            (pl.col("name") + pl.lit("=") + pl.col("value").fill_null(""))
            .str.join("; ")
            .alias("_pairs"),
            pl.col("name").str.join(", ").alias("column"),
        )
    )
    one = ["query_id", "value"]
    mrn = values.filter(pl.col("role") == "mrn").select(one).rename({"value": "patient_ref"})
    date = values.filter(pl.col("role") == "date").select(one).rename({"value": "record_date"})
    return (
        queries.select("query_id", *WORD_KEY)
        .join(words, on=WORD_KEY, how="left", nulls_equal=True, maintain_order="left")
        .join(involved, on="query_id", how="left", maintain_order="left")
        .join(mrn, on="query_id", how="left", maintain_order="left")
        .join(date, on="query_id", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col("_n") == 1)
            .then(pl.col("_only"))
            .otherwise(pl.col("_pairs"))
            .alias("delivered_value")
        )
        .select(DETAIL_COLUMNS)
        .cast(dict.fromkeys(DETAIL_COLUMNS, pl.Utf8))
    )


# --- the workbooks --------------------------------------------------------------------------


def outbox_root(restricted_path: Path) -> Path:
    return restricted_path.parent / "outbox"


def workbook_path(restricted_path: Path, sender: str, run_id: str) -> Path:
    return outbox_root(restricted_path) / sender / f"queries_{run_id}.xlsx"


def _sheet_name(table: str | None) -> str:
    return (table or "files")[:31]


@dataclass(frozen=True)
class _Formats:
    bold: Any
    head: Any
    reply: Any
    wrap: Any


def _formats(wb: Any) -> _Formats:
    return _Formats(
        bold=wb.add_format({"bold": True}),
        head=wb.add_format({"bold": True, "bg_color": "#F4F4F6", "border": 1}),
        reply=wb.add_format({"bg_color": "#FFF8DC", "border": 1, "locked": False}),
        wrap=wb.add_format({"text_wrap": True, "valign": "top"}),
    )


def _table_of(rows: pl.DataFrame, table: str) -> pl.DataFrame:
    return rows.filter(pl.col("table_name").fill_null("files") == table)


def write_cover(
    wb: Any,
    fmt: _Formats,
    sender: str,
    run_id: str,
    rows: pl.DataFrame,
    tables: list[str],
    not_listed: int,
) -> None:
    """The cover sheet: who and which run, the counts, how to reply, queries per sheet."""
    cover = wb.add_worksheet(COVER)
    cover.set_column(0, 0, 26)
    cover.set_column(1, 6, 14)
    cover.write_string(0, 0, f"Data queries for {sender}", fmt.bold)
    meta = (
        ("site", sender),
        ("run_id", run_id),
        ("written_at", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
        ("open_queries", str(rows.height + not_listed)),
        ("not_listed", str(not_listed)),
    )
    for i, (k, v) in enumerate(meta, start=2):
        cover.write_string(i, 0, k, fmt.bold)
        cover.write_string(i, 1, v)
    if not_listed:
        cover.write_string(
            6,
            2,
            f"{not_listed} more open queries are not listed: each sheet lists the first "
            "ones by file and row; they repeat the causes listed.",
        )
    cover.write_string(
        8,
        0,
        "For each row of the table sheets, choose site_reply (corrected / confirmed_as_is / "
        "cannot_resolve) and add a comment. Change nothing else: rows whose other columns were "
        "edited are not applied. Send the workbook back as it is; corrected data comes in your "
        "next extract.",
    )
    cover.write_row(
        9,
        0,
        ["sheet", "queries", "new", "reopened", "open", "still failing", "awaiting data"],
        fmt.head,
    )
    for i, table in enumerate(tables, start=11):
        part = _table_of(rows, table)
        cover.write_string(i, 0, _sheet_name(table))
        cover.write_number(i, 1, part.height)
        for j, st in enumerate(("new", "reopened", "open", "miscorrected", "corrected"), start=2):
            cover.write_number(i, j, int((part["status"] == st).sum()))


def _cells(r: dict[str, Any]) -> dict[str, Any]:
    """The value columns of one query row, by header."""
    return {
        "query_id": r["query_id"],
        "status": STATUS_TEXT.get(r["status"], r["status"]),
        "opened_on": r["opened_on"],
        "age_runs": r["age_runs"],
        "age_days": r["age_days"],
        "file": r["source_file"],
        "row": r["source_row"],
        "patient_ref": r["patient_ref"],
        "record_date": r["record_date"],
        "column": r["column"],
        "delivered_value": r["delivered_value"],
        "expected": r["expected"],
        "how_to_fix": r["how_to_fix"],
    }


def write_query_sheet(wb: Any, fmt: _Formats, table: str, rows: pl.DataFrame) -> None:
    """One table's sheet: a row per query (every cell text), the reply columns to fill, a
    frozen header, filters and the reply list."""
    part = _table_of(rows, table).sort("source_file", "source_row", "query_id", nulls_last=True)
    ws = wb.add_worksheet(_sheet_name(table))
    for j, (name, width) in enumerate(COLUMNS):
        ws.set_column(j, j, width, fmt.wrap if name in ("expected", "how_to_fix") else None)
        ws.write_string(0, j, name, fmt.head)
    for i, r in enumerate(part.iter_rows(named=True), start=1):
        cells = _cells(r)
        for j, name in enumerate(VALUE_COLUMNS):
            v = cells[name]
            if v is not None:
                ws.write_string(i, j, str(v))
        ws.write_blank(i, HEADERS.index("site_reply"), None, fmt.reply)
        ws.write_blank(i, HEADERS.index("site_comment"), None, fmt.reply)
    last = max(part.height, 1)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, last, len(COLUMNS) - 1)
    col = HEADERS.index("site_reply")
    ws.data_validation(
        1,
        col,
        max(last, 1000),
        col,
        {
            "validate": "list",
            "source": list(REPLIES),
            "error_title": "site_reply",
            "error_message": "Choose corrected, confirmed_as_is or cannot_resolve.",
        },
    )


def write_workbook(
    path: Path, sender: str, run_id: str, rows: pl.DataFrame, not_listed: int = 0
) -> Path:
    """One site's workbook: a cover sheet with the counts, one sheet per table."""
    import xlsxwriter

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path), {"strings_to_formulas": False, "strings_to_urls": False})
    try:
        fmt = _formats(wb)
        tables = sorted(rows["table_name"].fill_null("files").unique().to_list())
        write_cover(wb, fmt, sender, run_id, rows, tables, not_listed)
        for table in tables:
            write_query_sheet(wb, fmt, table, rows)
    finally:
        wb.close()
    path.chmod(0o600)
    return path


def write_outboxes(
    restricted_path: Path,
    run_id: str,
    open_queries: pl.DataFrame,
    details: pl.DataFrame,
    senders: list[str] | None = None,
    not_listed: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Write the workbook of every sender of the run (with no open query too: its cover says
    so); returns sender -> path."""
    rows = open_queries.join(details, on="query_id", how="left", maintain_order="left")
    out = {}
    everyone = set(rows["sender"].drop_nulls().unique().to_list()) | set(senders or [])
    for sender in sorted(everyone):
        part = rows.filter(pl.col("sender") == sender)
        out[sender] = write_workbook(
            workbook_path(restricted_path, sender, run_id),
            sender,
            run_id,
            part,
            (not_listed or {}).get(sender, 0),
        )
    return out

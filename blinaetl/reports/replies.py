"""Site replies read back: the query workbooks a site returns in `landing/queries/<SITE>/`.

Each returned workbook is compared with the copy the outbox kept of what was sent (same site,
same run id from its cover sheet). A reply is applied only when it is one of the three
answers, for a query id that was sent to that site in that workbook, that is still open, and
when nothing but `site_reply` and `site_comment` was changed on its row. Every other reply is
reported (file, sheet, row, query id and why) and recorded as `reply_rejected` in the audit
trail, never applied. A workbook is read once: its sha256 is remembered in the audit file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from blinaetl.reports.audit import LIVE, QueryAudit
from blinaetl.reports.outbox import COVER, HEADERS, REPLIES, VALUE_COLUMNS, workbook_path

QUERY_ID = re.compile(r"Q[0-9]{1,20}")
REPLY_SCHEMA = {
    "query_id": pl.Utf8,
    "reply": pl.Utf8,
    "site_comment": pl.Utf8,
    "sender": pl.Utf8,
    "reply_file": pl.Utf8,
}
PROBLEM_SCHEMA = {
    "reply_file": pl.Utf8,
    "sheet": pl.Utf8,
    "row": pl.Int64,
    "query_id": pl.Utf8,
    "sender": pl.Utf8,
    "problem": pl.Utf8,
}
FILE_SCHEMA = {
    "sha256": pl.Utf8,
    "path": pl.Utf8,
    "replies": pl.Int64,
    "applied": pl.Int64,
    "rejected": pl.Int64,
}
ACCEPTED_SCHEMA = {
    "_source_id": pl.Utf8,
    "table_name": pl.Utf8,
    "check_id": pl.Utf8,
    "row_hash": pl.Utf8,
}


@dataclass
class Replies:
    """What the returned workbooks of one run said."""

    applied: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REPLY_SCHEMA))
    problems: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PROBLEM_SCHEMA))
    files: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FILE_SCHEMA))
    accepted: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ACCEPTED_SCHEMA))


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _sheets(path: Path) -> tuple[dict[str, str], dict[str, list[tuple[int, dict[str, str]]]]]:
    """(cover values, sheet -> [(row number, {header: text})]) of a query workbook."""
    import openpyxl

    wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        cover: dict[str, str] = {}
        if COVER in wb.sheetnames:
            for row in wb[COVER].iter_rows(min_row=1, max_row=8, max_col=2, values_only=True):
                if row and row[0]:
                    cover[_text(row[0])] = _text(row[1] if len(row) > 1 else None)
        sheets: dict[str, list[tuple[int, dict[str, str]]]] = {}
        for name in wb.sheetnames:
            if name == COVER:
                continue
            rows = wb[name].iter_rows(values_only=True)
            header = [_text(h) for h in next(rows, ())]
            if "query_id" not in header or "site_reply" not in header:
                continue
            body = []
            for n, values in enumerate(rows, start=2):
                rec = {h: _text(v) for h, v in zip(header, values, strict=False) if h}
                if any(rec.values()):
                    body.append((n, rec))
            sheets[name] = body
        return cover, sheets
    finally:
        wb.close()


def _problem(
    rel: str, folder: str, sheet: str | None, row: int | None, qid: str | None, why: str
) -> dict[str, Any]:
    return {
        "reply_file": rel,
        "sheet": sheet,
        "row": row,
        # a cell a site typed may hold anything: only a query id's shape is kept
        "query_id": qid if qid and QUERY_ID.fullmatch(qid) else None,
        "sender": folder,
        "problem": why,
    }


def check_cover(
    cover: dict[str, str], folder: str, restricted_path: Path
) -> tuple[Path | None, str | None]:
    """(the workbook sent, or None; why the returned one cannot be matched to it, or None)."""
    site, run_id = cover.get("site", ""), cover.get("run_id", "")
    sent_path = workbook_path(restricted_path, site, run_id) if site and run_id else None
    if site != folder:
        return sent_path, (
            f"the cover sheet names another site than {folder}; a workbook must be "
            "returned to the folder of the site it was sent to, its cover left as sent"
        )
    if sent_path is None or not sent_path.exists():
        return sent_path, (
            f"no workbook with this run id was sent to {folder}; the cover sheet's site "
            "and run_id must be left as sent"
        )
    return sent_path, None


def judge_reply(
    rec: dict[str, str],
    sent: dict[str, dict[str, str]],
    status: dict[str, str],
    applied: dict[str, dict[str, Any]],
) -> str | None:
    """Why a reply row cannot be applied, or None when it can."""
    reply, qid = rec.get("site_reply", ""), rec.get("query_id", "")
    if reply not in REPLIES:
        return f"site_reply is not one of {', '.join(REPLIES)}"
    if qid not in sent:
        by_place = {(r.get("file"), r.get("row"), r.get("column")): q for q, r in sent.items()}
        was = by_place.get((rec.get("file"), rec.get("row"), rec.get("column")))
        if was:
            return f"the query id was changed (sent as {was})"
        return "unknown query id: it was not sent to this site in this workbook"
    edited = [
        c for c in VALUE_COLUMNS if c != "query_id" and rec.get(c, "") != sent[qid].get(c, "")
    ]
    if edited:
        return (
            "column(s) edited by hand: "
            + ", ".join(edited)
            + "; only site_reply and site_comment may change"
        )
    now = status.get(qid)
    if now not in LIVE:
        return f"the query is no longer open ({now or 'unknown'})"
    if qid in applied:
        return f"a second reply to this query (first in {applied[qid]['reply_file']})"
    return None


def read_returned_workbook(
    path: Path,
    landing: Path,
    restricted_path: Path,
    status: dict[str, str],
    applied: dict[str, dict[str, Any]],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Read one returned workbook: adds its applicable replies to `applied`; returns its
    problems and its counts (replies, applied, rejected)."""
    rel = path.relative_to(landing).as_posix()
    folder = path.parent.name
    problems: list[dict[str, Any]] = []
    try:
        cover, sheets = _sheets(path)
    except Exception as exc:  # openpyxl raises many types for a file that is not a workbook
        unreadable = f"not a readable query workbook ({type(exc).__name__})"
        problems.append(_problem(rel, folder, None, None, None, unreadable))
        return problems, {"replies": 0, "applied": 0, "rejected": 1}
    sent_path, cover_problem = check_cover(cover, folder, restricted_path)
    if cover_problem is not None:
        problems.append(_problem(rel, folder, COVER, None, None, cover_problem))
        sheets = {}
    sent: dict[str, dict[str, str]] = {}
    if sheets and sent_path is not None:
        _, sent_sheets = _sheets(sent_path)
        sent = {rec["query_id"]: rec for body in sent_sheets.values() for _, rec in body}
    n_replies = n_applied = 0
    for sheet, body in sheets.items():
        for row, rec in body:
            if not rec.get("site_reply", ""):
                continue
            n_replies += 1
            qid = rec.get("query_id", "")
            why = judge_reply(rec, sent, status, applied)
            if why is not None:
                problems.append(_problem(rel, folder, sheet, row, qid, why))
                continue
            applied[qid] = {
                "query_id": qid,
                "reply": rec["site_reply"],
                "site_comment": rec.get("site_comment") or None,
                "sender": folder,
                "reply_file": rel,
            }
            n_applied += 1
    return problems, {"replies": n_replies, "applied": n_applied, "rejected": len(problems)}


def accepted_findings(state: pl.DataFrame, applied: dict[str, dict[str, Any]]) -> pl.DataFrame:
    """The findings confirmed as delivered (before or by this run's replies): loaded from now
    on with the check as a warning."""
    confirmed = set(state.filter(pl.col("status") == "closed_confirmed")["query_id"])
    confirmed |= {q for q, r in applied.items() if r["reply"] == "confirmed_as_is"}
    return (
        state.filter(pl.col("query_id").is_in(list(confirmed)) & pl.col("row_hash").is_not_null())
        .select(
            pl.col("source_id").alias("_source_id"),
            "table_name",
            pl.col("rule_id").alias("check_id"),
            "row_hash",
        )
        .cast(pl.Schema(ACCEPTED_SCHEMA))
    )


def read_replies(landing: Path, restricted_path: Path, audit: QueryAudit) -> Replies:
    """Read every new returned workbook of `landing/queries/*/`; decide what applies."""
    state = audit.state()
    status = dict(state.select("query_id", "status").iter_rows())
    seen = audit.reply_files()
    root = landing / "queries"
    applied: dict[str, dict[str, Any]] = {}
    problems: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    paths = sorted(p for p in root.glob("*/*.xlsx") if p.is_file()) if root.is_dir() else []
    for path in paths:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        if sha in seen:
            continue
        found, counts = read_returned_workbook(path, landing, restricted_path, status, applied)
        problems += found
        files.append({"sha256": sha, "path": path.relative_to(landing).as_posix(), **counts})
    return Replies(
        applied=pl.DataFrame(list(applied.values()), schema=REPLY_SCHEMA),
        problems=pl.DataFrame(problems, schema=PROBLEM_SCHEMA),
        files=pl.DataFrame(files, schema=FILE_SCHEMA),
        accepted=accepted_findings(state, applied),
    )


__all__ = ["HEADERS", "Replies", "read_replies"]

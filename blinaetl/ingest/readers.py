"""Readers for statistical-package files and CDISC Dataset-JSON, as text tables.

SAS transport (XPT) and SAS7BDAT, SPSS (.sav/.zsav) and Stata (.dta) are read with pyreadstat;
CDISC Dataset-JSON (1.0 and 1.1) with the standard library. Like every other reader of the
landing, each returns every column as text (empty -> null) plus `_source_row` (1 = the first
record), and the variable labels the file carries (kept by the ingest beside the mapped fields).
Date-typed variables are written as text in the mapping's `date_format`, so they parse back with
the same mapping as a site's CSV dates. The file's own declared character encoding is used
unless the mapping sets `encoding`, which then wins (XPT files declare none).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import polars as pl

STAT_FORMATS = {"xpt", "sas7bdat", "sav", "dta"}
JSON_FORMATS = {"dataset-json"}
FORMAT_NAMES = {
    "xpt": "SAS transport (XPT)",
    "sas7bdat": "SAS7BDAT",
    "sav": "SPSS (.sav)",
    "dta": "Stata (.dta)",
    "dataset-json": "CDISC Dataset-JSON",
}
# the mapping's encoding names (Python codecs) as iconv, which ReadStat uses
ICONV = {
    "utf-8": "UTF-8",
    "utf8": "UTF-8",
    "latin-1": "LATIN1",
    "latin1": "LATIN1",
    "iso-8859-1": "LATIN1",
    "cp1252": "WINDOWS-1252",
}


class ReaderError(Exception):
    """The file cannot be read as its declared format: the message and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass
class Table:
    frame: pl.DataFrame  # text columns + `_source_row`
    labels: dict[str, str] = field(default_factory=dict)  # column -> label the file carries
    encoding: str | None = None  # the encoding the file declares, if any


def _reader(fmt: str) -> Callable[..., Any]:
    import pyreadstat

    read = {
        "xpt": pyreadstat.read_xport,
        "sas7bdat": pyreadstat.read_sas7bdat,
        "sav": pyreadstat.read_sav,
        "dta": pyreadstat.read_dta,
    }[fmt]
    # pyreadstat's stubs give its Cython readers the bare type `function`, which mypy does not
    # accept as a Callable; each takes a path and keyword options and returns (frame, metadata)
    return cast(Callable[..., Any], read)


def _as_text(frame: pl.DataFrame, date_format: str) -> pl.DataFrame:
    exprs = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.Date or isinstance(dtype, pl.Datetime):
            exprs.append(col.dt.strftime(date_format).alias(name))
        elif dtype.is_float():
            # whole numbers without ".0" (SAS stores every number as a double)
            exprs.append(
                pl.when(col.is_finite() & (col == col.round(0)) & (col.abs() < 2.0**53))
                .then(col.cast(pl.Int64).cast(pl.Utf8))
                .otherwise(col.cast(pl.Utf8))
                .alias(name)
            )
        else:
            exprs.append(col.cast(pl.Utf8).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def read_statistical(
    path: Path, fmt: str, rel: str, date_format: str, encoding: str | None
) -> Table:
    """A SAS, SPSS or Stata file as text; `encoding` (the mapping's) overrides the file's."""
    kwargs: dict[str, Any] = {"output_format": "polars"}
    if encoding:
        kwargs["encoding"] = ICONV.get(encoding.lower(), encoding)
    try:
        frame, meta = _reader(fmt)(str(path), **kwargs)
    except Exception as exc:  # pyreadstat raises ReadstatError and others for unreadable files
        raise ReaderError(
            f"{rel}: is not a readable {FORMAT_NAMES[fmt]} file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160] if str(exc) else 'no detail'})",
            "export the file again from the statistics package, fix 'format' in the source "
            "mapping, or set 'encoding' there if the file's text is in another encoding",
        ) from exc
    frame = _as_text(frame, date_format)
    labels = {
        k: str(v) for k, v in (meta.column_names_to_labels or {}).items() if v not in (None, "")
    }
    frame = frame.with_columns((pl.int_range(pl.len()) + 1).cast(pl.Int64).alias("_source_row"))
    return Table(frame, labels, getattr(meta, "file_encoding", None))


def read_dataset_json(path: Path, rel: str, date_format: str) -> Table:
    """A CDISC Dataset-JSON file (version 1.1 `columns`/`rows`, or 1.0 `itemGroupData`)."""
    fix = "export the dataset again as CDISC Dataset-JSON, or fix 'format' in the source mapping"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReaderError(f"{rel}: is not valid JSON ({type(exc).__name__})", fix) from exc
    items: list[dict] | None = None
    rows: list[list] | None = None
    if isinstance(doc, dict) and "columns" in doc:
        items, rows = doc.get("columns"), doc.get("rows", [])
    elif isinstance(doc, dict):
        for key in ("clinicalData", "referenceData"):
            groups = (doc.get(key) or {}).get("itemGroupData") or {}
            if groups:
                group = next(iter(groups.values()))
                items, rows = group.get("items"), group.get("itemData", [])
                break
    if not isinstance(items, list) or not isinstance(rows, list):
        raise ReaderError(
            f"{rel}: is JSON but not CDISC Dataset-JSON (no 'columns' and 'rows', and no "
            "'clinicalData.itemGroupData')",
            fix,
        )
    names = [str(i.get("name")) for i in items]
    width = len(names)
    bad = [n for n, r in enumerate(rows, start=1) if not isinstance(r, list) or len(r) != width]
    if bad:
        raise ReaderError(
            f"{rel}: record(s) {', '.join(map(str, bad[:5]))} do not have {width} values",
            fix,
        )
    data = {
        name: [None if r[j] is None else _json_text(r[j]) for r in rows]
        for j, name in enumerate(names)
    }
    frame = pl.DataFrame(data, schema=dict.fromkeys(names, pl.Utf8))
    # 1.0 starts each record with ITEMGROUPDATASEQ, a record counter, not a variable
    frame = frame.drop([c for c in ("ITEMGROUPDATASEQ",) if c in frame.columns])
    labels = {str(i.get("name")): str(i["label"]) for i in items if i.get("label")}
    frame = frame.with_columns((pl.int_range(pl.len()) + 1).cast(pl.Int64).alias("_source_row"))
    _ = date_format  # Dataset-JSON dates are ISO 8601 text already
    return Table(frame, labels, "utf-8")


def _json_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)

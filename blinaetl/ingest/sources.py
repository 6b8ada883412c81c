"""Source mappings: how one site's or laboratory's files map onto the canonical contracts.

One YAML file per source in `schemas/sources/` (format in docs/architecture.md). Onboarding a
site is writing such a file; no Python. Loading checks every key, so a typo in a mapping stops
the run with a message naming the mapping file and the key instead of silently loading nothing.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blinaetl.resources import sources_dir
from blinaetl.validate.contracts import Contract, load_contracts, read_yaml

FORMATS = {"csv", "tsv", "xlsx", "parquet", "xpt", "sas7bdat", "sav", "dta", "dataset-json"}
ENCODINGS = {
    "utf-8",
    "utf8",
    "latin-1",
    "latin1",
    "iso-8859-1",
    "cp1252",
    # wide encodings (a byte-order mark, when the file has one, decides the byte order)
    "utf-16",
    "utf-16-le",
    "utf-16-be",
    "utf-32",
    "utf-32-le",
    "utf-32-be",
}
FILE_KEYS = {
    "table",
    "glob",
    "format",
    "sheet",
    "header_row",
    "encoding",
    "delimiter",
    "date_format",
    "columns",
    "units",
    "codes",
    "constants",
    "not_collected",
    "where",
    "pivot",
    "unpivot",
    "site_from",
    "derived_dates",
    "redcap",
    "lookup",
    "recode",
}
LOOKUP_KEYS = {"file", "format", "by", "key", "columns", "where", "encoding", "delimiter"}
REDCAP_KEYS = {"dictionary", "instrument", "repeating", "events"}
WHERE_OPS = {"equals", "not_equals", "in", "not_in", "present", "matches"}
PIVOT_KEYS = {"key", "name", "value"}
UNPIVOT_KEYS = {"index", "columns", "name", "value", "keep_empty"}
SITE_FROM_KEYS = {"column", "codes", "pattern"}
DERIVED_KEYS = {"days", "anchor", "anchor_format", "day_one", "date"}
ANCHOR_KEYS = {"file", "format", "by", "key", "column", "where", "encoding", "delimiter"}
SOURCE_KEYS = {"source", "kind", "site", "lab", "files"}


class MappingError(ValueError):
    """A source mapping is malformed; the message names the mapping file and the key."""


@dataclass(frozen=True)
class FileMapping:
    table: str
    glob: str
    format: str
    sheet: str | None = None
    header_row: int = 1
    encoding: str = "utf-8"
    delimiter: str = ","
    date_format: str = "%Y-%m-%d"
    columns: dict[str, str] = field(default_factory=dict)
    units: dict[str, float] = field(default_factory=dict)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    encoding_set: bool = False  # the mapping names the encoding (wins over a file's own)
    not_collected: tuple[str, ...] = ()
    # row shaping, applied in this order to the delivered columns (all text) before mapping
    where: tuple[tuple[str, str, Any], ...] = ()  # (column, op, argument), all must hold
    unpivot: dict[str, Any] | None = None  # index, columns, name, value, keep_empty
    pivot: dict[str, Any] | None = None  # key (list), name, value
    site_from: dict[str, Any] | None = None  # column, codes (optional)
    derived_dates: dict[str, dict[str, Any]] = field(default_factory=dict)
    redcap: dict[str, Any] | None = None  # dictionary (glob), instrument, repeating, events
    # columns joined in from other landing files by key(s): file, format, by, key, columns, where
    lookup: tuple[dict[str, Any], ...] = ()
    # delivered values replaced before mapping: column -> {delivered value: new value}
    recode: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def shaped(self) -> bool:
        return bool(self.where or self.unpivot or self.pivot or self.lookup or self.recode)


@dataclass(frozen=True)
class SourceMapping:
    source: str
    kind: str
    site: str | None
    lab: str | None
    files: tuple[FileMapping, ...]
    path: Path
    sha256: str = ""


def _names(value: Any, where: str, key: str) -> list[str]:
    """A column name or a list of them, as a list of non-empty strings."""
    items = value if isinstance(value, list) else [value]
    if not items or any(not isinstance(v, (str, int)) or str(v) == "" for v in items):
        raise MappingError(f"{where}: '{key}' must be a column name or a list of column names")
    return [str(v) for v in items]


def _spec(raw: Any, where: str, key: str, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(raw, dict):
        raise MappingError(
            f"{where}: '{key}' must be a mapping with keys {', '.join(sorted(allowed))}"
        )
    unknown = set(raw) - allowed
    if unknown:
        raise MappingError(
            f"{where}: '{key}' has unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    missing = sorted(required - set(raw))
    if missing:
        raise MappingError(f"{where}: '{key}' lacks {', '.join(missing)}")
    return raw


def _where(raw: Any, where: str) -> tuple[tuple[str, str, Any], ...]:
    """`where: {COLUMN: value | [values] | {op: argument}}`: every condition must hold."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise MappingError(
            f"{where}: 'where' must map column names to a value, a list of values or "
            "{op: argument} (ops: " + ", ".join(sorted(WHERE_OPS)) + ")"
        )
    conditions = []
    for column, cond in raw.items():
        if isinstance(cond, dict):
            if len(cond) != 1 or next(iter(cond)) not in WHERE_OPS:
                raise MappingError(
                    f"{where}: 'where' on column '{column}' must have one operator of "
                    f"{', '.join(sorted(WHERE_OPS))}, got {', '.join(map(str, cond)) or 'none'}"
                )
            op, arg = next(iter(cond.items()))
        elif isinstance(cond, list):
            op, arg = "in", cond
        else:
            op, arg = "equals", cond
        if op in ("in", "not_in"):
            if not isinstance(arg, list) or not arg:
                raise MappingError(
                    f"{where}: 'where' {op} on column '{column}' needs a non-empty list"
                )
            arg = [str(a) for a in arg]
        elif op == "present":
            if not isinstance(arg, bool):
                raise MappingError(
                    f"{where}: 'where' present on column '{column}' must be true or false"
                )
        elif op == "matches":
            try:
                re.compile(str(arg))
            except re.error as exc:
                raise MappingError(
                    f"{where}: 'where' matches on column '{column}' is not a valid regular "
                    f"expression ({exc})"
                ) from exc
            arg = str(arg)
        else:
            if arg is None or isinstance(arg, (dict, list)):
                raise MappingError(
                    f"{where}: 'where' {op} on column '{column}' needs one value "
                    "(use present: false for an empty cell)"
                )
            arg = str(arg)
        conditions.append((str(column), op, arg))
    return tuple(conditions)


def _pivot(raw: Any, where: str) -> dict[str, Any]:
    spec = _spec(raw, where, "pivot", PIVOT_KEYS, PIVOT_KEYS)
    key = _names(spec["key"], where, "pivot.key")
    name = _names(spec["name"], where, "pivot.name")
    value = _names(spec["value"], where, "pivot.value")
    if len(name) != 1 or len(value) != 1:
        raise MappingError(f"{where}: 'pivot' name and value must each be one column")
    if name[0] in key or value[0] in key or name == value:
        raise MappingError(f"{where}: 'pivot' key, name and value must be different columns")
    return {"key": key, "name": name[0], "value": value[0]}


def _unpivot(raw: Any, where: str) -> dict[str, Any]:
    spec = _spec(raw, where, "unpivot", UNPIVOT_KEYS, {"index", "columns"})
    index = _names(spec["index"], where, "unpivot.index")
    columns = _names(spec["columns"], where, "unpivot.columns")
    if set(index) & set(columns):
        raise MappingError(
            f"{where}: 'unpivot' index and columns overlap "
            f"({', '.join(sorted(set(index) & set(columns)))})"
        )
    keep = spec.get("keep_empty", False)
    if not isinstance(keep, bool):
        raise MappingError(f"{where}: 'unpivot.keep_empty' must be true or false")
    return {
        "index": index,
        "columns": columns,
        "name": str(spec.get("name", "column")),
        "value": str(spec.get("value", "value")),
        "keep_empty": keep,
    }


def _site_from(raw: Any, where: str) -> dict[str, Any]:
    spec = _spec(raw, where, "site_from", SITE_FROM_KEYS, {"column"})
    codes = spec.get("codes")
    if codes is not None and (not isinstance(codes, dict) or not codes):
        raise MappingError(
            f"{where}: 'site_from.codes' must map the file's site codes to site names"
        )
    pattern = spec.get("pattern")
    if pattern is not None:
        try:
            groups = re.compile(str(pattern)).groups
        except re.error as exc:
            raise MappingError(
                f"{where}: 'site_from.pattern' is not a valid regular expression ({exc})"
            ) from exc
        if groups != 1:
            raise MappingError(
                f"{where}: 'site_from.pattern' must have exactly one (group) around the "
                f"site code, e.g. '^[^-]+-([^-]+)-' for USUBJID STUDY-SITE-SUBJECT; it has {groups}"
            )
    return {
        "pattern": str(pattern) if pattern is not None else None,
        "column": _names(spec["column"], where, "site_from.column")[0],
        "codes": {str(k): str(v) for k, v in (codes or {}).items()} or None,
    }


def _redcap(raw: dict, where: str) -> dict[str, Any]:
    spec = _spec(raw["redcap"], where, "redcap", REDCAP_KEYS, {"dictionary", "instrument"})
    if str(raw.get("format", "")).lower() != "csv":
        raise MappingError(f"{where}: 'redcap' reads REDCap's CSV export: set 'format: csv'")
    repeating = spec.get("repeating", False)
    if not isinstance(repeating, bool):
        raise MappingError(
            f"{where}: 'redcap.repeating' must be true (a repeating instrument: one row "
            "per instance) or false"
        )
    events = spec.get("events")
    if events is not None:
        events = _names(events, where, "redcap.events")
    return {
        "dictionary": _names(spec["dictionary"], where, "redcap.dictionary")[0],
        "instrument": _names(spec["instrument"], where, "redcap.instrument")[0],
        "repeating": repeating,
        "events": events,
    }


def _lookup_spec(spec: Any, entry: str, raw: dict, where: str) -> dict[str, Any]:
    """One `lookup` entry (named `entry` in messages): the other file, the joining column(s) on
    each side, the columns."""
    if isinstance(spec, dict) and True in spec:
        raise MappingError(
            f"{where}: '{entry}' has a key that YAML reads as true (on/yes/y): name the "
            "joining column with 'by' (this file) and 'key' (the lookup file)"
        )
    spec = _spec(spec, where, entry, LOOKUP_KEYS, {"file", "by", "columns"})
    fmt = str(spec.get("format", raw.get("format", ""))).lower()
    if fmt not in FORMATS:
        raise MappingError(
            f"{where}: '{entry}.format' '{fmt}' is not one of {', '.join(sorted(FORMATS))}"
        )
    by = _names(spec["by"], where, f"{entry}.by")
    key = _names(spec.get("key", by), where, f"{entry}.key")
    if len(key) != len(by):
        raise MappingError(
            f"{where}: '{entry}' joins on {len(by)} column(s) of this file ('by': "
            f"{', '.join(by)}) but {len(key)} of the lookup file ('key': {', '.join(key)}); "
            "give one 'key' column per 'by' column, in the same order"
        )
    return {
        "file": _names(spec["file"], where, f"{entry}.file")[0],
        "format": fmt,
        "by": by,
        "key": key,
        "columns": _names(spec["columns"], where, f"{entry}.columns"),
        "where": _where(spec.get("where"), f"{where}, {entry}"),
        "encoding": str(spec.get("encoding", "utf-8")).lower(),
        "delimiter": spec.get("delimiter", "\t" if fmt == "tsv" else ","),
    }


def _lookups(raw: Any, file_raw: dict, where: str) -> tuple[dict[str, Any], ...]:
    lookups = [raw] if isinstance(raw, dict) else raw
    if not isinstance(lookups, list) or not lookups:
        raise MappingError(
            f"{where}: 'lookup' must be a list of {{file, by, key, columns}} (columns joined "
            "in from another landing file by a key)"
        )
    return tuple(
        _lookup_spec(spec, f"lookup[{i}]", file_raw, where) for i, spec in enumerate(lookups)
    )


def _recode(raw: Any, where: str) -> dict[str, dict[str, str]]:
    """`recode: {COLUMN: {delivered value: new value}}` on the delivered columns."""
    if not isinstance(raw, dict) or not raw:
        raise MappingError(
            f"{where}: 'recode' must map delivered column names to {{value: new value}}, e.g. "
            "recode: {TRSTRESC: {ABSENT: No disease in}}"
        )
    out = {}
    for column, values in raw.items():
        if not isinstance(values, dict) or not values:
            raise MappingError(
                f"{where}: 'recode.{column}' must map the column's delivered values to new ones"
            )
        bad = [k for k, v in values.items() if v is None or isinstance(v, (dict, list))]
        if bad:
            raise MappingError(
                f"{where}: 'recode.{column}' gives no single new value for "
                f"{', '.join(map(str, bad))}; write one text value for each"
            )
        out[str(column)] = {str(k): str(v) for k, v in values.items()}
    return out


def _derived_date_spec(
    name: str, spec: Any, where: str, contract: Contract, raw_format: str
) -> dict[str, Any]:
    if name not in contract.field_names:
        raise MappingError(
            f"{where}: 'derived_dates' names field '{name}' that table "
            f"'{contract.table}' does not have"
        )
    if contract.field(name).type != "date":
        raise MappingError(
            f"{where}: 'derived_dates' field '{name}' is a {contract.field(name).type}, not a date"
        )
    key = f"derived_dates.{name}"
    spec = _spec(spec, where, key, DERIVED_KEYS, {"days", "anchor"})
    day_one = spec.get("day_one", False)
    if not isinstance(day_one, bool):
        raise MappingError(
            f"{where}: '{key}.day_one' must be true (SDTM study days: day 1 "
            "is the anchor date, no day 0) or false (day 0 is the anchor date)"
        )
    anchor, anchor_from = spec["anchor"], None
    if isinstance(anchor, dict):
        anchor_from = _anchor_from(anchor, where, f"{key}.anchor", raw_format)
        anchor = anchor_from["columns"][0]
    days = _names(spec["days"], where, f"{key}.days")[0]
    date = _names(spec["date"], where, f"{key}.date")[0] if "date" in spec else None
    anchor = _names(anchor, where, f"{key}.anchor")[0]
    if len({days, anchor, date} - {None}) < 2 + (date is not None):
        raise MappingError(
            f"{where}: '{key}' names one column twice (days {days}, anchor {anchor}"
            f"{f', date {date}' if date else ''}); each must be a different column"
        )
    return {
        "days": days,
        "anchor": anchor,
        "anchor_format": str(spec["anchor_format"]) if "anchor_format" in spec else None,
        "day_one": day_one,
        "date": date,
        "anchor_from": anchor_from,
    }


def _anchor_from(raw: Any, where: str, key: str, raw_format: str) -> dict[str, Any]:
    """`anchor: {file, by, key, column}`: the anchor date taken from another landing file (e.g.
    DM.RFSTDTC for SDTM study days), joined like a `lookup` (one row per key in that file)."""
    if isinstance(raw, dict) and True in raw:
        raise MappingError(
            f"{where}: '{key}' has a key that YAML reads as true (on/yes/y): name the joining "
            "column with 'by' (this file) and 'key' (the anchor's file)"
        )
    spec = _spec(raw, where, key, ANCHOR_KEYS, {"file", "by", "column"})
    column = _names(spec["column"], where, f"{key}.column")
    if len(column) != 1:
        raise MappingError(f"{where}: '{key}.column' must be one column (the anchor date)")
    lookup = {k: v for k, v in spec.items() if k != "column"}
    return _lookup_spec({**lookup, "columns": column}, key, {"format": raw_format}, where)


def _derived_dates(
    raw: Any, where: str, contract: Contract, raw_format: str
) -> dict[str, dict[str, Any]]:
    derived = raw or {}
    if not isinstance(derived, dict):
        raise MappingError(
            f"{where}: 'derived_dates' must map date fields to {{days: COLUMN, anchor: COLUMN}}"
        )
    return {
        name: _derived_date_spec(name, spec, where, contract, raw_format)
        for name, spec in derived.items()
    }


def _anchor_lookups(
    derived: dict[str, dict[str, Any]], lookups: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], ...]:
    """The entry's lookups plus one per anchor taken from another file (one per file and key:
    anchors of several dates from the same file share it; a column already looked up is not
    joined twice)."""
    out = [dict(spec) for spec in lookups]
    for spec in derived.values():
        extra = spec["anchor_from"]
        if extra is None:
            continue
        same = next(
            (
                o
                for o in out
                if (o["file"], o["by"], o["key"], o["where"])
                == (extra["file"], extra["by"], extra["key"], extra["where"])
            ),
            None,
        )
        if same is None:
            out.append(dict(extra))
        elif extra["columns"][0] not in same["columns"]:
            same["columns"] = [*same["columns"], extra["columns"][0]]
    return tuple(out)


def _shaping(raw: dict, where: str, contract: Contract) -> dict[str, Any]:
    """The row-shaping keys of a file entry, checked; names every bad key with its fix."""
    if raw.get("pivot") is not None and raw.get("unpivot") is not None:
        raise MappingError(
            f"{where}: 'pivot' and 'unpivot' cannot both be set on one file entry; keep one"
        )
    out: dict[str, Any] = {"where": _where(raw.get("where"), where)}
    parsers = {
        "pivot": lambda v: _pivot(v, where),
        "unpivot": lambda v: _unpivot(v, where),
        "site_from": lambda v: _site_from(v, where),
        "recode": lambda v: _recode(v, where),
        "lookup": lambda v: _lookups(v, raw, where),
    }
    for key, parse in parsers.items():
        if raw.get(key) is not None:
            out[key] = parse(raw[key])
    if raw.get("redcap") is not None:
        out["redcap"] = _redcap(raw, where)
    fmt = str(raw.get("format", "")).lower()
    out["derived_dates"] = _derived_dates(raw.get("derived_dates"), where, contract, fmt)
    anchored = _anchor_lookups(out["derived_dates"], out.get("lookup", ()))
    if anchored:
        out["lookup"] = anchored
    return out


def _entry_basics(raw: dict, where: str, contracts: dict[str, Contract]) -> tuple[str, str, str]:
    """The entry's known keys, table, format and encoding, checked: (table, format, encoding)."""
    unknown = set(raw) - FILE_KEYS
    if unknown:
        raise MappingError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(FILE_KEYS))}"
        )
    for key in ("table", "glob", "format"):
        if key not in raw:
            raise MappingError(f"{where}: missing key '{key}'")
    table = raw["table"]
    if table not in contracts:
        raise MappingError(
            f"{where}: table '{table}' is not a contract; known: {', '.join(sorted(contracts))}"
        )
    fmt = str(raw["format"]).lower()
    if fmt not in FORMATS:
        raise MappingError(f"{where}: format '{fmt}' is not one of {', '.join(sorted(FORMATS))}")
    encoding = str(raw.get("encoding", "utf-8")).lower()
    if encoding not in ENCODINGS:
        raise MappingError(
            f"{where}: encoding '{encoding}' is not one of {', '.join(sorted(ENCODINGS))}"
        )
    return table, fmt, encoding


def _check_field_maps(raw: dict, where: str, contract: Contract) -> None:
    """`columns`, `units`, `codes`, `constants` map field names the table has."""
    names = set(contract.field_names)
    for key in ("columns", "units", "codes", "constants"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise MappingError(f"{where}: '{key}' must map field names to values")
        bad = set(raw.get(key) or {}) - names
        if bad:
            raise MappingError(
                f"{where}: '{key}' names field(s) {', '.join(sorted(bad))} that table "
                f"'{contract.table}' does not have"
            )


def _not_collected_fields(raw: dict, where: str, contract: Contract) -> list[str]:
    not_collected = raw.get("not_collected") or []
    if not isinstance(not_collected, list):
        raise MappingError(f"{where}: 'not_collected' must be a list of field names")
    not_collected = [str(n) for n in not_collected]
    unknown_fields = sorted(set(not_collected) - set(contract.field_names))
    if unknown_fields:
        raise MappingError(
            f"{where}: 'not_collected' names field(s) {', '.join(unknown_fields)} that table "
            f"'{contract.table}' does not have"
        )
    return not_collected


def _check_one_source_per_field(
    where: str,
    contract: Contract,
    columns: dict[str, str],
    constants: dict[str, Any],
    derived: dict[str, Any],
    not_collected: list[str],
) -> None:
    """A field is mapped, constant, derived or not collected: never two of them; a key field
    is always collected."""
    for key, given in (("columns", columns), ("constants", constants), ("derived_dates", derived)):
        both = sorted(set(not_collected) & set(given))
        if both:
            raise MappingError(
                f"{where}: field(s) {', '.join(both)} are in 'not_collected' and in '{key}'; "
                "a field the site did not collect has no column or constant: remove one of the two"
            )
    keyed = sorted(set(not_collected) & set(contract.key))
    if keyed:
        raise MappingError(
            f"{where}: 'not_collected' names key field(s) {', '.join(keyed)} of "
            f"'{contract.table}'; every row needs its key: map them in 'columns'"
        )
    both = sorted(set(derived) & (set(columns) | set(constants)))
    if both:
        raise MappingError(
            f"{where}: field(s) {', '.join(both)} are derived in 'derived_dates' and also "
            "given in 'columns' or 'constants': keep one"
        )


def _file_mapping(raw: dict, where: str, contracts: dict[str, Contract]) -> FileMapping:
    table, fmt, encoding = _entry_basics(raw, where, contracts)
    contract = contracts[table]
    _check_field_maps(raw, where, contract)
    columns = {str(k): str(v) for k, v in (raw.get("columns") or {}).items()}
    constants = dict(raw.get("constants") or {})
    header_row = int(raw.get("header_row", 1))
    if header_row < 1:
        raise MappingError(f"{where}: header_row must be 1 or more")
    not_collected = _not_collected_fields(raw, where, contract)
    shaping = _shaping(raw, where, contract)
    _check_one_source_per_field(
        where, contract, columns, constants, shaping["derived_dates"], not_collected
    )
    return FileMapping(
        table=table,
        glob=str(raw["glob"]),
        format=fmt,
        sheet=raw.get("sheet"),
        header_row=header_row,
        encoding=encoding,
        delimiter=raw.get("delimiter", "\t" if fmt == "tsv" else ","),
        date_format=str(raw.get("date_format", "%Y-%m-%d")),
        columns=columns,
        units={k: float(v) for k, v in (raw.get("units") or {}).items()},
        codes={
            k: {str(a): str(b) for a, b in v.items()} for k, v in (raw.get("codes") or {}).items()
        },
        constants=constants,
        encoding_set="encoding" in raw,
        not_collected=tuple(not_collected),
        **shaping,
    )


def load_source(path: Path, contracts: dict[str, Contract] | None = None) -> SourceMapping:
    contracts = contracts or load_contracts()
    where = f"source mapping {path.name}"
    try:
        raw = read_yaml(path)
    except FileNotFoundError as exc:
        raise MappingError(f"{where}: the file {path} does not exist") from exc
    except yaml.YAMLError as exc:
        raise MappingError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise MappingError(
            f"{where}: expected a mapping with keys {', '.join(sorted(SOURCE_KEYS))}"
        )
    unknown = set(raw) - SOURCE_KEYS
    if unknown:
        raise MappingError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("source", "kind", "files"):
        if key not in raw:
            raise MappingError(f"{where}: missing key '{key}'")
    if raw["kind"] not in ("clinical", "flow", "imaging"):
        raise MappingError(f"{where}: kind must be clinical, flow or imaging")
    files = tuple(
        _file_mapping(f, f"{where}, files[{i}]", contracts)
        for i, f in enumerate(raw["files"] or [])
    )
    for i, fm in enumerate(files):
        contract = contracts[fm.table]
        given = set(fm.columns) | set(fm.constants) | set(fm.not_collected)
        given |= set(fm.derived_dates)
        if raw.get("site") or fm.site_from:
            given.add("patient_site")
        missing = [f.name for f in contract.fields if f.required and f.name not in given]
        if missing:
            raise MappingError(
                f"{where}, files[{i}]: required field(s) {', '.join(missing)} of '{fm.table}' "
                "are neither mapped in 'columns' nor set in 'constants'; map the column "
                "holding each, or, if the site never collected it, list it under "
                "'not_collected' (it is then NULL and reported as not collected at the site)"
            )
    if raw.get("site") is not None and not isinstance(raw["site"], (str, int)):
        raise MappingError(
            f"{where}: 'site' must be one site code; to take the site from a column of the "
            "file, set 'site_from: {column: COLUMN, codes: {...}}' on the file entry"
        )
    if raw["kind"] != "flow" and not raw.get("site"):
        lacking = [i for i, fm in enumerate(files) if not fm.site_from]
        if lacking:
            raise MappingError(
                f"{where}: a {raw['kind']} source needs 'site' (the patients' site code), or "
                f"'site_from' on every file entry (files[{lacking[0]}] has none)"
            )
    return SourceMapping(
        source=str(raw["source"]),
        kind=raw["kind"],
        site=str(raw["site"]) if raw.get("site") is not None else None,
        lab=raw.get("lab"),
        files=files,
        path=path,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


SOURCES_ENV = "BLINAETL_SOURCES"


def resolve_sources_dir(directory: Path | str | None = None) -> Path:
    """The mapping folder of a run: the one given (--sources, run config), else $BLINAETL_SOURCES,
    else the bundled `schemas/sources/`. A folder that is named but missing or empty is an error.
    """
    if directory:
        folder, said = (
            Path(directory),
            "the mapping folder given (--sources or 'sources' in the run config)",
        )
    elif os.environ.get(SOURCES_ENV):
        folder, said = Path(os.environ[SOURCES_ENV]), f"${SOURCES_ENV}"
    else:
        return sources_dir()
    if not folder.is_dir():
        raise MappingError(
            f"{said} is {folder}, which is not a folder (cwd: {Path.cwd()}); point it at the "
            "folder holding the site's mapping files (*.yaml), or unset it to use the bundled ones"
        )
    if not any(folder.glob("*.yaml")):
        raise MappingError(
            f"{said} is {folder}, which holds no mapping file (*.yaml); put the site's mappings "
            "there (docs/onboarding.md), or unset it to use the bundled ones"
        )
    return folder


def load_sources(
    directory: Path | None = None, contracts: dict[str, Contract] | None = None
) -> list[SourceMapping]:
    folder = resolve_sources_dir(directory)
    sources = [load_source(p, contracts) for p in sorted(folder.glob("*.yaml"))]
    ids = [s.source for s in sources]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise MappingError(
            f"source ids used by more than one mapping in {folder}: {', '.join(sorted(dupes))}"
        )
    return sources


def match(rel_path: str, sources: list[SourceMapping]) -> tuple[SourceMapping, FileMapping] | None:
    """The first mapping whose glob matches the landing-relative path."""
    for s in sources:
        for fm in s.files:
            if fnmatch.fnmatchcase(rel_path, fm.glob):
                return s, fm
    return None

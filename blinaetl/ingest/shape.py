"""Row shaping declared in a source mapping: `lookup`, `where`, `recode`, `unpivot`, `pivot`.

Applied to the delivered columns (all text, as read) before the columns are mapped to the
contract, in the order lookup -> where -> recode -> unpivot -> pivot. Nothing is dropped unsaid:
every row a filter leaves out, every empty cell an unpivot skips and every conflicting pair a
pivot meets is counted in the file's note. Each shaped record keeps a `_source_row` (for a pivot, the first
delivered row of its key) so the quarantine points at the file's own row numbers.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import polars as pl

from blinaetl.ingest.sources import FileMapping, SourceMapping

CONFLICT_SEPARATOR = " | "


class ShapeProblem(Exception):
    """The file does not fit the mapping's shaping keys: message and fix, for a FileProblem."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass
class Shaped:
    frame: pl.DataFrame  # the records to map: delivered (or pivoted) text columns + `_` columns
    raw: pl.DataFrame  # what a quarantined record shows as delivered, one row per `_source_row`
    delivered_rows: int
    notes: list[str]


def _data_columns(frame: pl.DataFrame) -> list[str]:
    return [c for c in frame.columns if not c.startswith("_")]


def _require(frame: pl.DataFrame, columns: list[str], key: str, rel: str, source: SourceMapping):
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ShapeProblem(
            f"{rel}: column(s) {', '.join(repr(c) for c in missing)} named in '{key}' of the "
            f"mapping are not in the file (columns: {', '.join(_data_columns(frame))})",
            f"correct '{key}' in the source mapping ({source.path.name}) or the file's header",
        )


def _condition(column: str, op: str, arg: object) -> pl.Expr:
    col = pl.col(column)
    if op == "equals":
        return col.eq(arg).fill_null(False)
    if op == "not_equals":
        return col.ne_missing(arg)
    if op == "in":
        return col.is_in(list(arg)).fill_null(False)  # type: ignore[call-overload]
    if op == "not_in":
        return ~col.is_in(list(arg)).fill_null(False)  # type: ignore[call-overload]
    if op == "present":
        return col.is_not_null() if arg else col.is_null()
    return col.str.contains(str(arg)).fill_null(False)  # matches


def _join_lookup(
    frame: pl.DataFrame,
    spec: dict,
    other: pl.DataFrame,
    other_rel: str,
    rel: str,
    source: SourceMapping,
    notes: list[str],
) -> pl.DataFrame:
    """Columns of another file joined to each row by key(s) (the other file: one row per key)."""
    by, key = list(spec["by"]), list(spec["key"])
    _require(frame, by, "lookup.by", rel, source)
    _require(other, [*key, *spec["columns"]], "lookup", other_rel, source)
    if spec["where"]:
        _require(other, [c for c, _, _ in spec["where"]], "lookup.where", other_rel, source)
        other = other.filter(pl.all_horizontal([_condition(c, o, a) for c, o, a in spec["where"]]))
    clash = [c for c in spec["columns"] if c in frame.columns]
    if clash:
        raise ShapeProblem(
            f"{rel}: 'lookup' column(s) {', '.join(clash)} from {other_rel} are already columns "
            "of the file",
            f"leave them out of 'lookup.columns' in {source.path.name} (for an anchor taken "
            "from another file, name the file's own column as the 'derived_dates' anchor)",
        )
    table = other.select(*key, *spec["columns"]).filter(
        pl.all_horizontal([pl.col(k).is_not_null() for k in key])
    )
    repeated = table.filter(pl.struct(key).is_duplicated())
    if repeated.height:
        raise ShapeProblem(
            f"{rel}: the lookup file {other_rel} has {repeated.height} row(s) sharing a "
            f"'{', '.join(key)}' (it must hold one row per key after its 'where')",
            f"narrow 'lookup.where' in {source.path.name} so one row per key is left",
        )
    renamed = {k: b for k, b in zip(key, by, strict=True) if k != b}
    joined = frame.join(
        table.rename(renamed) if renamed else table, on=by, how="left", maintain_order="left"
    )
    found = joined.filter(pl.col(spec["columns"][0]).is_not_null()).height if spec["columns"] else 0
    notes.append(
        f"lookup: {', '.join(spec['columns'])} from {other_rel} joined on {', '.join(by)} "
        f"({found} of {frame.height} row(s) found)"
    )
    return joined


def _recode(
    frame: pl.DataFrame, fm: FileMapping, rel: str, source: SourceMapping, notes: list[str]
) -> pl.DataFrame:
    """Delivered values replaced by the mapping's `recode` (values it does not list are kept)."""
    _require(frame, list(fm.recode), "recode", rel, source)
    counts = []
    for column, values in fm.recode.items():
        n = frame.filter(pl.col(column).is_in(list(values))).height
        counts.append(f"{n} {column}")
    frame = frame.with_columns(
        pl.col(column).replace(values) for column, values in fm.recode.items()
    )
    notes.append(f"recode: value(s) replaced in {', '.join(counts)} row(s)")
    return frame


def expand_columns(patterns: list[str], available: list[str]) -> list[str]:
    """Column names, where a name with * or ? is a pattern matching the file's columns in order."""
    out: list[str] = []
    for p in patterns:
        if any(ch in p for ch in "*?["):
            out += [c for c in available if fnmatch.fnmatchcase(c, p) and c not in out]
        elif p not in out:
            out.append(p)
    return out


def _filter_rows(
    frame: pl.DataFrame, fm: FileMapping, rel: str, source: SourceMapping, notes: list[str]
) -> pl.DataFrame:
    """The rows meeting every `where` condition; how many were left out goes to the notes."""
    _require(frame, [c for c, _, _ in fm.where], "where", rel, source)
    delivered = frame.height
    kept = frame.filter(pl.all_horizontal([_condition(c, op, a) for c, op, a in fm.where]))
    said = "; ".join(f"{c} {op} {a}" for c, op, a in fm.where)
    notes.append(
        f"{delivered - kept.height} of {delivered} delivered row(s) left out by the mapping's "
        f"'where' ({said})"
    )
    return kept


def _unpivot_columns(
    frame: pl.DataFrame,
    spec: dict,
    helpers: list[str],
    rel: str,
    source: SourceMapping,
    notes: list[str],
) -> pl.DataFrame:
    """Wide to long: one record per non-empty cell of the named columns, row by row."""
    columns = expand_columns(spec["columns"], _data_columns(frame))
    if not columns:
        raise ShapeProblem(
            f"{rel}: no column of the file matches 'unpivot.columns' "
            f"({', '.join(spec['columns'])})",
            f"correct 'unpivot.columns' in the source mapping ({source.path.name})",
        )
    _require(frame, [*spec["index"], *columns], "unpivot", rel, source)
    clash = [c for c in (spec["name"], spec["value"]) if c in frame.columns]
    if clash:
        raise ShapeProblem(
            f"{rel}: 'unpivot' name/value {', '.join(clash)} is already a column of the file",
            f"choose other 'unpivot.name' and 'unpivot.value' in {source.path.name}",
        )
    long = (
        frame.select(*spec["index"], *columns, "_source_row", *helpers)
        .with_row_index("_wide_row")
        .unpivot(
            on=columns,
            index=["_wide_row", *spec["index"], "_source_row", *helpers],
            variable_name=spec["name"],
            value_name=spec["value"],
        )
    )
    # row by row, each row's columns in the file's order
    order = {c: i for i, c in enumerate(columns)}
    long = long.with_columns(
        pl.col(spec["name"]).replace_strict(order, return_dtype=pl.Int64).alias("_col_order")
    ).sort("_wide_row", "_col_order", maintain_order=True)
    n_cells = long.height
    if not spec["keep_empty"]:
        long = long.filter(pl.col(spec["value"]).is_not_null())
    notes.append(
        f"unpivot: {frame.height} row(s) x {len(columns)} column(s) gave {long.height} "
        f"record(s); {n_cells - long.height} empty cell(s) skipped"
    )
    return long.drop("_wide_row", "_col_order")


def _pivot_cells(named: pl.DataFrame, spec: dict, notes: list[str]) -> pl.DataFrame:
    """One cell per key and name: its distinct values joined, so a conflict fails its checks."""
    key, name, value = spec["key"], spec["name"], spec["value"]
    cells = named.group_by([*key, name], maintain_order=True).agg(
        pl.col(value)
        .drop_nulls()
        .unique(maintain_order=True)
        .str.join(CONFLICT_SEPARATOR)
        .replace("", None)
        .alias(value),
        pl.col(value).drop_nulls().n_unique().alias("_n_values"),
    )
    conflicts = cells.filter(pl.col("_n_values") > 1).height
    if conflicts:
        notes.append(
            f"pivot: {conflicts} cell(s) got more than one different '{value}' for the same "
            f"key and '{name}'; their values are kept joined by '{CONFLICT_SEPARATOR.strip()}' "
            "so the record fails its checks and is quarantined"
        )
    return cells.drop("_n_values")


def _pivot_rows(
    frame: pl.DataFrame,
    spec: dict,
    helpers: list[str],
    rel: str,
    source: SourceMapping,
    notes: list[str],
) -> pl.DataFrame:
    """Long to wide: one record per key, a column per name (rows without a name left out)."""
    key, name, value = spec["key"], spec["name"], spec["value"]
    _require(frame, [*key, name, value], "pivot", rel, source)
    unnamed = frame.filter(pl.col(name).is_null()).height
    if unnamed:
        notes.append(
            f"pivot: {unnamed} row(s) with an empty '{name}' left out (no column to put "
            "their value in)"
        )
    named = frame.filter(pl.col(name).is_not_null())
    clash = sorted(set(named[name].unique().to_list()) & set(key))
    if clash:
        raise ShapeProblem(
            f"{rel}: pivot name value(s) {', '.join(clash)} are also key columns",
            f"choose another 'pivot.name' column in {source.path.name}",
        )
    cells = _pivot_cells(named, spec, notes)
    first = named.group_by(key, maintain_order=True).agg(
        pl.col("_source_row").min(),
        *[pl.col(h).max() for h in helpers],
        pl.len().alias("_rows"),
    )
    if cells.height:
        wide = cells.pivot(on=name, index=key, values=value)
        first = first.join(wide, on=key, how="left", nulls_equal=True, maintain_order="left")
    wide_frame = first.drop("_rows").sort("_source_row")
    notes.append(
        f"pivot: {named.height} row(s) gave {wide_frame.height} record(s) by {', '.join(key)}"
    )
    return wide_frame


def _anchors_through_pivot(fm: FileMapping, columns: list[str]) -> list[str]:
    """Anchor dates joined from another file (`derived_dates.anchor: {file, by, column}`, e.g.
    SDTM DM.RFSTDTC for LB study days) whose join columns are all pivot key columns: one value per
    record, so the pivot carries them to the record instead of dropping them."""
    key = set(fm.pivot["key"]) if fm.pivot else set()
    anchors = [
        spec["anchor"]
        for spec in fm.derived_dates.values()
        if spec.get("anchor_from") is not None
        and set(spec["anchor_from"]["by"]) <= key
        and spec["anchor"] in columns
        and spec["anchor"] not in key
    ]
    return list(dict.fromkeys(anchors))


def shape(
    raw: pl.DataFrame,
    fm: FileMapping,
    source: SourceMapping,
    rel: str,
    lookups: list[tuple[str, pl.DataFrame]] | None = None,
) -> Shaped:
    """The records the mapping makes of the delivered rows, and what each one shows as delivered.

    `lookups` are the other files `lookup` names, read (rel, text frame), in the entry's order.
    """
    notes: list[str] = []
    frame = raw
    for spec, (other_rel, other) in zip(fm.lookup, lookups or [], strict=True):
        frame = _join_lookup(frame, spec, other, other_rel, rel, source, notes)
    if fm.where:
        frame = _filter_rows(frame, fm, rel, source, notes)
    quarantine_view = frame  # as delivered (a quarantined record shows the delivered values)
    if fm.recode:
        frame = _recode(frame, fm, rel, source, notes)
    helpers = [c for c in frame.columns if c.startswith("_") and c != "_source_row"]
    if fm.unpivot:
        frame = _unpivot_columns(frame, fm.unpivot, helpers, rel, source, notes)
    if fm.pivot:
        carried = [*helpers, *_anchors_through_pivot(fm, frame.columns)]
        frame = _pivot_rows(frame, fm.pivot, carried, rel, source, notes)
        quarantine_view = frame
    return Shaped(frame=frame, raw=quarantine_view, delivered_rows=raw.height, notes=notes)

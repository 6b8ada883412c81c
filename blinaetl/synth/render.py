"""Render canonical records as site extracts, plant documented defects, write truth files.

Site layouts (column names, date formats, units, code spellings) are the perturbations every
real multi-site study has; the source mappings in `schemas/sources/` undo them. Defects are
planted only in rows the derivations do not need (blood-count-only assessments, negative-only
imaging reports, extra flow rows, exact copies), so the truth is the same with or without them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl

from blinaetl.synth.phrases import (
    CD19_PHRASES,
    EM_FILLER,
    EM_SITE_TERMS,
    EM_TEMPLATES,
    em_templates,
)

EXTRACT_DATE = "20260901"

# defect kind -> (table, rate among eligible rows, check id, field)
DEFECT_RATES: dict[str, tuple[str, float, str, str]] = {
    "duplicate_row": ("assessments", 0.02, "ASM_DUPLICATE_ROW", ""),
    "missing_required": ("assessments", 0.01, "ASM_ASSESSMENT_DATE_REQUIRED", "assessment_date"),
    "unparseable_date": ("assessments", 0.01, "ASM_ASSESSMENT_DATE_TYPE", "assessment_date"),
    "impossible_value": ("assessments", 0.01, "ASM_ANC_RANGE", "anc_10e9l"),
    "mis_scaled_unit": ("assessments", 0.02, "ASM_PLT_RANGE", "platelets_10e9l"),
    "date_out_of_order": ("assessments", 0.01, "ASM_AFTER_DX", "assessment_date"),
    "unknown_response_code": ("assessments", 0.01, "ASM_RESPONSE_SET", "reported_response"),
    "flow_duplicate_row": ("flow_results", 0.05, "FLW_DUPLICATE_ROW", ""),
    "flow_unknown_patient": ("flow_results", 0.01, "FLW_KNOWN_PATIENT", "mrn"),
    "imaging_code_typo": ("imaging_reports", 0.02, "IMG_MODALITY_SET", "modality"),
    "imaging_placeholder_text": ("imaging_reports", 0.01, "IMG_TEXT_NOT_BLANK", "report_text"),
    "imaging_unknown_patient": ("imaging_reports", 0.005, "IMG_KNOWN_PATIENT", "mrn"),
}


def n_defects(rate: float, eligible: int) -> int:
    """Planted count: rate x eligible rows, rounded, at least one when there is a row."""
    return min(eligible, max(1, round(rate * eligible))) if eligible else 0


def with_dates(frame: pl.DataFrame, patients: pl.DataFrame, day_col: str, out: str) -> pl.DataFrame:
    return (
        frame.join(patients.select("pid", "day0"), on="pid")
        .with_columns((pl.col("day0") + pl.duration(days=pl.col(day_col))).alias(out))
        .drop("day0")
    )


def fmt_date(col: str, fmt: str) -> pl.Expr:
    return pl.col(col).dt.strftime(fmt)


def fmt_num(col: str, factor: float = 1.0) -> pl.Expr:
    value = pl.col(col) * factor if factor != 1.0 else pl.col(col)
    return (
        pl.when(value.is_null())
        .then(pl.lit(""))
        .otherwise(value.round(6).cast(pl.Utf8).str.replace(r"\.0$", ""))
    )


# --- imaging text ----------------------------------------------------------------------------


def render_sentences(mentions: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """One sentence per mention row, from the phrase templates."""
    n = mentions.height
    assertion = mentions["assertion"].to_numpy()
    group = mentions["site_group"].to_numpy()
    lat = mentions["laterality"].to_numpy()
    template = np.empty(n, dtype=object)
    for a in EM_TEMPLATES:
        mask = assertion == a
        # one uniform draw per statement, read against the templates of its site group
        u = rng.random(mask.sum())
        idx = np.flatnonzero(mask)
        for g in np.unique(group[mask]):
            temps = np.asarray(em_templates(a, g), dtype=object)
            sel = group[idx] == g
            template[idx[sel]] = temps[(u[sel] * len(temps)).astype(int)]
    filler = assertion == "filler"
    template[filler] = np.asarray(EM_FILLER, dtype=object)[
        rng.integers(0, len(EM_FILLER), filler.sum())
    ]
    noun = np.empty(n, dtype=object)
    icdo3 = np.empty(n, dtype=object)
    for g, terms in EM_SITE_TERMS.items():
        mask = group == g
        pick = rng.integers(0, len(terms), mask.sum())
        noun[mask] = np.asarray([t[0] for t in terms], dtype=object)[pick]
        icdo3[mask] = np.asarray([t[1] for t in terms], dtype=object)[pick]
    noun[filler] = ""
    lat_after = np.where(lat != "", np.char.add(", ", lat.astype(str)), "")
    site_text = np.where(
        lat != "",
        np.char.add(np.char.add(lat.astype(str), " "), noun.astype(str)),
        noun.astype(str),
    )
    return (
        mentions.with_columns(
            pl.Series("template", template.astype(str)),
            pl.Series("site_text", site_text),
            pl.Series("_lat_after", lat_after.astype(str)),
            pl.Series("term", noun.astype(str)),
            pl.Series("icdo3", icdo3.astype(str)),
        )
        .with_columns(
            pl.col("template")
            .str.replace("{site}", pl.col("site_text"), literal=True)
            .str.replace(
                "{Site}",
                pl.col("site_text").str.slice(0, 1).str.to_uppercase()
                + pl.col("site_text").str.slice(1),
                literal=True,
            )
            .str.replace("{noun}", pl.col("term"), literal=True)
            .str.replace(
                "{Noun}",
                pl.col("term").str.slice(0, 1).str.to_uppercase() + pl.col("term").str.slice(1),
                literal=True,
            )
            .str.replace("{lat_after}", pl.col("_lat_after"), literal=True)
            .alias("sentence")
        )
        .drop("_lat_after")
    )


def assemble_reports(sentences: pl.DataFrame) -> pl.DataFrame:
    """One report per (patient, report): sentences in order, negative-only flag."""
    return (
        sentences.sort(["pid", "report", "order"])
        .group_by(["pid", "report"], maintain_order=True)
        .agg(
            pl.col("day").first(),
            pl.col("modality").first(),
            pl.col("sentence").str.join(" ").alias("report_text"),
            pl.col("assertion")
            .is_in(["absent", "filler", "possible"])
            .all()
            .alias("negative_only"),
        )
    )


# --- CD19 text ------------------------------------------------------------------------------


def cd19_descriptors(cls: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(len(cls), dtype=object)
    for c, phrases in CD19_PHRASES.items():
        mask = cls == c
        out[mask] = np.asarray(phrases, dtype=object)[rng.integers(0, len(phrases), mask.sum())]
    return out.astype(str)


# rows of one worksheet, title and header rows included (Excel's limit, which xlsxwriter and
# polars enforce); tests lower it to exercise the split of a workbook into numbered parts
XLSX_MAX_ROWS = 1_048_576


def xlsx_parts(
    frame: pl.DataFrame, first_row: int, patient: str | None = None
) -> list[pl.DataFrame]:
    """`frame` (numbered from `first_row`, the sheet row of its first record) cut into the
    parts that fit one sheet each, renumbered per part; one part when it fits.

    With `patient` (a column, the frame sorted by it), a patient's rows are never cut: a part
    ends before the patient whose rows would not fit, as a site splitting its registry export
    by patient ranges does. A patient with more rows than a sheet holds is an error.
    """
    capacity = XLSX_MAX_ROWS - (first_row - 1)
    if capacity < 1:
        raise ValueError(f"a sheet of {XLSX_MAX_ROWS} rows has no room below row {first_row - 1}")
    if frame.height <= capacity:
        return [frame]
    if patient is None:
        ends = list(range(capacity, frame.height, capacity))
    else:
        runs = frame.select(pl.col(patient).rle()).unnest(patient)["len"].to_list()
        ends, used, at = [], 0, 0
        for n in runs:
            if n > capacity:
                raise ValueError(f"a patient has {n} rows, more than a sheet of {capacity} rows")
            if used + n > capacity:
                ends.append(at)
                used = 0
            used += n
            at += n
    starts = [0, *ends]
    stops = [*ends, frame.height]
    return [
        frame.slice(a, b - a).with_columns(
            (pl.int_range(pl.len()) + first_row).cast(pl.Int64).alias("_row")
        )
        for a, b in zip(starts, stops, strict=True)
    ]


def part_names(name: str, n_parts: int) -> list[str]:
    """`name` for one part; else `stem_partKofN.ext` for K = 1..N (the ingest loads the N parts
    of one extract date together, `blinaetl.ingest.landing.extract_part`)."""
    if n_parts == 1:
        return [name]
    stem, ext = name.rsplit(".", 1)
    return [f"{stem}_part{k}of{n_parts}.{ext}" for k in range(1, n_parts + 1)]


def write_xlsx(frame: pl.DataFrame, path: Path, sheet: str, title: str | None = None) -> None:
    """Write one sheet; with `title`, a title line and a blank line put the header on row 3."""
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    wb.set_properties({"created": dt.datetime(2026, 9, 1), "author": "site extract"})
    ws = wb.add_worksheet(sheet)
    position = "A1"
    if title:
        ws.write("A1", title)
        position = "A3"
    frame.write_excel(
        workbook=wb, worksheet=sheet, position=position, autofit=False, table_style=None
    )
    wb.close()


def date_after(values: pl.Expr, days: int) -> pl.Expr:
    return values + pl.duration(days=days)

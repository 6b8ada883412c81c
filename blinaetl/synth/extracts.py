"""Write canonical records as the sites' extracts, with the planted defects recorded.

One writer per extract kind (patients, treatments, assessments, outcomes, flow, imaging), each
in the site layouts of `schemas/sources/`. They share an `Extracts` (where files go, what was
written, the defects and derivation queries planted) and draw from the cohort's random stream
in the order `blinaetl.synth.generate` calls them: that order is part of the seed's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

import blinaetl.synth.render as render

X = render.EXTRACT_DATE

_RECORD_SCHEMA = {
    "file": pl.Utf8,
    "row": pl.Int64,
    "table": pl.Utf8,
    "field": pl.Utf8,
    "kind": pl.Utf8,
    "check_id": pl.Utf8,
}

# assessment defects planted in blood-count-only rows, in draw order (SITE01 adds a unit defect)
_ASSESSMENT_DEFECTS = (
    "duplicate_row",
    "missing_required",
    "unparseable_date",
    "impossible_value",
    "date_out_of_order",
    "unknown_response_code",
)


class Defects:
    """Collects planted defects as (file, row, table, field, kind, check_id)."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.counts: dict[str, dict[str, int]] = {}

    def choose(
        self, rng: np.random.Generator, eligible: np.ndarray, kind: str, taken: np.ndarray
    ) -> np.ndarray:
        """Mark n rows of `eligible` (not yet taken) for `kind`; returns the boolean mask."""
        _, rate, _, _ = render.DEFECT_RATES[kind]
        pool = np.flatnonzero(eligible & ~taken)
        k = render.n_defects(rate, int(eligible.sum()))
        k = min(k, len(pool))
        pick = np.zeros(len(eligible), bool)
        if k:
            pick[rng.choice(pool, size=k, replace=False)] = True
        c = self.counts.setdefault(kind, {"eligible": 0, "planted": 0})
        c["eligible"] += int(eligible.sum())
        c["planted"] += int(pick.sum())
        taken |= pick
        return pick

    def record(self, file: str, frame: pl.DataFrame) -> None:
        """`frame` has _row and _defect (kind or null) for the rows as written."""
        hit = frame.filter(pl.col("_defect").is_not_null())
        if hit.height == 0:
            return
        kinds = hit["_defect"].to_list()
        self.frames.append(
            pl.DataFrame(
                {
                    "file": [file] * hit.height,
                    "row": hit["_row"].to_list(),
                    "table": [render.DEFECT_RATES[k][0] for k in kinds],
                    "field": [render.DEFECT_RATES[k][3] for k in kinds],
                    "kind": kinds,
                    "check_id": [render.DEFECT_RATES[k][2] for k in kinds],
                },
                schema=_RECORD_SCHEMA,
            )
        )

    def table(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=_RECORD_SCHEMA)
        return pl.concat(self.frames).sort(["file", "row"])


class DerivationQueries:
    """Rows the derivations must raise a query on, as (file, row, rule_id) of the rows written."""

    def __init__(self) -> None:
        self.frames: list[pl.DataFrame] = []
        self.schema = {"file": pl.Utf8, "row": pl.Int64, "rule_id": pl.Utf8}

    def record(self, file: str, frame: pl.DataFrame, column: str = "_query") -> None:
        """`frame` has _row and `column` (the expected rule id or null) for the rows as written."""
        if column not in frame.columns:
            return
        hit = frame.filter(pl.col(column).is_not_null())
        if hit.height:
            self.frames.append(
                pl.DataFrame(
                    {
                        "file": [file] * hit.height,
                        "row": hit["_row"].to_list(),
                        "rule_id": hit[column].to_list(),
                    },
                    schema=self.schema,
                )
            )

    def table(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(schema=self.schema)
        return pl.concat(self.frames).sort(["file", "row"])


@dataclass
class Extracts:
    """The landing folder being written and what went into it."""

    landing: Path
    rng: np.random.Generator
    files: dict[str, int] = field(default_factory=dict)
    defects: Defects = field(default_factory=Defects)
    queries: DerivationQueries = field(default_factory=DerivationQueries)


def finish_rows(
    frame: pl.DataFrame, dup_kind: str | None, dup_mask_col: str | None, first_row: int
) -> pl.DataFrame:
    """Insert exact copies after the rows flagged in `dup_mask_col`, then number the rows."""
    parts = [frame.with_columns(pl.lit(0).alias("_copy"))]
    if dup_mask_col is not None:
        copies = frame.filter(pl.col(dup_mask_col)).with_columns(
            pl.lit(1).alias("_copy"), pl.lit(dup_kind).alias("_defect")
        )
        parts.append(copies)
    out = pl.concat(parts, how="vertical_relaxed").sort(["_order", "_copy"])
    return out.with_columns((pl.int_range(pl.len()) + first_row).cast(pl.Int64).alias("_row"))


def write_csv(frame: pl.DataFrame, path: Path, sep: str = ",", encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.write_csv(separator=sep, quote_style="necessary")
    path.write_bytes(text.encode(encoding))


def public_columns(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([c for c in frame.columns if not c.startswith("_")])


def _site_keys(p: pl.DataFrame, *extra: str) -> pl.DataFrame:
    return p.select("pid", "site", "mrn", *extra)


# ---------------- clinical: patients ----------------


def write_patients(out: Extracts, p: pl.DataFrame) -> None:
    """SITE01 patients as latin-1 CSV, SITE02 as XLSX under a title row (in parts beyond a
    sheet)."""
    pat = p.with_columns(
        (pl.col("last_name") + ", " + pl.col("first_name")).alias("patient_name"),
        pl.col("pid").alias("_order"),
        pl.lit(None, pl.Utf8).alias("_defect"),
    )
    s1 = pat.filter(pl.col("site") == "SITE01").select(
        pl.col("mrn").alias("MRN"),
        "patient_name",
        render.fmt_date("birth_date", "%Y-%m-%d").alias("birth_date"),
        "sex",
        render.fmt_date("diagnosis_date", "%Y-%m-%d").alias("diagnosis_date"),
        "ph_status",
        pl.col("prior_lines").cast(pl.Utf8),
        pl.when(pl.col("prior_hct")).then(pl.lit("yes")).otherwise(pl.lit("no")).alias("prior_hct"),
        "_order",
        "_defect",
    )
    s1 = finish_rows(s1, None, None, 2)
    f = "clinical/SITE01/patients_" + X + ".csv"
    write_csv(public_columns(s1), out.landing / f, encoding="latin-1")
    out.files[f] = s1.height
    s2 = pat.filter(pl.col("site") == "SITE02").select(
        pl.col("mrn").alias("Patient ID"),
        pl.col("patient_name").alias("Patient Name"),
        render.fmt_date("birth_date", "%m/%d/%Y").alias("DOB"),
        pl.col("sex").replace_strict({"M": "Male", "F": "Female"}).alias("Gender"),
        render.fmt_date("diagnosis_date", "%m/%d/%Y").alias("Dx Date"),
        pl.col("ph_status")
        .replace_strict({"positive": "Pos", "negative": "Neg", "unknown": "Unk"})
        .alias("Ph+"),
        pl.col("prior_lines").cast(pl.Utf8).alias("Prior Lines"),
        pl.when(pl.col("prior_hct")).then(pl.lit("Y")).otherwise(pl.lit("N")).alias("Prior HSCT"),
        "_order",
        "_defect",
    )
    s2 = finish_rows(s2, None, None, 4)
    write_xlsx_parts(
        out,
        s2,
        "clinical/SITE02/patients_" + X + ".xlsx",
        "Patients",
        first_row=4,
        title="SITE02 leukemia registry extract",
    )


def write_xlsx_parts(
    out: Extracts,
    frame: pl.DataFrame,
    f: str,
    sheet: str,
    first_row: int,
    title: str | None = None,
    patient: str | None = None,
) -> None:
    """`frame` as one workbook `f`, or as its numbered parts when it exceeds one sheet
    (`render.XLSX_MAX_ROWS`), cut between patients (`patient`, see `render.xlsx_parts`)."""
    parts = render.xlsx_parts(frame, first_row, patient)
    for name, part in zip(render.part_names(f, len(parts)), parts, strict=True):
        render.write_xlsx(public_columns(part), out.landing / name, sheet, title=title)
        out.files[name] = part.height


# ---------------- clinical: treatments ----------------


def write_treatments(out: Extracts, p: pl.DataFrame, trt: pl.DataFrame) -> None:
    """Blinatumomab cycles and transplants: SITE01 CSV, SITE02 XLSX (in parts beyond a sheet)."""
    t = render.with_dates(trt, p, "start_day", "start_date")
    t = (
        t.with_columns(
            pl.when(pl.col("end_day").is_not_null())
            .then(pl.col("start_date") + pl.duration(days=pl.col("end_day") - pl.col("start_day")))
            .alias("end_date")
        )
        .join(_site_keys(p), on="pid")
        .with_columns(
            (pl.col("pid") * 100 + pl.col("start_day").rank("dense").over("pid")).alias("_order"),
            pl.lit(None, pl.Utf8).alias("_defect"),
        )
    )
    t1 = t.filter(pl.col("site") == "SITE01").select(
        pl.col("mrn").alias("MRN"),
        "treatment",
        pl.col("cycle").cast(pl.Utf8).fill_null(""),
        render.fmt_date("start_date", "%Y-%m-%d").alias("start_date"),
        render.fmt_date("end_date", "%Y-%m-%d").fill_null("").alias("end_date"),
        "_order",
        "_defect",
    )
    t1 = finish_rows(t1, None, None, 2)
    f = "clinical/SITE01/treatments_" + X + ".csv"
    write_csv(public_columns(t1), out.landing / f)
    out.files[f] = t1.height
    t2 = t.filter(pl.col("site") == "SITE02").select(
        pl.col("mrn").alias("Patient ID"),
        pl.col("treatment")
        .replace_strict({"blinatumomab": "Blinatumomab", "allo_hct": "Allo SCT"})
        .alias("Therapy"),
        pl.col("cycle").cast(pl.Utf8).fill_null("").alias("Cycle"),
        render.fmt_date("start_date", "%m/%d/%Y").alias("Start"),
        render.fmt_date("end_date", "%m/%d/%Y").fill_null("").alias("Stop"),
        "_order",
        "_defect",
    )
    t2 = finish_rows(t2, None, None, 2)  # in patient order: a patient's rows are adjacent
    f = "clinical/SITE02/treatments_" + X + ".xlsx"
    write_xlsx_parts(out, t2, f, "Treatments", first_row=2, patient="Patient ID")


# ---------------- clinical: assessments (with defects in filler rows) ----------------


def draw_assessment_defects(out: Extracts, part: pl.DataFrame, site: str) -> pl.DataFrame:
    """Plant the assessment defects in a site's blood-count-only rows (column _kind)."""
    n = part.height
    filler = (part["kind"] == "filler").to_numpy()
    taken = np.zeros(n, bool)
    kinds = np.full(n, None, dtype=object)
    for kind in _ASSESSMENT_DEFECTS:
        kinds[out.defects.choose(out.rng, filler, kind, taken)] = kind
    if site == "SITE01":
        kinds[out.defects.choose(out.rng, filler, "mis_scaled_unit", taken)] = "mis_scaled_unit"
    return part.with_columns(pl.Series("_kind", kinds.tolist(), dtype=pl.Utf8))


def apply_assessment_defects(part: pl.DataFrame) -> pl.DataFrame:
    """Turn each row's planted defect kind into its bad value; copies are flagged in _dup."""
    return part.with_columns(
        pl.when(pl.col("_kind") == "impossible_value")
        .then(250.0)
        .otherwise(pl.col("anc_10e9l"))
        .alias("anc_10e9l"),
        pl.when(pl.col("_kind") == "mis_scaled_unit")
        .then(pl.col("platelets_10e9l") * 1000)
        .otherwise(pl.col("platelets_10e9l"))
        .alias("platelets_10e9l"),
        pl.when(pl.col("_kind") == "date_out_of_order")
        .then(pl.col("diagnosis_date") - pl.duration(days=200))
        .otherwise(pl.col("assessment_date"))
        .alias("assessment_date"),
        pl.when(pl.col("_kind") == "unknown_response_code")
        .then(pl.lit("C R"))
        .otherwise(pl.col("reported_response"))
        .alias("reported_response"),
        (pl.col("_kind") == "duplicate_row").alias("_dup"),
        pl.when(pl.col("_kind") == "duplicate_row")
        .then(None)
        .otherwise(pl.col("_kind"))
        .alias("_defect"),
    )


def assessment_layout(site: str) -> tuple[list[pl.Expr], str, str]:
    """The site's assessment columns, its date column and an unparseable date in its format."""
    if site == "SITE01":
        date_fmt, bad_date = "%Y-%m-%d", "2015-13-45"
        cols = [
            pl.col("mrn").alias("MRN"),
            render.fmt_date("assessment_date", date_fmt).alias("assessment_date"),
            render.fmt_num("marrow_blasts_pct").alias("marrow_blasts_pct"),
            render.fmt_num("blood_blasts_pct").alias("blood_blasts_pct"),
            render.fmt_num("anc_10e9l").alias("anc_10e9l"),
            render.fmt_num("platelets_10e9l").alias("platelets_10e9l"),
            render.fmt_num("blood_wbc_10e9l").alias("blood_wbc_10e9l"),
            render.fmt_num("blood_rbc_10e12l").alias("blood_rbc_10e12l"),
            render.fmt_num("mrd_pct").alias("mrd_pct"),
            render.fmt_num("csf_wbc_per_ul").alias("csf_wbc_per_ul"),
            render.fmt_num("csf_rbc_per_ul").alias("csf_rbc_per_ul"),
            pl.col("csf_blasts").fill_null("").alias("csf_blasts"),
            pl.col("reported_response").fill_null("").alias("reported_response"),
        ]
        return cols, "assessment_date", bad_date
    date_fmt, bad_date = "%m/%d/%Y", "13/45/2015"
    cols = [
        pl.col("mrn").alias("Patient ID"),
        render.fmt_date("assessment_date", date_fmt).alias("Date"),
        render.fmt_num("marrow_blasts_pct").alias("BM Blasts (%)"),
        render.fmt_num("anc_10e9l", 1000).alias("ANC (cells/uL)"),
        render.fmt_num("platelets_10e9l", 1000).alias("PLT (cells/uL)"),
        render.fmt_num("blood_wbc_10e9l").alias("WBC (10^9/L)"),
        render.fmt_num("blood_rbc_10e12l").alias("RBC (10^12/L)"),
        render.fmt_num("mrd_pct").alias("MRD (%)"),
        render.fmt_num("csf_wbc_per_ul").alias("CSF WBC"),
        render.fmt_num("csf_rbc_per_ul").alias("CSF RBC"),
        pl.col("csf_blasts")
        .replace_strict({"present": "Seen", "absent": "Not seen"}, default=None)
        .fill_null("")
        .alias("CSF Blasts"),
        pl.col("reported_response").fill_null("").alias("Response"),
    ]
    return cols, "Date", bad_date


def write_assessments(out: Extracts, p: pl.DataFrame, asm: pl.DataFrame) -> None:
    """Marrow, blood and CSF assessments per site as CSV, defects in the filler rows."""
    a = render.with_dates(asm, p, "day", "assessment_date").join(
        _site_keys(p, "diagnosis_date"), on="pid"
    )
    if "blood_blasts_pct" not in a.columns:
        a = a.with_columns(pl.lit(None, pl.Float64).alias("blood_blasts_pct"))
    a = a.sort(["pid", "day"]).with_columns(pl.int_range(pl.len()).alias("_order"))
    for site in ("SITE01", "SITE02"):
        part = draw_assessment_defects(out, a.filter(pl.col("site") == site), site)
        part = apply_assessment_defects(part)
        cols, date_col, bad_date = assessment_layout(site)
        sf = (
            part.select(
                [*cols, "_kind", "_order", "_defect", "_dup", pl.col("query").alias("_query")]
            )
            .with_columns(
                pl.when(pl.col("_kind") == "missing_required")
                .then(pl.lit(""))
                .when(pl.col("_kind") == "unparseable_date")
                .then(pl.lit(bad_date))
                .otherwise(pl.col(date_col))
                .alias(date_col)
            )
            .drop("_kind")
        )
        sf = finish_rows(sf, "duplicate_row", "_dup", 2)
        f = f"clinical/{site}/assessments_{X}.csv"
        write_csv(public_columns(sf), out.landing / f)
        out.defects.record(f, sf)
        out.queries.record(f, sf.filter(pl.col("_copy") == 0))
        out.files[f] = sf.height


# ---------------- clinical: outcomes ----------------


def write_outcomes(out: Extracts, p: pl.DataFrame, outc: pl.DataFrame) -> None:
    """Relapse, death and last-contact events per site as CSV."""
    o = render.with_dates(outc, p, "day", "event_date").join(_site_keys(p), on="pid")
    o = o.sort(["pid", "day"]).with_columns(
        pl.int_range(pl.len()).alias("_order"), pl.lit(None, pl.Utf8).alias("_defect")
    )
    o1 = finish_rows(
        o.filter(pl.col("site") == "SITE01").select(
            pl.col("mrn").alias("MRN"),
            "event",
            render.fmt_date("event_date", "%Y-%m-%d").alias("event_date"),
            "_order",
            "_defect",
        ),
        None,
        None,
        2,
    )
    f = "clinical/SITE01/outcomes_" + X + ".csv"
    write_csv(public_columns(o1), out.landing / f)
    out.files[f] = o1.height
    o2 = finish_rows(
        o.filter(pl.col("site") == "SITE02").select(
            pl.col("mrn").alias("Patient ID"),
            pl.col("event")
            .replace_strict(
                {"relapse": "Relapse", "death": "Death", "last_contact": "Last Contact"}
            )
            .alias("Event"),
            render.fmt_date("event_date", "%m/%d/%Y").alias("Event Date"),
            "_order",
            "_defect",
        ),
        None,
        None,
        2,
    )
    f = "clinical/SITE02/outcomes_" + X + ".csv"
    write_csv(public_columns(o2), out.landing / f)
    out.files[f] = o2.height


# ---------------- flow cytometry ----------------


def draw_flow_rows(out: Extracts, part: pl.DataFrame, lab: str) -> pl.DataFrame:
    """A lab's specimens with ids, duplicates flagged (_dup) and unknown-patient rows added."""
    n = part.height
    ids = out.rng.choice(90_000_000, size=n, replace=False) + 10_000_000
    filler = (part["role"] == "filler").to_numpy()
    taken = np.zeros(n, bool)
    dup = out.defects.choose(out.rng, filler, "flow_duplicate_row", taken)
    unk = out.defects.choose(out.rng, np.ones(n, bool), "flow_unknown_patient", np.zeros(n, bool))
    part = part.with_columns(
        pl.Series(
            "specimen_id",
            (("F" if lab == "LABNUM" else "TX-") + pl.Series(ids).cast(pl.Utf8)).to_list(),
            dtype=pl.Utf8,
        ),
        pl.Series("_dup", dup),
        pl.lit(None, pl.Utf8).alias("_defect"),
    )
    extra = part.filter(pl.Series(unk)).with_columns(
        pl.format("A000{}", pl.int_range(pl.len()) + 1001).alias("mrn"),
        ("X" + pl.col("specimen_id")).alias("specimen_id"),
        pl.lit("flow_unknown_patient").alias("_defect"),
        pl.lit(False).alias("_dup"),
        (pl.col("_order") + 0.5).alias("_order"),
    )
    return pl.concat(
        [
            part.with_columns(pl.col("_order").cast(pl.Float64)),
            extra.with_columns(pl.col("_order").cast(pl.Float64)),
        ]
    )


def write_labnum(out: Extracts, part: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """LABNUM: Parquet with percent positive and MFIs."""
    sf = part.select(
        pl.col("specimen_id").alias("accession"),
        "mrn",
        pl.col("site").alias("referring_site"),
        render.fmt_date("collection_date", "%Y-%m-%d").alias("collected"),
        pl.col("specimen_type")
        .replace_strict({"marrow": "BM", "blood": "PB", "csf": "CSF", "tissue": "TISSUE"})
        .alias("specimen"),
        pl.col("blasts_pct").alias("blasts_pct"),
        pl.col("cd19_pct_positive").alias("cd19_pct"),
        pl.col("cd19_mfi").alias("cd19_mfi"),
        pl.col("ref_mfi").alias("normal_b_mfi"),
        "_order",
        "_defect",
        "_dup",
    )
    sf = finish_rows(sf, "flow_duplicate_row", "_dup", 1)
    f = f"flow/LABNUM/flow_{X}.parquet"
    (out.landing / f).parent.mkdir(parents=True, exist_ok=True)
    public_columns(sf).write_parquet(out.landing / f, statistics=False)
    return f, sf


def write_labtxt(out: Extracts, part: pl.DataFrame) -> tuple[str, pl.DataFrame]:
    """LABTXT: TSV with CD19 in words and specimens in words."""
    sf = part.select(
        pl.col("specimen_id").alias("Specimen No"),
        pl.col("mrn").alias("MRN"),
        pl.col("site").alias("Site"),
        render.fmt_date("collection_date", "%d-%b-%Y").alias("Collection Date"),
        pl.col("specimen_type")
        .replace_strict(
            {
                "marrow": "Bone marrow",
                "blood": "Peripheral blood",
                "csf": "CSF",
                "tissue": "Tissue",
            }
        )
        .alias("Source"),
        render.fmt_num("blasts_pct").alias("Blasts %"),
        pl.col("descriptor").alias("CD19"),
        pl.format("Blasts {}% of events; see full report.", pl.col("blasts_pct")).alias("Comment"),
        "_order",
        "_defect",
        "_dup",
    )
    sf = finish_rows(sf, "flow_duplicate_row", "_dup", 2)
    f = f"flow/LABTXT/flow_{X}.tsv"
    write_csv(public_columns(sf), out.landing / f, sep="\t")
    return f, sf


def write_flow(out: Extracts, p: pl.DataFrame, flw: pl.DataFrame) -> pl.DataFrame:
    """Both laboratories' flow results; returns the specimens with dates and CD19 descriptors."""
    fl = render.with_dates(flw, p, "day", "collection_date").join(_site_keys(p), on="pid")
    fl = fl.sort(["pid", "day", "specimen_type"]).with_columns(
        pl.int_range(pl.len()).alias("_order")
    )
    fl = fl.with_columns(
        pl.Series("descriptor", render.cd19_descriptors(fl["cls"].to_numpy(), out.rng))
    )
    for lab, writer in (("LABNUM", write_labnum), ("LABTXT", write_labtxt)):
        part = draw_flow_rows(out, fl.filter(pl.col("lab") == lab), lab)
        f, sf = writer(out, part)
        out.defects.record(f, sf)
        out.files[f] = sf.height
    return fl


# ---------------- imaging ----------------


def draw_imaging_rows(out: Extracts, part: pl.DataFrame, site: str) -> pl.DataFrame:
    """A site's reports with accessions, code/placeholder defects and unknown-patient rows."""
    n = part.height
    acc = out.rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    neg = part["negative_only"].to_numpy()
    taken = np.zeros(n, bool)
    kinds = np.full(n, None, dtype=object)
    for kind in ("imaging_code_typo", "imaging_placeholder_text"):
        kinds[out.defects.choose(out.rng, neg, kind, taken)] = kind
    unk = out.defects.choose(out.rng, neg, "imaging_unknown_patient", taken.copy())
    part = part.with_columns(
        pl.Series(
            "accession", [("RA" if site == "SITE01" else "IM") + str(v) for v in acc], dtype=pl.Utf8
        ),
        pl.Series("_defect", kinds.tolist(), dtype=pl.Utf8),
    )
    extra = part.filter(pl.Series(unk)).with_columns(
        pl.format("A000{}", pl.int_range(pl.len()) + 5001).alias("mrn")
        if site == "SITE01"
        else pl.format("55-00{}", pl.int_range(pl.len()) + 1001).alias("mrn"),
        ("U" + pl.col("accession")).alias("accession"),
        pl.lit("imaging_unknown_patient").alias("_defect"),
        (pl.col("_order") + 0.5).alias("_order"),
    )
    return pl.concat([part, extra]).with_columns(
        pl.when(pl.col("_defect") == "imaging_code_typo")
        .then(pl.lit("C.T."))
        .otherwise(pl.col("modality"))
        .alias("modality"),
        pl.when(pl.col("_defect") == "imaging_placeholder_text")
        .then(pl.lit("-"))
        .otherwise(pl.col("report_text"))
        .alias("report_text"),
    )


def imaging_columns(part: pl.DataFrame, site: str) -> pl.DataFrame:
    """The site's imaging layout."""
    if site == "SITE01":
        return part.select(
            "accession",
            "mrn",
            render.fmt_date("report_date", "%Y-%m-%d").alias("exam_date"),
            "modality",
            pl.col("report_text").alias("impression"),
            "_order",
            "_defect",
        )
    return part.select(
        pl.col("accession").alias("Acc #"),
        pl.col("mrn").alias("Patient ID"),
        render.fmt_date("report_date", "%m/%d/%Y").alias("Exam Date"),
        pl.col("modality")
        .replace({"PET-CT": "PET", "pathology": "Path", "exam": "Exam"})
        .alias("Modality"),
        pl.col("report_text").alias("Impression"),
        "_order",
        "_defect",
    )


def write_imaging(out: Extracts, p: pl.DataFrame, men: pl.DataFrame) -> None:
    """Imaging reports per site as CSV: the EM statements rendered as report text."""
    sent = render.render_sentences(men, out.rng)
    rep = render.assemble_reports(sent)
    rep = render.with_dates(rep, p, "day", "report_date").join(_site_keys(p), on="pid")
    rep = rep.sort(["pid", "day", "report"]).with_columns(
        pl.int_range(pl.len()).cast(pl.Float64).alias("_order")
    )
    for site in ("SITE01", "SITE02"):
        part = draw_imaging_rows(out, rep.filter(pl.col("site") == site), site)
        sf = finish_rows(imaging_columns(part, site), None, None, 2)
        f = f"imaging/{site}/reports_{X}.csv"
        write_csv(public_columns(sf), out.landing / f)
        out.defects.record(f, sf)
        out.files[f] = sf.height

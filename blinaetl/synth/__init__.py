"""Synthetic cohort generator: realistic site extracts plus their ground truth.

`generate(out, n_patients, seed)` writes `out/landing/` (two clinical sites, two flow
laboratories, imaging reports of both sites) and `out/truth/` (`patients.csv` with the columns
of `curated.patients`, `defects.csv`, `identifiers.txt`, `perturbations.json`). Deterministic
for a seed; vectorized with numpy and polars.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from blinaetl.synth import events, render
from blinaetl.synth.cohort import HARD_CASE_COLUMNS, HARD_CASE_RATES, simulate_patients
from blinaetl.synth.truth import truth_patients

__all__ = ["generate"]

X = render.EXTRACT_DATE


def _quiet(_: str) -> None:
    return None


class _Defects:
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
                schema={
                    "file": pl.Utf8,
                    "row": pl.Int64,
                    "table": pl.Utf8,
                    "field": pl.Utf8,
                    "kind": pl.Utf8,
                    "check_id": pl.Utf8,
                },
            )
        )

    def table(self) -> pl.DataFrame:
        if not self.frames:
            return pl.DataFrame(
                schema={
                    "file": pl.Utf8,
                    "row": pl.Int64,
                    "table": pl.Utf8,
                    "field": pl.Utf8,
                    "kind": pl.Utf8,
                    "check_id": pl.Utf8,
                }
            )
        return pl.concat(self.frames).sort(["file", "row"])


class _DerivationQueries:
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


def _finish(
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


def _write_csv(frame: pl.DataFrame, path: Path, sep: str = ",", encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = frame.write_csv(separator=sep, quote_style="necessary")
    path.write_bytes(text.encode(encoding))


def _public(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select([c for c in frame.columns if not c.startswith("_")])


def generate(
    out: Path,
    n_patients: int = 65,
    seed: int = 2017,
    progress: Callable[[str], None] | None = None,
    hard_cases: bool = True,
    hard_case_rates: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write a synthetic cohort's landing extracts and ground truth under `out`.

    `hard_cases` (on by default) plants the situations the derivation rules are about at the
    rates of `blinaetl.synth.cohort.HARD_CASE_RATES`, overridden by `hard_case_rates`; they are
    drawn from a stream of their own, so switching them off leaves the rest of the cohort as is.
    """
    say = progress or _quiet
    out = Path(out)
    landing, truth_dir = out / "landing", out / "truth"
    rng = np.random.default_rng(seed)
    say("simulating patients")
    hard = np.random.default_rng([seed, 16]) if hard_cases else None
    p = simulate_patients(n_patients, rng, hard, hard_case_rates)
    say("building records")
    trt = events.build_treatments(p, rng)
    asm = events.build_assessments(p, rng)
    men = events.build_mentions(p, rng)
    flw = events.build_flow(p, rng)
    # last contact: open follow-up or NE loss, never before the latest record
    latest = (
        pl.concat(
            [
                trt.select("pid", pl.col("start_day").alias("day")),
                asm.select("pid", "day"),
                men.select("pid", "day"),
                flw.select("pid", "day"),
                p.filter(pl.col("relapsed")).select("pid", pl.col("relapse_day").alias("day")),
            ]
        )
        .group_by("pid")
        .agg(pl.col("day").max().alias("latest"))
    )
    p = (
        p.join(latest, on="pid", how="left")
        .with_columns(
            pl.when(pl.col("last_contact_tie"))
            .then(pl.col("latest"))
            .otherwise(
                pl.max_horizontal(
                    pl.when(pl.col("best_response") == "NE")
                    .then(pl.col("ne_lost_day"))
                    .otherwise(pl.col("followup")),
                    pl.col("latest") + 1,
                )
            )
            .alias("last_contact_day")
        )
        .sort("pid")
    )
    outc = events.build_outcomes(p)
    defects = _Defects()
    derivation_queries = _DerivationQueries()
    files: dict[str, int] = {}
    say("rendering extracts")

    pid_site = p.select("pid", "site", "mrn", "day0", "diagnosis_date")

    # ---------------- clinical: patients ----------------
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
    s1 = _finish(s1, None, None, 2)
    f = "clinical/SITE01/patients_" + X + ".csv"
    _write_csv(_public(s1), landing / f, encoding="latin-1")
    files[f] = s1.height
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
    s2 = _finish(s2, None, None, 4)
    f = "clinical/SITE02/patients_" + X + ".xlsx"
    render.write_xlsx(
        _public(s2), landing / f, "Patients", title="SITE02 leukemia registry extract"
    )
    files[f] = s2.height

    # ---------------- clinical: treatments ----------------
    t = render.with_dates(trt, p, "start_day", "start_date")
    t = (
        t.with_columns(
            pl.when(pl.col("end_day").is_not_null())
            .then(pl.col("start_date") + pl.duration(days=pl.col("end_day") - pl.col("start_day")))
            .alias("end_date")
        )
        .join(pid_site.select("pid", "site", "mrn"), on="pid")
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
    t1 = _finish(t1, None, None, 2)
    f = "clinical/SITE01/treatments_" + X + ".csv"
    _write_csv(_public(t1), landing / f)
    files[f] = t1.height
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
    t2 = _finish(t2, None, None, 2)
    f = "clinical/SITE02/treatments_" + X + ".xlsx"
    render.write_xlsx(_public(t2), landing / f, "Treatments")
    files[f] = t2.height

    # ---------------- clinical: assessments (with defects in filler rows) ----------------
    a = render.with_dates(asm, p, "day", "assessment_date").join(
        pid_site.select("pid", "site", "mrn", "diagnosis_date"), on="pid"
    )
    if "blood_blasts_pct" not in a.columns:
        a = a.with_columns(pl.lit(None, pl.Float64).alias("blood_blasts_pct"))
    a = a.sort(["pid", "day"]).with_columns(pl.int_range(pl.len()).alias("_order"))
    for site, layout in (("SITE01", "s1"), ("SITE02", "s2")):
        part = a.filter(pl.col("site") == site)
        n = part.height
        filler = (part["kind"] == "filler").to_numpy()
        taken = np.zeros(n, bool)
        kinds = np.full(n, None, dtype=object)
        for kind in (
            "duplicate_row",
            "missing_required",
            "unparseable_date",
            "impossible_value",
            "date_out_of_order",
            "unknown_response_code",
        ):
            kinds[defects.choose(rng, filler, kind, taken)] = kind
        if site == "SITE01":
            kinds[defects.choose(rng, filler, "mis_scaled_unit", taken)] = "mis_scaled_unit"
        part = part.with_columns(pl.Series("_kind", kinds.tolist(), dtype=pl.Utf8))
        part = part.with_columns(
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
        if layout == "s1":
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
            date_col = "assessment_date"
        else:
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
            date_col = "Date"
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
        sf = _finish(sf, "duplicate_row", "_dup", 2)
        f = f"clinical/{site}/assessments_{X}.csv"
        _write_csv(_public(sf), landing / f)
        defects.record(f, sf)
        derivation_queries.record(f, sf.filter(pl.col("_copy") == 0))
        files[f] = sf.height

    # ---------------- clinical: outcomes ----------------
    o = render.with_dates(outc, p, "day", "event_date").join(
        pid_site.select("pid", "site", "mrn"), on="pid"
    )
    o = o.sort(["pid", "day"]).with_columns(
        pl.int_range(pl.len()).alias("_order"), pl.lit(None, pl.Utf8).alias("_defect")
    )
    o1 = _finish(
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
    _write_csv(_public(o1), landing / f)
    files[f] = o1.height
    o2 = _finish(
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
    _write_csv(_public(o2), landing / f)
    files[f] = o2.height

    # ---------------- flow cytometry ----------------
    fl = render.with_dates(flw, p, "day", "collection_date").join(
        pid_site.select("pid", "site", "mrn"), on="pid"
    )
    fl = fl.sort(["pid", "day", "specimen_type"]).with_columns(
        pl.int_range(pl.len()).alias("_order")
    )
    fl = fl.with_columns(
        pl.Series("descriptor", render.cd19_descriptors(fl["cls"].to_numpy(), rng))
    )
    for lab in ("LABNUM", "LABTXT"):
        part = fl.filter(pl.col("lab") == lab)
        n = part.height
        ids = rng.choice(90_000_000, size=n, replace=False) + 10_000_000
        filler = (part["role"] == "filler").to_numpy()
        taken = np.zeros(n, bool)
        dup = defects.choose(rng, filler, "flow_duplicate_row", taken)
        unk = defects.choose(rng, np.ones(n, bool), "flow_unknown_patient", np.zeros(n, bool))
        part = part.with_columns(
            pl.Series(
                "specimen_id",
                (("F" if lab == "LABNUM" else "TX-") + pl.Series(ids).cast(pl.Utf8)).to_list(),
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
        part = pl.concat(
            [
                part.with_columns(pl.col("_order").cast(pl.Float64)),
                extra.with_columns(pl.col("_order").cast(pl.Float64)),
            ]
        )
        if lab == "LABNUM":
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
            sf = _finish(sf, "flow_duplicate_row", "_dup", 1)
            f = f"flow/{lab}/flow_{X}.parquet"
            (landing / f).parent.mkdir(parents=True, exist_ok=True)
            _public(sf).write_parquet(landing / f, statistics=False)
        else:
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
                pl.format("Blasts {}% of events; see full report.", pl.col("blasts_pct")).alias(
                    "Comment"
                ),
                "_order",
                "_defect",
                "_dup",
            )
            sf = _finish(sf, "flow_duplicate_row", "_dup", 2)
            f = f"flow/{lab}/flow_{X}.tsv"
            _write_csv(_public(sf), landing / f, sep="\t")
        defects.record(f, sf)
        files[f] = sf.height
    specimens = fl

    # ---------------- imaging ----------------
    say("writing report text")
    sent = events_sentences = render.render_sentences(men, rng)
    rep = render.assemble_reports(sent)
    rep = render.with_dates(rep, p, "day", "report_date").join(
        pid_site.select("pid", "site", "mrn"), on="pid"
    )
    rep = rep.sort(["pid", "day", "report"]).with_columns(
        pl.int_range(pl.len()).cast(pl.Float64).alias("_order")
    )
    for site in ("SITE01", "SITE02"):
        part = rep.filter(pl.col("site") == site)
        n = part.height
        acc = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
        neg = part["negative_only"].to_numpy()
        taken = np.zeros(n, bool)
        kinds = np.full(n, None, dtype=object)
        for kind in ("imaging_code_typo", "imaging_placeholder_text"):
            kinds[defects.choose(rng, neg, kind, taken)] = kind
        unk = defects.choose(rng, neg, "imaging_unknown_patient", taken.copy())
        part = part.with_columns(
            pl.Series("accession", [("RA" if site == "SITE01" else "IM") + str(v) for v in acc]),
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
        part = pl.concat([part, extra]).with_columns(
            pl.when(pl.col("_defect") == "imaging_code_typo")
            .then(pl.lit("C.T."))
            .otherwise(pl.col("modality"))
            .alias("modality"),
            pl.when(pl.col("_defect") == "imaging_placeholder_text")
            .then(pl.lit("-"))
            .otherwise(pl.col("report_text"))
            .alias("report_text"),
        )
        if site == "SITE01":
            sf = part.select(
                "accession",
                "mrn",
                render.fmt_date("report_date", "%Y-%m-%d").alias("exam_date"),
                "modality",
                pl.col("report_text").alias("impression"),
                "_order",
                "_defect",
            )
        else:
            sf = part.select(
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
        sf = _finish(sf, None, None, 2)
        f = f"imaging/{site}/reports_{X}.csv"
        _write_csv(_public(sf), landing / f)
        defects.record(f, sf)
        files[f] = sf.height

    # ---------------- truth ----------------
    say("writing truth")
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth = truth_patients(p, specimens, men, asm)
    truth.write_csv(truth_dir / "patients.csv")
    defect_table = defects.table()
    defect_table.write_csv(truth_dir / "defects.csv")
    # the queries the derivations must raise for the hard cases planted (file, row, rule_id)
    derivation_queries.table().write_csv(truth_dir / "derivation_queries.csv")
    ident = sorted(
        set(p["mrn"].to_list())
        | set((p["last_name"] + ", " + p["first_name"]).to_list())
        | set(p["last_name"].to_list())
        | set(p["first_name"].to_list())
        | set(p["birth_date"].dt.strftime("%Y-%m-%d").to_list())
        | set(p["birth_date"].dt.strftime("%m/%d/%Y").to_list())
    )
    ident_extra: set[str] = set()
    for path in sorted((landing / "flow").rglob("*")) + sorted((landing / "imaging").rglob("*")):
        if path.suffix == ".parquet":
            ident_extra |= set(pl.read_parquet(path)["accession"].cast(pl.Utf8).to_list())
        elif path.suffix in (".csv", ".tsv"):
            frame = pl.read_csv(
                path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema=False
            )
            for col in ("Specimen No", "accession", "Acc #"):
                if col in frame.columns:
                    ident_extra |= set(frame[col].to_list())
    (truth_dir / "identifiers.txt").write_text(
        "\n".join(sorted(set(ident) | ident_extra)) + "\n", encoding="utf-8"
    )
    perturbations = {
        "seed": seed,
        "patients": n_patients,
        "extract_date": X,
        "hard_cases": {
            "rates": (
                {**HARD_CASE_RATES, **(hard_case_rates or {})}
                if hard_cases
                else dict.fromkeys(HARD_CASE_RATES, 0.0)
            ),
            "planted": {name: int(p[col].sum()) for name, col in HARD_CASE_COLUMNS.items()},
        },
        "defects": {
            k: {
                "table": render.DEFECT_RATES[k][0],
                "rate": render.DEFECT_RATES[k][1],
                "check_id": render.DEFECT_RATES[k][2],
                **defects.counts.get(k, {"eligible": 0, "planted": 0}),
            }
            for k in render.DEFECT_RATES
        },
        "layouts": {
            "SITE01": "CSV, ISO dates, patients file latin-1, canonical column names (MRN upper case), prior_hct yes/no",
            "SITE02": "patients and treatments XLSX (patients header on row 3 under a title), US dates, ANC and platelets in cells per microlitre, sex Male/Female, Ph Pos/Neg/Unk, therapy Blinatumomab/Allo SCT, events Relapse/Death/Last Contact, CSF blasts Seen/Not seen",
            "LABNUM": "Parquet, percent CD19-positive, CD19 MFI and normal B-cell MFI, specimen BM/PB/CSF/TISSUE",
            "LABTXT": "TSV, dates like 05-Mar-2015, CD19 as words, specimen as words",
            "imaging": "CSV per site, report text with negation, uncertainty, history, resolution and laterality",
        },
        "files": files,
    }
    (truth_dir / "perturbations.json").write_text(json.dumps(perturbations, indent=2) + "\n")
    del events_sentences
    return {
        "out": str(out),
        "patients": n_patients,
        "files": files,
        "defects": int(defect_table.height),
    }

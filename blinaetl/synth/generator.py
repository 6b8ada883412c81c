"""`generate`: simulate a cohort, build its records, write the site extracts and the truth.

The stages draw from one random stream (and the hard cases from a stream of their own) in the
order `generate` calls them; that order is what a seed means, so it is kept when code moves.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import blinaetl.synth.events as events
import blinaetl.synth.render as render
from blinaetl.synth.cohort import simulate_patients
from blinaetl.synth.extracts import (
    Extracts,
    write_assessments,
    write_flow,
    write_imaging,
    write_outcomes,
    write_patients,
    write_treatments,
)
from blinaetl.synth.hardcases import HARD_CASE_COLUMNS, HARD_CASE_RATES, check_hard_case_rates
from blinaetl.synth.truth import truth_patients

X = render.EXTRACT_DATE

LAYOUTS = {
    "SITE01": "CSV, ISO dates, patients file latin-1, canonical column names (MRN upper case), prior_hct yes/no",
    "SITE02": "patients and treatments XLSX (patients header on row 3 under a title), US dates, ANC and platelets in cells per microlitre, sex Male/Female, Ph Pos/Neg/Unk, therapy Blinatumomab/Allo SCT, events Relapse/Death/Last Contact, CSF blasts Seen/Not seen",
    "LABNUM": "Parquet, percent CD19-positive, CD19 MFI and normal B-cell MFI, specimen BM/PB/CSF/TISSUE",
    "LABTXT": "TSV, dates like 05-Mar-2015, CD19 as words, specimen as words",
    "imaging": "CSV per site, report text with negation, uncertainty, history, resolution and laterality",
}


def _quiet(_: str) -> None:
    return None


def derive_last_contact(
    p: pl.DataFrame, trt: pl.DataFrame, asm: pl.DataFrame, men: pl.DataFrame, flw: pl.DataFrame
) -> pl.DataFrame:
    """Last contact: open follow-up or NE loss, never before the latest record (or on it, tie)."""
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
    return (
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


def build_identifiers(p: pl.DataFrame, landing: Path) -> list[str]:
    """Every identifier value written: MRNs, names, birth dates, specimen and accession ids."""
    ident = set(p["mrn"].to_list())
    ident |= set((p["last_name"] + ", " + p["first_name"]).to_list())
    ident |= set(p["last_name"].to_list()) | set(p["first_name"].to_list())
    ident |= set(p["birth_date"].dt.strftime("%Y-%m-%d").to_list())
    ident |= set(p["birth_date"].dt.strftime("%m/%d/%Y").to_list())
    for path in sorted((landing / "flow").rglob("*")) + sorted((landing / "imaging").rglob("*")):
        if path.suffix == ".parquet":
            ident |= set(pl.read_parquet(path)["accession"].cast(pl.Utf8).to_list())
        elif path.suffix in (".csv", ".tsv"):
            frame = pl.read_csv(
                path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema=False
            )
            for col in ("Specimen No", "accession", "Acc #"):
                if col in frame.columns:
                    ident |= set(frame[col].to_list())
    return sorted(ident)


def build_perturbations(
    p: pl.DataFrame,
    out: Extracts,
    seed: int,
    n_patients: int,
    hard_rates: dict[str, float],
) -> dict[str, Any]:
    """perturbations.json: seed, hard cases (rates, planted), defects, layouts, files."""
    return {
        "seed": seed,
        "patients": n_patients,
        "extract_date": X,
        "hard_cases": {
            "rates": hard_rates,
            "planted": {name: int(p[col].sum()) for name, col in HARD_CASE_COLUMNS.items()},
        },
        "defects": {
            k: {
                "table": render.DEFECT_RATES[k][0],
                "rate": render.DEFECT_RATES[k][1],
                "check_id": render.DEFECT_RATES[k][2],
                **out.defects.counts.get(k, {"eligible": 0, "planted": 0}),
            }
            for k in render.DEFECT_RATES
        },
        "layouts": LAYOUTS,
        "files": out.files,
    }


def write_truth(
    truth_dir: Path,
    p: pl.DataFrame,
    records: dict[str, pl.DataFrame],
    out: Extracts,
    perturbations: dict[str, Any],
) -> int:
    """The truth files: patients, defects, derivation queries, identifiers, perturbations."""
    truth_dir.mkdir(parents=True, exist_ok=True)
    truth = truth_patients(p, records["specimens"], records["mentions"], records["assessments"])
    truth.write_csv(truth_dir / "patients.csv")
    defect_table = out.defects.table()
    defect_table.write_csv(truth_dir / "defects.csv")
    # the queries the derivations must raise for the hard cases planted (file, row, rule_id)
    out.queries.table().write_csv(truth_dir / "derivation_queries.csv")
    (truth_dir / "identifiers.txt").write_text(
        "\n".join(build_identifiers(p, out.landing)) + "\n", encoding="utf-8"
    )
    (truth_dir / "perturbations.json").write_text(json.dumps(perturbations, indent=2) + "\n")
    return defect_table.height


def check_cohort_size(n_patients: object) -> int:
    """The number of patients as an int; ValueError unless it is a whole number of at least 1.

    Any size from 1 works (a site or laboratory may then have no rows, and its extract is
    written with the header only); the CLI asks for at least 10 so that every site and
    laboratory has patients.
    """
    try:
        n = operator.index(n_patients)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(
            f"n_patients must be a whole number of at least 1, got {n_patients!r}"
        ) from None
    if n < 1:
        raise ValueError(f"n_patients must be at least 1 (a cohort needs patients), got {n}")
    return n


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
    n_patients = check_cohort_size(n_patients)
    say = progress or _quiet
    out = Path(out)
    rng = np.random.default_rng(seed)
    say("simulating patients")
    hard = np.random.default_rng([seed, 16]) if hard_cases else None
    p = simulate_patients(n_patients, rng, hard, hard_case_rates)
    say("building records")
    trt = events.build_treatments(p, rng)
    asm = events.build_assessments(p, rng)
    men = events.build_mentions(p, rng)
    flw = events.build_flow(p, rng)
    p = derive_last_contact(p, trt, asm, men, flw)
    outc = events.build_outcomes(p)
    extracts = Extracts(landing=out / "landing", rng=rng)
    say("rendering extracts")
    write_patients(extracts, p)
    write_treatments(extracts, p, trt)
    write_assessments(extracts, p, asm)
    write_outcomes(extracts, p, outc)
    specimens = write_flow(extracts, p, flw)
    say("writing report text")
    write_imaging(extracts, p, men)
    say("writing truth")
    rates = (
        check_hard_case_rates(hard_case_rates)
        if hard_cases
        else dict.fromkeys(HARD_CASE_RATES, 0.0)
    )
    perturbations = build_perturbations(p, extracts, seed, n_patients, rates)
    records = {"specimens": specimens, "mentions": men, "assessments": asm}
    n_defects = write_truth(out / "truth", p, records, extracts, perturbations)
    return {
        "out": str(out),
        "patients": n_patients,
        "files": extracts.files,
        "defects": n_defects,
    }

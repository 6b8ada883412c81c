"""Ground truth of `curated.patients` from the simulated patients and their canonical records.

Patient-level outcomes (response, transplant, relapse, survival) come from the simulation
itself. The EM flags are computed by the rules of docs/derivations.md from the canonical EM
statements and CSF results, in polars: an implementation independent of the pipeline's SQL.
"""

from __future__ import annotations

import polars as pl

TRUTH_COLUMNS = [
    "site",
    "mrn",
    "age_at_start",
    "sex",
    "ph_status",
    "prior_hct",
    "prior_lines",
    "bm_blasts_pct",
    "bm_blasts_gt50",
    "prior_em",
    "active_em_at_start",
    "em_sites_at_start",
    "cd19_baseline",
    "best_response",
    "responder",
    "response_day",
    "mrd_negative",
    "hct_in_cr",
    "hct_day",
    "relapsed",
    "relapse_day",
    "failure_pattern",
    "em_at_failure",
    "cd19_at_failure",
    "died",
    "os_days",
    "os_event",
    "efs_days",
    "efs_event",
    "rfs_days",
    "rfs_event",
]


def cns3(frame: pl.DataFrame) -> pl.Expr:
    """CSF CNS3 by COG with the Steinherz-Bleyer traumatic-tap rule (blood counts per uL)."""
    wbc, rbc = pl.col("csf_wbc_per_ul"), pl.col("csf_rbc_per_ul")
    blood_ratio = (pl.col("blood_wbc_10e9l") * 1e3) / (pl.col("blood_rbc_10e12l") * 1e6)
    return (
        (pl.col("csf_blasts") == "present")
        & (wbc >= 5)
        & ((rbc < 10) | ((wbc / rbc) > 2 * blood_ratio).fill_null(False))
    )


def em_evidence(mentions: pl.DataFrame, assessments: pl.DataFrame) -> pl.DataFrame:
    """pid, day, site_group, assertion for EM statements and CSF CNS3 (as 'cns' present)."""
    m = mentions.filter(pl.col("assertion") != "filler").select(
        "pid", "day", "site_group", "assertion"
    )
    c = assessments.filter(cns3(assessments).fill_null(False)).select(
        "pid", "day", pl.lit("cns").alias("site_group"), pl.lit("present").alias("assertion")
    )
    return pl.concat([m, c])


def truth_patients(
    p: pl.DataFrame,
    specimens: pl.DataFrame,
    mentions: pl.DataFrame | None = None,
    assessments: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per patient with the columns of curated.patients (site + mrn for the key)."""
    ev = em_evidence(mentions, assessments) if mentions is not None else None
    base = p
    if ev is not None:
        prior = (
            ev.filter(
                (
                    pl.col("assertion").is_in(["present", "historical", "resolved"])
                    & (pl.col("day") < 0)
                )
                | ((pl.col("assertion") == "historical") & (pl.col("day") <= 7))
            )
            .select("pid")
            .unique()
            .with_columns(pl.lit(True).alias("prior_em"))
        )
        active = (
            ev.filter((pl.col("assertion") == "present") & pl.col("day").is_between(-30, 7))
            .group_by("pid")
            .agg(pl.col("site_group").unique().sort().str.join(",").alias("em_sites_at_start"))
            .with_columns(pl.lit(True).alias("active_em_at_start"))
        )
        fail = (
            ev.filter(pl.col("assertion") == "present")
            .join(p.select("pid", "failure_day"), on="pid")
            .filter(
                (pl.col("failure_day") >= 0) & ((pl.col("day") - pl.col("failure_day")).abs() <= 14)
            )
            .select("pid")
            .unique()
            .with_columns(pl.lit(True).alias("em_at_failure_rule"))
        )
        base = (
            base.join(prior, on="pid", how="left")
            .join(active, on="pid", how="left")
            .join(fail, on="pid", how="left")
            .with_columns(
                pl.col("prior_em").fill_null(False),
                pl.col("active_em_at_start").fill_null(False),
                pl.when(pl.col("failure_type") != "")
                .then(pl.col("em_at_failure_rule").fill_null(False))
                .otherwise(None)
                .alias("em_at_failure"),
            )
        )
    baseline = (
        specimens.filter(pl.col("role") == "baseline")
        .with_columns((pl.col("specimen_type") == "marrow").alias("_marrow"))
        .sort(["pid", "_marrow", "day"], descending=[False, True, True])
        .group_by("pid", maintain_order=True)
        .agg(pl.col("cls").first().alias("cd19_baseline"))
    )
    base = base.join(baseline, on="pid", how="left")
    resp = pl.col("responder")
    died = pl.col("died")
    os_days = pl.when(died).then(pl.col("death_day")).otherwise(pl.col("last_contact_day"))
    rel = pl.col("relapsed")
    rfs_end = (
        pl.when(rel)
        .then(pl.col("relapse_day"))
        .when(died)
        .then(pl.col("death_day"))
        .otherwise(pl.col("last_contact_day"))
    )
    failed = pl.col("failure_type") != ""
    out = base.with_columns(
        (pl.col("bm_blasts_pct") > 50).alias("bm_blasts_gt50"),
        pl.when(resp).then(pl.col("response_day")).otherwise(None).alias("response_day"),
        pl.when(resp & (pl.col("mrd_state") != "none"))
        .then(pl.col("mrd_state") == "neg")
        .otherwise(None)
        .alias("mrd_negative"),
        pl.when(resp).then(pl.col("hct")).otherwise(None).alias("hct_in_cr"),
        pl.when(pl.col("hct")).then(pl.col("hct_day")).otherwise(None).alias("hct_day"),
        pl.when(resp).then(rel).otherwise(None).alias("relapsed"),
        pl.when(rel).then(pl.col("relapse_day")).otherwise(None).alias("relapse_day"),
        pl.when(failed & pl.col("fail_evaluable"))
        .then(pl.col("cd19_fail_true"))
        .otherwise(None)
        .alias("cd19_at_failure"),
        os_days.alias("os_days"),
        died.cast(pl.Int64).alias("os_event"),
        pl.when(~resp)
        .then(0)
        .when(rel)
        .then(pl.col("relapse_day"))
        .when(died)
        .then(pl.col("death_day"))
        .otherwise(os_days)
        .alias("efs_days"),
        pl.when(~resp | rel | died).then(1).otherwise(0).alias("efs_event"),
        pl.when(resp).then(rfs_end - pl.col("response_day")).otherwise(None).alias("rfs_days"),
        pl.when(resp).then((rel | died).cast(pl.Int64)).otherwise(None).alias("rfs_event"),
    )
    if ev is None:
        out = out.with_columns(
            pl.col("hist_em").alias("prior_em"),
            pl.col("active_em").alias("active_em_at_start"),
            pl.when(pl.col("active_em"))
            .then(pl.col("active_group"))
            .otherwise(None)
            .alias("em_sites_at_start"),
            pl.when(failed).then(pl.col("em_fail")).otherwise(None).alias("em_at_failure"),
        )
    return out.sort("pid").select(TRUTH_COLUMNS)

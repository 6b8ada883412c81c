"""Ground truth of `curated.patients` from the simulated patients and their canonical records.

Patient-level outcomes (response, transplant, relapse, survival) come from the simulation
itself. The EM flags and CD19 at failure are computed by the rules of docs/derivations.md from
the canonical EM statements, CSF results and flow specimens, in polars: an implementation
independent of the pipeline's SQL.
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
    "response_source",
    "response_day",
    "mrd_negative",
    "hct_in_cr",
    "hct_day",
    "relapsed",
    "relapse_day",
    "relapse_evidence",
    "failure_type",
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


def derive_prior_em(ev: pl.DataFrame) -> pl.DataFrame:
    """pid, prior_em: EM present, historical or resolved before day 0 (history up to day 7)."""
    return (
        ev.filter(
            (pl.col("assertion").is_in(["present", "historical", "resolved"]) & (pl.col("day") < 0))
            | ((pl.col("assertion") == "historical") & (pl.col("day") <= 7))
        )
        .select("pid")
        .unique()
        .with_columns(pl.lit(True).alias("prior_em"))
    )


def derive_active_em(ev: pl.DataFrame) -> pl.DataFrame:
    """pid, em_sites_at_start, active_em_at_start: EM present from day -30 to day 7."""
    return (
        ev.filter((pl.col("assertion") == "present") & pl.col("day").is_between(-30, 7))
        .group_by("pid")
        .agg(pl.col("site_group").unique().sort().str.join(",").alias("em_sites_at_start"))
        .with_columns(pl.lit(True).alias("active_em_at_start"))
    )


def derive_em_at_failure(ev: pl.DataFrame, p: pl.DataFrame) -> pl.DataFrame:
    """pid, em_at_failure_rule: new EM disease within 14 days of the failure day.

    EM at failure = new disease (issue 16 rule 4): a site not active at start, or a start site
    reported resolved/absent after its last start finding and before this one.
    """
    start_sites = (
        ev.filter((pl.col("assertion") == "present") & pl.col("day").is_between(-30, 7))
        .group_by("pid", "site_group")
        .agg(pl.col("day").max().alias("last_start_day"))
    )
    cleared = ev.filter(pl.col("assertion").is_in(["absent", "resolved"])).select(
        "pid", "site_group", pl.col("day").alias("clear_day")
    )
    near = (
        ev.filter(pl.col("assertion") == "present")
        .join(p.select("pid", "failure_day"), on="pid")
        .filter(
            (pl.col("failure_day") >= 0) & ((pl.col("day") - pl.col("failure_day")).abs() <= 14)
        )
        .join(start_sites, on=["pid", "site_group"], how="left")
    )
    shown_clear = (
        near.filter(pl.col("last_start_day").is_not_null())
        .join(cleared, on=["pid", "site_group"])
        .filter(
            (pl.col("clear_day") > pl.col("last_start_day")) & (pl.col("clear_day") < pl.col("day"))
        )
        .select("pid")
    )
    return (
        pl.concat([near.filter(pl.col("last_start_day").is_null()).select("pid"), shown_clear])
        .unique()
        .with_columns(pl.lit(True).alias("em_at_failure_rule"))
    )


def join_em_truth(base: pl.DataFrame, ev: pl.DataFrame) -> pl.DataFrame:
    """prior_em, active_em_at_start, em_sites_at_start, em_at_failure from the EM evidence."""
    return (
        base.join(derive_prior_em(ev), on="pid", how="left")
        .join(derive_active_em(ev), on="pid", how="left")
        .join(derive_em_at_failure(ev, base), on="pid", how="left")
        .with_columns(
            pl.col("prior_em").fill_null(False),
            pl.col("active_em_at_start").fill_null(False),
            pl.when(pl.col("failure_day") >= 0)
            .then(pl.col("em_at_failure_rule").fill_null(False))
            .otherwise(None)
            .alias("em_at_failure"),
        )
    )


def join_last_response_assessment(base: pl.DataFrame, assessments: pl.DataFrame) -> pl.DataFrame:
    """last_response_assessment_day: the last marrow (or labelled) assessment from response on."""
    marrow = assessments.filter(
        pl.col("marrow_blasts_pct").is_not_null() | pl.col("reported_response").is_not_null()
    )
    last_resp = (
        marrow.join(base.select("pid", "response_day"), on="pid")
        .filter(pl.col("day") >= pl.col("response_day"))
        .group_by("pid")
        .agg(pl.col("day").max().alias("last_response_assessment_day"))
    )
    return base.join(last_resp, on="pid", how="left")


def derive_cd19_baseline(specimens: pl.DataFrame) -> pl.DataFrame:
    """pid, cd19_baseline: the latest baseline marrow specimen's class, else the latest blood."""
    return (
        specimens.filter(pl.col("role") == "baseline")
        .with_columns((pl.col("specimen_type") == "marrow").alias("_marrow"))
        .sort(["pid", "_marrow", "day"], descending=[False, True, True])
        .group_by("pid", maintain_order=True)
        .agg(pl.col("cls").first().alias("cd19_baseline"))
    )


def derive_cd19_at_failure(specimens: pl.DataFrame, p: pl.DataFrame) -> pl.DataFrame:
    """pid, cd19_at_failure_rule: the class of the canonical specimen nearest the failure day.

    docs/derivations.md (issue 16 rule 3, read around the failure day): within 30 days
    (cd19_failure_window_days) either side of it and never before day 1; on equal distance the
    later specimen, on the same day marrow first.
    """
    return (
        specimens.join(p.select("pid", "failure_day"), on="pid")
        .with_columns((pl.col("day") - pl.col("failure_day")).abs().alias("_dist"))
        .filter((pl.col("failure_day") >= 0) & (pl.col("day") >= 1) & (pl.col("_dist") <= 30))
        .with_columns((pl.col("specimen_type") != "marrow").alias("_not_marrow"))
        .sort(["pid", "_dist", "day", "_not_marrow"], descending=[False, False, True, False])
        .group_by("pid", maintain_order=True)
        .agg(pl.col("cls").first().alias("cd19_at_failure_rule"))
    )


def response_columns() -> list[pl.Expr]:
    """Response, MRD, transplant, relapse and failure columns (read from the simulation)."""
    resp, rel = pl.col("responder"), pl.col("relapsed")
    failed = pl.col("failure_type") != ""
    return [
        (pl.col("bm_blasts_pct") > 50).alias("bm_blasts_gt50"),
        pl.when(resp).then(pl.col("response_day")).otherwise(None).alias("response_day"),
        pl.when(resp & (pl.col("mrd_state") != "none"))
        .then(pl.col("mrd_state") == "neg")
        .otherwise(None)
        .alias("mrd_negative"),
        pl.when(resp).then(pl.col("hct")).otherwise(None).alias("hct_in_cr"),
        pl.when(pl.col("hct_row")).then(pl.col("hct_day")).otherwise(None).alias("hct_day"),
        pl.when(resp).then(rel).otherwise(None).alias("relapsed"),
        pl.when(rel).then(pl.col("relapse_day")).otherwise(None).alias("relapse_day"),
        pl.when(failed)
        .then(pl.col("cd19_at_failure_rule"))
        .otherwise(None)
        .alias("cd19_at_failure"),
    ]


def survival_columns() -> list[pl.Expr]:
    """OS and EFS (ELN/TOWER template) days and events."""
    resp, died, rel = pl.col("responder"), pl.col("died"), pl.col("relapsed")
    ne = pl.col("best_response") == "NE"
    os_days = pl.when(died).then(pl.col("death_day")).otherwise(pl.col("last_contact_day"))
    return [
        os_days.alias("os_days"),
        died.cast(pl.Int64).alias("os_event"),
        # EFS, ELN/TOWER template: evaluable non-responders an event on day 0; not evaluable
        # (NE) censored on day 0 unless dead; responders censored at the last response
        # assessment (the last marrow assessment from the response day on)
        pl.when(ne & died)
        .then(pl.col("death_day"))
        .when(ne)
        .then(0)
        .when(~resp)
        .then(0)
        .when(rel)
        .then(pl.col("relapse_day"))
        .when(died)
        .then(pl.col("death_day"))
        .otherwise(pl.col("last_response_assessment_day"))
        .alias("efs_days"),
        pl.when(ne)
        .then(died.cast(pl.Int64))
        .when(~resp | rel | died)
        .then(1)
        .otherwise(0)
        .alias("efs_event"),
    ]


def source_and_rfs_columns() -> list[pl.Expr]:
    """Response source, relapse evidence, failure type and RFS days and event."""
    resp, died, rel = pl.col("responder"), pl.col("died"), pl.col("relapsed")
    ne = pl.col("best_response") == "NE"
    rfs_end = (
        pl.when(rel)
        .then(pl.col("relapse_day"))
        .when(died)
        .then(pl.col("death_day"))
        .otherwise(pl.col("last_contact_day"))
    )
    return [
        pl.when(ne)
        .then(pl.lit("none"))
        .when(pl.col("labels_only"))
        .then(pl.lit("reported"))
        .otherwise(pl.lit("derived"))
        .alias("response_source"),
        pl.when(rel)
        .then(
            pl.concat_str(
                [
                    pl.when(pl.col("failure_pattern") != "isolated_em").then(pl.lit("marrow,")),
                    pl.when(pl.col("em_fail")).then(pl.lit("em,")),
                    pl.when(~pl.col("relapse_unreported")).then(pl.lit("reported")),
                ],
                ignore_nulls=True,
            ).str.strip_chars_end(",")
        )
        .alias("relapse_evidence"),
        pl.when(pl.col("failure_type") != "").then(pl.col("failure_type")).alias("failure_type"),
        pl.when(resp).then(rfs_end - pl.col("response_day")).otherwise(None).alias("rfs_days"),
        pl.when(resp).then((rel | died).cast(pl.Int64)).otherwise(None).alias("rfs_event"),
    ]


def simulated_em_columns() -> list[pl.Expr]:
    """The EM flags as simulated, when no canonical EM statements are given."""
    return [
        pl.col("hist_em").alias("prior_em"),
        pl.col("active_em").alias("active_em_at_start"),
        pl.when(pl.col("active_em"))
        .then(pl.col("active_group"))
        .otherwise(None)
        .alias("em_sites_at_start"),
        pl.when(pl.col("failure_type") != "")
        .then(pl.col("em_fail"))
        .otherwise(None)
        .alias("em_at_failure"),
    ]


def truth_patients(
    p: pl.DataFrame,
    specimens: pl.DataFrame,
    mentions: pl.DataFrame | None = None,
    assessments: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per patient with the columns of curated.patients (site + mrn for the key)."""
    base = p
    if mentions is not None:
        if assessments is None:
            raise ValueError(
                "the EM truth needs the assessments (CSF CNS status) with the mentions"
            )
        base = join_em_truth(base, em_evidence(mentions, assessments))
    if assessments is not None:
        base = join_last_response_assessment(base, assessments)
    else:
        base = base.with_columns(pl.lit(None, pl.Int64).alias("last_response_assessment_day"))
    base = base.join(derive_cd19_baseline(specimens), on="pid", how="left")
    base = base.join(derive_cd19_at_failure(specimens, p), on="pid", how="left")
    # one with_columns: every expression reads the simulated values, not the ones it replaces
    out = base.with_columns(*response_columns(), *survival_columns(), *source_and_rfs_columns())
    if mentions is None:
        out = out.with_columns(*simulated_em_columns())
    return out.sort("pid").select(TRUTH_COLUMNS)

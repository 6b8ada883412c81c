"""Root cause first: quarantined rows that only fail because something upstream failed.

A row of assessments, treatments, outcomes, flow results or imaging reports is checked against
the patients the site delivered (`known_patient` checks). When that check fails, the patient is
not always unknown to the site:

- the site's patients file was **rejected** as a whole (a renamed header, a wrong encoding): every
  row of the site then fails `known_patient`. Those rows are attributed to the rejected file
  (`root_cause` = its path), the file's one query says how many dependent rows of which files wait
  for it, and no knock-on query is listed per row;
- the patient's row in the patients file was **quarantined**, e.g. because two rows of the
  patients extract **conflict** (same MRN, different content): the dependent row's message says so
  and names the file and rows to fix, instead of "No patient with this MRN ...". The conflicting
  rows themselves get a message naming each other.

Only file paths, row numbers and check ids are named, never a value.

The failures may hold stand-ins (`_copy` true, no `_source_row`): the failures of the exact
copies of one row of a streamed file, listed once (`landing.attribute_root_causes`). A copy has
its first row's site, patient and checks, so a stand-in gets the cause and message each copy
would; where rows are listed or counted, the copies' own rows come from `copy_rows` (site,
patient_key, _source_file, _source_row of each copy of the patients extracts) and
`copy_counts` (_source_file, _first_row, n: how many copies a stand-in stands for).
"""

from __future__ import annotations

import polars as pl

from blinaetl.validate.contracts import Contract

ROOT_CAUSE = "root_cause"


def _known_patient_checks(contracts: dict[str, Contract]) -> list[str]:
    return sorted(
        c.id for ct in contracts.values() for c in ct.checks if c.check == "known_patient"
    )


def _unique_patient_checks(contracts: dict[str, Contract]) -> list[str]:
    pats = contracts.get("patients")
    return sorted(c.id for c in pats.checks if c.check == "unique") if pats else []


def _rows_text(rows: pl.Expr) -> pl.Expr:
    """'file row N, file row M' from a list of structs {_source_file, _source_row}."""
    return rows.list.eval(
        pl.element().struct.field("_source_file")
        + pl.lit(" row ")
        + pl.element().struct.field("_source_row").cast(pl.Utf8)
    ).list.join(", ")


def name_conflicting_rows(failures: pl.DataFrame, unique: list[str]) -> pl.DataFrame:
    """Step 1: conflicting rows of the patients extract each name the rows they conflict with."""
    is_conflict = (pl.col("table_name") == "patients") & pl.col("check_id").is_in(unique)
    conflict = failures.filter(is_conflict)
    if not unique or conflict.height == 0:
        return failures
    rows = conflict.group_by("site", "patient_key").agg(
        pl.struct("_source_file", "_source_row").unique().sort().alias("_rows")
    )
    failures = failures.join(rows, on=["site", "patient_key"], how="left", maintain_order="left")
    return failures.with_columns(
        pl.when(is_conflict)
        .then(
            pl.lit(
                "This patient row conflicts with another row of the same patient (same "
                "MRN at the same site): "
            )
            + _rows_text(pl.col("_rows"))
            + pl.lit(". Send one row per patient: keep the correct row, remove the others.")
        )
        .otherwise(pl.col("message"))
        .alias("message")
    ).drop("_rows")


def _real(failures: pl.DataFrame) -> pl.DataFrame:
    """The failures that are rows of their own (not stand-ins for copies)."""
    return failures.filter(~pl.col("_copy")) if "_copy" in failures.columns else failures


def name_quarantined_patient(
    failures: pl.DataFrame,
    known: list[str],
    unique: list[str],
    copy_rows: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Step 2: a row failing `known_patient` whose patient's own row was quarantined says which
    row and why (a conflict, or the checks it failed)."""
    pat_fail = failures.filter(pl.col("table_name") == "patients")
    if not (pat_fail.height and known):
        return failures
    keys = ["site", "patient_key"]
    rows = _real(pat_fail).select(*keys, "_source_file", "_source_row")
    if copy_rows is not None:
        rows = pl.concat([rows, copy_rows.select(rows.columns)], how="vertical_relaxed")
    listed = rows.group_by(keys).agg(
        pl.struct("_source_file", "_source_row").unique().sort().alias("_rows")
    )
    why = (
        pat_fail.group_by(keys)
        .agg(
            pl.col("check_id").unique().sort().str.join(", ").alias("_checks"),
            pl.col("check_id").is_in(unique).any().alias("_conflict"),
        )
        .join(listed, on=keys, how="left")
        .select(*keys, "_rows", "_checks", "_conflict")
    )
    failures = failures.join(why, on=["site", "patient_key"], how="left", maintain_order="left")
    knock_on = pl.col("check_id").is_in(known) & pl.col("_rows").is_not_null()
    return failures.with_columns(
        pl.when(knock_on & pl.col("_conflict"))
        .then(
            pl.lit("Not loaded because this patient's rows in the patients extract conflict ")
            + pl.lit("(")
            + _rows_text(pl.col("_rows"))
            + pl.lit("); fix those rows and this row loads as delivered.")
        )
        .when(knock_on)
        .then(
            pl.lit("Not loaded because this patient's row in the patients extract (")
            + _rows_text(pl.col("_rows"))
            + pl.lit(") was quarantined (")
            + pl.col("_checks")
            + pl.lit("); fix that row and this row loads as delivered.")
        )
        .otherwise(pl.col("message"))
        .alias("message")
    ).drop("_rows", "_checks", "_conflict")


def find_rejected_patient_files(
    file_rows: list[dict], loaded_patients: pl.DataFrame, source_sites: dict[str, str]
) -> dict[str, str]:
    """Site -> its rejected patients file, for sites of which no patient was loaded."""
    loaded_sites = set(loaded_patients["site"].drop_nulls().unique().to_list())
    rejected: dict[str, str] = {}
    for row in file_rows:
        site = source_sites.get(row.get("source_id") or "")
        is_rejected = row.get("table_name") == "patients" and row.get("status") == "rejected"
        if is_rejected and site and site not in loaded_sites:
            rejected.setdefault(site, row["path"])
    return rejected


def attribute_to_rejected_files(
    failures: pl.DataFrame,
    rejected: dict[str, str],
    known: list[str],
    copy_counts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Step 3: `known_patient` failures of a site whose patients file was rejected get that
    file as `root_cause`; the note per file counts the dependent rows and files."""
    if not (rejected and known):
        return failures, {}
    cause = pl.col("site").replace_strict(rejected, default=None, return_dtype=pl.Utf8)
    knock_on = pl.col("check_id").is_in(known) & cause.is_not_null()
    failures = failures.with_columns(
        pl.when(knock_on).then(cause).otherwise(pl.col(ROOT_CAUSE)).alias(ROOT_CAUSE)
    ).with_columns(
        pl.when(pl.col(ROOT_CAUSE).is_not_null())
        .then(
            pl.lit("Not loaded because the site's patients file ")
            + pl.col(ROOT_CAUSE)
            + pl.lit(" was rejected; fix that file and this row is checked again.")
        )
        .otherwise(pl.col("message"))
        .alias("message")
    )
    caused = failures.filter(pl.col(ROOT_CAUSE).is_not_null())
    per_cause = (
        caused.group_by(ROOT_CAUSE)
        .agg(pl.col("_source_file").unique().sort().alias("files"))
        .join(_rows_per_cause(caused, copy_counts), on=ROOT_CAUSE, how="left")
        .select(ROOT_CAUSE, "rows", "files")
    )
    notes = {
        cause_path: (
            f"{n_rows} dependent row(s) of {len(files)} file(s) ({', '.join(files)}) are "
            "quarantined because of it and listed under this file, not one by one"
        )
        for cause_path, n_rows, files in per_cause.iter_rows()
    }
    return failures, notes


def _rows_per_cause(caused: pl.DataFrame, copy_counts: pl.DataFrame | None) -> pl.DataFrame:
    """`root_cause, rows`: the distinct rows waiting for each cause, copies included."""
    real = (
        _real(caused)
        .group_by(ROOT_CAUSE)
        .agg(pl.struct("_source_file", "_source_row").n_unique().cast(pl.Int64).alias("rows"))
    )
    if copy_counts is None or "_copy" not in caused.columns:
        return real
    copies = (
        caused.filter(pl.col("_copy"))
        .select(ROOT_CAUSE, "_source_file", "_first_row")
        .unique()
        .join(copy_counts, on=["_source_file", "_first_row"])
        .group_by(ROOT_CAUSE)
        .agg(pl.col("n").sum().cast(pl.Int64).alias("_more"))
    )
    return (
        real.join(copies, on=ROOT_CAUSE, how="full", coalesce=True)
        .with_columns((pl.col("rows").fill_null(0) + pl.col("_more").fill_null(0)).alias("rows"))
        .select(ROOT_CAUSE, "rows")
    )


def attribute(
    failures: pl.DataFrame,
    file_rows: list[dict],
    loaded_patients: pl.DataFrame,
    contracts: dict[str, Contract],
    source_sites: dict[str, str],
    copy_rows: pl.DataFrame | None = None,
    copy_counts: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict[str, str]]:
    """(`failures` with a `root_cause` column and corrected messages, notes per rejected file).

    `file_rows` are the file rows of the run so far (rejected files among them), `loaded_patients`
    the validated patients (site column), `source_sites` each clinical source's site;
    `copy_rows` and `copy_counts` for stand-ins of copies (see the module).
    """
    failures = failures.with_columns(pl.lit(None, pl.Utf8).alias(ROOT_CAUSE))
    if failures.height == 0:
        return failures, {}
    known = _known_patient_checks(contracts)
    unique = _unique_patient_checks(contracts)
    failures = name_conflicting_rows(failures, unique)
    failures = name_quarantined_patient(failures, known, unique, copy_rows)
    rejected = find_rejected_patient_files(file_rows, loaded_patients, source_sites)
    return attribute_to_rejected_files(failures, rejected, known, copy_counts)

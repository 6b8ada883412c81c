"""The generator's hard cases (issue 16): CLI options, validation, at least one of each in the
demo, and cohort sizes.

Every planted hard case is counted from what the generator wrote (the truth patients, the
derivation queries it expects and the landing extracts), not from its own counter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from blinaetl import cli
from blinaetl.synth import generate
from blinaetl.synth.hardcases import HARD_CASE_RATES, check_hard_case_rates, parse_hard_case
from blinaetl.synth.phrases import EM_SITE_TERMS

# ---------------- reading what the generator wrote ----------------

# (file, id column, site column or constant, date column, date format) of dated records
_DATED = [
    ("clinical/SITE01/assessments_20260901.csv", "MRN", "SITE01", "assessment_date", "%Y-%m-%d"),
    ("clinical/SITE02/assessments_20260901.csv", "Patient ID", "SITE02", "Date", "%m/%d/%Y"),
    ("clinical/SITE01/treatments_20260901.csv", "MRN", "SITE01", "start_date", "%Y-%m-%d"),
    ("clinical/SITE02/treatments_20260901.xlsx", "Patient ID", "SITE02", "Start", "%m/%d/%Y"),
    ("imaging/SITE01/reports_20260901.csv", "mrn", "SITE01", "exam_date", "%Y-%m-%d"),
    ("imaging/SITE02/reports_20260901.csv", "Patient ID", "SITE02", "Exam Date", "%m/%d/%Y"),
    ("flow/LABNUM/flow_20260901.parquet", "mrn", "referring_site", "collected", "%Y-%m-%d"),
    ("flow/LABTXT/flow_20260901.tsv", "MRN", "Site", "Collection Date", "%d-%b-%Y"),
]


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path).select(pl.all().cast(pl.Utf8))
    if path.suffix == ".xlsx":
        return pl.read_excel(path, infer_schema_length=0)
    return pl.read_csv(path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema=False)


def _outcomes(root: Path) -> pl.DataFrame:
    """site, mrn, event (lower case, underscores), date of both sites' outcome extracts."""
    parts = []
    for site, mrn, event, date, fmt in (
        ("SITE01", "MRN", "event", "event_date", "%Y-%m-%d"),
        ("SITE02", "Patient ID", "Event", "Event Date", "%m/%d/%Y"),
    ):
        frame = _read(root / "landing" / "clinical" / site / "outcomes_20260901.csv")
        parts.append(
            frame.select(
                pl.lit(site).alias("site"),
                pl.col(mrn).alias("mrn"),
                pl.col(event).str.to_lowercase().str.replace(" ", "_").alias("event"),
                pl.col(date).str.to_date(fmt).alias("date"),
            )
        )
    return pl.concat(parts)


def _record_dates(root: Path) -> pl.DataFrame:
    """site, mrn, date, file and text (imaging impressions) of every dated record written."""
    parts = []
    for file, mrn, site, date, fmt in _DATED:
        frame = _read(root / "landing" / file)
        text = next((c for c in ("impression", "Impression") if c in frame.columns), None)
        parts.append(
            frame.select(
                (pl.col(site) if site in frame.columns else pl.lit(site)).alias("site"),
                pl.col(mrn).alias("mrn"),
                pl.col(date).str.to_date(fmt, strict=False).alias("date"),
                pl.lit(file).alias("file"),
                (pl.col(text) if text else pl.lit(None, pl.Utf8)).alias("text"),
            )
        )
    return pl.concat(parts).filter(pl.col("date").is_not_null())


def _truth(root: Path) -> pl.DataFrame:
    return pl.read_csv(root / "truth" / "patients.csv", infer_schema=False)


def _is(column: str) -> pl.Expr:
    return pl.col(column) == "true"


def _int(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Int64)


def planted_from_files(root: Path) -> dict[str, int]:
    """How many patients show each hard case in the truth and landing files."""
    truth = _truth(root)
    outcomes = _outcomes(root)
    records = _record_dates(root)
    keys = ["site", "mrn"]
    counts: dict[str, int] = {}
    # a responder at the first assessment (day 26-36) dead in remission before the second
    # (day 68 at the earliest)
    counts["early_death_responder"] = truth.filter(
        _is("responder") & _is("died") & ~_is("relapsed") & (_int("os_days") < 68)
    ).height
    counts["hct_after_relapse"] = truth.filter(
        _is("relapsed") & (_int("hct_day") > _int("relapse_day"))
    ).height
    counts["hct_non_responder"] = truth.filter(
        (pl.col("best_response") == "refractory") & pl.col("hct_day").is_not_null()
    ).height
    reported = outcomes.filter(pl.col("event") == "relapse").select(keys).unique()
    counts["relapse_unreported"] = (
        truth.filter(_is("relapsed")).join(reported, on=keys, how="anti").height
    )
    csf = []
    for site, blasts, present, wbc, rbc in (
        ("SITE01", "csf_blasts", "present", "csf_wbc_per_ul", "csf_rbc_per_ul"),
        ("SITE02", "CSF Blasts", "Seen", "CSF WBC", "CSF RBC"),
    ):
        frame = _read(root / "landing" / "clinical" / site / "assessments_20260901.csv")
        csf.append(
            frame.filter(
                (pl.col(blasts) == present)
                & (pl.col(wbc).cast(pl.Float64, strict=False) >= 5)
                & (pl.col(rbc).fill_null("") == "")
            ).height
        )
    queries = pl.read_csv(root / "truth" / "derivation_queries.csv", infer_schema=False)
    n_query = queries.filter(pl.col("rule_id") == "DRV_CSF_RBC_NOT_REPORTED").height
    counts["csf_rbc_missing"] = sum(csf) if sum(csf) == n_query else -1
    counts["em_never_reassessed"] = truth.filter(
        pl.col("best_response") == "CR_em_not_reassessed"
    ).height
    # refractory with EM at start, EM not counted at failure, and a report after day 7 (the
    # start window's end) naming a start site: the failure finding at the start site
    start = (
        records.filter(pl.col("file").str.contains("treatments"))
        .group_by(keys)
        .agg(pl.col("date").min().alias("day0"))
    )
    candidates = truth.filter(
        (pl.col("failure_type") == "refractory") & _is("active_em_at_start") & ~_is("em_at_failure")
    )
    persistent = 0
    later = records.filter(pl.col("text").is_not_null()).join(start, on=keys)
    later = later.filter((pl.col("date") - pl.col("day0")).dt.total_days() > 7)
    for row in candidates.iter_rows(named=True):
        terms = [t for g in row["em_sites_at_start"].split(",") for t, _ in EM_SITE_TERMS[g]]
        texts = later.filter((pl.col("site") == row["site"]) & (pl.col("mrn") == row["mrn"]))
        if any(term in text.lower() for text in texts["text"] for term in terms):
            persistent += 1
    counts["em_persistent_at_failure"] = persistent
    counts["response_labels_only"] = truth.filter(pl.col("response_source") == "reported").height
    counts["tie_relapse_death"] = truth.filter(
        _is("relapsed") & _is("died") & (_int("os_days") == _int("relapse_day"))
    ).height
    latest = records.group_by(keys).agg(pl.col("date").max().alias("latest"))
    contact = outcomes.filter(pl.col("event") == "last_contact").join(latest, on=keys)
    counts["tie_last_contact"] = contact.filter(pl.col("date") == pl.col("latest")).height
    return counts


# ---------------- at least one of every enabled hard case ----------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hard") / "demo"
    generate(out, n_patients=65, seed=2017)
    return out


def test_the_demo_shows_every_hard_case_at_least_once(demo):
    counts = planted_from_files(demo)
    assert set(counts) == set(HARD_CASE_RATES)
    missing = {name: n for name, n in counts.items() if n < 1}
    assert not missing, f"hard cases not seen in the demo's files: {missing}"
    planted = json.loads((demo / "truth" / "perturbations.json").read_text())["hard_cases"]
    # what the files show agrees with what the generator says it planted
    assert counts == planted["planted"]


def test_a_case_switched_off_is_not_forced_in(tmp_path):
    rates = {"early_death_responder": 0.0, "em_never_reassessed": 0.0}
    generate(tmp_path / "c", n_patients=65, seed=2017, hard_case_rates=rates)
    counts = planted_from_files(tmp_path / "c")
    assert counts["early_death_responder"] == 0
    assert counts["em_never_reassessed"] == 0


def test_no_hard_cases_plants_none(tmp_path):
    generate(tmp_path / "c", n_patients=65, seed=2017, hard_cases=False)
    counts = planted_from_files(tmp_path / "c")
    assert counts == dict.fromkeys(HARD_CASE_RATES, 0)


# ---------------- validation (library) ----------------


@pytest.mark.parametrize("rate", [0, 0.0, 0.5, 1, 1.0, np.int64(1), np.float32(0.5)])
def test_rates_from_0_to_1_are_taken(rate):
    assert check_hard_case_rates({"tie_last_contact": rate})["tie_last_contact"] == rate


@pytest.mark.parametrize("rate", [-0.1, 1.1, float("nan"), "0.5", True, None])
def test_a_rate_outside_0_to_1_or_not_a_number_is_refused(tmp_path, rate):
    with pytest.raises(ValueError, match="rate of hard case 'tie_last_contact' must be"):
        generate(tmp_path / "c", n_patients=20, hard_case_rates={"tie_last_contact": rate})
    assert not (tmp_path / "c").exists()


def test_an_unknown_hard_case_is_refused_with_the_valid_names(tmp_path):
    with pytest.raises(ValueError) as error:
        generate(tmp_path / "c", n_patients=20, hard_case_rates={"early_deaths": 0.5})
    message = str(error.value)
    assert "'early_deaths'" in message
    assert all(name in message for name in HARD_CASE_RATES)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tie_last_contact=0", ("tie_last_contact", 0.0)),
        ("tie_last_contact=1", ("tie_last_contact", 1.0)),
        (" csf_rbc_missing = 0.25 ", ("csf_rbc_missing", 0.25)),
    ],
)
def test_name_equals_rate_is_parsed(text, expected):
    assert parse_hard_case(text) == expected


# ---------------- the CLI ----------------


def _synth(tmp_path: Path, *options: str) -> int:
    argv = ["synth", "--patients", "40", "--seed", "3", "--out", str(tmp_path / "c"), *options]
    return cli.main(argv)


def test_cli_hard_case_rates_reach_the_cohort(tmp_path):
    code = _synth(
        tmp_path,
        "--hard-case",
        "response_labels_only=1",
        "--hard-case",
        "csf_rbc_missing=0",
        "--hard-case",
        "tie_last_contact=0",
    )
    assert code == cli.EXIT_OK
    root = tmp_path / "c"
    rates = json.loads((root / "truth" / "perturbations.json").read_text())["hard_cases"]["rates"]
    assert rates["response_labels_only"] == 1.0
    assert rates["csf_rbc_missing"] == rates["tie_last_contact"] == 0.0
    assert rates["hct_after_relapse"] == HARD_CASE_RATES["hct_after_relapse"]
    truth = _truth(root)
    responders = truth.filter(_is("responder"))
    assert responders.height > 0
    # rate 1: every responder reports response only as a label; rate 0: none planted
    assert (responders["response_source"] == "reported").all()
    counts = planted_from_files(root)
    assert counts["csf_rbc_missing"] == 0
    assert counts["tie_last_contact"] == 0


def test_cli_no_hard_cases(tmp_path):
    assert _synth(tmp_path, "--no-hard-cases") == cli.EXIT_OK
    root = tmp_path / "c"
    hard = json.loads((root / "truth" / "perturbations.json").read_text())["hard_cases"]
    assert hard["rates"] == dict.fromkeys(HARD_CASE_RATES, 0.0)
    assert planted_from_files(root) == dict.fromkeys(HARD_CASE_RATES, 0)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("early_deaths=0.5", ["'early_deaths'", *HARD_CASE_RATES]),
        ("tie_last_contact=-0.1", ["'tie_last_contact'", "-0.1", "from 0 to 1"]),
        ("tie_last_contact=1.1", ["'tie_last_contact'", "1.1", "from 0 to 1"]),
        ("tie_last_contact=often", ["'tie_last_contact'", "'often'", "from 0 to 1"]),
        ("tie_last_contact", ["'tie_last_contact'", "NAME=RATE", *HARD_CASE_RATES]),
    ],
)
def test_cli_refuses_a_bad_hard_case_naming_option_and_value(tmp_path, capsys, value, says):
    with pytest.raises(SystemExit) as stop:
        _synth(tmp_path, "--hard-case", value)
    assert stop.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "--hard-case" in err
    assert all(s in err for s in says), err
    assert not (tmp_path / "c").exists()


def test_cli_refuses_hard_case_rates_with_no_hard_cases(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        _synth(tmp_path, "--no-hard-cases", "--hard-case", "tie_last_contact=1")
    assert stop.value.code == cli.EXIT_USAGE
    assert "--no-hard-cases" in capsys.readouterr().err


def test_cli_help_lists_every_hard_case(capsys):
    with pytest.raises(SystemExit):
        cli.main(["synth", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--hard-case NAME=RATE" in out and "--no-hard-cases" in out
    for name, rate in HARD_CASE_RATES.items():
        assert f"{name} ({rate:g})" in out


# ---------------- cohort size ----------------


@pytest.mark.parametrize(("n", "seed"), [(1, 20), (1, 1), (2, 2), (5, 3), (9, 2017)])
def test_small_cohorts_are_generated(tmp_path, n, seed):
    summary = generate(tmp_path / "c", n_patients=n, seed=seed)
    assert summary["patients"] == n
    assert _truth(tmp_path / "c").height == n
    # every extract is written, empty ones with their header
    assert len(summary["files"]) == 12


@pytest.mark.parametrize("n", [0, -3, 2.5, "10"])
def test_no_patients_is_refused_with_a_clear_message(tmp_path, n):
    with pytest.raises(ValueError, match="n_patients must be"):
        generate(tmp_path / "c", n_patients=n)
    assert not (tmp_path / "c").exists()

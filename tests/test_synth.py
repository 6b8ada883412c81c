"""Synthetic cohort generator: determinism, calibration, planted defects, truth layout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pytest

from blinaetl.ingest.sources import load_sources
from blinaetl.synth import generate
from blinaetl.synth.phrases import CD19_PHRASES, EM_FILLER, EM_TEMPLATES
from blinaetl.synth.render import DEFECT_RATES, n_defects
from tests.test_end_to_end import PATIENT_COLUMNS


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "c2000"
    generate(out, n_patients=2000, seed=3)
    return out


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "c65"
    generate(out, n_patients=65, seed=2017)
    return out


def test_same_seed_gives_identical_files(tmp_path, small):
    again = tmp_path / "again"
    generate(again, n_patients=65, seed=2017)
    assert _hashes(again) == _hashes(small)


def test_other_seed_gives_other_files(tmp_path, small):
    other = tmp_path / "other"
    generate(other, n_patients=65, seed=2018)
    a, b = _hashes(other), _hashes(small)
    assert a.keys() == b.keys()
    assert a != b


def _truth(root: Path) -> pl.DataFrame:
    t = pl.read_csv(root / "truth" / "patients.csv", infer_schema=False)
    bools = [
        "responder",
        "relapsed",
        "bm_blasts_gt50",
        "prior_em",
        "active_em_at_start",
        "hct_in_cr",
        "em_at_failure",
    ]
    return t.with_columns([pl.col(c).eq("true") for c in bools])


def test_truth_has_the_curated_patients_columns(small):
    truth = pl.read_csv(small / "truth" / "patients.csv", infer_schema=False)
    expected = [c for c in PATIENT_COLUMNS if c != "patient_key"]
    assert set(expected) <= set(truth.columns)
    assert {"site", "mrn"} <= set(truth.columns)
    assert truth.height == 65
    assert truth.select(pl.struct("site", "mrn").n_unique()).item() == 65


def test_calibrated_to_the_seed_study(big):
    t = _truth(big)
    responders = t.filter(pl.col("responder"))
    refractory = t.filter(pl.col("best_response") == "refractory")
    assert 0.45 <= responders.height / t.height <= 0.57  # seed study: 51%
    assert 0.50 <= responders["relapsed"].mean() <= 0.70  # 61% of responders relapsed
    assert 0.35 <= responders["hct_in_cr"].mean() <= 0.55  # 45% transplanted in remission
    assert 0.30 <= refractory["em_at_failure"].mean() <= 0.55  # 41% EM progression
    relapsed = t.filter(pl.col("relapsed"))
    assert 0.30 <= relapsed["em_at_failure"].mean() <= 0.55  # 40% EM relapse
    # the seed study's predictors of lower response
    for factor in ("bm_blasts_gt50", "prior_em", "active_em_at_start"):
        with_f = t.filter(pl.col(factor))["responder"].mean()
        without_f = t.filter(~pl.col(factor))["responder"].mean()
        assert with_f < without_f - 0.1, factor
    fail_neg = t.filter(pl.col("cd19_at_failure").is_not_null())
    assert (fail_neg["cd19_at_failure"] == "negative").mean() > 0.15
    assert set(t["cd19_baseline"].drop_nulls().unique()) == {
        "negative",
        "dim",
        "moderate",
        "strong",
    }
    assert t["died"].eq("true").mean() > 0.3
    assert t["os_event"].eq("0").sum() > 0, "some patients are censored"


def test_moderate_strong_cd19_raises_em_at_failure(big):
    failed = _truth(big).filter(pl.col("em_at_failure").is_not_null())
    ms = failed.filter(pl.col("cd19_baseline").is_in(["moderate", "strong"]))[
        "em_at_failure"
    ].mean()
    other = failed.filter(pl.col("cd19_baseline").is_in(["negative", "dim"]))[
        "em_at_failure"
    ].mean()
    assert ms > other


def test_every_defect_kind_planted_at_its_rate(big, small):
    for root in (big, small):
        pert = json.loads((root / "truth" / "perturbations.json").read_text())["defects"]
        defects = pl.read_csv(root / "truth" / "defects.csv", infer_schema=False)
        for kind, (table, rate, check_id, _) in DEFECT_RATES.items():
            rec = pert[kind]
            assert rec["check_id"] == check_id and rec["table"] == table
            planted = defects.filter(pl.col("kind") == kind)
            assert planted.height == rec["planted"] >= 1, kind
            assert (planted["check_id"] == check_id).all()
            # the rate holds per file: each file plants round(rate x its eligible rows), >= 1
            assert planted.height <= max(rec["eligible"], 1)
            assert planted.height >= n_defects(rate, rec["eligible"]) // 2, kind


def test_defect_rows_point_at_real_rows(small):
    defects = pl.read_csv(small / "truth" / "defects.csv")
    for (file,), rows in defects.group_by(["file"]):
        path = small / "landing" / file
        if path.suffix == ".parquet":
            n_rows = pl.read_parquet(path).height
            first = 1
        else:
            sep = "\t" if path.suffix == ".tsv" else ","
            n_rows = pl.read_csv(path, separator=sep, infer_schema=False).height
            first = 2
        assert rows["row"].min() >= first
        assert rows["row"].max() <= n_rows + first - 1


def test_identifiers_listed(small):
    ids = set((small / "truth" / "identifiers.txt").read_text(encoding="utf-8").splitlines())
    truth = pl.read_csv(small / "truth" / "patients.csv", infer_schema=False)
    assert set(truth["mrn"]) <= ids
    lab = pl.read_csv(
        small / "landing" / "flow" / "LABTXT" / "flow_20260901.tsv",
        separator="\t",
        infer_schema=False,
    )
    assert set(lab["Specimen No"]) <= ids
    s1 = pl.read_csv(
        small / "landing" / "clinical" / "SITE01" / "patients_20260901.csv",
        encoding="latin1",
        infer_schema=False,
    )
    assert set(s1["patient_name"]) <= ids
    assert set(s1["birth_date"]) <= ids


def test_latin1_file_is_not_utf8(small):
    data = (small / "landing" / "clinical" / "SITE01" / "patients_20260901.csv").read_bytes()
    data.decode("latin-1")
    if any(b > 127 for b in data):
        with pytest.raises(UnicodeDecodeError):
            data.decode("utf-8")


def test_rendered_text_comes_from_the_phrase_lists(small):
    lab = pl.read_csv(
        small / "landing" / "flow" / "LABTXT" / "flow_20260901.tsv",
        separator="\t",
        infer_schema=False,
    )
    phrases = {p for ps in CD19_PHRASES.values() for p in ps}
    assert set(lab["CD19"].drop_nulls()) <= phrases
    reports = pl.read_csv(
        small / "landing" / "imaging" / "SITE01" / "reports_20260901.csv", infer_schema=False
    )
    text = " ".join(reports["impression"].drop_nulls())
    assert any(f in text for f in EM_FILLER)
    assert "leukemi" in text


def test_mappings_name_only_canonical_fields():
    # load_sources rejects a mapping naming a field its table lacks; every shipped one loads
    sources = load_sources()
    assert {s.source for s in sources} >= {
        "site01_clinical",
        "site02_clinical",
        "labnum_flow",
        "labtxt_flow",
        "site01_imaging",
        "site02_imaging",
    }


def test_templates_cover_all_assertions():
    assert set(EM_TEMPLATES) == {
        "present",
        "absent",
        "possible",
        "historical",
        "resolved",
        "hypothetical",
    }


def _cd19_at_failure(failure_day: int, specimens: list[tuple[int, str, str]]) -> str | None:
    """The truth's CD19 at failure of one patient with (day, specimen_type, class) specimens."""
    from blinaetl.synth.truth import derive_cd19_at_failure

    frame = pl.DataFrame(
        {
            "pid": [0] * len(specimens),
            "day": [d for d, _, _ in specimens],
            "specimen_type": [t for _, t, _ in specimens],
            "cls": [c for _, _, c in specimens],
        },
        schema={"pid": pl.Int64, "day": pl.Int64, "specimen_type": pl.Utf8, "cls": pl.Utf8},
    )
    got = derive_cd19_at_failure(frame, pl.DataFrame({"pid": [0], "failure_day": [failure_day]}))
    return got["cd19_at_failure_rule"].item() if got.height else None


@pytest.mark.parametrize(
    ("failure_day", "specimens", "expected"),
    [
        # window 30 days either side (cd19_failure_window_days): -31 out, -30 and +30 in
        (40, [(9, "blood", "dim")], None),
        (40, [(10, "blood", "dim")], "dim"),
        (40, [(70, "blood", "dim")], "dim"),
        (40, [(71, "blood", "dim")], None),
        # nearest wins; on equal distance the later one; on the same day marrow first
        (40, [(20, "blood", "dim"), (42, "marrow", "negative")], "negative"),
        (40, [(38, "blood", "dim"), (42, "blood", "strong")], "strong"),
        (40, [(41, "blood", "dim"), (41, "marrow", "negative")], "negative"),
        # before the first infusion (day 0 included) is baseline, never failure
        (28, [(-2, "marrow", "strong")], None),
        (28, [(0, "marrow", "strong")], None),
        (28, [(0, "marrow", "strong"), (1, "blood", "dim")], "dim"),
        # no failure (failure_day -1): none
        (-1, [(5, "blood", "dim")], None),
    ],
)
def test_truth_cd19_at_failure_follows_the_window_rule(failure_day, specimens, expected):
    assert _cd19_at_failure(failure_day, specimens) == expected

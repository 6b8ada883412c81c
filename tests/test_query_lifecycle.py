"""The query lifecycle over five runs of the real pipeline, read from each run's queries.csv:
new -> open -> resolved -> not listed again while it stays fixed -> live again with the same id
when the defect reappears. Kept at the pipeline's public level (run_pipeline and the listing
it writes), so it holds whatever module computes the statuses."""

from __future__ import annotations

import polars as pl
import pytest

from blinaetl.pipeline import run_pipeline
from blinaetl.synth import generate
from tests.runs import warehouse_run

ASM = "clinical/SITE01/assessments_20260901.csv"
# later cumulative extracts of the same file, one per run
EXTRACTS = [
    "clinical/SITE01/assessments_20261001.csv",
    "clinical/SITE01/assessments_20261101.csv",
    "clinical/SITE01/assessments_20261201.csv",
    "clinical/SITE01/assessments_20270101.csv",
]
BAD_BLASTS = "140"  # marrow blasts above 100%: ASM_BLASTS_RANGE


def _extract(frame: pl.DataFrame, row: int, blasts: str, reverse: bool) -> str:
    """The site's extract: the planted row with `blasts`, rows optionally in reverse order (a
    new file that is not a byte copy, whose row numbers differ)."""
    out = frame.with_columns(
        pl.when(pl.int_range(pl.len()) == row)
        .then(pl.lit(blasts))
        .otherwise(pl.col("marrow_blasts_pct"))
        .alias("marrow_blasts_pct")
    )
    return (out.reverse() if reverse else out).write_csv()


@pytest.fixture(scope="module")
def five_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle5")
    cohort = root / "cohort"
    generate(cohort, n_patients=12, seed=5)
    landing, reports = cohort / "landing", root / "reports"
    original = pl.read_csv(landing / ASM, infer_schema=False)
    defects = pl.read_csv(cohort / "truth" / "defects.csv", infer_schema=False)
    planted_rows = set(defects.filter(pl.col("file") == ASM)["row"].cast(pl.Int64) - 2)
    row = next(
        i
        for i, v in enumerate(original["marrow_blasts_pct"])
        if v is not None and i not in planted_rows
    )
    good = original["marrow_blasts_pct"][row]
    # run 1: defect delivered; 2: delivered again; 3: fixed; 4: still fixed; 5: delivered again
    later = zip(
        EXTRACTS, [BAD_BLASTS, good, good, BAD_BLASTS], [True, False, True, False], strict=True
    )
    versions = [(ASM, BAD_BLASTS, False), *later]
    listings, run_ids = [], []
    for path, blasts, reverse in versions:
        (landing / path).write_text(_extract(original, row, blasts, reverse), encoding="utf-8")
        cfg = warehouse_run(landing, root / "wh", reports)
        summary, _ = run_pipeline(cfg)
        listings.append(pl.read_csv(summary.report_dir / "queries.csv", infer_schema=False))
        run_ids.append(cfg.run_id)
    return listings, run_ids


def _planted(listing: pl.DataFrame) -> pl.DataFrame:
    return listing.filter(
        (pl.col("rule_id") == "ASM_BLASTS_RANGE")
        & pl.col("source_file").str.contains("assessments_")
    )


def test_a_query_is_new_then_open_then_resolved(five_runs):
    (q1, q2, q3, _, _), runs = five_runs
    first = _planted(q1).filter(pl.col("status") == "new")
    assert first.height >= 1
    ids = set(first["query_id"])
    opened = q2.filter(pl.col("query_id").is_in(list(ids)))
    assert opened["status"].to_list() == ["open"] * len(ids), "delivered again: still open"
    assert set(opened["first_seen_run"]) == {runs[0]}
    resolved = q3.filter(pl.col("query_id").is_in(list(ids)) & (pl.col("status") == "resolved"))
    # exactly the planted query is resolved in run 3 (other blast defects of the file stay)
    assert resolved.height == 1


def test_a_resolved_query_is_not_listed_again_while_it_stays_fixed(five_runs):
    (_, _, q3, q4, _), _ = five_runs
    (qid,) = q3.filter(pl.col("status") == "resolved")["query_id"].to_list()
    assert q4.filter(pl.col("query_id") == qid).height == 0
    assert "resolved" not in set(q4["status"]), "nothing was fixed between runs 3 and 4"


def test_the_other_defects_stay_open_across_all_runs(five_runs):
    (q1, _, q3, q4, q5), runs = five_runs
    (fixed,) = q3.filter(pl.col("status") == "resolved")["query_id"].to_list()
    others = set(q1["query_id"]) - {fixed}
    assert others
    for later in (q3, q4, q5):
        kept = later.filter(pl.col("query_id").is_in(list(others)))
        assert set(kept["query_id"]) == others
        assert set(kept["status"]) == {"open"}
        assert set(kept["first_seen_run"]) == {runs[0]}


def test_a_reappearing_defect_is_live_again_with_the_same_id(five_runs):
    (_, _, q3, _, q5), runs = five_runs
    (qid,) = q3.filter(pl.col("status") == "resolved")["query_id"].to_list()
    again = q5.filter(pl.col("query_id") == qid)
    assert again.height == 1
    # live again ("new" in this listing; a lifecycle that names it "reopened" says the same)
    assert again["status"].item() in {"new", "reopened"}
    # a reopened query keeps the run that first opened it (the audit trail has both events)
    first_seen = runs[4] if again["status"].item() == "new" else runs[0]
    assert again["first_seen_run"].item() == first_seen
    assert set(q5["status"]) <= {"new", "open", "reopened"}

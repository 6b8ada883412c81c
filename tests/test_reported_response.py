"""A cohort whose sites report response only as dated labels gets its CR rate right (issue 16).

The generator writes every responder's response-window assessments with the site's label and no
counts (hard case response_labels_only at rate 1); non-responders keep their counts. The CR
count expected is counted from the truth file, which the pipeline never sees.
"""

from __future__ import annotations

import duckdb
import polars as pl

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.synth import generate


def test_label_only_cohort_gets_its_cr_rate(tmp_path):
    out = tmp_path / "cohort"
    generate(out, n_patients=60, seed=646, hard_case_rates={"response_labels_only": 1.0})
    truth = pl.read_csv(out / "truth" / "patients.csv", infer_schema=False)
    responders = truth.filter(pl.col("responder") == "true")
    assert responders.height > 10
    assert set(responders["response_source"]) == {"reported"}
    cfg = RunConfig(
        landing=out / "landing",
        warehouse=tmp_path / "wh",
        reports=tmp_path / "rp",
        demo=True,
        gx=False,
    )
    run_pipeline(cfg)
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        got = dict(
            con.execute(
                "SELECT best_response, count(*) FROM curated.patients GROUP BY ALL"
            ).fetchall()
        )
        sources = dict(
            con.execute(
                "SELECT response_source, count(*) FROM curated.patients WHERE responder GROUP BY ALL"
            ).fetchall()
        )
        rate = con.execute(
            "SELECT responders, n FROM endpoints.response_rates WHERE predictor = 'overall'"
        ).fetchall()[0]
    finally:
        con.close()
    want = dict(truth.group_by("best_response").len().iter_rows())
    assert got.get("CR", 0) == want.get("CR", 0) > 0
    assert got == want
    assert sources == {"reported": responders.height}
    assert rate == (responders.height, truth.height)

"""The publish gate (design principle 8, issue 18): a delivery that loses a site, a table, a
source, a whole file or too many patients is not published; the last good database stays live
and the report and the CLI say why and how to override."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from blinaetl import cli
from blinaetl.config import RunConfig, RunConfigError
from blinaetl.ingest.fingerprint import unchanged_since_last_run
from blinaetl.pipeline import query, run_pipeline
from blinaetl.synth import generate
from blinaetl.warehouse.gate import GateFinding, Profile, PublicationRefused, gate_findings
from tests.runs import warehouse_run

from .test_orchestration import content_hashes

FILES_SCHEMA = {
    "path": pl.Utf8,
    "source_id": pl.Utf8,
    "rows_read": pl.Int64,
    "rows_loaded": pl.Int64,
    "rows_quarantined": pl.Int64,
    "status": pl.Utf8,
}


def _files(*rows: tuple) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=FILES_SCHEMA, orient="row")


LIVE = Profile(
    patients_by_site={"S1": 100, "S2": 50},
    table_rows={"patients": 150, "events": 900},
    views=["km", "response_rates"],
    source_rows={"s1_clinical": 1000, "lab": 300},
)
GOOD_FILES = _files(
    ("clinical/S1/p.csv", "s1_clinical", 100, 100, 0, "loaded"),
    ("flow/lab.csv", "lab", 300, 290, 10, "partially_quarantined"),
)


def _build(s1: int = 100, s2: int = 50, events: int = 900, views=("km", "response_rates")):
    sites = {k: v for k, v in {"S1": s1, "S2": s2}.items() if v}
    return Profile(sites, {"patients": s1 + s2, "events": events}, list(views))


def _rules(found: list[GateFinding]) -> list[tuple[str, str]]:
    return [(f.rule, f.token) for f in found]


def test_same_build_passes_the_gate():
    assert gate_findings(_build(), LIVE, GOOD_FILES, {"S1", "S2"}) == []


def test_first_publication_has_nothing_to_compare_but_the_delivery():
    assert gate_findings(_build(), None, GOOD_FILES, {"S1", "S2"}) == []


@pytest.mark.parametrize(
    ("s2_after", "refused"),
    [(46, False), (45, False), (44, True)],  # 50 -> 45 is exactly 10 %: allowed; 44 is 12 %
)
def test_site_patient_fall_refused_only_above_the_threshold(s2_after, refused):
    found = gate_findings(_build(s2=s2_after), LIVE, GOOD_FILES, {"S1", "S2"}, 10.0)
    site = [f for f in found if f.rule == "site_patients_fell"]
    assert bool(site) is refused
    if refused:
        assert site[0].token == "S2"
        assert "from 50 to 44" in site[0].message and "12.0%" in site[0].message


@pytest.mark.parametrize(
    ("s1_after", "refused"),
    [(86, False), (85, False), (84, True)],  # 150 -> 135 is exactly 10 %: allowed; 134 is not
)
def test_overall_patient_fall_refused_only_above_the_named_threshold(s1_after, refused):
    found = gate_findings(_build(s1=s1_after), LIVE, GOOD_FILES, {"S1", "S2"}, 10.0)
    assert bool([f for f in found if f.rule == "patients_fell"]) is refused
    wider = gate_findings(_build(s1=s1_after), LIVE, GOOD_FILES, {"S1", "S2"}, 20.0)
    assert not wider, "a wider threshold (max_patient_drop_pct) allows the same fall"


def test_lost_site_table_view_source_and_emptied_file_are_each_named():
    build = _build(s2=0, events=0, views=("km",))
    files = _files(
        ("clinical/S1/p.csv", "s1_clinical", 100, 100, 0, "loaded"),
        ("clinical/S2/p.csv", "s2_clinical", 40, 0, 40, "all_quarantined"),
    )
    found = gate_findings(build, LIVE, files, {"S1", "S2"})
    assert set(_rules(found)) == {
        ("patients_fell", "patients"),
        ("site_lost", "S2"),
        ("table_emptied", "table:events"),
        ("source_lost", "source:lab"),
        ("source_lost", "source:s2_clinical"),
        ("file_all_quarantined", "file:clinical/S2/p.csv"),
    }
    lab = next(f for f in found if f.token == "source:lab")
    assert "loaded 300 rows in the last publication" in lab.message


def test_zero_patients_refused_even_on_a_first_run():
    build = Profile({}, {"patients": 0}, [])
    files = _files(("clinical/S1/p.csv", "s1_clinical", 10, 0, 10, "all_quarantined"))
    assert set(_rules(gate_findings(build, None, files, {"S1"}))) == {
        ("no_patients", "patients"),
        ("site_lost", "S1"),
        ("source_lost", "source:s1_clinical"),
        ("file_all_quarantined", "file:clinical/S1/p.csv"),
    }


def test_threshold_outside_0_to_100_is_a_configuration_error(tmp_path):
    with pytest.raises(RunConfigError, match="max_patient_drop_pct"):
        RunConfig(landing=tmp_path, max_patient_drop_pct=120)


# --- end to end: a broken delivery leaves the last good database live ----------------------


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """The gate tests' cohort as generated (24 patients), read-only: variants are copies."""
    out = tmp_path_factory.mktemp("gate_cohort") / "cohort"
    generate(out, n_patients=24, seed=5)
    return out / "landing"


# The end-to-end gate runs are about the gate, the live database and the steward report's
# gate section: the Great Expectations checkpoint (its own child process, about 5.6 s CPU a
# run) is off; tests/test_gx.py and tests/test_report_children.py test it.
@pytest.fixture(scope="module")
def published(tmp_path_factory, cohort):
    root = tmp_path_factory.mktemp("gate")
    landing = cohort
    cfg = warehouse_run(landing, root / "wh", root / "rp")
    summary, _ = run_pipeline(cfg)
    return root, landing, cfg, summary


def _variant(root: Path, landing: Path, name: str) -> Path:
    out = root / name
    shutil.copytree(landing, out)
    return out


def test_good_run_publishes_and_records_its_profile(published):
    _, _, cfg, summary = published
    assert summary.gate is not None and summary.gate["published"] is True
    assert summary.gate["refused"] == []
    side = json.loads((cfg.warehouse / "blina.duckdb.published.json").read_text())
    assert side["run_id"] == cfg.run_id
    assert sum(side["patients_by_site"].values()) == 24
    assert side["source_rows"]["site01_clinical"] > 0


def test_the_same_delivery_again_passes_the_gate(published):
    _, landing, cfg, _ = published
    again = warehouse_run(landing, cfg.warehouse, cfg.reports)
    summary, _ = run_pipeline(again)
    assert summary.gate == {
        "published": True,
        "refused": [],
        "accepted": [],
        "live_database_kept": False,
        "override": [],
    }


def test_renamed_header_in_one_sites_patients_file_is_refused(published, capsys):
    root, landing, cfg, _ = published
    broken = _variant(root, landing, "renamed_header")
    pat = broken / "clinical/SITE01/patients_20260901.csv"
    header, rest = pat.read_bytes().split(b"\n", 1)  # the site sends latin-1
    pat.write_bytes(header.replace(b"MRN", b"PatientID") + b"\n" + rest)
    before = content_hashes(cfg.analytics_path)
    argv = ["run", "--engine", "core", "--demo", "--landing", str(broken)]
    argv += ["--warehouse", str(cfg.warehouse), "--reports", str(cfg.reports)]
    assert cli.main(argv) == cli.EXIT_REFUSED
    err = capsys.readouterr().err
    assert "publication refused" in err and "last published database stays live" in err
    assert "--accept-drop SITE01" in err
    assert content_hashes(cfg.analytics_path) == before, "the last good database stays live"
    assert not list(cfg.warehouse.glob(".*.building*"))
    latest = sorted(p for p in cfg.reports.iterdir() if p.is_dir())[-1]
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["published"] is False
    tokens = {f["token"] for f in manifest["publish_gate"]["refused"]}
    assert {"SITE01", "source:site01_clinical"} <= tokens
    assert "file:clinical/SITE01/assessments_20260901.csv" in tokens
    html = (latest / "index.html").read_text()
    assert "Publication refused by the publish gate" in html
    assert "The last published database stays live" in html
    assert "--accept-drop SITE01" in html
    # the rejected file's fix reaches the report (the manifest used to drop it)
    assert "<strong>Fix:</strong> add the columns to the extract" in html
    assert manifest["files"][0]["fix"] is not None or any(f["fix"] for f in manifest["files"])
    assert not (latest / "patients_snapshot.parquet").exists()
    assert unchanged_since_last_run(warehouse_run(broken, cfg.warehouse, cfg.reports)) is None, (
        "a refused run is never 'unchanged'"
    )


def test_all_quarantined_delivery_is_refused_and_says_why(published):
    root, landing, cfg, _ = published
    broken = _variant(root, landing, "all_quarantined")
    for p in broken.rglob("*"):
        if p.is_file() and p.name != "patients_20260901.csv":
            p.unlink()
    pat = broken / "clinical/SITE01/patients_20260901.csv"
    frame = pl.read_csv(pat, infer_schema=False, encoding="latin-1")
    pat.write_bytes(
        frame.with_columns(pl.lit(None, pl.Utf8).alias("MRN")).write_csv().encode("latin-1")
    )
    before = content_hashes(cfg.analytics_path)
    run = warehouse_run(broken, cfg.warehouse, cfg.reports)
    with pytest.raises(PublicationRefused) as refused:
        run_pipeline(run)
    assert content_hashes(cfg.analytics_path) == before
    rules = {f.rule for f in refused.value.findings}
    assert {"no_patients", "site_lost", "file_all_quarantined", "table_emptied"} <= rules
    assert "the new build holds no patient" in str(refused.value)
    assert refused.value.report_dir == run.report_dir
    assert "Publication refused" in (run.report_dir / "index.html").read_text()
    assert query(cfg.analytics_path, "SELECT count(*) FROM curated.patients")[0][0] == 24


def test_accepted_drop_is_published_and_reported(published):
    root, landing, cfg, _ = published
    smaller = _variant(root, landing, "site02_gone")
    shutil.rmtree(smaller / "clinical" / "SITE02")
    shutil.rmtree(smaller / "imaging" / "SITE02")
    run = warehouse_run(smaller, cfg.warehouse, cfg.reports)
    with pytest.raises(PublicationRefused) as refused:
        run_pipeline(run)
    tokens = {f.token for f in refused.value.findings}
    assert {"SITE02", "patients", "source:site02_clinical", "source:site02_imaging"} <= tokens
    assert all(
        t in ("SITE02", "patients") or t.startswith(("source:", "table:")) for t in tokens
    ), tokens
    # only a table that SITE02 alone filled may empty: in the live (last published) database
    # every row of each such table belongs to a SITE02 patient
    for token in sorted(t for t in tokens if t.startswith("table:")):
        table = token.removeprefix("table:")
        rows, other_sites = query(
            cfg.analytics_path,
            f"SELECT count(*), count(*) FILTER (WHERE p.site <> 'SITE02') FROM curated.{table} t "
            "JOIN curated.patients p USING (patient_key)",
        )[0]
        assert rows > 0 and other_sites == 0, (token, rows, other_sites)
    accept = tuple(sorted(tokens))
    again = warehouse_run(smaller, cfg.warehouse, cfg.reports, accept_drop=accept)
    summary, _ = run_pipeline(again)
    assert summary.gate["published"] is True
    assert {f["token"] for f in summary.gate["accepted"]} == tokens
    sites = query(cfg.analytics_path, "SELECT DISTINCT site FROM curated.patients")
    assert sites == [("SITE01",)]
    html = (summary.report_dir / "index.html").read_text()
    assert "Published with accepted losses" in html


FLOW_STATES = r"""
import json, sys
from flows.pipeline import pipeline_flow

good, broken, wh, rp = sys.argv[1:5]
out = {}
for name, landing in (("routine", good), ("gated", broken)):
    # the run states are the gate's; the checkpoint is off, as in the gate's other runs
    state = pipeline_flow(
        landing=landing, warehouse=wh, reports=rp, demo=True, gx=False, study_report=False, return_state=True
    )
    out[name] = {"type": state.type.value, "name": state.name, "message": state.message or ""}
print(json.dumps(out))
"""


def test_prefect_run_states_tell_gated_routine_and_clean_runs_apart(
    cohort, prefect_server, tmp_path
):
    import subprocess
    import sys

    landing = cohort
    broken = _variant(tmp_path, landing, "renamed_header_flow")
    pat = broken / "clinical/SITE01/patients_20260901.csv"
    header, rest = pat.read_bytes().split(b"\n", 1)
    pat.write_bytes(header.replace(b"MRN", b"PatientID") + b"\n" + rest)
    _, env = prefect_server  # the session's Prefect server, not a temporary one per run
    args = [str(landing), str(broken), str(tmp_path / "wh"), str(tmp_path / "rp")]
    out = subprocess.run(
        [sys.executable, "-c", FLOW_STATES, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    states = json.loads(out.stdout.strip().splitlines()[-1])
    # the synthetic cohort carries planted defects: published, for a steward's attention
    assert states["routine"]["type"] == "COMPLETED"
    assert states["routine"]["name"] == "Needs attention"
    assert states["gated"]["type"] == "FAILED"
    assert "publication refused by the publish gate" in states["gated"]["message"]
    assert "--accept-drop SITE01" in states["gated"]["message"]

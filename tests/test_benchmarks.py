"""The benchmark scripts run and report what issue #10 asks for (behaviour, never timings)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run_benchmark(script: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `benchmarks/<script>` in a fresh interpreter; it must exit 0."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_pipeline_benchmark_reports_ratio_memory_scaling_and_targets(tmp_path):
    out = tmp_path / "bench.json"
    run = _run_benchmark(
        "pipeline_benchmark.py",
        *("--sizes", "150", "300", "--repeat", "2"),
        *("--workdir", str(tmp_path / "work"), "--out", str(out)),
    )
    doc = json.loads(out.read_text())
    small, large = doc["results"]
    assert [small["patients"], large["patients"]] == [150, 300]
    for r in (small, large):
        assert len(r["core_runs_s"]) == 2 and len(r["floor_runs_s"]) == 2
        assert r["total_s"] == min(r["core_runs_s"]), "the fastest core run counts"
        assert r["floor_s"] == min(r["floor_runs_s"])
        assert math.isclose(r["ratio"], r["total_s"] / r["floor_s"])
        assert math.isclose(r["ratio_file"], r["total_s"] / r["floor_file_s"])
        assert len(r["core_cpu_runs_s"]) == 2 and r["cpu_s"] in r["core_cpu_runs_s"]
        assert math.isclose(r["ratio_cpu"], min(r["core_cpu_runs_s"]) / r["floor_cpu_s"])
        # the core's CPU is the sum of its stages' (report excluded) and the little between
        stage_cpu = sum(v for k, v in r["stages_cpu_s"].items() if k != "report")
        assert stage_cpu <= r["cpu_s"] <= stage_cpu + 2.0
        assert r["peak_rss_bytes"] > 50 * 2**20
        assert r["rows_read"] > 0
        assert set(r["stages_s"]) >= {"ingest", "load", "transform", "publish"}
    assert math.isclose(
        large["scaling_exponent"],
        math.log(large["total_s"] / small["total_s"]) / math.log(2),
    )
    assert [t["target"] for t in doc["targets"]] == [
        "core at most 4x the floor",
        "peak RSS at most 3 GiB",
        "scaling exponent at most 1.1",
    ]
    assert doc["targets"][0]["met"] == (large["ratio"] <= 4.0)
    assert "target: core at most 4x the floor:" in run.stdout
    header = run.stdout.splitlines()[0]
    for column in ("core_s", "floor_s", "ratio", "ratio_cpu", "load", "rss_MiB", "exp"):
        assert column in header


def test_issue20_report_prints_every_figure_of_the_issue_with_a_verdict(tmp_path):
    """`make bench` (benchmarks/issue20_report.py) at tiny sizes: one row per figure of issue
    20's table, each met / NOT met / not measured here (with the reason and a command)."""
    out = tmp_path / "report.json"
    run = _run_benchmark(
        "issue20_report.py",
        *("--patients", "150", "--duplicate-mb", "0.5", "--changed-patients", "100"),
        *("--make-run-repeat", "0", "--out", str(out)),
        cwd=ROOT,
    )
    figures = json.loads(out.read_text())["figures"]
    names = [f["figure"] for f in figures]
    for wanted in (
        "core / in-memory floor, 100,000 patients",
        "core / in-memory floor, 300,000 patients",
        "peak RSS, 300,000 patients",
        "peak RSS, 1,000,000 patients end to end",
        "one 0.5 MB CSV delivered",
        "one source changed (one row appended), 100 patients",
        "warm `make run` (demo), Prefect temporary server",
        "warm `make run` (demo), a running local server reused",
        "first `make run` on a fresh clone",
        "`make test` on a fresh clone",
        "Dask path, LocalCluster of 2 workers",
    ):
        assert any(n.startswith(wanted) for n in names), (wanted, names)
    for f in figures:
        assert f["verdict"] in ("met", "NOT met", "not measured here"), f
        if f["verdict"] == "not measured here":
            assert f["note"], f  # the reason (and, for the sizes not run, the command)
        assert f["figure"] in run.stdout
    # the 150-patient core run is measured, but not at a size the issue judges
    small = next(f for f in figures if f["figure"].startswith("core / in-memory floor, 150"))
    assert small["verdict"] == "not measured here" and "x (" in small["measured"]
    assert "CPU s)" in small["measured"]  # CPU seconds beside the wall ratio (loaded machine)
    dask = next(f for f in figures if f["figure"].startswith("Dask path"))
    assert dask["verdict"] == "not measured here"  # quick mode: the command is given
    assert "dask_benchmark.py --patients 300000" in dask["note"]
    changed = next(f for f in figures if f["figure"].startswith("one source changed"))
    assert changed["measured"].endswith(")") and "%" in changed["measured"]


def _db(path: Path, statements: list[str]) -> Path:
    import duckdb

    con = duckdb.connect(str(path))
    for sql in statements:
        con.execute(sql)
    con.close()
    return path


BASE_DB = [
    "CREATE SCHEMA curated",
    "CREATE TABLE curated.t (k VARCHAR, n INTEGER)",
    "INSERT INTO curated.t VALUES ('a', 1), ('b', 2), ('c', NULL)",
    "COMMENT ON COLUMN curated.t.n IS 'a number'",
    "CREATE VIEW curated.v AS SELECT n FROM curated.t",
]


def test_compare_builds_finds_every_kind_of_difference(tmp_path):
    from benchmarks.compare_builds import compare

    before = _db(tmp_path / "before.duckdb", BASE_DB)
    cases = {
        "same": ([], [], []),
        "reordered": (
            [
                "DELETE FROM curated.t",
                "INSERT INTO curated.t VALUES ('c', NULL), ('a', 1), ('b', 2)",
            ],
            [],
            ["x: curated.t: the same rows, stored in another order"],
        ),
        "value": (
            ["UPDATE curated.t SET n = 3 WHERE k = 'b'"],
            [
                "x: curated.t: rows differ (3 before, 3 after)",
                "x: curated.v: rows differ (3 before, 3 after)",
            ],
            [],
        ),
        "null": (
            ["UPDATE curated.t SET n = 0 WHERE k = 'c'"],
            [
                "x: curated.t: rows differ (3 before, 3 after)",
                "x: curated.v: rows differ (3 before, 3 after)",
            ],
            [],
        ),
        "comment": (
            ["COMMENT ON COLUMN curated.t.n IS 'another'"],
            ["x: curated.t: columns, types or comments differ"],
            [],
        ),
        "extra": (["CREATE TABLE curated.u AS SELECT 1 AS one"], ["x: curated.u only after"], []),
        "kind": (
            ["DROP VIEW curated.v", "CREATE TABLE curated.v AS SELECT n FROM curated.t"],
            ["x: curated.v is a view before, table after"],
            [],
        ),
    }
    for name, (changes, problems, notes) in cases.items():
        after = _db(tmp_path / f"{name}.duckdb", [*BASE_DB, *changes])
        found_notes: list[str] = []
        assert compare(before, after, "x", found_notes) == problems, name
        assert found_notes == notes, name


def test_incremental_benchmark_reports_both_runs_stage_by_stage(tmp_path):
    out = tmp_path / "incremental.json"
    run = _run_benchmark(
        "incremental_benchmark.py", "--patients", "60", "--repeat", "1", "--out", str(out)
    )
    (result,) = json.loads(out.read_text())
    assert result["patients"] == 60
    full, inc = result["full"], result["incremental"]
    # the appended row is one more row read in the incremental run; a copy, quarantined, so
    # no staged row changed and the last build is reused
    assert inc["rows_read"] == full["rows_read"] + 1
    assert (full["build_reused"], inc["build_reused"]) == (False, True)
    for r in (full, inc):
        assert set(r["stages_s"]) >= {"ingest", "load", "transform", "publish"}
    assert math.isclose(result["share"], inc["total_s"] / full["total_s"])
    # CPU seconds of each run's process, ingest to publish: more than none, and no more than
    # the cores could give in the core's wall seconds (plus the clock's grain)
    for r in (full, inc):
        assert 0 < r["core_cpu_s"] <= (os.cpu_count() or 1) * r["total_s"] + 0.1
    assert math.isclose(result["cpu_share"], inc["core_cpu_s"] / full["core_cpu_s"])
    assert "| 60 | incremental |" in run.stdout
    assert "change appended-copy, build reused: True" in run.stdout
    # the last row removed: a staged row changes, the models run again
    _run_benchmark(
        *("incremental_benchmark.py", "--patients", "60", "--repeat", "1"),
        *("--change", "removed-row", "--out", str(out)),
    )
    (removed,) = json.loads(out.read_text())
    assert removed["change"] == "removed-row"
    assert removed["incremental"]["rows_read"] == removed["full"]["rows_read"] - 1
    assert removed["incremental"]["build_reused"] is False


def test_fisher_benchmark_times_ours_and_scipy_on_the_tables_of_a_published_file(tmp_path):
    import duckdb

    db = tmp_path / "analytics.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE SCHEMA curated; CREATE TABLE curated.patients AS SELECT "
        "'p' || i AS patient_key, i % 2 = 0 AS responder, i % 3 = 0 AS bm_blasts_gt50, "
        "i % 5 = 0 AS prior_em, FALSE AS active_em_at_start, 'strong' AS cd19_baseline, "
        "CASE WHEN i % 2 = 1 THEN i % 7 = 0 END AS em_at_failure, "
        "CASE WHEN i % 2 = 1 THEN 'negative' END AS cd19_at_failure FROM range(60) t(i)"
    )
    con.close()
    out = tmp_path / "fisher.json"
    run = _run_benchmark(
        "fisher_benchmark.py",
        *("--db", str(db), "--table", "3,1,1,3", "--scipy", "1", "--repeat", "1"),
        *("--json", str(out)),
    )
    from_db, given = json.loads(out.read_text())
    # responder x bm_blasts_gt50 of i in 0..59: i % 6 == 0 -> 10 of 20 factor patients respond
    first = from_db["rows"][0]
    assert first["table"] == "responder/bm_blasts_gt50" and first["counts"] == [[10, 10], [20, 20]]
    # active_em_at_start: nobody has it, so no table; scipy on the one smallest support only
    assert all("active_em_at_start" not in r["table"] for r in from_db["rows"])
    timed = [r for r in from_db["rows"] if r["scipy_s"] is not None]
    assert len(timed) == 1 and timed[0]["max_rel_diff"] < 1e-9
    assert timed[0]["support"] == min(r["support"] for r in from_db["rows"])
    (tea,) = given["rows"]
    assert tea["counts"] == [[3, 1], [1, 3]] and tea["support"] == 5
    assert all(r["ours_s"] > 0 and r["p_value_s"] > 0 for r in from_db["rows"] + given["rows"])
    assert "60 patients" in run.stdout and "load average at start" in run.stdout


@pytest.mark.parametrize("bad", ["1,2,3", "1,-2,3,4", "1,2,x,4"])
def test_fisher_benchmark_refuses_a_bad_table(bad):
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fisher_benchmark.py"), "--table", bad],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2 and "four non-negative integers a,b,c,d" in run.stderr


def test_stage_memory_reports_a_peak_per_stage_and_ingest_step(tmp_path):
    out = tmp_path / "memory.json"
    run = _run_benchmark("stage_memory.py", "--patients", "40", "--out", str(out))
    result = json.loads(out.read_text())
    phases = [p["phase"] for p in result["phases"]]
    # every stage of the run and every instrumented ingest step, in run order: the steps of
    # each group of tables (read, validated and released one group after the other), then
    # the root causes and the accounting over the whole run
    from blinaetl.ingest.landing import table_groups
    from blinaetl.validate.contracts import load_contracts

    stages = ["load", "extract_text", "transform", "gate", "publish", "report"]
    group = ["read a table group", "combine_frames", "validate_tables", "compact_copies"]
    group.append("release_frames")
    groups = len(table_groups(load_contracts()))
    assert groups == 5  # patients, outcomes and treatments; then each other table
    steps = ["plan_files", *group * groups, "attribute_root_causes", "account_files"]
    wanted = ["stage ingest", *(f"ingest: {s}" for s in steps), *(f"stage {s}" for s in stages)]
    assert [p for p in phases if p in wanted] == wanted
    for p in result["phases"]:
        assert p["peak_bytes"] >= p["end_bytes"] > 0
    gib = result["peak_rss_bytes"] / 2**30
    assert f"peak RSS (VmHWM) {gib:.3f} GiB" in run.stdout
    assert "ingest: validate_tables" in run.stdout


def test_restricted_types_measures_each_layout_on_the_same_values(tmp_path):
    import duckdb

    out = tmp_path / "types.json"
    run = _run_benchmark(
        "restricted_types.py",
        "--patients",
        "40",
        "--repeat",
        "1",
        "--workdir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    )
    doc = json.loads(out.read_text())
    assert list(doc["results"]["append"]) == ["varchar", "enum_key", "enum_lineage", "file_id"]
    assert list(doc["results"]["transform"]) == ["varchar", "enum_key", "file_id_views"]
    for runs in [*doc["results"]["append"].values(), *doc["results"]["transform"].values()]:
        assert len(runs) == 1 and runs[0]["cpu_s"] > 0 and runs[0]["wall_s"] > 0
    assert set(doc["join_cpu_s"]) == {"varchar=varchar", "enum=enum", "enum=varchar"}
    for variant in ("enum_key", "file_id_views"):
        eq = doc["curated_values_equal"][variant]
        assert eq["tables"] >= 8 and eq["differ"] == []
        assert f"{variant}: curated tables with the same values as varchar: " in run.stdout
    prepared = tmp_path / "work" / "prepared"
    # the layouts measured are the ones described: an ENUM key, views over a file id
    con = duckdb.connect(str(prepared / "enum_key.duckdb"), read_only=True)
    types = dict(
        con.execute(
            "SELECT table_name, data_type FROM duckdb_columns() "
            "WHERE schema_name = 'staging' AND column_name = 'patient_key'"
        ).fetchall()
    )
    con.close()
    assert types and all(t.startswith("ENUM(") for t in types.values())
    con = duckdb.connect(str(prepared / "file_id_views.duckdb"), read_only=True)
    views = {
        v
        for (v,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE schema_name = 'staging'"
        ).fetchall()
    }
    shown = [
        c
        for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'staging' "
            "AND table_name = 'patients' ORDER BY column_index"
        ).fetchall()
    ]
    stored = [
        c
        for (c,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'staging_rows' "
            "AND table_name = 'patients' ORDER BY column_index"
        ).fetchall()
    ]
    con.close()
    assert "patients" in views
    assert {"_source_file", "_file_sha256", "_run_id"} <= set(shown)
    assert "_file_id" in stored and "_source_file" not in stored


def test_a_benchmark_child_reports_its_own_peak_not_its_parents():
    # ru_maxrss of a child started by fork+exec starts at the parent's RSS at the fork; the
    # children's figure (benchmarks/peak_rss.py, VmHWM) is the child's own
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import peak_rss

    ballast = bytearray(400 * 2**20)
    ballast[::4096] = b"\1" * len(ballast[::4096])  # touch every page: 400 MiB resident
    child = peak_rss.SOURCE + (
        "import json, resource\n"
        "print(json.dumps([peak_rss_bytes(),"
        " resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]))\n"
    )
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True)
    own, inherited = json.loads(run.stdout)
    del ballast
    assert inherited >= 400 * 2**20, "the kernel's figure includes the parent's pages"
    assert own < 100 * 2**20, "the child's own peak: a bare interpreter"
    assert peak_rss.peak_rss_bytes() >= 400 * 2**20, "this process's own peak, ballast included"


def test_the_end_to_end_row_is_judged_at_a_million_patients_against_6_gib_only():
    # issue 20: "1M patients end to end <= 6 GiB"; the size is what the run published
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import issue20_report as report

    gib = 1024**3
    at_limit = report.end_to_end_verdict(1_000_000, 6 * gib, "ingest 440 s")
    over = report.end_to_end_verdict(1_000_000, 6 * gib + 1, "ingest 440 s")
    under = report.end_to_end_verdict(1_000_000, 6 * gib - 1, "ingest 440 s")
    assert (at_limit.verdict, over.verdict, under.verdict) == ("met", "NOT met", "met")
    assert over.measured.startswith("6.00 GiB peak, 1,000,000 patients (ingest 440 s)")
    smaller = report.end_to_end_verdict(999_999, 1 * gib, "ingest 400 s")
    assert smaller.verdict == "not measured here"
    assert "--end-to-end-landing" in smaller.note
    skipped = report.end_to_end_figure(None, ROOT)
    assert (
        skipped.verdict == "not measured here"
        and "blinaetl synth --patients 1000000" in skipped.note
    )

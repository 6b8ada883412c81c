"""Atomic publish, a run killed at each stage, idempotent rebuilds, single writer."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from blinaetl.pipeline import STAGES, RunConfig, RunLockedError, run_pipeline, warehouse_lock
from tests.runs import warehouse_run


def content_hashes(db: Path) -> dict[str, str]:
    """A hash of the sorted query result of every curated table and endpoint view."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        objects = con.execute(
            "SELECT schema_name || '.' || table_name FROM duckdb_tables() WHERE schema_name = 'curated' "
            "UNION ALL SELECT schema_name || '.' || view_name FROM duckdb_views() WHERE schema_name = 'endpoints' AND NOT internal"
        ).fetchall()
        out = {}
        for (name,) in sorted(objects):
            rows = con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            out[name] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return out
    finally:
        con.close()


def test_frames_written_side_by_side_keep_their_rows_and_order(tmp_path):
    import polars as pl

    from blinaetl.warehouse.frames import write_frames

    frames = {
        f"t{i}": pl.DataFrame(
            {
                "n": pl.int_range(rows, 0, -1, eager=True),
                "s": pl.int_range(0, rows, eager=True).cast(pl.Utf8) + f"-{i}",
            }
        )
        for i, rows in enumerate([300_000, 5, 120_000, 0, 70_000])
    }
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        for name in frames:
            con.execute(f"CREATE TABLE {name} (s VARCHAR, n BIGINT)")
        write_frames(con, list(frames.items()))
        for name, frame in frames.items():
            back = con.sql(f"SELECT n, s FROM {name} ORDER BY rowid").pl()
            assert back.equals(frame), name
    finally:
        con.close()


def test_frames_written_side_by_side_are_taken_off_the_list_and_reported_once_in(tmp_path):
    # the load releases each validated table when `written` says it is appended: by then its
    # rows are in the table, and nothing in the list holds the frame any more
    import polars as pl

    from blinaetl.warehouse.frames import write_frames

    sizes = {"big": 600_000, "mid": 200_000, "small": 3, "none": 0}
    writes = [
        (name, pl.DataFrame({"n": pl.int_range(0, rows, eager=True)}))
        for name, rows in sizes.items()
    ]
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    seen: dict[str, int] = {}
    try:
        for name in sizes:
            con.execute(f"CREATE TABLE {name} (n BIGINT)")

        def written(table: str) -> None:
            cursor = con.cursor()
            try:
                seen[table] = cursor.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            finally:
                cursor.close()

        write_frames(con, writes, written)
        assert writes == []
        assert seen == sizes  # each table once, with all its rows already appended
    finally:
        con.close()


def test_frames_keep_every_value_and_type_the_pipeline_writes(tmp_path):
    # text long and short (DuckDB and polars inline up to 12 bytes), empty, non-ASCII and null;
    # dates, integers, floats, booleans and lists of text (the staged `_warnings`), across
    # several INSERT slices, each value as written
    import datetime as dt

    import polars as pl

    from blinaetl.warehouse import frames as frames_module
    from blinaetl.warehouse.frames import write_frame

    texts = ["", "short", "a text longer than twelve bytes", "Zürich – ½", None]
    n = 1_003
    frame = pl.DataFrame(
        {
            "s": [texts[i % 5] for i in range(n)],
            "d": [
                None if i % 7 == 0 else dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(n)
            ],
            "i": [None if i % 11 == 0 else i * 1_000_003 for i in range(n)],
            "f": [None if i % 13 == 0 else i / 3 for i in range(n)],
            "b": [None if i % 17 == 0 else i % 2 == 0 for i in range(n)],
            "w": [[] if i % 3 else ["CHK_A", f"CHK_{i}"] for i in range(n)],
        },
        schema={
            "s": pl.Utf8,
            "d": pl.Date,
            "i": pl.Int64,
            "f": pl.Float64,
            "b": pl.Boolean,
            "w": pl.List(pl.Utf8),
        },
    )
    con = duckdb.connect(str(tmp_path / "types.duckdb"))
    try:
        write_frame(con, "made", frame, replace=True)
        for table in ("appended", "chunked"):
            con.execute(
                f"CREATE TABLE {table} (s VARCHAR, d DATE, i BIGINT, f DOUBLE, b BOOLEAN, "
                "w VARCHAR[])"
            )
        # in chunks of 37 rows, as the validated tables keep their files' chunks: each slice
        # of 100 rows spans several (handed over as one)
        chunked = pl.concat([frame.slice(k, 37) for k in range(0, n, 37)], rechunk=False)
        assert chunked.n_chunks() == 28
        old_slice, frames_module.SLICE_ROWS = frames_module.SLICE_ROWS, 100
        try:
            write_frame(con, "appended", frame)
            write_frame(con, "chunked", chunked)
        finally:
            frames_module.SLICE_ROWS = old_slice
        for table in ("made", "appended", "chunked"):
            types = [r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            assert types == ["VARCHAR", "DATE", "BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR[]"]
            back = con.sql(f"SELECT * FROM {table} ORDER BY rowid").pl()
            assert back.equals(frame, null_equal=True), table
            assert back["s"][3] == "Zürich – ½" and back["w"][0].to_list() == ["CHK_A", "CHK_0"]
    finally:
        con.close()


# Every run here is about the warehouse (atomic publish, killed runs, determinism, the lock),
# so the Great Expectations checkpoint and the study report are off (`warehouse_run`): they
# only read the published file and write into the report folder, and their child processes
# cost about 5.6 and 3.1 s CPU per run (2026-12-02, in-process warm runs of this cohort:
# 12.5 s CPU with both). tests/test_gx.py, tests/test_report_children.py,
# tests/test_study_report.py and the demo run test them; the killed-run children keep both.
@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    from blinaetl.synth import generate

    out = tmp_path_factory.mktemp("orch") / "cohort"
    generate(out, n_patients=40, seed=5)
    return out / "landing"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, cohort) -> Path:
    """One published run of the cohort (warehouse `wh`, reports `rp`), never written to again:
    the tests that start from a published database take a copy of it (`_published`) instead of
    running the pipeline for it each time."""
    root = tmp_path_factory.mktemp("orch_first_run")
    run_pipeline(warehouse_run(cohort, root / "wh", root / "rp"))
    return root


def _published(first_run: Path, tmp_path: Path, cohort: Path) -> RunConfig:
    """The state a first run leaves, as a copy of `first_run` at tmp_path/wh and tmp_path/rp:
    the same files (published database, restricted zone, sidecar, lock file and the run's
    report folder) with their permissions, so the next run finds what it would after its own
    first run. The database files hold no path of their own folder."""
    for name in ("wh", "rp"):
        shutil.copytree(first_run / name, tmp_path / name)
    return warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp")


def test_same_inputs_give_identical_results(tmp_path, cohort):
    a = warehouse_run(cohort, tmp_path / "a", tmp_path / "ra")
    b = warehouse_run(cohort, tmp_path / "b", tmp_path / "rb")
    run_pipeline(a)
    run_pipeline(b)
    ha, hb = content_hashes(a.analytics_path), content_hashes(b.analytics_path)
    assert len(ha) >= 10
    assert ha == hb
    run_pipeline(warehouse_run(cohort, tmp_path / "a", tmp_path / "ra"))
    assert content_hashes(a.analytics_path) == ha, (
        "a rerun over the same warehouse gives the same content"
    )


def test_second_writer_exits_clearly_and_changes_nothing(tmp_path, cohort, first_run):
    cfg = _published(first_run, tmp_path, cohort)
    before = content_hashes(cfg.analytics_path)
    mtime = cfg.analytics_path.stat().st_mtime_ns
    with warehouse_lock(cfg):
        with pytest.raises(RunLockedError, match="another blinaetl run"):
            run_pipeline(warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp"))
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "blinaetl.cli",
                "run",
                "--engine",
                "core",
                "--demo",
                "--landing",
                str(cohort),
                "--warehouse",
                str(tmp_path / "wh"),
                "--reports",
                str(tmp_path / "rp"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert out.returncode == 1
    assert "another blinaetl run is writing" in out.stderr
    assert cfg.analytics_path.stat().st_mtime_ns == mtime
    assert content_hashes(cfg.analytics_path) == before


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from blinaetl import pipeline
    stage = sys.argv[4]
    original = pipeline.STAGES[stage]
    def die(*args, **kwargs):
        if stage == "publish":
            # die in the middle of publishing: after the new file is started, before the swap
            import blinaetl.warehouse.database as wh
            real_replace = os.replace
            def killed_replace(src, dst):
                os.kill(os.getpid(), signal.SIGKILL)
            wh.os.replace = killed_replace
            return original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    pipeline.STAGES[stage] = die
    cfg = pipeline.RunConfig(landing=Path(sys.argv[1]), warehouse=Path(sys.argv[2]), reports=Path(sys.argv[3]), demo=True, gx=False)
    pipeline.run_pipeline(cfg)
    """
)


@pytest.mark.parametrize("stage", list(STAGES))
def test_run_killed_at_any_stage_leaves_the_published_database_intact(
    tmp_path, cohort, first_run, stage
):
    cfg = _published(first_run, tmp_path, cohort)
    before = content_hashes(cfg.analytics_path)
    reader = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        killed = subprocess.run(
            [
                sys.executable,
                "-c",
                KILLER,
                str(cohort),
                str(cfg.warehouse),
                str(cfg.reports),
                stage,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert killed.returncode == -9, killed.stderr[-2000:]
        # a reader that had the old file open keeps working
        assert reader.execute("SELECT count(*) FROM curated.patients").fetchone()[0] > 0
    finally:
        reader.close()
    assert content_hashes(cfg.analytics_path) == before
    assert not list(cfg.warehouse.glob(".*.building")) or stage in ("gate", "publish")
    # the next run succeeds (the lock died with the killed process) and cleans up
    run_pipeline(warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp"))
    assert content_hashes(cfg.analytics_path) == before
    assert not list(cfg.warehouse.glob(".*.building*")), (
        "leftovers of the killed run are cleaned up"
    )


def test_publish_swaps_while_a_reader_holds_the_old_file(tmp_path, cohort, first_run):
    cfg = _published(first_run, tmp_path, cohort)
    reader = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        old_inode = os.stat(cfg.analytics_path).st_ino
        run_pipeline(warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp"))
        assert os.stat(cfg.analytics_path).st_ino != old_inode, "a new file was swapped in"
        assert reader.execute("SELECT count(*) FROM curated.patients").fetchone()[0] == 40
    finally:
        reader.close()


def test_run_with_no_changed_input_can_be_skipped(tmp_path, cohort):
    from blinaetl.pipeline import RunSkipped

    cfg = warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp", skip_unchanged=True)
    run_pipeline(cfg)
    with pytest.raises(RunSkipped, match="nothing to do"):
        run_pipeline(warehouse_run(cohort, tmp_path / "wh", tmp_path / "rp", skip_unchanged=True))
    assert len(list((tmp_path / "rp").iterdir())) == 1, "the skipped run wrote no report"
    changed = warehouse_run(
        cohort,
        tmp_path / "wh",
        tmp_path / "rp",
        skip_unchanged=True,
        definitions={"hct_landmark_day": 120},
    )
    run_pipeline(changed)  # a changed definition is a change
    assert len(list((tmp_path / "rp").iterdir())) == 2


def test_a_curated_table_refused_at_transform_publishes_nothing_and_leaves_no_build_file(
    tmp_path, cohort, first_run, monkeypatch
):
    from blinaetl.warehouse import database as warehouse

    cfg = _published(first_run, tmp_path, cohort)
    before = content_hashes(cfg.analytics_path)
    checked = []

    def refuse(con, date_shift=False):
        # the curated tables are checked in the new file, which holds them, not in the live one
        checked.append(con.execute("SELECT count(*) FROM curated.patients").fetchone()[0])
        raise warehouse.PublishError("curated.patients.x has no COMMENT")

    monkeypatch.setattr(warehouse, "check_publishable", refuse)
    with pytest.raises(warehouse.PublishError, match="has no COMMENT"):
        run_pipeline(
            RunConfig(
                landing=cohort,
                warehouse=tmp_path / "wh",
                reports=tmp_path / "rp",
                demo=True,
                gx=False,
                study_report=False,
                # the inputs are the published run's: an incremental run would reuse its build
                # (blinaetl/ingest/reuse.py) and never reach the transform this test refuses
                full=True,
            )
        )
    assert checked == [40]
    assert content_hashes(cfg.analytics_path) == before
    assert not list(cfg.warehouse.glob(".*.building*"))
    restricted = duckdb.connect(str(cfg.restricted_path), read_only=True)
    try:
        in_restricted = restricted.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'curated'"
        ).fetchall()
    finally:
        restricted.close()
    assert in_restricted == [("definitions",)], "curated tables are built in the new file only"


def test_publish_without_a_built_file_says_to_run_the_transform(tmp_path):
    from blinaetl.warehouse.database import PublishError, publish

    with pytest.raises(PublishError, match=r"no analytics file was built for run r1.*transform"):
        publish(tmp_path / "blina.duckdb", build_tag="r1")
    assert not (tmp_path / "blina.duckdb").exists()

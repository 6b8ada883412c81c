"""Compare what two code revisions build from the same landing folder, table by table.

    .venv/bin/python benchmarks/compare_builds.py --before f751785 --landing demo/landing
    .venv/bin/python benchmarks/compare_builds.py --before main --patients 2000

The revision given as `--before` is exported from git (`git archive`) into a temporary folder
and run from there; this checkout is the `after`. Each runs the pipeline core (ingest to
publish, no Prefect, no GX, no report) in a fresh child process on the same landing folder,
with the same run id, into its own warehouse. Then every table and view of the analytics
database, and every table of the restricted database, is compared: the set of objects, their
column names, types and comments, and their rows (sorted by every column: query results;
a table whose stored order alone differs is printed as a note, a difference with
`--strict-order`). The expected side is what the other revision wrote, never what the
code under test computes. Prints one line per difference and exits 1 on any, 0 when every
object is identical. Use it for every change that could alter what a run writes (issue 20:
"the published content stays byte-identical in query results").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUN_ID = "20260101T000000000000Z-compare"

CHILD = r"""
import sys
from pathlib import Path
from blinaetl.pipeline import RunConfig, run_pipeline
landing, work, run_id = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
cfg = RunConfig(landing=landing, warehouse=work / "warehouse", reports=work / "reports",
                demo=True, gx=False, run_id=run_id)
run_pipeline(cfg, stages={"report": lambda *_a: None})
print(cfg.analytics_path, cfg.restricted_path)
"""


def export_revision(revision: str, into: Path) -> Path:
    """The files of `revision` (git archive), with nothing of this checkout's work tree."""
    archive = into / "src.tar"
    with open(archive, "wb") as out:
        subprocess.run(["git", "-C", str(ROOT), "archive", revision], stdout=out, check=True)
    tree = into / "src"
    tree.mkdir()
    with tarfile.open(archive) as tar:
        tar.extractall(tree, filter="data")
    return tree


def build(code_root: Path, landing: Path, work: Path) -> tuple[Path, Path]:
    """Run the core of the code in `code_root` on `landing`; (analytics, restricted) paths."""
    env = {**os.environ, "PYTHONPATH": str(code_root), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(landing), str(work), RUN_ID],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=code_root,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the run of {code_root} failed:\n{out.stderr[-3000:]}")
    analytics, restricted = out.stdout.strip().splitlines()[-1].split()
    return Path(analytics), Path(restricted)


def objects(con) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """`schema.name` -> 'table' or 'view', of the database's own (non-internal) objects."""
    found = con.execute(
        "SELECT schema_name || '.' || table_name, 'table' FROM duckdb_tables() "
        "WHERE database_name = current_database() AND NOT internal "
        "UNION ALL SELECT schema_name || '.' || view_name, 'view' FROM duckdb_views() "
        "WHERE database_name = current_database() AND NOT internal"
    ).fetchall()
    return dict(found)


def describe(con, name: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    schema, table = name.split(".", 1)
    columns = con.execute(
        "SELECT column_name, data_type, comment FROM duckdb_columns() "
        "WHERE database_name = current_database() AND schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [schema, table],
    ).fetchall()
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = ? AND table_name = ? UNION ALL SELECT comment FROM duckdb_views() "
        "WHERE database_name = current_database() AND schema_name = ? AND view_name = ?",
        [schema, table, schema, table],
    ).fetchall()
    return [*columns, ("<comment>", *comment)]


def rows(con, name: str, kind: str):  # type: ignore[no-untyped-def]
    order = "rowid" if kind == "table" else "ALL"
    return con.sql(f"SELECT * FROM {name} ORDER BY {order}").pl()


def compare(before: Path, after: Path, label: str, notes: list[str]) -> list[str]:
    """Every difference between two database files, one line each.

    Query results are what must not change: a table holding the same rows in another stored
    order (a model without ORDER BY, whose order DuckDB's parallel operators do not fix) is
    added to `notes`, not counted as a difference; `--strict-order` counts it.
    """
    import duckdb

    a, b = duckdb.connect(str(before), read_only=True), duckdb.connect(str(after), read_only=True)
    try:
        objs_a, objs_b = objects(a), objects(b)
        problems = [f"{label}: {n} only before" for n in sorted(set(objs_a) - set(objs_b))]
        problems += [f"{label}: {n} only after" for n in sorted(set(objs_b) - set(objs_a))]
        for name in sorted(set(objs_a) & set(objs_b)):
            if objs_a[name] != objs_b[name]:
                problems.append(f"{label}: {name} is a {objs_a[name]} before, {objs_b[name]} after")
                continue
            if describe(a, name) != describe(b, name):
                problems.append(f"{label}: {name}: columns, types or comments differ")
                continue
            ra, rb = rows(a, name, objs_a[name]), rows(b, name, objs_b[name])
            if ra.equals(rb, null_equal=True):
                continue
            if ra.sort(ra.columns, nulls_last=True).equals(
                rb.sort(rb.columns, nulls_last=True), null_equal=True
            ):
                notes.append(f"{label}: {name}: the same rows, stored in another order")
                continue
            problems.append(f"{label}: {name}: rows differ ({ra.height} before, {rb.height} after)")
        print(f"{label}: {len(set(objs_a) & set(objs_b))} objects compared", file=sys.stderr)
        return problems
    finally:
        a.close()
        b.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--before", required=True, help="git revision to compare against")
    ap.add_argument("--landing", type=Path, help="landing folder (default: a synthetic cohort)")
    ap.add_argument("--patients", type=int, default=500, help="size of the synthetic cohort")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workdir", type=Path, help="keep the builds here (default: temporary)")
    ap.add_argument(
        "--after", help="git revision to compare with (default: this checkout as it is)"
    )
    ap.add_argument(
        "--strict-order", action="store_true", help="count a table's stored row order too"
    )
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="blinaetl-compare-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        landing = args.landing
        if landing is None:
            from blinaetl.synth import generate

            generate(work / "cohort", n_patients=args.patients, seed=args.seed)
            landing = work / "cohort" / "landing"
        old_tree = export_revision(args.before, Path(tempfile.mkdtemp(dir=work)))
        old = build(old_tree, landing.resolve(), work / "before")
        new_tree = (
            ROOT
            if args.after is None
            else export_revision(args.after, Path(tempfile.mkdtemp(dir=work)))
        )
        new = build(new_tree, landing.resolve(), work / "after")
        notes: list[str] = []
        problems = compare(old[0], new[0], "analytics", notes)
        problems += compare(old[1], new[1], "restricted", notes)
    for line in notes:
        print(f"note: {line}")
    if args.strict_order:
        problems += notes
    for line in problems:
        print(line)
    print("identical" if not problems else f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

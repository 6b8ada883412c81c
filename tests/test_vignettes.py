"""Clinical vignettes: small patients written by hand, run through the whole pipeline.

Each folder under `tests/vignettes/<name>/` holds landing extracts of SITE01's layout
(`patients.csv`, `treatments.csv`, `assessments.csv`, `outcomes.csv`, optionally `reports.csv`
and `flow.tsv` in LABTXT's layout)
and `expected.yaml`: the rule it tests and, per MRN, derived values of `curated.patients` worked
out by hand from docs/derivations.md (never produced by the code), plus the queries the
derivations must raise. All vignettes are merged into one landing folder (each vignette has its
own MRNs) and run through the pipeline once.

`expected.yaml` may also give rows of published `endpoints.*` views, worked out by hand:

    endpoints:
      endpoints.hct_landmark:
        where: {param: OS, landmark_day: 100}    # optional filter (column equalities)
        rows:                                    # exactly these rows (as a multiset) on the
          - {mrn: V60, days_from_landmark: 300}  # columns named; `mrn` stands for patient_key

A view with a `patient_key` column is read for the vignette's own patients (the MRNs of its
`patients.csv`). A cohort-level view (Kaplan-Meier curves, medians) needs `own_cohort: true`:
that vignette then runs alone, in a pipeline run of its own, so its rows are the whole cohort.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.privacy import patient_keys, resolve_secret

VIGNETTES = Path(__file__).parent / "vignettes"
VIEW_NAME = re.compile(r"endpoints\.[a-z_][a-z0-9_]*")
EXTRACT = "20260901"
# vignette file -> landing path (SITE01 layout, schemas/sources/site01_*.yaml)
FILES = {
    "patients.csv": f"clinical/SITE01/patients_{EXTRACT}.csv",
    "treatments.csv": f"clinical/SITE01/treatments_{EXTRACT}.csv",
    "assessments.csv": f"clinical/SITE01/assessments_{EXTRACT}.csv",
    "outcomes.csv": f"clinical/SITE01/outcomes_{EXTRACT}.csv",
    "reports.csv": f"imaging/SITE01/reports_{EXTRACT}.csv",
    # flow cytometry of LABTXT (schemas/sources/labtxt_flow.yaml): tab-separated, CD19 in words
    "flow.tsv": f"flow/LABTXT/flow_{EXTRACT}.tsv",
}


def _vignettes() -> list[Path]:
    return sorted(p for p in VIGNETTES.iterdir() if (p / "expected.yaml").is_file())


def _merge(folders: list[Path], landing: Path) -> None:
    """One landing file per table: the vignettes' rows stacked (columns united, as text)."""
    for name, target in FILES.items():
        sep = "\t" if name.endswith(".tsv") else ","
        parts = [
            pl.read_csv(f / name, infer_schema=False, separator=sep)
            for f in folders
            if (f / name).is_file()
        ]
        if not parts:
            continue
        merged = pl.concat(parts, how="diagonal_relaxed")
        path = landing / target
        path.parent.mkdir(parents=True, exist_ok=True)
        merged.write_csv(path, separator=sep)


@dataclass
class VignetteRun:
    patients: pl.DataFrame
    queries: pl.DataFrame
    endpoints: dict[str, pl.DataFrame]


def _spec(folder: Path) -> dict:
    return yaml.safe_load((folder / "expected.yaml").read_text(encoding="utf-8"))


def _own_cohort(folder: Path) -> bool:
    return bool(_spec(folder).get("own_cohort"))


def _run(folders: list[Path], root: Path) -> VignetteRun:
    _merge(folders, root / "landing")
    cfg = RunConfig(
        landing=root / "landing", warehouse=root / "wh", reports=root / "rp", demo=True, gx=False
    )
    summary, _ = run_pipeline(cfg)
    views = sorted({v for f in folders for v in (_spec(f).get("endpoints") or {})})
    bad = [v for v in views if not VIEW_NAME.fullmatch(v)]
    assert not bad, f"expected.yaml endpoints must name endpoints.<view>: {bad}"
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        patients = con.sql("SELECT * FROM curated.patients").pl()
        endpoints = {v: con.sql(f"SELECT * FROM {v}").pl() for v in views}
    finally:
        con.close()
    queries = pl.read_csv(summary.report_dir / "queries.csv", infer_schema=False)
    return VignetteRun(patients, queries, endpoints)


@pytest.fixture(scope="module")
def vignette_run(tmp_path_factory):
    """One shared run of every vignette but the own-cohort ones, and each of those alone."""
    folders = _vignettes()
    shared = [f for f in folders if not _own_cohort(f)]
    runs: dict[str, VignetteRun] = {}
    shared_run = _run(shared, tmp_path_factory.mktemp("vignettes"))
    runs.update(dict.fromkeys((f.name for f in shared), shared_run))
    for f in folders:
        if _own_cohort(f):
            runs[f.name] = _run([f], tmp_path_factory.mktemp(f"vignette_{f.name}"))
    return {p.name: p for p in folders}, runs


def _same(expected: object, got: object) -> bool:
    if expected is None:
        return got is None
    if isinstance(expected, bool):
        return got is expected or got == expected
    if isinstance(expected, (int, float)):
        return got is not None and math.isclose(float(got), float(expected), abs_tol=1e-9)
    return str(got) == str(expected)


def test_there_are_at_least_40_vignettes():
    assert len(_vignettes()) >= 40


def _key(mrn: object) -> str:
    secret = resolve_secret(demo=True)
    return patient_keys(pl.Series(["SITE01"]), pl.Series([str(mrn)]), secret)[0]


def _matches(frame: pl.DataFrame, where: dict) -> pl.DataFrame:
    for col, value in where.items():
        if isinstance(value, str):
            frame = frame.filter(pl.col(col).cast(pl.Utf8) == value)
        else:
            frame = frame.filter(pl.col(col) == value)
    return frame


def _check_endpoints(name: str, folder: Path, spec: dict, run: VignetteRun) -> None:
    mrns = pl.read_csv(folder / "patients.csv", infer_schema=False)["MRN"].to_list()
    mrn_of = {_key(m): m for m in mrns}
    for view, want in (spec.get("endpoints") or {}).items():
        frame = _matches(run.endpoints[view], want.get("where") or {})
        if "patient_key" in frame.columns:
            frame = frame.filter(pl.col("patient_key").is_in(list(mrn_of)))
            frame = frame.with_columns(pl.col("patient_key").replace_strict(mrn_of).alias("mrn"))
        else:
            assert spec.get("own_cohort"), f"{name}: {view} is cohort-level: set own_cohort: true"
        expected = want.get("rows") or []
        columns = sorted({c for row in expected for c in row})
        got = frame.select(columns).rows(named=True) if expected else frame.rows(named=True)
        unmatched = list(got)
        missing = []
        for row in expected:
            hit = next((g for g in unmatched if all(_same(v, g[c]) for c, v in row.items())), None)
            if hit is None:
                missing.append(row)
            else:
                unmatched.remove(hit)
        assert not missing and not unmatched, (
            f"{name} ({spec['rule']}): {view} rows expected but not found {missing}; "
            f"rows found but not expected {unmatched}"
        )


@pytest.mark.parametrize("name", [p.name for p in _vignettes()])
def test_vignette(vignette_run, name):
    folders, runs = vignette_run
    run = runs[name]
    spec = _spec(folders[name])
    assert spec.get("rule"), f"{name}: expected.yaml must cite the rule it tests"
    assert spec.get("patients") or spec.get("endpoints"), f"{name}: nothing expected"
    for mrn, values in (spec.get("patients") or {}).items():
        key = _key(mrn)
        row = run.patients.filter(pl.col("patient_key") == key)
        assert row.height == 1, f"{name}: patient {mrn} not in curated.patients"
        got = row.row(0, named=True)
        wrong = {col: (want, got[col]) for col, want in values.items() if not _same(want, got[col])}
        assert not wrong, f"{name} ({spec['rule']}): {mrn} expected vs got {wrong}"
        raised = set(run.queries.filter(pl.col("patient_key") == key)["rule_id"])
        derived = {r for r in raised if r.startswith("DRV_")}
        want_queries = set((spec.get("queries") or {}).get(str(mrn), []))
        assert derived == want_queries, f"{name}: {mrn} derivation queries {derived}"
    _check_endpoints(name, folders[name], spec, run)

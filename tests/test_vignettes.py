"""Clinical vignettes: small patients written by hand, run through the whole pipeline.

Each folder under `tests/vignettes/<name>/` holds landing extracts of SITE01's layout
(`patients.csv`, `treatments.csv`, `assessments.csv`, `outcomes.csv`, optionally `reports.csv`)
and `expected.yaml`: the rule it tests and, per MRN, derived values of `curated.patients` worked
out by hand from docs/derivations.md (never produced by the code), plus the queries the
derivations must raise. All vignettes are merged into one landing folder (each vignette has its
own MRNs) and run through the pipeline once.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.privacy import patient_keys, resolve_secret

VIGNETTES = Path(__file__).parent / "vignettes"
EXTRACT = "20260901"
# vignette file -> landing path (SITE01 layout, schemas/sources/site01_*.yaml)
FILES = {
    "patients.csv": f"clinical/SITE01/patients_{EXTRACT}.csv",
    "treatments.csv": f"clinical/SITE01/treatments_{EXTRACT}.csv",
    "assessments.csv": f"clinical/SITE01/assessments_{EXTRACT}.csv",
    "outcomes.csv": f"clinical/SITE01/outcomes_{EXTRACT}.csv",
    "reports.csv": f"imaging/SITE01/reports_{EXTRACT}.csv",
}


def _vignettes() -> list[Path]:
    return sorted(p for p in VIGNETTES.iterdir() if (p / "expected.yaml").is_file())


def _merge(folders: list[Path], landing: Path) -> None:
    """One landing file per table: the vignettes' rows stacked (columns united, as text)."""
    for name, target in FILES.items():
        parts = [pl.read_csv(f / name, infer_schema=False) for f in folders if (f / name).is_file()]
        if not parts:
            continue
        merged = pl.concat(parts, how="diagonal_relaxed")
        path = landing / target
        path.parent.mkdir(parents=True, exist_ok=True)
        merged.write_csv(path)


@pytest.fixture(scope="module")
def vignette_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vignettes")
    folders = _vignettes()
    _merge(folders, root / "landing")
    cfg = RunConfig(
        landing=root / "landing", warehouse=root / "wh", reports=root / "rp", demo=True, gx=False
    )
    summary, _ = run_pipeline(cfg)
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        patients = con.sql("SELECT * FROM curated.patients").pl()
    finally:
        con.close()
    queries = pl.read_csv(summary.report_dir / "queries.csv", infer_schema=False)
    return {p.name: p for p in folders}, patients, queries


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


@pytest.mark.parametrize("name", [p.name for p in _vignettes()])
def test_vignette(vignette_run, name):
    folders, patients, queries = vignette_run
    spec = yaml.safe_load((folders[name] / "expected.yaml").read_text(encoding="utf-8"))
    assert spec.get("rule"), f"{name}: expected.yaml must cite the rule it tests"
    secret = resolve_secret(demo=True)
    for mrn, values in spec["patients"].items():
        key = patient_keys(pl.Series(["SITE01"]), pl.Series([str(mrn)]), secret)[0]
        row = patients.filter(pl.col("patient_key") == key)
        assert row.height == 1, f"{name}: patient {mrn} not in curated.patients"
        got = row.row(0, named=True)
        wrong = {col: (want, got[col]) for col, want in values.items() if not _same(want, got[col])}
        assert not wrong, f"{name} ({spec['rule']}): {mrn} expected vs got {wrong}"
        raised = set(queries.filter(pl.col("patient_key") == key)["rule_id"])
        derived = {r for r in raised if r.startswith("DRV_")}
        want_queries = set((spec.get("queries") or {}).get(str(mrn), []))
        assert derived == want_queries, f"{name}: {mrn} derivation queries {derived}"

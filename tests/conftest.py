"""Shared fixtures: cohorts generated once per session and run through the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.synth import generate

# tests never borrow a Prefect server someone else runs on this machine (flows/local_server.py)
os.environ.setdefault("BLINAETL_PREFECT_REUSE", "0")


def _run_cohort(root: Path, n: int, seed: int) -> tuple[Path, RunConfig, object]:
    out = root / f"cohort_{n}_{seed}"
    generate(out, n_patients=n, seed=seed)
    cfg = RunConfig(
        landing=out / "landing",
        warehouse=root / f"wh_{n}_{seed}",
        reports=root / f"rp_{n}_{seed}",
        demo=True,
    )
    summary, result = run_pipeline(cfg)
    return out, cfg, (summary, result)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    return _run_cohort(tmp_path_factory.mktemp("e2e"), 65, 2017)


@pytest.fixture(scope="session")
def large_run(tmp_path_factory):
    return _run_cohort(tmp_path_factory.mktemp("e2e_large"), 10_000, 7)

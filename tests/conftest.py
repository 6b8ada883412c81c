"""Shared fixtures: cohorts generated once per session and run through the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.synth import generate

# tests never borrow a Prefect server someone else runs on this machine (flows/local_server.py)
os.environ.setdefault("BLINAETL_PREFECT_REUSE", "0")

# Under pytest-xdist (`make test` runs two workers) each worker gets a Prefect home of its own, so
# two temporary Prefect servers never share one SQLite database.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER and os.environ.get("PREFECT_HOME"):
    _home = Path(os.environ["PREFECT_HOME"]) / f"xdist-{_WORKER}"
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)

# The session cohorts are built once per session: every test that uses one runs on the same
# xdist worker (`--dist loadgroup`), so the demo cohort is generated and run through the pipeline
# once, not once per worker.
_COHORT_GROUPS = {"demo_run": "demo_cohort", "large_run": "large_cohort"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, group in _COHORT_GROUPS.items():
            if fixture in names:
                item.add_marker(pytest.mark.xdist_group(group))
                break


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

"""Run configuration: `RunConfig`, run-config files and run ids (the ground floor of the engine)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class RunConfigError(ValueError):
    """A run setting has a value it cannot take (a configuration problem: exit status 2)."""


@dataclass
class RunConfig:
    """Everything a run needs; all paths may be relative to the working directory."""

    landing: Path
    warehouse: Path = Path("warehouse")
    reports: Path = Path("reports")
    demo: bool = False
    definitions: dict[str, Any] = field(default_factory=dict)
    sources_dir: Path | None = None  # mapping folder; else $BLINAETL_SOURCES, else bundled
    contracts_dir: Path | None = None
    run_id: str = ""
    date_shift: bool = False  # publish curated.patient_dates with per-patient shifted dates
    secret_block: str | None = None  # Prefect Secret block holding the key (env var wins)
    gx: bool = True  # Great Expectations checkpoint and Data Docs in the report stage
    # study_report.html in the report stage (its child process reads the published views)
    study_report: bool = True
    skip_unchanged: bool = False  # skip the run when no landing file or definition changed
    # read every landing file again instead of taking unchanged ones from the per-file cache
    full: bool = False
    # publish gate (blinaetl/warehouse/gate.py): the largest fall in patients, overall or at one
    # site, that is published without being accepted, and the findings accepted for this run
    max_patient_drop_pct: float = 10.0
    accept_drop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.landing = Path(self.landing)
        self.warehouse = Path(self.warehouse)
        self.reports = Path(self.reports)
        self.accept_drop = tuple(self.accept_drop or ())
        self.max_patient_drop_pct = float(self.max_patient_drop_pct)
        if not 0 <= self.max_patient_drop_pct <= 100:
            raise RunConfigError(
                f"max_patient_drop_pct must be a percentage from 0 to 100, got "
                f"{self.max_patient_drop_pct:g}"
            )
        if not self.run_id:
            self.run_id = new_run_id()

    def secret(self) -> bytes:
        """The pseudonymisation key (fail closed); resolved on each use, never stored."""
        from blinaetl.privacy import resolve_secret

        return resolve_secret(self.demo, self.secret_block)

    @property
    def restricted_path(self) -> Path:
        # in a folder of its own (0700): DuckDB's WAL and spill files beside it hold identifiers too
        return self.warehouse / "restricted" / "restricted.duckdb"

    @property
    def file_cache_dir(self) -> Path:
        """Unchanged files' read and mapped rows (`blinaetl/ingest/cache.py`); restricted zone."""
        return self.restricted_path.parent / "file_cache"

    @property
    def analytics_path(self) -> Path:
        return self.warehouse / "blina.duckdb"

    @property
    def report_dir(self) -> Path:
        return self.reports / self.run_id


RUN_CONFIG_KEYS = {
    "landing",
    "warehouse",
    "reports",
    "demo",
    "definitions",
    "skip_unchanged",
    "full",
    "date_shift",
    "secret_block",
    "sources",
    "max_patient_drop_pct",
    "accept_drop",
    "gx",
    "study_report",
}


def load_run_config(path: Path) -> dict[str, Any]:
    """Values of a run-config YAML file; unknown keys are an error naming the file."""
    import yaml

    if not path.is_file():
        raise FileNotFoundError(f"run config {path} does not exist (cwd: {Path.cwd()})")
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    unknown = set(doc) - RUN_CONFIG_KEYS
    if unknown:
        raise KeyError(
            f"run config {path}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(RUN_CONFIG_KEYS))}"
        )
    return doc


def new_run_id(now: dt.datetime | None = None) -> str:
    """Sortable, unique run id: UTC time to the microsecond plus the process id."""
    t = now or dt.datetime.now(dt.UTC)
    return t.strftime("%Y%m%dT%H%M%S") + f"{t.microsecond:06d}Z-{os.getpid()}"

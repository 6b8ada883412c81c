"""The publish gate: never publish worse silently (design principle 8).

Before the swap, the run's new analytics file is compared with the last published database and
with the delivery. Publication is refused, and the last good database stays live, when

- the new build holds no patient at all (`patients`);
- the share of patients falls by more than `max_patient_drop_pct` percent, overall
  (`patients`) or at one site (the site's code, e.g. `SITE01`);
- a site of the last published database, or a clinical site that delivered files in this run,
  has no patient in the new build (the site's code);
- a curated table of the last published database is missing from the new build, or a curated
  table that held rows is empty (`table:NAME`); endpoint views are not compared, since they are
  added from `sql/endpoints` after the gate, whatever the delivery;
- a source that loaded rows in the last publication, or that delivered files in this run, loaded
  no row (`source:ID`);
- a delivered file had rows and every one was quarantined (`file:PATH`).

Each finding names the token that accepts it (`blinaetl run --accept-drop TOKEN`, repeatable;
`accept_drop` in a run config). The profile of what was published (patients per site, rows per
table, rows loaded per source) is written beside the live file (`<name>.published.json`) after
each swap, so the next run's gate can compare sources too.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

DEFAULT_MAX_PATIENT_DROP_PCT = 10.0
LOADING_STATUSES = ("loaded", "loaded_with_warnings", "partially_quarantined", "all_quarantined")


@dataclass(frozen=True)
class GateFinding:
    rule: str  # no_patients, patients_fell, site_lost, site_patients_fell, table_lost, ...
    token: str  # what `--accept-drop` takes to accept it
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class PublicationRefused(RuntimeError):
    """The publish gate refused the new build; the last published database stays live."""

    def __init__(self, findings: list[GateFinding], live_exists: bool) -> None:
        self.findings = findings
        self.live_exists = live_exists
        self.report_dir: Path | None = None  # set once the run's report is written
        super().__init__(refusal_message(findings, live_exists))


def refusal_message(findings: list[GateFinding], live_exists: bool = True) -> str:
    kept = (
        "the last published database stays live"
        if live_exists
        else "nothing was published (there is no earlier database)"
    )
    tokens = " ".join(f"--accept-drop {t}" for t in dict.fromkeys(f.token for f in findings))
    lines = [f"publication refused by the publish gate; {kept}:"]
    lines += [f"  - {f.message}" for f in findings]
    lines.append(
        "Correct the delivery (see the report) and run again, or, if the loss is intended, "
        f"run again with {tokens}"
    )
    return "\n".join(lines)


@dataclass
class Profile:
    """What an analytics database holds, as far as the gate compares it."""

    patients_by_site: dict[str, int] = field(default_factory=dict)
    table_rows: dict[str, int] = field(default_factory=dict)  # curated tables
    views: list[str] = field(default_factory=list)  # endpoint views (listed, not compared)
    source_rows: dict[str, int] | None = None  # rows loaded per source (from the sidecar)

    @property
    def patients(self) -> int:
        return sum(self.patients_by_site.values())


def profile_of(path: Path) -> Profile:
    """Patients per site, rows per curated table and the endpoint views of a database file."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return _profile(con)
    finally:
        con.close()


def _profile(con: duckdb.DuckDBPyConnection) -> Profile:
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    tables = [
        t
        for (t,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? "
            "AND schema_name = 'curated' ORDER BY 1",
            [db],
        ).fetchall()
    ]
    views = [
        v
        for (v,) in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = ? "
            "AND schema_name = 'endpoints' ORDER BY 1",
            [db],
        ).fetchall()
    ]
    rows = {t: con.execute(f'SELECT count(*) FROM curated."{t}"').fetchall()[0][0] for t in tables}
    sites: dict[str, int] = {}
    if "patients" in tables:
        sites = {
            str(s): int(n)
            for s, n in con.execute(
                "SELECT coalesce(site, '(none)'), count(*) FROM curated.patients GROUP BY ALL"
            ).fetchall()
        }
    return Profile(sites, rows, views)


def sidecar_path(analytics_path: Path) -> Path:
    return analytics_path.with_name(analytics_path.name + ".published.json")


def read_published_profile(analytics_path: Path) -> Profile | None:
    """The live database's profile, with the sources of the sidecar when it describes it."""
    if not analytics_path.exists():
        return None
    live = profile_of(analytics_path)
    side = sidecar_path(analytics_path)
    if side.exists():
        doc = json.loads(side.read_text(encoding="utf-8"))
        if doc.get("size") == analytics_path.stat().st_size:  # written for this very file
            live.source_rows = {str(k): int(v) for k, v in doc.get("source_rows", {}).items()}
    return live


def write_published_profile(analytics_path: Path, run_id: str, files: pl.DataFrame) -> Path:
    """The sidecar of a freshly swapped-in database (atomic: written beside, then replaced)."""
    prof = profile_of(analytics_path)
    doc = {
        "run_id": run_id,
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "size": analytics_path.stat().st_size,
        "patients_by_site": prof.patients_by_site,
        "table_rows": prof.table_rows,
        "source_rows": source_rows(files),
    }
    side = sidecar_path(analytics_path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, side)
    return side


def source_rows(files: pl.DataFrame) -> dict[str, int]:
    """Rows loaded per source of the files that were read (not superseded, matched)."""
    read = files.filter(pl.col("source_id").is_not_null() & (pl.col("status") != "superseded"))
    if read.height == 0:
        return {}
    per = read.group_by("source_id").agg(pl.col("rows_loaded").sum()).sort("source_id")
    return {str(s): int(n) for s, n in per.iter_rows()}


def _pct_fall(before: int, after: int) -> float:
    return 0.0 if before <= 0 else 100.0 * (before - after) / before


def find_patient_loss(build: Profile, live: Profile | None, pct: float) -> list[GateFinding]:
    """No patient at all, or the patients fell by more than `pct` percent overall."""
    if build.patients == 0:
        return [
            GateFinding(
                "no_patients",
                "patients",
                "the new build holds no patient (curated.patients is empty)",
            )
        ]
    if live is not None and _pct_fall(live.patients, build.patients) > pct:
        return [
            GateFinding(
                "patients_fell",
                "patients",
                f"patients fell from {live.patients} to {build.patients} "
                f"({_pct_fall(live.patients, build.patients):.1f}%, more than the "
                f"{pct:g}% allowed by max_patient_drop_pct)",
            )
        ]
    return []


def find_site_loss(build: Profile, live: Profile, pct: float) -> list[GateFinding]:
    """A published site with no patient now, or whose patients fell by more than `pct`."""
    found = []
    for site, before in sorted(live.patients_by_site.items()):
        after = build.patients_by_site.get(site, 0)
        if after == 0:
            found.append(
                GateFinding(
                    "site_lost",
                    site,
                    f"site {site} had {before} patients in the published database and has "
                    "none in the new build",
                )
            )
        elif _pct_fall(before, after) > pct:
            found.append(
                GateFinding(
                    "site_patients_fell",
                    site,
                    f"site {site}: patients fell from {before} to {after} "
                    f"({_pct_fall(before, after):.1f}%, more than the {pct:g}% allowed by "
                    "max_patient_drop_pct)",
                )
            )
    return found


def find_table_loss(build: Profile, live: Profile) -> list[GateFinding]:
    """A published curated table missing from the build, or emptied."""
    found = []
    for table, before in sorted(live.table_rows.items()):
        if table not in build.table_rows:
            found.append(
                GateFinding(
                    "table_lost",
                    f"table:{table}",
                    f"curated.{table} is in the published database and missing from the new build",
                )
            )
        elif before > 0 and build.table_rows[table] == 0:
            found.append(
                GateFinding(
                    "table_emptied",
                    f"table:{table}",
                    f"curated.{table} had {before} rows in the published database and is "
                    "empty in the new build",
                )
            )
    return found


def find_delivered_site_loss(
    build: Profile, delivered_sites: Iterable[str], already_lost: set[str]
) -> list[GateFinding]:
    """A site that delivered files in this run and has no patient (unless already found)."""
    return [
        GateFinding(
            "site_lost",
            site,
            f"site {site} delivered files in this run and has no patient in the new build",
        )
        for site in sorted(set(delivered_sites) - set(build.patients_by_site) - already_lost)
    ]


def find_source_loss(files: pl.DataFrame, live: Profile | None) -> list[GateFinding]:
    """A source that delivered files now, or loaded rows in the last publication, and loaded
    no row in this run."""
    now = source_rows(files)
    delivered_sources = set(
        files.filter(pl.col("source_id").is_not_null() & (pl.col("status") != "superseded"))[
            "source_id"
        ].to_list()
    )
    before_sources = (live.source_rows or {}) if live is not None else {}
    found = []
    for source in sorted(delivered_sources | {s for s, n in before_sources.items() if n > 0}):
        if now.get(source, 0) > 0:
            continue
        was = before_sources.get(source)
        where = f"loaded {was} rows in the last publication and" if was else "delivered files and"
        found.append(
            GateFinding(
                "source_lost",
                f"source:{source}",
                f"source {source} {where} loaded no row in this run",
            )
        )
    return found


def find_emptied_files(files: pl.DataFrame) -> list[GateFinding]:
    """A delivered file that had rows, every one of them quarantined."""
    emptied = files.filter(
        (pl.col("rows_read") > 0) & (pl.col("rows_loaded") == 0) & (pl.col("rows_quarantined") > 0)
    )
    return [
        GateFinding(
            "file_all_quarantined",
            f"file:{path}",
            f"{path}: all {n} rows were quarantined (see its queries for the cause)",
        )
        for path, n in emptied.select("path", "rows_read").sort("path").iter_rows()
    ]


def gate_findings(
    build: Profile,
    live: Profile | None,
    files: pl.DataFrame,
    delivered_sites: Iterable[str],
    max_patient_drop_pct: float = DEFAULT_MAX_PATIENT_DROP_PCT,
) -> list[GateFinding]:
    """Every reason to refuse the new build, compared with the live one and the delivery."""
    pct = max_patient_drop_pct
    found = find_patient_loss(build, live, pct)
    if live is not None:
        found += find_site_loss(build, live, pct)
        found += find_table_loss(build, live)
    lost_sites = {f.token for f in found if f.rule == "site_lost"}
    found += find_delivered_site_loss(build, delivered_sites, lost_sites)
    found += find_source_loss(files, live)
    found += find_emptied_files(files)
    return found


def check_gate(
    build_path: Path,
    live_path: Path,
    files: pl.DataFrame,
    delivered_sites: Iterable[str],
    max_patient_drop_pct: float = DEFAULT_MAX_PATIENT_DROP_PCT,
    accept: Iterable[str] = (),
) -> tuple[list[GateFinding], list[GateFinding]]:
    """(refusing findings, accepted findings) for the new build at `build_path`."""
    found = gate_findings(
        profile_of(build_path),
        read_published_profile(live_path),
        files,
        delivered_sites,
        max_patient_drop_pct,
    )
    accepted_tokens = {a.strip() for a in accept if a.strip()}
    refusing = [f for f in found if f.token not in accepted_tokens]
    accepted = [f for f in found if f.token in accepted_tokens]
    return refusing, accepted


def gate_summary(
    refusing: list[GateFinding], accepted: list[GateFinding], live_exists: bool
) -> dict[str, Any]:
    """The gate's outcome for the manifest and the report."""
    return {
        "published": not refusing,
        "refused": [f.as_dict() for f in refusing],
        "accepted": [f.as_dict() for f in accepted],
        "live_database_kept": bool(refusing) and live_exists,
        "override": sorted({f"--accept-drop {f.token}" for f in refusing}),
    }

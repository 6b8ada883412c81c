"""The pipeline as plain functions, one per stage of the design's path.

`run_pipeline` chains them; `flows/pipeline.py` wraps the same functions as Prefect tasks and
adds no logic. Every stage takes a `RunConfig` and paths, so it can be called and tested
without Prefect.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import duckdb

from blinaetl.config import RunConfig
from blinaetl.ingest.fingerprint import unchanged_since_last_run
from blinaetl.validate.contracts import load_contracts
from blinaetl.warehouse import database as warehouse
from blinaetl.warehouse import frames, models
from blinaetl.warehouse.gate import PublicationRefused, gate_summary

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


class RunLockedError(RuntimeError):
    """Another run holds the warehouse; this run changed nothing."""


@contextlib.contextmanager
def warehouse_lock(cfg: RunConfig) -> Iterator[None]:
    """Single writer: hold an exclusive lock on `warehouse/.lock` for the whole run."""
    cfg.warehouse.mkdir(parents=True, exist_ok=True)
    lock_path = cfg.warehouse / ".lock"
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RunLockedError(
                f"another blinaetl run is writing to {cfg.warehouse}; this run stopped "
                "before changing anything. Wait for it to finish and start again."
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


TEXT_TABLE = "imaging_reports"  # the validated table the text stage reads after the load
log = logging.getLogger("blinaetl")


@contextlib.contextmanager
def run_log(cfg: RunConfig) -> Iterator[Path]:
    """Log this run to reports/<run_id>/run.log (counts and file names only, never values)."""
    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    path = cfg.report_dir / "run.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield path
    except Exception as exc:
        log.error("run failed in a stage: %s", type(exc).__name__)
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


# --- stages -------------------------------------------------------------------------------


def stage_ingest(cfg: RunConfig, progress: Progress | None = None) -> Any:
    """Read, map and validate every landing file; returns an `IngestResult`.

    The sites' returned query workbooks (`site_replies`) are read on a thread beside the
    planning, the cache lookups and the reads, and the validator's import starts first: all
    three are fixed costs of every run (1-3 s each under load), which an incremental run, with
    few files to read, would otherwise pay one after the other. Validation waits for the
    replies (it needs the failures the sites confirmed).
    """
    from concurrent.futures import ThreadPoolExecutor

    from blinaetl.ingest.landing import ingest_landing, preload_validation

    if not cfg.landing.is_dir():
        raise FileNotFoundError(
            f"landing folder {cfg.landing} does not exist; point --landing at the folder "
            "holding the site extracts (make run generates a demo one)"
        )
    secret = cfg.secret()
    preload_validation()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="site-replies") as pool:
        replies = pool.submit(site_replies, cfg)
        result = ingest_landing(
            cfg.landing,
            run_id=cfg.run_id,
            secret=secret,
            sources_dir=cfg.sources_dir,
            contracts_dir=cfg.contracts_dir,
            progress=progress,
            definitions=cfg.definitions,
            accepted=lambda: replies.result().accepted,
            cache_dir=cfg.file_cache_dir,
            full=cfg.full,
        )
        result.replies = replies.result()
    return result


def log_reused(cfg: RunConfig, result: Any) -> None:
    """The run log line of an incremental run: which files came from the per-file cache."""
    reused = list(getattr(result, "reused", []))
    if cfg.full:
        log.info("full run (--full): every file read, the per-file cache written afresh")
    else:
        log.info(
            "incremental run: %d file(s) unchanged, taken from the per-file cache%s",
            len(reused),
            f": {', '.join(reused)}" if reused else "",
        )
        validated = list(getattr(result, "validated_reused", []))
        log.info(
            "incremental run: %d table(s) not validated again, their files, checks, confirmed "
            "failures and patient facts unchanged%s",
            len(validated),
            f": {', '.join(validated)}" if validated else "",
        )


def site_replies(cfg: RunConfig) -> Any:
    """The query workbooks sites returned to `landing/queries/<SITE>/` (`reports.replies`).

    Read before validation: a failure a site confirmed as delivered (`confirmed_as_is`) is
    loaded with the check as a warning instead of being quarantined.
    """
    from blinaetl.reports.audit import QueryAudit
    from blinaetl.reports.replies import read_replies

    return read_replies(cfg.landing, cfg.restricted_path, QueryAudit.of(cfg.restricted_path))


def stage_load(cfg: RunConfig, result: Any) -> dict[str, int]:
    """Rebuild the restricted database's staging, quarantine and meta tables.

    When the run's build key (`blinaetl/ingest/reuse.py`) is the last build's, the staged rows are
    kept (given this run's `_run_id` and file hashes) and the run reuses the last build
    (`result.build_reused`): the text reader and the SQL models are not run again. Each
    validated table but the imaging reports leaves `result.tables` once it is staged
    (`release_staged`).
    """
    from blinaetl.ingest import reuse

    contracts = load_contracts(cfg.contracts_dir)
    result.build_key = reuse.build_key(cfg, result)
    result.build_reused = reuse.can_reuse(cfg, result.build_key)
    if result.build_reused:
        log.info(
            "build reused: the staged rows and everything the SQL models read are those of "
            "the last published build; its harmonized and curated tables are kept"
        )
    else:
        warehouse.reset_restricted(cfg.restricted_path)
    con = warehouse.connect_restricted(cfg.restricted_path)
    try:
        if result.build_reused:
            reuse.keep_restricted(con, cfg.run_id, result.files, list(contracts))
            con.execute(models.NOT_COLLECTED_DDL)
            con.execute(models.DATE_IMPUTATIONS_DDL)
        loaded = warehouse.load_staging(
            con,
            contracts,
            result.tables,
            result.quarantine,
            result.files,
            result.dq_results,
            staging=not result.build_reused,
            staged=functools.partial(release_staged, result),
        )
        # fields the sites' mappings declare not collected (staging.not_collected exists empty)
        frames.write_frame(con, "staging.not_collected", result.not_collected)
        warehouse_labels(con, result.column_labels, contracts)
        frames.write_frame(con, "staging.date_imputations", result.date_imputations)
        if result.build_reused:
            reuse.record_key(con, result.build_key)
        return loaded
    finally:
        con.close()


def warehouse_labels(con: duckdb.DuckDBPyConnection, labels: Any, contracts: dict) -> None:
    """Variable labels of SAS/SPSS/Stata/Dataset-JSON files: `meta.column_labels`, and on each
    staging column a COMMENT of the contract's description plus the labels it was delivered with."""
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    frames.write_frame(con, "meta.column_labels", labels, replace=True)
    by_field: dict[tuple[str, str], list[str]] = {}
    for row in labels.iter_rows(named=True):
        said = f"'{row['label']}' ({row['source_id']})"
        items = by_field.setdefault((row["table_name"], row["field_name"]), [])
        if said not in items:
            items.append(said)
    for (table, name), delivered in by_field.items():
        text = f"{contracts[table].field(name).description} Delivered as: {'; '.join(delivered)}."
        con.execute(
            f'COMMENT ON COLUMN staging.{table}."{name}" IS ' + "'" + text.replace("'", "''") + "'"
        )


def stage_extract_text(cfg: RunConfig, result: Any) -> int:
    """EM site mentions with their assertion, from the imaging report text of the loaded rows.

    Reads the validated `imaging_reports` of the ingest result (the rows `staging.imaging_reports`
    holds), so the text is not read back from the database.
    """
    from blinaetl.text import read_em_text

    if getattr(result, "build_reused", False):  # harmonized.em_mentions is the last build's
        con = warehouse.connect_restricted(cfg.restricted_path)
        try:
            return int(con.execute("SELECT count(*) FROM harmonized.em_mentions").fetchall()[0][0])
        finally:
            con.close()
    reports = result.tables[TEXT_TABLE].select(
        "patient_key",
        "site",
        "_source_file",
        "_source_row",
        "report_date",
        "modality",
        "report_text",
    )
    mentions, unmapped = read_em_text(reports)
    con = warehouse.connect_restricted(cfg.restricted_path)
    try:
        con.execute("CREATE SCHEMA IF NOT EXISTS harmonized")
        frames.write_frame(con, "harmonized.em_mentions", mentions, replace=True)
        frames.write_frame(con, "harmonized.em_unmapped_terms", unmapped, replace=True)
        return mentions.height
    finally:
        con.close()


class ReleasedTables(dict[str, Any]):
    """`IngestResult.tables` once the run is past the text stage: empty, and saying where the
    staged rows are when a table is asked for."""

    def __missing__(self, table: str) -> NoReturn:
        raise KeyError(
            f"{table}: the validated tables are released after the text stage; "
            f"read staging.{table} from the restricted database"
        )


def release_staged(result: Any, table: str) -> None:
    """Let go of one validated table once the load has appended it to `staging.<table>`.

    The imaging reports are kept for the text stage, which reads them next; every other table
    is read by no later stage (`release_tables`). Released as each append ends, the load's
    other appends run on a base that shrinks: at 1,000,000 patients the validated tables held
    through the load were about 5 GiB of its 6.3 GiB peak.
    """
    tables = getattr(result, "tables", None)
    if isinstance(tables, dict) and table != TEXT_TABLE:
        tables.pop(table, None)


def release_tables(result: Any) -> None:
    """Let go of the validated tables (`IngestResult.tables`) once the text stage has read them
    (by then the load has released all but the imaging reports, `release_staged`).

    They are read by the load stage (staging, the build key) and the text stage only; the
    transform, gate, publish and report stages read the databases, the file rows, the DQD
    results and the quarantine. Held to the end, they were about 1.2 GiB of the transform and
    report stages' peak at 300,000 patients. The staged rows stay in the restricted database
    (`staging.<table>`); a caller that wants the frames themselves takes them in its own
    `load` stage (`run_pipeline(stages=...)`), before the load releases them.
    """
    if isinstance(getattr(result, "tables", None), dict):
        result.tables = ReleasedTables()


def stage_transform(cfg: RunConfig, result: Any = None) -> dict:
    """Harmonize in the restricted database, then curate into the run's new analytics file.

    With an ingest result whose build is reused (`stage_load`), the new analytics file is a
    copy of the live one and no model runs; otherwise the result's build key is recorded in
    the restricted database once the models have run.

    Definitions and vocabularies are installed, the `harmonized` models run in the restricted
    database, and the `curated` models write their tables straight into the new analytics file
    (`warehouse.building`), which is checked against the analytics contract before the stage
    ends; `stage_publish` swaps it in. In date-shift mode the per-patient shifts are computed
    (restricted zone only) and the `date_shift` layer adds `curated.patient_dates`.
    """
    from blinaetl.ingest import reuse

    if getattr(result, "build_reused", False):
        reuse.copy_live_build(
            cfg.analytics_path, warehouse.building_path(cfg.analytics_path, cfg.run_id)
        )
        return {}
    definitions = models.load_definitions(overrides=cfg.definitions)
    con = warehouse.connect_restricted(cfg.restricted_path)
    try:
        models.install_definitions(con, definitions)
        models.load_vocab(con)
        ran = {"harmonized": models.run_layer(con, "harmonized")}
        if cfg.date_shift:
            max_days = con.execute("SELECT def_num('date_shift_max_days')").fetchall()[0][0]
            write_date_shifts(con, cfg.secret(), int(max_days))
        with warehouse.building(con, cfg.analytics_path, cfg.run_id):
            models.install_definitions(con, definitions)  # published with the curated tables
            ran["curated"] = models.run_layer(con, "curated")
            if cfg.date_shift:
                ran["date_shift"] = models.run_layer(con, "date_shift")
            warehouse.check_publishable(con, date_shift=cfg.date_shift)
        if getattr(result, "build_key", None):
            reuse.record_key(con, result.build_key)
        return ran
    finally:
        con.close()


def write_date_shifts(con: duckdb.DuckDBPyConnection, secret: bytes, max_days: int) -> int:
    """`harmonized.date_shift`: one keyed shift per patient of the timeline (restricted zone)."""
    from blinaetl.privacy import date_shifts

    keys = con.sql("SELECT patient_key FROM harmonized.patient_timeline").pl()["patient_key"]
    shifts = date_shifts(keys, secret, max_days)
    frames.write_frame(con, "harmonized.date_shift", shifts, replace=True)
    return shifts.height


def stage_gate(cfg: RunConfig, result: Any) -> dict[str, Any]:
    """The publish gate: compare the new build with the live database and the delivery.

    Returns the gate's outcome (findings accepted with `accept_drop` included). When a finding
    is not accepted, the new build is removed and `PublicationRefused` is raised: the last
    published database stays live (design principle 8).
    """
    from blinaetl.warehouse import gate

    build = warehouse.building_path(cfg.analytics_path, cfg.run_id)
    if not build.exists():
        raise warehouse.PublishError(
            f"no analytics file was built for run {cfg.run_id} ({build.name}); run the "
            "transform stage first"
        )
    refusing, accepted = gate.check_gate(
        build,
        cfg.analytics_path,
        result.files,
        result.delivered_sites,
        cfg.max_patient_drop_pct,
        cfg.accept_drop,
    )
    live_exists = cfg.analytics_path.exists()
    for finding in accepted:
        log.warning("publish gate: accepted (%s): %s", finding.token, finding.rule)
    if refusing:
        warehouse.discard_build(cfg.analytics_path, cfg.run_id)
        log.error("publish gate refused publication: %s", ", ".join(f.rule for f in refusing))
        raise gate.PublicationRefused(refusing, live_exists)
    return gate.gate_summary(refusing, accepted, live_exists)


def stage_publish(cfg: RunConfig, result: Any = None) -> Path:
    """Add the endpoint views to the run's new analytics file and swap it in atomically.

    With the ingest result, the profile of what was published is written beside the live file
    for the next run's gate (`blinaetl/warehouse/gate.py`).
    """
    from blinaetl.ingest import reuse

    # the live file's build key goes before the swap and comes back after it (a run stopped in
    # between leaves no key, so the next run builds afresh)
    reuse.published_key_path(cfg.analytics_path).unlink(missing_ok=True)
    reused = bool(getattr(result, "build_reused", False))
    path = warehouse.publish(cfg.analytics_path, build_tag=cfg.run_id, finished=reused)
    key = getattr(result, "build_key", None)
    if key:
        reuse.published_key_path(path).write_text(key + "\n", encoding="utf-8")
    if result is not None:
        from blinaetl.warehouse import gate

        gate.write_published_profile(path, cfg.run_id, result.files)
    return path


def stage_report(
    cfg: RunConfig,
    result: Any,
    timings: dict[str, float],
    gate_outcome: dict[str, Any] | None = None,
) -> Path:
    """Write the run's report folder: steward report, manifest, DQ results, study report.

    When the gate refused publication, the new build is gone and the live database is the
    previous one, so nothing is read from it: no cohort expectations, study report or snapshot;
    the steward report says why publication was refused and how to override.
    """
    from blinaetl.reports.steward import write_run_report

    cfg.report_dir.mkdir(parents=True, exist_ok=True)
    published = gate_outcome is None or gate_outcome.get("published", True)
    children = _REPORT_CHILDREN.pop(cfg.run_id, {})
    try:
        wait_gx = None
        if published:
            # the checkpoint and the study report run in their child processes (started with
            # the run, `prestart_reports`) while the steward report is written here
            children |= {k: _new_child(k) for k in _report_kinds(cfg) if k not in children}
            if cfg.gx:
                children["gx"].submit_checkpoint(cfg.analytics_path, cfg.report_dir)
                wait_gx = children["gx"].result
            if cfg.study_report:
                children["study"].submit_report(cfg.analytics_path, cfg.report_dir)
        # the steward report waits for the checkpoint's summary before its manifest and
        # index.html (which links the Data Docs the checkpoint wrote)
        out = write_run_report(cfg, result, timings, None, gate_outcome, wait_gx=wait_gx)
        if "study" in children and published:
            children["study"].result()  # raises when the study report failed
        return out
    finally:
        for child in children.values():
            child.close()


# the report children of each run in progress in this process (`prestart_reports`); a stage
# called on its own, or a task on another process, starts its own
_REPORT_CHILDREN: dict[str, dict[str, Any]] = {}


def _report_kinds(cfg: RunConfig) -> tuple[str, ...]:
    """The report children a run has: the GX checkpoint and the study report, each unless
    disabled (`RunConfig.gx`, `RunConfig.study_report`)."""
    return tuple(k for k, on in (("gx", cfg.gx), ("study", cfg.study_report)) if on)


def _new_child(kind: str) -> Any:
    if kind == "gx":
        from blinaetl.reports.gx import GxWorker

        return GxWorker()
    from blinaetl.reports.study import StudyWorker

    return StudyWorker()


@contextlib.contextmanager
def prestart_reports(cfg: RunConfig) -> Iterator[None]:
    """Start the run's report children now: their imports (great_expectations, matplotlib)
    then overlap ingest to publish; `stage_report` gives them their jobs; any child not asked
    (a refused or failed run) is ended here."""
    children = _REPORT_CHILDREN[cfg.run_id] = {}
    children |= {k: _new_child(k) for k in _report_kinds(cfg)}
    try:
        yield
    finally:
        _REPORT_CHILDREN.pop(cfg.run_id, None)
        for child in children.values():
            child.close()


# --- the whole run ------------------------------------------------------------------------


class RunSkipped(Exception):
    """Nothing changed since the last run and the config asked to skip such runs."""


@dataclass
class RunSummary:
    run_id: str
    report_dir: Path
    analytics_path: Path
    needs_attention: bool
    files: int
    rows_loaded: dict[str, int]
    timings: dict[str, float]
    gate: dict[str, Any] | None = None  # the publish gate's outcome

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "report_dir": str(self.report_dir),
            "analytics_path": str(self.analytics_path),
            "needs_attention": self.needs_attention,
            "publish_gate": self.gate,
            "files": self.files,
            "rows_loaded": self.rows_loaded,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
        }


STAGES: dict[str, Callable[..., Any]] = {
    "ingest": stage_ingest,
    "load": stage_load,
    "extract_text": stage_extract_text,
    "transform": stage_transform,
    "gate": stage_gate,
    "publish": stage_publish,
    "report": stage_report,
}


def run_pipeline(
    cfg: RunConfig,
    progress: Progress = _quiet,
    stages: dict[str, Callable[..., Any]] | None = None,
    report_children: bool = True,
) -> tuple[RunSummary, Any]:
    """Run every stage in order under the single-writer lock.

    `stages` replaces stage functions by name (the Prefect flow passes its tasks, which call
    the same functions). `report_children=False` starts no report child processes with the
    run (`prestart_reports`), for a caller whose report stage does not write the report.
    Returns the summary and the ingest result.
    """
    run = {**STAGES, **(stages or {})}
    timings: dict[str, float] = {}

    def timed(name: str, *args: Any) -> Any:
        progress(f"{name} ...")
        log.info("stage %s started", name)
        t0 = time.perf_counter()
        out = run[name](cfg, *args)
        timings[name] = time.perf_counter() - t0
        log.info("stage %s finished in %.2f s", name, timings[name])
        return out

    cfg.secret()  # fail closed: without the key nothing is read or written
    # a broken SQL model graph or definition stops the run before any file is read
    models.check_models(models.load_definitions(overrides=cfg.definitions))
    if cfg.skip_unchanged:
        previous = unchanged_since_last_run(cfg)
        if previous:
            raise RunSkipped(
                f"no landing file or definition changed since run {previous}; nothing to do"
            )
    children = prestart_reports(cfg) if report_children else contextlib.nullcontext()
    with warehouse_lock(cfg), run_log(cfg), children:
        log.info("run %s: landing %s", cfg.run_id, cfg.landing)
        result = timed("ingest")
        log.info(
            "%d files: %d rows read, %d loaded, %d quarantined",
            result.files.height,
            int(result.files["rows_read"].sum()),
            int(result.files["rows_loaded"].sum()),
            int(result.files["rows_quarantined"].sum()),
        )
        log_reused(cfg, result)
        loaded = timed("load", result)
        log.info("staged rows per table: %s", loaded)
        timed("extract_text", result)
        release_tables(result)
        timed("transform", result)
        try:
            gate_outcome = timed("gate", result)
        except PublicationRefused as refused:
            # the live database is untouched; the report says why and how to override
            outcome = gate_summary(refused.findings, [], refused.live_exists)
            refused.report_dir = timed("report", result, timings, outcome)
            raise
        timed("publish", result)
        report_dir = timed("report", result, timings, gate_outcome)
    summary = RunSummary(
        run_id=cfg.run_id,
        report_dir=report_dir,
        analytics_path=cfg.analytics_path,
        needs_attention=bool(result.needs_attention),
        files=result.files.height,
        rows_loaded=loaded,
        timings=timings,
        gate=gate_outcome,
    )
    return summary, result


def query(path: Path, sql: str) -> list[tuple]:
    """Run one read-only query against a database file (for tests and the CLI)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)

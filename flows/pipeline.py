"""Prefect flow: the pipeline's stages as tasks. Scheduling, retries and artifacts only.

All logic lives in `blinaetl.pipeline`; each task calls one stage function. Tasks that receive
data frames use `cache_policy=NO_CACHE` (hashing frames for the cache key is slow; stack-notes).
Log lines carry counts and file names only, never values from the extracts.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from flows.local_server import use_running_local_server

use_running_local_server()  # before Prefect reads its settings: a running server beats a temporary one

from prefect import flow, get_run_logger, task, unmapped  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.states import Completed  # noqa: E402

from blinaetl import pipeline as core  # noqa: E402
from blinaetl.config import load_run_config  # noqa: E402
from blinaetl.ingest import landing as ingestion  # noqa: E402
from blinaetl.ingest.cache import FileCache  # noqa: E402
from blinaetl.privacy import PatientKeys  # noqa: E402

IO_RETRIES: dict[str, Any] = {"retries": 2, "retry_delay_seconds": [2, 10]}


@task(name="plan-files", cache_policy=NO_CACHE, **IO_RETRIES)
def plan_files(cfg: core.RunConfig) -> ingestion.Plan:
    return ingestion.plan_files(cfg.landing, cfg.sources_dir, cfg.contracts_dir, cfg.definitions)


@task(name="read-file", cache_policy=NO_CACHE, **IO_RETRIES)
def read_file(job: ingestion.FileJob, plan: ingestion.Plan, run_id: str) -> Any:
    return ingestion.read_file(job, plan, run_id)


@task(name="validate", cache_policy=NO_CACHE)
def validate(
    plan: ingestion.Plan,
    outcomes: list[Any],
    cfg: core.RunConfig,
    keys: PatientKeys,
    cache: FileCache,
) -> Any:
    replies = core.site_replies(cfg)
    result = ingestion.validate_files(
        plan, outcomes, keys, replies.accepted, store=cache, run_id=cfg.run_id
    )
    result.replies = replies
    get_run_logger().info(
        "read %d files: %d rows loaded, %d quarantined",
        result.files.height,
        int(result.files["rows_loaded"].sum()),
        int(result.files["rows_quarantined"].sum()),
    )
    return result


def ingest(cfg: core.RunConfig) -> Any:
    """Plan, read every file as its own task (in parallel on the task runner), validate.

    `run_pipeline` has already checked the key (fail closed) before calling this stage.
    """
    if not cfg.landing.is_dir():
        raise FileNotFoundError(f"landing folder {cfg.landing} does not exist")
    ingestion.preload_validation()
    plan = plan_files(cfg)
    # unchanged files come from the per-file cache, read and written here in the flow's own
    # process (the restricted folder), so only the other files are read by the task runner
    cache = ingestion.open_file_cache(
        plan, cfg.file_cache_dir, cfg.secret(), cfg.definitions, cfg.full
    )
    found = ingestion.cached_outcomes(plan, cache, cfg.run_id)
    todo = [job for job, hit in zip(plan.jobs, found, strict=True) if hit is None]
    futures = iter(read_file.map(todo, unmapped(plan), unmapped(cfg.run_id)) if todo else [])
    outcomes = [hit if hit is not None else next(futures).result() for hit in found]
    ingestion.store_outcomes(plan, outcomes, cache, prune=False)
    # as `ingest_landing`: each pair hashed once (the last run's keys kept), each validated
    # group kept for the next run, and the unused entries dropped once all is validated
    keys = PatientKeys(cfg.secret(), cache.known_keys(cfg.secret()))
    try:
        result: Any = validate(plan, outcomes, cfg, keys, cache)
    finally:
        cache.join_writers()
    ingestion.keep_for_next_run(cache, keys)
    result.reused = sorted(cache.reused)
    return result


@task(name="load-restricted", cache_policy=NO_CACHE)
def load(cfg: core.RunConfig, result: Any) -> dict[str, int]:
    counts = core.stage_load(cfg, result)
    get_run_logger().info("staged rows per table: %s", counts)
    return counts


@task(name="extract-em-mentions", cache_policy=NO_CACHE)
def extract_text(cfg: core.RunConfig, result: Any) -> int:
    n = core.stage_extract_text(cfg, result)
    get_run_logger().info("EM site mentions found: %d", n)
    return n


@task(name="harmonize-and-curate", cache_policy=NO_CACHE)
def transform(cfg: core.RunConfig, result: Any = None) -> dict:
    models = core.stage_transform(cfg, result)
    get_run_logger().info("SQL models run: %d", sum(len(v) for v in models.values()))
    return models


@task(name="publish-gate", cache_policy=NO_CACHE)
def gate(cfg: core.RunConfig, result: Any) -> dict[str, Any]:
    """No retries: a refusal is an answer, not a transient failure."""
    outcome = core.stage_gate(cfg, result)
    for finding in outcome["accepted"]:
        get_run_logger().warning("publish gate: accepted %s", finding["token"])
    return outcome


@task(name="publish-analytics", cache_policy=NO_CACHE, **IO_RETRIES)
def publish(cfg: core.RunConfig, result: Any) -> Path:
    path = core.stage_publish(cfg, result)
    get_run_logger().info("published %s", path)
    return path


@task(name="write-report", cache_policy=NO_CACHE, **IO_RETRIES)
def report(
    cfg: core.RunConfig,
    result: Any,
    timings: dict[str, float],
    gate_outcome: dict[str, Any] | None = None,
) -> Path:
    return core.stage_report(cfg, result, timings, gate_outcome)


def _run_name() -> str:
    return f"blinaetl-{dt.datetime.now(dt.UTC):%Y-%m-%d-%H%M%S}"


def _summary_markdown(summary: core.RunSummary, result: Any) -> str:
    """The run's artifact: verdict, publish gate, report link, query counts, files (no values)."""
    from blinaetl.reports.roundtrip import listing_counts

    report = (summary.report_dir / "index.html").resolve()
    counts = listing_counts(summary.report_dir)
    gate = summary.gate or {}
    if gate.get("published", True):
        accepted = [f.get("token") or f.get("rule") for f in gate.get("accepted") or []]
        gate_text = "passed: the new database was published" + (
            f" (drops accepted: {', '.join(str(a) for a in accepted)})" if accepted else ""
        )
    else:
        refused = "; ".join(str(f.get("rule")) for f in gate.get("refused") or [])
        gate_text = f"refused: {refused}; the last published database stays live"
    status = ", ".join(f"{n} {s}" for s, n in counts["status"].items())
    by_sender = ", ".join(f"{k} {n}" for k, n in counts["open_by_sender"].items()) or "none"
    lines = [
        f"## blinaetl run `{summary.run_id}`",
        "",
        f"Needs attention: **{'yes' if summary.needs_attention else 'no'}**",
        f"Publish gate: {gate_text}",
        f"Report: [{report.name}]({report.as_uri()}) (`{summary.report_dir / 'index.html'}`)",
        f"Queries: {status}; open by site: {by_sender}",
        "",
        "| file | table | read | loaded | quarantined | status |",
        "|---|---|---:|---:|---:|---|",
    ]
    for f in result.files.sort("path").iter_rows(named=True):
        lines.append(
            f"| `{f['path']}` | {f['table_name'] or ''} | {f['rows_read']} | "
            f"{f['rows_loaded']} | {f['rows_quarantined']} | {f['status']} |"
        )
    return "\n".join(lines)


@flow(name="blinaetl-pipeline", flow_run_name=_run_name, log_prints=False)
def pipeline_flow(
    landing: str = "demo/landing",
    warehouse: str = "warehouse",
    reports: str = "reports",
    demo: bool = False,
    definitions: dict[str, Any] | None = None,
    config: str | None = None,
    skip_unchanged: bool = False,
    date_shift: bool = False,
    secret_block: str | None = None,
    sources: str | None = None,
    max_patient_drop_pct: float = 10.0,
    accept_drop: list[str] | None = None,
    full: bool = False,
    gx: bool = True,
    study_report: bool = True,
) -> Any:
    """Ingest, validate, load, harmonize, curate, publish and report one landing folder.

    `config` names a run-config YAML (see config/demo.yaml) whose values replace the others.
    `gx=False` leaves out the Great Expectations checkpoint and its Data Docs (the report
    stage's slowest part; the steward report then says the checkpoint was not run);
    `study_report=False` leaves out study_report.html (and the steward report's link to it).
    Final state: `Completed` when published and clean; `Completed` named "Needs attention"
    when published with files or checks for a steward; `Failed` with the gate's reasons when
    the publish gate refused publication (the last published database stays live).
    """
    settings: dict[str, Any] = {
        "landing": landing,
        "warehouse": warehouse,
        "reports": reports,
        "demo": demo,
        "definitions": definitions or {},
        "skip_unchanged": skip_unchanged,
        "date_shift": date_shift,
        "secret_block": secret_block,
        "sources": sources,
        "max_patient_drop_pct": max_patient_drop_pct,
        "accept_drop": accept_drop or [],
        "full": full,
        "gx": gx,
        "study_report": study_report,
    }
    if config:
        settings |= load_run_config(Path(config))
    cfg = core.RunConfig(
        landing=Path(settings["landing"]),
        warehouse=Path(settings["warehouse"]),
        reports=Path(settings["reports"]),
        demo=bool(settings["demo"]),
        definitions=settings["definitions"] or {},
        skip_unchanged=bool(settings["skip_unchanged"]),
        date_shift=bool(settings["date_shift"]),
        secret_block=settings["secret_block"] or None,
        sources_dir=Path(settings["sources"]) if settings.get("sources") else None,
        max_patient_drop_pct=float(settings["max_patient_drop_pct"]),
        accept_drop=tuple(settings["accept_drop"] or ()),
        full=bool(settings["full"]),
        gx=bool(settings["gx"]),
        study_report=bool(settings["study_report"]),
    )
    try:
        summary, result = core.run_pipeline(
            cfg,
            stages={
                "ingest": ingest,
                "load": load,
                "extract_text": extract_text,
                "transform": transform,
                "gate": gate,
                "publish": publish,
                "report": report,
            },
        )
    except core.RunSkipped as skipped:
        get_run_logger().info("%s", skipped)
        return {"skipped": True, "reason": str(skipped)}
    create_markdown_artifact(
        key="blinaetl-run-summary",
        markdown=_summary_markdown(summary, result),
        description="blinaetl run summary",
    )
    if summary.needs_attention:
        return Completed(
            name="Needs attention",
            message="published; files or checks need a steward's attention (see the report)",
            data=summary.as_dict(),
        )
    return summary.as_dict()


def with_task_runner(dask_address: str | None = None, dask_workers: int | None = None) -> Any:
    """The flow on a Dask cluster (an address, or a local cluster of n workers), else as is."""
    address = dask_address or os.environ.get("BLINAETL_DASK_ADDRESS")
    if not address and not dask_workers:
        return pipeline_flow
    from prefect_dask import DaskTaskRunner

    if address:
        runner = DaskTaskRunner(address=address)
    else:
        runner = DaskTaskRunner(
            cluster_kwargs={"n_workers": dask_workers, "threads_per_worker": 1, "processes": True}
        )
    # Prefect annotates `task_runner` as TaskRunner[PrefectFuture[Any]], and TaskRunner is
    # invariant in its future type, so mypy refuses prefect-dask's documented runner
    # (a TaskRunner[PrefectDaskFuture]) here
    return pipeline_flow.with_options(task_runner=runner)  # type: ignore[arg-type]


if __name__ == "__main__":
    pipeline_flow()

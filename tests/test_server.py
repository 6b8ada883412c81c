"""A real Prefect server on loopback: the scheduled deployment, a triggered run, Dask workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest

pytestmark = pytest.mark.server

DEPLOYMENT = "blinaetl-pipeline/nightly"
CHECK = r"""
import json
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment

with get_client(sync_client=True) as client:
    dep = client.read_deployment_by_name("blinaetl-pipeline/nightly")
    schedules = [{"cron": s.schedule.cron, "active": s.active} for s in dep.schedules]
    paused = dep.paused
run = run_deployment(name="blinaetl-pipeline/nightly", timeout=300, poll_interval=2)
print(json.dumps({"schedules": schedules, "paused": paused, "state": run.state.type.value}))
"""
DASK_RUN = r"""
import json, sys
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from flows.pipeline import with_task_runner

landing, wh, rp = sys.argv[1:4]
flow = with_task_runner(dask_workers=2)
state = flow(landing=landing, warehouse=wh, reports=rp, demo=True, return_state=True)
flow_run_id = state.state_details.flow_run_id
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
with get_client(sync_client=True) as client:
    runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    read_tasks = [r for r in runs if r.name.startswith("read-file")]
    arts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["blinaetl-run-summary"])))
    artifact = next((a.data for a in arts if a.flow_run_id == flow_run_id), None)
print(json.dumps({"state": state.type.value, "runner": type(flow.task_runner).__name__, "read_tasks": len(read_tasks), "completed": sum(r.state.is_completed() for r in read_tasks), "artifact": artifact, "flow_run_id": str(flow_run_id)}))
"""


def _deployment(api: str) -> dict | None:
    """The deployment as the server's REST API gives it (the route `read_deployment_by_name`
    of Prefect's client reads), or None while it is not registered: asked from this process,
    not from a child that imports Prefect's client (2-3 s CPU a probe)."""
    flow_name, name = DEPLOYMENT.split("/")
    try:
        with urllib.request.urlopen(f"{api}/deployments/name/{flow_name}/{name}", timeout=10) as r:
            found: dict = json.load(r)
            return found
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _wait_for_deployment(api: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        if _deployment(api) is not None:
            return
        time.sleep(2)  # as often as before: the server is also answering flows.serve
    raise TimeoutError("the deployment was not registered in time")


def _patients(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM curated.patients").fetchone()[0]
    finally:
        con.close()


def test_scheduled_deployment_served_and_triggered(tmp_path, demo_cohort, prefect_server):
    cohort = demo_cohort
    api, env = prefect_server
    config = tmp_path / "run.yaml"
    config.write_text(
        f"landing: {cohort / 'landing'}\nwarehouse: {tmp_path / 'wh'}\nreports: {tmp_path / 'rp'}\ndemo: true\n"
        # the serving and scheduling are tested here; the checkpoint is the Dask run's, the
        # study report the demo run's (tests/test_study_report.py, same cohort)
        "gx: false\nstudy_report: false\n"
    )
    port = api.rsplit(":", 1)[1].split("/")[0]
    serve = subprocess.Popen(
        [sys.executable, "-m", "flows.serve", "--port", port, "--config", str(config)],
        env={k: v for k, v in env.items() if k != "PREFECT_API_URL"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        _wait_for_deployment(api, time.monotonic() + 120)
        out = subprocess.run(
            [sys.executable, "-c", CHECK],
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["schedules"] == [{"cron": "0 2 * * *", "active": True}]
        assert result["paused"] is False
        assert result["state"] == "COMPLETED"
        assert _patients(tmp_path / "wh" / "blina.duckdb") == 65
        # `gx: false` in the run config reached the served run: no checkpoint, no Data Docs
        (report,) = (tmp_path / "rp").glob("*/index.html")
        assert "Not run for this report." in report.read_text()
        assert not (report.parent / "data_docs").exists()
        assert not (report.parent / "study_report.html").exists()  # `study_report: false` too
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGINT)
            try:
                serve.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
    assert "starting a Prefect server" not in (serve.stdout.read() if serve.stdout else ""), (
        "reused the running server"
    )
    # not paused on shutdown
    deployment = _deployment(api)
    assert deployment is not None and deployment["paused"] is False


def test_flow_on_a_dask_local_cluster_with_two_workers(tmp_path, demo_cohort, prefect_server):
    cohort = demo_cohort
    _, env = prefect_server
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            DASK_RUN,
            str(cohort / "landing"),
            str(tmp_path / "wh"),
            str(tmp_path / "rp"),
        ],
        env={**env, "PREFECT_LOGGING_LEVEL": "INFO"},  # ship the flow's INFO logs to the server
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runner"] == "DaskTaskRunner"
    assert result["state"] == "COMPLETED"
    n_files = len([p for p in (cohort / "landing").rglob("*") if p.is_file()])
    assert result["read_tasks"] == result["completed"] == n_files
    assert _patients(tmp_path / "wh" / "blina.duckdb") == 65
    # as `blinaetl run`: the run's patient keys and each validated group of tables kept in the
    # restricted folder for the next run (patients+outcomes+treatments, then one per table)
    restricted = tmp_path / "wh" / "restricted"
    assert len(list((restricted / "patient_keys").iterdir())) == 1
    assert len(list((restricted / "validated").iterdir())) == 5
    # the flow's default (gx=True): the checkpoint ran, from the report task on a Dask worker
    (report,) = (tmp_path / "rp").glob("*/index.html")
    assert "Not run for this report." not in report.read_text()
    assert (report.parent / "data_docs" / "index.html").is_file()
    # the run's Prefect artifact: a summary table and the report path, and no identifier
    artifact = result["artifact"]
    assert "| file | table | read | loaded | quarantined | status |" in artifact
    assert "index.html" in artifact
    ids = {
        v for v in (cohort / "truth" / "identifiers.txt").read_text().splitlines() if len(v) >= 5
    }
    assert not [i for i in ids if i in artifact]
    # the run's logs as the Prefect server stores them (the request of the client's
    # `read_logs`, from this process): present, and no identifier
    body = {"logs": {"flow_run_id": {"any_": [result["flow_run_id"]]}}, "sort": "TIMESTAMP_ASC"}
    request = urllib.request.Request(
        f"{env['PREFECT_API_URL']}/logs/filter",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        messages = [entry["message"] for entry in json.load(r)]
    assert any("rows loaded" in m for m in messages), messages[:5]
    joined = "\n".join(messages)
    assert not [i for i in ids if i in joined]


SECRET_BLOCK_RUN = r"""
import json, sys
from pathlib import Path
from prefect.blocks.system import Secret
from blinaetl.pipeline import RunConfig, run_pipeline
from blinaetl.privacy import MissingSecretError, resolve_secret

landing, wh, rp, value = sys.argv[1:5]
Secret(value=value).save("blinaetl-test-key", overwrite=True)
out = {"resolved": resolve_secret(demo=False, secret_block="blinaetl-test-key").decode()}
try:
    resolve_secret(demo=False, secret_block="no-such-block")
except MissingSecretError as exc:
    out["missing"] = str(exc)
cfg = RunConfig(landing=Path(landing), warehouse=Path(wh), reports=Path(rp), demo=False,
                secret_block="blinaetl-test-key", gx=False, study_report=False)
summary, _ = run_pipeline(cfg)
out["analytics"] = str(summary.analytics_path)
print(json.dumps(out))
"""


def test_key_from_a_prefect_secret_block(tmp_path, demo_cohort, prefect_server):
    """Outside demo mode, with no environment key, the run takes its key from a Secret block."""
    import polars as pl

    from blinaetl.privacy import patient_keys

    cohort = demo_cohort
    _, env = prefect_server
    env = {k: v for k, v in env.items() if k != "BLINAETL_SECRET_KEY"}
    value = "block-held-key-" + "7f" * 16
    out = subprocess.run(
        [sys.executable, "-c", SECRET_BLOCK_RUN, str(cohort / "landing"), str(tmp_path / "wh"),
         str(tmp_path / "rp"), value],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["resolved"] == value
    assert "no-such-block" in doc["missing"] and value not in doc["missing"]
    assert "Nothing was read or written" in doc["missing"]
    truth = pl.read_csv(cohort / "truth" / "patients.csv", infer_schema=False)
    expected = set(patient_keys(truth["site"], truth["mrn"], value.encode()))
    con = duckdb.connect(doc["analytics"], read_only=True)
    try:
        published = {
            r[0] for r in con.execute("SELECT patient_key FROM curated.patients").fetchall()
        }
    finally:
        con.close()
    assert published == expected, "keys are the HMAC under the block's secret"

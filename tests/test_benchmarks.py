"""The benchmark scripts run and report what issue #10 asks for (behaviour, never timings)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_pipeline_benchmark_reports_ratio_memory_scaling_and_targets(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "pipeline_benchmark.py"),
            "--sizes",
            "150",
            "300",
            "--repeat",
            "2",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(out.read_text())
    small, large = doc["results"]
    assert [small["patients"], large["patients"]] == [150, 300]
    for r in (small, large):
        assert len(r["core_runs_s"]) == 2 and len(r["floor_runs_s"]) == 2
        assert r["total_s"] == min(r["core_runs_s"]), "the fastest core run counts"
        assert r["floor_s"] == min(r["floor_runs_s"])
        assert math.isclose(r["ratio"], r["total_s"] / r["floor_s"])
        assert math.isclose(r["ratio_file"], r["total_s"] / r["floor_file_s"])
        assert r["peak_rss_bytes"] > 50 * 2**20
        assert r["rows_read"] > 0
        assert set(r["stages_s"]) >= {"ingest", "load", "transform", "publish"}
    assert math.isclose(
        large["scaling_exponent"],
        math.log(large["total_s"] / small["total_s"]) / math.log(2),
    )
    assert [t["target"] for t in doc["targets"]] == [
        "core at most 4x the floor",
        "peak RSS at most 3 GiB",
        "scaling exponent at most 1.1",
    ]
    assert doc["targets"][0]["met"] == (large["ratio"] <= 4.0)
    assert "target: core at most 4x the floor:" in run.stdout
    header = run.stdout.splitlines()[0]
    for column in ("core_s", "floor_s", "ratio", "rss_MiB", "exp"):
        assert column in header

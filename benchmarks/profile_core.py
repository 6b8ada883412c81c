"""Profile the pipeline core (ingest to publish) with pyinstrument, per stage.

    .venv/bin/python benchmarks/profile_core.py --patients 100000
    .venv/bin/python benchmarks/profile_core.py --landing path/to/landing

Runs the pipeline once with the profiler attached (no Prefect server, no GX, no steward report)
and writes the call tree as text and HTML to `benchmarks/out/profile_core.{txt,html}`; prints the
stage times and the top of the tree. pyinstrument samples the main thread: the file readers,
the table validators and the staging appends run on worker threads and show as the main
thread waiting for them (`result_iterator`); `docs/performance.md` has what they do. The
profiler slows Python-heavy parts, so read shares, not seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--landing", type=Path, help="profile this landing folder instead")
    ap.add_argument("--interval", type=float, default=0.005, help="sampling interval, seconds")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "profile_core")
    args = ap.parse_args(argv)

    import pyinstrument

    from blinaetl.pipeline import RunConfig, run_pipeline

    with tempfile.TemporaryDirectory(prefix="blinaetl-profile-") as tmp:
        work = Path(tmp)
        landing = args.landing
        if landing is None:
            from blinaetl.synth import generate

            generate(work / "cohort", n_patients=args.patients, seed=args.seed)
            landing = work / "cohort" / "landing"
        cfg = RunConfig(
            landing=landing,
            warehouse=work / "warehouse",
            reports=work / "reports",
            demo=True,
            gx=False,
        )
        profiler = pyinstrument.Profiler(interval=args.interval)
        profiler.start()
        summary, _ = run_pipeline(cfg, stages={"report": lambda *_a: None})
        profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".txt").write_text(text)
    args.out.with_suffix(".html").write_text(profiler.output_html())
    stages = {k: v for k, v in summary.timings.items() if k != "report"}
    # the sum of the stages: pipeline_benchmark.py's core_s also counts the time between them
    print(
        " ".join(f"{k}={v:.2f}s" for k, v in stages.items()), f"stages={sum(stages.values()):.2f}s"
    )
    print("\n".join(text.splitlines()[:60]))
    print(f"wrote {args.out.with_suffix('.txt')} and .html", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

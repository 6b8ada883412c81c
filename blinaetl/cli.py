"""The `blinaetl` command line.

    blinaetl synth   generate a synthetic cohort (landing extracts + ground truth)
    blinaetl run     run the pipeline on a landing folder (Prefect flow, or --engine core)
    blinaetl sql     query the published analytics database, read-only
    blinaetl report  write the reproduction report of the seed study's analyses
    blinaetl dict    write the data dictionary of the analytics database
    blinaetl check-mapping  validate a source mapping, preview what it makes of a landing folder
    blinaetl queries list the open queries of the latest run by site (pseudonymous)

Exit status, every command: 0 done; 1 failed (for `run`: the last published database is
unchanged; for `sql`: a query failed); 2 bad usage or configuration (an unknown option or value,
a missing file or folder, no pseudonymisation key, a bad mapping, contract or definition).
`check-mapping`: 3 a file would be rejected or rows quarantined.
`run` only: 3 published, but files or checks need a steward's attention (see the report);
4 publication refused by the publish gate: the new build loses a site, table or source, too many
patients, or a whole file, and the last published database stays live (the report says why and
how to override with --accept-drop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from blinaetl.synth.hardcases import HARD_CASE_RATES, parse_hard_case

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ATTENTION, EXIT_REFUSED = 0, 1, 2, 3, 4
EXIT_STATUS_HELP = (
    "Exit status: 0 done; 1 failed; 2 bad usage or configuration (option, missing file, no key)."
)

console = Console(stderr=True, highlight=False)


def _progress(start: float):
    def show(message: str) -> None:
        console.print(f"[dim]{time.perf_counter() - start:7.1f}s[/dim]  {message}")

    return show


def _at_least(minimum: int, why: str = ""):
    """argparse type: a whole number of at least `minimum` (a clear message otherwise, exit 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}{why}, got {value}")
        return value

    return parse


# the generator needs every laboratory and site to receive patients; checked for 10, 12 and
# 25 seeds each (smaller cohorts fail on some seeds)
MIN_SYNTH_PATIENTS = 10


def _hard_case(text: str) -> tuple[str, float]:
    """argparse type of --hard-case: NAME=RATE, a known hard case and a rate from 0 to 1."""
    try:
        return parse_hard_case(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _definitions(path: str | None) -> dict:
    if not path:
        return {}
    import yaml

    doc: dict[str, Any] = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    values = doc.get("definitions", doc)
    return {k: (v["value"] if isinstance(v, dict) else v) for k, v in values.items()}


def cmd_synth(args: argparse.Namespace) -> int:
    from blinaetl.synth import generate

    start = time.perf_counter()
    with console.status(f"generating {args.patients} patients ..."):
        summary = generate(
            Path(args.out),
            n_patients=args.patients,
            seed=args.seed,
            progress=_progress(start),
            hard_cases=not args.no_hard_cases,
            hard_case_rates=dict(args.hard_case) or None,
        )
    console.print(
        f"wrote {args.out}/landing and {args.out}/truth in {time.perf_counter() - start:.1f}s"
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from blinaetl import pipeline
    from blinaetl.config import RunConfig

    cfg_kwargs = {
        "landing": Path(args.landing),
        "warehouse": Path(args.warehouse),
        "reports": Path(args.reports),
        "demo": args.demo,
        "definitions": _definitions(args.definitions),
        "date_shift": args.date_shift,
        "secret_block": args.secret_block,
        "sources_dir": Path(args.sources) if args.sources else None,
        "max_patient_drop_pct": args.max_patient_drop_pct,
        "accept_drop": tuple(args.accept_drop or ()),
        "full": args.full,
        "gx": args.gx,
        "study_report": args.study_report,
    }
    if args.skip_unchanged:
        from blinaetl.ingest.fingerprint import unchanged_since_last_run

        previous = unchanged_since_last_run(RunConfig(**cfg_kwargs))
        if previous:
            console.print(f"nothing changed since run {previous}: skipped (--skip-unchanged)")
            return EXIT_OK
    start = time.perf_counter()
    from blinaetl.warehouse.gate import PublicationRefused

    try:
        if args.engine == "prefect":
            summary = _run_prefect_flow(args, cfg_kwargs)
        else:
            cfg = RunConfig(**cfg_kwargs)
            with console.status("running the pipeline ..."):
                summary = pipeline.run_pipeline(cfg, progress=_progress(start))[0].as_dict()
    except PublicationRefused as refused:
        # plain lines (no wrapping or cropping by the console): the override must stay whole
        print(f"blinaetl run: {refused}", file=sys.stderr)
        if refused.report_dir is not None:
            print(f"report    {Path(refused.report_dir) / 'index.html'}", file=sys.stderr)
        print("exit status 4: publication refused", file=sys.stderr)
        return EXIT_REFUSED
    report = Path(summary["report_dir"]) / "index.html"
    console.print(f"published {summary['analytics_path']}")
    console.print(f"report    {report}")
    console.print(f"took      {time.perf_counter() - start:.1f}s")
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    if summary["needs_attention"]:
        console.print(
            "[bold yellow]needs attention:[/bold yellow] some files or checks need a "
            "steward's review; see the report (exit status 3)"
        )
        return EXIT_ATTENTION
    return EXIT_OK


def _run_prefect_flow(args: argparse.Namespace, cfg_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The run as the Prefect flow (the `prefect` engine); its summary."""
    console.print(
        "starting the Prefect flow (a local server that answers, else a temporary one, "
        "if none is set) ..."
    )
    from blinaetl.engines import load_engine, prestart_engine

    # Prefect's temporary server (when the run needs one) starts before Prefect is
    # imported, on the other core, instead of after (flows.local_server)
    server = prestart_engine("prefect")
    flow = load_engine("prefect")(args.dask_address, args.dask_workers)
    if server is not None:
        server.wait_ready()
        console.print(f"Prefect: temporary server on {server.api}", soft_wrap=True)
    summary: dict[str, Any] = flow(
        landing=str(cfg_kwargs["landing"]),
        warehouse=str(cfg_kwargs["warehouse"]),
        reports=str(cfg_kwargs["reports"]),
        demo=args.demo,
        definitions=cfg_kwargs["definitions"],
        date_shift=args.date_shift,
        secret_block=args.secret_block,
        sources=args.sources,
        max_patient_drop_pct=args.max_patient_drop_pct,
        accept_drop=list(args.accept_drop or ()),
        full=args.full,
        gx=args.gx,
        study_report=args.study_report,
    )
    return summary


def cmd_sql(args: argparse.Namespace) -> int:
    from blinaetl.warehouse.database import open_analytics

    con = open_analytics(Path(args.db))
    ok = True
    try:
        if not args.query:
            console.print(f"{args.db} (read-only). End each query with ';', Ctrl-D to quit.")
            buffer = ""
            for line in sys.stdin:
                buffer += line
                if buffer.strip().endswith(";"):
                    ok = _print_query(con, buffer) and ok
                    buffer = ""
            if buffer.strip():
                ok = _print_query(con, buffer) and ok
        else:
            ok = _print_query(con, args.query)
    finally:
        con.close()
    return EXIT_OK if ok else EXIT_FAILED


def _print_query(con, sql: str) -> bool:
    """Run one query and print its rows as CSV; False (and the error on stderr) if it failed."""
    import duckdb

    try:
        rel = con.sql(sql)
        if rel is not None:
            print(rel.pl().write_csv(separator=","), end="")
    except duckdb.Error as exc:
        console.print(f"[red]blinaetl sql: {exc}[/red]")
        return False
    return True


def cmd_report(args: argparse.Namespace) -> int:
    from blinaetl.reports.study import write_study_report
    from blinaetl.warehouse.database import open_analytics

    open_analytics(Path(args.db)).close()  # a missing database: a clear message, exit 2
    path, _ = write_study_report(Path(args.db), Path(args.out))
    console.print(f"wrote {path}")
    return EXIT_OK


def cmd_dict(args: argparse.Namespace) -> int:
    from blinaetl.reports.dictionary import write_data_dictionary
    from blinaetl.warehouse.database import open_analytics

    open_analytics(Path(args.db)).close()  # a missing database: a clear message, exit 2
    out = write_data_dictionary(Path(args.db), Path(args.out))
    console.print(f"wrote {out}")
    return EXIT_OK


def cmd_check_mapping(args: argparse.Namespace) -> int:
    from blinaetl.ingest.check import check_mapping, render

    check = check_mapping(
        Path(args.mapping),
        Path(args.landing) if args.landing else None,
        rows=args.rows,
        show_identifiers=args.show_identifiers,
    )
    print(render(check))
    return EXIT_ATTENTION if check.needs_attention else EXIT_OK


def cmd_queries(args: argparse.Namespace) -> int:
    from blinaetl.reports.roundtrip import open_queries_text

    text, n = open_queries_text(
        Path(args.reports), site=args.site, run_id=args.run, as_json=args.json
    )
    print(text)
    return EXIT_ATTENTION if (n and args.exit_code) else EXIT_OK


def add_synth_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `synth` subcommand: its help and arguments."""
    p = sub.add_parser(
        "synth",
        help="generate a synthetic cohort with ground truth",
        description=(
            "Generate a synthetic cohort calibrated to the seed study: site extracts in "
            "OUT/landing (two clinical sites, two flow laboratories, imaging reports, with "
            "documented defects) and the ground truth in OUT/truth."
        ),
        epilog=EXIT_STATUS_HELP,
    )
    p.add_argument(
        "--patients",
        type=_at_least(MIN_SYNTH_PATIENTS, " (every site and laboratory needs patients)"),
        default=65,
        help=f"number of patients, at least {MIN_SYNTH_PATIENTS} (default 65)",
    )
    p.add_argument("--seed", type=int, default=2017, help="random seed (default 2017)")
    p.add_argument("--out", default="demo", help="output folder (default ./demo)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    hard = p.add_mutually_exclusive_group()
    defaults = ", ".join(f"{name} ({rate:g})" for name, rate in HARD_CASE_RATES.items())
    hard.add_argument(
        "--hard-case",
        action="append",
        type=_hard_case,
        default=[],
        metavar="NAME=RATE",
        help=(
            "plant hard case NAME among the patients it can apply to at RATE (a number from 0 "
            "to 1) instead of its default; repeatable, the last rate given for a name wins. "
            "A case with a rate above 0 is planted at least once when any patient is eligible. "
            f"Hard cases (default rate): {defaults}. See docs/derivations.md."
        ),
    )
    hard.add_argument(
        "--no-hard-cases",
        action="store_true",
        help="plant no hard case (every rate 0)",
    )
    p.set_defaults(func=cmd_synth)


def add_rerun_options(p: argparse.ArgumentParser) -> None:
    """`run`'s options for a run after an earlier one: skip it, or read every file again."""
    p.add_argument(
        "--skip-unchanged",
        action="store_true",
        help="do nothing (exit 0) when no landing file or definition changed since the last run",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="read every landing file again: take no unchanged file from the per-file cache of "
        "incremental runs (the cache is written afresh)",
    )
    p.add_argument(
        "--no-gx",
        dest="gx",
        action="store_false",
        help="leave out the Great Expectations checkpoint and its Data Docs (the steward report "
        "says it was not run)",
    )
    p.add_argument(
        "--no-study-report",
        dest="study_report",
        action="store_false",
        help="leave out study_report.html",
    )


def add_run_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `run` subcommand: its help and arguments."""
    p = sub.add_parser(
        "run",
        help="run the pipeline on a landing folder",
        description=(
            "Ingest every extract of the landing folder by its source mapping, validate it, "
            "load the restricted database, harmonize and curate in SQL, publish the analytics "
            "database atomically and write the run report. Exit status: 0 clean, 3 published "
            "but needs a steward's attention, 4 publication refused by the publish gate (the "
            "last published database stays live; the report says why and how to override), "
            "2 bad usage or configuration, 1 failed (nothing published)."
        ),
    )
    p.add_argument(
        "--landing", default="demo/landing", help="landing folder (default demo/landing)"
    )
    p.add_argument("--warehouse", default="warehouse", help="database folder (default warehouse)")
    p.add_argument("--reports", default="reports", help="reports folder (default reports)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: use the labelled demo key when BLINAETL_SECRET_KEY is not set",
    )
    p.add_argument(
        "--secret-block",
        help="name of a Prefect Secret block holding the pseudonymisation key "
        "(BLINAETL_SECRET_KEY, when set, wins)",
    )
    p.add_argument(
        "--date-shift",
        action="store_true",
        help="also publish curated.patient_dates: each patient's dates moved by one keyed "
        "shift of up to date_shift_max_days (default 365) days; off by default",
    )
    p.add_argument("--definitions", help="YAML file overriding named definitions")
    p.add_argument(
        "--sources",
        help="folder of the source mappings (*.yaml) to use instead of the bundled ones "
        "(also taken from BLINAETL_SOURCES)",
    )
    p.add_argument(
        "--engine",
        choices=("prefect", "core"),
        default="prefect",
        help="prefect: run as a Prefect flow (default); core: plain Python, no Prefect",
    )
    add_rerun_options(p)
    p.add_argument(
        "--dask-workers",
        type=_at_least(1),
        help="read and map files on a local Dask cluster of this many worker processes",
    )
    p.add_argument(
        "--dask-address",
        help="read and map files on an existing Dask cluster (scheduler address, e.g. tcp://host:8786); "
        "also taken from BLINAETL_DASK_ADDRESS",
    )
    p.add_argument(
        "--max-patient-drop-pct",
        type=float,
        default=10.0,
        metavar="PCT",
        help="publish gate: the largest fall in patients, overall or at one site, against the "
        "published database that is published without --accept-drop (default 10)",
    )
    p.add_argument(
        "--accept-drop",
        action="append",
        metavar="TOKEN",
        help="publish gate: publish although this loss was found (repeatable); TOKEN as the "
        "refusal names it: a site code (SITE01), patients, table:NAME, source:ID or file:PATH",
    )
    p.add_argument("--json", action="store_true", help="print the run summary as JSON on stdout")
    p.set_defaults(func=cmd_run)


def add_sql_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `sql` subcommand: its help and arguments."""
    p = sub.add_parser(
        "sql",
        help="query the analytics database read-only",
        description="Open the analytics database read-only and run a query (or read from stdin).",
        epilog="Exit status: 0 every query ran; 1 a query failed (its error on stderr); "
        "2 bad usage or no database.",
    )
    p.add_argument("query", nargs="?", help="SQL query; omit to read queries from stdin")
    p.add_argument("--db", default="warehouse/blina.duckdb", help="analytics database file")
    p.set_defaults(func=cmd_sql)


def add_report_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `report` subcommand: its help and arguments."""
    p = sub.add_parser(
        "report",
        help="write the reproduction report of the seed study's analyses",
        description=(
            "Recompute the seed study's analyses (Table 1, response by predictor with Fisher's "
            "exact test, EM risk at failure, failure patterns, Kaplan-Meier plots) from the "
            "analytics database and write study_report.html."
        ),
        epilog=EXIT_STATUS_HELP,
    )
    p.add_argument("--db", default="warehouse/blina.duckdb", help="analytics database file")
    p.add_argument("--out", default="reports/study", help="output folder")
    p.set_defaults(func=cmd_report)


def add_dict_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `dict` subcommand: its help and arguments."""
    p = sub.add_parser(
        "dict",
        help="write the data dictionary",
        description="Generate the data dictionary (Markdown) from the table and column comments.",
        epilog=EXIT_STATUS_HELP,
    )
    p.add_argument("--db", default="warehouse/blina.duckdb", help="analytics database file")
    p.add_argument("--out", default="docs/data-dictionary.md", help="output Markdown file")
    p.set_defaults(func=cmd_dict)


def add_check_mapping_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `check-mapping` subcommand: its help and arguments."""
    p = sub.add_parser(
        "check-mapping",
        help="validate a source mapping and preview what it makes of a landing folder",
        description=(
            "Check a source mapping file (every key, against the contracts) and, with "
            "--landing, read each file entry's newest matching file, shape, map and validate "
            "it as a run would, without writing anything, and show the first records. "
            "Exit status: 0 valid (and every file loaded), 2 the mapping is invalid, 3 a file "
            "was rejected, rows would be quarantined or an entry matched no file."
        ),
    )
    p.add_argument("mapping", help="the mapping file (YAML)")
    p.add_argument("--landing", help="landing folder holding the site's files")
    p.add_argument("--rows", type=int, default=5, help="records to show per file (default 5)")
    p.add_argument(
        "--show-identifiers",
        action="store_true",
        help="show MRNs, names, birth dates and accession numbers (masked by default)",
    )
    p.set_defaults(func=cmd_check_mapping)


def add_queries_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `queries` subcommand: its help and arguments."""
    p = sub.add_parser(
        "queries",
        help="list the open queries of the latest run by site",
        description=(
            "List the open queries of a run (the latest under --reports by default), grouped "
            "by site or laboratory: id, status, age, file and row, rule and column. "
            "Pseudonymous: the delivered values and patient references are only in the "
            "site workbooks of the restricted outbox. Exit status: 0 listed (3 with "
            "--exit-code when any query is open), 2 no run report found."
        ),
    )
    p.add_argument("--reports", default="reports", help="reports folder (default reports)")
    p.add_argument("--site", help="only this site or laboratory (e.g. SITE01)")
    p.add_argument("--run", help="the run id (default: the latest run with a query listing)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--exit-code", action="store_true", help="exit 3 when any query is open (for scripts)"
    )
    p.set_defaults(func=cmd_queries)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="blinaetl",
        description=(
            "Validate and harmonize clinical, flow-cytometry and imaging extracts of "
            "blinatumomab-treated R/R B-ALL patients into an analysis-ready DuckDB database."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `blinaetl COMMAND --help` for a command's options. "
        + EXIT_STATUS_HELP
        + " `run` also exits 3 (published, needs attention) and 4 (publication refused).",
    )
    from blinaetl import __version__

    parser.add_argument("--version", action="version", version=f"blinaetl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_synth_command(sub)
    add_run_command(sub)
    add_sql_command(sub)
    add_report_command(sub)
    add_dict_command(sub)
    add_check_mapping_command(sub)
    add_queries_command(sub)
    return parser


def _configuration_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad usage or configuration (exit 2), not a failed run."""
    from blinaetl.config import RunConfigError
    from blinaetl.engines import EngineNotFoundError
    from blinaetl.ingest.sources import MappingError
    from blinaetl.privacy import MissingSecretError
    from blinaetl.validate.contracts import ContractError
    from blinaetl.validate.executor import CheckConfigError

    return (
        FileNotFoundError,
        NotADirectoryError,
        KeyError,
        MissingSecretError,
        MappingError,
        ContractError,
        CheckConfigError,
        EngineNotFoundError,
        RunConfigError,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        console.print("interrupted; the last published database is unchanged")
        return EXIT_FAILED
    except Exception as exc:  # one clear line instead of a traceback; details with --debug
        code = EXIT_USAGE if isinstance(exc, _configuration_errors()) else EXIT_FAILED
        console.print(f"[bold red]blinaetl {args.command}: {exc}[/bold red]")
        if "BLINAETL_DEBUG" in __import__("os").environ:
            console.print_exception()
        return code


if __name__ == "__main__":
    sys.exit(main())

"""Great Expectations: cohort-level expectations on `curated.patients`, with Data Docs per run.

The GX project lives in the repository (`gx/`: expectation suite, validation definition,
checkpoint), generated from `SUITE` by `python -m blinaetl.reports.gx build`. A run copies it into
a scratch folder, validates a pandas frame pulled from the analytics database (GX has no working
DuckDB source here; stack-notes), and copies the rendered Data Docs into the run's report folder.
Results use the SUMMARY format with no partial unexpected values, so no raw value is written.
`import great_expectations` takes seconds: it happens only inside these functions, and in a run
inside a child process of its own (`GxWorker`, `reports/child.py`), started when the run starts so that the import
overlaps the stages before it, and asked for the checkpoint once the database is published.
"""

from __future__ import annotations

import ast
import html
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from blinaetl.reports.child import ReportChild, serve
from blinaetl.resources import resource_root

PROJECT_DIR = "gx"
DATA_SOURCE = "blinaetl_frames"
ASSET = "curated_patients"
CHECKPOINT = "curated_patients_checkpoint"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}

# The suite, declared as data: (expectation class name, keyword arguments).
SUITE: list[tuple[str, dict[str, Any]]] = [
    ("ExpectColumnValuesToBeUnique", {"column": "patient_key"}),
    ("ExpectColumnValuesToNotBeNull", {"column": "patient_key"}),
    # completeness at cohort level
    ("ExpectColumnValuesToNotBeNull", {"column": "best_response"}),
    ("ExpectColumnValuesToNotBeNull", {"column": "cd19_baseline", "mostly": 0.8}),
    ("ExpectColumnValuesToNotBeNull", {"column": "bm_blasts_pct", "mostly": 0.9}),
    # plausibility: the response rate within a plausible band for R/R B-ALL on blinatumomab
    (
        "ExpectColumnMeanToBeBetween",
        {"column": "responder_num", "min_value": 0.2, "max_value": 0.8},
    ),
    # study days are never negative
    ("ExpectColumnValuesToBeBetween", {"column": "os_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "efs_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "rfs_days", "min_value": 0}),
    ("ExpectColumnValuesToBeBetween", {"column": "response_day", "min_value": 1}),
    ("ExpectColumnValuesToBeBetween", {"column": "age_at_start", "min_value": 0, "max_value": 110}),
    # coded columns within their sets
    (
        "ExpectColumnValuesToBeInSet",
        {
            "column": "best_response",
            "value_set": [
                "CR",
                "CRh",
                "CRi",
                "CR_em_not_reassessed",
                "response_not_sustained",
                "hypoplastic",
                "refractory",
                "NE",
            ],
        },
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "cd19_baseline", "value_set": ["negative", "dim", "moderate", "strong"]},
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "cd19_at_failure", "value_set": ["negative", "dim", "moderate", "strong"]},
    ),
    (
        "ExpectColumnValuesToBeInSet",
        {
            "column": "failure_pattern",
            "value_set": ["isolated_marrow", "isolated_em", "combined", "unclassified", "none"],
        },
    ),
    ("ExpectColumnValuesToBeInSet", {"column": "sex", "value_set": ["M", "F", "U"]}),
    (
        "ExpectColumnValuesToBeInSet",
        {"column": "ph_status", "value_set": ["positive", "negative", "unknown"]},
    ),
]


def project_source() -> Path:
    return resource_root() / PROJECT_DIR


def build_project(root: Path) -> Path:
    """(Re)write the file-based GX project under `root/gx` from `SUITE`."""
    import great_expectations as gx

    shutil.rmtree(root / PROJECT_DIR, ignore_errors=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    source = context.data_sources.add_pandas(name=DATA_SOURCE)
    asset = source.add_dataframe_asset(name=ASSET)
    batch = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = gx.ExpectationSuite(name="curated_patients_cohort")
    for name, kwargs in SUITE:
        suite.add_expectation(getattr(gx.expectations, name)(**kwargs))
    suite = context.suites.add(suite)
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name="curated_patients_validation", data=batch, suite=suite)
    )
    context.checkpoints.add(
        gx.Checkpoint(
            name=CHECKPOINT,
            validation_definitions=[validation],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format=RESULT_FORMAT,
        )
    )
    return root / PROJECT_DIR


def run_gx_checkpoint(analytics_path: Path, report_dir: Path) -> dict[str, Any]:
    """Validate curated.patients with the committed checkpoint; Data Docs to report_dir/data_docs."""
    import duckdb

    con = duckdb.connect(str(analytics_path), read_only=True)
    try:
        frame = con.sql(
            "SELECT *, responder::INTEGER AS responder_num FROM curated.patients ORDER BY patient_key"
        ).df()
    finally:
        con.close()
    return validate_frame(frame, report_dir)


def validate_frame(frame: Any, report_dir: Path) -> dict[str, Any]:
    """Run the checkpoint on a pandas frame of curated.patients (plus responder_num)."""
    import logging

    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no usage reporting off this machine
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    scratch = report_dir / "_gx_run"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(
        project_source(), scratch / PROJECT_DIR, ignore=shutil.ignore_patterns("uncommitted")
    )
    try:
        context = gx.get_context(mode="file", project_root_dir=str(scratch))
        # no tqdm bars in the run's output (they bury the stage log lines)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        result = context.checkpoints.get(CHECKPOINT).run(batch_parameters={"dataframe": frame})
        site = scratch / PROJECT_DIR / "uncommitted" / "data_docs" / "local_site"
        target = report_dir / "data_docs"
        shutil.rmtree(target, ignore_errors=True)
        if site.is_dir():
            shutil.copytree(site, target, ignore=shutil.ignore_patterns("static"))
            make_self_contained(target)
        outcomes = []
        for run_result in result.run_results.values():
            for r in run_result.results:
                cfg = r.expectation_config
                # GX types it optional, but a checkpoint run attaches the configuration to every
                # result it returns
                assert cfg is not None, "GX returned a validation result without its expectation"
                outcomes.append(
                    {
                        "expectation": cfg.type,
                        "column": cfg.kwargs.get("column"),
                        "success": bool(r.success),
                    }
                )
        return {
            "success": bool(result.success),
            "evaluated": len(outcomes),
            "failed": [o for o in outcomes if not o["success"]],
            "data_docs": str(target / "index.html") if (target / "index.html").exists() else None,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --- the checkpoint in a child process -----------------------------------------------------


class GxWorker(ReportChild):
    """`python -m blinaetl.reports.gx worker`: imports great_expectations at once, then runs
    `run_gx_checkpoint` on the job it is sent; `result` returns the same summary."""

    def __init__(self) -> None:
        super().__init__("blinaetl.reports.gx", "Great Expectations checkpoint")

    def submit_checkpoint(self, analytics_path: Path, report_dir: Path) -> None:
        # paths as given: the summary names the Data Docs as an in-process checkpoint would
        self.submit(analytics=str(analytics_path), report_dir=str(report_dir))


def _preload() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations  # noqa: F401  (the seconds-long import, before the job arrives)


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    return run_gx_checkpoint(Path(job["analytics"]), Path(job["report_dir"]))


# --- Data Docs that open offline and make no request ----------------------------------------
# GX's pages load Bootstrap, jQuery, bootstrap-table, Vega and Font Awesome from CDNs, a logo from
# S3 whose URL carries the data context id, and fonts and styles from static/. Each page is
# rewritten into one self-contained file: external scripts, styles, fonts and images removed,
# a small stylesheet inlined, and the tables that bootstrap-table would fill from inline data
# written out as plain HTML tables (no script runs at all).

OFFLINE_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
  margin: 0; }
.container-fluid, .container { padding: 0 1rem; } .row { display: flex; flex-wrap: wrap; }
.col-12, .col-md-10, .col-md-12 { flex: 1 1 100%; } .col-md-2 { flex: 0 0 16rem; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0; }
th, td { border: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } .card { border: 1px solid #ddd; border-radius: 4px; margin: .75rem 0;
  padding: .5rem .75rem; } .card-header { font-weight: 600; }
.navbar { background: #f4f4f6; padding: .5rem 1rem; border-bottom: 1px solid #ddd; }
.badge { padding: 0 .35rem; border-radius: 3px; background: #eceff3; }
.text-success { color: #1b5e2c; } .text-danger { color: #8a1c15; } .text-muted { color: #666; }
.alert-danger { background: #fde2e1; } .alert-success { background: #def5e3; }
.invisible, .d-none, .modal, .sticky { display: none; } code { background: #f4f4f6; }
a { color: #1f4e8c; }
"""

_EXTERNAL = r"""(?:https?:)?//"""
_SCRIPT_SRC = re.compile(r"<script\b[^>]*\bsrc=[^>]*>\s*</script>", re.I | re.S)
_INLINE_SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.I | re.S)
_LINK = re.compile(r"<link\b[^>]*>", re.I)
_IMG_EXTERNAL = re.compile(r"<img\b[^>]*\bsrc=[\"']" + _EXTERNAL + r"[^>]*>", re.I | re.S)
_CSS_URL = re.compile(r"url\(\s*['\"]?(?:https?:)?//[^)]*\)", re.I)
_FONT_FACE = re.compile(r"@font-face\s*\{[^}]*\}", re.I)
_IMPORT = re.compile(r"@import[^;]*;", re.I)
_TABLE_CALL = re.compile(
    r"\$\(['\"]#(?P<id>[\w-]+)['\"]\)\.bootstrapTable\(\s*Object\.assign\(\s*\{\s*"
    r"columns:\s*(?P<columns>\[.*?\]),\s*data:\s*(?P<data>\[.*?\]),",
    re.S,
)


def _static_table(columns: list[dict[str, Any]], data: list[dict[str, Any]]) -> str:
    """The table bootstrap-table would have drawn: a header row and one row per record.

    Cell values are GX's own rendered snippets (status icons, run names, links); they hold
    no extract value (SUMMARY results), and any script in them is dropped.
    """
    head = "".join(f"<th>{_strip_scripts(str(c.get('title', '')))}</th>" for c in columns)
    rows = []
    for record in data:
        link = record.get("_table_row_link_path")
        cells = []
        for i, c in enumerate(columns):
            value = _strip_scripts(str(record.get(c.get("field", ""), "")))
            if link and i == 0:
                value = f'<a href="{html.escape(str(link), quote=True)}">{value or "open"}</a>'
            cells.append(f"<td>{value}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"


def _strip_scripts(text: str) -> str:
    return _INLINE_SCRIPT.sub("", _SCRIPT_SRC.sub("", text))


def self_contained_page(page: str) -> str:
    """One Data Docs page rewritten to load nothing: see the comment above."""
    tables: dict[str, str] = {}
    for script in _INLINE_SCRIPT.findall(page):
        for m in _TABLE_CALL.finditer(script):
            try:
                columns = ast.literal_eval(m.group("columns"))
                data = ast.literal_eval(m.group("data"))
            except (ValueError, SyntaxError):
                continue
            tables[m.group("id")] = _static_table(columns, data)
    page = _SCRIPT_SRC.sub("", page)
    page = _INLINE_SCRIPT.sub("", page)
    page = _LINK.sub("", page)
    page = _IMG_EXTERNAL.sub("", page)
    page = _IMPORT.sub("", _FONT_FACE.sub("", _CSS_URL.sub("none", page)))
    for table_id, body in tables.items():

        def fill(m: re.Match[str], body: str = body) -> str:
            return m.group(1) + body + m.group(3)

        page = re.sub(
            r"(<table\b[^>]*\bid=[\"']" + re.escape(table_id) + r"[\"'][^>]*>)(.*?)(</table>)",
            fill,
            page,
            count=1,
            flags=re.S,
        )
    style = f"<style>{OFFLINE_CSS}</style>"
    if "</head>" not in page:
        return style + page
    return page.replace("</head>", style + "</head>", 1)


def make_self_contained(site: Path) -> None:
    """Rewrite every page of a Data Docs site in place; drop its static/ folder."""
    shutil.rmtree(site / "static", ignore_errors=True)
    for page in site.rglob("*.html"):
        page.write_text(self_contained_page(page.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["build"]:
        print(build_project(Path.cwd()))
    elif sys.argv[1:] == ["worker"]:
        sys.exit(serve(_preload, _run_job))
    else:
        print("usage: python -m blinaetl.reports.gx build   (run from the repository root)")

"""The steward-to-site round trip on the demo cohort, end to end over three runs.

Run 1 opens the queries and writes one workbook per site and laboratory. Replies of each kind
are then typed into the workbooks (as a coordinator would, with openpyxl), SITE01 delivers a
new assessments extract with one query's value corrected and another's changed but still
wrong, and run 2 reads it all back. Run 3 checks that a workbook is applied once, that a reply
to a closed query is refused, and that a resolved defect delivered again reopens its query.
Expected outcomes are written from the planted defects (demo/truth/defects.csv), not from the
code's output.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import openpyxl
import polars as pl
import pytest

from blinaetl.pipeline import RunConfig, run_pipeline, stage_load
from blinaetl.reports.audit import QueryAudit
from blinaetl.synth import generate

ASM = "clinical/SITE01/assessments_20260901.csv"
ASM2 = "clinical/SITE01/assessments_20261001.csv"
ASM3 = "clinical/SITE01/assessments_20261101.csv"
IMG = "imaging/SITE01/reports_20260901.csv"


def _run(root: Path, landing: Path) -> tuple[RunConfig, object, object]:
    cfg = RunConfig(
        landing=landing, warehouse=root / "wh", reports=root / "reports", demo=True, gx=False
    )
    validated: dict[str, pl.DataFrame] = {}

    held: list[str] = []

    def load(c: RunConfig, r: object) -> dict[str, int]:
        # the run releases each validated table once staged: the tests keep them here
        validated.update(r.tables)  # type: ignore[attr-defined]
        loaded = stage_load(c, r)
        held.extend(r.tables)  # type: ignore[attr-defined]
        return loaded

    summary, result = run_pipeline(cfg, stages={"load": load})
    result.validated = validated  # type: ignore[attr-defined]
    result.held_after_load = held  # type: ignore[attr-defined]
    return cfg, summary, result


def _sheet_rows(path: Path, sheet: str) -> list[dict]:
    ws = openpyxl.load_workbook(path)[sheet]
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def _reply(path: Path, out: Path, answers: dict[str, tuple[str, str]], edit=None) -> None:
    """Copy a workbook, fill site_reply/site_comment for the given query ids (and optionally
    change another cell, as a careless coordinator would)."""
    wb = openpyxl.load_workbook(path)
    for ws in wb.worksheets[1:]:
        header = [c.value for c in ws[1]]
        col = {h: i + 1 for i, h in enumerate(header)}
        for r in range(2, ws.max_row + 1):
            qid = ws.cell(r, col["query_id"]).value
            if qid in answers:
                ws.cell(r, col["site_reply"]).value = answers[qid][0]
                ws.cell(r, col["site_comment"]).value = answers[qid][1]
            if edit:
                edit(ws, r, col)
    out.parent.mkdir(parents=True, exist_ok=True)
    wb.save(out)


def _q(listing: pl.DataFrame, file: str, row: int, rule: str) -> str:
    hit = listing.filter(
        (pl.col("source_file") == file)
        & (pl.col("source_row") == row)
        & (pl.col("rule_id") == rule)
    )
    assert hit.height == 1, (file, row, rule, hit)
    return hit["query_id"][0]


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    root = tmp_path_factory.mktemp("roundtrip")
    cohort = root / "cohort"
    generate(cohort, n_patients=65, seed=2017)
    landing = cohort / "landing"
    defects = pl.read_csv(cohort / "truth" / "defects.csv", infer_schema=False)

    def planted(file: str, kind: str) -> int:
        rows = defects.filter((pl.col("file") == file) & (pl.col("kind") == kind))["row"]
        return int(rows[0])

    rows = {
        "plt": planted(ASM, "mis_scaled_unit"),  # corrected, and the new extract fixes it
        "anc": planted(ASM, "impossible_value"),  # corrected, but the new value still fails
        "dx": planted(ASM, "date_out_of_order"),  # confirmed as delivered
    }
    cfg1, s1, r1 = _run(root, landing)
    q1 = pl.read_csv(s1.report_dir / "queries.csv", schema_overrides={"source_row": pl.Int64})
    ids = {
        "plt": _q(q1, ASM, rows["plt"], "ASM_PLT_RANGE"),
        "anc": _q(q1, ASM, rows["anc"], "ASM_ANC_RANGE"),
        "dx": _q(q1, ASM, rows["dx"], "ASM_AFTER_DX"),
    }
    img = q1.filter((pl.col("source_file") == IMG) & (pl.col("rule_id") == "IMG_KNOWN_PATIENT"))
    ids["img"] = img["query_id"][0]  # cannot be resolved
    outbox = cfg1.restricted_path.parent / "outbox"
    wb1 = {p.parent.name: p for p in outbox.glob(f"*/queries_{cfg1.run_id}.xlsx")}

    # replies: SITE01 answers four queries; SITE02 sends replies that must not be applied
    _reply(
        wb1["SITE01"],
        landing / "queries" / "SITE01" / "returned.xlsx",
        {
            ids["plt"]: ("corrected", "fixed the unit"),
            ids["anc"]: ("corrected", "typo fixed"),
            ids["dx"]: ("confirmed_as_is", "diagnosis date is the referral date"),
            ids["img"]: ("cannot_resolve", "external scan, patient unknown here"),
        },
    )
    site02 = _sheet_rows(wb1["SITE02"], "assessments")
    changed, edited, other = site02[0]["query_id"], site02[1]["query_id"], site02[2]["query_id"]

    def careless(ws, r, col):
        qid = ws.cell(r, col["query_id"]).value
        if qid == changed:
            ws.cell(r, col["query_id"]).value = "Q999999999999"
        if qid == edited:
            ws.cell(r, col["delivered_value"]).value = "12"

    _reply(
        wb1["SITE02"],
        landing / "queries" / "SITE02" / "returned.xlsx",
        {
            changed: ("corrected", ""),
            edited: ("corrected", ""),
            other: ("maybe later", ""),
            ids["plt"]: ("corrected", "a SITE01 id in our workbook"),
        },
        edit=careless,
    )
    # the SITE02 workbook never listed SITE01's query: add a row carrying its id
    wb = openpyxl.load_workbook(landing / "queries" / "SITE02" / "returned.xlsx")
    ws = wb["assessments"]
    ws.append([ids["plt"]] + [None] * 12 + ["corrected", None])
    wb.save(landing / "queries" / "SITE02" / "returned.xlsx")

    # SITE01's next cumulative extract: platelets in 10^9/L now, ANC still impossible
    frame = pl.read_csv(landing / ASM, infer_schema=False)
    i_plt, i_anc = rows["plt"] - 2, rows["anc"] - 2
    plt_before = frame["platelets_10e9l"][i_plt]
    frame = frame.with_row_index("_i").with_columns(
        pl.when(pl.col("_i") == i_plt)
        .then(pl.lit(str(float(plt_before) / 1000)))
        .otherwise(pl.col("platelets_10e9l"))
        .alias("platelets_10e9l"),
        pl.when(pl.col("_i") == i_anc)
        .then(pl.lit("300"))
        .otherwise(pl.col("anc_10e9l"))
        .alias("anc_10e9l"),
    )
    (landing / ASM2).write_text(frame.drop("_i").write_csv())
    cfg2, s2, r2 = _run(root, landing)

    # run 3: the same workbooks again (read once), a new reply to a closed query, the ANC
    # finally right, and the platelet defect of run 1 delivered again (its query reopens)
    _reply(
        wb1["SITE01"],
        landing / "queries" / "SITE01" / "again.xlsx",
        {ids["dx"]: ("corrected", "changed our mind")},
    )
    third = frame.with_columns(
        pl.when(pl.col("_i") == i_anc)
        .then(pl.lit("3.0"))
        .otherwise(pl.col("anc_10e9l"))
        .alias("anc_10e9l"),
        pl.when(pl.col("_i") == i_plt)
        .then(pl.lit(plt_before))
        .otherwise(pl.col("platelets_10e9l"))
        .alias("platelets_10e9l"),
    ).drop("_i")
    (landing / ASM3).write_text(third.write_csv())
    cfg3, s3, r3 = _run(root, landing)
    return {
        "root": root,
        "cohort": cohort,
        "landing": landing,
        "ids": ids,
        "rows": rows,
        "site02": (changed, edited, other),
        "runs": [(cfg1, s1, r1), (cfg2, s2, r2), (cfg3, s3, r3)],
        "wb1": wb1,
    }


def _listing(summary) -> pl.DataFrame:
    return pl.read_csv(
        summary.report_dir / "queries.csv", schema_overrides={"source_row": pl.Int64}
    )


def _status(listing: pl.DataFrame, qid: str) -> str | None:
    hit = listing.filter(pl.col("query_id") == qid)
    return hit["status"][0] if hit.height else None


def test_run1_opens_queries_and_writes_one_workbook_per_site_and_lab(trip):
    cfg1, s1, _ = trip["runs"][0]
    q1 = _listing(s1)
    defects = pl.read_csv(trip["cohort"] / "truth" / "defects.csv", infer_schema=False)
    # plus the queries the derivations raise on the generator's hard cases (issue 16)
    derived = pl.read_csv(trip["cohort"] / "truth" / "derivation_queries.csv", infer_schema=False)
    assert q1.height == defects.height + derived.height and set(q1["status"]) == {"new"}
    assert set(trip["wb1"]) == {"SITE01", "SITE02", "LABNUM", "LABTXT"}
    for sender, path in trip["wb1"].items():
        assert path.stat().st_mode & 0o777 == 0o600
        wb = openpyxl.load_workbook(path)
        assert wb.sheetnames[0] == "cover"
        cover = {r[0]: r[1] for r in wb["cover"].iter_rows(max_row=6, values_only=True) if r[0]}
        assert cover["site"] == sender and cover["run_id"] == cfg1.run_id
        mine = q1.filter(pl.col("sender") == sender)
        assert int(cover["open_queries"]) == mine.height
        assert set(wb.sheetnames[1:]) == set(mine["table_name"])
        for ws in wb.worksheets[1:]:
            header = [c.value for c in ws[1]]
            assert header[-2:] == ["site_reply", "site_comment"]
            assert ws.freeze_panes == "A2"
            assert ws.auto_filter.ref == f"A1:O{ws.max_row}"
            (dv,) = ws.data_validations.dataValidation
            assert dv.type == "list"
            assert dv.formula1 == '"corrected,confirmed_as_is,cannot_resolve"'
            assert str(dv.sqref).startswith("N2:N")


def test_workbook_rows_carry_what_the_site_delivered(trip):
    cohort, rows = trip["cohort"], trip["rows"]
    delivered = pl.read_csv(trip["landing"] / ASM, infer_schema=False)
    rec = delivered.row(rows["plt"] - 2, named=True)
    got = {r["query_id"]: r for r in _sheet_rows(trip["wb1"]["SITE01"], "assessments")}
    row = got[trip["ids"]["plt"]]
    assert row["file"] == ASM and row["row"] == str(rows["plt"])
    assert row["patient_ref"] == rec["MRN"]
    assert row["record_date"] == rec["assessment_date"]
    assert row["column"] == "platelets_10e9l"
    assert row["delivered_value"] == rec["platelets_10e9l"]
    assert row["expected"].startswith("a number from 0 to 2000")
    assert "mapping" not in row["how_to_fix"] and "per microlitre" in row["how_to_fix"]
    assert row["site_reply"] is None and row["site_comment"] is None
    assert cohort.exists()


def test_lifecycle_transitions_of_run2(trip):
    ids = trip["ids"]
    q2 = _listing(trip["runs"][1][1])
    assert _status(q2, ids["plt"]) == "resolved"
    assert _status(q2, ids["anc"]) == "miscorrected"
    anc = q2.filter(pl.col("query_id") == ids["anc"]).row(0, named=True)
    assert anc["source_file"] == ASM2 and anc["source_row"] == trip["rows"]["anc"]
    assert _status(q2, ids["dx"]) == "closed"
    assert q2.filter(pl.col("query_id") == ids["dx"])["resolution"][0] == "confirmed_as_is"
    assert _status(q2, ids["img"]) == "closed"
    assert q2.filter(pl.col("query_id") == ids["img"])["resolution"][0] == "cannot_resolve"
    # SITE02's careless replies were not applied: those queries are still plainly open
    for qid in trip["site02"]:
        assert _status(q2, qid) == "open"
    # no new query for the changed ANC value: the miscorrected query carries it
    assert q2.filter(pl.col("status") == "new").height == 0


def test_the_run_releases_each_validated_table_once_staged_and_the_reports_after_the_text(trip):
    cfg3, _, r3 = trip["runs"][2]
    # past the load only the imaging reports are held, for the text stage, which reads them
    assert r3.held_after_load == ["imaging_reports"]
    assert len(r3.tables) == 0  # not held through the transform and report stages
    with pytest.raises(KeyError, match=r"read staging\.assessments from the restricted"):
        r3.tables["assessments"]
    # the frames the run validated are the staged rows (the load and text stages read them)
    assert all(r3.validated[t].height for t in ("patients", "assessments", "imaging_reports"))
    con = duckdb.connect(str(cfg3.restricted_path), read_only=True)
    try:
        for table, frame in r3.validated.items():
            staged = con.sql(f"SELECT * FROM staging.{table}").pl()
            assert staged.height == frame.height, table
            key = ["_source_file", "_source_row"]
            assert staged.select(key).sort(key).equals(frame.select(key).sort(key)), table
    finally:
        con.close()


def test_confirmed_value_is_loaded_with_its_warning(trip):
    row = trip["rows"]["dx"]
    _, _, r2 = trip["runs"][1]
    loaded = r2.validated["assessments"].filter(
        (pl.col("_source_file") == ASM2) & (pl.col("_source_row") == row)
    )
    assert loaded["_warnings"].to_list() == [["ASM_AFTER_DX"]]
    assert r2.quarantine_rows.filter(
        (pl.col("_source_file") == ASM2) & (pl.col("_source_row") == row)
    ).is_empty()
    files = r2.files.filter(pl.col("path") == ASM2).row(0, named=True)
    assert files["rows_read"] == files["rows_loaded"] + files["rows_quarantined"]
    # the restricted database of the latest run (run 3) holds it the same way
    cfg3 = trip["runs"][2][0]
    con = duckdb.connect(str(cfg3.restricted_path), read_only=True)
    try:
        staged = con.execute(
            "SELECT _warnings FROM staging.assessments WHERE _source_file = ? AND _source_row = ?",
            [ASM3, row],
        ).fetchall()
        img = con.execute(
            "SELECT count(*) FROM quarantine.rows WHERE _source_file = ?", [IMG]
        ).fetchall()[0][0]
    finally:
        con.close()
    assert staged == [(["ASM_AFTER_DX"],)]
    assert img == 3, "cannot_resolve closes the query; the row stays quarantined"


def test_replies_reported_not_applied(trip):
    _, s2, r2 = trip["runs"][1]
    problems = r2.replies.problems
    changed, edited, other = trip["site02"]
    by = {(p["sender"], p["query_id"]): p["problem"] for p in problems.iter_rows(named=True)}
    assert (
        "changed" in by[("SITE02", "Q999999999999")] and changed in by[("SITE02", "Q999999999999")]
    )
    assert "edited by hand: delivered_value" in by[("SITE02", edited)]
    assert "not one of" in by[("SITE02", other)]
    assert "unknown query id" in by[("SITE02", trip["ids"]["plt"])]
    assert problems.height == 4
    html = (s2.report_dir / "index.html").read_text()
    assert 'id="reply-problems"' in html and "edited by hand" in html


def test_run3_reads_each_workbook_once_refuses_closed_and_reopens(trip):
    ids = trip["ids"]
    _, s3, r3 = trip["runs"][2]
    q3 = _listing(s3)
    problems = r3.replies.problems
    assert problems["reply_file"].to_list() == ["queries/SITE01/again.xlsx"]
    assert "no longer open (closed_confirmed)" in problems["problem"][0]
    assert _status(q3, ids["anc"]) == "resolved"
    assert _status(q3, ids["plt"]) == "reopened", "the run-1 defect delivered again reopens it"
    assert _status(q3, ids["dx"]) is None, "a closed query is listed only in the run it closed"


def test_audit_trail_is_append_only_and_complete(trip):
    cfg1 = trip["runs"][0][0]
    ids = trip["ids"]
    events = QueryAudit.of(cfg1.restricted_path).events()
    run_ids = [c.run_id for c, _, _ in trip["runs"]]
    assert events["event_seq"].to_list() == list(range(1, events.height + 1))
    assert events["run_id"].to_list() == sorted(events["run_id"].to_list())

    def trail(qid):
        e = events.filter(pl.col("query_id") == qid)
        return [
            (run_ids.index(r), ev, st)
            for r, ev, st in e.select("run_id", "event", "status").iter_rows()
        ]

    assert trail(ids["plt"]) == [
        (0, "opened", "open"),
        (1, "answered", "corrected"),
        (1, "resolved", "resolved"),
        (1, "reply_rejected", None),  # SITE02 answered it in its own workbook
        (2, "reopened", "open"),
    ]
    assert trail(ids["anc"]) == [
        (0, "opened", "open"),
        (1, "answered", "corrected"),
        (1, "miscorrected", "miscorrected"),
        (2, "resolved", "resolved"),
    ]
    assert trail(ids["dx"]) == [
        (0, "opened", "open"),
        (1, "answered", "closed_confirmed"),
        (1, "closed", "closed_confirmed"),
        (2, "reply_rejected", None),
    ]
    assert trail(ids["img"])[1:] == [
        (1, "answered", "closed_unresolvable"),
        (1, "closed", "closed_unresolvable"),
    ]
    dx = events.filter((pl.col("query_id") == ids["dx"]) & (pl.col("event") == "answered"))
    assert dx["reply"][0] == "confirmed_as_is"
    assert dx["site_comment"][0] == "diagnosis date is the referral date"
    # the trail is in the restricted database too, and run 1's events are unchanged since
    con = duckdb.connect(str(trip["runs"][2][0].restricted_path), read_only=True)
    try:
        copied = con.sql("SELECT * FROM queries.events ORDER BY event_seq").pl()
    finally:
        con.close()
    assert copied.height == events.height
    first = events.filter(pl.col("run_id") == run_ids[0])
    assert (
        first.height
        == pl.read_csv(trip["runs"][0][1].report_dir / "queries.csv", infer_schema=False).height
    )


def test_steward_report_counts_per_site(trip):
    _, s2, _ = trip["runs"][1]
    q2 = _listing(s2)
    html = (s2.report_dir / "index.html").read_text()
    assert 'id="sites"' in html and 'id="site-SITE01"' in html and 'id="site-LABNUM"' in html
    site01 = html[html.index('id="site-SITE01"') :]
    site01 = site01[: site01.index("</section>")]
    live = q2.filter(
        (pl.col("sender") == "SITE01")
        & pl.col("status").is_in(["new", "reopened", "open", "corrected", "miscorrected"])
    )
    assert f'<th>Open queries</th><td class="num">{live.height}</td>' in site01
    assert "1 confirmed as delivered, 1 closed as unresolvable" in site01
    assert "Replies this run: 4 applied, 0 reported." in site01
    assert "queries_" in site01 and "outbox/SITE01/" in site01


def test_no_identifier_crosses_sites_or_reaches_reports(trip):
    cohort, landing = trip["cohort"], trip["landing"]
    identifiers = {
        x for x in (cohort / "truth" / "identifiers.txt").read_text().splitlines() if len(x) >= 6
    }
    own_text = {}
    for sender in ("SITE01", "SITE02", "LABNUM", "LABTXT"):
        chunks = []
        for p in landing.glob(f"*/{sender}/*"):
            if p.suffix in (".csv", ".tsv"):
                chunks.append(p.read_text(encoding="latin-1"))
            elif p.suffix == ".parquet":
                chunks.append(pl.read_parquet(p).write_csv())
            elif p.suffix == ".xlsx":
                chunks.append(pl.read_excel(p).write_csv())
        own_text[sender] = "\n".join(chunks)
    outbox = trip["runs"][0][0].restricted_path.parent / "outbox"
    seen_any = 0
    for path in outbox.glob("*/*.xlsx"):
        sender = path.parent.name
        for ws in openpyxl.load_workbook(path).worksheets:
            for row in ws.iter_rows(values_only=True):
                for cell in row:
                    if cell in identifiers:
                        seen_any += 1
                        assert str(cell) in own_text[sender], (sender, path.name)
    assert seen_any, "the workbooks do carry the sites' own references"
    for c, s, _ in trip["runs"]:
        for p in s.report_dir.rglob("*"):
            if p.is_file() and p.suffix in (".html", ".csv", ".json", ".log"):
                text = p.read_text(encoding="utf-8", errors="replace")
                leaked = [x for x in identifiers if x in text]
                assert not leaked, (p.name, leaked[:3])
        xlsx = pl.read_excel(s.report_dir / "queries.xlsx").write_csv()
        assert not [x for x in identifiers if x in xlsx]
        assert "site_comment" not in xlsx
        assert c.landing == landing
    shutil.rmtree(trip["root"] / "unused", ignore_errors=True)


@pytest.mark.browser
def test_site_sections_render_in_chromium(trip, tmp_path):
    from tests.test_browser import _console_errors, _open, chromium  # noqa: F401

    found = shutil.which("chromium")
    if not found:
        pytest.skip("the browser tests of tests/test_browser.py install Chromium")
    _, s2, _ = trip["runs"][1]
    page = s2.report_dir / "index.html"
    dom = _open(found, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    for sender in ("SITE01", "SITE02", "LABNUM", "LABTXT"):
        assert f'id="site-{sender}"' in dom.stdout
    assert 'id="reply-problems"' in dom.stdout
    # the section alone, with the report's own styles, for the screenshot in docs/img/
    html = page.read_text()
    head = html[: html.index("<body>") + len("<body>")]
    part = html[html.index('<h2 id="sites">') : html.index('<h2 id="kahn">')]
    alone = s2.report_dir / "sites_section.html"
    alone.write_text(head + part + "</body></html>")
    shot = s2.report_dir / "sites.png"
    page_uri = alone.as_uri()
    out = subprocess.run(
        [
            found,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,2300",
            f"--user-data-dir={tmp_path / 'shot'}",
            f"--screenshot={shot}",
            page_uri,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_run_artifact_links_the_report_and_counts_the_queries(trip):
    from flows.pipeline import _summary_markdown

    _, s2, r2 = trip["runs"][1]
    text = _summary_markdown(s2, r2)
    report = (s2.report_dir / "index.html").resolve()
    assert f"[index.html]({report.as_uri()})" in text
    assert "Publish gate: passed" in text
    # run 2 by hand: plt resolved, anc miscorrected, dx and img closed, nothing new
    status = text.split("Queries: ", 1)[1].split(";", 1)[0]
    assert "0 new" in status and "1 miscorrected" in status and "1 resolved" in status
    assert "2 closed" in status
    q2 = _listing(s2)
    live = q2.filter(
        pl.col("status").is_in(["new", "reopened", "open", "corrected", "miscorrected"])
    )
    n01 = live.filter(pl.col("sender") == "SITE01").height
    assert f"SITE01 {n01}" in text
    assert "| file | table | read | loaded | quarantined | status |" in text


def test_queries_subcommand_lists_open_queries_by_site(trip, capsys, tmp_path):
    from blinaetl.cli import main

    cfg3, s3, _ = trip["runs"][2]
    q3 = _listing(s3)
    live = q3.filter(
        pl.col("status").is_in(["new", "reopened", "open", "corrected", "miscorrected"])
    )
    assert main(["queries", "--reports", str(cfg3.reports)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {cfg3.run_id}: {live.height} open queries")
    for sender, n in live.group_by("sender").len().iter_rows():
        assert f"\n{sender}: {n} open (" in out
    assert trip["ids"]["plt"] in out and trip["ids"]["img"] not in out, "closed ones are not open"
    identifiers = {
        x
        for x in (trip["cohort"] / "truth" / "identifiers.txt").read_text().splitlines()
        if len(x) >= 6
    }
    assert not [x for x in identifiers if x in out]
    assert main(["queries", "--reports", str(cfg3.reports), "--site", "LABNUM", "--exit-code"]) == 3
    only = capsys.readouterr().out
    assert "LABNUM:" in only and "SITE01:" not in only
    assert main(["queries", "--reports", str(tmp_path / "none")]) == 2

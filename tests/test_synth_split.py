"""The generator splits an XLSX extract that exceeds one sheet into numbered parts.

An XLSX sheet holds `render.XLSX_MAX_ROWS` rows (1,048,576 in Excel), title and header
included; SITE02's treatments pass it from about 735,000 patients. The tests lower the limit
to exercise both sides of it on a small cohort: at the limit the extract is one file, the same
bytes as with the real limit; one row over, it is cut into `_part1of2`, `_part2of2`, between
patients; and a split cohort publishes the same analytics content as the whole one.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import polars as pl
import pytest

import blinaetl.synth.render as render
from blinaetl.synth import generate

N, SEED = 120, 11
SITE02 = "landing/clinical/SITE02"
TREATMENTS, PATIENTS = "treatments_20260901", "patients_20260901"


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _sheet(path: Path, header_row: int) -> pl.DataFrame:
    """A written sheet as text, read by the reader the ingest uses (not by the generator)."""
    return pl.read_excel(
        path, engine="calamine", read_options={"header_row": header_row - 1}, infer_schema_length=0
    )


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "cohort"
    generate(out, n_patients=N, seed=SEED)
    return out


@pytest.fixture(scope="module")
def sizes(whole) -> dict[str, int]:
    """Data rows of the two SITE02 workbooks written with the real limit."""
    return {
        "treatments": _sheet(whole / SITE02 / f"{TREATMENTS}.xlsx", 1).height,
        "patients": _sheet(whole / SITE02 / f"{PATIENTS}.xlsx", 3).height,
    }


def _generate(tmp_path: Path, monkeypatch, max_rows: int) -> Path:
    monkeypatch.setattr(render, "XLSX_MAX_ROWS", max_rows)
    out = tmp_path / f"cohort_{max_rows}"
    generate(out, n_patients=N, seed=SEED)
    return out


def test_the_limit_is_excels_sheet_size():
    assert render.XLSX_MAX_ROWS == 1_048_576  # 2**20 rows, header included


def test_treatments_exactly_filling_a_sheet_are_one_file_as_before(
    tmp_path, monkeypatch, whole, sizes
):
    assert sizes["treatments"] > sizes["patients"] + 2  # the patients fit at either limit
    out = _generate(tmp_path, monkeypatch, sizes["treatments"] + 1)  # + the header row
    assert _hashes(out) == _hashes(whole), "every file byte-identical to the unsplit cohort"


def test_treatments_one_row_over_a_sheet_are_cut_into_two_parts_between_patients(
    tmp_path, monkeypatch, whole, sizes
):
    limit = sizes["treatments"]  # the header and every row need one more
    out = _generate(tmp_path, monkeypatch, limit)
    names = sorted(p.name for p in (out / SITE02).glob(f"{TREATMENTS}*"))
    assert names == [f"{TREATMENTS}_part1of2.xlsx", f"{TREATMENTS}_part2of2.xlsx"]
    parts = [_sheet(out / SITE02 / n, 1) for n in names]
    assert all(0 < p.height <= limit - 1 for p in parts)
    # the parts, in order, are the rows of the whole sheet, and no patient is in both
    assert pl.concat(parts).equals(_sheet(whole / SITE02 / f"{TREATMENTS}.xlsx", 1))
    ids = [set(p["Patient ID"]) for p in parts]
    assert not ids[0] & ids[1]
    # nothing else changes: the patients workbook and every other file are as before
    before, after = _hashes(whole), _hashes(out)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed == {
        f"{SITE02}/{TREATMENTS}.xlsx",
        f"{SITE02}/{names[0]}",
        f"{SITE02}/{names[1]}",
        "truth/perturbations.json",
    }


def test_patients_under_their_title_row_split_one_row_past_the_sheet(
    tmp_path, monkeypatch, whole, sizes
):
    fits = _generate(tmp_path, monkeypatch, sizes["patients"] + 3)  # title, blank, header
    assert (fits / SITE02 / f"{PATIENTS}.xlsx").read_bytes() == (
        whole / SITE02 / f"{PATIENTS}.xlsx"
    ).read_bytes()
    over = _generate(tmp_path, monkeypatch, sizes["patients"] + 2)
    names = sorted(p.name for p in (over / SITE02).glob(f"{PATIENTS}*"))
    assert names == [f"{PATIENTS}_part1of2.xlsx", f"{PATIENTS}_part2of2.xlsx"]
    parts = [_sheet(over / SITE02 / n, 3) for n in names]
    assert [p.height for p in parts] == [sizes["patients"] - 1, 1]
    first = pl.read_excel(over / SITE02 / names[1], has_header=False, infer_schema_length=0)
    assert first.item(0, 0) == "SITE02 leukemia registry extract", "each part has the title"


def test_a_small_limit_cuts_many_parts_none_splitting_a_patient(tmp_path, monkeypatch, sizes):
    limit = 40
    out = _generate(tmp_path, monkeypatch, limit)
    names = sorted(p.name for p in (out / SITE02).glob(f"{TREATMENTS}*"))
    n = len(names)
    assert n >= sizes["treatments"] // (limit - 1)
    assert names == sorted(f"{TREATMENTS}_part{k}of{n}.xlsx" for k in range(1, n + 1))
    parts = [_sheet(out / SITE02 / f"{TREATMENTS}_part{k}of{n}.xlsx", 1) for k in range(1, n + 1)]
    assert all(0 < p.height <= limit - 1 for p in parts)
    assert sum(p.height for p in parts) == sizes["treatments"]
    seen: set[str] = set()
    for p in parts:
        ids = set(p["Patient ID"])
        assert not ids & seen, "a patient's treatments are all in one part"
        seen |= ids
    # the truth lists every part with its rows
    import json

    files = json.loads((out / "truth" / "perturbations.json").read_text())["files"]
    assert [files[f"clinical/SITE02/{TREATMENTS}_part{k}of{n}.xlsx"] for k in range(1, n + 1)] == [
        p.height for p in parts
    ]


def test_a_patient_longer_than_a_sheet_is_refused(monkeypatch):
    monkeypatch.setattr(render, "XLSX_MAX_ROWS", 3)  # the header and two rows
    frame = pl.DataFrame({"Patient ID": ["A", "B", "B", "C"], "_row": [2, 3, 4, 5]})
    parts = render.xlsx_parts(frame, 2, "Patient ID")
    assert [p["Patient ID"].to_list() for p in parts] == [["A"], ["B", "B"], ["C"]]
    assert [p["_row"].to_list() for p in parts] == [[2], [2, 3], [2]], "numbered per part"
    longer = pl.DataFrame({"Patient ID": ["A", "B", "B", "B"], "_row": [2, 3, 4, 5]})
    with pytest.raises(ValueError, match="a patient has 3 rows"):
        render.xlsx_parts(longer, 2, "Patient ID")


def test_split_cohort_publishes_the_same_analytics_and_truth(tmp_path, monkeypatch, whole, sizes):
    """Both workbooks split (patients in 2 parts, treatments in more): the pipeline's analytics
    database is the same, object by object and row by row, as the whole cohort's; the truth
    files are the same but for the list of files."""
    from benchmarks.compare_builds import compare
    from blinaetl.pipeline import RunConfig, run_pipeline

    split = _generate(tmp_path, monkeypatch, sizes["patients"] + 2)
    assert len(list((split / SITE02).glob(f"{PATIENTS}_part*"))) == 2
    assert len(list((split / SITE02).glob(f"{TREATMENTS}_part*"))) >= 2
    built = []
    for cohort in (whole, split):
        cfg = RunConfig(
            landing=cohort / "landing",
            warehouse=tmp_path / f"wh_{cohort.name}",
            reports=tmp_path / f"rp_{cohort.name}",
            demo=True,
            gx=False,
            run_id="20260101T000000000000Z-split",
        )
        run_pipeline(cfg, stages={"report": lambda *_a: None})
        built.append(cfg.analytics_path)
    notes: list[str] = []
    assert compare(built[0], built[1], "analytics", notes) == []
    assert notes == []
    for name in ("patients.csv", "defects.csv", "derivation_queries.csv", "identifiers.txt"):
        assert (split / "truth" / name).read_bytes() == (whole / "truth" / name).read_bytes()
    import duckdb

    con = duckdb.connect(str(built[1]), read_only=True)
    try:
        published = con.execute("SELECT count(*) FROM curated.patients").fetchall()
    finally:
        con.close()
    assert published == [(N,)]

"""Split extracts: an extract cut into numbered parts (`<name>_partKofN.<ext>`) is loaded whole.

A site whose export exceeds one file (an XLSX sheet holds 1,048,576 rows) sends it as parts
1..N of one extract date. The ingest loads all of them together, as one delivery, or none
(`blinaetl.ingest.landing.choose_extracts`); row numbers, quarantine and lineage stay per file,
duplicate keys are found across the parts, and records that disappeared are looked for across
every part of both deliveries.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from blinaetl.ingest.landing import extract_part, ingest_landing
from blinaetl.privacy import DEMO_KEY
from blinaetl.validate.contracts import load_contracts
from blinaetl.warehouse.database import load_staging
from tests.t1_site import T1_PATIENTS_HEADER, T1_PATIENTS_MAPPING, write_t1_landing

MAPPING = T1_PATIENTS_MAPPING
HEADER = T1_PATIENTS_HEADER
ROWS = {
    "P001": 'P001,"Doe, Jane",1970-01-01,F,2014-01-01,negative,2,no\n',
    "P002": 'P002,"Roe, Rick",1965-05-05,M,2013-03-03,positive,1,yes\n',
    "P003": 'P003,"Poe, Anne",1980-02-02,F,2015-04-04,negative,0,no\n',
    "P004": 'P004,"Loe, Mark",1975-07-07,M,2012-06-06,unknown,3,no\n',
}
BAD_SEX = 'P005,"Moe, Lena",1972-03-03,X,2016-01-01,negative,1,no\n'  # sex X: not allowed
D1, D2 = "clinical/T1/patients_20260101", "clinical/T1/patients_20260201"


def _csv(*lines: str) -> bytes:
    return (HEADER + "".join(lines)).encode()


def _ingest(tmp_path: Path, files: dict[str, bytes]):
    landing, sources = write_t1_landing(tmp_path, MAPPING, files)
    return ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)


def _file(result, rel: str) -> dict:
    rows = [r for r in result.files.iter_rows(named=True) if r["path"] == rel]
    assert len(rows) == 1, rel
    return rows[0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("patients_20260901_part1of2.xlsx", (1, 2)),
        ("clinical/SITE02/treatments_20260901_part12of12.xlsx", (12, 12)),
        ("patients_20260901.xlsx", None),
        ("patients_20260901_part1of2", None),  # no extension: not the part marker's place
        ("patients_20260901_part1of2_fix.xlsx", None),  # not just before the extension
        ("patients_20260901part1of2.xlsx", None),  # no underscore
        ("patients_20260901_part1.xlsx", None),  # no total
    ],
)
def test_extract_part_is_read_only_just_before_the_extension(name, expected):
    assert extract_part(name) == expected


def test_every_part_of_a_split_extract_is_loaded_with_its_own_row_numbers(tmp_path):
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    result = _ingest(
        tmp_path,
        {
            part1: _csv(ROWS["P001"], ROWS["P002"]),
            part2: _csv(ROWS["P003"], BAD_SEX, ROWS["P004"]),
        },
    )
    assert _file(result, part1)["status"] == "loaded"
    assert (_file(result, part1)["rows_read"], _file(result, part1)["rows_loaded"]) == (2, 2)
    f2 = _file(result, part2)
    assert (f2["rows_read"], f2["rows_loaded"], f2["rows_quarantined"]) == (3, 2, 1)
    patients = result.tables["patients"].sort("mrn")
    assert patients["mrn"].to_list() == ["P001", "P002", "P003", "P004"]
    lineage = {
        r["mrn"]: (r["_source_file"], r["_source_row"]) for r in patients.iter_rows(named=True)
    }
    # each part numbers its own lines: its header is line 1, its first record line 2
    assert lineage == {
        "P001": (part1, 2),
        "P002": (part1, 3),
        "P003": (part2, 2),
        "P004": (part2, 4),
    }
    q = result.quarantine_rows
    assert q.height == 1
    assert (q["_source_file"].item(), q["_source_row"].item()) == (part2, 3)
    assert result.disappeared.height == 0


def test_a_patient_in_two_parts_fails_the_key_check_across_the_parts(tmp_path):
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    result = _ingest(
        tmp_path,
        {part1: _csv(ROWS["P001"], ROWS["P002"]), part2: _csv(ROWS["P002"], ROWS["P003"])},
    )
    failed = result.quarantine_failures
    unique = failed.filter(failed["check_id"] == "PAT_MRN_UNIQUE")
    assert sorted(zip(unique["_source_file"], unique["_source_row"], strict=True)) == [
        (part1, 3),
        (part2, 2),
    ]
    assert result.tables["patients"]["mrn"].sort().to_list() == ["P001", "P003"]


def test_a_split_extract_supersedes_the_older_whole_one_compared_across_its_parts(tmp_path):
    older = D1 + ".csv"
    part1, part2 = D2 + "_part1of2.csv", D2 + "_part2of2.csv"
    result = _ingest(
        tmp_path,
        {
            older: _csv(ROWS["P001"], ROWS["P002"], ROWS["P003"], ROWS["P004"]),
            part1: _csv(ROWS["P001"]),
            part2: _csv(ROWS["P003"], ROWS["P004"]),  # P002 left out of both parts
        },
    )
    assert _file(result, older)["status"] == "superseded"
    assert part1 in _file(result, older)["error"]
    assert result.tables["patients"]["mrn"].sort().to_list() == ["P001", "P003", "P004"]
    gone = result.disappeared
    assert gone.height == 1, "only P002: P003 and P004 are in the second part"
    assert (gone["previous_file"].item(), gone["current_file"].item()) == (older, part1)


def test_records_that_disappeared_from_a_split_extract_name_the_part_they_were_in(tmp_path):
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    newer = D2 + ".csv"
    result = _ingest(
        tmp_path,
        {
            part1: _csv(ROWS["P001"], ROWS["P002"]),
            part2: _csv(ROWS["P003"], ROWS["P004"]),
            newer: _csv(ROWS["P001"], ROWS["P004"]),
        },
    )
    assert _file(result, part1)["status"] == "superseded"
    assert _file(result, part2)["status"] == "superseded"
    gone = result.disappeared
    assert gone["previous_file"].to_list() == [part1, part2]  # P002, then P003
    assert set(gone["current_file"]) == {newer}


def test_an_incomplete_split_extract_is_rejected_and_the_previous_one_loaded(tmp_path):
    older = D1 + ".csv"
    part1 = D2 + "_part1of2.csv"  # part 2 of 2 was not delivered
    result = _ingest(
        tmp_path,
        {older: _csv(ROWS["P001"], ROWS["P002"]), part1: _csv(ROWS["P001"])},
    )
    f = _file(result, part1)
    assert f["status"] == "rejected" and f["rows_loaded"] == 0
    assert "parts 1 of 2" in f["error"] and "none of its parts is loaded" in f["error"]
    assert _file(result, older)["status"] == "loaded", "not superseded by a partial delivery"
    assert result.tables["patients"]["mrn"].sort().to_list() == ["P001", "P002"]
    assert result.disappeared.height == 0


def test_a_complete_split_extract_beside_the_rejected_cases(tmp_path):
    """The other side of the rule: parts 1..N all present and readable load; a part number
    beyond N, or the same extract also delivered whole, reject the delivery."""
    good = {D1 + "_part1of2.csv": _csv(ROWS["P001"]), D1 + "_part2of2.csv": _csv(ROWS["P002"])}
    result = _ingest(tmp_path / "good", good)
    assert all(_file(result, rel)["status"] == "loaded" for rel in good)

    beyond = {D1 + "_part1of2.csv": _csv(ROWS["P001"]), D1 + "_part3of2.csv": _csv(ROWS["P002"])}
    result = _ingest(tmp_path / "beyond", beyond)
    assert all(_file(result, rel)["status"] == "rejected" for rel in beyond)
    assert result.tables["patients"].height == 0

    both = {D1 + ".csv": _csv(ROWS["P001"]), D1 + "_part1of1.csv": _csv(ROWS["P001"])}
    result = _ingest(tmp_path / "both", both)
    assert all(_file(result, rel)["status"] == "rejected" for rel in both)
    assert "both whole and in parts" in _file(result, D1 + ".csv")["error"]


def test_a_split_extract_with_an_unreadable_part_is_not_loaded(tmp_path):
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    result = _ingest(tmp_path, {part1: _csv(ROWS["P001"]), part2: b"\x89PNG\r\n\x1a\n not a table"})
    assert _file(result, part2)["status"] == "rejected"
    f1 = _file(result, part1)
    assert f1["status"] == "rejected" and part2 in f1["error"]
    assert result.tables["patients"].height == 0


def test_each_part_has_its_own_cache_entry(tmp_path):
    """An incremental run takes an unchanged part from the per-file cache and reads the changed
    one, and loads what a full run of the same files loads."""
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    landing, sources = tmp_path / "landing", tmp_path / "sources"
    sources.mkdir(parents=True)
    (sources / "t.yaml").write_text(MAPPING)
    for rel, data in {part1: _csv(ROWS["P001"]), part2: _csv(ROWS["P002"])}.items():
        (landing / rel).parent.mkdir(parents=True, exist_ok=True)
        (landing / rel).write_bytes(data)
    cache = tmp_path / "restricted" / "file_cache"

    def run(**kw: object):
        return ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources, **kw)  # type: ignore[arg-type]

    assert run(cache_dir=cache).reused == []
    (landing / part2).write_bytes(_csv(ROWS["P002"], ROWS["P003"]))
    again = run(cache_dir=cache)
    assert again.reused == [part1]
    full = run()
    assert again.tables["patients"].drop("_run_id").equals(full.tables["patients"].drop("_run_id"))
    assert again.tables["patients"]["mrn"].sort().to_list() == ["P001", "P002", "P003"]


def test_the_lineage_constant_per_file_is_held_as_categoricals_and_staged_as_text(tmp_path):
    """`split_rows` holds `_source_id`, `_file_sha256` and `_run_id` as categoricals (they were
    half the validated tables' memory as string views); their values per row are unchanged, and
    the restricted database stages them as VARCHAR with the same values."""
    part1, part2 = D1 + "_part1of2.csv", D1 + "_part2of2.csv"
    result = _ingest(tmp_path, {part1: _csv(ROWS["P001"], ROWS["P002"]), part2: _csv(ROWS["P003"])})
    patients = result.tables["patients"].sort("mrn")
    for column in ("_source_id", "_file_sha256", "_run_id"):
        assert patients.schema[column] == pl.Categorical, column
    sha = {r["path"]: r["sha256"] for r in result.files.iter_rows(named=True)}
    assert patients["_file_sha256"].cast(pl.Utf8).to_list() == [sha[part1], sha[part1], sha[part2]]
    assert set(patients["_run_id"].cast(pl.Utf8)) == {"run-1"}
    con = duckdb.connect(str(tmp_path / "restricted.duckdb"))
    try:
        load_staging(
            con,
            load_contracts(),
            dict(result.tables),
            result.quarantine,
            result.files,
            result.dq_results,
        )
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'staging' AND table_name = 'patients'"
            ).fetchall()
        )
        staged = con.execute(
            "SELECT _file_sha256, _run_id FROM staging.patients ORDER BY _source_file, _source_row"
        ).fetchall()
    finally:
        con.close()
    assert (types["_source_id"], types["_file_sha256"], types["_run_id"]) == ("VARCHAR",) * 3
    assert staged == [(sha[part1], "run-1"), (sha[part1], "run-1"), (sha[part2], "run-1")]

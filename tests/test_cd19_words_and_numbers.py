"""One flow laboratory that writes CD19 intensity words and MFI numbers in the same file.

A site mapping (written here, as a site would onboard: configuration only) reads one CSV whose
rows carry the percent positive, the blast and normal B-cell MFIs and the CD19 wording side by
side. Each row is ingested through the real landing reader and mapping, then classified by
`sql/harmonized/10_cd19_specimens.sql`. Every percent-positive and MFI rule of docs/cd19.md is
tested on each side of its boundary and on it, once with the number in a column and once with
the same number written in the words (columns empty). Expected classes, flags and rule ids are
worked by hand from docs/cd19.md with the default cut-offs (`schemas/vocab/cd19_lab_cutoffs.csv`:
percent positive < 20 negative; MFI ratio < 0.3 dim, < 0.8 moderate, else strong; partial below
80%; numbers before words).
"""

from __future__ import annotations

import textwrap

import polars as pl
import pytest

from blinaetl.ingest.landing import ingest_landing
from blinaetl.privacy import DEMO_KEY
from blinaetl.resources import sql_dir
from tests.sqlfixtures import restricted_db

MAPPING = textwrap.dedent(
    """\
    # Flow laboratory writing CD19 as numbers and words in one file
    source: labmix_flow
    kind: flow
    lab: LABMIX
    files:
      - table: flow_results
        glob: "flow/LABMIX/flow_*.csv"
        format: csv
        date_format: "%Y-%m-%d"
        columns: {specimen_id: accession, mrn: mrn, patient_site: site, collection_date: collected,
                  specimen_type: specimen, blasts_pct: blasts, cd19_pct_positive: cd19_pct,
                  cd19_mfi: cd19_mfi, ref_mfi: normal_b_mfi, cd19_descriptor: cd19_text}
        codes:
          specimen_type: {BM: marrow, PB: blood}
    """
)

# the clinical extract the flow rows' patient must be in (FLW_KNOWN_PATIENT)
CLINICAL = textwrap.dedent(
    """\
    source: s1_clinical
    kind: clinical
    site: S1
    files:
      - table: patients
        glob: "clinical/S1/patients.csv"
        format: csv
        columns: {mrn: MRN, birth_date: birth_date, sex: sex, diagnosis_date: diagnosis_date,
                  ph_status: ph_status, prior_lines: prior_lines, prior_hct: prior_hct}
    """
)
PATIENTS_CSV = (
    "MRN,birth_date,sex,diagnosis_date,ph_status,prior_lines,prior_hct\n"
    "M1,1970-01-01,F,2014-01-01,negative,2,no\n"
)

# (case, cd19_pct, cd19_mfi, normal_b_mfi, words) -> (class, partial, rule_id, evidence_conflict)
CASES = [
    # --- percent positive < 20 -> negative; the number in the column, then in the words
    ("pct 19 column", "19", "", "", "CD19 positive", ("negative", True, "NUM_PCT_NEG", True)),
    ("pct 19 words", "", "", "", "CD19 positive (19%)", ("negative", True, "TXT_PCT_NEG", True)),
    # on the boundary 20: not negative; the MFI band decides
    (
        "pct 20 column",
        "20",
        "900",
        "1000",
        "CD19 bright",
        ("strong", True, "NUM_MFI_STRONG", False),
    ),
    (
        "pct 20 words",
        "",
        "",
        "",
        "CD19 bright (20%), MFI ratio 0.9",
        ("strong", True, "TXT_MFI_STRONG", False),
    ),
    ("pct 21 column", "21", "", "", "CD19 positive", ("strong", True, "LEX_POSITIVE", False)),
    ("pct 21 words", "", "", "", "CD19 positive (21%)", ("strong", True, "LEX_POSITIVE", False)),
    # --- partial below 80%: 79 partial, 80 and 81 not
    ("pct 79 column", "79", "", "", "CD19 dim", ("dim", True, "LEX_DIM", False)),
    ("pct 79 words", "", "", "", "CD19 dim (79%)", ("dim", True, "LEX_DIM", False)),
    ("pct 80 column", "80", "", "", "CD19 dim", ("dim", False, "LEX_DIM", False)),
    ("pct 80 words", "", "", "", "CD19 dim (80%)", ("dim", False, "LEX_DIM", False)),
    ("pct 81 column", "81", "", "", "CD19 dim", ("dim", False, "LEX_DIM", False)),
    (
        "pct 81 words",
        "",
        "",
        "",
        "CD19 dim in 81 percent of blasts",
        ("dim", False, "LEX_DIM", False),
    ),
    # --- MFI ratio < 0.3 dim: 0.29 dim, 0.30 moderate
    ("mfi 0.29 columns", "95", "290", "1000", "CD19 dim", ("dim", False, "NUM_MFI_DIM", False)),
    (
        "mfi 0.29 words",
        "",
        "",
        "",
        "CD19 dim, MFI 290 (normal B cells 1000)",
        ("dim", False, "TXT_MFI_DIM", False),
    ),
    (
        "mfi 0.30 columns",
        "95",
        "300",
        "1000",
        "CD19 dim",
        ("moderate", False, "NUM_MFI_MODERATE", True),
    ),
    (
        "mfi 0.30 words",
        "",
        "",
        "",
        "CD19 dim, MFI ratio 0.30",
        ("moderate", False, "TXT_MFI_MODERATE", True),
    ),
    # --- MFI ratio < 0.8 moderate: 0.799 moderate, 0.8 strong, 0.81 strong
    (
        "mfi 0.799 columns",
        "95",
        "799",
        "1000",
        "CD19 bright",
        ("moderate", False, "NUM_MFI_MODERATE", True),
    ),
    (
        "mfi 0.799 words",
        "",
        "",
        "",
        "CD19 bright, MFI 799 / normal B 1000",
        ("moderate", False, "TXT_MFI_MODERATE", True),
    ),
    (
        "mfi 0.8 columns",
        "95",
        "800",
        "1000",
        "CD19 moderate",
        ("strong", False, "NUM_MFI_STRONG", True),
    ),
    (
        "mfi 0.8 words",
        "",
        "",
        "",
        "CD19 moderate, MFI 800 vs ref 1000",
        ("strong", False, "TXT_MFI_STRONG", True),
    ),
    ("mfi 0.81 columns", "95", "810", "1000", "", ("strong", False, "NUM_MFI_STRONG", False)),
    (
        "mfi 0.81 words",
        "",
        "",
        "",
        "CD19 MFI ratio 0.81",
        ("strong", False, "TXT_MFI_STRONG", False),
    ),
    # --- the column wins over a number in the words; the words still give their class
    (
        "column before words",
        "50",
        "",
        "",
        "CD19 positive (10%)",
        ("strong", True, "LEX_POSITIVE", False),
    ),
    (
        "mfi columns before words",
        "95",
        "900",
        "1000",
        "CD19 bright, MFI ratio 0.1",
        ("strong", False, "NUM_MFI_STRONG", False),
    ),
    # --- an MFI needs its reference: a blast MFI alone decides nothing, the words do
    ("mfi without reference", "95", "900", "", "CD19 dim", ("dim", False, "LEX_DIM", False)),
]


@pytest.fixture(scope="module")
def classified(tmp_path_factory) -> dict[str, tuple]:
    tmp = tmp_path_factory.mktemp("labmix")
    landing, sources = tmp / "landing", tmp / "sources"
    sources.mkdir()
    (sources / "labmix_flow.yaml").write_text(MAPPING)
    (sources / "s1_clinical.yaml").write_text(CLINICAL)
    (landing / "clinical" / "S1").mkdir(parents=True)
    (landing / "clinical" / "S1" / "patients.csv").write_text(PATIENTS_CSV)
    rows = ["accession,mrn,site,collected,specimen,blasts,cd19_pct,cd19_mfi,normal_b_mfi,cd19_text"]
    for i, (_, pct, mfi, ref, words, _) in enumerate(CASES):
        text = '"' + words.replace('"', '""') + '"' if words else ""
        rows.append(f"A{i:03d},M1,S1,2015-02-20,BM,60,{pct},{mfi},{ref},{text}")
    path = landing / "flow" / "LABMIX" / "flow_20260901.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    result = ingest_landing(landing, "run-1", DEMO_KEY, sources_dir=sources)
    files = result.files.filter(pl.col("table_name") == "flow_results").to_dicts()
    assert [(f["rows_read"], f["rows_loaded"]) for f in files] == [(len(CASES), len(CASES))], files
    flow = result.tables["flow_results"]
    key = flow["patient_key"][0]
    con = restricted_db(
        {
            "patients": [
                {
                    "mrn": "M1",
                    "site": "S1",
                    "patient_key": key,
                    "birth_date": "1970-01-01",
                    "diagnosis_date": "2014-01-01",
                }
            ],
            "treatments": [
                {
                    "mrn": "M1",
                    "patient_key": key,
                    "treatment": "blinatumomab",
                    "cycle": 1,
                    "start_date": "2015-03-01",
                }
            ],
        }
    )
    staging_cols = [r[0] for r in con.execute("DESCRIBE staging.flow_results").fetchall()]
    staged = flow.select([c for c in flow.columns if c in staging_cols])
    con.register("_flow", staged.to_arrow())
    con.execute("INSERT INTO staging.flow_results BY NAME SELECT * FROM _flow")
    for name in ("00_patient_timeline.sql", "10_cd19_specimens.sql"):
        con.execute((sql_dir() / "harmonized" / name).read_text())
    got = con.execute(
        "SELECT specimen_id, cd19_class, partial, rule_id, evidence_conflict, unreadable "
        "FROM harmonized.cd19_specimens"
    ).fetchall()
    return {sid: rest for sid, *rest in ((g[0], *g[1:]) for g in got)}


def test_the_mapping_reads_numbers_and_words_from_one_file(classified):
    assert len(classified) == len(CASES)
    assert not any(unreadable for *_, unreadable in classified.values())


@pytest.mark.parametrize(
    ("index", "case"), [(i, c) for i, c in enumerate(CASES)], ids=[c[0] for c in CASES]
)
def test_each_rule_from_a_column_and_from_the_words(classified, index, case):
    expected = case[-1]
    assert tuple(classified[f"A{index:03d}"][:4]) == expected

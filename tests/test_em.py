"""EM-ALL: assertion reader, site vocabulary, CNS status, findings, patient flags and windows."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from benchmarks.assertion_benchmark import evaluate
from blinaetl.resources import sql_dir
from blinaetl.synth.phrases import EM_SITE_TERMS, EM_TEMPLATES, LATERAL_GROUPS, em_templates
from blinaetl.text import assertion, assertions, extract_em_mentions, find_unmapped_terms
from tests.sqlfixtures import insert_rows, one_patient, restricted_db

HARMONIZED = sql_dir() / "harmonized"
DAY0 = dt.date(2015, 3, 1)


def test_hand_labelled_set_meets_the_negation_bar():
    frame, scores = evaluate()
    assert frame.height >= 300
    assert set(frame["label"]) == {"present", "absent", "possible", "historical", "resolved"}
    assert scores["absent"]["precision"] >= 0.95
    assert scores["absent"]["recall"] >= 0.95


@pytest.mark.parametrize(
    ("sentence", "target", "label"),
    [
        ("No evidence of leukemic involvement of the left testis.", "testis", "absent"),
        (
            "New left testicular enlargement concerning for leukemic infiltration.",
            "testicular",
            "possible",
        ),
        ("No increase in the size of the left testis mass.", "testis", "present"),  # pseudo-trigger
        (
            "Not only the spleen but also the liver is infiltrated.",
            "spleen",
            "present",
        ),  # pseudo-trigger
        (
            "No pleural effusion but the spleen is enlarged with infiltration.",
            "spleen",
            "present",
        ),  # terminator
        ("No pleural effusion but the spleen is enlarged with infiltration.", "pleural", "absent"),
        ("Renal involvement is not excluded.", "renal", "possible"),  # negated uncertainty
        ("Cannot exclude leukemic involvement of the spleen.", "spleen", "possible"),
        ("History of leukemic involvement of the testis.", "testis", "historical"),
        ("Previously noted testis infiltration has resolved.", "testis", "resolved"),
        ("The testis is not enlarged.", "testis", "absent"),
        ("Enlarged left testis with leukemic infiltration.", "testis", "present"),
    ],
)
def test_assertion_examples(sentence, target, label):
    assert assertion(sentence, target) == label


def test_assertion_rejects_a_target_not_in_the_sentence():
    with pytest.raises(ValueError, match="does not occur"):
        assertion("No evidence of disease.", "spleen")


def test_negation_scope_is_limited_to_a_window_of_words():
    far = "No fever was reported by the patient during the last two weeks and the spleen is infiltrated."
    assert assertion(far, "spleen") == "present"


def _all_generator_sentences():
    """(text, noun, assertion, group, code, laterality, names_the_site) of every sentence the
    generator can write: each assertion's templates and its site group's own templates."""
    for label in EM_TEMPLATES:
        for group, terms in EM_SITE_TERMS.items():
            for template in em_templates(label, group):
                names_site = "{site}" in template.lower() or "{noun}" in template.lower()
                for noun, code in terms:
                    for lat in ("left", "right", "bilateral") if group in LATERAL_GROUPS else ("",):
                        site = f"{lat} {noun}".strip()
                        text = (
                            template.replace("{site}", site)
                            .replace("{Site}", site[0].upper() + site[1:])
                            .replace("{noun}", noun)
                            .replace("{Noun}", noun[0].upper() + noun[1:])
                            .replace("{lat_after}", f", {lat}" if lat else "")
                        )
                        yield text, noun, label, group, code, lat or None, names_site


def _generator_sentences():
    """The generator sentences that name their site (node lists name node regions instead)."""
    for *row, names_site in dict.fromkeys(_all_generator_sentences()):
        if names_site:
            yield tuple(row)


def test_every_generator_sentence_is_read_right():
    rows = list(_generator_sentences())
    got = assertions([r[0] for r in rows], [r[1] for r in rows]).to_list()
    wrong = [(r[0], r[2], g) for r, g in zip(rows, got, strict=True) if r[2] != g]
    assert not wrong, wrong[:5]


def test_every_generator_sentence_yields_its_site_group_only():
    """Each generator statement, read as a report, gives its own site group with its truth
    assertion and nothing else: node lists ("No supraclavicular or axillary adenopathy") are
    lymph-node statements, "soft tissue density in the orbit" adds no soft-tissue finding,
    normal-organ sentences ("The spleen is normal in size") are negations of the organ."""
    rows = list(dict.fromkeys((r[0], r[2], r[3]) for r in _all_generator_sentences()))
    assert {"hypothetical"} <= {r[1] for r in rows}
    m = extract_em_mentions(_reports([r[0] for r in rows]))
    got: dict[int, set] = {}
    for x in m.iter_rows(named=True):
        got.setdefault(x["_source_row"], set()).add((x["site_group"], x["assertion"]))
    wrong = [
        (text, label, group, got.get(i + 2))
        for i, (text, label, group) in enumerate(rows)
        if got.get(i + 2) != {(group, label)}
    ]
    assert not wrong, wrong[:5]


def test_generator_node_lists_code_each_region():
    from blinaetl.synth.phrases import EM_GROUP_TEMPLATES

    lists = EM_GROUP_TEMPLATES["absent"]["lymph_node"]
    m = extract_em_mentions(_reports(list(lists)))
    got = {(x["_source_row"], x["icdo3"], x["assertion"]) for x in m.iter_rows(named=True)}
    # hand-coded from domain.md section 5: supraclavicular and cervical C77.0, mediastinal
    # C77.1, retroperitoneal C77.2, axillary C77.3, inguinal C77.4
    assert got == {
        (2, "C77.0", "absent"),
        (2, "C77.3", "absent"),
        (3, "C77.0", "absent"),
        (3, "C77.3", "absent"),
        (3, "C77.4", "absent"),
        (4, "C77.1", "absent"),
        (4, "C77.2", "absent"),
    }


def _reports(texts: list[str], modality: str = "CT") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "patient_key": ["k0"] * len(texts),
            "site": ["S"] * len(texts),
            "_source_file": ["imaging.csv"] * len(texts),
            "_source_row": list(range(2, 2 + len(texts))),
            "report_date": [DAY0] * len(texts),
            "modality": [modality] * len(texts),
            "report_text": texts,
        }
    )


def test_vocabulary_codes_sites_groups_and_laterality():
    rows = [r for r in _generator_sentences() if r[2] == "present"]
    mentions = extract_em_mentions(_reports([r[0] for r in rows]))
    got = {
        (m["_source_row"], m["site_group"], m["icdo3"], m["laterality"])
        for m in mentions.iter_rows(named=True)
    }
    expected = {(i + 2, r[3], r[4], r[5]) for i, r in enumerate(rows)}
    assert expected <= got


@pytest.mark.parametrize(
    ("text", "group", "code"),
    [
        ("Leukemic infiltration of the cauda equina.", "cns", "C72.1"),
        ("Mass in the anterior mediastinum.", "mediastinum", "C38.1"),
        ("Enlarged inguinal lymph nodes with infiltration.", "lymph_node", "C77.4"),
        ("Enlarged axillary lymph nodes with infiltration.", "lymph_node", "C77.3"),
        ("Leukemia cutis on the trunk.", "skin", "C44.9"),
        ("Leukemic infiltration of the epididymis.", "testis", "C63.0"),
        ("Mass of the retroperitoneum.", "other", "C48.0"),
        ("Chloroma of the spleen.", "spleen", "C42.2"),
    ],
)
def test_longest_term_wins_and_codes_follow_icdo3(text, group, code):
    m = extract_em_mentions(_reports([text]))
    assert (m["site_group"][0], m["icdo3"][0]) == (group, code)


def test_anatomy_without_disease_words_is_not_a_finding():
    m = extract_em_mentions(_reports(["Degenerative changes of the lower lumbar spine."]))
    assert m.height == 0


def test_two_mentions_in_one_sentence_keep_their_own_assertions():
    m = extract_em_mentions(
        _reports(["No testicular mass; however the spleen is enlarged with infiltration."])
    )
    assert dict(zip(m["site_group"], m["assertion"], strict=True)) == {
        "testis": "absent",
        "spleen": "present",
    }


def test_unmapped_site_terms_are_listed_with_counts():
    texts = [
        "Leukemic infiltration of the tongue.",
        "Leukemic infiltration of the tongue.",
        "Mass of the spleen.",
    ]
    un = find_unmapped_terms(_reports(texts))
    assert un.filter(pl.col("term") == "tongue").rows() == [("tongue", 2, 2)]
    assert "spleen" not in un["term"].to_list()
    cut = find_unmapped_terms(_reports(["Leukemic involvement of the cervical lymph nodes."]))
    assert cut.height == 0, "the start of a known multi-word term is not listed"


# --- SQL: CNS status, findings, patient flags --------------------------------------------


def _db(
    assessments: list[dict] | None = None,
    mentions: list[dict] | None = None,
    definitions: dict | None = None,
):
    con = restricted_db(
        {
            **one_patient(DAY0.isoformat()),
            "assessments": [
                {
                    "mrn": "M0",
                    "patient_key": "k0",
                    "_source_file": "a.csv",
                    "_source_row": i + 2,
                    **a,
                }
                for i, a in enumerate(assessments or [])
            ],
        },
        definitions=definitions,
    )
    insert_rows(con, "harmonized.em_mentions", mentions or [])
    for name in (
        "00_patient_timeline.sql",
        "20_cns_status.sql",
        "21_em_findings.sql",
        "22_em_start_sites.sql",
        "22_em_patient_baseline.sql",
    ):
        con.execute((HARMONIZED / name).read_text())
    return con


def _csf(
    day: int,
    blasts: str | None,
    wbc: float | None,
    rbc: float | None,
    bwbc: float | None = 5.0,
    brbc: float | None = 4.0,
) -> dict:
    return {
        "assessment_date": (DAY0 + dt.timedelta(days=day)).isoformat(),
        "csf_blasts": blasts,
        "csf_wbc_per_ul": wbc,
        "csf_rbc_per_ul": rbc,
        "blood_wbc_10e9l": bwbc,
        "blood_rbc_10e12l": brbc,
    }


CNS_CASES = [
    # blasts, CSF WBC, CSF RBC, blood WBC (10^9/L), blood RBC (10^12/L), status
    ("absent", 50.0, 0.0, 5.0, 4.0, "CNS1"),  # no blasts: CNS1 whatever the counts
    ("present", 4.9, 0.0, 5.0, 4.0, "CNS2"),  # WBC just below 5
    ("present", 5.0, 9.9, 5.0, 4.0, "CNS3"),  # WBC 5, RBC just below 10
    ("present", 5.0, 10.0, 5.0, 4.0, "CNS3"),  # traumatic: 5/10 = 0.5 > 2 x 5e3/4e6
    ("present", 6.0, 12000.0, 5.0, 4.0, "CNS2"),  # traumatic: 0.0005 < 2 x 0.00125
    ("present", 25.0, 10000.0, 5.0, 4.0, "CNS2"),  # 0.0025 = 2 x 0.00125 exactly: not above
    ("present", 26.0, 10000.0, 5.0, 4.0, "CNS3"),  # 0.0026 > 0.0025
    ("present", 20.0, 500.0, None, None, "CNS2"),  # traumatic tap without blood counts: CNS2
]


@pytest.mark.parametrize(("blasts", "wbc", "rbc", "bwbc", "brbc", "status"), CNS_CASES)
def test_cns_status_at_every_boundary(blasts, wbc, rbc, bwbc, brbc, status):
    con = _db([_csf(-5, blasts, wbc, rbc, bwbc, brbc)])
    assert con.execute("SELECT cns_status FROM harmonized.cns_status").fetchone()[0] == status


def _mention(
    day: int, assertion_label: str, group: str = "testis", modality: str = "CT", row: int = 2
) -> dict:
    return {
        "_source_file": "imaging.csv",
        "_source_row": row,
        "patient_key": "k0",
        "site": "S",
        "report_date": (DAY0 + dt.timedelta(days=day)).isoformat(),
        "modality": modality,
        "sentence_no": 1,
        "sentence": "text",
        "term": group,
        "site_group": group,
        "icdo3": "C62.9",
        "laterality": None,
        "assertion": assertion_label,
    }


def _flags(con) -> tuple:
    return con.execute(
        "SELECT prior_em, active_em_at_start, em_sites_at_start FROM harmonized.em_patient_baseline"
    ).fetchone()


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (-31, (True, False, None)),
        (-30, (True, True, "testis")),
        (7, (False, True, "testis")),
        (8, (False, False, None)),
    ],
)
def test_active_em_window_edges(day, expected):
    assert _flags(_db(mentions=[_mention(day, "present")])) == expected


def test_active_window_is_configurable():
    con = _db(mentions=[_mention(10, "present")], definitions={"active_em_window_end_day": 14})
    assert _flags(con)[1] is True


def test_prior_em_from_history_and_from_csf():
    assert _flags(_db(mentions=[_mention(3, "historical")]))[0] is True
    assert _flags(_db(mentions=[_mention(30, "historical")]))[0] is False
    assert _flags(_db(mentions=[_mention(-100, "resolved")]))[0] is True
    assert _flags(_db(mentions=[_mention(-100, "possible"), _mention(-50, "absent")]))[0] is False
    assert _flags(_db([_csf(-5, "present", 30.0, 0.0)])) == (True, True, "cns")


def test_better_evidence_overrules_a_present_finding_of_the_same_day():
    pathology_says_no = [
        _mention(-2, "present", modality="CT", row=2),
        _mention(-2, "absent", modality="pathology", row=3),
    ]
    con = _db(mentions=pathology_says_no)
    assert _flags(con)[1] is False
    rows = con.execute(
        "SELECT evidence_source, assertion, counts_as_present FROM harmonized.em_findings ORDER BY evidence_rank"
    ).fetchall()
    assert rows == [("pathology", "absent", False), ("imaging", "present", False)]
    exam_says_no = [
        _mention(-2, "present", modality="CT", row=2),
        _mention(-2, "absent", modality="exam", row=3),
    ]
    assert _flags(_db(mentions=exam_says_no))[1] is True


def test_findings_are_traceable_to_file_row_and_sentence():
    con = _db(mentions=[_mention(-2, "present", row=17)])
    assert con.execute(
        "SELECT _source_file, _source_row, sentence_no FROM harmonized.em_findings"
    ).fetchall() == [("imaging.csv", 17, 1)]

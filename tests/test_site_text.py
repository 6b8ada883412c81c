"""The words a query says to a site: one for every check, none addressed to the steward."""

from __future__ import annotations

import re

import pytest

from blinaetl.ingest.sources import load_sources
from blinaetl.reports.outbox import check_words, load_site_text, rule_words
from blinaetl.validate.contracts import load_contracts

CONTRACTS = load_contracts()
CHECKS = [(c, t) for t in CONTRACTS.values() for c in t.checks]
STEWARD_WORDS = re.compile(r"mapping|steward|contract|quarantin|pipeline|blinaetl", re.I)


@pytest.mark.parametrize("check,contract", CHECKS, ids=[c.id for c, _ in CHECKS])
def test_every_check_has_site_words_that_do_not_speak_to_the_steward(check, contract):
    expected, fix = check_words(load_site_text(), check, contract, {})
    assert expected and fix
    assert "{" not in expected + fix, "every placeholder filled"
    assert not STEWARD_WORDS.search(expected + fix), (check.id, expected, fix)


def test_the_words_use_the_sites_own_column_names():
    site02 = next(s for s in load_sources(None, CONTRACTS) if s.source == "site02_clinical")
    fm = next(f for f in site02.files if f.table == "assessments")
    check = next(c for c in CONTRACTS["assessments"].checks if c.id == "ASM_AFTER_DX")
    expected, fix = check_words(load_site_text(), check, CONTRACTS["assessments"], fm.columns)
    assert fm.columns["assessment_date"] != "assessment_date"
    assert expected.startswith(fm.columns["assessment_date"] + " on or after")
    rng = next(c for c in CONTRACTS["assessments"].checks if c.id == "ASM_PLT_RANGE")
    expected, fix = check_words(load_site_text(), rng, CONTRACTS["assessments"], fm.columns)
    assert expected == "a number from 0 to 2000 10^9/L"
    assert "mapping" in rng.message and "mapping" not in fix


def test_file_level_rules_name_the_problem_without_the_stewards_fix():
    error = "x.csv: required column(s) 'MRN' not found (for mrn). Fix: correct 'columns' in the source mapping"
    expected, fix = rule_words(load_site_text(), "FILE_REJECTED", error)
    assert "required column(s) 'MRN' not found" in fix
    assert "source mapping" not in fix and expected

"""Negation on the public NegEx test kit (benchmarks/negex_benchmark.py), and that benchmark's
NegEx implementation on hand-worked cases.

The kit (github.com/chapmanbe/negex, negex.python/Annotations-1-120.txt: 2,376 pairs) is not
in this repository (no licence is stated for it); the test reads a local copy: the snapshot
path in the benchmark or $BLINAETL_NEGEX_REPO. Issue 17's targets: F1 >= 0.95 and accuracy
>= 0.98, above negspacy's 0.937 and the original NegEx.
"""

from __future__ import annotations

import pytest

from benchmarks import negex_benchmark as nb

RULES = [
    ("no", "PREN"),
    ("denies", "PREN"),
    ("free", "POST"),
    ("but", "CONJ"),
    ("no increase", "PSEU"),
    ("possible", "PREP"),
]


@pytest.mark.parametrize(
    ("sentence", "concept", "negated"),
    [
        ("No fever.", "fever", True),
        ("Denies chest pain or cough.", "cough", True),  # scope runs on to the sentence end
        ("No fever but a cough.", "cough", False),  # a conjunction ends the scope
        ("No increase in edema.", "edema", False),  # a pseudo-trigger is not a negation
        ("Edema free.", "edema", True),  # post-negation
        ("Possible pneumonia.", "pneumonia", False),  # possible negation is not counted
        ("No possible pneumonia.", "pneumonia", False),  # the nearest trigger decides
        ("Fever.", "cough", False),  # a concept not in the sentence is not negated
    ],
)
def test_negex_implementation_on_hand_worked_cases(sentence, concept, negated):
    assert nb.NegEx(RULES).negated(sentence, concept) is negated


def test_negex_five_word_window():
    far = "No sign at all of anything like fever."
    assert nb.NegEx(RULES).negated(far, "fever")
    assert not nb.NegEx(RULES, window=5).negated(far, "fever")


def test_scores_by_hand():
    s = nb.scores([True, True, False, False], [True, False, True, False])
    assert (s["precision"], s["recall"], s["f1"], s["accuracy"]) == (0.5, 0.5, 0.5, 0.5)


@pytest.fixture(scope="module")
def kit():
    source = nb.negex_source()
    if source is None:
        pytest.skip("NegEx kit not available here: set BLINAETL_NEGEX_REPO to a copy")
    return nb.load_kit(source), nb.load_triggers(source)


def test_kit_is_the_published_one(kit):
    pairs, rules = kit
    assert pairs.height == 2376
    assert pairs["negated"].sum() == 491
    assert {t for _, t in rules} >= {"PREN", "POST", "PREP", "POSP", "PSEU", "CONJ"}


def test_our_negation_meets_the_targets_and_beats_negex(kit):
    pairs, rules = kit
    gold = pairs["negated"].to_list()
    ours = nb.scores(gold, nb.ours(pairs))
    negex = nb.NegEx(rules)
    theirs = nb.scores(
        gold,
        [negex.negated(s, c) for s, c in zip(pairs["sentence"], pairs["concept"], strict=True)],
    )
    assert ours["f1"] >= 0.95, ours
    assert ours["accuracy"] >= 0.98, ours
    assert ours["f1"] > theirs["f1"], (ours, theirs)

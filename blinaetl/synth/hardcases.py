"""The hard cases of the synthetic generator (issue 16): names, default rates, validation.

Each is a situation where a derivation rule matters, planted at a rate among the patients it
can apply to (docs/derivations.md, "Hard cases of the synthetic generator"). Plain Python, no
numpy: the CLI reads the names for its help and its checks without loading the generator.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

HARD_CASE_RATES: dict[str, float] = {
    # responders (at the first assessment, no HCT, no relapse) who die in remission before r2
    "early_death_responder": 0.30,
    # relapsed responders without HCT in CR who are transplanted after the relapse
    "hct_after_relapse": 0.30,
    # refractory patients alive well after the second assessment who are transplanted anyway
    "hct_non_responder": 0.15,
    # relapsed responders with marrow relapse whose relapse the site does not report
    "relapse_unreported": 0.20,
    # patients without CNS disease whose baseline CSF has blasts, WBC >= 5/uL and no RBC count
    "csf_rbc_missing": 0.05,
    # responders with active EM at start whose EM is never shown resolved (CR_em_not_reassessed)
    "em_never_reassessed": 0.50,
    # refractory patients with EM at start and EM near failure at the same (persistent) site
    "em_persistent_at_failure": 0.50,
    # responders whose response-window assessments carry only the site's response label
    "response_labels_only": 0.10,
    # relapsed patients who die on the day of the relapse (event tie)
    "tie_relapse_death": 0.15,
    # alive patients whose last contact is the day of their latest record (censoring tie)
    "tie_last_contact": 0.15,
}

# hard case -> the patient-frame column flagging the patients it was planted on
HARD_CASE_COLUMNS: dict[str, str] = {
    "early_death_responder": "early_death",
    "hct_after_relapse": "hct_after_relapse",
    "hct_non_responder": "hct_refractory",
    "relapse_unreported": "relapse_unreported",
    "csf_rbc_missing": "csf_rbc_missing",
    "em_never_reassessed": "em_unreassessed",
    "em_persistent_at_failure": "persistent_em",
    "response_labels_only": "labels_only",
    "tie_relapse_death": "tie_death",
    "tie_last_contact": "last_contact_tie",
}


def hard_case_names() -> str:
    """The hard cases' names, comma-separated, for messages and help."""
    return ", ".join(HARD_CASE_RATES)


def check_hard_case_rate(name: object, rate: object) -> float:
    """`rate` as a float when `name` is a hard case and the rate a number from 0 to 1.

    ValueError otherwise, naming the bad name or value and the valid names and range.
    """
    if name not in HARD_CASE_RATES:
        raise ValueError(f"unknown hard case {name!r}; hard cases: {hard_case_names()}")
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or math.isnan(rate):
        raise ValueError(f"rate of hard case {name!r} must be a number from 0 to 1, got {rate!r}")
    value = float(rate)
    if not 0 <= value <= 1:
        raise ValueError(f"rate of hard case {name!r} must be from 0 to 1, got {rate!r}")
    return value


def check_hard_case_rates(rates: Mapping[str, object] | None) -> dict[str, float]:
    """Every hard case's rate: the defaults overridden by `rates`, each checked."""
    given = {name: check_hard_case_rate(name, rate) for name, rate in (rates or {}).items()}
    return {**HARD_CASE_RATES, **given}


def parse_hard_case(text: str) -> tuple[str, float]:
    """`NAME=RATE` (as the CLI takes it) -> (name, rate); ValueError naming what is wrong."""
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name or not value:
        raise ValueError(f"expected NAME=RATE, got {text!r}; hard cases: {hard_case_names()}")
    if name not in HARD_CASE_RATES:
        raise ValueError(f"unknown hard case {name!r} in {text!r}; hard cases: {hard_case_names()}")
    try:
        rate = float(value)
    except ValueError:
        raise ValueError(
            f"rate of hard case {name!r} must be a number from 0 to 1, got {value!r}"
        ) from None
    return name, check_hard_case_rate(name, rate)

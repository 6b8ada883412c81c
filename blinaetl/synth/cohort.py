"""Simulate the ground-truth cohort: one row per patient, vectorized with numpy.

Every random draw is a whole-cohort array operation; there is no per-patient Python loop.
Probabilities are calibrated to the seed study (domain.md section 0): about half respond;
marrow blasts > 50%, prior and active EM lower the chance of response; about 45% of
responders are transplanted, about 60% relapse; EM failure is common and more likely with
moderate/strong baseline CD19 and prior EM.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from blinaetl.synth.hardcases import HARD_CASE_COLUMNS, HARD_CASE_RATES, check_hard_case_rates
from blinaetl.synth.phrases import EM_SITE_TERMS, LATERAL_GROUPS

__all__ = ["HARD_CASE_COLUMNS", "HARD_CASE_RATES", "simulate_patients"]

CD19_CLASSES = np.array(["negative", "dim", "moderate", "strong"])
EM_GROUPS = np.array(sorted(EM_SITE_TERMS))
# How often each EM site group is chosen (CNS and testis dominate in ALL).
_GROUP_WEIGHT = {
    "cns": 0.30,
    "testis": 0.10,
    "skin": 0.08,
    "lymph_node": 0.10,
    "soft_tissue": 0.06,
    "bone": 0.05,
    "mediastinum": 0.05,
    "liver": 0.03,
    "spleen": 0.03,
    "kidney": 0.03,
    "eye_orbit": 0.02,
    "breast": 0.02,
    "pleura": 0.02,
    "ovary": 0.02,
    "parotid": 0.02,
    "gi_tract": 0.03,
    "adrenal": 0.02,
    "pancreas": 0.02,
}
GROUP_P = np.array([_GROUP_WEIGHT[g] for g in EM_GROUPS])
GROUP_P = GROUP_P / GROUP_P.sum()

LAST_NAMES = np.array(
    [
        "Smith", "Johnson", "Garcia", "Nguyen", "Müller", "Ñúñez", "Kowalski", "O'Brien",
        "Lefèvre", "Søndergaard", "Rossi", "Tanaka", "Okafor", "Peña", "Hernández",
        "Dubois", "Schröder", "Andersson", "Kim", "Cohen", "Martínez", "Çelik", "Brown",
        "Fernández", "Walker", "Papadopoulos", "Singh", "Haddad", "Novák", "García-López",
    ]
)  # fmt: skip
FIRST_NAMES = np.array(
    [
        "José", "Françoise", "Maria", "John", "Aiko", "Chinedu", "Ingrid", "Mateo", "Zoë",
        "Björn", "Ana", "David", "Fatima", "Luca", "Émile", "Sofia", "Noah", "Hélène",
        "Oskar", "Mei", "Raúl", "Grace", "Jürgen", "Amara", "Liam", "Inés", "Tomás", "Eva",
    ]
)  # fmt: skip

EPOCH = dt.date(2012, 1, 1)


def _bern(rng: np.random.Generator, p: np.ndarray | float, n: int) -> np.ndarray:
    return rng.random(n) < p


def _pick(rng: np.random.Generator, values: np.ndarray, p: np.ndarray | None, n: int):
    return values[rng.choice(len(values), size=n, p=p)]


def full_years(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Whole years from `start` to `end` (datetime64[D] arrays), as an age is counted."""

    def parts(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = d.astype("datetime64[D]")
        year = d.astype("datetime64[Y]").astype(int) + 1970
        month_start = d.astype("datetime64[M]")
        month_day = (month_start.astype(int) % 12 + 1) * 100 + (d - month_start).astype(int) + 1
        return year, month_day

    sy, smd = parts(start)
    ey, emd = parts(end)
    return ey - sy - (emd < smd).astype(int)


# the patient frame's columns, in order (values from the stages' dict of whole-cohort arrays)
PATIENT_FRAME_COLUMNS = (
    "pid", "site", "mrn", "last_name", "first_name", "sex", "birth_date", "diagnosis_date",
    "day0", "age_at_start", "ph_status", "prior_lines", "prior_hct", "bm_blasts_pct", "hist_em",
    "hist_group", "active_em", "active_group", "cd19_base_true", "best_response", "responder",
    "r1", "r2", "response_day", "mrd_state", "hct", "hct_row", "marrow_responder",
    "marrow_response_day", "marrow_best", "em_unreassessed", "labels_only", "persistent_em",
    "refr_isolated_em", "em_fail_report", "early_death", "hct_after_relapse", "hct_refractory",
    "tie_death", "relapse_unreported", "csf_rbc_missing", "last_contact_tie", "hct_day",
    "relapsed", "relapse_day", "refr_only_r1", "failure_type", "failure_day", "failure_pattern",
    "em_fail", "fail_group", "cd19_fail_true", "fail_evaluable", "died", "death_day",
    "ne_lost_day", "followup", "lateral",
)  # fmt: skip

Cohort = dict[str, np.ndarray]


class HardCases:
    """The hard cases' own random stream and rates; `case` draws one for every patient."""

    def __init__(self, n: int, rng: np.random.Generator | None, rates: dict[str, float]) -> None:
        self.n = n
        self.rates = rates
        # without hard cases every rate is 0 and a fixed stream keeps the code path the same
        self.rng = rng or np.random.default_rng(0)

    def case(self, name: str, eligible: np.ndarray) -> np.ndarray:
        """The eligible patients the hard case `name` is planted on, at its rate.

        A case with a rate above 0 is planted at least once when any patient is eligible (on
        the eligible patient whose draw came closest to the rate), so a small cohort such as the
        demo exercises every enabled case; this draws nothing more from the stream.
        """
        u = self.rng.random(self.n)
        rate = self.rates[name]
        picked = eligible & (u < rate)
        if rate > 0 and eligible.any() and not picked.any():
            candidates = np.flatnonzero(eligible)
            picked = np.zeros(self.n, bool)
            picked[candidates[np.argmin(u[candidates])]] = True
        return picked

    def integers(self, low: int, high: int) -> np.ndarray:
        return self.rng.integers(low, high, self.n)


def resolve_hard_rates(
    hard: np.random.Generator | None, hard_rates: dict[str, float] | None
) -> dict[str, float]:
    """Every hard case's rate: HARD_CASE_RATES overridden by `hard_rates`; all 0 without `hard`."""
    if hard is None:
        return {k: 0.0 for k in HARD_CASE_RATES}
    return check_hard_case_rates(hard_rates)


def draw_identity(rng: np.random.Generator, n: int) -> Cohort:
    """Site, MRN (unique within the site), names and sex."""
    site = np.where(rng.random(n) < 0.5, "SITE01", "SITE02")
    mrn_num = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    mrn = np.where(
        site == "SITE01",
        np.char.add("A", mrn_num.astype(str)),
        np.char.add("55-", (mrn_num % 1_000_000).astype(str).astype("U6")),
    )
    # SITE02 numbers are 6 digits: make them unique within the site by construction
    s2 = site == "SITE02"
    s2_numbers = rng.choice(900_000, size=int(s2.sum()), replace=False) + 100_000
    if s2.any():  # numpy's zfill fails on an empty array
        mrn[s2] = np.char.add("55-", np.char.zfill(s2_numbers.astype(str), 6))
    return {
        "pid": np.arange(n),
        "site": site,
        "mrn": mrn,
        "last_name": _pick(rng, LAST_NAMES, None, n),
        "first_name": _pick(rng, FIRST_NAMES, None, n),
        "sex": np.where(rng.random(n) < 0.45, "F", "M"),
    }


def draw_dates(rng: np.random.Generator, n: int) -> Cohort:
    """Day 0 (blinatumomab cycle 1), birth date, age at day 0 and diagnosis date."""
    day0 = np.datetime64(EPOCH) + rng.integers(0, 5 * 365, n).astype("timedelta64[D]")
    age_target = rng.integers(18, 81, n)
    birth = day0 - (age_target * 365.25 + rng.integers(0, 360, n)).astype("timedelta64[D]")
    diagnosis = day0 - rng.integers(120, 1500, n).astype("timedelta64[D]")
    return {
        "birth_date": birth.astype("datetime64[D]"),
        "diagnosis_date": diagnosis.astype("datetime64[D]"),
        "day0": day0.astype("datetime64[D]"),
        "age_at_start": full_years(birth, day0),
    }


def draw_group(rng: np.random.Generator, sex: np.ndarray) -> np.ndarray:
    """One EM site group per patient; testis only for males, ovary only for females."""
    g = _pick(rng, EM_GROUPS, GROUP_P, len(sex))
    return np.where(
        (g == "testis") & (sex == "F"),
        "skin",
        np.where((g == "ovary") & (sex == "M"), "lymph_node", g),
    )


def draw_baseline(rng: np.random.Generator, c: Cohort) -> Cohort:
    """Ph status, prior therapy, marrow blasts, prior and active EM, baseline CD19."""
    n = len(c["pid"])
    ph = _pick(rng, np.array(["positive", "negative", "unknown"]), np.array([0.25, 0.72, 0.03]), n)
    prior_lines = rng.integers(1, 6, n)
    prior_hct = _bern(rng, 0.30, n)
    blasts = np.round(rng.uniform(6, 95, n), 1)
    blasts = np.where(np.abs(blasts - 50) < 1.0, 53.0, blasts)
    hist_em = _bern(rng, 0.25, n)
    active_em = _bern(rng, 0.15, n)
    cd19_base_true = _pick(rng, CD19_CLASSES, np.array([0.03, 0.15, 0.35, 0.47]), n)
    hist_group = draw_group(rng, c["sex"])
    active_group = draw_group(rng, c["sex"])
    return {
        "ph_status": ph,
        "prior_lines": prior_lines,
        "prior_hct": prior_hct,
        "bm_blasts_pct": blasts,
        "hist_em": hist_em,
        "hist_group": hist_group,
        "active_em": active_em,
        "active_group": active_group,
        "cd19_base_true": cd19_base_true,
        "lateral": np.isin(active_group, list(LATERAL_GROUPS)),
    }


def draw_response(rng: np.random.Generator, hc: HardCases, c: Cohort) -> Cohort:
    """Best response, assessment days, response day, MRD; EM never reassessed, labels only."""
    n = len(c["pid"])
    gt50 = c["bm_blasts_pct"] > 50
    logit = (
        0.95
        - 0.9 * gt50
        - 0.9 * c["hist_em"]
        - 0.8 * c["active_em"]
        - 2.0 * (c["cd19_base_true"] == "negative")
    )
    responder = rng.random(n) < 1 / (1 + np.exp(-logit))
    u = rng.random(n)
    resp_cat = np.where(u < 0.70, "CR", np.where(u < 0.85, "CRh", "CRi"))
    u = rng.random(n)
    nonresp_cat = np.where(u < 0.88, "refractory", np.where(u < 0.94, "hypoplastic", "NE"))
    best = np.where(responder, resp_cat, nonresp_cat)

    r1 = rng.integers(26, 37, n)
    r2 = rng.integers(68, 81, n)
    responded_at_r1 = responder & _bern(rng, 0.7, n)
    response_day = np.where(responder, np.where(responded_at_r1, r1, r2), -1)
    # NE: no marrow assessment in the window; dies or is lost before day 20
    ne = best == "NE"

    # hard case: active EM at start never reassessed -> marrow remission, no response
    marrow_responder = responder.copy()
    marrow_response_day = response_day.copy()
    em_unreassessed = hc.case("em_never_reassessed", responder & c["active_em"])
    responder = responder & ~em_unreassessed
    best = np.where(em_unreassessed, "CR_em_not_reassessed", best)
    marrow_best = np.where(em_unreassessed, resp_cat, best)
    response_day = np.where(responder, response_day, -1)
    labels_only = hc.case("response_labels_only", responder)

    # MRD among responders: 60% negative, 10% not measured
    u = rng.random(n)
    mrd_state = np.where(u < 0.60, "neg", np.where(u < 0.90, "pos", "none"))
    mrd_state = np.where(responder, mrd_state, "none")
    return {
        "best_response": best,
        "responder": responder,
        "ne": ne,
        "r1": r1,
        "r2": r2,
        "responded_at_r1": responded_at_r1,
        "response_day": response_day,
        "mrd_state": mrd_state,
        "marrow_responder": marrow_responder,
        "marrow_response_day": marrow_response_day,
        "marrow_best": marrow_best,
        "em_unreassessed": em_unreassessed,
        "labels_only": labels_only,
    }


def draw_failure(rng: np.random.Generator, c: Cohort) -> Cohort:
    """Refractory EM progression, transplant in remission, relapse and its EM involvement."""
    n = len(c["pid"])
    # refractory failure: EM progression in ~41%; isolated EM in about a third of those
    refr = c["best_response"] == "refractory"
    modstrong = np.isin(c["cd19_base_true"], ["moderate", "strong"])
    p_em_fail = 0.22 + 0.20 * modstrong + 0.15 * c["hist_em"]
    refr_em = refr & (rng.random(n) < p_em_fail)
    refr_isolated_em = refr_em & _bern(rng, 0.35, n)
    # refractory patients who die before the second assessment have only r1
    refr_only_r1 = refr & ~refr_em & _bern(rng, 0.10, n)

    responder, response_day = c["responder"], c["response_day"]
    hct = responder & _bern(rng, 0.45, n)
    hct_day = np.where(hct, response_day + rng.integers(30, 121, n), -1)
    p_rel = np.where(hct, 0.45, 0.72)
    relapsed = responder & (rng.random(n) < p_rel)
    rel_anchor = np.where(hct, hct_day, response_day)
    relapse_day = np.where(relapsed, rel_anchor + rng.integers(60, 401, n), -1)
    u = rng.random(n)
    p_em_rel = np.clip(0.25 + 0.20 * modstrong + 0.15 * c["hist_em"], 0, 1)
    rel_em = relapsed & (u < p_em_rel)
    rel_isolated_em = rel_em & _bern(rng, 0.6, n)
    return {
        "refr": refr,
        "refr_em": refr_em,
        "refr_isolated_em": refr_isolated_em,
        "refr_only_r1": refr_only_r1,
        "hct": hct,
        "hct_day": hct_day,
        "relapsed": relapsed,
        "relapse_day": relapse_day,
        "rel_em": rel_em,
        "rel_isolated_em": rel_isolated_em,
    }


def derive_failure_pattern(hc: HardCases, c: Cohort) -> Cohort:
    """Failure type and day, EM at failure (new vs persistent) and the failure pattern."""
    responder, relapsed, refr = c["responder"], c["relapsed"], c["refr"]
    # every non-responder is refractory (issue 16 rule 3), failing on the first assessment (r1);
    # NE patients have no assessment, hence no failure day
    failure_type = np.where(~responder, "refractory", np.where(relapsed, "relapse", ""))
    failure_day = np.where(
        ~responder, np.where(c["ne"], -1, c["r1"]), np.where(relapsed, c["relapse_day"], -1)
    )
    # hard case: EM near failure at the start site, never shown clear -> persistent, not new
    persistent_em = hc.case("em_persistent_at_failure", c["refr_em"] & c["active_em"])
    em_fail_report = c["refr_em"] | c["rel_em"]
    em_fail = em_fail_report & ~persistent_em
    # marrow involvement on the failure day: refractory marrow (not the isolated-EM kind),
    # relapse marrow, or the 'early' first marrow of an unreassessed patient responding at r2
    marrow_fail = (
        (refr & ~c["refr_isolated_em"])
        | (relapsed & ~c["rel_isolated_em"])
        | (c["em_unreassessed"] & ~c["responded_at_r1"])
    )
    failure_pattern = np.where(
        failure_type == "",
        "none",
        np.where(
            em_fail & marrow_fail,
            "combined",
            np.where(
                em_fail, "isolated_em", np.where(marrow_fail, "isolated_marrow", "unclassified")
            ),
        ),
    )
    return {
        "failure_type": failure_type,
        "failure_day": failure_day,
        "persistent_em": persistent_em,
        "em_fail_report": em_fail_report,
        "em_fail": em_fail,
        "failure_pattern": failure_pattern,
    }


def draw_failure_phenotype(rng: np.random.Generator, c: Cohort) -> Cohort:
    """CD19 class at failure (evaluable or not) and the EM site group of the failure."""
    n = len(c["pid"])
    refr, active_group = c["refr"], c["active_group"]
    # CD19 at failure: refractory neg 18% dim 23%; relapse neg 35% dim 6%; 15% not evaluable
    u = rng.random(n)
    fail_cls_refr = np.where(
        u < 0.18, "negative", np.where(u < 0.41, "dim", np.where(u < 0.70, "moderate", "strong"))
    )
    fail_cls_rel = np.where(
        u < 0.35, "negative", np.where(u < 0.41, "dim", np.where(u < 0.70, "moderate", "strong"))
    )
    cd19_fail_true = np.where(refr, fail_cls_refr, fail_cls_rel)
    fail_evaluable = (refr | c["relapsed"]) & _bern(rng, 0.85, n)
    fail_group = draw_group(rng, c["sex"])
    # EM at failure is new disease: a refractory patient's failure site is not the start site
    other = draw_group(rng, c["sex"])
    fail_group = np.where(
        refr & c["active_em"] & (fail_group == active_group),
        np.where(
            other == active_group, np.where(active_group == "liver", "spleen", "liver"), other
        ),
        fail_group,
    )
    fail_group = np.where(c["persistent_em"], active_group, fail_group)
    return {
        "cd19_fail_true": cd19_fail_true,
        "fail_evaluable": fail_evaluable,
        "fail_group": fail_group,
    }


def draw_survival(rng: np.random.Generator, c: Cohort) -> Cohort:
    """Death and its day, NE loss day, open follow-up."""
    n = len(c["pid"])
    responder, relapsed, ne = c["responder"], c["relapsed"], c["ne"]
    r1, r2, refr_only_r1 = c["r1"], c["r2"], c["refr_only_r1"]
    death_p = np.where(~responder, 0.85, np.where(relapsed, 0.70, 0.20))
    died = rng.random(n) < death_p
    death_day = np.where(
        ne,
        rng.integers(8, 20, n),
        np.where(
            ~responder,
            np.where(refr_only_r1, r1 + rng.integers(5, 30, n), r2 + rng.integers(20, 300, n)),
            np.where(
                relapsed, c["relapse_day"] + rng.integers(30, 300, n), rng.integers(300, 1400, n)
            ),
        ),
    )
    died = died | ne & _bern(rng, 0.6, n) | refr_only_r1
    return {
        "died": died,
        "death_day": death_day,
        "ne_lost_day": rng.integers(10, 20, n),
        "followup": rng.integers(250, 1500, n),
    }


def draw_followup_hard_cases(hc: HardCases, c: Cohort) -> Cohort:
    """Early deaths in remission, transplants out of remission, an unreported relapse, ties."""
    responder, relapsed, hct = c["responder"], c["relapsed"], c["hct"]
    refr, r1, r2 = c["refr"], c["r1"], c["r2"]
    died, death_day = c["died"], c["death_day"]
    early_death = hc.case(
        "early_death_responder", responder & c["responded_at_r1"] & ~hct & ~relapsed
    )
    died = died | early_death
    death_day = np.where(early_death, r1 + 5 + hc.integers(0, 26), death_day)
    tie_death = hc.case("tie_relapse_death", relapsed)
    died = died | tie_death
    death_day = np.where(tie_death, c["relapse_day"], death_day)
    late_hct = c["relapse_day"] + 20 + hc.integers(0, 31)
    hct_after_relapse = hc.case(
        "hct_after_relapse", relapsed & ~hct & ~tie_death & (~died | (death_day > late_hct + 1))
    )
    refr_hct = r2 + 10 + hc.integers(0, 21)
    hct_refractory = hc.case(
        "hct_non_responder", refr & ~c["refr_only_r1"] & (~died | (death_day > refr_hct + 1))
    )
    hct_row = hct | hct_after_relapse | hct_refractory
    hct_day = np.where(
        hct_after_relapse, late_hct, np.where(hct_refractory, refr_hct, c["hct_day"])
    )
    relapse_unreported = hc.case("relapse_unreported", relapsed & ~c["rel_isolated_em"])
    cns_at_start = c["active_em"] & (c["active_group"] == "cns")
    csf_rbc_missing = hc.case("csf_rbc_missing", ~cns_at_start & ~c["ne"])
    last_contact_tie = hc.case("tie_last_contact", ~died)
    return {
        "died": died,
        "death_day": death_day,
        "early_death": early_death,
        "tie_death": tie_death,
        "hct_after_relapse": hct_after_relapse,
        "hct_refractory": hct_refractory,
        "hct_row": hct_row,
        "hct_day": hct_day,
        "relapse_unreported": relapse_unreported,
        "csf_rbc_missing": csf_rbc_missing,
        "last_contact_tie": last_contact_tie,
    }


def simulate_patients(
    n: int,
    rng: np.random.Generator,
    hard: np.random.Generator | None = None,
    hard_rates: dict[str, float] | None = None,
) -> pl.DataFrame:
    """The true state of every patient: baseline, response, failure, transplant, survival.

    Days are study days from blinatumomab cycle 1 (day 0). `hard` draws the hard cases at
    `hard_rates` (default HARD_CASE_RATES; unknown names are refused); None: no hard case.
    The stages draw from `rng` (and `hard`) in a fixed order: that order is the seed's cohort.
    """
    hc = HardCases(n, hard, resolve_hard_rates(hard, hard_rates))
    c: Cohort = draw_identity(rng, n)
    c |= draw_dates(rng, n)
    c |= draw_baseline(rng, c)
    c |= draw_response(rng, hc, c)
    c |= draw_failure(rng, c)
    c |= derive_failure_pattern(hc, c)
    c |= draw_failure_phenotype(rng, c)
    c |= draw_survival(rng, c)
    c |= draw_followup_hard_cases(hc, c)
    return pl.DataFrame({name: c[name] for name in PATIENT_FRAME_COLUMNS})

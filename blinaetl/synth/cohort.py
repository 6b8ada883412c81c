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

from blinaetl.synth.phrases import EM_SITE_TERMS, LATERAL_GROUPS

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


# Hard cases (issue 16): the situations where the derivation rules matter, each at a rate among
# the patients it can apply to. They are drawn from their own random stream, so switching them
# off (rate 0) leaves every other draw of the cohort unchanged.
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


def simulate_patients(
    n: int,
    rng: np.random.Generator,
    hard: np.random.Generator | None = None,
    hard_rates: dict[str, float] | None = None,
) -> pl.DataFrame:
    """The true state of every patient: baseline, response, failure, transplant, survival.

    Days are study days from blinatumomab cycle 1 (day 0). `hard` draws the hard cases at
    `hard_rates` (default HARD_CASE_RATES; unknown names are refused); None: no hard case.
    """
    rates = {k: 0.0 for k in HARD_CASE_RATES}
    if hard is not None:
        unknown = set(hard_rates or {}) - set(HARD_CASE_RATES)
        if unknown:
            raise ValueError(
                f"unknown hard case(s) {sorted(unknown)}; known: {', '.join(HARD_CASE_RATES)}"
            )
        rates = {**HARD_CASE_RATES, **(hard_rates or {})}
    hard = hard or np.random.default_rng(0)

    def case(name: str, eligible: np.ndarray) -> np.ndarray:
        return eligible & (hard.random(n) < rates[name])

    idx = np.arange(n)
    site = np.where(rng.random(n) < 0.5, "SITE01", "SITE02")
    mrn_num = rng.choice(9_000_000, size=n, replace=False) + 1_000_000
    mrn = np.where(
        site == "SITE01",
        np.char.add("A", mrn_num.astype(str)),
        np.char.add("55-", (mrn_num % 1_000_000).astype(str).astype("U6")),
    )
    # SITE02 numbers are 6 digits: make them unique within the site by construction
    s2 = site == "SITE02"
    mrn[s2] = np.char.add(
        "55-",
        np.char.zfill(
            (rng.choice(900_000, size=int(s2.sum()), replace=False) + 100_000).astype(str), 6
        ),
    )
    last = _pick(rng, LAST_NAMES, None, n)
    first = _pick(rng, FIRST_NAMES, None, n)
    sex = np.where(rng.random(n) < 0.45, "F", "M")

    day0 = np.datetime64(EPOCH) + rng.integers(0, 5 * 365, n).astype("timedelta64[D]")
    age_target = rng.integers(18, 81, n)
    birth = day0 - (age_target * 365.25 + rng.integers(0, 360, n)).astype("timedelta64[D]")
    age = full_years(birth, day0)
    diagnosis = day0 - rng.integers(120, 1500, n).astype("timedelta64[D]")

    ph = _pick(rng, np.array(["positive", "negative", "unknown"]), np.array([0.25, 0.72, 0.03]), n)
    prior_lines = rng.integers(1, 6, n)
    prior_hct = _bern(rng, 0.30, n)

    blasts = np.round(rng.uniform(6, 95, n), 1)
    blasts = np.where(np.abs(blasts - 50) < 1.0, 53.0, blasts)
    gt50 = blasts > 50
    hist_em = _bern(rng, 0.25, n)
    active_em = _bern(rng, 0.15, n)
    cd19_base_true = _pick(rng, CD19_CLASSES, np.array([0.03, 0.15, 0.35, 0.47]), n)

    # EM sites: one group per episode; testis only for males
    def draw_group() -> np.ndarray:
        g = _pick(rng, EM_GROUPS, GROUP_P, n)
        return np.where(
            (g == "testis") & (sex == "F"),
            "skin",
            np.where((g == "ovary") & (sex == "M"), "lymph_node", g),
        )

    hist_group = draw_group()
    active_group = draw_group()

    logit = (
        0.95 - 0.9 * gt50 - 0.9 * hist_em - 0.8 * active_em - 2.0 * (cd19_base_true == "negative")
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
    em_unreassessed = case("em_never_reassessed", responder & active_em)
    responder = responder & ~em_unreassessed
    best = np.where(em_unreassessed, "CR_em_not_reassessed", best)
    marrow_best = np.where(em_unreassessed, resp_cat, best)
    response_day = np.where(responder, response_day, -1)
    labels_only = case("response_labels_only", responder)

    # MRD among responders: 60% negative, 10% not measured
    u = rng.random(n)
    mrd_state = np.where(u < 0.60, "neg", np.where(u < 0.90, "pos", "none"))
    mrd_state = np.where(responder, mrd_state, "none")

    # refractory failure: EM progression in ~41%; isolated EM in about a third of those
    refr = best == "refractory"
    modstrong = np.isin(cd19_base_true, ["moderate", "strong"])
    p_em_fail = 0.22 + 0.20 * modstrong + 0.15 * hist_em
    refr_em = refr & (rng.random(n) < p_em_fail)
    refr_isolated_em = refr_em & _bern(rng, 0.35, n)
    # refractory patients who die before the second assessment have only r1
    refr_only_r1 = refr & ~refr_em & _bern(rng, 0.10, n)

    hct = responder & _bern(rng, 0.45, n)
    hct_day = np.where(hct, response_day + rng.integers(30, 121, n), -1)
    p_rel = np.where(hct, 0.45, 0.72)
    relapsed = responder & (rng.random(n) < p_rel)
    rel_anchor = np.where(hct, hct_day, response_day)
    relapse_day = np.where(relapsed, rel_anchor + rng.integers(60, 401, n), -1)
    u = rng.random(n)
    p_em_rel = np.clip(0.25 + 0.20 * modstrong + 0.15 * hist_em, 0, 1)
    rel_em = relapsed & (u < p_em_rel)
    rel_isolated_em = rel_em & _bern(rng, 0.6, n)

    # every non-responder is refractory (issue 16 rule 3), failing on the first assessment (r1);
    # NE patients have no assessment, hence no failure day
    failure_type = np.where(~responder, "refractory", np.where(relapsed, "relapse", ""))
    failure_day = np.where(~responder, np.where(ne, -1, r1), np.where(relapsed, relapse_day, -1))
    # hard case: EM near failure at the start site, never shown clear -> persistent, not new
    persistent_em = case("em_persistent_at_failure", refr_em & active_em)
    em_fail_report = refr_em | rel_em
    em_fail = em_fail_report & ~persistent_em
    # marrow involvement on the failure day: refractory marrow (not the isolated-EM kind),
    # relapse marrow, or the 'early' first marrow of an unreassessed patient responding at r2
    marrow_fail = (
        (refr & ~refr_isolated_em)
        | (relapsed & ~rel_isolated_em)
        | (em_unreassessed & ~responded_at_r1)
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
    # CD19 at failure: refractory neg 18% dim 23%; relapse neg 35% dim 6%; 15% not evaluable
    u = rng.random(n)
    fail_cls_refr = np.where(
        u < 0.18, "negative", np.where(u < 0.41, "dim", np.where(u < 0.70, "moderate", "strong"))
    )
    fail_cls_rel = np.where(
        u < 0.35, "negative", np.where(u < 0.41, "dim", np.where(u < 0.70, "moderate", "strong"))
    )
    cd19_fail_true = np.where(refr, fail_cls_refr, fail_cls_rel)
    fail_evaluable = (refr | relapsed) & _bern(rng, 0.85, n)
    fail_group = draw_group()
    # EM at failure is new disease: a refractory patient's failure site is not the start site
    other = draw_group()
    fail_group = np.where(
        refr & active_em & (fail_group == active_group),
        np.where(
            other == active_group, np.where(active_group == "liver", "spleen", "liver"), other
        ),
        fail_group,
    )
    fail_group = np.where(persistent_em, active_group, fail_group)

    # survival
    death_p = np.where(~responder, 0.85, np.where(relapsed, 0.70, 0.20))
    died = rng.random(n) < death_p
    death_day = np.where(
        ne,
        rng.integers(8, 20, n),
        np.where(
            ~responder,
            np.where(refr_only_r1, r1 + rng.integers(5, 30, n), r2 + rng.integers(20, 300, n)),
            np.where(relapsed, relapse_day + rng.integers(30, 300, n), rng.integers(300, 1400, n)),
        ),
    )
    died = died | ne & _bern(rng, 0.6, n) | refr_only_r1
    ne_lost_day = rng.integers(10, 20, n)
    followup = rng.integers(250, 1500, n)

    # hard cases on follow-up: early deaths in remission, transplants out of remission, an
    # unreported relapse, event ties
    hct_row = hct.copy()
    early_death = case("early_death_responder", responder & responded_at_r1 & ~hct & ~relapsed)
    died = died | early_death
    death_day = np.where(early_death, r1 + 5 + hard.integers(0, 26, n), death_day)
    tie_death = case("tie_relapse_death", relapsed)
    died = died | tie_death
    death_day = np.where(tie_death, relapse_day, death_day)
    late_hct = relapse_day + 20 + hard.integers(0, 31, n)
    hct_after_relapse = case(
        "hct_after_relapse", relapsed & ~hct & ~tie_death & (~died | (death_day > late_hct + 1))
    )
    refr_hct = r2 + 10 + hard.integers(0, 21, n)
    hct_refractory = case(
        "hct_non_responder", refr & ~refr_only_r1 & (~died | (death_day > refr_hct + 1))
    )
    hct_row = hct_row | hct_after_relapse | hct_refractory
    hct_day = np.where(hct_after_relapse, late_hct, np.where(hct_refractory, refr_hct, hct_day))
    relapse_unreported = case("relapse_unreported", relapsed & ~rel_isolated_em)
    csf_rbc_missing = case("csf_rbc_missing", ~(active_em & (active_group == "cns")) & ~ne)
    last_contact_tie = case("tie_last_contact", ~died)

    return pl.DataFrame(
        {
            "pid": idx,
            "site": site,
            "mrn": mrn,
            "last_name": last,
            "first_name": first,
            "sex": sex,
            "birth_date": birth.astype("datetime64[D]"),
            "diagnosis_date": diagnosis.astype("datetime64[D]"),
            "day0": day0.astype("datetime64[D]"),
            "age_at_start": age,
            "ph_status": ph,
            "prior_lines": prior_lines,
            "prior_hct": prior_hct,
            "bm_blasts_pct": blasts,
            "hist_em": hist_em,
            "hist_group": hist_group,
            "active_em": active_em,
            "active_group": active_group,
            "cd19_base_true": cd19_base_true,
            "best_response": best,
            "responder": responder,
            "r1": r1,
            "r2": r2,
            "response_day": response_day,
            "mrd_state": mrd_state,
            "hct": hct,
            "hct_row": hct_row,
            "marrow_responder": marrow_responder,
            "marrow_response_day": marrow_response_day,
            "marrow_best": marrow_best,
            "em_unreassessed": em_unreassessed,
            "labels_only": labels_only,
            "persistent_em": persistent_em,
            "refr_isolated_em": refr_isolated_em,
            "em_fail_report": em_fail_report,
            "early_death": early_death,
            "hct_after_relapse": hct_after_relapse,
            "hct_refractory": hct_refractory,
            "tie_death": tie_death,
            "relapse_unreported": relapse_unreported,
            "csf_rbc_missing": csf_rbc_missing,
            "last_contact_tie": last_contact_tie,
            "hct_day": hct_day,
            "relapsed": relapsed,
            "relapse_day": relapse_day,
            "refr_only_r1": refr_only_r1,
            "failure_type": failure_type,
            "failure_day": failure_day,
            "failure_pattern": failure_pattern,
            "em_fail": em_fail,
            "fail_group": fail_group,
            "cd19_fail_true": cd19_fail_true,
            "fail_evaluable": fail_evaluable,
            "died": died,
            "death_day": death_day,
            "ne_lost_day": ne_lost_day,
            "followup": followup,
            "lateral": np.isin(active_group, list(LATERAL_GROUPS)),
        }
    )

"""Turn simulated patients into canonical source records (before any site layout or defect).

Each builder masks the patient frame and computes the rows of one kind of record as whole
arrays. Days are study days; `to_dates` converts them with each patient's day 0.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from blinaetl.synth.cohort import CD19_CLASSES, EM_GROUPS, GROUP_P
from blinaetl.synth.phrases import LATERAL_GROUPS

# None as an np.where operand: numpy's stubs take no bare None there; at run time numpy turns
# None into exactly this 0-d object array, so the results are unchanged
NO_VALUE = np.array(None, dtype=object)

FILLER_DAYS = (3, 14, 52)


def _rows(p: pl.DataFrame, mask: np.ndarray, **cols) -> pl.DataFrame:
    """Rows for the masked patients: pid plus the given columns (arrays over all patients)."""
    out = {"pid": p["pid"].to_numpy()[mask]}
    nulls = []
    for k, v in cols.items():
        if v is None:
            nulls.append(k)
            continue
        arr = np.asarray(v)
        picked = arr[mask] if arr.shape == (p.height,) else np.full(int(mask.sum()), v)
        if picked.dtype == object:
            # no row picked: the type the values would have (else polars makes it Null)
            dtype = pl.Series(np.atleast_1d(arr).tolist()).dtype if len(picked) == 0 else None
            out[k] = pl.Series(k, picked.tolist(), dtype=dtype)
        else:
            out[k] = picked
    frame = pl.DataFrame(out)
    return frame.with_columns([pl.lit(None).alias(k) for k in nulls]) if nulls else frame


def last_alive_day(p: pl.DataFrame) -> np.ndarray:
    """Latest study day a record may carry: death day, NE loss day, or open follow-up."""
    died = p["died"].to_numpy()
    ne = (p["best_response"] == "NE").to_numpy()
    return np.where(
        died, p["death_day"].to_numpy(), np.where(ne, p["ne_lost_day"].to_numpy(), 10**6)
    )


def build_treatments(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = p.height
    alive_to = last_alive_day(p)
    responder = p["responder"].to_numpy()
    limit = alive_to.copy()
    for col in ("hct_day", "relapse_day"):
        d = p[col].to_numpy()
        limit = np.where(d > 0, np.minimum(limit, d), limit)
    n_cycles = np.where(responder, rng.integers(2, 6, n), 2)
    frames = []
    for k in range(1, 6):
        start = 42 * (k - 1)
        mask = (k <= n_cycles) & ((start < limit) | (k == 1))
        frames.append(
            _rows(p, mask, treatment="blinatumomab", cycle=k, start_day=start, end_day=start + 27)
        )
    hct = p["hct_row"].to_numpy()
    frames.append(
        _rows(
            p,
            hct,
            treatment="allo_hct",
            cycle=None,
            start_day=p["hct_day"].to_numpy(),
            end_day=None,
        )
    )
    return pl.concat(frames, how="diagonal_relaxed").with_columns(
        pl.col("cycle").cast(pl.Int64), pl.col("end_day").cast(pl.Int64)
    )


def _counts(rng: np.random.Generator, n: int, category: np.ndarray) -> tuple[np.ndarray, ...]:
    """Marrow blasts, ANC and platelets that give `category` by the response rules, with margin."""
    blasts = np.round(rng.uniform(0.5, 4.0, n), 1)
    anc = np.round(rng.uniform(1.5, 4.0, n), 2)
    plt_ = np.round(rng.uniform(120, 320, n), 0)
    crh = category == "CRh"
    anc = np.where(crh, np.round(rng.uniform(0.6, 0.95, n), 2), anc)
    plt_ = np.where(crh, np.round(rng.uniform(55, 95, n), 0), plt_)
    cri = category == "CRi"
    anc = np.where(cri, np.round(rng.uniform(1.2, 3.0, n), 2), anc)
    plt_ = np.where(cri, np.round(rng.uniform(15, 45, n), 0), plt_)
    hypo = category == "hypoplastic"
    anc = np.where(hypo, np.round(rng.uniform(0.1, 0.4, n), 2), anc)
    plt_ = np.where(hypo, np.round(rng.uniform(8, 40, n), 0), plt_)
    refr = category == "refractory"
    blasts = np.where(refr, np.round(rng.uniform(20, 90, n), 1), blasts)
    anc = np.where(refr, np.round(rng.uniform(0.1, 2.0, n), 2), anc)
    plt_ = np.where(refr, np.round(rng.uniform(10, 120, n), 0), plt_)
    early = category == "early"  # not yet in remission at the first assessment
    blasts = np.where(early, np.round(rng.uniform(8, 30, n), 1), blasts)
    anc = np.where(early, np.round(rng.uniform(0.3, 1.5, n), 2), anc)
    plt_ = np.where(early, np.round(rng.uniform(20, 90, n), 0), plt_)
    return blasts, anc, plt_


def build_baseline_assessment(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """One baseline row per patient (day -21..-1): marrow, counts and CSF (CNS1/2/3, taps)."""
    n = p.height
    base_day = -rng.integers(1, 22, n)
    wbc = np.round(rng.uniform(3, 8, n), 1)
    rbc = np.round(rng.uniform(3.0, 4.5, n), 2)
    cns_active = (p["active_em"] & (p["active_group"] == "cns")).to_numpy()
    u = rng.random(n)
    traumatic_cns3 = cns_active & (u < 0.3)
    cns2 = ~cns_active & (u < 0.05)
    traumatic_cns2 = ~cns_active & (u >= 0.05) & (u < 0.08)
    csf_blasts = np.where(cns_active | cns2 | traumatic_cns2, "present", "absent")
    csf_wbc = np.where(
        cns_active,
        np.where(traumatic_cns3, 60.0, np.round(rng.uniform(8, 60, n), 0)),
        np.where(
            cns2,
            np.round(rng.uniform(1, 4, n), 0),
            np.where(traumatic_cns2, 6.0, np.round(rng.uniform(0, 4, n), 0)),
        ),
    )
    csf_rbc = np.where(
        traumatic_cns3, 100.0, np.where(traumatic_cns2, 12000.0, np.round(rng.uniform(0, 5, n), 0))
    )
    # hard case: blasts with WBC >= 5/uL and no red-cell count (CNS indeterminate, a query)
    no_rbc = p["csf_rbc_missing"].to_numpy()
    csf_blasts = np.where(no_rbc, "present", csf_blasts)
    csf_wbc = np.where(no_rbc, 8.0 + (p["pid"].to_numpy() % 30), csf_wbc)
    csf_rbc = np.where(no_rbc, np.nan, csf_rbc)
    return _rows(
        p,
        np.ones(n, bool),
        day=base_day,
        marrow_blasts_pct=p["bm_blasts_pct"].to_numpy(),
        anc_10e9l=np.round(rng.uniform(0.2, 3.0, n), 2),
        platelets_10e9l=np.round(rng.uniform(15, 150, n), 0),
        blood_wbc_10e9l=wbc,
        blood_rbc_10e12l=rbc,
        csf_wbc_per_ul=csf_wbc,
        csf_rbc_per_ul=csf_rbc,
        csf_blasts=csf_blasts,
        kind="baseline",
        query=np.where(no_rbc, "DRV_CSF_RBC_NOT_REPORTED", NO_VALUE).astype(object),
    )


def build_response_assessments(p: pl.DataFrame, rng: np.random.Generator) -> list[pl.DataFrame]:
    """The two response assessments (r1, r2): counts of the marrow's category, MRD, labels."""
    n = p.height
    # the marrow tells the marrow story: an unreassessed patient's marrow is in remission
    best = p["marrow_best"].to_numpy()
    responder = p["marrow_responder"].to_numpy()
    ne = best == "NE"
    r1, r2 = p["r1"].to_numpy(), p["r2"].to_numpy()
    resp_day = p["marrow_response_day"].to_numpy()
    labels_only = p["labels_only"].to_numpy()
    unreassessed = p["em_unreassessed"].to_numpy()
    mrd_state = p["mrd_state"].to_numpy()
    # a refractory patient with isolated EM failure has a marrow in remission on the failure day
    # (r1): the new EM disease makes the assessment refractory
    iso_refr = p["refr_isolated_em"].to_numpy()
    cat1 = np.where(
        responder,
        np.where(resp_day == r1, best, "early"),
        np.where(
            iso_refr,
            "CR",
            np.where(best == "hypoplastic", "hypoplastic", "refractory"),
        ),
    )
    b1, a1, p1 = _counts(rng, n, cat1)
    mrd_val = np.where(
        mrd_state == "neg",
        np.round(rng.uniform(0.001, 0.009, n), 4),
        np.where(mrd_state == "pos", np.round(rng.uniform(0.05, 2.0, n), 3), np.nan),
    )
    mrd1 = np.where(responder & (resp_day == r1), mrd_val, np.nan)
    # hard case: the site reports only a response label (no counts) in the response window
    label1 = np.where(np.isin(cat1, ["early"]) | iso_refr, "refractory", cat1)
    b1 = np.where(labels_only, np.nan, b1)
    a1 = np.where(labels_only, np.nan, a1)
    p1 = np.where(labels_only, np.nan, p1)
    # the first assessment of an unreassessed patient in CR_em_not_reassessed raises a query
    q_em = "DRV_EM_NOT_REASSESSED"
    report1 = np.where(rng.random(n) < 0.3, label1, NO_VALUE)
    report1 = np.where(labels_only, label1, report1)
    first = _rows(
        p,
        ~ne,
        day=r1,
        marrow_blasts_pct=b1,
        anc_10e9l=a1,
        platelets_10e9l=p1,
        mrd_pct=mrd1,
        reported_response=report1,
        kind="response",
        query=np.where(unreassessed & (resp_day == r1), q_em, NO_VALUE).astype(object),
    )
    cat2 = np.where(responder, best, np.where(best == "hypoplastic", "hypoplastic", "refractory"))
    b2, a2, p2 = _counts(rng, n, cat2)
    b2 = np.where(labels_only, np.nan, b2)
    a2 = np.where(labels_only, np.nan, a2)
    p2 = np.where(labels_only, np.nan, p2)
    mrd2 = np.where(responder, mrd_val, np.nan)
    second = _rows(
        p,
        ~ne & ~p["refr_only_r1"].to_numpy() & (last_alive_day(p) > r2),
        day=r2,
        marrow_blasts_pct=b2,
        anc_10e9l=a2,
        platelets_10e9l=p2,
        mrd_pct=mrd2,
        reported_response=np.where(labels_only, cat2, NO_VALUE).astype(object),
        kind="response",
        query=np.where(unreassessed & (resp_day == r2), q_em, NO_VALUE).astype(object),
    )
    return [first, second]


def build_relapse_assessment(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """The restaging marrow on the relapse day (in remission when the relapse is isolated EM)."""
    n = p.height
    rb = np.where(
        p["failure_pattern"].to_numpy() == "isolated_em",
        np.round(rng.uniform(1.0, 3.0, n), 1),
        np.round(rng.uniform(10, 80, n), 1),
    )
    return _rows(
        p,
        p["failure_type"].to_numpy() == "relapse",
        day=p["relapse_day"].to_numpy(),
        marrow_blasts_pct=rb,
        anc_10e9l=np.round(rng.uniform(0.5, 3.0, n), 2),
        platelets_10e9l=np.round(rng.uniform(20, 200, n), 0),
        kind="relapse",
    )


def build_filler_assessments(p: pl.DataFrame, rng: np.random.Generator) -> list[pl.DataFrame]:
    """Blood-count-only rows on FILLER_DAYS (carry no derivation; defects are planted in them)."""
    n = p.height
    alive_to = last_alive_day(p)
    return [
        _rows(
            p,
            alive_to > d,
            day=d,
            anc_10e9l=np.round(rng.uniform(0.3, 4.0, n), 2),
            platelets_10e9l=np.round(rng.uniform(20, 300, n), 0),
            blood_wbc_10e9l=np.round(rng.uniform(1, 12, n), 1),
            kind="filler",
        )
        for d in FILLER_DAYS
    ]


def build_assessments(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """Every assessment row: baseline, two response assessments, relapse restaging, filler."""
    frames = [build_baseline_assessment(p, rng)]
    frames += build_response_assessments(p, rng)
    frames.append(build_relapse_assessment(p, rng))
    frames += build_filler_assessments(p, rng)
    out = pl.concat(frames, how="diagonal_relaxed")
    return out.with_columns(
        [
            pl.col(c).fill_nan(None)
            for c in (
                "mrd_pct",
                "marrow_blasts_pct",
                "anc_10e9l",
                "platelets_10e9l",
                "csf_rbc_per_ul",
            )
        ]
    )


def build_outcomes(p: pl.DataFrame) -> pl.DataFrame:
    died = p["died"].to_numpy()
    frames = [
        _rows(
            p,
            p["relapsed"].to_numpy() & ~p["relapse_unreported"].to_numpy(),
            event="relapse",
            day=p["relapse_day"].to_numpy(),
        ),
        _rows(p, died, event="death", day=p["death_day"].to_numpy()),
        _rows(p, ~died, event="last_contact", day=p["last_contact_day"].to_numpy()),
    ]
    return pl.concat(frames)


def _lat(rng: np.random.Generator, group: np.ndarray) -> np.ndarray:
    n = len(group)
    u = rng.random(n)
    lat = np.where(u < 0.45, "left", np.where(u < 0.9, "right", "bilateral"))
    return np.where(np.isin(group, list(LATERAL_GROUPS)), lat, "")


def _other_group(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A site group none of the patient's EM groups (so negative mentions never contradict)."""
    n = len(avoid[0])
    g = EM_GROUPS[rng.choice(len(EM_GROUPS), size=n, p=GROUP_P)]
    for _ in range(6):
        clash = np.zeros(n, bool)
        for a in avoid:
            clash |= g == a
        if not clash.any():
            break
        g = np.where(clash, EM_GROUPS[rng.integers(0, len(EM_GROUPS), n)], g)
    # remaining clashes: the first of four fixed groups the patient does not have (3 avoided)
    for candidate in ("spleen", "liver", "kidney", "pleura"):
        clash = np.zeros(n, bool)
        free = np.ones(n, bool)
        for a in avoid:
            clash |= g == a
            free &= a != candidate
        g = np.where(clash & free, candidate, g)
    return g


def build_mentions(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    """EM statements per report: report id, day, modality, assertion, site group, laterality."""
    n = p.height
    alive_to = last_alive_day(p)
    responder = p["responder"].to_numpy()
    marrow_responder = p["marrow_responder"].to_numpy()
    hist, hist_g = p["hist_em"].to_numpy(), p["hist_group"].to_numpy()
    active, act_g = p["active_em"].to_numpy(), p["active_group"].to_numpy()
    em_fail, fail_g = p["em_fail_report"].to_numpy(), p["fail_group"].to_numpy()
    patient_groups = [
        np.where(hist, hist_g, ""),
        np.where(active, act_g, ""),
        np.where(em_fail, fail_g, ""),
    ]
    imaging = np.array(["CT", "MRI", "PET-CT", "US"])
    frames = []
    report_no = 0

    def report(mask, day, modality, mentions, extra=(), draw=rng):
        """One report per masked patient; `extra` adds (mask, assertion, group) mentions;
        laterality is drawn from `draw`."""
        nonlocal report_no
        report_no += 1
        items = [(mask, a, g) for a, g in mentions] + [(m & mask, a, g) for m, a, g in extra]
        for k, (m, assertion, group) in enumerate(items):
            groups = np.asarray(group) if np.ndim(group) else np.full(n, group)
            frames.append(
                _rows(
                    p,
                    m,
                    report=report_no,
                    day=day,
                    modality=modality,
                    order=k,
                    assertion=assertion,
                    site_group=groups,
                    laterality=_lat(draw, groups),
                )
            )

    mod = imaging[rng.integers(0, 4, n)]
    # staging report: negative mention of another site, a filler sentence, and the history
    staging_day = -rng.integers(1, 15, n)
    report(
        np.ones(n, bool),
        staging_day,
        mod,
        [("absent", _other_group(rng, patient_groups)), ("filler", "")],
        extra=[(hist, "historical", hist_g)],
    )
    # EM before blinatumomab: documented at the time
    u_mod = rng.random(n)
    mod_em = np.where(
        u_mod < 0.2, "pathology", np.where(u_mod < 0.35, "exam", imaging[rng.integers(0, 4, n)])
    )
    report(hist, -rng.integers(60, 401, n), mod_em, [("present", hist_g)])
    # active EM at start
    act_day = np.where(marrow_responder, -rng.integers(0, 26, n), rng.integers(-25, 6, n))
    mod_act = np.where(rng.random(n) < 0.2, "pathology", imaging[rng.integers(0, 4, n)])
    report(
        active,
        act_day,
        mod_act,
        [("present", act_g), ("absent", _other_group(rng, patient_groups))],
    )
    # responders with active EM: resolution documented before the first response assessment
    # (CR needs the EM of the start shown resolved, issue 16 rule 1)
    r1 = p["r1"].to_numpy()
    resolved_day = r1 - 3
    report(active & responder & (alive_to > resolved_day), resolved_day, mod, [("resolved", act_g)])
    # EM at failure
    # EM at failure: refractory on the failure day or up to 5 days before; relapse on the relapse
    # day (an EM report before it would itself be the first relapse evidence)
    fday = p["failure_day"].to_numpy()
    relapse_em = p["failure_type"].to_numpy() == "relapse"
    em_fail_day = np.where(relapse_em, fday, fday - rng.integers(0, 6, n))
    report(em_fail, em_fail_day, mod_act, [("present", fail_g), ("filler", "")])
    # follow-up reports with an uncertain statement about an uninvolved site
    fu_day = rng.integers(100, 200, n)
    fu = (alive_to > fu_day) & (rng.random(n) < 0.5)
    report(
        fu,
        fu_day,
        mod,
        [
            ("possible", _other_group(rng, patient_groups)),
            ("absent", _other_group(rng, patient_groups)),
        ],
    )
    # an imaging request or plan (hypothetical: neither stated nor denied) about an uninvolved
    # site; drawn from a stream of its own so the statements above and every later record of
    # the cohort stay as they were
    plan = rng.spawn(1)[0]
    plan_day = plan.integers(30, 100, n)
    report(
        (alive_to > plan_day) & (plan.random(n) < 0.3),
        plan_day,
        imaging[plan.integers(0, 4, n)],
        [("hypothetical", _other_group(plan, patient_groups))],
        draw=plan,
    )
    m = pl.concat(frames, how="diagonal_relaxed")
    return m.with_columns(pl.col("report").cast(pl.Int64))


def cd19_numbers(rng: np.random.Generator, cls: np.ndarray) -> tuple[np.ndarray, ...]:
    """Percent positive, CD19 MFI and reference MFI well inside the class bands."""
    n = len(cls)
    ref = np.round(rng.uniform(15000, 40000, n), 0)
    pct = np.round(rng.uniform(82, 100, n), 1)
    ratio = rng.uniform(0.4, 0.7, n)
    neg = cls == "negative"
    pct = np.where(neg, np.round(rng.uniform(0.5, 12, n), 1), pct)
    ratio = np.where(neg, rng.uniform(0.01, 0.1, n), ratio)
    dim = cls == "dim"
    pct = np.where(dim, np.round(rng.uniform(30, 100, n), 1), pct)
    ratio = np.where(dim, rng.uniform(0.05, 0.22, n), ratio)
    strong = cls == "strong"
    ratio = np.where(strong, rng.uniform(0.9, 2.0, n), ratio)
    mfi = np.round(ref * ratio, 0)
    return pct, mfi, ref


def build_flow(p: pl.DataFrame, rng: np.random.Generator) -> pl.DataFrame:
    n = p.height
    alive_to = last_alive_day(p)
    lab = np.where(rng.random(n) < 0.55, "LABNUM", "LABTXT")
    base_cls = p["cd19_base_true"].to_numpy()
    frames = []
    marrow_base = rng.random(n) < 0.95
    base_day = -rng.integers(1, 22, n)
    frames.append(
        _rows(
            p,
            marrow_base,
            day=base_day,
            specimen_type="marrow",
            cls=base_cls,
            lab=lab,
            role="baseline",
        )
    )
    blood_base = rng.random(n) < 0.4
    blood_cls = np.where(rng.random(n) < 0.8, base_cls, CD19_CLASSES[rng.integers(0, 4, n)])
    frames.append(
        _rows(
            p,
            blood_base,
            day=base_day - rng.integers(0, 6, n),
            specimen_type="blood",
            cls=blood_cls,
            lab=lab,
            role="baseline",
        )
    )
    on_day = rng.integers(14, 21, n)
    on_treat = (rng.random(n) < 0.3) & (alive_to > on_day)
    frames.append(
        _rows(
            p,
            on_treat,
            day=on_day,
            specimen_type="blood",
            cls=CD19_CLASSES[rng.integers(0, 4, n)],
            lab=lab,
            role="filler",
        )
    )
    fail = p["fail_evaluable"].to_numpy()
    pattern = p["failure_pattern"].to_numpy()
    fail_cls = p["cd19_fail_true"].to_numpy()
    # on or after the failure day, never after death
    fday = np.minimum(p["failure_day"].to_numpy() + rng.integers(0, 4, n), alive_to)
    tissue_type = np.where(p["fail_group"].to_numpy() == "cns", "csf", "tissue")
    frames.append(
        _rows(
            p,
            fail & (pattern != "isolated_em"),
            day=fday,
            specimen_type="marrow",
            cls=fail_cls,
            lab=lab,
            role="failure",
        )
    )
    em_cls = np.where(rng.random(n) < 0.5, fail_cls, CD19_CLASSES[rng.integers(0, 4, n)])
    em_cls = np.where(pattern == "isolated_em", fail_cls, em_cls)
    frames.append(
        _rows(
            p,
            fail & np.isin(pattern, ["isolated_em", "combined"]),
            day=fday,
            specimen_type=tissue_type,
            cls=em_cls,
            lab=lab,
            role="failure",
        )
    )
    f = pl.concat(frames)
    pct, mfi, ref = cd19_numbers(rng, f["cls"].to_numpy())
    blasts = np.round(rng.uniform(5, 90, f.height), 1)
    return f.with_columns(cd19_pct_positive=pct, cd19_mfi=mfi, ref_mfi=ref, blasts_pct=blasts)

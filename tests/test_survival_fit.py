"""blinaetl.warehouse.survival_fit (the Cox and log-rank fits of endpoints.model_results) against
lifelines and against values worked out by hand.

lifelines is the reference for the definitions (risk sets, Efron ties, Wald interval, log-rank
covariance). Its default stopping rules end Newton-Raphson before the maximum (CoxPHFitter stops
on a relative log-likelihood change of 1e-9 and returns the point before its last step), which
leaves its coefficients up to about 5e-4 standard errors from the maximum; `cox_fit` iterates to
the maximum. So the tight comparisons run lifelines to convergence (`TIGHT`); one test bounds the
distance to lifelines' defaults, which is the change in the published rows.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, CoxTimeVaryingFitter
from lifelines.statistics import multivariate_logrank_test

from blinaetl.warehouse.survival_fit import Z95, ConvergenceError, cox_fit, logrank_test

# lifelines run to the maximum: only the norm of the step or the Newton decrement can stop it
TIGHT = {"precision": 1e-16, "r_precision": 0.0}
RTOL = 1e-8  # coef and se, relative to max(|coef|, se) for coef (a coefficient can be ~0)


def _lifelines_ph(t, e, x, **options) -> pd.Series:
    frame = pd.concat(
        [pd.DataFrame({"t": t, "e": e}), pd.DataFrame(np.c_[x]).add_prefix("x")], axis=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPHFitter().fit(frame, "t", "e", **options).summary


def _lifelines_tv(frame: pd.DataFrame, **options) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxTimeVaryingFitter().fit(
            frame, id_col="id", start_col="start", stop_col="stop", event_col="e", **options
        )
    return fit.summary


def _assert_same(fit, ref: pd.DataFrame, rtol: float = RTOL) -> None:
    coef, se = ref["coef"].to_numpy(), ref["se(coef)"].to_numpy()
    np.testing.assert_allclose(fit.coef, coef, rtol=0, atol=rtol * np.maximum(abs(coef), se).max())
    np.testing.assert_allclose(fit.se, se, rtol=rtol)
    np.testing.assert_allclose(
        fit.z, ref["z"].to_numpy(), rtol=0, atol=rtol * (1 + abs(ref["z"]).max())
    )
    # p: d(ln p)/dz is about -z, so a relative error of z times |z|
    np.testing.assert_allclose(
        fit.p, ref["p"].to_numpy(), rtol=rtol * (1 + abs(ref["z"]).max()) ** 2
    )
    hr, low, high = fit.hazard_ratio()
    np.testing.assert_allclose(hr, ref["exp(coef)"].to_numpy(), rtol=rtol * (1 + se.max()))
    np.testing.assert_allclose(
        low, ref["exp(coef) lower 95%"].to_numpy(), rtol=3 * rtol * (1 + se.max())
    )
    np.testing.assert_allclose(
        high, ref["exp(coef) upper 95%"].to_numpy(), rtol=3 * rtol * (1 + se.max())
    )


def _survival(seed: int, n: int, share: float, ties: bool, event_rate: float = 0.6):
    rng = np.random.default_rng(seed)
    x = (rng.random(n) < share).astype(float)
    t = rng.integers(1, 8, n).astype(float) if ties else rng.exponential(10, n) + 0.001
    t = t * np.exp(-0.4 * x) if not ties else t
    e = (rng.random(n) < event_rate).astype(int)
    return t, e, x


SURVIVAL_CASES = {
    "heavy ties, balanced": dict(seed=1, n=300, share=0.5, ties=True),
    "heavy ties, 5% exposed": dict(seed=2, n=400, share=0.05, ties=True),
    "no ties": dict(seed=3, n=250, share=0.4, ties=False),
    "no ties, 3% exposed": dict(seed=4, n=500, share=0.03, ties=False),
    "ties, few events": dict(seed=5, n=200, share=0.5, ties=True, event_rate=0.05),
    "ties, most events": dict(seed=6, n=200, share=0.3, ties=True, event_rate=0.95),
}


@pytest.mark.parametrize("case", SURVIVAL_CASES)
def test_landmark_fit_equals_lifelines_coxphfitter(case):
    t, e, x = _survival(**SURVIVAL_CASES[case])
    _assert_same(cox_fit(t, e, x), _lifelines_ph(t, e, x, fit_options=TIGHT))


def test_a_group_with_one_event_and_two_covariates_equal_lifelines():
    t, e, x = _survival(seed=7, n=300, share=0.1, ties=True)
    e = np.where(x == 1, 0, e)
    e[np.flatnonzero(x == 1)[0]] = 1  # exactly one event among the exposed
    z = np.random.default_rng(8).normal(size=len(t))
    covariates = np.c_[x, z]
    fit = cox_fit(t, e, covariates)
    _assert_same(fit, _lifelines_ph(t, e, covariates, fit_options=TIGHT))
    assert fit.coef[0] < -1  # a strong, finite effect: fitted, not taken for separation


def test_the_published_change_is_within_lifelines_default_stopping():
    """lifelines with its default stopping rules (what wrote the rows before) stays within
    1e-3 standard errors of the maximum on every case (measured: up to 4e-4)."""
    for case in SURVIVAL_CASES.values():
        t, e, x = _survival(**case)
        fit, ref = cox_fit(t, e, x), _lifelines_ph(t, e, x)
        assert abs(fit.coef[0] - ref["coef"].iloc[0]) <= 1e-3 * fit.se[0]
        assert fit.se[0] == pytest.approx(ref["se(coef)"].iloc[0], rel=1e-4)


def _counting_process(seed: int, n: int, switch: float, share: float, ties: bool) -> pd.DataFrame:
    """Patients entering late (start > 0), some switching to hct = 1 at a time in their follow-up
    (two rows: (entry, switch] with 0 and (switch, stop] with 1)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        entry = float(rng.integers(0, 6)) if ties else rng.uniform(0, 5)
        length = float(rng.integers(1, 15)) if ties else rng.exponential(8) + 0.01
        stop = entry + length
        event = int(rng.random() < 0.6)
        at = entry + (float(rng.integers(1, 15)) if ties else rng.exponential(6))
        if rng.random() < switch and at < stop:
            rows += [(i, entry, at, 0, 0), (i, at, stop, event, 1)]
        else:
            rows.append((i, entry, stop, event, int(rng.random() < share)))
    return pd.DataFrame(rows, columns=["id", "start", "stop", "e", "hct"])


TV_CASES = {
    "switching, heavy ties": dict(seed=11, n=300, switch=0.4, share=0.0, ties=True),
    "switching, no ties": dict(seed=12, n=300, switch=0.4, share=0.0, ties=False),
    "few switch": dict(seed=13, n=400, switch=0.03, share=0.0, ties=True),
    "switching and fixed exposure": dict(seed=14, n=300, switch=0.2, share=0.2, ties=True),
}


@pytest.mark.parametrize("case", TV_CASES)
def test_time_dependent_fit_equals_lifelines_coxtimevaryingfitter(case):
    d = _counting_process(**TV_CASES[case])
    fit = cox_fit(d["stop"], d["e"], d["hct"], start=d["start"])
    _assert_same(fit, _lifelines_tv(d, fit_options=TIGHT))
    # CoxTimeVaryingFitter's defaults (what wrote the rows before) stop within 1e-3 se
    ref = _lifelines_tv(d)
    assert abs(fit.coef[0] - ref["coef"].iloc[0]) <= 1e-3 * fit.se[0]
    assert fit.se[0] == pytest.approx(ref["se(coef)"].iloc[0], rel=1e-4)


def test_efron_tie_solved_by_hand():
    """A (x=1) and B (x=0) die together at t=1; C (x=1) is censored at t=1, so at risk (t <= stop).

    Efron: L(theta) = theta / ((2 theta + 1) * ((2 theta + 1) - (theta + 1) / 2)), theta = e^b;
    the score 1/theta - 2/(2 theta + 1) - 3/(3 theta + 1) = 0 gives 1 - 6 theta^2 = 0, so
    b = -ln(6)/2 (Breslow's L = theta / (2 theta + 1)^2 would give b = -ln 2); the information is
    2 theta/(2 theta + 1)^2 + 3 theta/(3 theta + 1)^2."""
    fit = cox_fit([1, 1, 1], [1, 1, 0], [1, 0, 1])
    th = 1 / math.sqrt(6)
    info = 2 * th / (2 * th + 1) ** 2 + 3 * th / (3 * th + 1) ** 2
    assert fit.coef[0] == pytest.approx(-math.log(6) / 2, rel=1e-12)
    assert fit.se[0] == pytest.approx(1 / math.sqrt(info), rel=1e-12)
    assert fit.z[0] == pytest.approx(-math.log(6) / 2 * math.sqrt(info), rel=1e-12)
    assert fit.p[0] == pytest.approx(math.erfc(abs(fit.z[0]) / math.sqrt(2)), rel=1e-12)
    hr, low, high = fit.hazard_ratio()
    assert hr[0] == pytest.approx(th, rel=1e-12)
    assert low[0] == pytest.approx(th * math.exp(-Z95 / math.sqrt(info)), rel=1e-12)
    assert high[0] == pytest.approx(th * math.exp(Z95 / math.sqrt(info)), rel=1e-12)
    # C censored just before t=1 leaves the risk set {A, B}: L = 2 theta / (theta + 1)^2, b = 0
    assert cox_fit([1, 1, 0.9], [1, 1, 0], [1, 0, 1]).coef[0] == pytest.approx(0, abs=1e-12)


def test_risk_set_boundaries_of_counting_process_rows_by_hand():
    """The tie of the test above plus a fourth row D (x=1) on (start, 5]. Entering at start = 1,
    D is not at risk at t=1 (start < t): b = -ln(6)/2 again. Entering at 0.9 it is, and the score
    1/theta - 3/(3 theta + 1) - 5/(5 theta + 1) = 0 gives 1 - 15 theta^2 = 0: b = -ln(15)/2.
    C as two rows (0, 0.5] and (0.5, 1] of the same patient changes nothing."""
    stop, event, x = [1, 1, 0.5, 1, 5], [1, 1, 0, 0, 0], [1, 0, 1, 1, 1]
    late = cox_fit(stop, event, x, start=[0, 0, 0, 0.5, 1])
    assert late.coef[0] == pytest.approx(-math.log(6) / 2, rel=1e-12)
    inside = cox_fit(stop, event, x, start=[0, 0, 0, 0.5, 0.9])
    assert inside.coef[0] == pytest.approx(-math.log(15) / 2, rel=1e-12)


def test_separation_raises_instead_of_returning_a_number():
    # every event among x=0 and none among x=1: the estimate is -infinity
    t = np.arange(1.0, 21.0)
    e = np.r_[np.ones(10), np.zeros(10)]
    x = np.r_[np.zeros(10), np.ones(10)]
    with pytest.raises(ConvergenceError, match="separation"):
        cox_fit(t, e, x)
    # an event among x=1 at t=16 leaves it infinite (only x=1 is still at risk then) ...
    e[15] = 1
    with pytest.raises(ConvergenceError, match="separation"):
        cox_fit(t, e, x)
    # ... one at t=5.5, while x=0 patients are at risk, makes it finite: fitted
    t[10], e[10] = 5.5, 1
    assert -5 < cox_fit(t, e, x).coef[0] < 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(stop=[1, 2], event=[1, 0], covariates=[0, 1], start=[0, 2]),
            "row 1 has start >= stop",
        ),
        (dict(stop=[1, 2], event=[0, 0], covariates=[0, 1]), "no event"),
        (dict(stop=[1, 2], event=[1, 2], covariates=[0, 1]), "0 or 1"),
        (dict(stop=[1, np.nan], event=[1, 0], covariates=[0, 1]), "stop: row 1 is not finite"),
        (dict(stop=[1, 2], event=[1, 0], covariates=[0, 1, 1]), "expected 2 rows"),
    ],
)
def test_unusable_input_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cox_fit(**kwargs)


def test_logrank_by_hand():
    """A: events at 1 and 3; B: event at 2, censored at 4. O_A - E_A = 2 - (1/2 + 1/3 + 1/2) =
    2/3, V = 1/4 + 2/9 + 1/4 = 13/18: chi-square 8/13 on 1 df."""
    res = logrank_test([1, 3, 2, 4], [1, 1, 1, 0], ["a", "a", "b", "b"])
    assert res.statistic == pytest.approx(8 / 13, rel=1e-14)
    assert res.df == 1
    assert res.p_value == pytest.approx(math.erfc(math.sqrt(4 / 13)), rel=1e-12)
    with pytest.raises(ValueError, match="two or more groups"):
        logrank_test([1, 3], [1, 1], ["a", "a"])
    with pytest.raises(ValueError, match="no group"):
        logrank_test([1, 3], [1, 1], [1.0, np.nan])


LOGRANK_CASES = {
    "two groups, heavy ties": dict(seed=21, n=500, k=2, weights=None, ties=True),
    "three groups": dict(seed=22, n=600, k=3, weights=None, ties=True),
    "four groups, one small": dict(
        seed=23, n=800, k=4, weights=[0.45, 0.45, 0.08, 0.02], ties=True
    ),
    "two groups, no ties, 2% in one": dict(seed=24, n=1000, k=2, weights=[0.98, 0.02], ties=False),
}


@pytest.mark.parametrize("case", LOGRANK_CASES)
def test_logrank_equals_lifelines(case):
    c = LOGRANK_CASES[case]
    rng = np.random.default_rng(c["seed"])
    labels = np.array(["dim", "moderate", "negative", "strong"][: c["k"]])
    g = rng.choice(labels, size=c["n"], p=c["weights"])
    scale = 1 + np.searchsorted(labels, g) * 0.3
    t = rng.integers(1, 30, c["n"]) * scale if c["ties"] else rng.exponential(10, c["n"]) * scale
    e = (rng.random(c["n"]) < 0.7).astype(int)
    ref = multivariate_logrank_test(t, g, e)
    res = logrank_test(t, e, g)
    assert res.statistic == pytest.approx(ref.test_statistic, rel=1e-10)
    assert res.df == ref.degrees_of_freedom == c["k"] - 1
    assert res.p_value == pytest.approx(ref.p_value, rel=1e-9)
    # integer codes in label order give the same test (how logrank_rows passes the groups)
    codes = np.searchsorted(labels, g)
    assert logrank_test(t, e, codes).statistic == pytest.approx(res.statistic, rel=1e-12)

"""blinaetl.warehouse.exact: the conditional odds ratio and its exact interval, checked against
closed forms worked by hand, a 60-digit evaluation of the definition written here (decimal
arithmetic and bisection, no code shared with the module), and scipy's
`odds_ratio(kind="conditional").confidence_interval()` on the cases scipy still does quickly.

Tolerances: against the 60-digit reference, 1e-12 relative (measured agreement about 1e-15).
Against scipy, 1e-9 relative plus 1e-13 absolute: the absolute part is scipy's own root-finding
tolerance (brentq xtol=1e-13 on the odds ratio), the relative part covers scipy's evaluation of
the distribution (Agner Fog's BiasedUrn, probabilities to 1e-12 and moment sums cut at 1e-10),
which the 60-digit reference shows to be the side that is off (by up to 4e-10 on these tables;
1.1e-9 on [[100000, 3], [5, 100000]], a table scipy needs 465 s for and is not run here).
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext

import duckdb
import numpy as np
import pytest
from scipy.stats import fisher_exact
from scipy.stats.contingency import odds_ratio

from blinaetl.warehouse import statistics
from blinaetl.warehouse.exact import ConditionalOddsRatio, conditional_odds_ratio

ALPHA = Decimal("0.025")


def _scipy(table: list[list[int]]) -> tuple[float, float, float]:
    result = odds_ratio(np.array(table), kind="conditional")
    ci = result.confidence_interval(confidence_level=0.95)
    return float(result.statistic), float(ci.low), float(ci.high)


def _close_to_scipy(ours: float, theirs: float) -> bool:
    if math.isnan(theirs) or math.isinf(theirs) or theirs == 0:
        return ours == theirs or (math.isnan(ours) and math.isnan(theirs))
    return abs(ours - theirs) <= 1e-9 * abs(theirs) + 1e-13


def _reference(table: list[list[int]], window: int | None = None) -> dict[str, float]:
    """The estimate and the bounds that are not 0 or inf, by bisection on log(psi) with every
    probability summed in 60-digit decimals. `window` keeps only |k - a| <= window (for large
    supports; on the tables here the terms left out are below 1e-40 of the largest)."""
    (a, b), (c, d) = table
    n, m, total = a + b, a + c, a + b + c + d
    lo, hi = max(0, m - (total - n)), min(n, m)
    if window is not None:
        lo, hi = max(lo, a - window), min(hi, a + window)
    with localcontext() as ctx:
        ctx.prec = 60
        # C(n, k) C(N - n, m - k) up to a constant factor (it cancels), from the first k on:
        # C(n, k+1) / C(n, k) = (n - k) / (k + 1), and likewise for the other binomial
        weight = {lo: Decimal(1)}
        for k in range(lo, hi):
            ratio = Decimal((n - k) * (m - k)) / ((k + 1) * (total - n - m + k + 1))
            weight[k + 1] = weight[k] * ratio

        def terms(psi: Decimal) -> tuple[dict[int, Decimal], Decimal]:
            power = psi ** (lo - a)
            t = {}
            for k, w in weight.items():
                t[k] = w * power
                power *= psi
            return t, sum(t.values())

        def mean_minus_a(psi: Decimal) -> Decimal:
            t, s = terms(psi)
            return sum((k - a) * v for k, v in t.items()) / s

        def at_least(psi: Decimal) -> Decimal:
            t, s = terms(psi)
            return sum(v for k, v in t.items() if k >= a) / s - ALPHA

        def at_most(psi: Decimal) -> Decimal:
            t, s = terms(psi)
            return ALPHA - sum(v for k, v in t.items() if k <= a) / s

        def root(f) -> float:  # f increasing in psi
            low, high = Decimal("1e-40"), Decimal("1e40")
            for _ in range(90):
                mid = (low * high).sqrt()
                low, high = (low, mid) if f(mid) > 0 else (mid, high)
            return float((low * high).sqrt())

        out = {}
        if a * d and b * c:
            out["estimate"] = root(mean_minus_a)
        if a * d:
            out["low"] = root(at_least)
        if b * c:
            out["high"] = root(at_most)
        return out


# --- closed forms worked by hand -------------------------------------------------------------


@pytest.mark.parametrize("table", [[[2, 4], [3, 6]], [[10, 10], [10, 10]], [[7, 21], [1, 3]]])
def test_a_table_with_sample_odds_ratio_one_has_conditional_mle_one(table):
    # E[X; psi=1] is the central hypergeometric mean (a+b)(a+c)/N, which equals a iff ad = bc
    assert conditional_odds_ratio(table).estimate == pytest.approx(1.0, rel=1e-14)


def test_the_all_ones_table_by_hand():
    # support {0, 1, 2}, weights 1 : 4 psi : psi^2; the mean is 1 iff psi^2 = 1;
    # P(X <= 1) = (1 + 4 psi) / (1 + 4 psi + psi^2) = 0.025 gives psi^2 - 156 psi - 39 = 0;
    # P(X >= 1) = 0.025 is the same equation in 1/psi
    upper = 78 + math.sqrt(78**2 + 39)
    r = conditional_odds_ratio([[1, 1], [1, 1]])
    assert r.estimate == pytest.approx(1.0, rel=1e-14)
    assert r.high == pytest.approx(upper, rel=1e-13)
    assert r.low == pytest.approx(1 / upper, rel=1e-13)


def test_a_three_by_three_margin_table_by_hand():
    # [[2, 1], [1, 2]]: support 0..3, weights 1 : 9 psi : 9 psi^2 : psi^3; the mean is 2 iff
    # psi^3 - 9 psi - 2 = 0, whose positive root is 2 sqrt(3) cos(arccos(1 / (3 sqrt(3))) / 3)
    root = 2 * math.sqrt(3) * math.cos(math.acos(1 / (3 * math.sqrt(3))) / 3)
    assert root**3 - 9 * root - 2 == pytest.approx(0, abs=1e-12)
    assert conditional_odds_ratio([[2, 1], [1, 2]]).estimate == pytest.approx(root, rel=1e-13)


@pytest.mark.parametrize(
    ("table", "low", "high"),
    [
        # a at the top of the support {0, 1}, weights 3 : psi: P(X = 1) = psi / (3 + psi) = 0.025
        ([[1, 0], [0, 3]], 3 / 39, math.inf),
        ([[1, 0], [0, 1]], 1 / 39, math.inf),
        # a at the bottom of {0, 1}, weights 1 : 3 psi: P(X = 0) = 1 / (1 + 3 psi) = 0.025
        ([[0, 1], [3, 0]], 0.0, 13.0),
    ],
)
def test_a_cell_at_an_end_of_the_support_by_hand(table, low, high):
    r = conditional_odds_ratio(table)
    assert r.estimate == (math.inf if high == math.inf else 0.0)
    assert r.low == pytest.approx(low, rel=1e-13)
    assert r.high == pytest.approx(high, rel=1e-13)


@pytest.mark.parametrize(
    "table",
    [[[0, 0], [3, 4]], [[3, 4], [0, 0]], [[0, 3], [0, 4]], [[3, 0], [4, 0]], [[0, 0], [0, 0]]],
)
def test_a_table_with_an_empty_row_or_column_has_no_estimate_and_the_whole_interval(table):
    r = conditional_odds_ratio(table)
    assert math.isnan(r.estimate) and (r.low, r.high) == (0.0, math.inf)
    ref = _scipy(table)
    assert math.isnan(ref[0]) and ref[1:] == (0.0, math.inf)


@pytest.mark.parametrize(
    ("table", "level", "message"),
    [
        ([[1, 2, 3], [4, 5, 6]], 0.95, "2x2 table"),
        ([[1.0, 2.0], [3.0, 4.0]], 0.95, "integer counts"),
        ([[1, -2], [3, 4]], 0.95, "non-negative"),
        ([[1, 2], [3, 4]], 1.0, "strictly between 0 and 1"),
        ([[1, 2], [3, 4]], 0.0, "strictly between 0 and 1"),
    ],
)
def test_bad_input_is_refused_with_what_was_expected(table, level, message):
    with pytest.raises(ValueError, match=message):
        conditional_odds_ratio(table, confidence_level=level)


def test_another_confidence_level_is_honoured():
    # [[1, 0], [0, 1]] at 90%: P(X = 1) = psi / (1 + psi) = 0.05, psi = 1/19
    assert conditional_odds_ratio([[1, 0], [0, 1]], 0.90).low == pytest.approx(1 / 19, rel=1e-13)


# --- the 60-digit reference ------------------------------------------------------------------

REFERENCE_TABLES = [
    [[3, 1], [1, 3]],  # Fisher's tea tasting
    [[0, 3], [4, 5]],  # a zero in each cell in turn
    [[3, 0], [4, 5]],
    [[3, 4], [0, 5]],
    [[3, 4], [5, 0]],
    [[1, 40], [30, 2]],  # very unbalanced
    [[20, 1], [1, 25]],
    [[2, 3], [40, 50]],
    [[12, 5], [7, 9]],
    [[8000, 2000], [1, 3]],  # large counts, support of 5
]


@pytest.mark.parametrize("table", REFERENCE_TABLES, ids=str)
def test_equals_the_60_digit_reference(table):
    r = conditional_odds_ratio(table)
    for name, expected in _reference(table).items():
        assert getattr(r, name) == pytest.approx(expected, rel=1e-12), name


@pytest.mark.parametrize(
    ("table", "window"),
    [
        ([[50000, 40000], [10, 30]], 60),  # sd of X about 2.7
        ([[100000, 3], [5, 100000]], 60),  # scipy: 465 s, its lower bound 1.1e-9 off
        # a table of the 300,000-patient cohort (scipy: 7 s); sd of X about 66
        ([[6483, 23121], [42049, 121728]], 900),
    ],
    ids=str,
)
def test_equals_the_60_digit_reference_on_large_supports(table, window):
    r = conditional_odds_ratio(table)
    expected = _reference(table, window)
    assert set(expected) == {"estimate", "low", "high"}
    for name, value in expected.items():
        assert getattr(r, name) == pytest.approx(value, rel=1e-12), name


# --- scipy -----------------------------------------------------------------------------------

SCIPY_TABLES = [
    *REFERENCE_TABLES[:-1],
    [[1, 2], [3, 4]],
    [[0, 5], [3, 2]],
    [[5, 0], [2, 3]],
    [[0, 1], [1, 0]],
    [[1, 0], [0, 1]],
    [[0, 1], [1, 1]],
    [[1, 1], [1, 0]],
    [[2, 1], [1, 2]],
    [[1, 2], [2, 1]],
    [[1, 30], [30, 1]],
    [[0, 30], [30, 0]],
    [[10, 0], [0, 10]],
    [[1, 50], [0, 50]],
    [[33, 2], [17, 45]],
    [[4, 55], [12, 6]],
    # large tables scipy still does in well under a second each
    [[20, 4000], [60, 5000]],
    [[8000, 2000], [1, 3]],
    [[50000, 40000], [10, 30]],
    [[30, 12000], [25, 90000]],
    [[40000, 2], [60000, 0]],
    [[1, 99999], [7, 50000]],
    [[300, 700], [350, 650]],
]
SCIPY_TABLES += [
    [[int(x) for x in row] for row in t]
    for t in np.random.default_rng(20).integers(0, 40, (12, 2, 2))
]


@pytest.mark.parametrize("table", SCIPY_TABLES, ids=str)
def test_equals_scipy(table):
    r = conditional_odds_ratio(table)
    ref = _scipy(table)
    ours = (r.estimate, r.low, r.high)
    assert all(_close_to_scipy(x, y) for x, y in zip(ours, ref, strict=True)), (ours, ref)


# --- fisher_rows -----------------------------------------------------------------------------


def _scipy_rows(rows: list[dict]) -> list[dict]:
    """What fisher_rows wrote with scipy's odds_ratio before exact.py, from each row's counts."""
    out = []
    for r in rows:
        if r["note"] is not None:
            out.append(r)
            continue
        a, c = r["events_with"], r["events_without"]
        table = [[a, r["n_with"] - a], [c, r["n_without"] - c]]
        est, low, high = _scipy(table)
        p = float(fisher_exact(np.array(table), alternative="two-sided")[1])
        fin = [v if math.isfinite(v) else None for v in (est, low, high)]
        out.append(r | dict(zip(("estimate", "ci_lower", "ci_upper"), fin, strict=True), p_value=p))
    return out


def _assert_rows_equal_scipy(rows: list[dict]) -> None:
    expected = _scipy_rows(rows)
    assert [r["term"] for r in rows] == [r["term"] for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for column in statistics.COLUMNS:
            g, w = got[column], want[column]
            if column in ("estimate", "ci_lower", "ci_upper") and g is not None and w is not None:
                assert _close_to_scipy(g, w), (column, g, w)
            else:
                assert g == w, (column, g, w)


def _patients_db(rng: np.random.Generator, n: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    responder = rng.random(n) < 0.45
    failed = ~responder
    frame = {
        "patient_key": [f"p{i:05d}" for i in range(n)],
        "responder": responder,
        "bm_blasts_gt50": rng.random(n) < np.where(responder, 0.3, 0.55),
        "prior_em": np.zeros(n, dtype=bool),  # nobody: a row with a note
        # only non-responders: a = 0, estimate 0 and lower bound 0
        "active_em_at_start": failed & (rng.random(n) < 0.2),
        "cd19_baseline": rng.choice(["negative", "weak", "moderate", "strong"], n),
        # never EM at failure: the outcome column is empty, no estimate, interval (0, inf)
        "em_at_failure": np.where(failed, False, None),
        "cd19_at_failure": np.where(failed, rng.choice(["negative", "positive"], n), None),
    }
    import pandas as pd

    patients = pd.DataFrame(frame)  # noqa: F841 (read by DuckDB by name)
    con.execute("CREATE SCHEMA curated")
    con.execute("CREATE TABLE curated.patients AS SELECT * FROM patients")
    return con


def test_fisher_rows_equal_scipy_on_planted_tables():
    con = _patients_db(np.random.default_rng(5), 600)
    rows = statistics.fisher_rows(con)
    by = {(r["outcome"], r["term"]): r for r in rows}
    assert by[("responder", "prior_em")]["note"] == "no patient with or without the factor"
    active = by[("responder", "active_em_at_start")]
    assert active["events_with"] == 0 and (active["estimate"], active["ci_lower"]) == (0.0, 0.0)
    empty = by[("em_at_failure", "bm_blasts_gt50")]
    assert empty["events"] == 0 and empty["note"] is None
    assert (empty["estimate"], empty["ci_lower"], empty["ci_upper"]) == (None, 0.0, None)
    assert sum(r["estimate"] is not None and r["estimate"] > 0 for r in rows) >= 5
    _assert_rows_equal_scipy(rows)


def test_published_demo_fisher_rows_equal_scipy(demo_run):
    _, cfg, _ = demo_run
    con = duckdb.connect(str(cfg.analytics_path), read_only=True)
    try:
        frame = con.sql("SELECT * FROM endpoints.model_results WHERE analysis = 'fisher'").df()
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        assert len(rows) == sum(len(f) for _, _, f in statistics.FISHER_SETS)
        assert any(r["estimate"] is not None for r in rows)
        _assert_rows_equal_scipy(rows)
        assert rows == [{c: r[c] for c in statistics.COLUMNS} for r in statistics.fisher_rows(con)]
    finally:
        con.close()


def test_any_integer_array_gives_the_same_numbers():
    expected = conditional_odds_ratio([[3, 1], [1, 3]])
    for dtype in (np.int32, np.int64, np.uint16):
        assert conditional_odds_ratio(np.array([[3, 1], [1, 3]], dtype=dtype)) == expected
    assert isinstance(expected, ConditionalOddsRatio)


def test_the_window_drops_only_terms_that_are_zero_in_double_precision():
    from blinaetl.warehouse.exact import _Conditional

    full = _Conditional.of(62634, 92456, 85790, 59120)  # the 300k cohort's most balanced table
    near = full.window(-0.8, -0.7)
    assert 0 < len(near.logp) < len(full.logp) / 4 and near.offset[near.i] == 0
    for t in np.linspace(-0.8, -0.7, 7):
        for name in ("mean_minus_a", "at_least_a", "at_most_a"):
            ours, whole = getattr(near, name)(t), getattr(full, name)(t)
            assert ours == pytest.approx(whole, rel=1e-13, abs=1e-15), (name, t)

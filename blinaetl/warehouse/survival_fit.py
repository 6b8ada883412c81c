"""Cox proportional hazards (Efron ties, counting-process data) and the multivariate log-rank test,
vectorized with numpy, for `statistics.cox_rows` and `statistics.logrank_rows`.

Why not a library. lifelines (`CoxPHFitter`, `CoxTimeVaryingFitter`, `multivariate_logrank_test`)
defines the published numbers, but it loops in Python over event times (and over the rows at risk
at each of them): at 300,000 patients the 12 Cox fits took about 450 s and the 18 log-rank tests
37 s. statsmodels `PHReg` (entry times, `ties="efron"`) was measured on the same inputs and took
about 25 s per fit (14 s building its per-time index lists in Python loops, 11 s of Newton
iterations looping over failure times), so about 5 minutes for the 12 fits; it also takes an entry
time as *in* the risk set at that time (entry <= t), where a counting-process row (start, stop] is
at risk only for start < t <= stop. Figures and dates: docs/performance.md, "Statistical model fit
at scale"; `benchmarks/cox_benchmark.py` measures them again.

The definitions are lifelines' (the tests in tests/test_survival_fit.py compare on many data sets):

- Risk set at an event time t: the rows with start < t <= stop (a landmark or plain survival
  analysis has no start: every row with stop >= t). Every sum over a risk set is a difference of
  two suffix sums, over the rows sorted by stop and by start, read at `np.searchsorted` positions,
  so one evaluation of the partial likelihood costs a few passes over the rows whatever the number
  of event times.
- Efron ties: with d events tied at t, for l = 0..d-1 the denominator is
  S0(t) - (l/d) * sum of exp(x'b) over the tied events (and the same for the first and second
  moments); the log partial likelihood, its gradient and Hessian are summed over these d terms.
- Newton-Raphson from b = 0 with step halving when the likelihood does not increase; the variance
  is the inverse of the observed information at the final estimate. A fit that does not converge
  (separation: no event in one group, the estimate running off to infinity) raises
  `ConvergenceError` instead of returning a number.
- Log-rank: observed minus expected events per group and the hypergeometric covariance over the
  event times; chi-square = Z' V^+ Z on the first k-1 groups (sorted labels), df = k - 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Z95 = 1.959963984540054
# Smallest eigenvalue of the information at the estimate, relative to the information at b = 0,
# below which the estimate is taken as infinite (separation) instead of reported.
INFORMATION_FLOOR = 1e-8


class ConvergenceError(RuntimeError):
    """Newton-Raphson did not reach the maximum of the partial likelihood (e.g. separation)."""


@dataclass(frozen=True)
class CoxFit:
    """A fitted Cox model: coefficients, standard errors and the log partial likelihood."""

    coef: NDArray[np.float64]
    se: NDArray[np.float64]
    covariance: NDArray[np.float64]
    log_likelihood: float
    iterations: int

    @property
    def z(self) -> NDArray[np.float64]:
        return self.coef / self.se

    @property
    def p(self) -> NDArray[np.float64]:
        """Two-sided normal p of the Wald z (exact in the far tail: erfc, no subtraction)."""
        return np.array([math.erfc(abs(float(v)) / math.sqrt(2.0)) for v in self.z])

    def hazard_ratio(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """exp(coef) and its Wald 95% interval exp(coef -/+ Z95 * se)."""
        return (
            np.exp(self.coef),
            np.exp(self.coef - Z95 * self.se),
            np.exp(self.coef + Z95 * self.se),
        )


def _vector(values: ArrayLike, name: str, n: int | None = None) -> NDArray[np.float64]:
    out = np.asarray(values, dtype=np.float64)
    if out.ndim != 1:
        raise ValueError(f"{name}: expected one value per row (a 1-d array), got shape {out.shape}")
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: expected {n} values (one per row), got {len(out)}")
    if not np.isfinite(out).all():
        raise ValueError(f"{name}: row {int(np.flatnonzero(~np.isfinite(out))[0])} is not finite")
    return out


class _RiskSets:
    """Positions that turn per-row sums into risk-set and tied-event sums at each event time."""

    def __init__(
        self, start: NDArray[np.float64] | None, stop: NDArray[np.float64], event: NDArray[np.bool_]
    ) -> None:
        self.times, self.tie_index = np.unique(stop[event], return_inverse=True)
        self.event_rows = np.flatnonzero(event)
        self.ties = np.bincount(self.tie_index, minlength=len(self.times))
        self.by_stop = np.argsort(stop, kind="stable")
        self.stop_pos = np.searchsorted(stop[self.by_stop], self.times, side="left")
        self.by_start: NDArray[np.intp] | None = None
        if start is not None:
            self.by_start = np.argsort(start, kind="stable")
            self.start_pos = np.searchsorted(start[self.by_start], self.times, side="left")
        # Efron: each event time expanded into its d tied terms, l / d for l = 0..d-1
        k = np.repeat(np.arange(len(self.times)), self.ties)
        first = np.repeat(np.cumsum(self.ties) - self.ties, self.ties)
        self.term_time = k
        self.term_fraction = (np.arange(len(k)) - first) / self.ties[k]

    def at_risk(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per event time, the sum of `values` (rows first) over the rows at risk."""
        return self._suffix(values, self.by_stop, self.stop_pos) - (
            self._suffix(values, self.by_start, self.start_pos)
            if self.by_start is not None
            else 0.0
        )

    @staticmethod
    def _suffix(
        values: NDArray[np.float64], order: NDArray[np.intp], pos: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        v = values[order]
        suffix = np.zeros((len(v) + 1, *v.shape[1:]))
        suffix[:-1] = np.cumsum(v[::-1], axis=0)[::-1]
        result: NDArray[np.float64] = suffix[pos]
        return result

    def tied(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """Per event time, the sum of `values` over the events at that time."""
        v = values[self.event_rows]
        out = np.zeros((len(self.times), *v.shape[1:]))
        np.add.at(out, self.tie_index, v)
        return out


def _efron(
    risk: _RiskSets, x: NDArray[np.float64], beta: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    """Log partial likelihood, gradient and Hessian at `beta` (x centered)."""
    eta = x @ beta
    shift = float(eta.max())
    phi = np.exp(eta - shift)  # scaled by exp(-shift): cancels in every ratio
    w1 = phi[:, None] * x
    w2 = w1[:, :, None] * x[:, None, :]
    s0, s1, s2 = risk.at_risk(phi), risk.at_risk(w1), risk.at_risk(w2)
    e0, e1, e2 = risk.tied(phi), risk.tied(w1), risk.tied(w2)
    k, a = risk.term_time, risk.term_fraction
    den = s0[k] - a * e0[k]
    m1 = (s1[k] - a[:, None] * e1[k]) / den[:, None]
    m2 = (s2[k] - a[:, None, None] * e2[k]) / den[:, None, None]
    x_events = x[risk.event_rows].sum(axis=0)
    loglik = float(eta[risk.event_rows].sum() - np.log(den).sum() - shift * len(k))
    gradient = x_events - m1.sum(axis=0)
    hessian = -(m2.sum(axis=0) - m1.T @ m1)
    return loglik, gradient, hessian


def cox_fit(
    stop: ArrayLike,
    event: ArrayLike,
    covariates: ArrayLike,
    start: ArrayLike | None = None,
    *,
    max_iter: int = 50,
    tol: float = 1e-10,
) -> CoxFit:
    """Fit a Cox model by Newton-Raphson with Efron ties.

    `stop` (event or censoring times), `event` (0/1), `covariates` (rows x p, or one value per
    row for p = 1) and, for counting-process data, `start`: each row is at risk on (start, stop].
    Raises ValueError for inputs that cannot be fitted as given (lengths, non-finite values,
    start >= stop, no event) and ConvergenceError when Newton-Raphson does not converge within
    `max_iter` steps (largest step below `tol`)."""
    t_stop = _vector(stop, "stop")
    n = len(t_stop)
    raw_event = _vector(event, "event", n)
    if not np.isin(raw_event, (0.0, 1.0)).all():
        raise ValueError("event: expected 0 or 1 in every row")
    is_event = raw_event == 1.0
    x = np.asarray(covariates, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] != n:
        raise ValueError(f"covariates: expected {n} rows, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("covariates: a value is not finite")
    t_start = None
    if start is not None:
        t_start = _vector(start, "start", n)
        bad = np.flatnonzero(t_start >= t_stop)
        if len(bad):
            raise ValueError(
                f"start/stop: row {int(bad[0])} has start >= stop; each row must be an interval "
                "(start, stop] of positive length"
            )
    if not is_event.any():
        raise ValueError("event: no event, nothing to fit")
    x = x - x.mean(axis=0)  # the coefficients and their variance do not change; exp() stays tame
    risk = _RiskSets(t_start, t_stop, is_event)
    beta = np.zeros(x.shape[1])
    loglik, gradient, hessian = _efron(risk, x, beta)
    diag0 = np.diag(-hessian)
    if not (diag0 > 0).all():
        raise ConvergenceError("a covariate does not vary among the rows at risk at any event")
    scale = 1.0 / np.sqrt(diag0)
    for iteration in range(1, max_iter + 1):
        try:
            step = np.linalg.solve(-hessian, gradient)
        except np.linalg.LinAlgError as exc:
            raise ConvergenceError(f"singular information matrix: {exc}") from exc
        for _ in range(40):  # halve the step until the likelihood does not decrease
            new = _efron(risk, x, beta + step)
            if math.isfinite(new[0]) and new[0] >= loglik - 1e-12 * abs(loglik):
                break
            step = step / 2
        else:
            raise ConvergenceError("no step increases the partial likelihood")
        beta = beta + step
        loglik, gradient, hessian = new
        if float(np.abs(step).max()) < tol:
            # separation: the likelihood keeps rising towards a limit as a coefficient runs off to
            # infinity, until exp() leaves no usable gradient; the information has vanished there
            # (at a finite estimate it stays of the order of the information at b = 0)
            info = scale[:, None] * -hessian * scale[None, :]
            if float(np.linalg.eigvalsh(info).min()) < INFORMATION_FLOOR:
                raise ConvergenceError("the estimate is infinite (separation?)")
            covariance = np.asarray(np.linalg.inv(-hessian), dtype=np.float64)
            se = np.sqrt(np.diag(covariance))
            if not np.isfinite(se).all():
                raise ConvergenceError("information matrix not positive definite")
            return CoxFit(beta, se, covariance, loglik, iteration)
    raise ConvergenceError(f"no convergence in {max_iter} Newton steps (separation?)")


@dataclass(frozen=True)
class LogRank:
    """The multivariate log-rank test: chi-square statistic, degrees of freedom and p-value."""

    statistic: float
    df: int
    p_value: float


def logrank_test(time: ArrayLike, event: ArrayLike, group: ArrayLike) -> LogRank:
    """Log-rank test of equal hazards across the groups of `group` (lifelines'
    `multivariate_logrank_test`: at risk at t means time >= t; Z' pinv(V) Z on the first k-1
    sorted groups; chi-square with k - 1 df)."""
    from scipy.special import chdtrc

    t = _vector(time, "time")
    e = _vector(event, "event", len(t)) == 1.0
    values = np.asarray(group)
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError("group: a row has no group (NaN); give every row a group")
    labels, codes = np.unique(values, return_inverse=True)
    if len(codes) != len(t):
        raise ValueError(f"group: expected {len(t)} values (one per row), got {len(codes)}")
    k = len(labels)
    if k < 2:
        raise ValueError("group: a log-rank test needs two or more groups")
    times, tie = np.unique(t[e], return_inverse=True)
    deaths = np.zeros((len(times), k))
    np.add.at(deaths, (tie, codes[e]), 1.0)
    at_risk = np.empty((len(times), k))
    for j in range(k):
        ts = np.sort(t[codes == j])
        at_risk[:, j] = len(ts) - np.searchsorted(ts, times, side="left")
    n = at_risk.sum(axis=1)
    d = deaths.sum(axis=1)
    z = (deaths - at_risk * (d / n)[:, None]).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        finite = np.where(n > 1, (n - d) / (n - 1), 1.0)
    factor = finite * d / n**2
    v = np.diag((factor * n) @ at_risk) - (at_risk * factor[:, None]).T @ at_risk
    stat = float(z[:-1] @ np.linalg.pinv(v[:-1, :-1]) @ z[:-1])
    return LogRank(stat, k - 1, float(chdtrc(k - 1, stat)))

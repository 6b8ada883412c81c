"""Statistical models on the endpoint views, written into `endpoints.model_results`.

Run by `publish` on the new analytics file after the endpoint views exist and before it is
checkpointed and swapped in, so the report and analysts read the same rows and publishing stays
atomic. Every model reads a published view:

- log-rank tests (lifelines' `multivariate_logrank_test` definition) for every stratum variable
  of `endpoints.km_input` with two or more values, per parameter;
- Cox hazard ratios of HCT in CR at each landmark day of `endpoints.hct_landmark` (lifelines'
  `CoxPHFitter` definition, Efron ties) and time-dependent on responders from
  `endpoints.hct_counting_process` ((start, stop] rows, `CoxTimeVaryingFitter`'s definition);
  both fitted by `blinaetl.warehouse.survival_fit` (vectorized numpy, the same numbers as
  lifelines in tests/test_survival_fit.py, seconds instead of minutes at 300,000 patients);
- logistic regression of response on the seed's predictors (statsmodels `Logit`): univariable
  odds ratios and one multivariable model on complete cases;
- Fisher's exact tests (scipy's two-sided p) with the conditional maximum-likelihood odds ratio
  and its exact interval (`blinaetl.warehouse.exact`: scipy's definition, fast on large tables),
  for response, EM at failure and CD19-negative failure.

A model that cannot be fitted (one group empty, no event, separation) still gets a row, with
NULL estimates and the reason in `note`; nothing is dropped silently.

Fitting costs seconds (the imports of statsmodels and scipy most of it on the demo
cohort), so `write_model_results` can keep the rows of the last fit in a cache file beside the
live analytics file: they are reused only when the key matches, a SHA-256 of every input the
models read (`INPUTS`, the exact Arrow IPC bytes of each query's result), the source of this
module, of `exact.py` and of `survival_fit.py` (`FITTING_SOURCES`) and the versions of the
fitting libraries. Any other case, an unreadable cache included, fits.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:  # pandas, statsmodels and scipy load only when models are fitted
    import pandas as pd
    import polars as pl

Z95 = 1.959963984540054

PREDICTORS: dict[str, str] = {
    "bm_blasts_gt50": "Marrow blasts > 50%",
    "prior_em": "EM-ALL before blinatumomab",
    "active_em_at_start": "Active EM-ALL at start",
    "cd19_modstrong": "Baseline CD19 moderate/strong",
}

COLUMNS: dict[str, tuple[str, str]] = {
    "analysis": ("VARCHAR", "logrank, cox_landmark, cox_time_dependent, logistic or fisher."),
    "outcome": (
        "VARCHAR",
        "What is modelled: a parameter (OS, EFS, RFS), responder, em_at_failure or cd19_negative_at_failure.",
    ),
    "landmark_day": ("INTEGER", "cox_landmark: the landmark study day; NULL otherwise."),
    "term": ("VARCHAR", "The compared variable: a stratum variable, hct, or a predictor."),
    "model": ("VARCHAR", "univariable or multivariable (logistic); NULL otherwise."),
    "n": ("INTEGER", "Patients in the analysis."),
    "events": ("INTEGER", "Events (survival) or outcomes (binary) among them."),
    "n_with": ("INTEGER", "fisher: patients with the factor."),
    "events_with": ("INTEGER", "fisher: outcomes among patients with the factor."),
    "n_without": ("INTEGER", "fisher: patients without the factor."),
    "events_without": ("INTEGER", "fisher: outcomes among patients without the factor."),
    "estimate_type": ("VARCHAR", "HR (hazard ratio) or OR (odds ratio); NULL for log-rank."),
    "estimate": (
        "DOUBLE",
        "Hazard ratio (exp(coef)) or odds ratio; Fisher: conditional maximum-likelihood odds ratio.",
    ),
    "ci_lower": (
        "DOUBLE",
        "Lower 95% bound of the estimate (Wald for Cox and logistic; exact for Fisher).",
    ),
    "ci_upper": ("DOUBLE", "Upper 95% bound of the estimate."),
    "statistic": (
        "DOUBLE",
        "Test statistic: log-rank chi-square, Wald z (Cox, logistic); NULL for Fisher.",
    ),
    "df": ("INTEGER", "Degrees of freedom of the log-rank chi-square."),
    "p_value": (
        "DOUBLE",
        "Two-sided p-value (log-rank, Wald, Fisher's exact); not adjusted for multiple testing.",
    ),
    "note": (
        "VARCHAR",
        "Why a model has no estimate (e.g. a group is empty, no event, separation); NULL when fitted.",
    ),
}


# Everything the models read: one query per input, each executed once per fit by `Inputs` and
# shared by the fitting functions and by `inputs_key` (the cache key of `write_model_results`),
# so the key covers exactly what is fitted. Every result is in a deterministic order (the key
# hashes its bytes): ORDER BY ALL, or the primary key of curated.patients. km_input is read as
# the count of each distinct row (4.2 M rows at 300,000 patients, about 86,000 distinct: sorting
# the rows themselves cost 6-10 s); `Inputs.km_rows` repeats each distinct row `n_rows` times,
# which gives the rows of `... ORDER BY ALL` in that order, value for value.
INPUTS: dict[str, str] = {
    "km_input": (
        "SELECT param, stratum_variable, stratum_value, time_days, event, count(*) AS n_rows "
        "FROM endpoints.km_input WHERE stratum_variable <> 'overall' AND param <> 'OS_REVERSE' "
        "GROUP BY ALL ORDER BY ALL"
    ),
    "hct_landmark": (
        "SELECT landmark_day, param, patient_key, hct_in_cr_by_landmark::INTEGER AS hct, "
        "days_from_landmark, event FROM endpoints.hct_landmark ORDER BY ALL"
    ),
    "hct_landmark_summary": ("SELECT landmark_day FROM endpoints.hct_landmark_summary ORDER BY 1"),
    "hct_counting_process": (
        "SELECT param, patient_key, start_day, stop_day, event, hct "
        "FROM endpoints.hct_counting_process ORDER BY ALL"
    ),
    "patients": (
        "SELECT patient_key, responder, bm_blasts_gt50, prior_em, active_em_at_start, "
        "CASE WHEN cd19_baseline IS NOT NULL THEN cd19_baseline IN ('moderate', 'strong') END "
        "AS cd19_modstrong, em_at_failure, "
        "CASE WHEN em_at_failure IS NOT NULL AND cd19_at_failure IS NOT NULL "
        "THEN cd19_at_failure = 'negative' END AS cd19_negative_at_failure "
        "FROM curated.patients ORDER BY patient_key"
    ),
}


class Inputs:
    """The result of every `INPUTS` query on `con`, each query executed once (on first use) and
    kept as a polars frame: `inputs_key` hashes these frames and the fitting functions read them,
    so one fit reads its inputs once. `patients()` is the patients frame converted to pandas once
    (logistic and Fisher read it)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._frames: dict[str, pl.DataFrame] = {}
        self._patients: pd.DataFrame | None = None

    def frame(self, name: str) -> pl.DataFrame:
        """The result of `INPUTS[name]` (one chunk), read on the first call."""
        if name not in self._frames:
            self._frames[name] = self.con.sql(INPUTS[name]).pl().rechunk()
        return self._frames[name]

    def km_rows(self) -> pl.DataFrame:
        """The km_input rows the log-rank tests read (param, stratum_variable, stratum_value,
        time_days, event): every distinct row of `INPUTS["km_input"]` repeated `n_rows` times,
        in ORDER BY ALL order."""
        import numpy as np
        import polars as pl

        counted = self.frame("km_input")
        repeat = np.repeat(np.arange(counted.height), counted["n_rows"].to_numpy())
        return counted.select(pl.exclude("n_rows").gather(repeat))

    def patients(self) -> pd.DataFrame:
        """`INPUTS["patients"]` as pandas (the frame logistic and Fisher fit), converted once."""
        if self._patients is None:
            # through DuckDB, as `.df()` of the query converts (the same pandas dtypes)
            self._patients = self.con.from_arrow(self.frame("patients")).df()
        return self._patients


def _inputs(source: duckdb.DuckDBPyConnection | Inputs) -> Inputs:
    return source if isinstance(source, Inputs) else Inputs(source)


def _row(**values: Any) -> dict[str, Any]:
    return {c: values.get(c) for c in COLUMNS}


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def logrank_rows(source: duckdb.DuckDBPyConnection | Inputs) -> list[dict[str, Any]]:
    from blinaetl.warehouse.survival_fit import logrank_test

    km = _inputs(source).km_rows()
    rows = []
    # sorted keys: the order of pandas' groupby(sort=True), which wrote these rows before
    for (param, variable), g in sorted(
        km.partition_by(["param", "stratum_variable"], as_dict=True).items()
    ):
        base = {"analysis": "logrank", "outcome": param, "term": variable, "n": g.height}
        base["events"] = int(g["event"].sum())
        if g["stratum_value"].drop_nulls().n_unique() < 2:  # as pandas' nunique
            rows.append(_row(**base, note="only one group"))
            continue
        if base["events"] == 0:
            rows.append(_row(**base, note="no event"))
            continue
        # groups as dense ranks of the sorted labels: lifelines' group order, without sorting
        # Python strings
        res = logrank_test(
            g["time_days"].to_numpy(),
            g["event"].to_numpy(),
            g["stratum_value"].rank("dense").to_numpy(),
        )
        rows.append(_row(**base, statistic=res.statistic, df=res.df, p_value=res.p_value))
    return rows


def _cox(stop: Any, event: Any, hct: Any, start: Any = None) -> tuple[dict[str, Any], str | None]:
    """The HR row values of one Cox fit (`survival_fit.cox_fit`, Efron ties; lifelines'
    numbers), or the reason it could not be fitted."""
    from blinaetl.warehouse.survival_fit import cox_fit

    try:
        fit = cox_fit(stop, event, hct, start=start)
    except Exception as exc:  # convergence failure, unusable input: reported, not raised
        return {}, f"not fitted: {type(exc).__name__}"
    hr, low, high = fit.hazard_ratio()
    return {
        "estimate_type": "HR",
        "estimate": _finite(float(hr[0])),
        "ci_lower": _finite(float(low[0])),
        "ci_upper": _finite(float(high[0])),
        "statistic": _finite(float(fit.z[0])),
        "p_value": _finite(float(fit.p[0])),
    }, None


def cox_rows(source: duckdb.DuckDBPyConnection | Inputs) -> list[dict[str, Any]]:
    import polars as pl

    inputs = _inputs(source)
    rows = []
    # polars, not pandas: the inputs hold a million rows at 300,000 patients, and polars reads
    # and filters them several times faster; null-free counts as pandas' nunique did
    lm = inputs.frame("hct_landmark")
    for day in inputs.frame("hct_landmark_summary")["landmark_day"].to_list():
        for param in ("OS", "EFS", "RFS"):
            g = lm.filter((pl.col("landmark_day") == day) & (pl.col("param") == param))
            base = {"analysis": "cox_landmark", "outcome": param, "landmark_day": int(day)}
            base |= {"term": "hct", "n": g.height, "events": int(g["event"].sum())}
            if g["hct"].drop_nulls().n_unique() < 2:
                rows.append(_row(**base, note="HCT group or no-HCT group empty"))
            elif base["events"] == 0:
                rows.append(_row(**base, note="no event"))
            else:
                est, note = _cox(
                    g["days_from_landmark"].to_numpy(), g["event"].to_numpy(), g["hct"].to_numpy()
                )
                rows.append(_row(**base, **est, note=note))
    cp = inputs.frame("hct_counting_process")
    for param in ("OS", "EFS", "RFS"):
        g = cp.filter(pl.col("param") == param)
        base = {"analysis": "cox_time_dependent", "outcome": param, "term": "hct"}
        base |= {"n": g["patient_key"].drop_nulls().n_unique(), "events": int(g["event"].sum())}
        if g["hct"].drop_nulls().n_unique() < 2:
            rows.append(_row(**base, note="no patient transplanted in CR"))
        elif base["events"] == 0:
            rows.append(_row(**base, note="no event"))
        else:
            est, note = _cox(
                g["stop_day"].to_numpy(),
                g["event"].to_numpy(),
                g["hct"].to_numpy(),
                start=g["start_day"].to_numpy(),
            )
            rows.append(_row(**base, **est, note=note))
    return rows


def _patients(source: duckdb.DuckDBPyConnection | Inputs) -> pd.DataFrame:
    return _inputs(source).patients()


def logistic_rows(source: duckdb.DuckDBPyConnection | Inputs) -> list[dict[str, Any]]:
    import numpy as np

    # the two names `statsmodels.api` exports, from their modules: the api module imports
    # graphics, time series and nonparametrics too (0.5 s CPU more in every fitting process)
    from statsmodels.discrete.discrete_model import Logit
    from statsmodels.tools.tools import add_constant

    p = _patients(source)
    rows: list[dict[str, Any]] = []

    def fit(terms: list[str], model: str) -> None:
        d = p[["responder", *terms]].dropna().astype(float)
        n, events = len(d), int(d["responder"].sum())
        bases = [
            {"analysis": "logistic", "outcome": "responder", "term": t, "model": model}
            | {"n": n, "events": events}
            for t in terms
        ]
        if n == 0 or events in (0, n) or any(d[t].nunique() < 2 for t in terms):
            rows.extend(_row(**b, note="a group is empty or the outcome constant") for b in bases)
            return
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = Logit(d["responder"], add_constant(d[terms], has_constant="add")).fit(
                    disp=0, maxiter=100
                )
            if not res.mle_retvals.get("converged", True):
                raise RuntimeError("did not converge (separation?)")
        except Exception as exc:
            rows.extend(_row(**b, note=f"not fitted: {exc}") for b in bases)
            return
        ci = res.conf_int(alpha=0.05)
        for b, t in zip(bases, terms, strict=True):
            rows.append(
                _row(
                    **b,
                    estimate_type="OR",
                    estimate=_finite(float(np.exp(res.params[t]))),
                    ci_lower=_finite(float(np.exp(ci.loc[t, 0]))),
                    ci_upper=_finite(float(np.exp(ci.loc[t, 1]))),
                    statistic=_finite(float(res.tvalues[t])),
                    p_value=_finite(float(res.pvalues[t])),
                )
            )

    for term in PREDICTORS:
        fit([term], "univariable")
    fit(list(PREDICTORS), "multivariable")
    return rows


FISHER_SETS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("responder", "all patients", tuple(PREDICTORS)),
    ("em_at_failure", "patients who failed", ("cd19_modstrong", "prior_em", "bm_blasts_gt50")),
    ("cd19_negative_at_failure", "failures with CD19 at failure", tuple(PREDICTORS)),
)


def fisher_rows(source: duckdb.DuckDBPyConnection | Inputs) -> list[dict[str, Any]]:
    import numpy as np
    from scipy.stats import fisher_exact

    from blinaetl.warehouse.exact import conditional_odds_ratio

    p = _patients(source)
    rows = []
    for outcome, _population, factors in FISHER_SETS:
        for factor in factors:
            d = p[[factor, outcome]].dropna()
            f, o = d[factor].astype(bool), d[outcome].astype(bool)
            a, b = int((f & o).sum()), int((f & ~o).sum())
            c, e = int((~f & o).sum()), int((~f & ~o).sum())
            base = {"analysis": "fisher", "outcome": outcome, "term": factor, "n": len(d)}
            base |= {"events": a + c, "n_with": a + b, "events_with": a}
            base |= {"n_without": c + e, "events_without": c}
            if min(a + b, c + e) == 0:
                rows.append(_row(**base, note="no patient with or without the factor"))
                continue
            table = np.array([[a, b], [c, e]])
            pval = float(fisher_exact(table, alternative="two-sided")[1])
            ratio = conditional_odds_ratio(table, confidence_level=0.95)
            rows.append(
                _row(
                    **base,
                    estimate_type="OR",
                    estimate=_finite(ratio.estimate),
                    ci_lower=_finite(ratio.low),
                    ci_upper=_finite(ratio.high),
                    p_value=pval,
                )
            )
    return rows


def all_rows(source: duckdb.DuckDBPyConnection | Inputs) -> list[dict[str, Any]]:
    """Every model fitted, in a fixed order (analysis, outcome, landmark, term, model); each
    input read once (`Inputs`)."""
    inputs = _inputs(source)
    return logrank_rows(inputs) + cox_rows(inputs) + logistic_rows(inputs) + fisher_rows(inputs)


def model_results(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Every model row fitted, as a frame with the `COLUMNS` of `endpoints.model_results`."""
    import pandas as pd

    return pd.DataFrame(all_rows(con), columns=list(COLUMNS))


FITTING_PACKAGES = ("statsmodels", "scipy", "numpy", "pandas", "polars", "duckdb")
# The project's own code the fitted rows depend on: this module, the exact conditional odds
# ratio of the Fisher rows and the Cox and log-rank fits.
FITTING_SOURCES = (
    Path(__file__),
    Path(__file__).with_name("exact.py"),
    Path(__file__).with_name("survival_fit.py"),
)


def inputs_key(source: duckdb.DuckDBPyConnection | Inputs) -> str:
    """SHA-256 of what the fitted rows depend on: the result of every `INPUTS` query (Arrow IPC
    bytes of one chunk, schema included), the source of `FITTING_SOURCES` and the fitting
    libraries' versions. Equal keys mean the fit would read the same numbers with the same code.
    Given `Inputs`, it hashes the frames the fit then reads (no query runs twice)."""
    inputs = _inputs(source)
    h = hashlib.sha256(b"blinaetl model_results cache 1\0")
    for path in FITTING_SOURCES:
        code = path.read_bytes()
        h.update(f"\0{path.name}\0{len(code)}\0".encode())
        h.update(code)
    for package in FITTING_PACKAGES:
        h.update(f"\0{package}={metadata.version(package)}".encode())
    for name, sql in INPUTS.items():
        buf = io.BytesIO()
        inputs.frame(name).rechunk().write_ipc(buf, compression="uncompressed")
        h.update(f"\0{name}\0{sql}\0{buf.tell()}\0".encode())
        h.update(buf.getvalue())
    return h.hexdigest()


def cached_rows(cache: Path, key: str) -> list[dict[str, Any]] | None:
    """The rows stored in `cache` under `key`, or None (no cache, another key, unreadable)."""
    try:
        stored = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("key") != key:
        return None
    rows = stored.get("rows")
    if not isinstance(rows, list) or not all(
        isinstance(r, dict) and list(r) == list(COLUMNS) for r in rows
    ):
        return None
    return rows


def store_rows(cache: Path, key: str, rows: list[dict[str, Any]]) -> None:
    """Write the rows under `key` (a temporary file swapped in: a crash leaves no half file)."""
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"key": key, "rows": rows}) + "\n", encoding="utf-8")
    os.replace(tmp, cache)


def model_rows(con: duckdb.DuckDBPyConnection, cache: Path | None = None) -> list[dict[str, Any]]:
    """Every model row in `model_results` order: from `cache` when its key matches the inputs,
    else fitted (and stored in `cache` when one is given)."""
    inputs = Inputs(con)
    if cache is None:
        return all_rows(inputs)
    key = inputs_key(inputs)
    rows = cached_rows(cache, key)
    if rows is None:
        rows = all_rows(inputs)
        store_rows(cache, key, rows)
    return rows


def write_model_results(con: duckdb.DuckDBPyConnection, cache: Path | None = None) -> int:
    """Create `endpoints.model_results` (commented) on `con`; returns the number of rows.

    With `cache` (a JSON file), the rows of the last fit are reused when the inputs key matches
    (module docstring); the table is the same either way."""
    import pandas as pd

    results = pd.DataFrame(model_rows(con, cache), columns=list(COLUMNS))
    ddl = ", ".join(f"{c} {t}" for c, (t, _) in COLUMNS.items())
    con.execute("CREATE OR REPLACE TABLE endpoints.model_results (" + ddl + ")")
    if len(results):
        con.register("model_results_frame", results)
        try:
            con.execute("INSERT INTO endpoints.model_results SELECT * FROM model_results_frame")
        finally:
            con.unregister("model_results_frame")
    con.execute(
        "COMMENT ON TABLE endpoints.model_results IS 'Statistical models on the endpoint views, "
        "written by the run (blinaetl.warehouse.statistics): log-rank tests of every KM "
        "comparison, Cox hazard ratios of HCT in CR (landmark and time-dependent), logistic "
        "regression of response, Fisher exact tests with odds ratios. p-values are not adjusted "
        "for multiple testing.'"
    )
    for c, (_, text) in COLUMNS.items():
        escaped = text.replace("'", "''")
        con.execute(f"COMMENT ON COLUMN endpoints.model_results.{c} IS '{escaped}'")
    return len(results)

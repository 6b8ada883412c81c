"""The reproduction report: the seed study's analyses recomputed from the analytics database.

Table 1 (baseline characteristics), response by predictor with Fisher's exact test, risk
factors for EM disease at failure, failure patterns with CD19 status, and Kaplan-Meier plots of
OS and EFS by response and by HCT landmark group. It reads only the published database
(`curated.patients`, `endpoints.km`), so it shows exactly what analysts see.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from scipy.stats import fisher_exact

from blinaetl.reports.html import template_env

PREDICTORS: dict[str, str] = {
    "bm_blasts_gt50": "Marrow blasts > 50%",
    "prior_em": "EM-ALL before blinatumomab",
    "active_em_at_start": "Active EM-ALL at start",
    "cd19_modstrong": "Baseline CD19 moderate/strong",
}


@dataclass(frozen=True)
class TwoByTwo:
    """Outcome counts in patients with and without a binary factor (NULL factor excluded)."""

    factor: str
    label: str
    n_with: int
    events_with: int
    n_without: int
    events_without: int

    @property
    def p_value(self) -> float | None:
        if min(self.n_with, self.n_without) == 0:
            return None
        table = [
            [self.events_with, self.n_with - self.events_with],
            [self.events_without, self.n_without - self.events_without],
        ]
        return float(fisher_exact(table, alternative="two-sided")[1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "factor": self.factor,
            "label": self.label,
            "n_with": self.n_with,
            "events_with": self.events_with,
            "n_without": self.n_without,
            "events_without": self.events_without,
            "p_value": self.p_value,
        }


def _with_derived(patients: pl.DataFrame) -> pl.DataFrame:
    return patients.with_columns(
        pl.when(pl.col("cd19_baseline").is_null())
        .then(None)
        .otherwise(pl.col("cd19_baseline").is_in(["moderate", "strong"]))
        .alias("cd19_modstrong")
    )


def two_by_two(frame: pl.DataFrame, factor: str, outcome: str, label: str) -> TwoByTwo:
    """Count `outcome` (boolean) among patients with and without `factor` (boolean)."""
    known = frame.filter(pl.col(factor).is_not_null() & pl.col(outcome).is_not_null())
    with_f = known.filter(pl.col(factor))
    without_f = known.filter(~pl.col(factor))
    return TwoByTwo(
        factor=factor,
        label=label,
        n_with=with_f.height,
        events_with=int(with_f[outcome].sum()),
        n_without=without_f.height,
        events_without=int(without_f[outcome].sum()),
    )


def table_one(patients: pl.DataFrame) -> list[dict[str, Any]]:
    """Baseline characteristics, overall and by response."""
    groups = {
        "all": patients,
        "responders": patients.filter(pl.col("responder")),
        "non_responders": patients.filter(~pl.col("responder")),
    }
    rows: list[dict[str, Any]] = []

    def add(label: str, fn) -> None:
        rows.append({"characteristic": label, **{g: fn(f) for g, f in groups.items()}})

    add("Patients, n", lambda f: str(f.height))

    def median_iqr(col: str):
        def fmt(f: pl.DataFrame) -> str:
            s = f[col].drop_nulls()
            if s.is_empty():
                return "-"
            q1 = s.quantile(0.25, "linear")
            q3 = s.quantile(0.75, "linear")
            return f"{s.median():g} ({q1:g}-{q3:g})"

        return fmt

    def count_pct(expr: pl.Expr):
        def fmt(f: pl.DataFrame) -> str:
            if f.height == 0:
                return "-"
            n = f.select(expr.fill_null(False).sum()).item()
            return f"{n} ({100 * n / f.height:.0f}%)"

        return fmt

    add("Age at start, median (IQR)", median_iqr("age_at_start"))
    add("Female", count_pct(pl.col("sex") == "F"))
    add("Ph-positive", count_pct(pl.col("ph_status") == "positive"))
    add("Prior allogeneic HCT", count_pct(pl.col("prior_hct")))
    add("Prior lines, median (IQR)", median_iqr("prior_lines"))
    add("Marrow blasts %, median (IQR)", median_iqr("bm_blasts_pct"))
    add("Marrow blasts > 50%", count_pct(pl.col("bm_blasts_gt50")))
    add("EM-ALL before blinatumomab", count_pct(pl.col("prior_em")))
    add("Active EM-ALL at start", count_pct(pl.col("active_em_at_start")))
    for cls in ("negative", "dim", "moderate", "strong"):
        add(f"Baseline CD19 {cls}", count_pct(pl.col("cd19_baseline") == cls))
    add("Baseline CD19 not evaluable", count_pct(pl.col("cd19_baseline").is_null()))
    return rows


def failure_patterns(patients: pl.DataFrame) -> list[dict[str, Any]]:
    """Among refractory and among relapsed patients: EM involvement, pattern, CD19 at failure."""
    out = []
    groups = {
        "refractory": patients.filter(pl.col("best_response") == "refractory"),
        "relapsed": patients.filter(pl.col("relapsed").fill_null(False)),
    }
    for name, f in groups.items():
        evaluable = f.filter(pl.col("cd19_at_failure").is_not_null())
        row = {
            "group": name,
            "n": f.height,
            "em_at_failure": int(f["em_at_failure"].fill_null(False).sum()),
            "isolated_marrow": int((f["failure_pattern"] == "isolated_marrow").sum()),
            "isolated_em": int((f["failure_pattern"] == "isolated_em").sum()),
            "combined": int((f["failure_pattern"] == "combined").sum()),
            "cd19_evaluable": evaluable.height,
            "cd19_negative": int((evaluable["cd19_at_failure"] == "negative").sum()),
            "cd19_dim": int((evaluable["cd19_at_failure"] == "dim").sum()),
            "cd19_positive": int(evaluable["cd19_at_failure"].is_in(["moderate", "strong"]).sum()),
        }
        out.append(row)
    return out


def compute(patients: pl.DataFrame) -> dict[str, Any]:
    """Every number the report shows, from a `curated.patients` frame."""
    p = _with_derived(patients)
    response = [two_by_two(p, f, "responder", label) for f, label in PREDICTORS.items()]
    failed = p.filter(
        pl.col("failure_pattern").is_not_null() & (pl.col("failure_pattern") != "none")
    )
    em_risk = [
        two_by_two(failed, f, "em_at_failure", label)
        for f, label in (
            ("cd19_modstrong", PREDICTORS["cd19_modstrong"]),
            ("prior_em", PREDICTORS["prior_em"]),
            ("bm_blasts_gt50", PREDICTORS["bm_blasts_gt50"]),
        )
    ]
    responders = p.filter(pl.col("responder"))
    return {
        "n": p.height,
        "responders": responders.height,
        "cr_rate": responders.height / p.height if p.height else None,
        "hct_in_cr": int(responders["hct_in_cr"].fill_null(False).sum()),
        "relapsed": int(responders["relapsed"].fill_null(False).sum()),
        "table_one": table_one(p),
        "response_by_predictor": [r.as_dict() for r in response],
        "em_failure_risk": [r.as_dict() for r in em_risk],
        "failure_patterns": failure_patterns(p),
    }


def _km_png(km: pl.DataFrame, param: str, strata: tuple[str, list[str]], title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variable, values = strata
    part = km.filter((pl.col("param") == param) & (pl.col("stratum_variable") == variable))
    if part.is_empty():
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for stratum in values:
        s = part.filter(pl.col("stratum_value") == stratum).sort("time_days")
        if s.is_empty():
            continue
        times = [0, *s["time_days"].to_list()]
        surv = [1.0, *s["survival"].to_list()]
        n0 = s["n_risk"][0]
        ax.step(times, surv, where="post", label=f"{variable}={stratum} (n={n0})")
        cens = s.filter(pl.col("n_censor") > 0)
        ax.plot(cens["time_days"], cens["survival"], "|", color=ax.lines[-1].get_color())
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Days from blinatumomab start")
    ax.set_ylabel("Probability")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def km_figures(km: pl.DataFrame) -> list[dict[str, str]]:
    figures = []
    for param, label in (("OS", "Overall survival"), ("EFS", "Event-free survival")):
        for strata, by in (
            (("responder", ["true", "false"]), "by response"),
            (("hct_in_cr_by_landmark", ["true", "false"]), "by HCT before the landmark"),
        ):
            png = _km_png(km, param, strata, f"{label} {by}")
            if png:
                figures.append({"title": f"{label} {by}", "png": png})
    return figures


def write_study_report(analytics: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write `study_report.html` into `out_dir`; returns its path and the numbers shown."""
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        patients = con.sql("SELECT * FROM curated.patients ORDER BY patient_key").pl()
        km = con.sql("SELECT * FROM endpoints.km").pl()
        definitions = con.execute(
            "SELECT name, value FROM curated.definitions ORDER BY name"
        ).fetchall()
    finally:
        con.close()
    numbers = compute(patients)
    env = template_env()
    html = env.get_template("study_report.html.j2").render(
        numbers=numbers, figures=km_figures(km), definitions=definitions
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "study_report.html"
    path.write_text(html, encoding="utf-8")
    return path, numbers

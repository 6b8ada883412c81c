"""The study report: the seed study's analyses as a journal prints them, read from the database.

Every number comes from a published view or table of the analytics database (principle 9: one
implementation per number): Table 1 from `endpoints.table_one`, response rates with Wilson
intervals from `endpoints.response_rates`, odds ratios, hazard ratios and p-values from
`endpoints.model_results`, failure patterns from `endpoints.failure_patterns`, Kaplan-Meier
curves, medians and numbers at risk from `endpoints.km`, `endpoints.km_summary` and
`endpoints.km_at_risk`, EM-versus-marrow CD19 discordance from
`endpoints.cd19_discordance_summary`, cumulative incidence from `endpoints.cumulative_incidence`,
the HCT landmark from `endpoints.hct_landmark_summary`, follow-up from `endpoints.follow_up`.
This module only formats and draws them.
"""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from blinaetl.reports.child import ReportChild, serve
from blinaetl.reports.html import template_env

PREDICTOR_LABELS: dict[str, str] = {
    "bm_blasts_gt50": "Marrow blasts > 50%",
    "prior_em": "EM-ALL before blinatumomab",
    "active_em_at_start": "Active EM-ALL at start",
    "cd19_modstrong": "Baseline CD19 moderate/strong",
}
PARAM_LABELS = {
    "OS": "Overall survival",
    "EFS": "Event-free survival",
    "RFS": "Relapse-free survival",
}


def fmt_p(p: float | None) -> str:
    """A p-value as a journal prints it: `<0.001`, else three decimals; `-` when absent."""
    if p is None:
        return "-"
    if p < 0.001:
        return "<0.001"
    return f"{p:.3f}"


def fmt_count(k: int | None, n: int | None) -> str:
    """`k/n (x%)`; `-` when the denominator is 0 or absent."""
    if k is None or not n:
        return "-"
    return f"{k}/{n} ({100 * k / n:.0f}%)"


def fmt_est(est: float | None, lo: float | None, hi: float | None) -> str:
    if est is None:
        return "-"
    if lo is None or hi is None:
        return f"{est:.2f}"
    return f"{est:.2f} ({lo:.2f}-{hi:.2f})"


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    return con.sql(sql).pl().to_dicts()


def read_numbers(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    """Every figure the report shows, as read from the views (no arithmetic on patient rows)."""
    q = {
        "table_one": "SELECT * FROM endpoints.table_one ORDER BY row_order, level, group_name",
        "response_rates": "SELECT * FROM endpoints.response_rates",
        "models": "SELECT * FROM endpoints.model_results",
        "failure_patterns": "SELECT * FROM endpoints.failure_patterns ORDER BY failure_group",
        "km_summary": "SELECT * FROM endpoints.km_summary",
        "landmarks": "SELECT * FROM endpoints.hct_landmark_summary ORDER BY landmark_day",
        "follow_up": "SELECT * FROM endpoints.follow_up",
        "cd19_discordance": "SELECT * FROM endpoints.cd19_discordance_summary",
        "definitions": "SELECT name, value FROM curated.definitions ORDER BY name",
    }
    return {k: _rows(con, sql) for k, sql in q.items()}


def _model(models: list[dict], **match: Any) -> dict[str, Any] | None:
    for m in models:
        if all(m.get(k) == v for k, v in match.items()):
            return m
    return None


def table_one(rows: list[dict]) -> list[dict[str, str]]:
    """Rows of Table 1: `n/known (x%)` or `median (q1-q3)`, with the missing count per group."""
    out: dict[tuple, dict[str, str]] = {}
    for r in rows:
        label = r["characteristic"] + (
            f": {r['level']}" if r["characteristic"] == "Baseline CD19" else ""
        )
        row = out.setdefault((r["row_order"], r["level"] or ""), {"characteristic": label})
        if r["median"] is not None:
            cell = f"{r['median']:g} ({r['q1']:g}-{r['q3']:g})"
        elif r["n_yes"] is not None and r["n_known"]:
            cell = fmt_count(r["n_yes"], r["n_known"])
        else:
            cell = "-"
        if r["n_missing"]:
            cell += f"; missing {r['n_missing']}"
        row[r["group_name"]] = cell
    return [out[k] for k in sorted(out)]


def binary_tests(numbers: dict[str, Any], outcome: str) -> list[dict[str, str]]:
    """Fisher (counts, OR with exact CI, p) and, for response, the logistic ORs, per factor."""
    models = numbers["models"]
    rows = []
    for factor, label in PREDICTOR_LABELS.items():
        f = _model(models, analysis="fisher", outcome=outcome, term=factor)
        if f is None:
            continue
        row = {
            "label": label,
            "with": fmt_count(f["events_with"], f["n_with"]),
            "without": fmt_count(f["events_without"], f["n_without"]),
            "or": fmt_est(f["estimate"], f["ci_lower"], f["ci_upper"]),
            "p": fmt_p(f["p_value"]),
            "note": f["note"] or "",
        }
        if outcome == "responder":
            for level in ("true", "false"):
                rate = next(
                    (
                        r
                        for r in numbers["response_rates"]
                        if r["predictor"] == factor and r["level"] == level
                    ),
                    None,
                )
                row[f"wilson_{level}"] = (
                    f"{100 * rate['ci_lower']:.0f}-{100 * rate['ci_upper']:.0f}%" if rate else "-"
                )
            for model in ("univariable", "multivariable"):
                m = _model(models, analysis="logistic", term=factor, model=model)
                row[model] = fmt_est(m["estimate"], m["ci_lower"], m["ci_upper"]) if m else "-"
                row[f"{model}_p"] = fmt_p(m["p_value"]) if m else "-"
        rows.append(row)
    return rows


def failure_rows(numbers: dict[str, Any]) -> list[dict[str, str]]:
    out = []
    for r in numbers["failure_patterns"]:
        ev = r["cd19_evaluable"]
        out.append(
            {
                "group": r["failure_group"],
                "n": str(r["n"]),
                "em": fmt_count(r["em_at_failure"], r["n"]),
                "isolated_marrow": fmt_count(r["isolated_marrow"], r["n"]),
                "isolated_em": fmt_count(r["isolated_em"], r["n"]),
                "combined": fmt_count(r["combined"], r["n"]),
                "cd19_evaluable": str(ev),
                "cd19_negative": fmt_count(r["cd19_negative"], ev),
                "cd19_dim": fmt_count(r["cd19_dim"], ev),
                "cd19_positive": fmt_count(r["cd19_positive"], ev),
            }
        )
    return out


def _context(numbers: dict[str, Any]) -> dict[str, Any]:
    """The rows of the views the seed comparison reads, by name."""
    fp = {r["failure_group"]: r for r in numbers["failure_patterns"]}
    return {
        "models": numbers["models"],
        "overall": next(r for r in numbers["response_rates"] if r["predictor"] == "overall"),
        "ref": fp.get("refractory", {}),
        "rel": fp.get("relapsed", {}),
        "default_lm": next((r for r in numbers["landmarks"] if r["default_landmark"]), {}),
    }


def _fisher_p(models: list[dict], outcome: str, term: str) -> str:
    m = _model(models, analysis="fisher", outcome=outcome, term=term)
    return f"p = {fmt_p(m['p_value'])}" if m else "-"


def compare_response(c: dict[str, Any]) -> list[dict[str, str]]:
    """Seed vs cohort: patients, response rate and the response predictors."""
    models, overall = c["models"], c["overall"]
    responders = overall["responders"]

    return [
        {"figure": "Patients", "seed": "65", "cohort": str(overall["n"])},
        {
            "figure": "Response (CR/CRh/CRi)",
            "seed": "51% (33/65)",
            "cohort": fmt_count(responders, overall["n"])
            + f", 95% CI {100 * overall['ci_lower']:.0f}-{100 * overall['ci_upper']:.0f}%",
        },
        {
            "figure": "Lower response with marrow blasts > 50%",
            "seed": "P = .02",
            "cohort": _fisher_p(models, "responder", "bm_blasts_gt50"),
        },
        {
            "figure": "Lower response with EM-ALL before blinatumomab",
            "seed": "P = .005",
            "cohort": _fisher_p(models, "responder", "prior_em"),
        },
        {
            "figure": "Lower response with active EM-ALL at start",
            "seed": "P = .05",
            "cohort": _fisher_p(models, "responder", "active_em_at_start"),
        },
    ]


def compare_failures(c: dict[str, Any]) -> list[dict[str, str]]:
    """Seed vs cohort: failure patterns (EM and CD19 at failure) and their predictors."""
    models, ref, rel = c["models"], c["ref"], c["rel"]
    responders = c["overall"]["responders"]

    cd19_neg_ps = [
        m["p_value"]
        for m in models
        if m["analysis"] == "fisher"
        and m["outcome"] == "cd19_negative_at_failure"
        and m["p_value"] is not None
    ]
    return [
        {
            "figure": "Refractory: EM-ALL at failure",
            "seed": "13/32 (41%)",
            "cohort": fmt_count(ref.get("em_at_failure"), ref.get("n")),
        },
        {
            "figure": "Refractory: CD19 negative / dim (of evaluable)",
            "seed": "18% / 23%",
            "cohort": fmt_count(ref.get("cd19_negative"), ref.get("cd19_evaluable"))
            + " / "
            + fmt_count(ref.get("cd19_dim"), ref.get("cd19_evaluable")),
        },
        {
            "figure": "Responders who relapsed",
            "seed": "20/33 (61%)",
            "cohort": fmt_count(rel.get("n"), responders),
        },
        {
            "figure": "Relapses with EM-ALL",
            "seed": "8/20 (40%)",
            "cohort": fmt_count(rel.get("em_at_failure"), rel.get("n")),
        },
        {
            "figure": "Relapse: CD19 negative / dim (of evaluable)",
            "seed": "35% / 6%",
            "cohort": fmt_count(rel.get("cd19_negative"), rel.get("cd19_evaluable"))
            + " / "
            + fmt_count(rel.get("cd19_dim"), rel.get("cd19_evaluable")),
        },
        {
            "figure": "EM-ALL at failure: pretreatment CD19 moderate/strong",
            "seed": "P = .01",
            "cohort": _fisher_p(models, "em_at_failure", "cd19_modstrong"),
        },
        {
            "figure": "EM-ALL at failure: prior EM-ALL",
            "seed": "P = .04",
            "cohort": _fisher_p(models, "em_at_failure", "prior_em"),
        },
        {
            "figure": "Predictor of CD19-negative failure",
            "seed": "none",
            "cohort": f"smallest p = {fmt_p(min(cd19_neg_ps))}" if cd19_neg_ps else "-",
        },
    ]


def compare_transplant_and_survival(c: dict[str, Any]) -> list[dict[str, str]]:
    """Seed vs cohort: HCT in CR, OS by HCT (landmark and time-dependent), OS by response."""
    models, default_lm = c["models"], c["default_lm"]
    responders = c["overall"]["responders"]
    hr = _model(
        models, analysis="cox_landmark", outcome="OS", landmark_day=default_lm.get("landmark_day")
    )
    td = _model(models, analysis="cox_time_dependent", outcome="OS")
    lr = _model(models, analysis="logrank", outcome="OS", term="responder_at_landmark")
    return [
        {
            "figure": "Responders to allogeneic HCT in CR",
            "seed": "15/33 (45%)",
            "cohort": fmt_count(default_lm.get("hct_in_cr"), responders),
        },
        {
            "figure": "OS with vs without HCT (responders)",
            "seed": "better with HCT (time-fixed)",
            "cohort": (
                f"landmark day {default_lm.get('landmark_day')}: HR {fmt_est(hr['estimate'], hr['ci_lower'], hr['ci_upper'])}, p {fmt_p(hr['p_value'])}"
                if hr and hr["estimate"] is not None
                else "landmark: not estimable"
            )
            + (
                f"; time-dependent HR {fmt_est(td['estimate'], td['ci_lower'], td['ci_upper'])}"
                if td and td["estimate"] is not None
                else ""
            ),
        },
        {
            "figure": "OS responders vs non-responders",
            "seed": "better for responders",
            "cohort": f"log-rank p {fmt_p(lr['p_value'])} (from the response window)"
            if lr
            else "-",
        },
    ]


def cd19_discordance_text(numbers: dict[str, Any]) -> str:
    """One sentence from `endpoints.cd19_discordance_summary`: EM vs marrow CD19 discordance."""
    rows = numbers["cd19_discordance"]
    if not rows or not rows[0]["patients_paired"]:
        window = f" within {rows[0]['window_days']} days" if rows else ""
        return (
            "No patient has an EM specimen (tissue or CSF) and a marrow specimen"
            f"{window} with CD19 classified in both."
        )
    r = rows[0]
    paired = r["patients_paired"]
    return (
        f"EM specimen (tissue or CSF) vs marrow within {r['window_days']} days: CD19 class "
        f"discordant in {fmt_count(r['patients_discordant'], paired)} patients with such a pair "
        f"({r['pairs_discordant']} of {r['pairs']} pairs); CD19-negative EM beside "
        f"CD19-expressing marrow in {fmt_count(r['patients_em_negative'], paired)}, the reverse "
        f"in {fmt_count(r['patients_marrow_negative'], paired)}."
    )


def seed_comparison(numbers: dict[str, Any]) -> list[dict[str, str]]:
    """The seed abstract's figures (PMID 28494518) beside this cohort's, from the views."""
    c = _context(numbers)
    return compare_response(c) + compare_failures(c) + compare_transplant_and_survival(c)


# --- figures ---------------------------------------------------------------------------------

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]


def _figure(width: float, height: float) -> Any:
    """A figure on its own Agg canvas: matplotlib's object API, no `pyplot` (whose import and
    figure manager cost a second or more per run) and no global figure to close."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode("ascii")


def draw_km_stratum(
    ax: Any,
    table_ax: Any,
    part: pl.DataFrame,
    at_risk: pl.DataFrame,
    summary: list[dict],
    key: tuple[str, str, Any],
    row: tuple[int, int],
) -> None:
    """One stratum's curve, CI band and censor marks on `ax`, its numbers at risk on
    `table_ax`; `key` = (param, variable, value), `row` = (index, number of strata)."""
    param, variable, value = key
    i, n_values = row
    colour = COLOURS[i % len(COLOURS)]
    s = part.filter(pl.col("stratum_value") == value).sort("time_days")
    times = [0, *s["time_days"].to_list()]
    surv = [1.0, *s["survival"].to_list()]
    lo = [1.0, *s["ci_lower"].to_list()]
    hi = [1.0, *s["ci_upper"].to_list()]
    summ = next(
        r
        for r in summary
        if r["param"] == param and r["stratum_variable"] == variable and r["stratum_value"] == value
    )
    med = summ["median_days"]
    med_txt = "NR" if med is None else f"{med} d"
    ax.step(
        times,
        surv,
        where="post",
        color=colour,
        label=f"{value}: n={summ['n']}, median {med_txt}",
    )
    ax.fill_between(times, lo, hi, step="post", color=colour, alpha=0.15, linewidth=0)
    cens = s.filter(pl.col("n_censor") > 0)
    ax.plot(cens["time_days"], cens["survival"], "|", color=colour, markersize=8)
    risk = at_risk.filter(
        (pl.col("param") == param)
        & (pl.col("stratum_variable") == variable)
        & (pl.col("stratum_value") == value)
    )
    for t, n in zip(risk["time_days"], risk["n_at_risk"], strict=True):
        table_ax.text(
            t, n_values - 1 - i, str(n), ha="center", va="center", fontsize=7, color=colour
        )


def label_km_axes(
    ax: Any, table_ax: Any, variable: str, title: str, values: list, origin: int, lr_txt: str
) -> None:
    """Legend, axes, title and the number-at-risk table's labels of a KM figure."""
    ax.legend(
        title=f"{variable} ({lr_txt})" if lr_txt else variable,
        loc="upper right",
        fontsize=7,
        title_fontsize=7,
    )
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Probability")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    origin_txt = "blinatumomab start" if origin == 0 else f"the landmark (day {origin})"
    table_ax.set_xlabel(f"Days from {origin_txt}")
    table_ax.set_yticks(range(len(values)), [str(v) for v in reversed(values)], fontsize=7)
    table_ax.set_ylim(-0.5, len(values) - 0.5)
    table_ax.set_title("Number at risk", fontsize=8, loc="left")
    table_ax.tick_params(axis="x", labelsize=7)
    for spine in ("top", "right", "left"):
        table_ax.spines[spine].set_visible(False)


def km_figure(
    km: pl.DataFrame,
    at_risk: pl.DataFrame,
    summary: list[dict],
    models: list[dict],
    param: str,
    variable: str,
    title: str,
) -> dict[str, str] | None:
    """KM curves of one stratum variable: CI bands, censor marks, median and log-rank p in the
    legend, numbers at risk under the plot; the time axis starts at the stratum's origin."""
    part = km.filter((pl.col("param") == param) & (pl.col("stratum_variable") == variable))
    if part.is_empty():
        return None
    values = sorted(part["stratum_value"].unique().to_list(), reverse=True)
    origin = int(part["origin_day"][0])
    fig = _figure(7.0, 5.0)
    grid = fig.add_gridspec(2, 1, height_ratios=[4, 1], hspace=0.35)
    ax = fig.add_subplot(grid[0])
    table_ax = fig.add_subplot(grid[1], sharex=ax)
    lr = _model(models, analysis="logrank", outcome=param, term=variable)
    for i, value in enumerate(values):
        draw_km_stratum(
            ax, table_ax, part, at_risk, summary, (param, variable, value), (i, len(values))
        )
    lr_txt = f"log-rank p = {fmt_p(lr['p_value'])}" if lr and lr["p_value"] is not None else ""
    label_km_axes(ax, table_ax, variable, title, values, origin, lr_txt)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.93, bottom=0.1)
    caption = f"{title} (log-rank p {fmt_p(lr['p_value'])})" if lr else title
    return {"title": title, "png": _png(fig), "caption": caption}


def cumulative_incidence_figure(ci: pl.DataFrame) -> dict[str, str] | None:
    if ci.is_empty():
        return None
    fig = _figure(7.0, 4.0)
    ax = fig.subplots()
    labels = {
        "relapse": "Relapse (death in remission competing)",
        "em_relapse": "EM relapse",
        "cd19_negative_relapse": "CD19-negative relapse",
    }
    for i, (endpoint, label) in enumerate(labels.items()):
        s = ci.filter(pl.col("endpoint") == endpoint).sort("time_days")
        if s.is_empty():
            continue
        colour = COLOURS[i]
        times = [0, *s["time_days"].to_list()]
        f = [0.0, *s["cumulative_incidence"].to_list()]
        lo = [0.0, *s["ci_lower"].fill_null(0.0).to_list()]
        hi = [0.0, *s["ci_upper"].fill_null(0.0).to_list()]
        ax.step(times, f, where="post", color=colour, label=label)
        ax.fill_between(times, lo, hi, step="post", color=colour, alpha=0.12, linewidth=0)
    ax.set_ylim(0, 1.0)
    ax.set_xlabel("Days from response")
    ax.set_ylabel("Cumulative incidence")
    ax.set_title("Cumulative incidence among responders (Aalen-Johansen)", fontsize=10)
    ax.legend(loc="upper left", fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return {"title": "Cumulative incidence of relapse", "png": _png(fig)}


FIGURES: tuple[tuple[str, str, str], ...] = (
    (
        "OS",
        "responder_at_landmark",
        "Overall survival by response (landmark at the response window)",
    ),
    (
        "OS",
        "hct_in_cr_by_landmark",
        "Overall survival by HCT in CR before the landmark (responders)",
    ),
    (
        "EFS",
        "hct_in_cr_by_landmark",
        "Event-free survival by HCT in CR before the landmark (responders)",
    ),
    (
        "RFS",
        "hct_in_cr_by_landmark",
        "Relapse-free survival by HCT in CR before the landmark (responders)",
    ),
    ("OS", "overall", "Overall survival, all patients"),
    ("RFS", "overall", "Relapse-free survival from response, responders"),
)


def _hr_text(m: dict[str, Any] | None) -> str:
    """`HR (lo-hi), p x`, the model's note when not estimable, `-` when absent."""
    if m and m["estimate"] is not None:
        return fmt_est(m["estimate"], m["ci_lower"], m["ci_upper"]) + f", p {fmt_p(m['p_value'])}"
    return m["note"] if m else "-"


def landmark_rows(numbers: dict[str, Any]) -> list[dict[str, Any]]:
    """Each HCT landmark of `endpoints.hct_landmark_summary` with its share and its Cox HRs."""
    models = numbers["models"]
    return [
        r
        | {
            "share": f"{100 * r['share_hct_after_landmark']:.0f}%"
            if r["share_hct_after_landmark"] is not None
            else "-",
            "hr": {
                p: _hr_text(
                    _model(
                        models, analysis="cox_landmark", outcome=p, landmark_day=r["landmark_day"]
                    )
                )
                for p in ("OS", "EFS", "RFS")
            },
        }
        for r in numbers["landmarks"]
    ]


def time_dependent_rows(models: list[dict]) -> list[dict[str, Any]]:
    """The time-dependent HCT Cox model of each endpoint."""
    return [
        {
            "param": p,
            "n": m["n"],
            "events": m["events"],
            "hr": fmt_est(m["estimate"], m["ci_lower"], m["ci_upper"])
            if m["estimate"] is not None
            else (m["note"] or "-"),
            "p": fmt_p(m["p_value"]),
        }
        for p in ("OS", "EFS", "RFS")
        for m in [_model(models, analysis="cox_time_dependent", outcome=p)]
        if m
    ]


def km_summary_rows(summary: list[dict]) -> list[dict[str, Any]]:
    """`endpoints.km_summary` rows with the median, its CI and the 12-month survival as text."""

    def bound(v: Any, missing: str) -> str:
        return missing if v is None else str(v)

    return [
        r
        | {
            "median": "NR" if r["median_days"] is None else str(r["median_days"]),
            "median_ci": f"{bound(r['median_ci_lower_days'], '-')}-"
            f"{bound(r['median_ci_upper_days'], 'NR')}",
            "s12": fmt_est(r["surv_12m"], r["surv_12m_ci_lower"], r["surv_12m_ci_upper"]),
        }
        for r in sorted(
            summary, key=lambda r: (r["param"], r["stratum_variable"], r["stratum_value"])
        )
        if r["param"] != "OS_REVERSE"
    ]


def read_curves(con: duckdb.DuckDBPyConnection) -> dict[str, pl.DataFrame]:
    """The curve tables the figures draw: KM steps, numbers at risk, cumulative incidence."""
    return {
        "km": con.sql("SELECT * FROM endpoints.km").pl(),
        "at_risk": con.sql("SELECT * FROM endpoints.km_at_risk").pl(),
        "ci": con.sql(
            "SELECT * FROM endpoints.cumulative_incidence WHERE stratum_variable = 'overall'"
        ).pl(),
    }


def draw_figures(numbers: dict[str, Any], curves: dict[str, pl.DataFrame]) -> list[dict[str, str]]:
    """The KM figures of `FIGURES` that have data."""
    return [
        f
        for param, variable, title in FIGURES
        if (
            f := km_figure(
                curves["km"],
                curves["at_risk"],
                numbers["km_summary"],
                numbers["models"],
                param,
                variable,
                title,
            )
        )
    ]


def build_view(numbers: dict[str, Any], curves: dict[str, pl.DataFrame]) -> dict[str, Any]:
    """What the template renders: the numbers formatted, the figures drawn."""
    overall = next(r for r in numbers["response_rates"] if r["predictor"] == "overall")
    models = numbers["models"]
    return {
        "overall": overall,
        "cr": fmt_count(overall["responders"], overall["n"]),
        "table_one": table_one(numbers["table_one"]),
        "response": binary_tests(numbers, "responder"),
        "em_failure": binary_tests(numbers, "em_at_failure"),
        "cd19_failure": binary_tests(numbers, "cd19_negative_at_failure"),
        "failure": failure_rows(numbers),
        "cd19_discordance": cd19_discordance_text(numbers),
        "seed": seed_comparison(numbers),
        "landmarks": landmark_rows(numbers),
        "time_dependent": time_dependent_rows(models),
        "km_summary": km_summary_rows(numbers["km_summary"]),
        "follow_up": numbers["follow_up"][0] if numbers["follow_up"] else None,
        "n_tests": sum(1 for m in models if m["p_value"] is not None),
        "figures": draw_figures(numbers, curves),
        "incidence": cumulative_incidence_figure(curves["ci"]),
        "definitions": numbers["definitions"],
    }


def write_study_report(analytics: Path, out_dir: Path) -> tuple[Path, dict[str, Any]]:
    """Write `study_report.html` into `out_dir`; returns its path and the numbers read."""
    con = duckdb.connect(str(analytics), read_only=True)
    try:
        numbers = read_numbers(con)
        curves = read_curves(con)
    finally:
        con.close()
    html = template_env().get_template("study_report.html.j2").render(**build_view(numbers, curves))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "study_report.html"
    path.write_text(html, encoding="utf-8")
    return path, numbers


# --- the report in a child process (reports/child.py) ---------------------------------------


class StudyWorker(ReportChild):
    """`python -m blinaetl.reports.study worker`: imports matplotlib at once, then writes the
    study report of the job it is sent with `write_study_report` (the same file)."""

    def __init__(self) -> None:
        super().__init__("blinaetl.reports.study", "study report")

    def submit_report(self, analytics: Path, out_dir: Path) -> None:
        self.submit(analytics=str(analytics), out_dir=str(out_dir))


def _preload() -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    from matplotlib.figure import Figure  # noqa: F401

    template_env()


def _run_job(job: dict[str, Any]) -> dict[str, Any]:
    path, _ = write_study_report(Path(job["analytics"]), Path(job["out_dir"]))
    return {"path": str(path)}


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        sys.exit(serve(_preload, _run_job))
    print("usage: python -m blinaetl.reports.study worker   (a run starts it)")

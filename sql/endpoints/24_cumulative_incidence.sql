-- Aalen-Johansen cumulative incidence among responders, from the response day: relapse with
-- death in remission as the competing event; EM relapse and CD19-negative relapse with any other
-- first failure (another relapse or death in remission) competing. Exact on tied times: at each
-- time, F(t) = F(t-) + S(t-) x d1 / n with S the all-cause Kaplan-Meier. Variance by the
-- Greenwood-type formula (Collett, as lifelines' AalenJohansenFitter), log-log 95% interval.
CREATE OR REPLACE VIEW endpoints.cumulative_incidence AS
WITH first_failure AS (
    -- RFS: the first of relapse and death after the response day; the relapse wins a tie
    SELECT
        patient_key,
        rfs_days AS time_days,
        CASE
            WHEN rfs_event = 1 AND relapsed AND relapse_day = response_day + rfs_days THEN 'relapse'
            WHEN rfs_event = 1 THEN 'death'
        END AS failure,
        em_at_failure,
        cd19_at_failure,
        prior_em,
        active_em_at_start,
        cd19_baseline
    FROM curated.patients
    WHERE responder AND rfs_days IS NOT NULL
),

stratified AS (
    SELECT
        'overall' AS stratum_variable,
        'all' AS stratum_value,
        *
    FROM first_failure
    UNION ALL
    SELECT
        'prior_em' AS stratum_variable,
        prior_em::VARCHAR AS stratum_value,
        *
    FROM first_failure
    WHERE prior_em IS NOT NULL
    UNION ALL
    SELECT
        'active_em_at_start' AS stratum_variable,
        active_em_at_start::VARCHAR AS stratum_value,
        *
    FROM first_failure
    WHERE active_em_at_start IS NOT NULL
    UNION ALL
    SELECT
        'cd19_baseline' AS stratum_variable,
        cd19_baseline AS stratum_value,
        *
    FROM first_failure
    WHERE cd19_baseline IS NOT NULL
),

endpoint_rows AS (
    SELECT
        e.endpoint,
        f.stratum_variable,
        f.stratum_value,
        f.patient_key,
        f.time_days,
        CASE
            WHEN f.failure IS NULL THEN 0
            WHEN e.endpoint = 'relapse' AND f.failure = 'relapse' THEN 1
            WHEN e.endpoint = 'em_relapse' AND f.failure = 'relapse' AND f.em_at_failure THEN 1
            WHEN
                e.endpoint = 'cd19_negative_relapse'
                AND f.failure = 'relapse'
                AND f.cd19_at_failure = 'negative'
                THEN 1
            ELSE 2
        END AS cause
    FROM stratified AS f
    CROSS JOIN (VALUES ('relapse'), ('em_relapse'), ('cd19_negative_relapse')) AS e (endpoint)
),

counts AS (
    SELECT
        endpoint,
        stratum_variable,
        stratum_value,
        time_days,
        count(*) FILTER (WHERE cause = 1) AS d1,
        count(*) FILTER (WHERE cause = 2) AS d2,
        count(*) FILTER (WHERE cause = 0) AS n_censor
    FROM endpoint_rows
    GROUP BY endpoint, stratum_variable, stratum_value, time_days
),

at_risk AS (
    SELECT
        *,
        d1 + d2 AS d,
        sum(d1 + d2 + n_censor) OVER (
            PARTITION BY endpoint, stratum_variable, stratum_value ORDER BY time_days DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS n_risk
    FROM counts
),

lagged_survival AS (
    -- all-cause Kaplan-Meier just before each time
    SELECT
        *,
        CASE
            WHEN coalesce(bool_or(d = n_risk) OVER before, FALSE) THEN 0.0
            ELSE exp(coalesce(sum(CASE WHEN d < n_risk THEN ln(n_risk - d) - ln(n_risk) END) OVER before, 0))
        END AS surv_lag
    FROM at_risk
    WINDOW before AS (
        PARTITION BY endpoint, stratum_variable, stratum_value ORDER BY time_days ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
    )
),

incidence AS (
    SELECT
        *,
        sum(surv_lag * d1 / n_risk) OVER upto AS cif,
        CASE WHEN d < n_risk THEN d / (n_risk * (n_risk - d)) END AS a,
        surv_lag * d1 / (n_risk * n_risk) AS b,
        surv_lag * surv_lag * d1 * (n_risk - d1) / (n_risk * n_risk * n_risk) AS c
    FROM lagged_survival
    WINDOW upto AS (PARTITION BY endpoint, stratum_variable, stratum_value ORDER BY time_days ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),

sums AS (
    SELECT
        *,
        sum(a) OVER upto AS sum_a,
        sum(cif * a) OVER upto AS sum_fa,
        sum(cif * cif * a) OVER upto AS sum_ffa,
        sum(b) OVER upto AS sum_b,
        sum(cif * b) OVER upto AS sum_fb,
        sum(c) OVER upto AS sum_c
    FROM incidence
    WINDOW upto AS (PARTITION BY endpoint, stratum_variable, stratum_value ORDER BY time_days ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),

variances AS (
    SELECT
        *,
        -- a time where everyone at risk fails is the last; its first term is 0 x infinity = 0
        greatest(
            0.0,
            cif * cif * coalesce(sum_a, 0) - 2 * cif * coalesce(sum_fa, 0) + coalesce(sum_ffa, 0)
            + sum_c - 2 * (cif * sum_b - sum_fb)
        ) AS variance,
        1.959963984540054 AS z
    FROM sums
)

SELECT
    endpoint,
    stratum_variable,
    stratum_value,
    time_days,
    n_risk::INTEGER AS n_risk,
    d1::INTEGER AS n_event,
    d2::INTEGER AS n_competing,
    n_censor::INTEGER AS n_censor,
    cif AS cumulative_incidence,
    variance,
    CASE
        WHEN cif > 0 AND cif < 1
            THEN exp(-exp(ln(-ln(cif)) + z * sqrt(variance) / (cif * abs(ln(cif)))))
    END AS ci_lower,
    CASE
        WHEN cif > 0 AND cif < 1
            THEN exp(-exp(ln(-ln(cif)) - z * sqrt(variance) / (cif * abs(ln(cif)))))
    END AS ci_upper
FROM variances
ORDER BY endpoint, stratum_variable, stratum_value, time_days;

COMMENT ON VIEW endpoints.cumulative_incidence IS 'Aalen-Johansen cumulative incidence among responders from the response day, overall and by prior EM, active EM at start and baseline CD19 (relapse with death in remission competing; EM relapse and CD19-negative relapse with any other first failure competing), exact on tied times, with variance and log-log 95% interval.';
COMMENT ON COLUMN endpoints.cumulative_incidence.endpoint IS 'relapse, em_relapse (relapse with EM at failure) or cd19_negative_relapse (relapse with CD19 negative at failure; a relapse without a CD19 class counts as competing).';
COMMENT ON COLUMN endpoints.cumulative_incidence.stratum_variable IS 'overall, prior_em, active_em_at_start or cd19_baseline (patients with a missing value are in no stratum of that variable).';
COMMENT ON COLUMN endpoints.cumulative_incidence.stratum_value IS 'Value of the stratum variable (all for overall).';
COMMENT ON COLUMN endpoints.cumulative_incidence.time_days IS 'Days from the response day (RFS time).';
COMMENT ON COLUMN endpoints.cumulative_incidence.n_risk IS 'Responders at risk just before time_days.';
COMMENT ON COLUMN endpoints.cumulative_incidence.n_event IS 'Events of interest at time_days.';
COMMENT ON COLUMN endpoints.cumulative_incidence.n_competing IS 'Competing events at time_days.';
COMMENT ON COLUMN endpoints.cumulative_incidence.n_censor IS 'Censorings at time_days.';
COMMENT ON COLUMN endpoints.cumulative_incidence.cumulative_incidence IS 'Aalen-Johansen estimate: sum over times up to t of S(t-) x events / at risk, S the all-cause Kaplan-Meier.';
COMMENT ON COLUMN endpoints.cumulative_incidence.variance IS 'Variance of the estimate (Collett 3rd ed. p. 411, as lifelines).';
COMMENT ON COLUMN endpoints.cumulative_incidence.ci_lower IS 'Lower bound of the log-log 95% interval; NULL when the estimate is 0 or 1.';
COMMENT ON COLUMN endpoints.cumulative_incidence.ci_upper IS 'Upper bound of the log-log 95% interval; NULL when the estimate is 0 or 1.';

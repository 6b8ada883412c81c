-- Kaplan-Meier estimates in SQL per parameter and stratum, at every time with an event or a
-- censoring: survival, Greenwood standard error and the log-log 95% interval (as lifelines).
CREATE OR REPLACE VIEW endpoints.km AS
WITH counts AS (
    SELECT
        param,
        stratum,
        time_days,
        sum(event) AS n_event,
        count(*) - sum(event) AS n_censor
    FROM endpoints.km_input
    GROUP BY param, stratum, time_days
),

at_risk AS (
    SELECT
        *,
        sum(n_event + n_censor) OVER (
            PARTITION BY param, stratum ORDER BY time_days DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS n_risk
    FROM counts
),

steps AS (
    SELECT
        *,
        -- product of (1 - d/n) as exp(sum(log)); a step to zero is carried by the zero flag
        sum(CASE WHEN n_event < n_risk THEN ln(1 - n_event / n_risk) ELSE 0 END) OVER w AS log_surv,
        bool_or(n_event = n_risk) OVER w AS reached_zero,
        sum(CASE WHEN n_event < n_risk THEN n_event / (n_risk * (n_risk - n_event)) END) OVER w AS greenwood
    FROM at_risk
    WINDOW w AS (PARTITION BY param, stratum ORDER BY time_days ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),

estimates AS (
    SELECT
        *,
        CASE WHEN reached_zero THEN 0.0 ELSE exp(log_surv) END AS survival,
        1.959963984540054 AS z
    FROM steps
)

SELECT
    param,
    stratum,
    time_days,
    n_risk::INTEGER AS n_risk,
    n_event::INTEGER AS n_event,
    n_censor::INTEGER AS n_censor,
    survival,
    survival * sqrt(coalesce(greenwood, 0)) AS std_err,
    CASE
        WHEN survival = 1 THEN 1.0
        WHEN survival = 0 THEN 0.0
        ELSE exp(-exp(ln(-ln(survival)) - z * sqrt(coalesce(greenwood, 0)) / ln(survival)))
    END AS ci_lower,
    CASE
        WHEN survival = 1 THEN 1.0
        WHEN survival = 0 THEN 0.0
        ELSE exp(-exp(ln(-ln(survival)) + z * sqrt(coalesce(greenwood, 0)) / ln(survival)))
    END AS ci_upper
FROM estimates
ORDER BY param, stratum, time_days;

COMMENT ON VIEW endpoints.km IS 'Kaplan-Meier estimates per parameter and stratum (SQL): survival, Greenwood standard error, log-log 95% confidence interval, at each time with an event or censoring.';
COMMENT ON COLUMN endpoints.km.param IS 'Parameter code (OS, EFS, RFS).';
COMMENT ON COLUMN endpoints.km.stratum IS 'overall, or variable=value (see endpoints.km_input).';
COMMENT ON COLUMN endpoints.km.time_days IS 'Time in days.';
COMMENT ON COLUMN endpoints.km.n_risk IS 'Patients at risk just before time_days.';
COMMENT ON COLUMN endpoints.km.n_event IS 'Events at time_days.';
COMMENT ON COLUMN endpoints.km.n_censor IS 'Censorings at time_days.';
COMMENT ON COLUMN endpoints.km.survival IS 'Kaplan-Meier survival estimate S(t) = product of (1 - events/at risk).';
COMMENT ON COLUMN endpoints.km.std_err IS 'Greenwood standard error of S(t): S(t) x sqrt(sum events / (at risk x (at risk - events))).';
COMMENT ON COLUMN endpoints.km.ci_lower IS 'Lower bound of the log-log 95% confidence interval.';
COMMENT ON COLUMN endpoints.km.ci_upper IS 'Upper bound of the log-log 95% confidence interval.';

-- Kaplan-Meier estimates in SQL per parameter and stratum, at every time with an event or a
-- censoring: survival, Greenwood standard error and the log-log 95% interval (as lifelines).
-- The product of (1 - d/n) is taken as exp(sum(ln(n - d) - ln(n))) and rounded to km_decimals
-- (12) decimals, so that an exact half reads as 0.5 and the median (first time with
-- survival <= 0.5) is exact; a step to zero is carried by a flag.
CREATE OR REPLACE VIEW endpoints.km AS
WITH counts AS (
    SELECT
        param,
        stratum_variable,
        stratum_value,
        origin_day,
        time_days,
        sum(event) AS n_event,
        count(*) - sum(event) AS n_censor
    FROM endpoints.km_input
    GROUP BY param, stratum_variable, stratum_value, origin_day, time_days
),

at_risk AS (
    SELECT
        *,
        sum(n_event + n_censor) OVER (
            PARTITION BY param, stratum_variable, stratum_value ORDER BY time_days DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
        ) AS n_risk
    FROM counts
),

steps AS (
    SELECT
        *,
        sum(CASE WHEN n_event < n_risk THEN ln(n_risk - n_event) - ln(n_risk) ELSE 0 END) OVER w AS log_surv,
        bool_or(n_event = n_risk) OVER w AS reached_zero,
        sum(CASE WHEN n_event < n_risk THEN n_event / (n_risk * (n_risk - n_event)) END) OVER w AS greenwood
    FROM at_risk
    WINDOW w AS (
        PARTITION BY param, stratum_variable, stratum_value ORDER BY time_days
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    )
),

estimates AS (
    SELECT
        *,
        CASE WHEN reached_zero THEN 0.0 ELSE exp(log_surv) END AS raw_survival,
        def_num('km_decimals')::INTEGER AS decimals,
        1.959963984540054 AS z
    FROM steps
)

SELECT
    param,
    stratum_variable,
    stratum_value,
    origin_day,
    time_days,
    n_risk::INTEGER AS n_risk,
    n_event::INTEGER AS n_event,
    n_censor::INTEGER AS n_censor,
    round(raw_survival, decimals) AS survival,
    raw_survival * sqrt(coalesce(greenwood, 0)) AS std_err,
    CASE
        WHEN raw_survival = 1 THEN 1.0
        WHEN raw_survival = 0 THEN 0.0
        ELSE round(exp(-exp(ln(-log_surv) - z * sqrt(coalesce(greenwood, 0)) / log_surv)), decimals)
    END AS ci_lower,
    CASE
        WHEN raw_survival = 1 THEN 1.0
        WHEN raw_survival = 0 THEN 0.0
        ELSE round(exp(-exp(ln(-log_surv) + z * sqrt(coalesce(greenwood, 0)) / log_surv)), decimals)
    END AS ci_upper
FROM estimates
ORDER BY param, stratum_variable, stratum_value, time_days;

COMMENT ON VIEW endpoints.km IS 'Kaplan-Meier estimates per parameter and stratum (SQL): survival, Greenwood standard error, log-log 95% confidence interval, at each time with an event or censoring.';
COMMENT ON COLUMN endpoints.km.param IS 'Parameter code (OS, EFS, RFS, OS_REVERSE).';
COMMENT ON COLUMN endpoints.km.stratum_variable IS 'Stratum variable (see endpoints.km_input).';
COMMENT ON COLUMN endpoints.km.stratum_value IS 'Stratum value (see endpoints.km_input).';
COMMENT ON COLUMN endpoints.km.origin_day IS 'Study day the time axis starts from (0, or the landmark day of a landmark stratum).';
COMMENT ON COLUMN endpoints.km.time_days IS 'Days from origin_day.';
COMMENT ON COLUMN endpoints.km.n_risk IS 'Patients at risk just before time_days.';
COMMENT ON COLUMN endpoints.km.n_event IS 'Events at time_days.';
COMMENT ON COLUMN endpoints.km.n_censor IS 'Censorings at time_days.';
COMMENT ON COLUMN endpoints.km.survival IS 'Kaplan-Meier survival S(t) = product of (1 - events/at risk), rounded to km_decimals (12) decimals.';
COMMENT ON COLUMN endpoints.km.std_err IS 'Greenwood standard error of S(t): S(t) x sqrt(sum events / (at risk x (at risk - events))).';
COMMENT ON COLUMN endpoints.km.ci_lower IS 'Lower bound of the log-log 95% confidence interval, rounded to km_decimals; 0 once S(t) = 0.';
COMMENT ON COLUMN endpoints.km.ci_upper IS 'Upper bound of the log-log 95% confidence interval, rounded to km_decimals; 0 once S(t) = 0.';

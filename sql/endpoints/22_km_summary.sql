-- Kaplan-Meier summary per parameter and stratum: n, events, median with 95% interval and
-- survival at 6, 12 and 24 months (x days_per_month) with its interval. The median is the first time
-- with S(t) <= 0.5 and its interval bounds the first times the interval bounds reach 0.5 (the
-- rule of lifelines' median_survival_times applied to the bounds); NULL when never reached.
CREATE OR REPLACE VIEW endpoints.km_summary AS
WITH strata AS (
    SELECT
        param,
        stratum_variable,
        stratum_value,
        origin_day,
        sum(n_event + n_censor)::INTEGER AS n,
        sum(n_event)::INTEGER AS events,
        max(time_days) AS max_time_days,
        min(time_days) FILTER (WHERE survival <= 0.5) AS median_days,
        min(time_days) FILTER (WHERE ci_lower <= 0.5) AS median_ci_lower_days,
        min(time_days) FILTER (WHERE ci_upper <= 0.5) AS median_ci_upper_days
    FROM endpoints.km
    GROUP BY param, stratum_variable, stratum_value, origin_day
),

months AS (
    SELECT
        m.months,
        m.months * def_num('days_per_month') AS at_days
    FROM (VALUES (6), (12), (24)) AS m (months)
),

survival_at AS (
    -- S(t) at the last time on or before t; NULL when t is beyond the stratum's follow-up
    SELECT
        s.param,
        s.stratum_variable,
        s.stratum_value,
        m.months,
        CASE WHEN m.at_days <= s.max_time_days THEN coalesce(max_by(k.survival, k.time_days), 1.0) END
            AS survival,
        CASE WHEN m.at_days <= s.max_time_days THEN coalesce(max_by(k.ci_lower, k.time_days), 1.0) END
            AS ci_lower,
        CASE WHEN m.at_days <= s.max_time_days THEN coalesce(max_by(k.ci_upper, k.time_days), 1.0) END
            AS ci_upper
    FROM strata AS s
    CROSS JOIN months AS m
    LEFT JOIN endpoints.km AS k
        ON
            s.param = k.param
            AND s.stratum_variable = k.stratum_variable
            AND s.stratum_value = k.stratum_value
            AND m.at_days >= k.time_days
    GROUP BY s.param, s.stratum_variable, s.stratum_value, m.months, m.at_days, s.max_time_days
)

SELECT
    s.param,
    s.stratum_variable,
    s.stratum_value,
    s.origin_day,
    s.n,
    s.events,
    s.median_days,
    s.median_ci_lower_days,
    s.median_ci_upper_days,
    max(a.survival) FILTER (WHERE a.months = 6) AS surv_6m,
    max(a.ci_lower) FILTER (WHERE a.months = 6) AS surv_6m_ci_lower,
    max(a.ci_upper) FILTER (WHERE a.months = 6) AS surv_6m_ci_upper,
    max(a.survival) FILTER (WHERE a.months = 12) AS surv_12m,
    max(a.ci_lower) FILTER (WHERE a.months = 12) AS surv_12m_ci_lower,
    max(a.ci_upper) FILTER (WHERE a.months = 12) AS surv_12m_ci_upper,
    max(a.survival) FILTER (WHERE a.months = 24) AS surv_24m,
    max(a.ci_lower) FILTER (WHERE a.months = 24) AS surv_24m_ci_lower,
    max(a.ci_upper) FILTER (WHERE a.months = 24) AS surv_24m_ci_upper
FROM strata AS s
LEFT JOIN survival_at AS a
    ON
        s.param = a.param
        AND s.stratum_variable = a.stratum_variable
        AND s.stratum_value = a.stratum_value
GROUP BY ALL
ORDER BY s.param, s.stratum_variable, s.stratum_value;

COMMENT ON VIEW endpoints.km_summary IS 'Kaplan-Meier summary per parameter and stratum (endpoints.km): n, events, median with 95% interval, survival at 6, 12 and 24 months with 95% interval.';
COMMENT ON COLUMN endpoints.km_summary.param IS 'Parameter code (OS, EFS, RFS, OS_REVERSE).';
COMMENT ON COLUMN endpoints.km_summary.stratum_variable IS 'Stratum variable (see endpoints.km_input).';
COMMENT ON COLUMN endpoints.km_summary.stratum_value IS 'Stratum value.';
COMMENT ON COLUMN endpoints.km_summary.origin_day IS 'Study day the times are measured from.';
COMMENT ON COLUMN endpoints.km_summary.n IS 'Patients in the stratum.';
COMMENT ON COLUMN endpoints.km_summary.events IS 'Events in the stratum.';
COMMENT ON COLUMN endpoints.km_summary.median_days IS 'Median time (days from origin_day): first time with S(t) <= 0.5; NULL if not reached.';
COMMENT ON COLUMN endpoints.km_summary.median_ci_lower_days IS 'Lower 95% bound of the median: first time the lower interval bound of S(t) is <= 0.5.';
COMMENT ON COLUMN endpoints.km_summary.median_ci_upper_days IS 'Upper 95% bound of the median: first time the upper interval bound of S(t) is <= 0.5; NULL if not reached.';
COMMENT ON COLUMN endpoints.km_summary.surv_6m IS 'S(t) at 6 months (6 x days_per_month days): the estimate at the last time on or before it; NULL beyond the last follow-up time of the stratum.';
COMMENT ON COLUMN endpoints.km_summary.surv_6m_ci_lower IS 'Lower bound of the log-log 95% interval of surv_6m.';
COMMENT ON COLUMN endpoints.km_summary.surv_6m_ci_upper IS 'Upper bound of the log-log 95% interval of surv_6m.';
COMMENT ON COLUMN endpoints.km_summary.surv_12m IS 'S(t) at 12 months, as surv_6m.';
COMMENT ON COLUMN endpoints.km_summary.surv_12m_ci_lower IS 'Lower bound of the 95% interval of surv_12m.';
COMMENT ON COLUMN endpoints.km_summary.surv_12m_ci_upper IS 'Upper bound of the 95% interval of surv_12m.';
COMMENT ON COLUMN endpoints.km_summary.surv_24m IS 'S(t) at 24 months, as surv_6m.';
COMMENT ON COLUMN endpoints.km_summary.surv_24m_ci_lower IS 'Lower bound of the 95% interval of surv_24m.';
COMMENT ON COLUMN endpoints.km_summary.surv_24m_ci_upper IS 'Upper bound of the 95% interval of surv_24m.';

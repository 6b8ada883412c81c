-- The table printed under a Kaplan-Meier plot: per parameter and stratum, every
-- km_at_risk_step_days (90) days from the origin up to the longest follow-up: patients at risk
-- at that time (time >= t) and the events and censorings before it (time < t), so that
-- at risk + events + censored = n at every time.
CREATE OR REPLACE VIEW endpoints.km_at_risk AS
WITH strata AS (
    SELECT
        param,
        stratum_variable,
        stratum_value,
        origin_day,
        max(time_days) AS max_time_days
    FROM endpoints.km_input
    GROUP BY param, stratum_variable, stratum_value, origin_day
),

grid AS (
    SELECT
        s.param,
        s.stratum_variable,
        s.stratum_value,
        s.origin_day,
        unnest(range(0, s.max_time_days + 1, def_num('km_at_risk_step_days')::INTEGER)) AS time_days
    FROM strata AS s
)

SELECT
    g.param,
    g.stratum_variable,
    g.stratum_value,
    g.origin_day,
    g.time_days,
    count(*) FILTER (WHERE k.time_days >= g.time_days)::INTEGER AS n_at_risk,
    count(*) FILTER (WHERE k.time_days < g.time_days AND k.event = 1)::INTEGER AS events_before,
    count(*) FILTER (WHERE k.time_days < g.time_days AND k.event = 0)::INTEGER AS censored_before
FROM grid AS g
INNER JOIN endpoints.km_input AS k
    ON
        g.param = k.param
        AND g.stratum_variable = k.stratum_variable
        AND g.stratum_value = k.stratum_value
GROUP BY ALL
ORDER BY g.param, g.stratum_variable, g.stratum_value, g.time_days;

COMMENT ON VIEW endpoints.km_at_risk IS 'Numbers at risk, events and censorings at fixed times (every km_at_risk_step_days from the origin) per parameter and stratum: the table under a Kaplan-Meier plot.';
COMMENT ON COLUMN endpoints.km_at_risk.param IS 'Parameter code (OS, EFS, RFS, OS_REVERSE).';
COMMENT ON COLUMN endpoints.km_at_risk.stratum_variable IS 'Stratum variable (see endpoints.km_input).';
COMMENT ON COLUMN endpoints.km_at_risk.stratum_value IS 'Stratum value.';
COMMENT ON COLUMN endpoints.km_at_risk.origin_day IS 'Study day the times are measured from.';
COMMENT ON COLUMN endpoints.km_at_risk.time_days IS 'Days from origin_day: 0, km_at_risk_step_days, ... up to the longest follow-up of the stratum.';
COMMENT ON COLUMN endpoints.km_at_risk.n_at_risk IS 'Patients whose time is at or after time_days (at risk at that time).';
COMMENT ON COLUMN endpoints.km_at_risk.events_before IS 'Events before time_days.';
COMMENT ON COLUMN endpoints.km_at_risk.censored_before IS 'Censorings before time_days.';

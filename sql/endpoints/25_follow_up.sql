-- Median follow-up by the reverse Kaplan-Meier method (Schemper and Smith): the Kaplan-Meier of
-- OS with censoring as the event (endpoints.km, param OS_REVERSE), with its 95% interval.
CREATE OR REPLACE VIEW endpoints.follow_up AS
WITH os AS (
    SELECT
        count(*)::INTEGER AS n,
        count(*) FILTER (WHERE cnsr <> 0)::INTEGER AS censored,
        max(aval_days) AS longest_days
    FROM curated.time_to_event
    WHERE param = 'OS'
)

SELECT
    'OS' AS param,
    s.stratum_variable,
    s.stratum_value,
    o.n,
    o.censored AS alive_censored,
    s.median_days AS median_follow_up_days,
    s.median_ci_lower_days AS median_follow_up_ci_lower_days,
    s.median_ci_upper_days AS median_follow_up_ci_upper_days,
    o.longest_days AS longest_follow_up_days
FROM endpoints.km_summary AS s
CROSS JOIN os AS o
WHERE s.param = 'OS_REVERSE' AND s.stratum_variable = 'overall';

COMMENT ON VIEW endpoints.follow_up IS 'Median follow-up (reverse Kaplan-Meier of OS) with its 95% interval, from endpoints.km_summary.';
COMMENT ON COLUMN endpoints.follow_up.param IS 'Parameter whose follow-up is summarised (OS).';
COMMENT ON COLUMN endpoints.follow_up.stratum_variable IS 'Stratum variable (overall).';
COMMENT ON COLUMN endpoints.follow_up.stratum_value IS 'Stratum value (all).';
COMMENT ON COLUMN endpoints.follow_up.n IS 'Patients with an OS row.';
COMMENT ON COLUMN endpoints.follow_up.alive_censored IS 'Patients censored alive (the events of the reverse Kaplan-Meier).';
COMMENT ON COLUMN endpoints.follow_up.median_follow_up_days IS 'Median follow-up in days: the median of the reverse Kaplan-Meier; NULL if not reached.';
COMMENT ON COLUMN endpoints.follow_up.median_follow_up_ci_lower_days IS 'Lower 95% bound of the median follow-up.';
COMMENT ON COLUMN endpoints.follow_up.median_follow_up_ci_upper_days IS 'Upper 95% bound of the median follow-up; NULL if not reached.';
COMMENT ON COLUMN endpoints.follow_up.longest_follow_up_days IS 'Longest OS time in days (event or censoring).';

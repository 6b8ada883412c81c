-- Counting-process rows (start, stop], event, hct for a time-dependent Cox model of HCT in CR
-- among responders (domain.md section 8): time at risk starts on the response day; one interval
-- before HCT (hct = 0) and, for patients transplanted in CR before the end of follow-up, one from
-- HCT (hct = 1). Intervals never have zero length: a patient whose follow-up ends on the response
-- day contributes no time at risk and has no row; an HCT on the last day opens no interval.
CREATE OR REPLACE VIEW endpoints.hct_counting_process AS
WITH tte AS (
    SELECT
        e.param,
        e.patient_key,
        p.response_day,
        e.start_day + e.aval_days AS end_day,
        CASE WHEN e.cnsr = 0 THEN 1 ELSE 0 END AS event,
        CASE WHEN p.hct_in_cr THEN p.hct_day END AS hct_day
    FROM curated.time_to_event AS e
    INNER JOIN curated.patients AS p ON e.patient_key = p.patient_key
    WHERE
        p.responder
        AND e.param IN ('OS', 'EFS', 'RFS')
        AND e.start_day + e.aval_days > p.response_day
),

intervals AS (
    SELECT
        param,
        patient_key,
        response_day AS start_day,
        CASE WHEN hct_day > response_day AND hct_day < end_day THEN hct_day ELSE end_day END AS stop_day,
        CASE WHEN hct_day > response_day AND hct_day < end_day THEN 0 ELSE event END AS event,
        CASE WHEN hct_day <= response_day THEN 1 ELSE 0 END AS hct
    FROM tte
    UNION ALL
    SELECT
        param,
        patient_key,
        hct_day AS start_day,
        end_day AS stop_day,
        event,
        1 AS hct
    FROM tte
    WHERE hct_day > response_day AND hct_day < end_day
)

SELECT
    param,
    patient_key,
    start_day,
    stop_day,
    event,
    hct
FROM intervals
ORDER BY param, patient_key, start_day;

COMMENT ON VIEW endpoints.hct_counting_process IS 'Counting-process intervals (start, stop] of responders from the response day, with HCT in CR as a time-dependent covariate (Mantel-Byar / Cox with tdc); no zero-length interval.';
COMMENT ON COLUMN endpoints.hct_counting_process.param IS 'OS, EFS or RFS.';
COMMENT ON COLUMN endpoints.hct_counting_process.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.hct_counting_process.start_day IS 'Interval start (study day, exclusive): the response day, or the HCT day.';
COMMENT ON COLUMN endpoints.hct_counting_process.stop_day IS 'Interval end (study day, inclusive), always after start_day.';
COMMENT ON COLUMN endpoints.hct_counting_process.event IS '1 when the interval ends with the event of the parameter.';
COMMENT ON COLUMN endpoints.hct_counting_process.hct IS '1 on the interval after allogeneic HCT in CR (curated.patients.hct_in_cr), else 0.';

-- Counting-process rows (start, stop, event, hct) for a time-dependent Cox model of HCT:
-- one interval before HCT (hct = 0) and, for transplanted patients, one from HCT (hct = 1).
CREATE OR REPLACE VIEW endpoints.hct_counting_process AS
WITH tte AS (
    SELECT
        e.param,
        e.patient_key,
        e.aval_days,
        CASE WHEN e.cnsr = 0 THEN 1 ELSE 0 END AS event,
        p.hct_day
    FROM curated.time_to_event AS e
    INNER JOIN curated.patients AS p ON e.patient_key = p.patient_key
    WHERE e.param IN ('OS', 'EFS') AND e.start_day = 0
)

SELECT
    param,
    patient_key,
    0 AS start_day,
    CASE WHEN hct_day > 0 AND hct_day < aval_days THEN hct_day ELSE aval_days END AS stop_day,
    CASE WHEN hct_day > 0 AND hct_day < aval_days THEN 0 ELSE event END AS event,
    0 AS hct
FROM tte
UNION ALL
SELECT
    param,
    patient_key,
    hct_day AS start_day,
    aval_days AS stop_day,
    event,
    1 AS hct
FROM tte
WHERE hct_day > 0 AND hct_day < aval_days
ORDER BY param, patient_key, start_day;

COMMENT ON VIEW endpoints.hct_counting_process IS 'Counting-process intervals for a time-dependent HCT covariate (Mantel-Byar / extended Kaplan-Meier / Cox with tdc).';
COMMENT ON COLUMN endpoints.hct_counting_process.param IS 'OS or EFS.';
COMMENT ON COLUMN endpoints.hct_counting_process.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.hct_counting_process.start_day IS 'Interval start (study day).';
COMMENT ON COLUMN endpoints.hct_counting_process.stop_day IS 'Interval end (study day).';
COMMENT ON COLUMN endpoints.hct_counting_process.event IS '1 when the interval ends with the event.';
COMMENT ON COLUMN endpoints.hct_counting_process.hct IS '1 on the interval after allogeneic HCT, else 0.';

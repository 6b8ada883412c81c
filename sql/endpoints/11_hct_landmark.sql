-- HCT landmark analysis (avoids immortal-time bias, domain.md section 8), at the default landmark
-- (hct_landmark_day) and at each day of hct_landmark_days: the landmark set of
-- endpoints.hct_landmark_status (responders who responded on or before the landmark and are alive,
-- under follow-up and relapse-free after it), grouped by allogeneic HCT in CR on or before the
-- landmark; one row per parameter with time after the landmark; time runs from the landmark.
CREATE OR REPLACE VIEW endpoints.hct_landmark AS
WITH in_remission AS (
    -- the landmark set (endpoints.hct_landmark_status: the one place of the rule)
    SELECT
        landmark_day,
        default_landmark,
        patient_key,
        hct_in_cr_by_landmark
    FROM endpoints.hct_landmark_status
    WHERE status = 'in_set'
)

SELECT
    r.landmark_day,
    r.default_landmark,
    e.param,
    r.patient_key,
    r.hct_in_cr_by_landmark,
    e.start_day + e.aval_days - r.landmark_day AS days_from_landmark,
    CASE WHEN e.cnsr = 0 THEN 1 ELSE 0 END AS event
FROM in_remission AS r
INNER JOIN curated.time_to_event AS e ON r.patient_key = e.patient_key
WHERE
    e.param IN ('OS', 'EFS', 'RFS')
    -- a parameter censored before the landmark does not show the patient event-free at it
    AND e.start_day + e.aval_days > r.landmark_day
ORDER BY r.landmark_day, e.param, r.patient_key;

COMMENT ON VIEW endpoints.hct_landmark IS 'HCT landmark sets (one per landmark day: hct_landmark_day and hct_landmark_days): responders with response on or before the landmark, alive, followed and relapse-free after it, grouped by HCT in CR on or before the landmark; time from the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark.landmark_day IS 'Landmark study day.';
COMMENT ON COLUMN endpoints.hct_landmark.default_landmark IS 'TRUE for the default landmark (definition hct_landmark_day), used by the KM strata and the report plots.';
COMMENT ON COLUMN endpoints.hct_landmark.param IS 'OS, EFS or RFS.';
COMMENT ON COLUMN endpoints.hct_landmark.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.hct_landmark.hct_in_cr_by_landmark IS 'Allogeneic HCT in CR (curated.patients.hct_in_cr: after response, before relapse) on or before the landmark day.';
COMMENT ON COLUMN endpoints.hct_landmark.days_from_landmark IS 'Days from the landmark to the event or censoring (always > 0).';
COMMENT ON COLUMN endpoints.hct_landmark.event IS '1 event, 0 censored.';

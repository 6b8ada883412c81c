-- HCT landmark analysis (avoids immortal-time bias): responders alive and event-free at
-- hct_landmark_day, grouped by HCT on or before the landmark, with time from the landmark.
CREATE OR REPLACE VIEW endpoints.hct_landmark AS
SELECT
    e.param,
    e.patient_key,
    def_num('hct_landmark_day')::INTEGER AS landmark_day,
    coalesce(p.hct_day <= def_num('hct_landmark_day'), FALSE) AS hct_before_landmark,
    e.aval_days - def_num('hct_landmark_day')::INTEGER AS days_from_landmark,
    CASE WHEN e.cnsr = 0 THEN 1 ELSE 0 END AS event
FROM curated.time_to_event AS e
INNER JOIN curated.patients AS p ON e.patient_key = p.patient_key
WHERE p.responder AND e.param IN ('OS', 'EFS') AND e.aval_days > def_num('hct_landmark_day');

COMMENT ON VIEW endpoints.hct_landmark IS 'Landmark cohort for HCT comparisons: responders event-free after hct_landmark_day, grouped by HCT before the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark.param IS 'OS or EFS.';
COMMENT ON COLUMN endpoints.hct_landmark.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.hct_landmark.landmark_day IS 'Landmark study day (definition hct_landmark_day).';
COMMENT ON COLUMN endpoints.hct_landmark.hct_before_landmark IS 'Allogeneic HCT on or before the landmark day.';
COMMENT ON COLUMN endpoints.hct_landmark.days_from_landmark IS 'Days from the landmark to the event or censoring.';
COMMENT ON COLUMN endpoints.hct_landmark.event IS '1 event, 0 censored.';

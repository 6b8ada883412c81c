-- HCT landmark status (avoids immortal-time bias, domain.md section 8; issue 16 item 7): for each
-- landmark day (hct_landmark_day and each day of hct_landmark_days) and each patient, whether the
-- patient is in the landmark set and, if not, why. The landmark set holds responders who responded
-- on or before the landmark and are alive, under follow-up (OS time after it) and relapse-free
-- after it; the HCT group is HCT in CR (after response, before relapse) on or before the landmark.
-- The one place of the landmark rule: endpoints.hct_landmark and endpoints.hct_landmark_summary
-- read it.
CREATE OR REPLACE VIEW endpoints.hct_landmark_status AS
WITH landmark_days AS (
    SELECT DISTINCT
        d.landmark_day,
        d.landmark_day = def_num('hct_landmark_day')::INTEGER AS default_landmark
    FROM (
        SELECT trim(unnest(string_split(def_text('hct_landmark_days'), ',')))::INTEGER AS landmark_day
        UNION ALL
        SELECT def_num('hct_landmark_day')::INTEGER AS landmark_day
    ) AS d
)

SELECT
    l.landmark_day,
    l.default_landmark,
    p.patient_key,
    coalesce(p.responder, FALSE) AS responder,
    CASE
        WHEN NOT coalesce(p.responder, FALSE) THEN 'not_responder'
        WHEN p.response_day IS NULL OR p.response_day > l.landmark_day THEN 'response_after_landmark'
        WHEN p.os_days IS NULL OR p.os_days <= l.landmark_day THEN 'dead_or_censored_by_landmark'
        WHEN p.relapse_day <= l.landmark_day THEN 'relapsed_by_landmark'
        ELSE 'in_set'
    END AS status,
    coalesce(p.hct_in_cr, FALSE) AS hct_in_cr,
    p.hct_day,
    coalesce(p.hct_in_cr AND p.hct_day <= l.landmark_day, FALSE) AS hct_in_cr_by_landmark
FROM landmark_days AS l
CROSS JOIN curated.patients AS p
ORDER BY l.landmark_day, p.patient_key;

COMMENT ON VIEW endpoints.hct_landmark_status IS 'Per HCT landmark day (hct_landmark_day and hct_landmark_days) and patient: in the landmark set or why not (not a responder, response after the landmark, dead or last seen by it, relapsed by it), and HCT in CR on or before the landmark. Read by endpoints.hct_landmark and endpoints.hct_landmark_summary.';
COMMENT ON COLUMN endpoints.hct_landmark_status.landmark_day IS 'Landmark study day.';
COMMENT ON COLUMN endpoints.hct_landmark_status.default_landmark IS 'TRUE for the default landmark (definition hct_landmark_day).';
COMMENT ON COLUMN endpoints.hct_landmark_status.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.hct_landmark_status.responder IS 'curated.patients.responder (NULL read as FALSE).';
COMMENT ON COLUMN endpoints.hct_landmark_status.status IS 'in_set (responded on or before the landmark, OS time after it, no relapse on or before it); else the first reason in the order not_responder, response_after_landmark, dead_or_censored_by_landmark, relapsed_by_landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_status.hct_in_cr IS 'Allogeneic HCT in CR at any time (curated.patients.hct_in_cr; NULL read as FALSE).';
COMMENT ON COLUMN endpoints.hct_landmark_status.hct_day IS 'Study day of the first allogeneic HCT (curated.patients.hct_day), whatever the disease state.';
COMMENT ON COLUMN endpoints.hct_landmark_status.hct_in_cr_by_landmark IS 'HCT in CR on or before the landmark day (the HCT group of the landmark set).';

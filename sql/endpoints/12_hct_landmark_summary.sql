-- Per HCT landmark day: who is in the landmark set and who is not (and why), read from
-- endpoints.hct_landmark_status, and how many transplants in CR fall after the landmark (they count
-- in the no-HCT group of the landmark set).
CREATE OR REPLACE VIEW endpoints.hct_landmark_summary AS
WITH landmark_days AS (
    SELECT DISTINCT
        landmark_day,
        default_landmark
    FROM endpoints.hct_landmark_status
),

responders_at AS (
    -- status and HCT of each responder at each landmark (endpoints.hct_landmark_status)
    SELECT
        landmark_day,
        patient_key,
        status,
        hct_in_cr,
        hct_day,
        hct_in_cr_by_landmark
    FROM endpoints.hct_landmark_status
    WHERE responder
)

SELECT
    l.landmark_day,
    l.default_landmark,
    count(r.patient_key)::INTEGER AS responders,
    count(*) FILTER (WHERE r.status = 'in_set')::INTEGER AS landmark_set,
    count(*) FILTER (WHERE r.status = 'in_set' AND r.hct_in_cr_by_landmark)::INTEGER AS landmark_set_hct,
    count(*) FILTER (WHERE r.status = 'response_after_landmark')::INTEGER AS excluded_response_after,
    count(*) FILTER (WHERE r.status = 'dead_or_censored_by_landmark')::INTEGER AS excluded_dead_or_censored,
    count(*) FILTER (WHERE r.status = 'relapsed_by_landmark')::INTEGER AS excluded_relapsed,
    count(*) FILTER (WHERE r.hct_in_cr)::INTEGER AS hct_in_cr,
    count(*) FILTER (WHERE r.hct_in_cr_by_landmark)::INTEGER AS hct_in_cr_by_landmark,
    count(*) FILTER (WHERE r.hct_in_cr AND r.hct_day > l.landmark_day)::INTEGER AS hct_in_cr_after_landmark,
    (count(*) FILTER (WHERE r.hct_in_cr AND r.hct_day > l.landmark_day))
    / nullif(count(*) FILTER (WHERE r.hct_in_cr), 0) AS share_hct_after_landmark
FROM landmark_days AS l
LEFT JOIN responders_at AS r ON l.landmark_day = r.landmark_day
GROUP BY l.landmark_day, l.default_landmark
ORDER BY l.landmark_day;

COMMENT ON VIEW endpoints.hct_landmark_summary IS 'Per HCT landmark day: responders, the landmark set (endpoints.hct_landmark) and the reasons others are not in it, and the share of transplants in CR that fall after the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.landmark_day IS 'Landmark study day.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.default_landmark IS 'TRUE for the default landmark (hct_landmark_day).';
COMMENT ON COLUMN endpoints.hct_landmark_summary.responders IS 'Responders (curated.patients.responder).';
COMMENT ON COLUMN endpoints.hct_landmark_summary.landmark_set IS 'Responders in the landmark set: response on or before the landmark, alive and followed after it, no relapse on or before it.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.landmark_set_hct IS 'Of the landmark set: HCT in CR on or before the landmark (the HCT group).';
COMMENT ON COLUMN endpoints.hct_landmark_summary.excluded_response_after IS 'Responders not in the set because their response came after the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.excluded_dead_or_censored IS 'Responders not in the set because they died or were last seen on or before the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.excluded_relapsed IS 'Responders not in the set because they relapsed on or before the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.hct_in_cr IS 'Responders with allogeneic HCT in CR at any time.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.hct_in_cr_by_landmark IS 'Of those, HCT on or before the landmark.';
COMMENT ON COLUMN endpoints.hct_landmark_summary.hct_in_cr_after_landmark IS 'Of those, HCT after the landmark (in the no-HCT group if in the landmark set).';
COMMENT ON COLUMN endpoints.hct_landmark_summary.share_hct_after_landmark IS 'hct_in_cr_after_landmark / hct_in_cr; NULL without a transplant in CR.';

-- Kaplan-Meier input: one row per patient, parameter and stratum with its time and event.
-- Strata: overall, by responder, by each predictor, and the HCT landmark groups (responders
-- event-free at hct_landmark_day, time measured from the landmark, grouped by HCT before it).
CREATE OR REPLACE VIEW endpoints.km_input AS
WITH tte AS (
    SELECT
        e.param,
        e.patient_key,
        e.aval_days,
        CASE WHEN e.cnsr = 0 THEN 1 ELSE 0 END AS event,
        p.responder,
        p.bm_blasts_gt50,
        p.prior_em,
        p.active_em_at_start,
        p.cd19_baseline,
        p.hct_day
    FROM curated.time_to_event AS e
    INNER JOIN curated.patients AS p ON e.patient_key = p.patient_key
),

landmark AS (
    SELECT def_num('hct_landmark_day') AS landmark_day
)

SELECT
    param,
    patient_key,
    'overall' AS stratum,
    aval_days AS time_days,
    event
FROM tte
UNION ALL
SELECT
    param,
    patient_key,
    'responder=' || responder::VARCHAR AS stratum,
    aval_days AS time_days,
    event
FROM tte
UNION ALL
SELECT
    param,
    patient_key,
    'bm_blasts_gt50=' || bm_blasts_gt50::VARCHAR AS stratum,
    aval_days AS time_days,
    event
FROM tte
WHERE bm_blasts_gt50 IS NOT NULL
UNION ALL
SELECT
    param,
    patient_key,
    'prior_em=' || prior_em::VARCHAR AS stratum,
    aval_days AS time_days,
    event
FROM tte
UNION ALL
SELECT
    param,
    patient_key,
    'active_em_at_start=' || active_em_at_start::VARCHAR AS stratum,
    aval_days AS time_days,
    event
FROM tte
UNION ALL
SELECT
    param,
    patient_key,
    'cd19_baseline=' || cd19_baseline AS stratum,
    aval_days AS time_days,
    event
FROM tte
WHERE cd19_baseline IS NOT NULL
UNION ALL
SELECT
    t.param,
    t.patient_key,
    'hct_by_landmark=' || (coalesce(t.hct_day <= l.landmark_day, FALSE))::VARCHAR AS stratum,
    t.aval_days - l.landmark_day::INTEGER AS time_days,
    t.event
FROM tte AS t
CROSS JOIN landmark AS l
WHERE t.responder AND t.param IN ('OS', 'EFS') AND t.aval_days > l.landmark_day;

COMMENT ON VIEW endpoints.km_input IS 'Per patient, parameter and stratum: time and event used by endpoints.km. HCT landmark strata hold responders still event-free after hct_landmark_day, with time from the landmark.';
COMMENT ON COLUMN endpoints.km_input.param IS 'Parameter code (OS, EFS, RFS).';
COMMENT ON COLUMN endpoints.km_input.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.km_input.stratum IS 'overall, or variable=value (responder, bm_blasts_gt50, prior_em, active_em_at_start, cd19_baseline, hct_by_landmark).';
COMMENT ON COLUMN endpoints.km_input.time_days IS 'Days to event or censoring (from the landmark for hct_by_landmark strata).';
COMMENT ON COLUMN endpoints.km_input.event IS '1 event, 0 censored.';

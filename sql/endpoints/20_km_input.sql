-- Kaplan-Meier input: one row per parameter, stratum and patient with its time and event.
-- Strata from day 0: overall, responder (exposed to guarantee-time bias: kept for reference),
-- baseline predictors. Landmark strata: OS by response among patients alive after the response
-- window (response_window_end_day), and OS/EFS/RFS by HCT in CR in the default HCT landmark set
-- (endpoints.hct_landmark); their time runs from the landmark (origin_day). OS_REVERSE is the
-- reverse Kaplan-Meier of OS (the censoring is the event) for median follow-up.
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
        p.cd19_baseline
    FROM curated.time_to_event AS e
    INNER JOIN curated.patients AS p ON e.patient_key = p.patient_key
),

day0_strata AS (
    SELECT
        param,
        'overall' AS stratum_variable,
        'all' AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    UNION ALL
    SELECT
        'OS_REVERSE' AS param,
        'overall' AS stratum_variable,
        'all' AS stratum_value,
        patient_key,
        aval_days,
        1 - event AS event
    FROM tte
    WHERE param = 'OS'
    UNION ALL
    SELECT
        param,
        'responder' AS stratum_variable,
        responder::VARCHAR AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    WHERE param IN ('OS', 'EFS')
    UNION ALL
    SELECT
        param,
        'bm_blasts_gt50' AS stratum_variable,
        bm_blasts_gt50::VARCHAR AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    WHERE bm_blasts_gt50 IS NOT NULL
    UNION ALL
    SELECT
        param,
        'prior_em' AS stratum_variable,
        prior_em::VARCHAR AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    WHERE prior_em IS NOT NULL
    UNION ALL
    SELECT
        param,
        'active_em_at_start' AS stratum_variable,
        active_em_at_start::VARCHAR AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    WHERE active_em_at_start IS NOT NULL
    UNION ALL
    SELECT
        param,
        'cd19_baseline' AS stratum_variable,
        cd19_baseline AS stratum_value,
        patient_key,
        aval_days,
        event
    FROM tte
    WHERE cd19_baseline IS NOT NULL
),

response_landmark AS (
    SELECT
        param,
        'responder_at_landmark' AS stratum_variable,
        responder::VARCHAR AS stratum_value,
        def_num('response_window_end_day')::INTEGER AS origin_day,
        patient_key,
        aval_days - def_num('response_window_end_day')::INTEGER AS time_days,
        event
    FROM tte
    WHERE param = 'OS' AND aval_days > def_num('response_window_end_day')
)

SELECT
    param,
    stratum_variable,
    stratum_value,
    0 AS origin_day,
    patient_key,
    aval_days AS time_days,
    event
FROM day0_strata
UNION ALL
SELECT
    param,
    stratum_variable,
    stratum_value,
    origin_day,
    patient_key,
    time_days,
    event
FROM response_landmark
UNION ALL
SELECT
    param,
    'hct_in_cr_by_landmark' AS stratum_variable,
    hct_in_cr_by_landmark::VARCHAR AS stratum_value,
    landmark_day AS origin_day,
    patient_key,
    days_from_landmark AS time_days,
    event
FROM endpoints.hct_landmark
WHERE default_landmark;

COMMENT ON VIEW endpoints.km_input IS 'Per parameter, stratum and patient: time and event used by endpoints.km. Landmark strata (responder_at_landmark, hct_in_cr_by_landmark) measure time from their origin_day; OS_REVERSE is OS with censoring as the event (median follow-up).';
COMMENT ON COLUMN endpoints.km_input.param IS 'Parameter code: OS, EFS, RFS, or OS_REVERSE (reverse Kaplan-Meier of OS).';
COMMENT ON COLUMN endpoints.km_input.stratum_variable IS 'overall, responder, responder_at_landmark, bm_blasts_gt50, prior_em, active_em_at_start, cd19_baseline or hct_in_cr_by_landmark.';
COMMENT ON COLUMN endpoints.km_input.stratum_value IS 'Value of the stratum variable (true/false, a CD19 class, or all for overall); patients with a missing value are in no stratum of that variable.';
COMMENT ON COLUMN endpoints.km_input.origin_day IS 'Study day time is measured from: 0, response_window_end_day (responder_at_landmark) or hct_landmark_day (hct_in_cr_by_landmark).';
COMMENT ON COLUMN endpoints.km_input.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.km_input.time_days IS 'Days from origin_day to the event or censoring.';
COMMENT ON COLUMN endpoints.km_input.event IS '1 event, 0 censored.';

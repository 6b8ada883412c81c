-- Candidate event and censoring days per patient, by named source: the inputs of the
-- declarative time-to-event parameters (curated.tte_sources).
CREATE OR REPLACE TABLE curated.patient_events AS
WITH deaths AS (
    SELECT
        t.patient_key,
        date_diff('day', t.day0_date, t.death_date) AS study_day
    FROM harmonized.patient_timeline AS t
    WHERE t.death_date IS NOT NULL
),

known_dates AS (
    -- the latest date per patient over outcomes, assessments and treatment starts (one
    -- aggregate, then one join to the timeline)
    SELECT
        patient_key,
        max(known_date) AS last_date
    FROM (
        SELECT
            patient_key,
            event_date AS known_date
        FROM staging.outcomes
        UNION ALL
        SELECT
            patient_key,
            assessment_date AS known_date
        FROM harmonized.assessments
        UNION ALL
        SELECT
            patient_key,
            start_date AS known_date
        FROM staging.treatments
    ) AS all_dates
    GROUP BY patient_key
),

last_known AS (
    SELECT
        k.patient_key,
        date_diff('day', t.day0_date, k.last_date) AS study_day
    FROM known_dates AS k
    INNER JOIN harmonized.patient_timeline AS t ON k.patient_key = t.patient_key
),

last_response_assessment AS (
    -- responders: the last marrow assessment or response label from the response day on
    SELECT
        r.patient_key,
        max(date_diff('day', t.day0_date, a.assessment_date)) AS study_day
    FROM harmonized.patient_response AS r
    INNER JOIN harmonized.patient_timeline AS t ON r.patient_key = t.patient_key
    INNER JOIN harmonized.assessments AS a ON r.patient_key = a.patient_key
    WHERE
        r.responder
        AND (a.marrow_blasts_pct IS NOT NULL OR a.reported_response IS NOT NULL)
        AND date_diff('day', t.day0_date, a.assessment_date) >= r.response_day
    GROUP BY r.patient_key
),

efs_censor AS (
    -- ELN/TOWER template: responders at their last response assessment (or last contact, by
    -- efs_responder_censor); alive patients not evaluable for response on
    -- efs_not_evaluable_censor_day; evaluable non-responders always have an event
    SELECT
        r.patient_key,
        CASE
            WHEN r.responder AND def_text('efs_responder_censor') = 'last_contact' THEN k.study_day
            WHEN r.responder THEN coalesce(l.study_day, r.response_day)
            WHEN r.best_response = 'NE' THEN def_num('efs_not_evaluable_censor_day')::INTEGER
        END AS study_day
    FROM harmonized.patient_response AS r
    LEFT JOIN last_known AS k ON r.patient_key = k.patient_key
    LEFT JOIN last_response_assessment AS l ON r.patient_key = l.patient_key
)

SELECT
    patient_key,
    'study_start' AS source,
    0 AS study_day
FROM harmonized.patient_timeline
UNION ALL
SELECT
    patient_key,
    'response' AS source,
    response_day AS study_day
FROM harmonized.patient_response
WHERE responder
UNION ALL
SELECT
    patient_key,
    'nonresponse' AS source,
    def_num('efs_nonresponse_event_day')::INTEGER AS study_day
FROM harmonized.patient_response
WHERE NOT responder AND best_response <> 'NE'
UNION ALL
SELECT
    patient_key,
    'relapse' AS source,
    relapse_day AS study_day
FROM harmonized.patient_response
WHERE relapsed
UNION ALL
SELECT
    patient_key,
    'death' AS source,
    study_day
FROM deaths
UNION ALL
SELECT
    patient_key,
    'last_contact' AS source,
    study_day
FROM last_known
UNION ALL
SELECT
    patient_key,
    'efs_censor' AS source,
    study_day
FROM efs_censor
WHERE study_day IS NOT NULL
ORDER BY ALL;

COMMENT ON TABLE curated.patient_events IS 'Candidate days per patient by source (study_start, response, nonresponse, relapse, death, last_contact, efs_censor) for the time-to-event parameters.';
COMMENT ON COLUMN curated.patient_events.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.patient_events.source IS 'Source name as used in curated.tte_sources.';
COMMENT ON COLUMN curated.patient_events.study_day IS 'Day of the source event relative to blinatumomab cycle 1 start (day 0); last_contact is the latest day the patient is known alive or seen; efs_censor the EFS censoring day of the ELN/TOWER template (definitions efs_responder_censor, efs_not_evaluable_censor_day).';

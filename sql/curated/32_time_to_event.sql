-- ADTTE-like rows, admiral's rule: per patient and parameter, the first event among the event
-- sources; failing that, the last censoring source. aval_days = max(day, start_day) - start_day.
CREATE OR REPLACE TABLE curated.time_to_event AS
WITH starts AS (
    SELECT
        s.param,
        e.patient_key,
        e.study_day AS start_day
    FROM curated.tte_sources AS s
    INNER JOIN curated.patient_events AS e ON s.source = e.source
    WHERE s.role = 'start'
),

candidates AS (
    SELECT
        st.param,
        st.patient_key,
        st.start_day,
        s.role,
        s.cnsr,
        s.description,
        s.source_order,
        greatest(e.study_day, st.start_day) AS adt_day
    FROM starts AS st
    INNER JOIN curated.tte_sources AS s ON st.param = s.param AND s.role IN ('event', 'censor')
    INNER JOIN curated.patient_events AS e
        ON st.patient_key = e.patient_key AND s.source = e.source
),

chosen AS (
    -- per patient and parameter the candidate that sorts first: events before censoring, the
    -- earliest event or the latest censoring day, then source_order (NULL days sort last)
    SELECT
        param,
        patient_key,
        arg_min(
            { 'start_day': start_day, 'adt_day': adt_day, 'cnsr': cnsr, 'description': description },
            (
                CASE role WHEN 'event' THEN 0 ELSE 1 END,
                CASE role WHEN 'event' THEN adt_day ELSE -adt_day END,
                source_order
            )
        ) AS pick
    FROM candidates
    GROUP BY param, patient_key
)

SELECT
    c.param,
    c.patient_key,
    c.pick.start_day,
    c.pick.adt_day - c.pick.start_day AS aval_days,
    c.pick.cnsr,
    c.pick.description AS event_desc
FROM chosen AS c
ORDER BY ALL;

COMMENT ON TABLE curated.time_to_event IS 'One row per patient and time-to-event parameter (ADTTE-like), from curated.tte_sources and curated.patient_events.';
COMMENT ON COLUMN curated.time_to_event.param IS 'Parameter code (OS, EFS, RFS).';
COMMENT ON COLUMN curated.time_to_event.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.time_to_event.start_day IS 'Origin of the parameter as a study day (STARTDT): day 0, or the response day for RFS.';
COMMENT ON COLUMN curated.time_to_event.aval_days IS 'Days from start_day to the event or censoring day (AVAL), never negative.';
COMMENT ON COLUMN curated.time_to_event.cnsr IS 'CNSR: 0 event; 1 censored at last known alive; 2 EFS censored at the last response assessment or, not evaluable, on efs_not_evaluable_censor_day.';
COMMENT ON COLUMN curated.time_to_event.event_desc IS 'What ended follow-up: the event or the censoring reason (EVNTDESC).';

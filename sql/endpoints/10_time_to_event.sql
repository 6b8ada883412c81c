-- ADTTE-like time-to-event rows for analysts (OS, EFS, RFS).
CREATE OR REPLACE VIEW endpoints.time_to_event AS
SELECT
    param,
    patient_key,
    start_day,
    aval_days,
    cnsr,
    event_desc
FROM curated.time_to_event;

COMMENT ON VIEW endpoints.time_to_event IS 'One row per patient and parameter (OS, EFS, RFS): start day, days to event or censoring, CNSR and description; defined by curated.tte_sources.';
COMMENT ON COLUMN endpoints.time_to_event.param IS 'Parameter code (OS, EFS, RFS).';
COMMENT ON COLUMN endpoints.time_to_event.patient_key IS 'Pseudonymous patient key.';
COMMENT ON COLUMN endpoints.time_to_event.start_day IS 'Origin as a study day: 0, or the response day for RFS.';
COMMENT ON COLUMN endpoints.time_to_event.aval_days IS 'Days from start_day to the event or censoring.';
COMMENT ON COLUMN endpoints.time_to_event.cnsr IS '0 event; 1 censored at last known alive; 2 EFS censored by the ELN/TOWER template (last response assessment, or not evaluable on efs_not_evaluable_censor_day).';
COMMENT ON COLUMN endpoints.time_to_event.event_desc IS 'Event or censoring reason.';

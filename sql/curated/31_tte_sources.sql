-- Declarative time-to-event parameters (schemas/vocab/tte_sources.csv), as admiral's
-- event_source() and censor_source(): per parameter a start source, event sources, censoring sources.
CREATE OR REPLACE TABLE curated.tte_sources AS
SELECT
    param::VARCHAR AS param,
    source_order::INTEGER AS source_order,
    role::VARCHAR AS role,
    source::VARCHAR AS source,
    cnsr::INTEGER AS cnsr,
    description::VARCHAR AS description
FROM ref.tte_sources
ORDER BY ALL;

COMMENT ON TABLE curated.tte_sources IS 'Time-to-event parameter definitions: start, event and censoring sources (admiral-style), edited in schemas/vocab/tte_sources.csv.';
COMMENT ON COLUMN curated.tte_sources.param IS 'Parameter code (OS, EFS, RFS).';
COMMENT ON COLUMN curated.tte_sources.source_order IS 'Order of the source within the parameter; breaks ties between events on the same day.';
COMMENT ON COLUMN curated.tte_sources.role IS 'start (origin), event or censor.';
COMMENT ON COLUMN curated.tte_sources.source IS 'Source name in curated.patient_events.';
COMMENT ON COLUMN curated.tte_sources.cnsr IS 'CNSR value given by this source: 0 event, positive integers censoring reasons; NULL for the start.';
COMMENT ON COLUMN curated.tte_sources.description IS 'What the source means (EVNTDESC / CNSDTDSC).';

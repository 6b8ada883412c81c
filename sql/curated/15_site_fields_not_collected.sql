-- Fields a site did not collect, as its source mapping declares them (`not_collected`):
-- their values are NULL at that site because they were never recorded, not because they are
-- missing from a delivery, so analyses count them as missing and the completeness checks
-- report them as not applicable at that site.
CREATE OR REPLACE TABLE curated.site_fields_not_collected AS
WITH declared AS (
    SELECT
        site,
        table_name,
        field_name,
        source_id,
        rows_delivered
    FROM staging.not_collected
)

SELECT
    site,
    table_name,
    field_name,
    string_agg(DISTINCT source_id, ', ' ORDER BY source_id) AS source_ids,
    sum(rows_delivered)::BIGINT AS rows_delivered
FROM declared
GROUP BY site, table_name, field_name
ORDER BY ALL;

COMMENT ON TABLE curated.site_fields_not_collected IS 'Fields a site did not collect, as declared by not_collected in its source mapping; the field is NULL for every row of that site (for patients: the columns of curated.patients of that name). Join to curated.patients on site.';
COMMENT ON COLUMN curated.site_fields_not_collected.site IS 'Clinical site code (as curated.patients.site).';
COMMENT ON COLUMN curated.site_fields_not_collected.table_name IS 'Extract contract the field belongs to (patients, treatments, assessments, ...).';
COMMENT ON COLUMN curated.site_fields_not_collected.field_name IS 'Contract field the site did not collect (e.g. ph_status, prior_lines, prior_hct).';
COMMENT ON COLUMN curated.site_fields_not_collected.source_ids IS 'Source mappings declaring it, comma-separated.';
COMMENT ON COLUMN curated.site_fields_not_collected.rows_delivered IS 'Rows of that site and table loaded or quarantined in the run with the field not collected.';

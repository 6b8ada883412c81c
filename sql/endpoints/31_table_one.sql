-- Table 1: baseline characteristics overall and by response. Counts use the patients with a
-- known value as denominator and show the missing; continuous variables give median and
-- quartiles (linear interpolation) of the known values.
CREATE OR REPLACE VIEW endpoints.table_one AS
WITH grouped AS (
    SELECT
        'all' AS group_name,
        *
    FROM curated.patients
    UNION ALL
    SELECT
        CASE WHEN responder THEN 'responders' ELSE 'non_responders' END AS group_name,
        *
    FROM curated.patients
),

binary_items AS (
    -- (row order, characteristic, level, value: TRUE/FALSE, NULL when unknown)
    SELECT
        group_name,
        1 AS row_order,
        'Female' AS characteristic,
        'F' AS level,
        CASE WHEN sex IN ('M', 'F') THEN sex = 'F' END AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        2 AS row_order,
        'Ph-positive' AS characteristic,
        'positive' AS level,
        CASE WHEN ph_status IN ('positive', 'negative') THEN ph_status = 'positive' END AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        3 AS row_order,
        'Prior allogeneic HCT' AS characteristic,
        'yes' AS level,
        prior_hct AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        6 AS row_order,
        'Marrow blasts > 50%' AS characteristic,
        'yes' AS level,
        bm_blasts_gt50 AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        7 AS row_order,
        'EM-ALL before blinatumomab' AS characteristic,
        'yes' AS level,
        prior_em AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        8 AS row_order,
        'Active EM-ALL at start' AS characteristic,
        'yes' AS level,
        active_em_at_start AS value
    FROM grouped
    UNION ALL
    SELECT
        g.group_name,
        9 + l.level_order AS row_order,
        'Baseline CD19' AS characteristic,
        l.level,
        CASE WHEN g.cd19_baseline IS NOT NULL THEN g.cd19_baseline = l.level END AS value
    FROM grouped AS g
    CROSS JOIN
        (VALUES (0, 'negative'), (1, 'dim'), (2, 'moderate'), (3, 'strong')) AS l (level_order, level)
),

continuous_items AS (
    SELECT
        group_name,
        0 AS row_order,
        'Age at start, years' AS characteristic,
        age_at_start::DOUBLE AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        4 AS row_order,
        'Prior lines of therapy' AS characteristic,
        prior_lines::DOUBLE AS value
    FROM grouped
    UNION ALL
    SELECT
        group_name,
        5 AS row_order,
        'Marrow blasts, %' AS characteristic,
        bm_blasts_pct::DOUBLE AS value
    FROM grouped
)

SELECT
    row_order,
    characteristic,
    level,
    group_name,
    count(*)::INTEGER AS n_group,
    count(value)::INTEGER AS n_known,
    (count(*) - count(value))::INTEGER AS n_missing,
    count(*) FILTER (WHERE value)::INTEGER AS n_yes,
    (count(*) FILTER (WHERE value)) / nullif(count(value), 0) AS pct_of_known,
    NULL::DOUBLE AS median,
    NULL::DOUBLE AS q1,
    NULL::DOUBLE AS q3
FROM binary_items
GROUP BY ALL
UNION ALL
SELECT
    row_order,
    characteristic,
    NULL AS level,
    group_name,
    count(*)::INTEGER AS n_group,
    count(value)::INTEGER AS n_known,
    (count(*) - count(value))::INTEGER AS n_missing,
    NULL::INTEGER AS n_yes,
    NULL::DOUBLE AS pct_of_known,
    median(value) AS median,
    quantile_cont(value, 0.25) AS q1,
    quantile_cont(value, 0.75) AS q3
FROM continuous_items
GROUP BY ALL
ORDER BY row_order, group_name;

COMMENT ON VIEW endpoints.table_one IS 'Table 1: baseline characteristics overall and by response; percentages of patients with a known value, missing shown, median and quartiles of continuous values.';
COMMENT ON COLUMN endpoints.table_one.row_order IS 'Display order of the characteristic.';
COMMENT ON COLUMN endpoints.table_one.characteristic IS 'Baseline characteristic.';
COMMENT ON COLUMN endpoints.table_one.level IS 'Level counted (F, positive, yes, or a CD19 class); NULL for continuous characteristics.';
COMMENT ON COLUMN endpoints.table_one.group_name IS 'all, responders or non_responders.';
COMMENT ON COLUMN endpoints.table_one.n_group IS 'Patients in the group.';
COMMENT ON COLUMN endpoints.table_one.n_known IS 'Patients in the group with a known value (the denominator); sex U and Ph unknown count as missing.';
COMMENT ON COLUMN endpoints.table_one.n_missing IS 'Patients in the group without a known value.';
COMMENT ON COLUMN endpoints.table_one.n_yes IS 'Patients with the level (categorical characteristics).';
COMMENT ON COLUMN endpoints.table_one.pct_of_known IS 'n_yes / n_known (a fraction); NULL when nobody has a known value.';
COMMENT ON COLUMN endpoints.table_one.median IS 'Median of the known values (continuous characteristics).';
COMMENT ON COLUMN endpoints.table_one.q1 IS 'First quartile (linear interpolation) of the known values.';
COMMENT ON COLUMN endpoints.table_one.q3 IS 'Third quartile (linear interpolation) of the known values.';

-- Best response, remission, transplant, relapse and failure per patient, derived from the
-- assessments (never from a reported response): see docs/derivations.md.
CREATE OR REPLACE TABLE harmonized.patient_response AS
WITH responder_categories AS (
    SELECT string_split(def_text('responder_categories'), ',') AS categories
),

ranked AS (
    SELECT
        r.patient_key,
        r.study_day,
        r.category,
        r.mrd_pct,
        CASE r.category
            WHEN 'CR' THEN 1 WHEN 'CRh' THEN 2 WHEN 'CRi' THEN 3
            WHEN 'hypoplastic' THEN 4 WHEN 'refractory' THEN 5 ELSE 6
        END AS category_rank,
        list_contains(c.categories, r.category) AS is_response
    FROM harmonized.assessment_response AS r
    CROSS JOIN responder_categories AS c
),

best AS (
    SELECT
        patient_key,
        arg_min(category, category_rank) AS best_response,
        min(study_day) FILTER (WHERE is_response) AS response_day,
        max(study_day) FILTER (WHERE category = 'refractory') AS last_refractory_day,
        bool_or(mrd_pct < def_num('mrd_negative_below_pct')) AS any_mrd_negative,
        count(mrd_pct) AS n_mrd
    FROM ranked
    GROUP BY patient_key
),

timeline_days AS (
    SELECT
        t.patient_key,
        t.day0_date,
        coalesce(b.best_response, 'NE') AS best_response,
        list_contains(c.categories, coalesce(b.best_response, 'NE')) AS responder,
        b.response_day,
        b.last_refractory_day,
        b.any_mrd_negative,
        b.n_mrd
    FROM harmonized.patient_timeline AS t
    CROSS JOIN responder_categories AS c
    LEFT JOIN best AS b ON t.patient_key = b.patient_key
),

transplants AS (
    SELECT
        tr.patient_key,
        min(date_diff('day', d.day0_date, tr.start_date)) AS hct_day
    FROM staging.treatments AS tr
    INNER JOIN timeline_days AS d ON tr.patient_key = d.patient_key
    WHERE tr.treatment = 'allo_hct' AND tr.start_date > d.day0_date
    GROUP BY tr.patient_key
),

relapses AS (
    SELECT
        o.patient_key,
        min(date_diff('day', d.day0_date, o.event_date)) AS relapse_day
    FROM staging.outcomes AS o
    INNER JOIN timeline_days AS d ON o.patient_key = d.patient_key
    WHERE
        o.event = 'relapse'
        AND d.responder
        AND date_diff('day', d.day0_date, o.event_date) > d.response_day
    GROUP BY o.patient_key
),

outcomes_joined AS (
    SELECT
        d.*,
        h.hct_day,
        r.relapse_day,
        CASE
            WHEN d.best_response = 'refractory' THEN d.last_refractory_day
            WHEN r.relapse_day IS NOT NULL THEN r.relapse_day
        END AS failure_day,
        CASE
            WHEN d.best_response = 'refractory' THEN 'refractory'
            WHEN r.relapse_day IS NOT NULL THEN 'relapse'
        END AS failure_type
    FROM timeline_days AS d
    LEFT JOIN transplants AS h ON d.patient_key = h.patient_key
    LEFT JOIN relapses AS r ON d.patient_key = r.patient_key
),

marrow_failure AS (
    SELECT DISTINCT o.patient_key
    FROM outcomes_joined AS o
    INNER JOIN staging.assessments AS a ON o.patient_key = a.patient_key
    WHERE
        o.failure_day IS NOT NULL
        AND a.marrow_blasts_pct > def_num('response_marrow_blasts_max_pct')
        AND abs(date_diff('day', o.day0_date, a.assessment_date) - o.failure_day)
        <= def_num('failure_em_window_days')
),

em_failure AS (
    SELECT DISTINCT o.patient_key
    FROM outcomes_joined AS o
    INNER JOIN harmonized.em_findings AS f ON o.patient_key = f.patient_key
    WHERE
        o.failure_day IS NOT NULL
        AND f.counts_as_present
        AND abs(f.study_day - o.failure_day) <= def_num('failure_em_window_days')
)

SELECT
    o.patient_key,
    o.best_response,
    o.responder,
    CASE WHEN o.responder THEN o.response_day END AS response_day,
    CASE
        WHEN NOT o.responder THEN NULL
        WHEN o.any_mrd_negative THEN TRUE
        WHEN o.n_mrd > 0 THEN FALSE
    END AS mrd_negative,
    o.hct_day,
    CASE
        WHEN NOT o.responder THEN NULL
        ELSE coalesce(
            o.hct_day > o.response_day AND (o.relapse_day IS NULL OR o.hct_day < o.relapse_day), FALSE
        )
    END AS hct_in_cr,
    CASE WHEN o.responder THEN o.relapse_day IS NOT NULL END AS relapsed,
    o.relapse_day,
    o.failure_day,
    o.failure_type,
    CASE WHEN o.failure_day IS NOT NULL THEN m.patient_key IS NOT NULL END AS marrow_at_failure,
    CASE WHEN o.failure_day IS NOT NULL THEN e.patient_key IS NOT NULL END AS em_at_failure,
    CASE
        WHEN o.failure_day IS NULL THEN 'none'
        WHEN m.patient_key IS NOT NULL AND e.patient_key IS NOT NULL THEN 'combined'
        WHEN e.patient_key IS NOT NULL THEN 'isolated_em'
        ELSE 'isolated_marrow'
    END AS failure_pattern
FROM outcomes_joined AS o
LEFT JOIN marrow_failure AS m ON o.patient_key = m.patient_key
LEFT JOIN em_failure AS e ON o.patient_key = e.patient_key;

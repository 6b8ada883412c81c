-- Best response per patient over the window assessments (harmonized.assessment_response):
-- CR > CRh > CRi > CR_em_not_reassessed > hypoplastic > refractory > NE, NE without an
-- assessment. Response = a category in responder_categories (plus CR_em_not_reassessed when
-- em_not_reassessed_counts_as_response); MRD only from assessments in remission.
CREATE OR REPLACE TABLE harmonized.best_response AS
WITH responder_categories AS (
    SELECT
        list_concat(
            string_split(def_text('responder_categories'), ','),
            CASE
                WHEN lower(def_text('em_not_reassessed_counts_as_response')) IN ('true', '1', 'yes')
                    THEN ['CR_em_not_reassessed']
                ELSE []::VARCHAR[]
            END
        ) AS categories
),

ranked AS (
    SELECT
        r.patient_key,
        r.study_day,
        r.category,
        r.category_source,
        r.mrd_pct,
        CASE r.category
            WHEN 'CR' THEN 1 WHEN 'CRh' THEN 2 WHEN 'CRi' THEN 3 WHEN 'CR_em_not_reassessed' THEN 4
            WHEN 'hypoplastic' THEN 5 WHEN 'refractory' THEN 6 ELSE 7
        END AS category_rank,
        list_contains(c.categories, r.category) AS is_response
    FROM harmonized.assessment_response AS r
    CROSS JOIN responder_categories AS c
),

best AS (
    SELECT
        patient_key,
        arg_min(category, (category_rank, study_day)) AS best_response,
        arg_min(category_source, (category_rank, study_day)) AS response_source,
        min(study_day) FILTER (WHERE is_response) AS response_day,
        min(study_day) AS first_assessment_day,
        bool_or(mrd_pct < def_num('mrd_negative_below_pct')) FILTER (WHERE is_response) AS any_mrd_negative,
        count(mrd_pct) FILTER (WHERE is_response) AS n_mrd
    FROM ranked
    GROUP BY patient_key
)

SELECT
    t.patient_key,
    coalesce(b.best_response, 'NE') AS best_response,
    list_contains(c.categories, coalesce(b.best_response, 'NE')) AS responder,
    coalesce(b.response_source, 'none') AS response_source,
    CASE WHEN list_contains(c.categories, b.best_response) THEN b.response_day END AS response_day,
    CASE WHEN NOT list_contains(c.categories, coalesce(b.best_response, 'NE')) THEN b.first_assessment_day END
        AS first_failure_day,
    CASE
        WHEN NOT list_contains(c.categories, coalesce(b.best_response, 'NE')) THEN NULL
        WHEN b.any_mrd_negative THEN TRUE
        WHEN b.n_mrd > 0 THEN FALSE
    END AS mrd_negative
FROM harmonized.patient_timeline AS t
CROSS JOIN responder_categories AS c
LEFT JOIN best AS b ON t.patient_key = b.patient_key;

-- Queries raised by the derivations (restricted zone), one per delivered row that needs an
-- answer from the site; the query listing adds them to the failed checks
-- (blinaetl/reports/queries.py). content_key identifies what was delivered (not the row number),
-- so the same question keeps its query id across deliveries; messages carry no values.
CREATE OR REPLACE TABLE harmonized.derivation_queries AS
WITH supporting AS (
    -- evidence other than a report, by patient and day
    SELECT
        patient_key,
        study_day
    FROM harmonized.relapse_evidence
    WHERE evidence <> 'reported'
),

unsupported_relapse AS (
    SELECT
        r.patient_key,
        r.source_table,
        r._source_file,
        r._source_row,
        r.study_day
    FROM harmonized.relapse_evidence AS r
    INNER JOIN harmonized.best_response AS b ON r.patient_key = b.patient_key
    WHERE
        r.evidence = 'reported'
        AND NOT EXISTS (
            SELECT 1
            FROM supporting AS s
            WHERE
                s.patient_key = r.patient_key
                AND s.study_day > b.response_day
                AND s.study_day <= r.study_day + def_num('relapse_evidence_window_days')
        )
),

csf_without_rbc AS (
    SELECT
        c.patient_key,
        c._source_file,
        c._source_row,
        c.study_day
    FROM harmonized.cns_status AS c
    WHERE c.cns_status = 'indeterminate'
),

em_not_reassessed AS (
    -- patients whose best response stayed CR_em_not_reassessed (the EM of the start was never
    -- shown resolved in the window): the first such assessment
    SELECT
        a.patient_key,
        arg_min(a._source_file, a.study_day) AS _source_file,
        arg_min(a._source_row, a.study_day) AS _source_row,
        min(a.study_day) AS study_day
    FROM harmonized.assessment_response AS a
    INNER JOIN harmonized.best_response AS b ON a.patient_key = b.patient_key
    WHERE a.category = 'CR_em_not_reassessed' AND b.best_response = 'CR_em_not_reassessed'
    GROUP BY a.patient_key
),

conflicting_labels AS (
    -- a date whose assessment row carries one response label and the site's responses file
    -- (staging.reported_responses) another: the assessment row's label is used
    -- (harmonized.assessments), so the query points at that row; domain.md section on the
    -- Kahn framework: independent reports of the same fact that disagree (atemporal plausibility)
    SELECT
        a.patient_key,
        a.label_source_file AS _source_file,
        a.label_source_row AS _source_row,
        date_diff('day', t.day0_date, a.assessment_date) AS study_day
    FROM harmonized.assessments AS a
    INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
    WHERE a.conflicting_label IS NOT NULL
),

raised AS (
    SELECT
        patient_key,
        _source_file,
        _source_row,
        study_day,
        source_table AS table_name,
        CASE source_table WHEN 'outcomes' THEN 'event' ELSE 'reported_response' END AS field,
        'DRV_RELAPSE_WITHOUT_EVIDENCE' AS rule_id,
        'plausibility.atemporal' AS kahn,
        'warning' AS severity,
        'A relapse is reported after the response, but no marrow, blood, extramedullary or CSF '
        || 'result shows it (from the response to ' || def_text('relapse_evidence_window_days')
        || ' days after the reported date). It is kept as a relapse; please send the result that '
        || 'showed it (marrow or blood blasts, imaging, CSF) or correct the report.' AS message
    FROM unsupported_relapse
    UNION ALL
    SELECT
        patient_key,
        _source_file,
        _source_row,
        study_day,
        'assessments' AS table_name,
        'csf_rbc_per_ul' AS field,
        'DRV_CSF_RBC_NOT_REPORTED' AS rule_id,
        'completeness' AS kahn,
        'warning' AS severity,
        'The CSF shows blasts with 5 or more white cells per microlitre but no red-cell count, so '
        || 'the CNS status is indeterminate (RBC not reported) rather than CNS3; please send the '
        || 'CSF red-cell count of this sample.' AS message
    FROM csf_without_rbc
    UNION ALL
    SELECT
        patient_key,
        _source_file,
        _source_row,
        study_day,
        'assessments' AS table_name,
        'marrow_blasts_pct' AS field,
        'DRV_EM_NOT_REASSESSED' AS rule_id,
        'completeness' AS kahn,
        'warning' AS severity,
        'The marrow is in remission, but the extramedullary disease present at the start of '
        || 'blinatumomab has no later imaging, pathology or CSF result showing it resolved, so the '
        || 'response is CR with EM not reassessed; please send the restaging result if there is one.'
            AS message
    FROM em_not_reassessed
    UNION ALL
    SELECT
        patient_key,
        _source_file,
        _source_row,
        study_day,
        'assessments' AS table_name,
        'reported_response' AS field,
        'DRV_CONFLICTING_RESPONSE_LABEL' AS rule_id,
        'plausibility.atemporal' AS kahn,
        'warning' AS severity,
        'This assessment row reports a response, and the responses file reports a different '
        || 'response for the same patient and date. The assessment row''s response is used; '
        || 'please confirm which is right and correct the other file.' AS message
    FROM conflicting_labels
)

SELECT
    q.patient_key,
    t.site,
    q._source_file,
    q._source_row,
    q.table_name,
    q.field,
    q.rule_id,
    q.kahn,
    q.severity,
    q.message,
    md5(concat_ws('|', q.rule_id, q.patient_key, q.table_name, q.field, q.study_day::VARCHAR)) AS content_key
FROM raised AS q
INNER JOIN harmonized.patient_timeline AS t ON q.patient_key = t.patient_key;

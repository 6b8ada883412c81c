-- Relapse evidence of each responder, dated after the response day (BMT CTN/ASBMT relapse,
-- domain.md sections 2 and 3): marrow blasts at or above relapse_marrow_blasts_min_pct,
-- circulating blasts above blood_blasts_max_pct, EM disease counted present in a report (new: CR
-- needed every start site shown clear), CSF CNS3, and what the site reported (an outcomes relapse
-- event or an assessment labelled relapse). One row per piece of evidence.
CREATE OR REPLACE TABLE harmonized.relapse_evidence AS
WITH responders AS (
    SELECT
        b.patient_key,
        b.response_day,
        t.day0_date
    FROM harmonized.best_response AS b
    INNER JOIN harmonized.patient_timeline AS t ON b.patient_key = t.patient_key
    WHERE b.responder
),

assessment_days AS (
    SELECT
        a.patient_key,
        r.response_day,
        a.marrow_blasts_pct,
        a.blood_blasts_pct,
        a.reported_response,
        a.label_source_table,
        a.label_source_file,
        a.label_source_row,
        a._source_file,
        a._source_row,
        date_diff('day', r.day0_date, a.assessment_date) AS study_day
    FROM harmonized.assessments AS a
    INNER JOIN responders AS r ON a.patient_key = r.patient_key
),

evidence AS (
    SELECT
        patient_key,
        study_day,
        'marrow' AS evidence,
        1 AS evidence_order,
        'assessments' AS source_table,
        _source_file,
        _source_row
    FROM assessment_days
    WHERE study_day > response_day AND marrow_blasts_pct >= def_num('relapse_marrow_blasts_min_pct')
    UNION ALL
    SELECT
        patient_key,
        study_day,
        'blood' AS evidence,
        2 AS evidence_order,
        'assessments' AS source_table,
        _source_file,
        _source_row
    FROM assessment_days
    WHERE study_day > response_day AND blood_blasts_pct > def_num('blood_blasts_max_pct')
    UNION ALL
    SELECT
        f.patient_key,
        f.study_day,
        CASE f.finding_source WHEN 'csf' THEN 'cns3' ELSE 'em' END AS evidence,
        CASE f.finding_source WHEN 'csf' THEN 3 ELSE 4 END AS evidence_order,
        CASE f.finding_source WHEN 'csf' THEN 'assessments' ELSE 'imaging_reports' END AS source_table,
        f._source_file,
        f._source_row
    FROM harmonized.em_findings AS f
    INNER JOIN responders AS r ON f.patient_key = r.patient_key
    WHERE f.counts_as_present AND f.study_day > r.response_day
    UNION ALL
    SELECT
        patient_key,
        study_day,
        'reported' AS evidence,
        5 AS evidence_order,
        label_source_table AS source_table,
        label_source_file AS _source_file,
        label_source_row AS _source_row
    FROM assessment_days
    WHERE study_day > response_day AND reported_response = 'relapse'
    UNION ALL
    SELECT
        o.patient_key,
        date_diff('day', r.day0_date, o.event_date) AS study_day,
        'reported' AS evidence,
        5 AS evidence_order,
        'outcomes' AS source_table,
        o._source_file,
        o._source_row
    FROM staging.outcomes AS o
    INNER JOIN responders AS r ON o.patient_key = r.patient_key
    WHERE o.event = 'relapse' AND date_diff('day', r.day0_date, o.event_date) > r.response_day
)

SELECT
    patient_key,
    study_day,
    evidence,
    evidence_order,
    source_table,
    _source_file,
    _source_row
FROM evidence;

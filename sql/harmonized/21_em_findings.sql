-- EM findings: site mentions from report text (harmonized.em_mentions) and CSF CNS3 (as site
-- group 'cns'), with study day, evidence source and rank (ref.em_evidence). When findings of the
-- same patient, site group and day disagree, the best-ranked evidence decides counts_as_present.
-- change: the report's change since the prior study (new, increased, decreased, stable) of a
-- present or possible mention, else NULL (schemas/vocab/em_change_triggers.csv, docs/text.md).
CREATE OR REPLACE TABLE harmonized.em_findings AS
WITH text_findings AS (
    SELECT
        m.patient_key,
        date_diff('day', t.day0_date, m.report_date) AS study_day,
        m.site_group,
        m.icdo3,
        m.laterality,
        m.assertion,
        m.change,
        coalesce(e.evidence_source, 'imaging') AS evidence_source,
        coalesce(e.evidence_rank, 3) AS evidence_rank,
        'imaging' AS finding_source,
        m._source_file,
        m._source_row,
        m.sentence_no
    FROM harmonized.em_mentions AS m
    INNER JOIN harmonized.patient_timeline AS t ON m.patient_key = t.patient_key
    LEFT JOIN ref.em_evidence AS e ON m.modality = e.modality
    WHERE m.site_group IS NOT NULL
),

csf_findings AS (
    SELECT
        c.patient_key,
        c.study_day,
        'cns' AS site_group,
        'C70.9' AS icdo3,
        NULL AS laterality,
        'present' AS assertion,
        NULL::VARCHAR AS change,
        'csf' AS evidence_source,
        e.evidence_rank,
        'csf' AS finding_source,
        c._source_file,
        c._source_row,
        NULL::INTEGER AS sentence_no
    FROM harmonized.cns_status AS c
    LEFT JOIN ref.em_evidence AS e ON e.modality = 'csf'
    WHERE c.cns_status = 'CNS3'
),

all_findings AS (
    SELECT * FROM text_findings
    UNION ALL
    SELECT * FROM csf_findings
),

negative_evidence AS (
    -- the best-ranked evidence saying absent or resolved, per patient, site group and day
    SELECT
        patient_key,
        site_group,
        study_day,
        min(evidence_rank) AS best_negative_rank
    FROM all_findings
    WHERE assertion IN ('absent', 'resolved')
    GROUP BY patient_key, site_group, study_day
)

SELECT
    f.*,
    (
        f.assertion = 'present'
        AND (n.best_negative_rank IS NULL OR f.evidence_rank <= n.best_negative_rank)
    ) AS counts_as_present
FROM all_findings AS f
LEFT JOIN negative_evidence AS n
    ON
        f.patient_key = n.patient_key
        AND f.site_group = n.site_group
        AND f.study_day = n.study_day;

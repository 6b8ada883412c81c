-- CNS status of each CSF assessment (COG): CNS1 no blasts; CNS2 blasts with WBC < 5/uL, or a
-- traumatic tap (RBC >= 10/uL) failing the Steinherz-Bleyer rule; CNS3 blasts with WBC >= 5/uL
-- and RBC < 10/uL, or a traumatic tap with CSF WBC/RBC > 2 x blood WBC/RBC. Blasts with WBC >= 5/uL
-- and no RBC count reported: 'indeterminate' (RBC not reported), never CNS3; a query asks the
-- site for the count (harmonized.derivation_queries).
CREATE OR REPLACE TABLE harmonized.cns_status AS
WITH csf AS (
    SELECT
        a.patient_key,
        a._source_file,
        a._source_row,
        a.csf_blasts,
        a.csf_wbc_per_ul,
        a.csf_rbc_per_ul,
        date_diff('day', t.day0_date, a.assessment_date) AS study_day,
        -- blood counts per microlitre: WBC 10^9/L x 1e3, RBC 10^12/L x 1e6
        (a.blood_wbc_10e9l * 1e3) / nullif(a.blood_rbc_10e12l * 1e6, 0) AS blood_wbc_rbc_ratio
    FROM staging.assessments AS a
    INNER JOIN harmonized.patient_timeline AS t ON a.patient_key = t.patient_key
    WHERE a.csf_blasts IS NOT NULL
),

csf_rule AS (
    -- the one decision ladder: the first rule that applies to each CSF assessment
    SELECT
        *,
        CASE
            WHEN csf_blasts = 'absent' THEN 'CNS1_NO_BLASTS'
            WHEN csf_wbc_per_ul IS NULL THEN 'CNS2_BLASTS_NO_WBC'
            WHEN csf_wbc_per_ul < 5 THEN 'CNS2_WBC_LT5'
            WHEN csf_rbc_per_ul IS NULL THEN 'CNS_INDETERMINATE_RBC_NOT_REPORTED'
            WHEN csf_rbc_per_ul < 10 THEN 'CNS3_WBC_GE5_RBC_LT10'
            WHEN csf_wbc_per_ul / csf_rbc_per_ul > 2 * blood_wbc_rbc_ratio THEN 'CNS3_TRAUMATIC_RATIO'
            WHEN blood_wbc_rbc_ratio IS NULL THEN 'CNS2_TRAUMATIC_NO_BLOOD'
            ELSE 'CNS2_TRAUMATIC_RATIO'
        END AS rule_id
    FROM csf
),

rule_status AS (
    -- the CNS status each rule decides, so the status cannot drift from its rule id
    SELECT
        rules.rule_id,
        rules.cns_status
    FROM (
        VALUES
        ('CNS1_NO_BLASTS', 'CNS1'),
        ('CNS2_BLASTS_NO_WBC', 'CNS2'),
        ('CNS2_WBC_LT5', 'CNS2'),
        ('CNS_INDETERMINATE_RBC_NOT_REPORTED', 'indeterminate'),
        ('CNS3_WBC_GE5_RBC_LT10', 'CNS3'),
        ('CNS3_TRAUMATIC_RATIO', 'CNS3'),
        ('CNS2_TRAUMATIC_NO_BLOOD', 'CNS2'),
        ('CNS2_TRAUMATIC_RATIO', 'CNS2')
    ) AS rules (rule_id, cns_status)
)

SELECT
    c.patient_key,
    c.study_day,
    r.cns_status,
    c.rule_id,
    c.csf_wbc_per_ul,
    c.csf_rbc_per_ul,
    c._source_file,
    c._source_row
FROM csf_rule AS c
LEFT JOIN rule_status AS r ON c.rule_id = r.rule_id;

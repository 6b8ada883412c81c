-- CD19 discordance: an EM specimen (tissue or CSF) and a marrow specimen of the same patient
-- within 7 days of each other whose classes differ.
CREATE OR REPLACE TABLE harmonized.cd19_discordance AS
SELECT
    em.patient_key,
    em.study_day AS em_study_day,
    em.specimen_type AS em_specimen_type,
    em.cd19_class AS em_cd19_class,
    mw.study_day AS marrow_study_day,
    mw.cd19_class AS marrow_cd19_class,
    em.cd19_class <> mw.cd19_class AS discordant
FROM harmonized.cd19_specimens AS em
INNER JOIN harmonized.cd19_specimens AS mw
    ON
        em.patient_key = mw.patient_key
        AND mw.specimen_type = 'marrow'
        AND abs(em.study_day - mw.study_day) <= 7
WHERE
    em.specimen_type IN ('tissue', 'csf')
    AND em.cd19_class IS NOT NULL
    AND mw.cd19_class IS NOT NULL;

-- Published EM-versus-marrow CD19 pairs (harmonized.cd19_discordance): study days only.
CREATE OR REPLACE TABLE curated.cd19_discordance AS
SELECT
    patient_key,
    em_study_day,
    em_specimen_type,
    em_cd19_class,
    marrow_study_day,
    marrow_cd19_class,
    days_apart,
    discordant,
    discordance
FROM harmonized.cd19_discordance
ORDER BY ALL;

COMMENT ON TABLE curated.cd19_discordance IS 'One row per pair of classified CD19 specimens of one patient, an EM specimen (tissue or CSF) and a marrow specimen at most cd19_discordance_window_days apart (docs/cd19.md).';
COMMENT ON COLUMN curated.cd19_discordance.patient_key IS 'Pseudonymous patient key (keyed HMAC of site and MRN).';
COMMENT ON COLUMN curated.cd19_discordance.em_study_day IS 'Collection day of the EM specimen relative to blinatumomab cycle 1 start (day 0).';
COMMENT ON COLUMN curated.cd19_discordance.em_specimen_type IS 'tissue or csf.';
COMMENT ON COLUMN curated.cd19_discordance.em_cd19_class IS 'CD19 class of the EM specimen: negative, dim, moderate or strong.';
COMMENT ON COLUMN curated.cd19_discordance.marrow_study_day IS 'Collection day of the marrow specimen relative to day 0.';
COMMENT ON COLUMN curated.cd19_discordance.marrow_cd19_class IS 'CD19 class of the marrow specimen: negative, dim, moderate or strong.';
COMMENT ON COLUMN curated.cd19_discordance.days_apart IS 'Days between the two collections (absolute), from 0 to cd19_discordance_window_days.';
COMMENT ON COLUMN curated.cd19_discordance.discordant IS 'The two CD19 classes differ.';
COMMENT ON COLUMN curated.cd19_discordance.discordance IS 'em_negative (CD19-negative EM, CD19-expressing marrow: EM escape), marrow_negative (the reverse), intensity (both express CD19 at different intensity classes); NULL when concordant.';

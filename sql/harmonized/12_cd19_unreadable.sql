-- Steward listing: CD19 wordings the lexicon could not read, with how often they occur.
CREATE OR REPLACE TABLE harmonized.cd19_unreadable AS
SELECT
    source_id,
    descriptor,
    count(*) AS n_specimens
FROM harmonized.cd19_specimens
WHERE unreadable
GROUP BY source_id, descriptor
ORDER BY n_specimens DESC, descriptor ASC;

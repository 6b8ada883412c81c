"""blinaetl: validation and ETL of site extracts for blinatumomab studies in R/R B-ALL."""

__version__ = "0.1.0"

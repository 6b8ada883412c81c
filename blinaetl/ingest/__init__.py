"""Ingest: read landing files, map site layouts onto the contracts, add lineage."""

"""Validate: the extract contracts (declarations) and the executor that runs their checks."""

"""Reports: steward report, query listing, study report, Great Expectations, data dictionary."""

"""Warehouse: DuckDB connections, staging frames, the SQL model runner and atomic publish."""

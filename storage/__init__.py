"""DuckDB persistence: schema, jobs, nodes, node files and the metric store."""

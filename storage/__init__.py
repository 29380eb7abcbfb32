"""Storage, plain Python (no Dagster): the home folder, the DuckDB warehouse (schema, lock-aware connection, shared
queries) and the MLflow model registry (one typed client). `resources/` wraps them as Dagster resources; the forecast
service (`serving/`) uses them directly."""

"""Plain ingestion code: the sources catalog, file readers, Pandera schemas and the
validate-or-quarantine split. No Dagster import here: assets and the CLI share this path."""

"""What validation rejected, read back: the `quarantine_summary` view (rows per table, source and first reason)
and a few sample rows per source. The ingest writes fill `quarantine` (`storage.queries.write_loaded`)."""

from __future__ import annotations

from typing import NamedTuple

import pandas as pd

SUMMARY_VIEW = """
CREATE OR REPLACE VIEW quarantine_summary AS
SELECT table_name, source, asset_class,
       regexp_replace(split_part(reasons, ';', 1), '\\(.*\\)|row \\d+|''.*''', '', 'g') AS first_reason,
       count(*) AS rows, min(source_row) AS first_row
FROM quarantine GROUP BY ALL ORDER BY rows DESC
"""
SAMPLE_ROWS = 3  # per source


class QuarantineSummary(NamedTuple):
    summary: pd.DataFrame  # the view: table_name, source, asset_class, first_reason, rows, first_row
    sample: pd.DataFrame  # the first SAMPLE_ROWS rows of each source: source, source_row, reasons, raw


def publish_summary(con) -> QuarantineSummary:
    """(Re)create the `quarantine_summary` view on the open connection ``con`` (inside the caller's
    transaction) and read it with the sample rows."""
    con.execute(SUMMARY_VIEW)
    summary = con.execute("SELECT * FROM quarantine_summary").df()
    sample = con.execute("""SELECT source, source_row, reasons, raw FROM quarantine
                            QUALIFY row_number() OVER (PARTITION BY source ORDER BY source_row) <= ?
                            ORDER BY source, source_row""", [SAMPLE_ROWS]).df()
    return QuarantineSummary(summary, sample)

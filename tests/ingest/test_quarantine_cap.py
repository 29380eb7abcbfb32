"""Quarantine keeps a bounded part of a huge raw row, with a marker and the original length."""

import json

import pytest

from tests.conftest import bars_spec


@pytest.mark.fault('a 20 MB line in a bar file',
                   'quarantined with its reason; raw kept capped at 4,096 chars with the original length')
def test_a_20_mb_line_is_quarantined_with_a_capped_raw_text(tmp_path):
    from ingest.load import load_sources
    from ingest.validate import MAX_RAW_CHARS

    huge = "9" * 20_000_000
    path = tmp_path / "huge.csv"
    path.write_text("ts,symbol,open,high,low,close,volume\n"
                    "2024-01-01T00:00:00Z,AAA,10,11,9,10.5,1\n"
                    f"2024-01-02T00:00:00Z,AAA,10,11,9,{huge}x,1\n")
    loaded = load_sources([bars_spec(path)], "bars")
    q = loaded.split.quarantined
    assert len(loaded.split.accepted) == 1 and len(q) == 1
    assert "close: not a number" in q.reasons.iloc[0]
    kept = json.loads(q.raw.iloc[0])
    assert kept["truncated"] is True and len(kept["head"]) == MAX_RAW_CHARS
    assert kept["original_length"] > 20_000_000 and kept["head"].startswith('{"ts":"2024-01-02')
    assert len(q.raw.iloc[0]) < MAX_RAW_CHARS + 200

"""The malformed-file corpus (tests/data/bad/): each file gives a clear error naming it, or loads its good
rows and quarantines the bad ones with their reasons; rows read = accepted + quarantined, always."""

import pytest

from ingest.load import load_sources
from ingest.readers import SourceFileError
from tests.conftest import BAD, bars_spec

UNREADABLE = {
    "latin1_encoding.csv": "not UTF-8 text",
    "image_not_csv.csv": "not UTF-8 text",
    "empty.csv": "file is empty",
    "missing_close_column.csv": "missing required column(s) ['close']",
    "semicolon_separated.csv": "found a single column",
    "not_really.csv.gz": "cannot be decompressed",
    "does_not_exist.csv": "file not found",
}

# file -> (accepted, quarantined, reasons that must appear)
PARTLY_BAD = {
    "header_only.csv": (0, 0, []),
    "ragged_lines.csv": (2, 2, ["expected 7 fields, found 9", "expected 7 fields, found 4"]),
    "bad_numbers.csv": (1, 3, ["open: not a number 'one'", "volume: not a number 'lots'", "close: not_nullable"]),
    "bad_timestamps.csv": (1, 4, ["ts: not a valid timestamp 'yesterday'", "not a valid timestamp '2024-13-45",
                                  "ts: not_nullable", "ts: timestamp after"]),
    "ohlc_violations.csv": (1, 5, ["row: high < max(open, close)", "row: low > min(open, close)",
                                   "open: price must be > 0 (-1.0)", "volume: volume must be >= 0 (-10.0)",
                                   "low: price must be > 0 (0.0)"]),
    "duplicate_keys.csv": (3, 1, ["duplicate key (symbol, freq, ts): kept duplicate_keys row 1"]),
    "missing_symbol.csv": (1, 1, ["symbol: not_nullable"]),
    "sql_injection_symbol.csv": (2, 0, []),
}


def test_corpus_has_at_least_ten_files_and_each_is_covered():
    files = {p.name for p in BAD.iterdir()}
    assert len(files) >= 10
    assert files == (set(UNREADABLE) - {"does_not_exist.csv"}) | set(PARTLY_BAD)


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_file_fails_with_a_message_naming_the_file(name):
    with pytest.raises(SourceFileError) as err:
        load_sources([bars_spec(BAD / name)], "bars")
    assert name in str(err.value)
    assert UNREADABLE[name] in str(err.value)


@pytest.mark.parametrize("name", sorted(PARTLY_BAD))
def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(name):
    accepted, quarantined, reasons = PARTLY_BAD[name]
    loaded = load_sources([bars_spec(BAD / name)], "bars")
    recon = loaded.reconciliation().iloc[0]
    assert (recon.rows_accepted, recon.rows_quarantined) == (accepted, quarantined)
    assert recon.rows_read == recon.rows_accepted + recon.rows_quarantined
    q = loaded.split.quarantined
    text = " | ".join(q.reasons)
    for reason in reasons:
        assert reason in text, f"{reason!r} not in {text!r}"
    assert (q.source_file == str(BAD / name)).all()
    assert q.source_row.between(1, recon.rows_read).all()
    assert q.raw.str.startswith("{").all()  # the raw values, as JSON, for every quarantined row

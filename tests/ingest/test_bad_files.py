"""The malformed-file corpus (tests/data/bad/): each file gives a clear error naming it, or loads its good
rows and quarantines the bad ones with their reasons; rows read = accepted + quarantined, always.

Files too big (or too odd) to commit are generated into tmp_path by `make_generated`: a 10 MB single line, a header
of 5,000 columns, two gzip bombs, a directory named *.csv and a FIFO. tests/chaos/test_corpus.py runs the same
corpus through `tradecast ingest`, the incoming folder and `tradecast bench --csv`."""

import gzip
import os
import signal
from pathlib import Path

import pandas as pd
import pytest

from ingest.load import load_sources
from ingest.readers import SourceFileError
from tests.conftest import BAD, bars_spec

# catalog fields of the files that are not canonical bar files
SPECS = {
    "trades_bad_amounts.csv": {"kind": "trades", "freq": "1min",
                               "columns": {c: c for c in ("ts", "symbol", "price", "amount")}},
    "wide_layout_mismatch.csv": {"layout": "wide", "header": False, "columns": {},
                                 "wide": {"symbols": ["A", "B", "C"], "start": "2024-01-01", "index_freq": "B"}},
    "dst_gap_local_time.csv": {"timezone": "Europe/Berlin"},
}

UNREADABLE = {
    "latin1_encoding.csv": "not UTF-8 text",
    "image_not_csv.csv": "not UTF-8 text",
    "utf16_encoding.csv": "not UTF-8 text",
    "empty.csv": "file is empty",
    "blank_lines_only.csv": "file is empty",
    "missing_close_column.csv": "missing required column(s) ['close']",
    "header_with_spaces.csv": "missing required column(s) ['close', 'high', 'low', 'open', 'symbol', 'ts', 'volume']",
    "semicolon_separated.csv": "found a single column",
    "not_really.csv.gz": "cannot be decompressed",
    "truncated_gzip.csv.gz": "cannot be decompressed/read (Compressed file ended before the end-of-stream marker",
    "duplicate_headers.csv": "column(s) ['close'] appear more than once in the header",
    "unterminated_quote.csv": "not a valid CSV at line 5 (unexpected end of data; a quote never closed?)",
    "wide_layout_mismatch.csv": "wide layout expects 3 columns ['A', 'B', 'C'], found 2",
    "does_not_exist.csv": "file not found",
}

# file -> (accepted, quarantined, reasons that must appear)
PARTLY_BAD = {
    "header_only.csv": (0, 0, []),
    "header_only_gzipped.csv.gz": (0, 0, []),
    "ragged_lines.csv": (2, 2, ["expected 7 fields, found 9", "expected 7 fields, found 4"]),
    "bad_numbers.csv": (1, 3, ["open: not a number 'one'", "volume: not a number 'lots'", "close: not_nullable"]),
    "bad_timestamps.csv": (1, 4, ["ts: not a valid timestamp 'yesterday'", "not a valid timestamp '2024-13-45",
                                  "ts: not_nullable", "ts: timestamp after"]),
    "ohlc_violations.csv": (1, 5, ["row: high < max(open, close)", "row: low > min(open, close)",
                                   "open: price must be > 0 (-1.0)", "volume: volume must be >= 0 (-10.0)",
                                   "low: price must be > 0 (0.0)"]),
    "duplicate_keys.csv": (3, 1, ["duplicate key (asset_class, symbol, freq, ts): kept duplicate_keys row 1"]),
    "missing_symbol.csv": (1, 1, ["symbol: not_nullable"]),
    "sql_injection_symbol.csv": (2, 0, []),
    "bom_header.csv": (2, 0, []),
    "bom_ragged_line.csv": (2, 1, ["row: expected 7 fields, found 9"]),
    "crlf_line_endings.csv": (2, 1, ["close: not a number 'x'"]),
    "empty_column_name.csv": (2, 0, []),
    "quoted_newline.csv": (2, 1, ["close: not a number '1.\n5'"]),
    "mixed_timezones.csv": (4, 1, ["duplicate key (asset_class, symbol, freq, ts): kept mixed_timezones row 1"]),
    "epoch_mixed_with_iso.csv": (3, 2, ["ts: not a valid timestamp '1704240000000'",
                                        "ts: not a valid timestamp '1704326400'"]),
    "dst_gap_local_time.csv": (3, 2, [
        "ts: local time '2024-03-31 02:30:00' does not exist or is ambiguous in Europe/Berlin (a daylight-saving",
        "ts: local time '2024-10-27 02:30:00' does not exist or is ambiguous in Europe/Berlin"]),
    "far_future_timestamps.csv": (2, 2, ["ts: timestamp after", "ts: not a valid timestamp '99999-01-01T00:00:00Z'"]),
    "header_repeated_mid_file.csv": (2, 1, ["ts: not a valid timestamp 'ts'", "close: not a number 'close'"]),
    "scientific_prices.csv": (1, 2, ["open: not a finite number '1e400'", "close: not a finite number '1e400'",
                                     "close: price must be > 0 (0.0)"]),
    "infinite_prices.csv": (1, 4, ["high: not a finite number 'inf'", "low: not a finite number '-inf'",
                                   "close: not a finite number 'Infinity'", "volume: not a finite number 'inf'"]),
    "thousands_separators.csv": (1, 1, ["open: not a number '1,234.5'", "high: not a number '1,300'"]),
    "nul_bytes.csv": (2, 2, ["symbol: contains a NUL byte (corrupt data)", "close: not a number '1.\x005'"]),
    "symbol_too_long.csv": (2, 2, ["symbol: str_length(1, 64)", "symbol: not_nullable"]),
    "trades_bad_amounts.csv": (2, 4, ["amount: amount must be >= 0 (-2.0)", "price: price must be > 0 (0.0)",
                                      "price: not_nullable", "price: not a finite number '1e400'"]),
}

# what the accepted rows hold: no quirk of the file may change a value silently
ACCEPTED = {
    "bom_header.csv": {"symbol": ["BOM", "BOM"], "close": [1.5, 1.5]},
    "bom_ragged_line.csv": {"symbol": ["BOMR", "BOMR"]},
    "crlf_line_endings.csv": {"symbol": ["CRLF", "CRLF"], "volume": [10.0, 10.0]},
    "empty_column_name.csv": {"symbol": ["EMPTYCOL", "EMPTYCOL"], "volume": [10.0, 10.0]},
    "quoted_newline.csv": {"symbol": ["QNL", "QNL"], "ts": ["2024-01-01 00:00", "2024-01-03 00:00"]},
    "mixed_timezones.csv": {"ts": ["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-03 00:00", "2024-01-04 00:00"],
                            "close": [1.5] * 4},
    "scientific_prices.csv": {"open": [150.0], "high": [200.0], "low": [100.0], "close": [150.0], "volume": [1000.0]},
    "epoch_mixed_with_iso.csv": {"ts": ["2024-01-01 00:00", "2024-01-02 00:00", "2024-01-05 00:00"]},
    "dst_gap_local_time.csv": {"ts": ["2024-03-28 01:30", "2024-03-29 01:30", "2024-03-30 01:30"]},  # CET = UTC+1
    "symbol_too_long.csv": {"symbol": ["LONG", "LONG"]},
    "trades_bad_amounts.csv": {"ts": ["2024-01-01 00:00", "2024-01-01 00:01"], "close": [100.0, 102.0],
                               "volume": [1.0, None]},
}

# file -> what load_sources says of it (generated by make_generated)
GENERATED = {
    "one_huge_line.csv": "the first line is longer than 1,048,576 characters",
    "too_many_columns.csv": "the first line has 5,000 fields, more than 4,096",
    "zeros_bomb.csv.gz": "the first line is longer than 1,048,576 characters",
    "lines_bomb.csv.gz": "decompresses to more than 38 MiB, over 50x its compressed size",
    "directory.csv": "is a directory, not a file",
    "fifo.csv": "not a regular file (a FIFO, socket or device)",
}
BOMB_LINE = b"2024-01-01T00:00:00Z,BOMB,1,2,0.5,1.5,10\n"


def make_generated(folder: Path) -> dict[str, Path]:
    """The big or special members of the corpus, built in `folder` in well under a second."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {name: folder / name for name in GENERATED}
    paths["one_huge_line.csv"].write_text("," * 10_000_000)  # 10 MB, no newline: 10 million empty column names
    paths["too_many_columns.csv"].write_text(",".join(f"c{i}" for i in range(5000)) + "\n" + "1," * 4999 + "1\n")
    zeros = gzip.compress(b"\0" * 2**20, 9, mtime=0)  # 1 MiB of zeros in ~1 KB; 1,024 members: 1 GiB in 1 MB
    paths["zeros_bomb.csv.gz"].write_bytes(zeros * 1024)
    lines = gzip.compress(BOMB_LINE * (2**20 // len(BOMB_LINE)), 9, mtime=0)  # 1 MiB of valid bars in ~3 KB
    header = gzip.compress(b"ts,symbol,open,high,low,close,volume\n", mtime=0)
    paths["lines_bomb.csv.gz"].write_bytes(header + lines * 256)  # 256 MiB of bars in 0.76 MB
    paths["directory.csv"].mkdir()
    os.mkfifo(paths["fifo.csv"])  # nothing ever writes to it: opening it to read would wait forever
    return paths


class _Hang(Exception):
    pass


def within(seconds: int):
    """A context manager failing the test (instead of hanging it) when its block runs longer than `seconds`."""
    import contextlib

    @contextlib.contextmanager
    def guard():
        def fire(signum, frame):
            raise _Hang(f"still running after {seconds} s (blocked on a FIFO, or reading without a bound?)")

        old = signal.signal(signal.SIGALRM, fire)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    return guard()


def spec_of(path: Path, **extra):
    return bars_spec(path, **{**SPECS.get(path.name, {}), **extra})


def test_corpus_has_at_least_thirty_files_and_each_is_covered():
    files = {p.name for p in BAD.iterdir()}
    assert len(files) >= 30 and len(files | set(GENERATED)) >= 40
    assert files == (set(UNREADABLE) - {"does_not_exist.csv"}) | set(PARTLY_BAD)
    assert len({name.split(".")[0] for name in files}) == len(files)  # one source name per file when registered
    assert sum(p.stat().st_size for p in BAD.iterdir()) < 20_000  # small files only; the big ones are generated


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_unreadable_file_fails_with_a_message_naming_the_file(name):
    with pytest.raises(SourceFileError) as err:
        load_sources([spec_of(BAD / name)], "bars")
    assert name in str(err.value)
    assert UNREADABLE[name] in str(err.value)


@pytest.mark.parametrize("name", sorted(PARTLY_BAD))
def test_bad_rows_are_quarantined_with_reasons_and_nothing_is_lost(name):
    accepted, quarantined, reasons = PARTLY_BAD[name]
    loaded = load_sources([spec_of(BAD / name)], "bars")
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


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_rows_hold_exactly_the_values_of_the_file(name):
    rows = load_sources([spec_of(BAD / name)], "bars").split.accepted.sort_values(["symbol", "ts"])
    for column, values in ACCEPTED[name].items():
        got = rows[column]
        got = got.dt.strftime("%Y-%m-%d %H:%M") if column == "ts" else got.astype(object).where(got.notna(), None)
        assert got.tolist() == values, column


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_huge_or_special_files_are_refused_quickly_naming_the_file(name, tmp_path):
    path = make_generated(tmp_path)[name]
    with within(60), pytest.raises(SourceFileError) as err:
        load_sources([bars_spec(path)], "bars")
    assert str(path) in str(err.value) and GENERATED[name] in str(err.value)


def test_a_bomb_is_stopped_while_streaming_not_after_decompressing_it(tmp_path):
    """The limit is counted on the bytes read: the 256 MiB bomb stops at its ~38 MiB limit (50x of 0.76 MB)."""
    from ingest import readers

    path = make_generated(tmp_path)["lines_bomb.csv.gz"]
    with pytest.raises(SourceFileError), readers.open_data(path) as fh:
        seen = 0
        while chunk := fh.read(2**20):
            seen += len(chunk)
    assert 37 * 2**20 <= seen <= readers.MAX_COMPRESSION_RATIO * path.stat().st_size
    small = tmp_path / "repetitive.csv.gz"  # 0.8 MiB at ~300x: a small file is never refused for its ratio
    small.write_bytes(gzip.compress(b"ts,symbol,open,high,low,close,volume\n" + BOMB_LINE * 20_000, 9))
    assert len(load_sources([bars_spec(small)], "bars").split.quarantined) == 20_000 - 1  # duplicates of row 1


def test_an_unknown_time_zone_is_a_clear_error_not_a_key_error():
    with pytest.raises(SourceFileError, match=r"dst_gap_local_time.csv: source 'dst_gap_local_time': unknown time "
                                              r"zone 'Mars/Olympus'; use an IANA name"):
        load_sources([spec_of(BAD / "dst_gap_local_time.csv", timezone="Mars/Olympus")], "bars")
    by_symbol = spec_of(BAD / "bom_header.csv", timezone_by_symbol={"BOM": "Europe/Nowhere"})
    with pytest.raises(SourceFileError, match="unknown time zone 'Europe/Nowhere'"):
        load_sources([by_symbol], "bars")
    assert pd.Timestamp(0).tz_localize("Europe/Berlin") is not None  # a known zone passes the same check

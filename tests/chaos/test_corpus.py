"""Fault suite, bad input: the corpus of tests/ingest/test_bad_files.py (tests/data/bad/ and the generated 10 MB line,
5,000-column header, gzip bombs, directory, FIFO, symlink) through the three ways a file gets in: `tradecast
ingest`, the incoming folder (what `incoming_files_sensor` calls) and `tradecast bench --csv`. Each file ends with
its bad rows quarantined (read = accepted + quarantined, with the reasons) or with a clear error naming it; never a
traceback, a hang or a row lost without a word."""

from __future__ import annotations

import gzip
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import BAD, ROOT, warehouse_query, write_catalog
from tests.ingest.test_bad_files import GENERATED, PARTLY_BAD, make_generated, within

# `tradecast ingest` options per file (in the incoming folder: a sidecar <file>.yaml)
OPTIONS = {
    "trades_bad_amounts.csv": {"trades": True, "bar": "1min"},
    "dst_gap_local_time.csv": {"timezone": "Europe/Berlin"},
    "header_only.csv": {"freq": "1d"},
    "header_only_gzipped.csv.gz": {"freq": "1d"},
    "sql_injection_symbol.csv": {"freq": "1d"},
    # their AAA bars would collide with bad_numbers.csv's in one warehouse: each gets an asset class of its own
    "duplicate_keys.csv": {"asset_class": "fx"},
    "ohlc_violations.csv": {"asset_class": "equities"},
}
# files that registration refuses, and what it says (besides naming the file)
REFUSED = {
    "bad_timestamps.csv": "detected spacing 27394d: bars must be a whole number of minutes from 1min to 1d",
    "ragged_lines.csv": "detected spacing 3d: bars must be a whole number of minutes",
    "missing_symbol.csv": "cannot infer the bar frequency (fewer than two timestamps per symbol); pass --freq",
    "missing_close_column.csv": "no column for ['close']",
    "header_with_spaces.csv": "no column for ['ts', 'symbol', 'close']; the file has [' ts ', ' symbol '",
    "semicolon_separated.csv": "no column for ['ts', 'symbol', 'close']",
    "wide_layout_mismatch.csv": "no column for ['ts', 'symbol', 'close']; the file has ['1.0', '2.0']",
    "empty.csv": "file is empty (no header, no rows)",
    "blank_lines_only.csv": "file is empty (no header, no rows)",
    "latin1_encoding.csv": "not UTF-8 text",
    "image_not_csv.csv": "not UTF-8 text",
    "utf16_encoding.csv": "not UTF-8 text",
    "not_really.csv.gz": "cannot be decompressed/read (Not a gzipped file",
    "truncated_gzip.csv.gz": "cannot be decompressed/read (Compressed file ended",
    "duplicate_headers.csv": "column(s) ['close'] appear more than once in the header",
    "unterminated_quote.csv": "not a valid CSV at line 5 (unexpected end of data; a quote never closed?)",
    **GENERATED,
}
LINKED = {"link_to_good.csv": (3, 0, [])}  # a link named on the command line is read (its target is copied)


def corpus(folder: Path) -> dict[str, Path]:
    """Every member of the corpus: the committed files, the generated ones, and a symbolic link to a good file."""
    files = {p.name: p for p in sorted(BAD.iterdir())}
    files.update(make_generated(folder / "generated"))
    target = folder / "outside" / "good.csv"
    target.parent.mkdir()
    target.write_text("ts,symbol,open,high,low,close,volume\n" + "".join(
        f"2024-01-0{d}T00:00:00Z,LINK,1,2,0.5,1.5,10\n" for d in (1, 2, 3)))
    (folder / "generated" / "link_to_good.csv").symlink_to(target)
    files["link_to_good.csv"] = folder / "generated" / "link_to_good.csv"
    return files




def asset_class(name: str) -> str:
    return OPTIONS.get(name, {}).get("asset_class", "crypto")


def source_name(path: Path) -> str:
    from pipelines.registration import _default_name

    return _default_name(path)


def check_loads(names: dict[str, str]) -> list[str]:
    """Problems with the warehouse's record of each registered source (source -> corpus file)."""
    loads = warehouse_query("SELECT * FROM source_loads").set_index("source")
    reasons = warehouse_query("SELECT source, string_agg(reasons, ' | ') AS text FROM quarantine GROUP BY source")
    reasons = dict(zip(reasons.source, reasons.text, strict=True))
    problems = []
    for source, name in names.items():
        if name not in {**PARTLY_BAD, **LINKED}:
            continue  # a file that should have been refused: said already
        accepted, quarantined, wanted = {**PARTLY_BAD, **LINKED}[name]
        wanted = [w.replace(f"kept {name.split('.')[0]} ", f"kept {source} ") for w in wanted]  # named user_<stem>
        if source not in loads.index:
            problems.append(f"{name}: registered but not loaded")
            continue
        row = loads.loc[source]
        got = (int(row.rows_read), int(row.rows_accepted), int(row.rows_quarantined))
        if got != (accepted + quarantined, accepted, quarantined):
            problems.append(f"{name}: read/accepted/quarantined {got}, expected {accepted + quarantined}/{accepted}/"
                            f"{quarantined}")
        missing = [r for r in wanted if r not in reasons.get(source, "")]
        if missing:
            problems.append(f"{name}: quarantine lacks {missing}")
    return problems


def check_refusal(name: str, path: Path, message: str) -> list[str]:
    wanted = REFUSED.get(name)
    if wanted is None:
        return [f"{name}: refused, expected it to load: {message}"]
    if wanted not in message or str(path) not in message and path.name not in message:
        return [f"{name}: the error {message!r} lacks {wanted!r} or the file name"]
    return []


@pytest.fixture
def empty_bundled_catalog(home, tmp_path, monkeypatch):
    """Only the corpus in the warehouse: the bundled catalog is empty (its data would take minutes to load)."""
    monkeypatch.setenv("TRADECAST_CATALOG", str(write_catalog(tmp_path / "bundled.yaml", [])))
    return home


@pytest.mark.fault("bad-input corpus (40+ files) through `tradecast ingest` (its register_file + ingest_job, in "
                   "process)", "each file: registered and loaded with read = accepted + quarantined and the expected "
                   "reasons in quarantine, or refused with a SourceFileError naming the file and the problem; no "
                   "other exception, no hang (60 s per file)")
def test_corpus_through_tradecast_ingest(empty_bundled_catalog, tmp_path, chaos_detail):
    from ingest.catalog import CatalogError
    from ingest.readers import SourceFileError
    from pipelines.cli.runner import run_job
    from pipelines.registration import register_file

    files = corpus(tmp_path)
    problems, registered = [], {}
    for name, path in files.items():
        opts = {"asset_class": "crypto", **OPTIONS.get(name, {})}
        try:
            with within(60):
                spec = register_file(str(path), **opts)
        except (SourceFileError, CatalogError) as exc:
            problems += check_refusal(name, path, str(exc))
            continue
        if name in REFUSED:
            problems.append(f"{name}: registered, expected a refusal saying {REFUSED[name]!r}")
        registered[spec.name] = name
    for cls in sorted({asset_class(n) for n in registered.values()}):
        run_job("ingest_job", cls, echo=lambda *a, **k: None)
    problems += check_loads(registered)
    assert not problems, "\n".join(problems)
    rows = warehouse_query("SELECT sum(rows_read) AS r, sum(rows_quarantined) AS q FROM source_loads").iloc[0]
    chaos_detail(f"{len(files)} files: {len(registered)} loaded ({int(rows.r)} rows read, {int(rows.q)} quarantined "
                 f"with reasons), {len(files) - len(registered)} refused naming the file, 0 crashes")


def tradecast(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=os.environ.copy(), timeout=timeout, check=False)


def one_line_error(out: subprocess.CompletedProcess, *phrases: str) -> list[str]:
    """Problems with a refused CLI run: exit 1, no traceback, one `Error:` line naming what is wrong."""
    lines = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
    problems = [] if out.returncode == 1 else [f"exit {out.returncode}"]
    problems += ["traceback"] if "Traceback" in out.stderr + out.stdout else []
    problems += [] if len(lines) == 1 else [f"{len(lines)} error lines"]
    problems += [f"no {p!r}" for p in phrases if not lines or p not in lines[0]]
    return [f"{out.args[3:]}: {p} (stderr: {out.stderr[-400:]!r})" for p in problems]


@pytest.mark.slow_chaos
@pytest.mark.fault("bad files through the real `tradecast ingest` command (a subprocess each), and a registered "
                   "copy deleted before the next load", "ohlc_violations.csv: exit 0 and source_loads 6 = 1 + 5; a "
                   "quote never closed, a gzip bomb, a directory: exit 1 (a directory: click's exit 2) with one "
                   "`Error:` line naming the file, no traceback; a deleted copy: the next ingest exits 1 naming it")
def test_bad_files_through_the_real_ingest_command(empty_bundled_catalog, tmp_path, chaos_detail):
    files = make_generated(tmp_path)
    out = tradecast("ingest", str(BAD / "ohlc_violations.csv"), "--asset-class", "equities")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    load = warehouse_query("SELECT * FROM source_loads WHERE source = 'user_ohlc_violations'").iloc[0]
    assert (load.rows_read, load.rows_accepted, load.rows_quarantined) == (6, 1, 5)
    problems = one_line_error(tradecast("ingest", str(BAD / "unterminated_quote.csv"), "--asset-class", "crypto"),
                              "unterminated_quote.csv", "a quote never closed")
    problems += one_line_error(tradecast("ingest", str(files["lines_bomb.csv.gz"]), "--asset-class", "crypto"),
                               "lines_bomb.csv.gz", "a compression bomb?")
    folder = tradecast("ingest", str(files["directory.csv"]), "--asset-class", "crypto")
    assert folder.returncode == 2 and "directory.csv' is a directory" in folder.stderr.replace("\n", " ")
    assert "Traceback" not in folder.stderr
    copy = empty_bundled_catalog / "sources" / "files" / "user_ohlc_violations.csv"
    copy.unlink()  # the registered copy vanishes between registration and the next load
    problems += one_line_error(tradecast("ingest", str(BAD / "bom_header.csv"), "--asset-class", "equities"),
                               "ingest_job [equities] failed", f"{copy}: file not found")
    assert not problems, "\n".join(problems)
    kept = warehouse_query("SELECT count(*) AS n FROM bars WHERE asset_class = 'equities'").n[0]
    assert kept == 1  # the failed load changed nothing: the bar of the first load is still there
    chaos_detail("1 load (6 = 1 + 5), 4 refusals with one Error line each, 0 tracebacks")


# good data with a broken sidecar: the file is rejected saying what is wrong with its options
SIDECARS = {
    "sidecar_not_yaml.csv": ("asset_class: [crypto\n", "sidecar_not_yaml.csv.yaml: not valid YAML text"),
    "sidecar_with_a_list.csv": ("asset_class: crypto\nmap: [ts, close]\n", "option(s) ['map'] must be plain values"),
    "sidecar_unknown_zone.csv": ("asset_class: crypto\ntimezone: Mars/Olympus\n", "unknown time zone 'Mars/Olympus'"),
    "sidecar_not_text.csv": (b"\xff\xfe\x00\x01", "sidecar_not_text.csv.yaml: not valid YAML text"),
}


def incoming_layout(root: Path, files: dict[str, Path]) -> dict[str, Path]:
    """Drop every corpus file into incoming/: class folders, a sidecar for the options, the FIFO and the zeros bomb
    at the top (their class would come from reading them), the link as a link."""
    placed = {}
    for name, path in files.items():
        top = name in ("fifo.csv", "zeros_bomb.csv.gz")
        folder = root if top else root / asset_class(name)
        folder.mkdir(exist_ok=True)
        dest = folder / name
        if name == "fifo.csv":
            os.mkfifo(dest)
        elif path.is_symlink():
            dest.symlink_to(os.readlink(path))
        elif path.is_dir():
            dest.mkdir()
        else:
            shutil.copyfile(path, dest)
        opts = {k: v for k, v in OPTIONS.get(name, {}).items() if k != "asset_class"}
        if opts:  # a sidecar replaces the folder's class: it names it too
            (folder / f"{name}.yaml").write_text(yaml.safe_dump({"asset_class": asset_class(name), **opts}))
        placed[name] = dest
    for name, (sidecar, _) in SIDECARS.items():
        placed[name] = root / "crypto" / name
        shutil.copyfile(BAD / "dst_gap_local_time.csv", placed[name])  # naive timestamps: read in the zone
        (root / "crypto" / f"{name}.yaml").write_bytes(sidecar if isinstance(sidecar, bytes) else sidecar.encode())
    return placed


@pytest.mark.fault("bad-input corpus (40+ files) dropped into $TRADECAST_HOME/incoming/ (pipelines.incoming.process, "
                   "what incoming_files_sensor calls), then ingest_job", "process() raises nothing and returns in "
                   "120 s; each file moves to done/ (and loads with read = accepted + quarantined and its reasons) or "
                   "to rejected/ with a .reason.txt naming the problem; a symlink is rejected, never followed; a "
                   "directory named *.csv is left alone; a broken sidecar (not YAML, a list, an unknown time "
                   "zone) rejects its file")
def test_corpus_through_the_incoming_folder(empty_bundled_catalog, tmp_path, chaos_detail):
    from pipelines.cli.runner import run_job
    from pipelines.incoming import incoming_dir, process
    from resources import Settings

    files = corpus(tmp_path)
    root = incoming_dir(empty_bundled_catalog)
    placed = incoming_layout(root, files)
    with within(120):
        outcomes = {Path(o.file).name: o for o in process(root, {}, set(), settings=Settings())}
    refused = {**REFUSED, "link_to_good.csv": "is a symbolic link", "fifo.csv": "is not a regular file (a FIFO",
               **{name: phrase for name, (_, phrase) in SIDECARS.items()}}
    problems, registered = [], {}
    for name in [*files, *SIDECARS]:
        outcome = outcomes.get(name)
        if name == "directory.csv":
            if outcome is not None or not placed[name].is_dir():
                problems.append(f"{name}: a directory was moved or reported: {outcome}")
            continue
        if outcome is None:
            problems.append(f"{name}: no outcome")
        elif outcome.rejected is not None:
            reason = root / "rejected" / f"{name}.reason.txt"
            text = reason.read_text() if reason.exists() else ""
            if name not in refused or refused[name] not in text:
                problems.append(f"{name}: rejected with {text or outcome.rejected!r}, expected {refused.get(name)!r}")
            if not os.path.lexists(root / "rejected" / name) or os.path.lexists(placed[name]):
                problems.append(f"{name}: not moved to rejected/")
        else:
            if name in refused:
                problems.append(f"{name}: registered, expected a rejection saying {refused[name]!r}")
            if not (root / "done" / name).is_file():
                problems.append(f"{name}: not moved to done/")
            registered[outcome.source] = name
    for cls in sorted({asset_class(n) for n in registered.values()}):
        run_job("ingest_job", cls, echo=lambda *a, **k: None)
    problems += check_loads(registered)
    assert not problems, "\n".join(problems)
    assert (tmp_path / "outside" / "good.csv").exists()  # the link's target was neither moved nor registered
    chaos_detail(f"{len(files) + len(SIDECARS)} files: {len(registered)} to done/ and loaded, "
                 f"{sum(o.rejected is not None for o in outcomes.values())} to rejected/ with a reason, 0 exceptions")


def bench_files(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """Benchmark-format (wide LTSF) members of the corpus -> (path, phrase of the error; None: it runs).
    `quirks.csv` has a BOM, CRLF line ends, scientific notation and every timestamp with another UTC offset."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(60):  # hourly; the same instant written in UTC, +01:00, +05:30 or naive (UTC)
        hour, minute, zone = [(i, 0, "Z"), (i + 1, 0, "+01:00"), (i + 5, 30, "+05:30"), (i, 0, "")][i % 4]
        day, hour = divmod(hour, 24)
        rows.append(f"2024-01-{1 + day:02d}T{hour:02d}:{minute:02d}:00{zone},{100 + 10 * math.sin(i / 3):.4e},"
                    f"{50 + 5 * math.cos(i / 4):.3E}")
    quirks = folder / "quirks.csv"
    quirks.write_bytes(("\ufeffdate,A,B\r\n" + "\r\n".join(rows) + "\r\n").encode())
    infinite = folder / "infinite.csv"
    infinite.write_text("date,A,B\n" + "\n".join(rows[:29] + [rows[29].rsplit(",", 1)[0] + ",1e400"] + rows[30:]))
    twice = folder / "twice.csv"
    twice.write_text("date,A,A\n" + "\n".join(rows) + "\n")
    line = b"2024-01-01 00:00:00,1.0,2.0\n"
    bomb = folder / "wide_bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"date,A,B\n", mtime=0)
                     + gzip.compress(line * (2**20 // len(line)), 9, mtime=0) * 256)
    return {"quirks.csv": (quirks, None),
            "infinite.csv": (infinite, "line 31, column 'B': not a finite number '1e400'"),
            "twice.csv": (twice, "column(s) ['A'] appear more than once in the header"),
            "wide_bomb.csv.gz": (bomb, "a compression bomb?")}


BENCH_ARGS = ["--h", "2", "--input-size", "4", "--models", "nhits", "--steps", "2", "--profile", "quick"]


@pytest.mark.fault("bad-input corpus (40+ files, and wide files with 1e400, a duplicated column, a gzip bomb) "
                   "through `tradecast bench --csv` (click's runner, in process)", "every file: exit 1 with an "
                   "error naming the file (the directory: click's usage error, exit 2), no exception, no hang, "
                   "nothing written")
def test_corpus_through_bench_csv(tmp_path, chaos_detail):
    from click.testing import CliRunner

    from pipelines.cli.bench import bench

    files = {name: (path, "--date-col") for name, path in corpus(tmp_path).items()}
    wide = {n: v for n, v in bench_files(tmp_path / "wide").items() if v[1]}  # quirks.csv would train: see below
    files.update({n: (p, "wide") for n, (p, _) in wide.items()})
    out = tmp_path / "results"
    problems = []
    for name, (path, kind) in files.items():
        args = ["--csv", str(path), "--out", str(out), *BENCH_ARGS] + (["--date-col", "ts"] if kind != "wide" else [])
        with within(60):
            result = CliRunner().invoke(bench, args)
        text = result.output
        if result.exit_code not in (1, 2) or not isinstance(result.exception, SystemExit):
            problems.append(f"{name}: exit {result.exit_code}, {result.exception!r}: {text[-300:]!r}")
        elif name not in text.replace("\n", " ") and str(path) not in text:
            problems.append(f"{name}: the error does not name the file: {text[-300:]!r}")
        elif kind == "wide" and wide[name][1] not in text:
            problems.append(f"{name}: {wide[name][1]!r} not in {text[-300:]!r}")
        elif (result.exit_code == 2) != (name == "directory.csv"):
            problems.append(f"{name}: exit {result.exit_code}: {text[-300:]!r}")
    assert not problems, "\n".join(problems)
    assert not out.exists()  # no result file for a refused input
    chaos_detail(f"{len(files)} files: every one refused with an error naming it, 0 exceptions")


@pytest.mark.slow_chaos
@pytest.mark.fault("`tradecast bench --csv` as a subprocess on a wide file with a BOM, CRLF, scientific notation "
                   "and mixed UTC offsets, and on a gzip bomb", "the quirky file trains NHITS (2 steps) and writes "
                   "its JSON with a finite MASE; the bomb: exit 1, one `Error:` line naming it, no traceback")
def test_bench_subprocess_on_a_quirky_file_and_a_bomb(tmp_path, chaos_detail):
    import json

    files = bench_files(tmp_path)
    out = tmp_path / "results"
    ran = tradecast("bench", "--csv", str(files["quirks.csv"][0]), "--out", str(out), *BENCH_ARGS, timeout=580)
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr[-2000:]
    [data] = json.loads((out / "quirks-h2.json").read_text())["datasets"]
    [nhits] = [m for m in data["models"] if m["model"] == "nhits"]
    assert math.isfinite(nhits["mase"]) and nhits["steps_done"] == 2
    assert (data["n_series"], data["freq"], data["train_rows"]) == (2, "h", 84)  # 60 distinct hours: 42 + 42 to train
    problems = one_line_error(tradecast("bench", "--csv", str(files["wide_bomb.csv.gz"][0]), "--out", str(out),
                                        *BENCH_ARGS), "wide_bomb.csv.gz", "a compression bomb?")
    assert not problems, "\n".join(problems)
    chaos_detail(f"quirky file: 60 hours x 2 series read, NHITS MASE {nhits['mase']:.3f} over {nhits['n_windows']} "
                 "windows; bomb refused in one line")

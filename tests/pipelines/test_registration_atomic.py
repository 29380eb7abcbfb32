"""Registration is crash-safe: a copy that fails half-way registers nothing, a changed copy is refused, and
concurrent registrations keep every catalog entry (real processes, a real file-size limit)."""

import multiprocessing
import os
import resource
import signal

import pytest
import yaml

BARS = "ts,symbol,open,high,low,close,volume\n" + "".join(
    f"2024-01-{1 + i // 24:02d}T{i % 24:02d}:00:00Z,AAA,10,11,9,10.5,{i}\n" for i in range(24 * 20))


def _catalog(home):
    path = home / "sources" / "sources.yaml"
    return yaml.safe_load(path.read_text())["sources"] if path.exists() else []


def _register_under_fsize_limit(path, limit, queue):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit then fail with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from ingest.readers import SourceFileError
    from pipelines.registration import register_file

    try:
        register_file(str(path), asset_class="crypto", name="big")
        queue.put("registered")
    except SourceFileError as exc:
        queue.put(str(exc))


@pytest.mark.fault('`ulimit -f` cuts the copy of a registered file',
                   '"File too large" named, nothing registered, no partial file')
def test_a_copy_cut_short_by_a_file_size_limit_registers_nothing(home, tmp_path):
    path = tmp_path / "big.csv"
    path.write_text(BARS * 3)
    (home / "sources").mkdir(parents=True)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_register_under_fsize_limit, args=(path, os.path.getsize(path) // 3, queue))
    proc.start()
    proc.join(60)
    said = queue.get(timeout=5)
    assert "File too large" in said and "nothing was registered" in said, said
    assert _catalog(home) == []
    assert list((home / "sources" / "files").iterdir()) == []  # neither the copy nor its temporary file


@pytest.mark.fault('a registered copy truncated afterwards',
                   'ingest refuses it: SHA-256 differs from the registration')
def test_a_registered_copy_that_changed_is_refused(home, tmp_path):
    from ingest.load import load_sources
    from ingest.readers import SourceFileError
    from pipelines.registration import register_file

    path = tmp_path / "mine.csv"
    path.write_text(BARS)
    spec = register_file(str(path), asset_class="crypto")
    assert spec.sha256 and len(load_sources([spec], "bars").split.accepted) == BARS.count("\n") - 1
    with open(spec.path, "r+b") as fh:  # a copy truncated mid-line, as a full disk leaves it
        fh.truncate(os.path.getsize(spec.path) // 2)
    with pytest.raises(SourceFileError, match="changed since it was registered"):
        load_sources([spec], "bars")


def _register_at_once(path, name, barrier, queue):
    from pipelines.registration import register_file

    barrier.wait(30)
    register_file(str(path), asset_class="crypto", name=name)
    queue.put(name)


@pytest.mark.fault('12 registrations at once (6 processes per wave)',
                   'every catalog entry kept (lock + atomic write)')
def test_concurrent_registrations_keep_every_entry(home, tmp_path):
    (home / "sources").mkdir(parents=True)
    ctx = multiprocessing.get_context("fork")
    names = [f"user_{i}" for i in range(12)]
    for i, name in enumerate(names):
        (tmp_path / f"{name}.csv").write_text(BARS.replace("AAA", f"S{i}"))
    queue = ctx.Queue()
    for batch in (names[:6], names[6:]):
        barrier = ctx.Barrier(len(batch))
        procs = [ctx.Process(target=_register_at_once, args=(tmp_path / f"{n}.csv", n, barrier, queue))
                 for n in batch]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    assert sorted(queue.get(timeout=5) for _ in names) == sorted(names)
    assert sorted(e["name"] for e in _catalog(home)) == sorted(names)  # before the lock: entries were lost

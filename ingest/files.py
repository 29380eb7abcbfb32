"""Crash-safe file writes: a copy or a text file appears whole under its name or not at all.

Every write goes to a temporary name in the target's folder, is flushed and fsynced, checked, and renamed into
place (``os.replace`` is atomic on one file system); a failure half-way (disk full, a file-size limit, a kill)
leaves the old file, or none, and removes the temporary one. ``locked`` serializes read-modify-write cycles of
one file across processes (``fcntl.flock`` on a lock file beside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target``, renamed onto it when the block ends without error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_copy(src: str | os.PathLike[str], target: str | os.PathLike[str]) -> tuple[int, str]:
    """Copy ``src`` to ``target`` (size and SHA-256 checked before the rename); returns ``(size, sha256)``.

    Raises ``OSError`` (with the real cause: "File too large", "No space left on device") when the copy fails,
    and ``OSError`` too when the copy does not match the source byte for byte."""
    src, target = Path(src), Path(target)
    with _staged(target) as tmp:
        digest, size = hashlib.sha256(), 0
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for block in iter(lambda: fin.read(_CHUNK), b""):
                fout.write(block)
                digest.update(block)
                size += len(block)
            fout.flush()
            os.fsync(fout.fileno())
        expected = os.stat(src).st_size
        copied = sha256_of(tmp)
        if size != expected or tmp.stat().st_size != expected or copied != digest.hexdigest():
            raise OSError(f"copy of {src} to {target} is incomplete: {tmp.stat().st_size} of {expected} bytes")
    return size, digest.hexdigest()


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``target`` whole (fsynced, renamed into place)."""
    target = Path(target)
    data = text.encode("utf-8")
    with _staged(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if tmp.stat().st_size != len(data):
            raise OSError(f"{target}: wrote {tmp.stat().st_size} of {len(data)} bytes")


@contextlib.contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """An exclusive lock for read-modify-write of ``path`` across processes (lock file ``.<name>.lock``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def read_yaml_mapping(path: str | os.PathLike[str], *, label: str, shape: str, error: type[Exception] = ValueError,
                      hint: str = "") -> dict:
    """The YAML mapping in ``path`` (an empty file is ``{}``): a file that is not YAML text is ``error`` naming
    ``label`` and the parser's first line, YAML that is not a mapping is ``error`` saying ``shape``; ``hint``
    ends both messages. A missing file raises FileNotFoundError (the caller knows whether that is fine)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # a binary or damaged file: say which
        raise error(f"{label}: not valid YAML text ({str(exc).splitlines()[0]}){hint}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise error(f"{label}: expected {shape}{hint}")
    return doc

"""A source name or a file dropped into incoming/ never makes tradecast write outside $TRADECAST_HOME/sources/
(issue 13.1): names are safe slugs, checked before anything touches the disk; symbolic links are not followed."""

import os

import pytest

from ingest.catalog import CatalogError, spec_from_dict
from tests.pipelines.test_cli import MY_CSV, tradecast

BARS = "ts,symbol,open,high,low,close,volume\n2024-01-01,EURUSD,1,1.2,0.9,1.1,5\n2024-01-02,EURUSD,1.1,1.2,1,1.1,5\n"


def _tree(root):
    """Every path under `root` (links listed, not followed), relative to it."""
    out = set()
    for folder, dirs, names in os.walk(root):
        out |= {os.path.relpath(os.path.join(folder, n), root) for n in dirs + names}
    return out


def _incoming(home):
    from pipelines.incoming import incoming_dir

    return incoming_dir(home)


def _process(home):
    from pipelines.incoming import process
    from resources import Settings

    return process(_incoming(home), {}, set(), settings=Settings())


@pytest.mark.parametrize("name", ["../../../evil", "ABS"])
def test_ingest_refuses_a_name_that_is_a_path_and_writes_nothing(home, tmp_path, name):
    name = str(tmp_path / "abs_evil") if name == "ABS" else name
    path = tmp_path / "my.csv"
    path.write_text(MY_CSV)
    before = _tree(tmp_path.parent)
    out = tradecast("ingest", str(path), "--asset-class", "crypto", "--name", name, check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    assert f"source name {name!r} is not allowed" in out.stderr and "Traceback" not in out.stderr
    new = _tree(tmp_path.parent) - before
    assert not [p for p in new if "evil" in p or "sources" in p], new  # no copy anywhere, no catalog entry
    assert not (tmp_path / "abs_evil.csv").exists() and not (tmp_path.parent / "evil.csv").exists()


@pytest.mark.parametrize("name", ["../x", "/etc/x", "a/b", "Upper", ".hidden", "x" * 65, "a b"])
def test_catalog_entries_refuse_unsafe_names(tmp_path, name):
    with pytest.raises(CatalogError, match="not allowed|field 'name' is required"):
        spec_from_dict({"name": name, "path": "f.csv", "table": "bars", "asset_class": "fx", "freq": "1d"}, tmp_path)


def test_hand_edited_user_catalog_with_a_path_as_name_is_refused(home):
    from assets.common import catalog_specs
    from resources import Settings
    from tests.conftest import write_catalog

    (home / "sources").mkdir(parents=True)
    write_catalog(home / "sources" / "sources.yaml", [
        {"name": "../../elsewhere", "path": "files/x.csv", "table": "bars", "asset_class": "fx", "freq": "1d"}])
    with pytest.raises(CatalogError, match=r"sources.yaml: source name '../../elsewhere' is not allowed"):
        catalog_specs(Settings())


def test_sidecar_name_that_is_a_path_rejects_the_file_and_writes_nothing_else(home, tmp_path):
    root = _incoming(home)
    (root / "fx").mkdir()
    (root / "fx" / "pair.csv").write_text(BARS)
    (root / "fx" / "pair.csv.yaml").write_text("asset_class: fx\nname: ../../evil\n")
    before = _tree(tmp_path)
    [outcome] = _process(home)
    assert "pair.csv.yaml: name: source name '../../evil' is not allowed" in outcome.rejected
    assert (root / "rejected" / "pair.csv").exists() and (root / "rejected" / "pair.csv.yaml").exists()
    assert "not allowed" in (root / "rejected" / "pair.csv.reason.txt").read_text()
    new = _tree(tmp_path) - before
    assert all(p.startswith("home/incoming/rejected/") for p in new), new
    assert not (home / "sources").exists() and not list(tmp_path.rglob("evil*"))


def test_a_symlink_in_incoming_is_moved_as_a_link_and_its_target_is_never_read(home, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text(BARS)
    (outside / "folder").mkdir()
    (outside / "folder" / "more.csv").write_text(BARS)
    root = _incoming(home)
    (root / "fx").mkdir()
    (root / "fx" / "link.csv").symlink_to(outside / "secret.csv")
    (root / "crypto").symlink_to(outside / "folder", target_is_directory=True)  # a linked class folder
    (root / "fx" / "plain.csv").write_text(BARS)
    (root / "fx" / "plain.csv.yaml").symlink_to(outside / "secret.csv")  # a linked sidecar
    outside_before = {p: (outside / p).read_bytes() for p in ("secret.csv", "folder/more.csv")}
    outcomes = {o.file: o for o in _process(home)}
    assert set(outcomes) == {"crypto", "fx/link.csv", "fx/plain.csv"}
    assert all(o.rejected for o in outcomes.values()), outcomes
    rejected = root / "rejected"
    for name in ("crypto", "link.csv"):
        assert (rejected / name).is_symlink(), name  # the link itself moved, not a copy of its target
        assert "is a symbolic link" in (rejected / f"{name}.reason.txt").read_text()
    assert "the sidecar is a symbolic link" in (rejected / "plain.csv.reason.txt").read_text()
    assert (rejected / "plain.csv.yaml").is_symlink()
    assert {p: (outside / p).read_bytes() for p in outside_before} == outside_before
    assert _tree(outside) == {"secret.csv", "folder", "folder/more.csv"}
    assert not (home / "sources").exists()  # nothing registered


def test_register_refuses_a_stored_copy_that_resolves_outside_sources(home, tmp_path):
    from pipelines.registration import register_file

    victim = tmp_path / "victim.csv"
    victim.write_text("keep me\n")
    files = home / "sources" / "files"
    files.mkdir(parents=True)
    (files / "user_my.csv").symlink_to(victim)  # a planted link where the copy would go
    path = tmp_path / "my.csv"
    path.write_text(MY_CSV)
    with pytest.raises(CatalogError, match="outside .*sources/files: refusing to write there"):
        register_file(str(path), asset_class="crypto")
    assert victim.read_text() == "keep me\n" and not (home / "sources" / "sources.yaml").exists()

"""DFC directory semantics on Rucio (KM3DIRAC/core/catalog_directories.py): a directory holds files and
sub-directories at once, through DIRAC's FileCatalog, DataManager and dirac-dms-* commands, on the real Rucio server.

Each test failed on the code before the companion collections: "cannot be added to a dataset", or a directory that
held files refusing sub-directories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.rucio

LAUNCHER = Path(__file__).with_name("run_dirac_command.py")
SES = "KM3-DISK-1,KM3-DISK-2"


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def _entry(size=10):
    return {"PFN": "", "Size": size, "SE": "KM3-DISK-1", "GUID": "", "Checksum": "0000abcd"}


def _register(fc, lfns, size=10):
    value = _ok(fc.addFile({lfn: _entry(size) for lfn in lfns}))
    assert not value["Failed"], value["Failed"]


def _listing(fc, path):
    value = _ok(fc.listDirectory(path))
    assert path in value["Successful"], value
    entry = value["Successful"][path]
    return sorted(entry["Files"]), sorted(entry["SubDirs"])


def _dirac_command(cfg_text: str, tmp_path: Path, command: str, *arguments: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(cfg_text)
    env = {key: value for key, value in os.environ.items() if key not in ("RUCIO_CONFIG", "RUCIO_HOME")}
    return subprocess.run([sys.executable, str(LAUNCHER), SES, command, "--cfg", str(cfg), *arguments],
                          capture_output=True, text=True, timeout=180, check=False, env=env, cwd=tmp_path)


def test_a_directory_holding_files_gets_subdirectories(fc, rucio_client, scope_factory):
    """Files first, then a sub-directory (a DFC home directory): the directory's DATASET stays, its companion
    CONTAINER ``D/`` holds the sub-directories, beside it in the parent."""
    scope = scope_factory()
    home = f"/km3net/{scope}/user/jdoe"
    _register(fc, [f"{home}/notes.txt"])
    _register(fc, [f"{home}/analysis/out.root", f"{home}/analysis/deep/x.root"], size=5)
    assert _listing(fc, home) == ([f"{home}/notes.txt"], [f"{home}/analysis"])
    assert _listing(fc, f"{home}/analysis") == ([f"{home}/analysis/out.root"], [f"{home}/analysis/deep"])
    assert _listing(fc, f"/km3net/{scope}/user") == ([], [home])
    assert _ok(fc.isDirectory([home, f"{home}/analysis"]))["Successful"] == {home: True, f"{home}/analysis": True}
    assert _ok(fc.isFile(home))["Successful"][home] is False
    size = _ok(fc.getDirectorySize(home))["Successful"][home]
    assert (size["LogicalFiles"], size["LogicalSize"], size["LogicalDirectories"]) == (3, 20, 1)
    assert size["PhysicalSize"]["KM3-DISK-1"] == {"Files": 3, "Size": 20}
    # what a plain rucio user sees: the dataset home, its companion container home/ in the parent container
    assert rucio_client.get_did(scope, home)["type"] == "DATASET"
    assert rucio_client.get_did(scope, f"{home}/")["type"] == "CONTAINER"
    parent_content = {c["name"]: c["type"] for c in rucio_client.list_content(scope, f"/km3net/{scope}/user")}
    assert parent_content == {home: "DATASET", f"{home}/": "CONTAINER"}
    everything = {f["name"] for f in rucio_client.list_files(scope, f"/km3net/{scope}/user")}
    assert everything == {f"{home}/notes.txt", f"{home}/analysis/out.root", f"{home}/analysis/deep/x.root"}
    # the new sub-directory's files are pinned by their own dataset's rule
    rules = list(rucio_client.list_did_rules(scope, f"{home}/analysis"))
    assert [r["rse_expression"] for r in rules] == ["KM3-DISK-1"]


def test_a_directory_holding_subdirectories_gets_files(fc, rucio_client, scope_factory):
    """Sub-directories first, then a file: the directory's CONTAINER holds a companion DATASET ``D/``."""
    scope = scope_factory()
    top = f"/km3net/{scope}/prod"
    _register(fc, [f"{top}/run1/a.root", f"{top}/run2/b.root"])
    _register(fc, [f"{top}/README.txt"])
    assert _listing(fc, top) == ([f"{top}/README.txt"], [f"{top}/run1", f"{top}/run2"])
    assert rucio_client.get_did(scope, top)["type"] == "CONTAINER"
    content = {c["name"]: c["type"] for c in rucio_client.list_content(scope, top)}
    assert content == {f"{top}/": "DATASET", f"{top}/run1": "DATASET", f"{top}/run2": "DATASET"}
    replicas = _ok(fc.getDirectoryReplicas(top))["Successful"][top]
    assert list(replicas) == [f"{top}/README.txt"] and list(replicas[f"{top}/README.txt"]) == ["KM3-DISK-1"]
    dump = _ok(fc.getDirectoryDump(top))["Successful"][top]
    assert sorted(dump["Files"]) == [f"{top}/README.txt", f"{top}/run1/a.root", f"{top}/run2/b.root"]
    assert dump["Files"][f"{top}/README.txt"]["Size"] == 10
    assert dump["SubDirs"] == [f"{top}/run1", f"{top}/run2"]
    assert _ok(fc.resolveDataset(top))["Successful"][top] == sorted(dump["Files"])
    # closing the directory closes the dataset holding its files (the run-complete signal)
    assert top in _ok(fc.freezeDataset(top))["Successful"]
    assert rucio_client.get_did(scope, f"{top}/")["open"] is False
    late = _ok(fc.addFile({f"{top}/late.txt": _entry()}))["Failed"]
    assert "closed" in str(late[f"{top}/late.txt"])
    # ...while its sub-directories still take files and new sub-directories
    _register(fc, [f"{top}/run3/c.root"])
    assert f"{top}/run3" in _listing(fc, top)[1]


def test_data_registered_by_the_earlier_layout_stays_readable_and_grows(fc, rucio_client, scope_factory):
    """A tree as the earlier KM3DIRAC code and Rucio's DIRAC endpoint left it (file parents DATASETs, ancestors
    CONTAINERs, attached), made here with plain rucio-clients, is listed as it is and takes new content."""
    scope = scope_factory()
    base = f"/km3net/{scope}/legacy"
    rucio_client.add_container(scope, base)
    rucio_client.add_dataset(scope, f"{base}/run7")
    rucio_client.attach_dids(scope, base, [{"scope": scope, "name": f"{base}/run7"}])
    rucio_client.add_replicas("KM3-DISK-1", [{"scope": scope, "name": f"{base}/run7/f.root", "bytes": 3,
                                              "adler32": "0000abcd"}])
    rucio_client.attach_dids(scope, f"{base}/run7", [{"scope": scope, "name": f"{base}/run7/f.root"}])
    assert _listing(fc, base) == ([], [f"{base}/run7"])
    assert _listing(fc, f"{base}/run7") == ([f"{base}/run7/f.root"], [])
    _register(fc, [f"{base}/run7/calib/c.root", f"{base}/summary.txt"])
    assert _listing(fc, f"{base}/run7") == ([f"{base}/run7/f.root"], [f"{base}/run7/calib"])
    assert _listing(fc, base) == ([f"{base}/summary.txt"], [f"{base}/run7"])


def test_create_and_remove_directories_like_the_dfc(fc, rucio_client, scope_factory):
    scope = scope_factory()
    top = f"/km3net/{scope}/mk"
    assert not _ok(fc.createDirectory([top, f"{top}/a", f"{top}/a/b"]))["Failed"]
    _register(fc, [f"{top}/a/file.txt"])
    assert _listing(fc, f"{top}/a") == ([f"{top}/a/file.txt"], [f"{top}/a/b"])
    assert not _ok(fc.createDirectory(f"{top}/a"))["Failed"]  # existing: a success
    refused = _ok(fc.removeDirectory(f"{top}/a"))["Failed"]
    assert "not empty" in str(refused[f"{top}/a"])
    assert not _ok(fc.removeFile(f"{top}/a/file.txt"))["Failed"]
    assert not _ok(fc.removeDirectory(f"{top}/a/b"))["Failed"]
    assert not _ok(fc.removeDirectory(f"{top}/a"))["Failed"]
    assert _ok(fc.isDirectory(f"{top}/a"))["Successful"][f"{top}/a"] is False
    assert _listing(fc, top) == ([], [])
    assert not _ok(fc.removeDirectory(f"{top}/never"))["Failed"]  # absent: a success (DFC)
    # the same directory can be made again, and holds files again
    _register(fc, [f"{top}/a/again.txt"])
    assert _listing(fc, f"{top}/a") == ([f"{top}/a/again.txt"], [])


def test_directory_metadata_in_the_dfc_shape(fc, scope_factory):
    from DIRAC.Interfaces.API.Dirac import Dirac

    scope = scope_factory()
    lfn = f"/km3net/{scope}/md/run1/f.root"
    _register(fc, [lfn])
    directory = f"/km3net/{scope}/md/run1"
    meta = _ok(fc.getDirectoryMetadata(directory))["Successful"][directory]
    assert {"Mode", "Owner", "OwnerGroup", "CreationDate", "ModificationDate", "Type"} <= set(meta)
    assert meta["Type"] == "Directory" and meta["Open"] is True
    assert _ok(fc.getDirectoryMetadata(lfn))["Failed"][lfn]
    # DIRAC's own API (dirac-dms-lfn-metadata) asks getDirectoryMetadata for what is not a file
    both = _ok(Dirac().getLfnMetadata([lfn, directory]))
    assert set(both["Successful"]) == {lfn, directory}, both


def test_concurrent_registrations_into_a_directory_and_below_it(dirac_cs, scope_factory):
    """Jobs register at once into a new directory and into new sub-directories of it: whichever creates the
    directory first decides its type, the others use it (and its companion)."""
    from DIRAC.Resources.Catalog.FileCatalogFactory import FileCatalogFactory

    scope = scope_factory()
    top = f"/km3net/{scope}/race2/run1"

    def register(index: int):
        catalog = FileCatalogFactory().createCatalog("RucioFileCatalog")["Value"]
        where = top if index % 2 else f"{top}/part{index}"
        return _ok(catalog.addFile({f"{where}/job{index}-{part}.root": _entry() for part in range(2)}))

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(register, range(6)))
    assert all(not r["Failed"] and len(r["Successful"]) == 2 for r in results), results
    catalog = FileCatalogFactory().createCatalog("RucioFileCatalog")["Value"]
    files, subdirs = _listing(catalog, top)
    assert len(files) == 6 and subdirs == [f"{top}/part{i}" for i in (0, 2, 4)]


def test_run_metadata_reads_the_files_dataset_of_a_mixed_directory(fc, dirac_cs, scope_factory):
    """The run-aware plugins' 'run complete' signal (is_open of the files' directory) for a directory that also
    holds sub-directories: its files' dataset is the companion D/."""
    from KM3DIRAC.core.run_metadata import fetch_run_metadata

    scope = scope_factory()
    run = f"/km3net/{scope}/raw/run5"
    files = [f"{run}/KM3NeT_00000133_00000005.{i}.root" for i in range(2)]
    _register(fc, [f"{run}/calib/c.root"])
    _register(fc, files)
    catalog = fc.getReadCatalogs()[0][1].catalog if hasattr(fc, "getReadCatalogs") else fc.readCatalogs[0][1].catalog
    assert fetch_run_metadata(catalog, files).closed_datasets == set()
    assert run in _ok(fc.freezeDataset(run))["Successful"]
    assert fetch_run_metadata(catalog, files).closed_datasets == {run}


def test_dirac_dms_add_file_into_a_subdirectory_of_a_directory_with_files(fc, dirac_cs, scope_factory, tmp_path):
    """Gap: the command printed 'Successfully uploaded' while the file was not registered."""
    scope = scope_factory()
    home = f"/km3net/{scope}/home"
    _register(fc, [f"{home}/first.txt"])
    local = tmp_path / "data.txt"
    local.write_bytes(os.urandom(2048))
    lfn = f"{home}/sub/data.txt"
    added = _dirac_command(dirac_cs, tmp_path, "dirac-dms-add-file", lfn, str(local), "KM3-DISK-1")
    assert added.returncode == 0, added.stdout + added.stderr
    assert _ok(fc.exists(lfn))["Successful"][lfn] == lfn, added.stdout + added.stderr
    assert _ok(fc.getFileSize(lfn))["Successful"][lfn] == 2048
    assert _listing(fc, home) == ([f"{home}/first.txt"], [f"{home}/sub"])


def test_dirac_dms_directory_sync_of_a_tree(fc, dirac_cs, scope_factory, tmp_path):
    """Gap: dirac-dms-directory-sync of a tree with sub-directories failed (createDirectory of a sub-directory of
    a directory that is a DATASET)."""
    scope = scope_factory()
    tree = tmp_path / "tree"
    for relative in ("top.txt", "a/one.txt", "a/b/two.txt", "c/three.txt"):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text(relative)
    target = f"/km3net/{scope}/synced"
    assert not _ok(fc.createDirectory(target))["Failed"]  # the destination must exist, as with DIRAC's own DFC
    synced = _dirac_command(dirac_cs, tmp_path, "dirac-dms-directory-sync", str(tree), target, "KM3-DISK-1")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    root = target
    dump = _ok(fc.getDirectoryDump(root))["Successful"][root]
    assert sorted(dump["Files"]) == [f"{root}/a/b/two.txt", f"{root}/a/one.txt", f"{root}/c/three.txt",
                                     f"{root}/top.txt"], synced.stdout + synced.stderr
    assert _listing(fc, root) == ([f"{root}/top.txt"], [f"{root}/a", f"{root}/c"])

"""Metadata like the DFC on Rucio (KM3DIRAC/core/catalog.py, metadata_query.py, metadata_search.py): searches return
files only, directory metadata is inherited by the files below, queries of any size, getCompatibleMetadata for
every key, declared free keys searchable from DIRAC's own tools. Through DIRAC's FileCatalog, dirac-dms-find-lfns
and dirac-dms-filecatalog-cli on its standard input, on the real Rucio server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rucio

LAUNCHER = Path(__file__).with_name("run_dirac_command.py")


@pytest.fixture
def catalog(fc):
    """KM3DIRAC's RucioCatalog behind DIRAC's FileCatalog (to count its requests to Rucio)."""
    return fc.getReadCatalogs()[0][1].catalog


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def _register(fc, lfns, size=10):
    value = _ok(fc.addFile({lfn: {"PFN": "", "Size": size, "SE": "KM3-DISK-1", "GUID": "", "Checksum": "0000abcd"}
                            for lfn in lfns}))
    assert not value["Failed"], value["Failed"]


def _command(cfg_text: str, tmp_path: Path, command: str, *arguments: str, stdin: str | None = None):
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(cfg_text)
    env = {key: value for key, value in os.environ.items() if key not in ("RUCIO_CONFIG", "RUCIO_HOME")}
    return subprocess.run([sys.executable, str(LAUNCHER), "KM3-DISK-1", command, "--cfg", str(cfg), *arguments],
                          input=stdin, capture_output=True, text=True, timeout=180, check=False, env=env,
                          cwd=tmp_path)


def test_searches_return_files_not_datasets_with_the_same_key(fc, rucio_client, scope_factory):
    """Gap: Rucio's JSON plugin ignores did_type, so a dataset carrying the key came back as a file."""
    scope = scope_factory()
    lfn = f"/km3net/{scope}/q/run1/f.root"
    _register(fc, [lfn])
    _ok(fc.setMetadata(lfn, {"quality": "good"}))
    rucio_client.add_dataset(scope, f"/km3net/{scope}/q/userset", meta={"quality": "good"})  # a plain Rucio user
    assert _ok(fc.findFilesByMetadata({"quality": "good"}, f"/km3net/{scope}")) == [lfn]
    assert list(_ok(fc.findFilesByMetadataDetailed({"quality": "good"}, f"/km3net/{scope}"))) == [lfn]
    replicas = _ok(fc.getReplicasByMetadata({"quality": "good"}, f"/km3net/{scope}"))
    assert list(replicas["Successful"]) == [lfn] and list(replicas["Successful"][lfn]) == ["KM3-DISK-1"]


def test_directory_metadata_is_inherited_by_the_files_below(fc, scope_factory):
    """Gap: directory fields (the portal filters on them) matched no file."""
    scope = scope_factory()
    top = f"/km3net/{scope}/camp"
    a, b, c = f"{top}/run1/a.root", f"{top}/run1/sub/b.root", f"{top}/run2/c.root"
    own = f"{top}/run1/own.root"
    _register(fc, [a, b, c, own])
    for lfn, run in ((a, 1), (b, 1), (c, 2), (own, 1)):
        _ok(fc.setMetadata(lfn, {"run_number": run}))
    _ok(fc.setMetadata(f"{top}/run1", {"Campaign": "2026a", "datatype": "reco"}))  # JSON key and DID column key
    _ok(fc.setMetadata(f"{top}/run2", {"Campaign": "2025b"}))
    _ok(fc.setMetadata(own, {"Campaign": "2025b"}))  # a file's own value wins over its directory's

    def find(query, path=f"/km3net/{scope}"):
        return _ok(fc.findFilesByMetadata(query, path))

    assert find({"Campaign": "2026a"}) == sorted([a, b])
    assert find({"Campaign": "2025b"}) == sorted([c, own])
    assert find({"datatype": "reco"}) == sorted([a, b, own])
    assert find({"Campaign": "2026a", "run_number": 1}) == sorted([a, b])
    assert find({"Campaign": {"in": ["2026a", "2025b"]}, "run_number": {">": 1}}) == [c]
    assert find({"Campaign": "2026a"}, path=f"{top}/run1/sub") == [b]
    assert find({"datatype": "reco"}, path=f"{top}/run1/sub") == [b]  # a DID-column key set above the searched path
    assert find({"Campaign": {"!=": "2026a"}}) == sorted([c, own])
    # DFC: a directory's user metadata includes what it inherits
    assert _ok(fc.getDirectoryUserMetadata(f"{top}/run1/sub")) == {"Campaign": "2026a", "datatype": "reco"}
    directories = _ok(fc.findDirectoriesByMetadata({"Campaign": "2026a"}, f"/km3net/{scope}"))
    assert sorted(directories.values()) == [f"{top}/run1", f"{top}/run1/sub"]


def test_queries_of_any_size_fit_requests_and_do_not_cost_one_per_value(fc, catalog, scope_factory, monkeypatch):
    """Gap: an 'in' over a few hundred run numbers (a production's run list) failed with HTTP 414."""
    scope = scope_factory()
    runs = list(range(1000, 3000, 2))  # 1000 runs, none adjacent: no range shortcut
    lfns = {run: f"/km3net/{scope}/big/run{run}/f.root" for run in runs[:: 100]}
    _register(fc, list(lfns.values()))
    _ok(fc.setMetadataBulk({lfn: {"run_number": run, "Stream": f"s{run}"} for run, lfn in lfns.items()}))
    calls = []
    real = catalog.client.list_dids
    monkeypatch.setattr(catalog.client, "list_dids", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = f"/km3net/{scope}"
    assert _ok(fc.findFilesByMetadata({"run_number": {"in": runs}}, path)) == sorted(lfns.values())
    assert 1 < len(calls) < 100, len(calls)  # packed: tens of values per request
    calls.clear()
    streams = [f"s{run}" for run in runs]
    assert _ok(fc.findFilesByMetadata({"Stream": {"in": streams}}, path)) == sorted(lfns.values())
    assert len(calls) < 100, len(calls)
    kept = runs[100]
    assert _ok(fc.findFilesByMetadata({"run_number": {"nin": [r for r in runs if r != kept]}}, path)) == [lfns[kept]]
    assert _ok(fc.findFilesByMetadata({"Stream": {"nin": [s for s in streams if s != f"s{kept}"]}}, path)) == [
        lfns[kept]]
    assert _ok(fc.findFilesByMetadata({"run_number": {"in": runs}, "Stream": {"in": streams[:150]}}, path)) == [
        lfns[run] for run in runs[:150:100]]


def test_compatible_metadata_is_right_for_every_key(fc, scope_factory):
    """Gap: for the keys of the query, and for directory fields, no values were offered."""
    scope = scope_factory()
    files = {(det, run): f"/km3net/{scope}/cm/d{det}/run{run}/f.root" for det, run in
             ((133, 1), (133, 2), (49, 3))}
    _register(fc, list(files.values()))
    for (det, run), lfn in files.items():
        _ok(fc.setMetadata(lfn, {"DetectorID": det, "run_number": run}))
    _ok(fc.setMetadata(f"/km3net/{scope}/cm/d133", {"Campaign": "c133"}))
    _ok(fc.setMetadata(f"/km3net/{scope}/cm/d49", {"Campaign": "c49"}))
    compatible = _ok(fc.getCompatibleMetadata({"DetectorID": 133}, f"/km3net/{scope}"))
    assert compatible["run_number"] == [1, 2]
    assert compatible["DetectorID"] == [49, 133]  # the query's own key: what else could be chosen
    assert compatible["Campaign"] == ["c133"]  # a directory field, inherited by the files
    both = _ok(fc.getCompatibleMetadata({"DetectorID": 133, "run_number": 2}, f"/km3net/{scope}"))
    assert both["DetectorID"] == [133] and both["run_number"] == [1, 2]


def test_free_keys_are_declared_and_searched_with_diracs_tools(fc, dirac_cs, rucio_client, scope_factory, tmp_path):
    """Gap: 'Metadata field quality not defined' (dirac-dms-find-lfns, the FC CLI's find) and 'meta index' asking a
    DataManagement/RucioFileCatalog service that does not exist."""
    from KM3DIRAC.sandbox.rucio_setup import ensure_scope

    ensure_scope(rucio_client, "km3net")  # the default fields DID lives in the scope named like the VO
    scope = scope_factory()
    good, bad = f"/km3net/{scope}/fk/good.root", f"/km3net/{scope}/fk/bad.root"
    _register(fc, [good, bad])
    _ok(fc.setMetadata(good, {"quality": "good"}))
    _ok(fc.setMetadata(bad, {"quality": "bad"}))
    cli = _command(dirac_cs, tmp_path, "dirac-dms-filecatalog-cli",
                   stdin=f"meta index -f quality string\nmeta show\nfind /km3net/{scope} quality=good\nexit\n")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Added metadata field quality" in cli.stdout, cli.stdout + cli.stderr
    assert good in cli.stdout and bad not in cli.stdout, cli.stdout + cli.stderr
    fresh = fc.getReadCatalogs()[0][1].catalog
    fresh._declared = None
    assert _ok(fc.getMetadataFields())["FileMetaFields"]["quality"] == "VARCHAR(128)"
    found = _command(dirac_cs, tmp_path, "dirac-dms-find-lfns", f"Path=/km3net/{scope}", "quality=good")
    assert found.returncode == 0, found.stdout + found.stderr
    assert [line.strip() for line in found.stdout.splitlines() if line.strip().startswith("/km3net/")] == [good]
    # a declared field keeps its type; it is deleted like in the DFC (the values stay on the DIDs)
    clash = fc.addMetadataField("quality", "INT", "-f")
    assert not clash["OK"] and "type VARCHAR(128)" in clash["Message"]
    _ok(fc.deleteMetadataField("quality"))
    fresh._declared = None
    assert "quality" not in _ok(fc.getMetadataFields())["FileMetaFields"]
    assert _ok(fc.getFileUserMetadata(good))["quality"] == "good"
    refused = fc.deleteMetadataField("run_number")
    assert not refused["OK"] and "FileMetaFields" in refused["Message"]


RUN_AND_TRAIN = {"run_number": "INT", "TrainName": "VARCHAR(128)", "TrainStep": "VARCHAR(128)"}


def test_run_and_train_are_directory_fields_found_as_before_at_no_extra_rucio_request(fc, catalog, scope_factory,
                                                                                       monkeypatch):
    """Gap: WebAppDIRAC's File Catalog searches by directory fields only, and run and train were none (the page
    offered run_number and dropped it from the query: every file came back). As directory fields, their values on
    files (where trains and jobs write them) are found as before, a run directory's are inherited, a file's own
    value wins, and getCompatibleMetadata makes no more Rucio requests than without them."""
    fields = _ok(fc.getMetadataFields())
    assert {key: fields["DirectoryMetaFields"].get(key) for key in RUN_AND_TRAIN} == RUN_AND_TRAIN
    assert fields["FileMetaFields"]["run_number"] == "INT"  # still typed as a file field by DIRAC's tools
    scope = scope_factory()
    top = f"/km3net/{scope}/train"
    processed = {run: f"{top}/process/run{run}/p{run}.json" for run in (1, 2)}
    merged = {run: f"{top}/merged/run{run}.merged.json" for run in (1, 2)}
    raw, stray = f"{top}/raw/run2/r.root", f"{top}/raw/run2/stray.root"
    _register(fc, [*processed.values(), *merged.values(), raw, stray])
    _ok(fc.setMetadataBulk({
        **{lfn: {"run_number": run, "TrainName": "t1", "TrainStep": "process"} for run, lfn in processed.items()},
        **{lfn: {"run_number": run, "TrainName": "t1", "TrainStep": "merge"} for run, lfn in merged.items()},
        stray: {"run_number": 3}}))
    _ok(fc.setMetadata(f"{top}/raw/run2", {"run_number": 2}))  # the run dataset's: raw inherits it

    path = f"/km3net/{scope}"

    def find(query):
        return _ok(fc.findFilesByMetadata(query, path))

    # the portal sends values as strings, in "in" lists for VARCHAR(128) fields
    assert find({"run_number": {"=": "2"}}) == sorted([processed[2], merged[2], raw])
    assert find({"run_number": 3}) == [stray]  # its own value, not its directory's
    assert find({"TrainName": {"in": ["t1"]}, "TrainStep": {"in": ["merge"]}}) == sorted(merged.values())
    compatible = _ok(fc.getCompatibleMetadata({"TrainStep": {"in": ["process"]}}, path))
    assert (compatible["TrainName"], compatible["TrainStep"], compatible["run_number"]) == (
        ["t1"], ["merge", "process"], [1, 2]), compatible

    requests = []
    rucio = catalog.client.wrapped  # the rucio Client behind KM3DIRAC's call policy: every HTTP request
    send = rucio._send_request
    monkeypatch.setattr(rucio, "_send_request", lambda *a, **k: requests.append(a[0]) or send(*a, **k))

    def requests_of_compatible_metadata() -> int:
        requests.clear()
        _ok(fc.getCompatibleMetadata({"run_number": {"=": "2"}}, path))
        return len(requests)

    with_run_and_train = requests_of_compatible_metadata()
    print(f"getCompatibleMetadata with run and train as directory fields: {with_run_and_train} Rucio requests")
    monkeypatch.setattr(catalog.schema, "directory_fields",
                        {k: v for k, v in catalog.schema.directory_fields.items() if k not in RUN_AND_TRAIN})
    assert requests_of_compatible_metadata() == with_run_and_train > 0

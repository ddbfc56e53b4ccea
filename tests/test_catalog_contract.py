"""DIRAC's whole FileCatalog contract on KM3DIRAC's Rucio catalog (issue 10, deliverables 1 and 2): every DFC method
resolves, bad LFNs never fail a bulk call, replica status, provenance, look-ups, and the dirac-dms-* commands that
ended in tracebacks. Through DIRAC's own FileCatalog(), DataManager and commands, against the session's Rucio server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rucio


@pytest.fixture
def run_command(dirac_cs, tmp_path):
    """Run a DIRAC command of this venv with the session's configuration and no rucio.cfg."""
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    env = {key: value for key, value in os.environ.items() if key not in ("RUCIO_CONFIG", "RUCIO_HOME")}

    def run(name: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(Path(sys.executable).parent / name), "--cfg", str(cfg), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False, env=env,
                              cwd=tmp_path)

    return run


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def _entry(size=10, se="KM3-DISK-1", checksum="0000abcd", **extra):
    return {"PFN": "", "Size": size, "SE": se, "GUID": "", "Checksum": checksum, **extra}


def _register(fc, lfns, **kwargs):
    value = _ok(fc.addFile({lfn: _entry(**kwargs) for lfn in lfns}))
    assert not value["Failed"], value["Failed"]


def _failed(value, lfn):
    """FileCatalog wraps write failures per catalog: ``{lfn: {"RucioFileCatalog": reason}}``."""
    reason = value["Failed"][lfn]
    return str(reason.get("RucioFileCatalog", reason) if isinstance(reason, dict) else reason)


# --------------------------------------------------------------------------------------------- the method lists
def _dfc_methods():
    from DIRAC.Resources.Catalog.FileCatalogClient import FileCatalogClient

    return sorted(set(FileCatalogClient.READ_METHODS + FileCatalogClient.WRITE_METHODS
                      + FileCatalogClient.NO_LFN_METHODS + FileCatalogClient.ADMIN_METHODS))


def test_dfc_client_declares_the_74_methods_of_the_issue(dirac_cs):
    assert len(_dfc_methods()) == 74


@pytest.mark.parametrize("name", _dfc_methods())
def test_every_dfc_method_is_implemented_not_an_rpc(dirac_cs, name):
    """A method in the lists but not implemented by the plugin falls through to DIRAC's generated RPC client
    (``createClient``: a call to a DataManagement/FileCatalog service that does not exist)."""
    from DIRAC.Core.Base.Client import partialmethodWithDoc

    from KM3DIRAC.Resources.Catalog.RucioFileCatalogClient import RucioFileCatalogClient

    listed = set(RucioFileCatalogClient.READ_METHODS + RucioFileCatalogClient.WRITE_METHODS
                 + RucioFileCatalogClient.NO_LFN_METHODS + RucioFileCatalogClient.ADMIN_METHODS)
    assert name in listed, f"{name} missing from the plugin's method lists: FileCatalog raises AttributeError"
    owner = next(klass for klass in RucioFileCatalogClient.__mro__ if name in vars(klass))
    assert not isinstance(vars(owner)[name], partialmethodWithDoc), f"{name} would be an RPC ({owner.__name__})"
    assert owner.__module__.startswith("KM3DIRAC") or name in ("hasAccess", "getPathPermissions"), owner


def test_every_listed_method_answers_a_call(dirac_cs):
    """Each method the plugin lists, called with a harmless argument (an absent file, or a name Rucio refuses for
    writing methods, so nothing is written), answers a DIRAC result: never an exception, never an RPC."""
    from DIRAC.Resources.Catalog.FileCatalogFactory import FileCatalogFactory

    catalog = FileCatalogFactory().createCatalog("RucioFileCatalog")["Value"]
    absent, refused = "/km3net/km3test/contract/absent.root", "/km3net/km3test/contract/not allowed.root"
    arguments = {
        "hasAccess": (absent, "addFile"), "getMetadataFields": (), "findFilesByMetadata": ({"run_number": 1},
                                                                                             "/km3net/km3test"),
        "getCompatibleMetadata": ({"run_number": 1}, "/km3net/km3test"),
        "findFilesByMetadataWeb": ({"run_number": 1}, "/km3net/km3test", 0, 10),
        "setMetadata": (refused, {"run_number": 1}), "setMetadataBulk": ({refused: {"run_number": 1}},),
        "removeMetadata": ({refused: ["run_number"]},), "getLFNForGUID": ("8F3C2B1A-0D4E-4F5A-9B6C-7D8E9F0A1B2C",),
        "getSEDump": ("KM3-DISK-1",), "getFileAncestors": (absent, 1), "getFileDescendents": (absent, 1),
        "setReplicaProblematic": ({refused: {"KM3-DISK-1": ""}},), "getUsers": (), "getGroups": (),
        "getCatalogCounters": (), "repairCatalog": (), "rebuildDirectoryUsage": (),
        "addUser": ("u",), "deleteUser": ("u",), "addGroup": ("g",), "deleteGroup": ("g",),
    }
    writes = set(catalog.WRITE_METHODS)
    for name in sorted(set(catalog.READ_METHODS + catalog.WRITE_METHODS + catalog.NO_LFN_METHODS
                           + catalog.ADMIN_METHODS)):
        args = arguments.get(name, (refused,) if name in writes else (absent,))
        result = getattr(catalog, name)(*args)
        assert isinstance(result, dict) and "OK" in result, (name, result)
        if not result["OK"]:
            assert "URL for service" not in result["Message"] and "Traceback" not in result["Message"], (name, result)
            continue
        value = result["Value"]
        if isinstance(value, dict) and "Successful" in value and isinstance(args[0], str) and name != "getLFNForGUID":
            assert args[0] in value["Successful"] or args[0] in value["Failed"], (name, result)


def test_methods_rucio_cannot_carry_answer_a_clear_error(fc):
    from KM3DIRAC.Resources.Catalog.RucioFileCatalogClient import NOT_CARRIED

    lfn = "/km3net/km3test/some/file"
    calls = {"changePathOwner": ({lfn: "km3user"},), "changePathGroup": ({lfn: "km3net_user"},),
             "changePathMode": ({lfn: 0o755},), "createLink": ({lfn: "/km3net/km3test/other"},),
             "removeLink": (lfn,), "addUser": ("someone",), "deleteUser": ("someone",), "addGroup": ("g",),
             "deleteGroup": ("g",), "setReplicaHost": ({lfn: {"SE": "KM3-DISK-1", "NewSE": "KM3-DISK-2"}},),
             "setDirectoryStatus": ({"/km3net/km3test/some": "Frozen"},), "repairCatalog": (),
             "rebuildDirectoryUsage": (), "addDataset": ({"/km3net/km3test/ds": {"run_number": 1}},),
             "updateDataset": ("/km3net/km3test/ds",), "addDatasetAnnotation": ({"/km3net/km3test/ds": "x"},),
             "checkDataset": ("/km3net/km3test/ds",), "getDatasetAnnotation": ("/km3net/km3test/ds",)}
    assert set(calls) <= set(NOT_CARRIED)
    for name, args in calls.items():
        result = getattr(fc, name)(*args)
        if result["OK"]:  # read methods: per LFN (FileCatalog would replace a read method's S_ERROR message)
            message = str(result["Value"]["Failed"])
            assert not result["Value"]["Successful"] and name in NOT_CARRIED, (name, result)
        else:
            message = result["Message"]
        assert "not supported by KM3DIRAC's Rucio catalog" in message, (name, result)
    catalog = fc.getReadCatalogs()[0][1]
    for name in ("getUsers", "getGroups", "getCatalogCounters"):
        assert "not supported" in getattr(catalog, name)()["Message"]


# --------------------------------------------------------------------------------------------- bad input
def test_bad_lfns_never_fail_a_bulk_registration(fc, rucio_client, scope_factory):
    scope = scope_factory()
    good = [f"/km3net/{scope}/mixed/good{i}.root" for i in range(3)]
    spaces = f"/km3net/{scope}/mixed/with space.root"
    plus = f"/km3net/{scope}/mixed/a+b.root"
    no_scope = f"/km3net/nosuch{scope[:10]}/mixed/f.root"
    bad_run = f"/km3net/{scope}/mixed/badrun.root"
    bad_guid = f"/km3net/{scope}/mixed/badguid.root"
    long_campaign = f"/km3net/{scope}/mixed/campaign.root"
    no_rse = f"/km3net/{scope}/mixed/nowhere.root"
    entries = {lfn: _entry() for lfn in good}
    entries[no_rse] = _entry(se="NO-SUCH-RSE")
    entries.update({spaces: _entry(), plus: _entry(), no_scope: _entry(),
                    bad_run: _entry(Meta={"run_number": "twelve"}), bad_guid: _entry(GUID="not-a-guid"),
                    long_campaign: _entry(Meta={"campaign": "c" * 60})})
    value = _ok(fc.addFile(entries))
    assert sorted(value["Successful"]) == sorted(good), value
    assert "' ' not allowed in a Rucio DID name" in _failed(value, spaces)
    assert "'+' not allowed" in _failed(value, plus)
    reason = _failed(value, no_scope)
    assert f"scope 'nosuch{scope[:10]}' does not exist" in reason and "rucio scope add" in reason, reason
    assert "run_number must be an integer" in _failed(value, bad_run)
    assert "not a GUID" in _failed(value, bad_guid)
    assert "holds 50" in _failed(value, long_campaign)
    assert "NO-SUCH-RSE is not a Rucio RSE" in _failed(value, no_rse)
    listed = set(rucio_client.list_dids(scope, [{"name": f"/km3net/{scope}/mixed/*"}], did_type="file"))
    assert listed == set(good)


def test_reads_with_names_rucio_refuses_answer_per_lfn(fc, scope_factory):
    """get_metadata_bulk validates every DID against the name schema: one bad name failed the whole lookup."""
    scope = scope_factory()
    good = f"/km3net/{scope}/reads/ok.root"
    _register(fc, [good])
    bad = f"/km3net/{scope}/reads/bad name.root"
    value = _ok(fc.exists([good, bad]))
    assert value["Successful"] == {good: good} and "not allowed in a Rucio DID name" in value["Failed"][bad]
    meta = _ok(fc.getFileMetadata([good, bad]))
    assert good in meta["Successful"] and bad in meta["Failed"]


def test_add_file_into_a_missing_scope_fails_before_uploading(dm, run_command, dirac_storages, scope_factory,
                                                             local_file):
    """Issue 10: the bytes were uploaded, then the call failed with Rucio's raw ScopeNotFound. DataManager asks
    hasAccess first; its answer for a refused path is only "Write access not permitted", so the reason is logged."""
    source = local_file()
    missing = f"nosc{scope_factory()[1:9]}"
    lfn = f"/km3net/{missing}/raw/{source.name}"
    result = dm.putAndRegister(lfn, str(source), "KM3-DISK-1")
    assert not result["OK"] and "Write access not permitted" in result["Message"], result
    added = run_command("dirac-dms-add-file", lfn, str(source), "KM3-DISK-1")
    output = added.stdout + added.stderr
    assert added.returncode != 0 and "Traceback" not in output, output
    assert f"scope '{missing}' does not exist" in output and f"rucio scope add {missing}" in output, output
    assert not any(list(storage.directory.rglob(source.name)) for storage in dirac_storages)


def test_dirac_leaves_the_bytes_when_registration_fails_after_the_upload(dm, fc, scope_factory, local_file,
                                                                          tmp_path):
    """What DIRAC 9.1.22's DataManager.putAndRegister does when the catalog refuses the registration after the
    upload (here: a StorageElement with no Rucio RSE, which hasAccess cannot know, it is not given the SE): the call
    is S_OK with the LFN in Failed ("register"), the bytes stay on the storage, and the catalog does not list the
    file. This is why KM3DIRAC's hasAccess refuses before the upload whatever it can know."""
    from DIRAC.ConfigurationSystem.Client.ConfigurationData import gConfigurationData
    from diraccfg import CFG

    from KM3DIRAC.sandbox.dirac_inprocess import answer_resource_status_in_process

    directory = tmp_path / "no-rucio-rse"
    directory.mkdir()
    gConfigurationData.mergeWithLocal(CFG().loadFromBuffer(f"""Resources
{{
  StorageElements
  {{
    NO-RUCIO-DISK
    {{
      BackendType = local
      File
      {{
        Host =
        PluginName = File
        Protocol = file
        Path = {directory}
        Access = remote
      }}
    }}
  }}
}}
"""))
    answer_resource_status_in_process(["KM3-DISK-1", "KM3-DISK-2", "NO-RUCIO-DISK"])
    scope = scope_factory()
    source = local_file()
    lfn = f"/km3net/{scope}/orphan/{source.name}"
    result = _ok(dm.putAndRegister(lfn, str(source), "NO-RUCIO-DISK"))
    assert "register" in result["Failed"][lfn] and "put" in result["Successful"][lfn], result
    stored = directory / lfn.lstrip("/")
    assert stored.read_bytes() == source.read_bytes()  # DIRAC does not remove what it uploaded
    assert _ok(fc.exists(lfn))["Successful"][lfn] is False
    registered = _ok(fc.addFile({lfn: _entry(se="NO-RUCIO-DISK")}))
    # the reason DIRAC's putAndRegister does not show
    assert "NO-RUCIO-DISK is not a Rucio RSE" in _failed(registered, lfn)


def test_has_access_for_writing_names_each_refused_path(fc, scope_factory):
    scope = scope_factory()
    ok = f"/km3net/{scope}/acc/f.root"
    bad = f"/km3net/{scope}/acc/f g.root"
    value = _ok(fc.hasAccess([ok, bad], "addFile"))
    assert value["Successful"] == {ok: True} and "not allowed" in value["Failed"][bad]
    assert _ok(fc.hasAccess([bad], "getReplicas"))["Successful"][bad] is True  # reads: Rucio decides


# --------------------------------------------------------------------------------------------- replica status
def test_replica_status_maps_onto_rucio_states(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfn = f"/km3net/{scope}/status/f.root"
    _register(fc, [lfn])
    assert not _ok(fc.addReplica({lfn: {"SE": "KM3-DISK-2", "PFN": ""}}))["Failed"]

    value = _ok(fc.setReplicaStatus({lfn: {"SE": "KM3-DISK-2", "Status": "Trash"}}))
    assert lfn in value["Successful"], value
    states = next(iter(rucio_client.list_replicas([{"scope": scope, "name": lfn}], all_states=True)))["states"]
    assert states == {"KM3-DISK-1": "AVAILABLE", "KM3-DISK-2": "BAD"}
    assert _ok(fc.getReplicaStatus({lfn: "KM3-DISK-2"}))["Successful"][lfn] == {"KM3-DISK-2": "Trash"}
    assert list(_ok(fc.getReplicas(lfn))["Successful"][lfn]) == ["KM3-DISK-1"]
    assert sorted(_ok(fc.getReplicas(lfn, allStatus=True))["Successful"][lfn]) == ["KM3-DISK-1", "KM3-DISK-2"]

    assert lfn in _ok(fc.setReplicaStatus({lfn: {"SE": "KM3-DISK-2", "Status": "AprioriGood"}}))["Successful"]
    assert sorted(_ok(fc.getReplicas(lfn))["Successful"][lfn]) == ["KM3-DISK-1", "KM3-DISK-2"]
    assert lfn in _ok(fc.setReplicaStatus({lfn: {"SE": "KM3-DISK-1", "Status": "Probing"}}))["Successful"]
    assert _ok(fc.getReplicaStatus(lfn))["Successful"][lfn] == {"KM3-DISK-1": "Probing", "KM3-DISK-2": "AprioriGood"}

    bad = _ok(fc.setReplicaStatus({lfn: {"SE": "KM3-DISK-1", "Status": "Sparkly"}}))
    assert "use one of AprioriGood" in _failed(bad, lfn)
    absent = _ok(fc.setReplicaStatus({f"/km3net/{scope}/status/none.root": {"SE": "KM3-DISK-1",
                                                                            "Status": "Trash"}}))
    assert "No such file" in _failed(absent, f"/km3net/{scope}/status/none.root")

    problematic = _ok(fc.setReplicaProblematic({lfn: {"KM3-DISK-1": "", "KM3-DISK-2": ""}}))
    assert sorted(problematic["Successful"][lfn]["RucioFileCatalog"]) == ["KM3-DISK-1", "KM3-DISK-2"], problematic
    assert _ok(fc.getReplicaStatus(lfn))["Successful"][lfn] == {"KM3-DISK-1": "Trash", "KM3-DISK-2": "Trash"}
    assert lfn in _ok(fc.setFileStatus({lfn: "AprioriGood"}))["Successful"]
    assert _ok(fc.getReplicaStatus(lfn))["Successful"][lfn] == {"KM3-DISK-1": "AprioriGood",
                                                                "KM3-DISK-2": "AprioriGood"}


def test_removed_replicas_and_files_are_not_listed_even_with_all_status(fc, dm, run_command, scope_factory,
                                                                        local_file):
    """Issue 10: a removed replica or file was still listed by dirac-dms-lfn-replicas (allStatus=True)."""
    scope = scope_factory()
    source = local_file()
    lfn = f"/km3net/{scope}/rm/{source.name}"
    assert lfn in _ok(dm.putAndRegister(lfn, str(source), "KM3-DISK-1"))["Successful"]
    assert lfn in _ok(dm.replicateAndRegister(lfn, "KM3-DISK-2"))["Successful"]
    assert sorted(_ok(fc.getReplicas(lfn, allStatus=True))["Successful"][lfn]) == ["KM3-DISK-1", "KM3-DISK-2"]
    assert lfn in _ok(dm.removeReplica("KM3-DISK-2", lfn))["Successful"]
    assert list(_ok(fc.getReplicas(lfn, allStatus=True))["Successful"][lfn]) == ["KM3-DISK-1"]
    listed = run_command("dirac-dms-lfn-replicas", lfn)
    assert listed.returncode == 0 and "KM3-DISK-1" in listed.stdout and "KM3-DISK-2" not in listed.stdout, (
        listed.stdout + listed.stderr)
    assert "no replica" in str(_ok(fc.getReplicaStatus({lfn: "KM3-DISK-2"}))["Failed"][lfn])

    assert lfn in _ok(dm.removeFile(lfn))["Successful"]
    assert lfn in _ok(fc.getReplicas(lfn, allStatus=True))["Failed"]
    gone = run_command("dirac-dms-lfn-replicas", lfn)
    assert "KM3-DISK-1" not in gone.stdout and "No such file" in gone.stdout + gone.stderr, gone.stdout + gone.stderr


def test_set_and_change_replica_status_commands(fc, run_command, scope_factory, tmp_path):
    """Issue 10: dirac-dms-set-replica-status and dirac-dms-change-replica-status ended in tracebacks."""
    scope = scope_factory()
    lfns = [f"/km3net/{scope}/cmd/f{i}.root" for i in range(2)]
    _register(fc, lfns)
    done = run_command("dirac-dms-set-replica-status", lfns[0], "KM3-DISK-1", "Trash")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    assert _ok(fc.getReplicaStatus(lfns[0]))["Successful"][lfns[0]] == {"KM3-DISK-1": "Trash"}
    listing = tmp_path / "lfns.txt"
    listing.write_text("\n".join(lfns) + "\n")
    changed = run_command("dirac-dms-change-replica-status", str(listing), "KM3-DISK-1", "Probing")
    assert changed.returncode == 0 and "Traceback" not in changed.stderr, changed.stdout + changed.stderr
    statuses = _ok(fc.getReplicaStatus(lfns))["Successful"]
    # Rucio sets TEMPORARY_UNAVAILABLE only on an available replica: the Trash one says why it stays
    assert statuses[lfns[1]] == {"KM3-DISK-1": "Probing"} and statuses[lfns[0]] == {"KM3-DISK-1": "Trash"}
    assert "Failed to update 1 replica status" in changed.stdout  # DIRAC's command does not print the reason
    refused = _ok(fc.setReplicaStatus({lfns[0]: {"SE": "KM3-DISK-1", "Status": "Probing"}}))
    assert "only on an AprioriGood replica" in _failed(refused, lfns[0])


# --------------------------------------------------------------------------------------------- provenance
def test_ancestors_and_descendants_with_depth_from_rucio_parents(fc, rucio_client, scope_factory):
    scope = scope_factory()
    raw = [f"/km3net/{scope}/raw/run1/r{i}.root" for i in range(2)]
    reco = f"/km3net/{scope}/reco/run1/reco.root"
    merged = f"/km3net/{scope}/merged/run1/merged.root"
    other = f"/km3net/{scope}/raw/run1/r1.root.bak"  # its name contains r1.root: a LIKE match, not a child
    _register(fc, [*raw, other])
    # KM3DIRAC's job wrappers write Parents on every output (KM3DIRAC.core.job_run)
    _register(fc, [reco], Meta={"Parents": ",".join(raw)})
    _register(fc, [merged])
    assert merged in _ok(fc.addFileAncestors({merged: {"Ancestors": [reco]}}))["Successful"]
    assert rucio_client.get_metadata(scope, merged, plugin="JSON") == {"Parents": reco}

    assert _ok(fc.getFileAncestors(merged, 1))["Successful"][merged] == {reco: 1}
    assert _ok(fc.getFileAncestors([merged], [1, 2]))["Successful"][merged] == {reco: 1, raw[0]: 2, raw[1]: 2}
    assert _ok(fc.getFileAncestors([merged], [2]))["Successful"][merged] == {raw[0]: 2, raw[1]: 2}
    assert _ok(fc.getFileAncestors(raw[0], 1))["Successful"][raw[0]] == {}
    assert _ok(fc.getFileDescendents(raw[1], [1, 2]))["Successful"][raw[1]] == {reco: 1, merged: 2}
    assert _ok(fc.getFileDescendents([raw[0], reco], 1))["Successful"] == {raw[0]: {reco: 1}, reco: {merged: 1}}

    missing = f"/km3net/{scope}/raw/run1/nothere.root"
    refused = _ok(fc.addFileAncestors({merged: {"Ancestors": [missing]}}))
    assert missing in _failed(refused, merged) and "No such file" in _failed(refused, merged)
    assert _ok(fc.getFileAncestors(f"/km3net/{scope}/none.root", 1))["Failed"]


def test_file_ancestors_through_the_fc_cli(fc, run_command, scope_factory, tmp_path):
    scope = scope_factory()
    parent, child = f"/km3net/{scope}/cli/p.root", f"/km3net/{scope}/cli/c.root"
    _register(fc, [parent])
    _register(fc, [child], Meta={"Parents": parent})
    cli = subprocess.run([str(Path(sys.executable).parent / "dirac-dms-filecatalog-cli"), "--cfg",
                          str(tmp_path / "dirac.cfg")], input=f"ancestor {child} 1\ndescendent {parent} 1\nexit\n",
                         capture_output=True, text=True, timeout=180, check=False,
                         env={k: v for k, v in os.environ.items() if k not in ("RUCIO_CONFIG", "RUCIO_HOME")})
    assert "Traceback" not in cli.stdout + cli.stderr, cli.stdout + cli.stderr
    assert parent in cli.stdout and child in cli.stdout, cli.stdout + cli.stderr


# --------------------------------------------------------------------------------------------- look-ups
def test_guid_pfn_details_and_se_dump(fc, dm, run_command, scope_factory, local_file, tmp_path):
    scope = scope_factory()
    source = local_file(size=1234)
    lfn = f"/km3net/{scope}/look/{source.name}"
    guid = "8F3C2B1A-0D4E-4F5A-9B6C-7D8E9F0A1B2C"
    assert lfn in _ok(dm.putAndRegister(lfn, str(source), "KM3-DISK-1", guid=guid))["Successful"]
    _ok(fc.setMetadata(lfn, {"run_number": 5, "quality": "good"}))

    found = _ok(fc.getLFNForGUID([guid, "00000000-0000-0000-0000-000000000000", "nonsense"]))
    assert found["Successful"] == {guid: lfn}
    assert found["Failed"]["00000000-0000-0000-0000-000000000000"] == "GUID not found"
    resolved = run_command("dirac-dms-resolve-guid", guid)
    assert resolved.returncode == 0 and f"{guid} -> {lfn}" in resolved.stdout, resolved.stdout + resolved.stderr

    details = _ok(fc.getFileDetails(lfn))["Successful"][lfn]
    assert details["Size"] == 1234 and details["GUID"] == guid
    assert details["Metadata"] == {"run_number": 5, "quality": "good"}

    directory = f"/km3net/{scope}/look"
    parameters = _ok(fc.getDatasetParameters(directory))["Successful"][directory]
    assert (parameters["NumberOfFiles"], parameters["TotalSize"], parameters["Status"]) == (1, 1234, "Dynamic")
    _ok(fc.freezeDataset(directory))
    assert _ok(fc.getDatasets(directory))["Successful"][directory]["Status"] == "Frozen"

    url = _ok(fc.getReplicas(lfn))["Successful"][lfn]["KM3-DISK-1"]
    assert _ok(fc.getLFNForPFN(url))["Successful"] == {url: lfn}

    dump_file = tmp_path / "dump.csv"
    rows = _ok(fc.getReadCatalogs()[0][1].getSEDump("KM3-DISK-1", str(dump_file)))
    assert ("KM3-DISK-1", lfn, details["Checksum"], 1234) in [tuple(row) for row in rows]
    assert f"KM3-DISK-1|{lfn}|{details['Checksum']}|1234" in dump_file.read_text().splitlines()


def test_dirac_dms_lfn_metadata_of_a_file(fc, run_command, scope_factory):
    scope = scope_factory()
    lfn = f"/km3net/{scope}/meta/f.root"
    _register(fc, [lfn], size=777)
    metadata = run_command("dirac-dms-lfn-metadata", lfn)
    assert metadata.returncode == 0 and "'Size': 777" in metadata.stdout, metadata.stdout + metadata.stderr


@pytest.mark.sandbox
def test_file_commands_on_the_sandbox(local_sandbox, tmp_path):
    """dirac-dms-add-file, -lfn-accessURL, -get-file, -replicate-lfn, -lfn-replicas, -remove-files as the sandbox's
    user (real ResourceStatus and StorageElements: the in-process harness has no ResourceStatus for commands)."""
    import uuid

    scope = f"t{uuid.uuid4().hex[:12]}"
    seed = tmp_path / "seed.root"
    seed.write_bytes(os.urandom(100))
    local_sandbox.dirac_client("upload-km3net-file", scope, f"/km3net/{scope}/seed/seed.root", str(seed),
                               "KM3-DISK-1")  # creates the scope, as a Rucio admin would
    source = tmp_path / "payload.root"
    source.write_bytes(os.urandom(777))
    lfn = f"/km3net/{scope}/commands/payload.root"

    def run(*command):
        done = local_sandbox.run(*command, cwd=tmp_path / "work", timeout=180)
        assert "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
        return done

    (tmp_path / "work").mkdir()
    added = run("dirac-dms-add-file", lfn, str(source), "KM3-DISK-1")
    assert added.returncode == 0 and "Successfully uploaded" in added.stdout, added.stdout + added.stderr
    url = run("dirac-dms-lfn-accessURL", lfn, "KM3-DISK-1")
    assert url.returncode == 0 and "payload.root" in url.stdout, url.stdout + url.stderr
    got = run("dirac-dms-get-file", lfn)
    assert got.returncode == 0 and (tmp_path / "work" / "payload.root").read_bytes() == source.read_bytes()
    replicated = run("dirac-dms-replicate-lfn", lfn, "KM3-DISK-2")
    assert replicated.returncode == 0, replicated.stdout + replicated.stderr
    both = run("dirac-dms-lfn-replicas", lfn)
    assert "KM3-DISK-1" in both.stdout and "KM3-DISK-2" in both.stdout, both.stdout + both.stderr
    run("dirac-dms-remove-replicas", lfn, "KM3-DISK-2")
    one = run("dirac-dms-lfn-replicas", lfn)
    assert "KM3-DISK-1" in one.stdout and "KM3-DISK-2" not in one.stdout, one.stdout + one.stderr
    removed = run("dirac-dms-remove-files", lfn)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    gone = run("dirac-dms-lfn-replicas", lfn)
    assert "KM3-DISK-1" not in gone.stdout, gone.stdout + gone.stderr

    missing = f"nosuch{uuid.uuid4().hex[:8]}"
    refused = run("dirac-dms-add-file", f"/km3net/{missing}/raw/payload.root", str(source), "KM3-DISK-1")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0 and f"scope '{missing}' does not exist" in output, output
    assert "Successfully uploaded" not in output


@pytest.mark.sandbox
def test_dirac_dms_user_lfns_on_the_sandbox(local_sandbox, tmp_path):
    """Issue 10: dirac-dms-user-lfns ended in a traceback (it asks getDirectoryDump; it needs a proxy: sandbox)."""
    import uuid

    scope = f"t{uuid.uuid4().hex[:12]}"
    seed = tmp_path / "seed.root"
    seed.write_bytes(os.urandom(20))
    local_sandbox.dirac_client("upload-km3net-file", scope, f"/km3net/{scope}/seed/seed.root", str(seed),
                               "KM3-DISK-1")  # creates the scope
    home = f"/km3net/{scope}/user/k/km3user"
    lfns = sorted([f"{home}/run1/a.root", f"{home}/run2/b.root"])
    for index, lfn in enumerate(lfns):
        local = tmp_path / f"local{index}.root"
        local.write_bytes(os.urandom(30))  # dirac-dms-add-file derives the GUID from the content: one per file
        added = local_sandbox.run("dirac-dms-add-file", lfn, str(local), "KM3-DISK-1", cwd=tmp_path, timeout=180)
        assert added.returncode == 0, added.stdout + added.stderr
    done = local_sandbox.run("dirac-dms-user-lfns", "-b", home, cwd=tmp_path, timeout=180)
    assert done.returncode == 0 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    listing = tmp_path / f"km3net-{scope}-user-k-km3user.lfns"
    assert sorted(listing.read_text().split()) == lfns, done.stdout


@pytest.mark.sandbox
def test_dirac_dms_clean_directory_on_the_sandbox(local_sandbox, tmp_path):
    """Issue 10: dirac-dms-clean-directory ended in a traceback (it asks getDirectoryDump)."""
    import uuid

    scope = f"t{uuid.uuid4().hex[:12]}"
    source = tmp_path / "f.root"
    source.write_bytes(os.urandom(50))
    for name in ("a.root", "b.root"):
        local_sandbox.dirac_client("upload-km3net-file", scope, f"/km3net/{scope}/clean/{name}", str(source),
                                   "KM3-DISK-1")
    cleaned = local_sandbox.run("dirac-dms-clean-directory", f"/km3net/{scope}/clean", timeout=180)
    assert cleaned.returncode == 0 and "Traceback" not in cleaned.stdout + cleaned.stderr, (
        cleaned.stdout + cleaned.stderr)
    for name in ("a.root", "b.root"):
        left = local_sandbox.run("dirac-dms-lfn-replicas", f"/km3net/{scope}/clean/{name}")
        assert "KM3-DISK-1" not in left.stdout and "No such file" in left.stdout + left.stderr, left.stdout

"""getReplicas without URLs: placement proven per run dataset (KM3DIRAC/core/replica_placement.py), exactly right.

Every case compares the answer with what the file-by-file path (``list_replicas``) gives, and with the replicas the
test put there, on the session's real Rucio server.
"""

from __future__ import annotations

import uuid

import pytest

from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.replica_placement import MIN_FILES_PER_DATASET, prove_placement

pytestmark = pytest.mark.rucio

FILES = MIN_FILES_PER_DATASET + 5
DISK1, DISK2 = "KM3-DISK-1", "KM3-DISK-2"


def _each(lfns, replicas):
    return {lfn: dict(replicas) for lfn in lfns}


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def _run(fc, scope: str, run: str = "run1", se: str = DISK1) -> list[str]:
    lfns = [f"/km3net/{scope}/raw/{run}/f{i:03d}.root" for i in range(FILES)]
    added = _ok(fc.addFile({lfn: {"PFN": "", "Size": 10, "SE": se, "GUID": "", "Checksum": "0000abcd"}
                            for lfn in lfns}))
    assert not added["Failed"], added["Failed"]
    return lfns


def _placement(fc, lfns):
    """(answer without URLs, answer of the file-by-file path reduced to SE names)."""
    fast = _ok(fc.getReplicas(lfns, getUrl=False))
    slow = _ok(fc.getReplicas(lfns))
    slow = {"Successful": {lfn: dict.fromkeys(reps, True) for lfn, reps in slow["Successful"].items()},
            "Failed": slow["Failed"]}
    return fast, slow


def _proven(rucio_client, scope, lfns):
    return prove_placement(rucio_client, [DID(scope, lfn) for lfn in lfns])


def test_complete_run_dataset_is_proven_without_asking_per_file(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfns = _run(fc, scope)
    placement = _proven(rucio_client, scope, lfns)
    assert not placement.unproven and all(rses == [DISK1] for rses in placement.proven.values())
    assert len(placement.proven) == FILES
    fast, slow = _placement(fc, lfns)
    assert fast == slow == {"Successful": _each(lfns, {DISK1: True}), "Failed": {}}


def test_extra_replica_of_one_file_makes_the_dataset_unproven(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfns = _run(fc, scope)
    _ok(fc.addReplica({lfns[3]: {"PFN": "", "SE": DISK2}}))
    placement = _proven(rucio_client, scope, lfns)
    assert not placement.proven and len(placement.unproven) == FILES  # DISK-2 holds 1 of 25: unknown which
    fast, slow = _placement(fc, lfns)
    expected = _each(lfns, {DISK1: True})
    expected[lfns[3]] = {DISK1: True, DISK2: True}
    assert fast == slow == {"Successful": expected, "Failed": {}}


def test_missing_replica_of_one_file_makes_the_dataset_unproven(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfns = _run(fc, scope)
    rucio_client.update_replicas_states(DISK1, [{"scope": scope, "name": lfns[0], "state": "U"}])
    placement = _proven(rucio_client, scope, lfns)
    assert not placement.proven
    fast, slow = _placement(fc, lfns)
    expected = _each(lfns, {DISK1: True})
    expected[lfns[0]] = {}
    assert fast == slow == {"Successful": expected, "Failed": {}}


def test_bad_replica_of_one_file_makes_the_dataset_unproven(fc, rucio_client, scope_factory):
    """A replica declared BAD (DIRAC status Trash) is no AVAILABLE one: DISK-1 then holds 24 of 25, unknown which."""
    scope = scope_factory()
    lfns = _run(fc, scope)
    assert lfns[7] in _ok(fc.setReplicaStatus({lfns[7]: {"SE": DISK1, "Status": "Trash"}}))["Successful"]
    placement = _proven(rucio_client, scope, lfns)
    assert not placement.proven and len(placement.unproven) == FILES
    fast, slow = _placement(fc, lfns)
    expected = _each(lfns, {DISK1: True})
    expected[lfns[7]] = {}
    assert fast == slow == {"Successful": expected, "Failed": {}}


def test_files_of_a_directory_that_first_held_a_subdirectory_are_proven_in_its_companion_dataset(
        fc, rucio_client, scope_factory):
    """``/raw/run1`` is a CONTAINER (its first content was ``run1/sub``): its own files live in the DATASET ``run1/``
    (KM3DIRAC/core/catalog_directories.py), which the proof then reads; a file detached from it is not proven."""
    scope = scope_factory()
    sub = f"/km3net/{scope}/raw/run1/sub/first.root"
    _ok(fc.addFile({sub: {"PFN": "", "Size": 10, "SE": DISK2, "GUID": "", "Checksum": "0000abcd"}}))
    lfns = _run(fc, scope)
    assert rucio_client.get_metadata(scope, f"/km3net/{scope}/raw/run1")["did_type"] == "CONTAINER"
    companion = f"/km3net/{scope}/raw/run1/"
    assert rucio_client.get_metadata(scope, companion)["did_type"] == "DATASET"
    placement = _proven(rucio_client, scope, lfns)
    assert not placement.unproven and set(map(tuple, placement.proven.values())) == {(DISK1,)}
    fast, slow = _placement(fc, [*lfns, sub])
    assert fast == slow == {"Successful": {**_each(lfns, {DISK1: True}), sub: {DISK2: True}}, "Failed": {}}
    rucio_client.detach_dids(scope, companion, [{"scope": scope, "name": lfns[0]}])
    placement = _proven(rucio_client, scope, lfns)
    assert placement.unproven == [DID(scope, lfns[0])] and len(placement.proven) == FILES - 1


def test_dataset_complete_nowhere_is_not_listed(fc, rucio_client, scope_factory, monkeypatch):
    """A run dataset no RSE holds whole proves nothing, so its file list is not even asked for."""
    scope = scope_factory()
    lfns = _run(fc, scope)
    rucio_client.update_replicas_states(DISK1, [{"scope": scope, "name": lfns[0], "state": "U"}])
    listed = []
    real_list_files = rucio_client.__class__.list_files
    monkeypatch.setattr(rucio_client.__class__, "list_files",
                        lambda self, *args, **kwargs: listed.append(args) or real_list_files(self, *args, **kwargs))
    assert not _proven(rucio_client, scope, lfns).proven
    assert listed == []


def test_rule_not_ok_does_not_count_and_the_complete_copy_does(fc, rucio_client, scope_factory):
    """A second rule still replicating (no transfer daemon here): its COPYING replicas are not AVAILABLE."""
    scope = scope_factory()
    lfns = _run(fc, scope)
    dataset = lfns[0].rsplit("/", 1)[0]
    rule_id = rucio_client.add_replication_rule([{"scope": scope, "name": dataset}], 1, DISK2)[0]
    assert rucio_client.get_replication_rule(rule_id)["state"] != "OK"
    placement = _proven(rucio_client, scope, lfns)
    assert len(placement.proven) == FILES and set(map(tuple, placement.proven.values())) == {(DISK1,)}
    fast, slow = _placement(fc, lfns)
    assert fast == slow == {"Successful": _each(lfns, {DISK1: True}), "Failed": {}}
    # allStatus=True goes the file-by-file way; a COPYING replica has no bytes yet, so even then it is not listed
    # (as in the DFC, where a replica is registered once its transfer is done: README's replica-status table)
    every = _ok(fc.getReplicas(lfns, allStatus=True, getUrl=False))["Successful"]
    assert set(every[lfns[0]]) == {DISK1}


def test_file_attached_to_two_datasets_is_answered_right(fc, rucio_client, scope_factory):
    scope = scope_factory()
    run1 = _run(fc, scope, "run1", DISK1)
    run2 = _run(fc, scope, "run2", DISK2)
    shared = run1[5]
    # a second dataset (a selection) holding a file of run1 and the files of run2, all at DISK-2
    rucio_client.add_replicas(DISK2, [{"scope": scope, "name": shared, "bytes": 10, "adler32": "0000abcd"}])
    rucio_client.attach_dids(scope, run2[0].rsplit("/", 1)[0], [{"scope": scope, "name": shared}])
    fast, slow = _placement(fc, run1 + run2)
    expected = {**_each(run1, {DISK1: True}), **_each(run2, {DISK2: True})}
    expected[shared] = {DISK1: True, DISK2: True}
    assert fast == slow == {"Successful": expected, "Failed": {}}
    # run2 is complete at DISK-2 but holds one file at DISK-1 too (the shared one): unknown which, so unproven;
    # run1 is complete at DISK-1 and one of its files is at DISK-2: unproven as well
    assert not _proven(rucio_client, scope, run2).proven and not _proven(rucio_client, scope, run1).proven


def test_files_in_no_dataset_flat_names_and_unknown_lfns(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfns = _run(fc, scope)
    loose = f"/km3net/{scope}/raw/run1/loose-{uuid.uuid4().hex[:6]}.root"  # named like run1's files, not attached
    flat = f"flat-{uuid.uuid4().hex[:6]}.root"  # plain `rucio upload` name
    rucio_client.add_replicas(DISK2, [{"scope": scope, "name": name, "bytes": 10, "adler32": "0000abcd"}
                                      for name in (loose, flat)])
    unknown = f"/km3net/{scope}/raw/run1/never-registered.root"
    asked = [*lfns, loose, f"{scope}:{flat}", unknown]
    placement = _proven(rucio_client, scope, [*lfns, loose, unknown])
    assert {did.name for did in placement.unproven} == {loose, unknown}
    fast, slow = _placement(fc, asked)
    expected = {**_each(lfns, {DISK1: True}), loose: {DISK2: True}, f"{scope}:{flat}": {DISK2: True}}
    assert fast == slow == {"Successful": expected, "Failed": {unknown: "No such file or directory"}}


def test_datasets_asked_before_the_lfns_are_checked_still_answer_exactly(fc, rucio_client, scope_factory,
                                                                          monkeypatch):
    """A large call asks its datasets from the LFN strings alone, before the LFNs are checked
    (``PREFETCH_PROOFS_FROM``, lowered here): malformed LFNs, an unknown scope, ``scope:name`` forms and a
    directory of an unknown scope holding many asked LFNs beside a good run give what the unprefetched path gives."""
    import KM3DIRAC.core.catalog_reads as catalog_reads
    from KM3DIRAC.core.replica_placement import DatasetProofs

    scope = scope_factory()
    lfns = _run(fc, scope)
    flat = f"flat-{uuid.uuid4().hex[:6]}.root"
    rucio_client.add_replicas(DISK2, [{"scope": scope, "name": flat, "bytes": 10, "adler32": "0000abcd"}])
    unknown_scope = [f"/km3net/noscope{uuid.uuid4().hex[:6]}/raw/run1/f{i:03d}.root" for i in range(FILES)]
    malformed = f"/km3net/{scope}/raw/run1/bad name.root"
    asked = [*lfns, f"{scope}:{flat}", malformed, *unknown_scope]
    unprefetched = _ok(fc.getReplicas(asked, getUrl=False))
    prefetched_datasets = []
    real_ask = DatasetProofs.ask

    def recording_ask(self, datasets):
        datasets = list(datasets)
        prefetched_datasets.extend(datasets)
        return real_ask(self, datasets)

    monkeypatch.setattr(catalog_reads, "PREFETCH_PROOFS_FROM", 1)
    monkeypatch.setattr(DatasetProofs, "ask", recording_ask)
    prefetched = _ok(fc.getReplicas(asked, getUrl=False))
    assert DID(scope, lfns[0].rsplit("/", 1)[0]) in prefetched_datasets
    assert prefetched == unprefetched
    assert prefetched["Successful"] == {**_each(lfns, {DISK1: True}), f"{scope}:{flat}": {DISK2: True}}
    assert set(prefetched["Failed"]) == {malformed, *unknown_scope}
    assert "not allowed" in prefetched["Failed"][malformed]


def test_removed_file_is_not_listed(fc, rucio_client, scope_factory):
    scope = scope_factory()
    lfns = _run(fc, scope)
    _ok(fc.removeFile(lfns[-1]))
    fast, slow = _placement(fc, lfns)
    assert fast == slow
    assert fast["Failed"] == {lfns[-1]: "No such file or directory"}
    assert fast["Successful"] == _each(lfns[:-1], {DISK1: True})


@pytest.fixture
def catalog_pfns_unused(dirac_cs):
    """The CS of a DIRAC whose DataManager does not use catalog URLs (DataManagement/UseCatalogPFN = False)."""
    from DIRAC.ConfigurationSystem.Client.ConfigurationData import gConfigurationData

    option = "/Operations/Defaults/DataManagement/UseCatalogPFN"
    gConfigurationData.setOptionInCFG(option, "False")
    # DIRAC's Operations helper caches per CS version: without a new version an earlier lookup would still answer
    gConfigurationData.generateNewVersion()
    yield
    gConfigurationData.deleteOptionInCFG(option)
    gConfigurationData.generateNewVersion()


def test_transformation_agents_question_takes_the_fast_route(catalog_pfns_unused, rucio_client, scope_factory,
                                                             monkeypatch):
    """DIRAC's TransformationAgent asks DataManager.getReplicasForJobs(lfns, getUrl=False); the catalog then gets
    getReplicas(lfns, allStatus=False) and nothing about URLs: UseCatalogPFN = False (or ReplicaURLs = no) tells it."""
    from DIRAC.DataManagementSystem.Client.DataManager import DataManager
    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog

    fc = FileCatalog()
    (_, catalog, _), = fc.getReadCatalogs() if hasattr(fc, "getReadCatalogs") else fc.readCatalogs
    assert catalog.replica_urls is False
    scope = scope_factory()
    lfns = _run(fc, scope)
    asked_per_file = []
    real_list_replicas = rucio_client.__class__.list_replicas

    def counting_list_replicas(self, dids, *args, **kwargs):
        asked_per_file.extend(dids)
        return real_list_replicas(self, dids, *args, **kwargs)

    monkeypatch.setattr(rucio_client.__class__, "list_replicas", counting_list_replicas)
    # getReplicasForJobs = this + filters on SEs at sites (the in-process CS has no sites: they would drop all)
    replicas = _ok(DataManager().getReplicas(lfns, allStatus=False, getUrl=False, active=True))
    assert replicas == {"Successful": _each(lfns, {DISK1: True}), "Failed": {}}
    assert asked_per_file == []  # proven per dataset: no file asked one by one
    with_urls = _ok(fc.getReplicas(lfns[:2], getUrl=True))["Successful"]
    assert all(url.startswith("file://") for reps in with_urls.values() for url in reps.values()), with_urls


LFN_FORMS = [
    "/km3net/raw/run1/sub/f.root", "/km3net/user/k/km3user/a.root", "/km3net/user/k/km3user/sub/f",
    "/km3net/user/k/x/a",
    "/km3net/user/x/name/f", "/km3net/user/x/x", "/km3net/s/a/b/..", "/km3net/s/a/b/.", "/km3net/s/./b/c",
    "/km3net/s/a/../c/d", "/km3net/s//a/b/c", "/km3net/s/a//b/c", "/km3net/s/a/b/c*", "/km3net/s/a/b/c\x01",
    "/km3net/s/a/b\x01/c", "/km3net/s:flat/a/b/c", "/km3net/s/a/b/c:d", "/km3net/s/a/b/" + "x" * 260,
    "/km3net/s/a/b/c/", "/km3net/bad scope/a/b/c", "/other/s/a/b/c", "s:name", 5, "/km3net/" + "y" * 30 + "/a/b/c",
]


def test_lfns_checked_once_per_directory_map_as_one_by_one():
    """LFNMapper.to_dids (getReplicas of a million LFNs checks each directory once) answers what to_did does."""
    from KM3DIRAC.core.errors import InvalidLFNError
    from KM3DIRAC.core.lfn import LFNMapper

    mapper = LFNMapper()

    def one_by_one(lfn):
        try:
            return mapper.to_did(lfn)
        except InvalidLFNError as error:
            return str(error)

    many = [f"/km3net/raw/run{i % 3}/f{i}.root" for i in range(30)]
    answers = {repr(lfn): str(did) if isinstance(did, InvalidLFNError) else did
               for lfn, did in mapper.to_dids([*LFN_FORMS, *many, *LFN_FORMS])}
    assert answers == {repr(lfn): one_by_one(lfn) for lfn in [*LFN_FORMS, *many]}
    assert sum(isinstance(one_by_one(lfn), str) for lfn in LFN_FORMS) >= 15  # the refused forms are in the list

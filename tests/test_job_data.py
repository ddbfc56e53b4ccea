"""The job wrapper's data steps against the real Rucio server: inputs resolved and downloaded with checksum checks and
replica fallback, outputs stored with failover, registered with provenance, idempotently, and deferred when Rucio is
down (never lost)."""

from __future__ import annotations

import pytest

from KM3DIRAC.core.catalog import RucioCatalog
from KM3DIRAC.core.checksums import adler32_of_file
from KM3DIRAC.core.job_inputs import InputDataError, attach_replicas, download_inputs, resolve_inputs
from KM3DIRAC.core.job_outputs import (
    OutputDataError,
    OutputSpec,
    RegistrationPending,
    collect_outputs,
    register_outputs,
    registration_entries,
    store_outputs,
)

pytestmark = pytest.mark.rucio


@pytest.fixture
def catalog(rucio_client):
    return RucioCatalog(rucio_client)


def _upload(rucio_client, path, scope, lfn, rse):
    """rucio upload into the dataset of the file's directory, as a KM3NeT user would."""
    from rucio.client.uploadclient import UploadClient

    UploadClient(rucio_client).upload([{"path": str(path), "rse": rse, "did_scope": scope, "did_name": lfn,
                                        "dataset_scope": scope, "dataset_name": lfn.rsplit("/", 1)[0]}])


def test_inputs_from_a_dataset_come_from_the_close_replica_and_fall_back_on_corruption(
        rucio_client, catalog, scope_factory, local_file, session_paths, tmp_path):
    scope = scope_factory()
    run = f"/km3net/{scope}/raw/run1"
    sources = [local_file(size=10_000 + i) for i in range(4)]
    for source in sources:
        _upload(rucio_client, source, scope, f"{run}/{source.name}", "KM3-DISK-1")
    catalog.add_replicas({f"{run}/{s.name}": {"SE": "KM3-DISK-2"} for s in sources})
    for source in sources:  # the second RSE really holds the bytes too
        target = session_paths.storage_dir("KM3-DISK-2") / run.lstrip("/") / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    # corrupt the copy of the first file on the close RSE: the wrapper must notice and use the other replica
    corrupt = session_paths.storage_dir("KM3-DISK-2") / run.lstrip("/") / sources[0].name
    corrupt.write_bytes(b"x" * sources[0].stat().st_size)

    files = resolve_inputs(rucio_client, [run])
    assert sorted(f.did.name for f in files) == sorted(f"{run}/{s.name}" for s in sources)
    attach_replicas(rucio_client, files, close_rses=["KM3-DISK-2"])
    assert all(f.replicas[0][0] == "KM3-DISK-2" for f in files)
    seen = []
    download_inputs(rucio_client, files, tmp_path / "in", workers=3, progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (4, 4)
    by_name = {f.did.name.rsplit("/", 1)[-1]: f for f in files}
    for source in sources:
        assert (tmp_path / "in" / source.name).read_bytes() == source.read_bytes()
    assert by_name[sources[0].name].source_rse == "KM3-DISK-1"
    assert by_name[sources[1].name].source_rse == "KM3-DISK-2"


def test_missing_input_is_named(rucio_client, scope_factory, tmp_path):
    scope = scope_factory()
    with pytest.raises(InputDataError, match=f"/km3net/{scope}/nothing/here.root"):
        resolve_inputs(rucio_client, [f"/km3net/{scope}/nothing/here.root"])


def test_outputs_fail_over_register_with_provenance_and_retry_idempotently(rucio_client, catalog, scope_factory,
                                                                         tmp_path):
    scope = scope_factory()
    work = tmp_path / "work"
    work.mkdir()
    (work / "reco.root").write_bytes(b"reco" * 1000)
    (work / "summary.json").write_text('{"events": 12}')
    (work / "ignored.log").write_text("not an output")
    paths = collect_outputs(["*.root", "*.json"], work)
    assert [p.name for p in paths] == ["reco.root", "summary.json"]
    spec = OutputSpec(directory=f"/km3net/{scope}/reco/run1", rse="NO-SUCH-RSE", failover_rses=["KM3-DISK-2"],
                      metadata={"run_number": 1, "DetectorID": 133, "Step": "reco"},
                      provenance={"JobID": 4242, "TransformationID": 7, "TaskID": 3,
                                  "Parents": f"{scope}:/km3net/{scope}/raw/run1"})
    stored = store_outputs(rucio_client, paths, spec)
    assert {o.rse for o in stored} == {"KM3-DISK-2"}
    registered = register_outputs(catalog, registration_entries(stored, spec))
    lfn = f"/km3net/{scope}/reco/run1/reco.root"
    assert lfn in registered
    meta = rucio_client.get_metadata(scope, lfn, plugin="ALL")
    assert meta["adler32"] == adler32_of_file(work / "reco.root")
    assert (meta["run_number"], meta["JobID"], meta["Step"]) == (1, 4242, "reco")
    # findable from the Rucio side by the job id in its provenance
    assert sorted(rucio_client.list_dids(scope, [{"JobID": 4242, "name": f"/km3net/{scope}/*"}], did_type="file")) \
        == sorted([lfn, f"/km3net/{scope}/reco/run1/summary.json"])

    # the job is retried: same files, nothing registered twice
    again = store_outputs(rucio_client, paths, spec)
    assert register_outputs(catalog, registration_entries(again, spec)) == registered
    assert len(list(rucio_client.list_content(scope, f"/km3net/{scope}/reco/run1"))) == 2


def test_outputs_nowhere_to_go_are_named(rucio_client, scope_factory, tmp_path):
    (tmp_path / "a.root").write_bytes(b"a")
    spec = OutputSpec(directory=f"/km3net/{scope_factory()}/x", rse="NO-SUCH-RSE", failover_rses=["ALSO-MISSING"])
    with pytest.raises(OutputDataError, match=r"a\.root"):
        store_outputs(rucio_client, [tmp_path / "a.root"], spec)
    with pytest.raises(OutputDataError, match=r"\*\.dat"):
        collect_outputs(["*.dat"], tmp_path)


def test_registration_is_deferred_not_lost_when_rucio_is_down(rucio_server, rucio_client, catalog, scope_factory,
                                                             tmp_path):
    scope = scope_factory()
    (tmp_path / "out.root").write_bytes(b"payload" * 100)
    spec = OutputSpec(directory=f"/km3net/{scope}/out", rse="KM3-DISK-1", metadata={"Step": "merge"})
    stored = store_outputs(rucio_client, [tmp_path / "out.root"], spec)
    entries = registration_entries(stored, spec)
    rucio_server.stop_http_only()
    try:
        with pytest.raises(RegistrationPending) as pending:
            register_outputs(catalog, entries)
        assert pending.value.pending == entries
    finally:
        rucio_server.restart()
    assert register_outputs(catalog, pending.value.pending) == [f"/km3net/{scope}/out/out.root"]

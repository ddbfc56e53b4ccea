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
    seen, reported = [], []
    download_inputs(rucio_client, files, tmp_path / "in", workers=3, progress=lambda d, t: seen.append((d, t)),
                    on_bad_replica=reported.append)
    assert seen[-1] == (4, 4)
    # the corrupt copy is named and Rucio is told: declared suspicious, the replica recoverer's input
    corrupt_lfn = f"{run}/{sources[0].name}"
    (bad,) = reported
    assert (bad.did.name, bad.rse, bad.declared) == (corrupt_lfn, "KM3-DISK-2", True), bad
    assert "adler32" in bad.describe() and corrupt_lfn in bad.describe()
    answer = rucio_client.list_suspicious_replicas(rse_expression="KM3-DISK-2", younger_than=None, nattempts=None)
    suspicious = [row for chunk in answer for row in (chunk if isinstance(chunk, list) else [chunk])]  # one JSON list
    assert any(row["name"] == corrupt_lfn and row["scope"] == scope for row in suspicious), suspicious
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


def test_checks_before_the_payload_name_every_bad_output_rse(rucio_client, session_paths):
    """Unknown RSE, RSE without quota for the account, RSE closed for writing: each named with its parameter."""
    import uuid

    from KM3DIRAC.core.job_checks import output_rse_problems
    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse

    closed = f"KM3-CLOSED-{uuid.uuid4().hex[:6].upper()}"
    no_quota = f"KM3-NOQUOTA-{uuid.uuid4().hex[:6].upper()}"
    add_directory_rse(rucio_client, closed, session_paths.work_dir / "storage" / closed)
    rucio_client.update_rse(closed, {"availability_write": False})
    add_directory_rse(rucio_client, no_quota, session_paths.work_dir / "storage" / no_quota)
    rucio_client.delete_local_account_limit("root", no_quota)
    problems = output_rse_problems(rucio_client, {"KM3-DISK-1": "KM3OutputSE", "NO-SUCH-RSE": "KM3FailoverSEs",
                                                  closed: "KM3FailoverSEs", no_quota: "KM3FailoverSEs"}, "root")
    assert len(problems) == 3, problems
    assert problems[0] == "KM3FailoverSEs NO-SUCH-RSE: no such RSE in Rucio"
    assert closed in problems[1] and "not writable" in problems[1]
    assert no_quota in problems[2] and "no quota" in problems[2]
    rucio_client.set_local_account_limit("root", no_quota, 10)
    rucio_client.update_rse(closed, {"availability_write": True})
    assert output_rse_problems(rucio_client, {closed: "KM3OutputSE", no_quota: "KM3OutputSE"}, "root") == []


def test_a_proxy_shorter_than_the_job_is_refused():
    from KM3DIRAC.core.job_checks import CredentialLifetime, credential_problems, required_credential_seconds

    needed = required_credential_seconds("7200", cpu_normalisation=2.0)  # 1 h of wall time on this node + margin
    assert needed == 3600 + 900
    (problem,) = credential_problems(CredentialLifetime("the job's proxy /tmp/x509up", 3600), needed)
    assert "/tmp/x509up" in problem and "1.0 h" in problem and "1.2 h" in problem
    assert credential_problems(CredentialLifetime("proxy", 5000), needed) == []
    assert credential_problems(CredentialLifetime("proxy", 60), required_credential_seconds(None)) == []


def test_rucio_calls_are_retried_with_back_off_then_given_up(rucio_server, rucio_client):
    """A refused connection is tried again after growing pauses, a refusal by Rucio is not; both bounded."""
    from rucio.client import Client
    from rucio.common.exception import RSENotFound

    from KM3DIRAC.core.rucio_calls import RetryingClient, RucioCallPolicy, call_with_retries, is_unreachable

    policy = RucioCallPolicy(timeout=2, attempts=3, first_delay=0.5, max_delay=0.7)
    assert policy.delays() == [0.5, 0.7] and policy.worst_case_seconds() == 3 * 2 + 1.2
    client = RetryingClient(Client(timeout=policy.timeout), policy)
    assert client.whoami()["account"] == "root"
    pauses = []
    with pytest.raises(RSENotFound):  # an answer: not retried
        call_with_retries(policy, client.wrapped.get_rse, "NO-SUCH-RSE", sleep=pauses.append)
    assert pauses == []
    rucio_server.stop_http_only()
    try:
        with pytest.raises(Exception) as refused:
            call_with_retries(policy, client.wrapped.get_rse, "KM3-DISK-1", sleep=pauses.append)
        assert is_unreachable(refused.value), refused.value
        assert pauses == [0.5, 0.7]
    finally:
        rucio_server.restart()
    assert client.get_rse("KM3-DISK-1")["rse"] == "KM3-DISK-1"

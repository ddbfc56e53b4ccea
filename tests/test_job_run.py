"""`dirac-km3-job-run` as a JDL Executable would run it, with a real KM3NeT payload (km3io reading a real offline
file from km3net-testdata), against the session's Rucio server. Includes stopping Rucio in the middle of a job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.rucio

PAYLOAD = Path(__file__).parent / "payloads" / "count_events.py"
COMMAND = Path(sys.executable).parent / "dirac-km3-job-run"


@pytest.fixture
def raw_run(rucio_client, scope_factory, tmp_path):
    """A run dataset of two real offline files, uploaded with rucio upload."""
    from km3net_testdata import data_path
    from rucio.client.uploadclient import UploadClient

    scope = scope_factory()
    run = f"/km3net/{scope}/offline/KM3NeT_00000049/run11291"
    items = []
    for part in (1, 2):
        copy = tmp_path / f"KM3NeT_00000049_00011291.{part}.offline.root"
        shutil.copy(data_path("offline/km3net_offline.root"), copy)
        items.append({"path": str(copy), "rse": "KM3-DISK-1", "did_scope": scope, "did_name": f"{run}/{copy.name}",
                      "dataset_scope": scope, "dataset_name": run})
    UploadClient(rucio_client).upload(items)
    for item in items:
        rucio_client.set_metadata_bulk(scope, item["did_name"], {"run_number": 11291, "DetectorID": 49})
    return scope, run


def _job_command(cfg: Path, scope: str, run: str, *payload: str) -> list[str]:
    return [str(COMMAND), "--cfg", str(cfg), f"--inputs={run}", "--outputs=summary_*.json",
            f"--output-path=/km3net/{scope}/products/run11291", "--output-se=KM3-DISK-2",
            '--metadata={"run_number": 11291, "DetectorID": 49, "Step": "count"}',
            "--", sys.executable, str(PAYLOAD), *payload]


def _env(job_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env["JOBID"] = job_id  # DIRAC's JobWrapper sets it; 0 = no job state service to report to
    return env


def test_job_run_downloads_runs_and_registers(dirac_cs, raw_run, rucio_client, tmp_path):
    scope, run = raw_run
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    workdir = tmp_path / "job"
    workdir.mkdir()
    result = subprocess.run(_job_command(cfg, scope, run), cwd=workdir, capture_output=True, text=True,
                            timeout=300, env=_env("0"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Downloading inputs 2/2" in result.stdout and "Registered" in result.stdout, result.stdout
    products = f"/km3net/{scope}/products/run11291"
    names = sorted(d["name"] for d in rucio_client.list_content(scope, products))
    assert names == [f"{products}/summary_KM3NeT_00000049_00011291.{p}.offline.json" for p in (1, 2)]
    summary = json.loads((workdir / "summary_KM3NeT_00000049_00011291.1.offline.json").read_text())
    assert summary["events"] == 10
    meta = rucio_client.get_metadata(scope, names[0], plugin="ALL")
    assert (meta["run_number"], meta["DetectorID"], meta["Step"]) == (11291, 49, "count")
    assert meta["Parents"] == run
    (replica,) = rucio_client.list_replicas([{"scope": scope, "name": names[0]}])
    assert replica["rses"].keys() == {"KM3-DISK-2"}


def test_rucio_stopped_mid_job_loses_nothing(dirac_cs, raw_run, rucio_server, rucio_client, tmp_path):
    """Rucio goes down while the payload runs: the outputs are stored, their registration becomes an RMS request
    that KM3DIRAC's operation handler completes once Rucio is back."""
    from DIRAC.RequestManagementSystem.Client.Request import Request

    from KM3DIRAC.RequestManagementSystem.Agent.RequestOperations.KM3RegisterOutputs import KM3RegisterOutputs

    scope, run = raw_run
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    workdir = tmp_path / "job"
    workdir.mkdir()
    go = tmp_path / "go"
    job = subprocess.Popen(_job_command(cfg, scope, run, "--wait-for", str(go)), cwd=workdir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env("0"))
    try:
        deadline = time.monotonic() + 120
        while len(list(workdir.glob("*.root"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list(workdir.glob("*.root"))) == 2, "inputs never arrived"
        rucio_server.stop_http_only()
        go.touch()
        output, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
        if not rucio_server.is_alive():
            rucio_server.restart()
    assert job.returncode == 0, output
    assert "Registration pending" in output, output
    request_file = workdir / "km3dirac_outputs_request.json"
    request = Request(json.loads(request_file.read_text()))
    (operation,) = list(request)
    assert operation.Type == "KM3RegisterOutputs" and len(operation) == 2
    products = f"/km3net/{scope}/products/run11291"
    assert not list(rucio_client.list_dids(scope, [{"name": f"{products}/*"}], did_type="file"))

    # Rucio is back (restarted above): the RequestExecutingAgent runs the handler
    handler = KM3RegisterOutputs(operation)
    assert handler()["OK"]
    assert [f.Status for f in operation] == ["Done", "Done"]
    registered = sorted(rucio_client.list_dids(scope, [{"name": f"{products}/*"}], did_type="file"))
    assert len(registered) == 2
    assert rucio_client.get_metadata(scope, registered[0], plugin="JSON")["Step"] == "count"
    # the request runs again (an agent retry): nothing is registered twice
    for op_file in operation:
        op_file.Status = "Waiting"
    assert handler()["OK"]
    assert sorted(rucio_client.list_dids(scope, [{"name": f"{products}/*"}], did_type="file")) == registered


@pytest.mark.parametrize("detector_on", ["files", "run dataset"])
def test_job_execution_coordinator_is_found_by_the_job_wrapper_and_moves_the_data(
        dirac_cs, raw_run, rucio_client, tmp_path, monkeypatch, detector_on):
    """DIRAC's JobWrapper loads the coordinator through ObjectLoader: KM3DIRAC's must be the one it gets, and its
    pre/post steps bring the inputs in and the outputs out around the payload. The outputs inherit the inputs'
    run and detector, also where the detector is on the run dataset only (dirac-km3-ingest's default)."""
    from DIRAC.Core.Utilities.ObjectLoader import ObjectLoader

    if detector_on == "run dataset":
        scope, run = raw_run
        for name in rucio_client.list_content(scope, run):
            rucio_client.delete_metadata(scope, name["name"], "DetectorID")
        rucio_client.set_metadata_bulk(scope, run, {"DetectorID": 49})

    loaded = ObjectLoader().loadObject("WorkloadManagementSystem.JobWrapper.JobExecutionCoordinator",
                                       "JobExecutionCoordinator")
    assert loaded["OK"] and loaded["Value"].__module__.startswith("KM3DIRAC."), loaded
    scope, run = raw_run
    monkeypatch.chdir(tmp_path)
    job_args = {"JobID": 0, "KM3InputData": run, "KM3OutputData": "summary_*.json",
                "KM3OutputPath": f"/km3net/{scope}/coordinated", "KM3OutputSE": "KM3-DISK-1",
                "KM3OutputMetadata": '{"Step": "count"}', "PRODUCTION_ID": "00000012", "JOB_ID": "00000034"}
    coordinator = loaded["Value"](jobArgs=job_args, ceArgs={})
    pre = coordinator.preProcess("payload", {"A": "1"})
    assert pre["OK"] and pre["Value"] == {"command": "payload", "env": {"A": "1"}}, pre
    subprocess.run([sys.executable, str(PAYLOAD)], check=True, cwd=tmp_path)
    assert coordinator.postProcess()["OK"]
    outputs = sorted(rucio_client.list_dids(scope, [{"name": f"/km3net/{scope}/coordinated/*"}], did_type="file"))
    assert len(outputs) == 2
    meta = rucio_client.get_metadata(scope, outputs[0], plugin="ALL")
    assert (meta["TransformationID"], meta["TaskID"], meta["Step"]) == (12, 34, "count")
    # inherited from the inputs, which all belong to run 11291 of detector 49
    assert (meta["run_number"], meta["DetectorID"]) == (11291, 49)


def test_job_execution_coordinator_names_missing_input(dirac_cs, scope_factory, tmp_path, monkeypatch):
    from KM3DIRAC.WorkloadManagementSystem.JobWrapper.JobExecutionCoordinator import JobExecutionCoordinator

    monkeypatch.chdir(tmp_path)
    missing = f"/km3net/{scope_factory()}/raw/none"
    result = JobExecutionCoordinator({"JobID": 0, "KM3InputData": missing}, {}).preProcess("x", {})
    assert not result["OK"] and missing in result["Message"]


def _bounded_cfg(dirac_cs: str, timeout: float, attempts: int, delay: float) -> str:
    """The session's CS with a short Rucio call policy in the catalog section (what a site sets in its CS)."""
    return dirac_cs.replace("CatalogType = RucioFileCatalog",
                            f"CatalogType = RucioFileCatalog\n      Timeout = {timeout}\n      Attempts = {attempts}\n"
                            f"      RetryDelay = {delay}", 1)


def test_bad_output_parameters_fail_the_job_before_its_payload(dirac_cs, raw_run, tmp_path):
    """Unknown output and failover RSEs and an output path field without a value: all named, nothing downloaded,
    the payload never started."""
    scope, run = raw_run
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    workdir = tmp_path / "job"
    workdir.mkdir()
    marker = tmp_path / "payload-ran"
    command = [str(COMMAND), "--cfg", str(cfg), f"--inputs={run}", "--outputs=summary_*.json",
               f"--output-path=/km3net/{scope}/products/run<run_number>", "--output-se=NO-SUCH-RSE",
               "--failover-se=KM3-DISK-2,ALSO-MISSING", "--", "touch", str(marker)]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, env=_env("0"),
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Failed before the payload: KM3OutputSE NO-SUCH-RSE: no such RSE in Rucio; KM3FailoverSEs ALSO-MISSING: " \
           "no such RSE in Rucio" in output, output
    assert not marker.exists() and not list(workdir.glob("*.root"))

    # the RSEs are right but the path asks for a metadata key that neither the job nor its inputs give
    command[5:8] = [f"--output-path=/km3net/{scope}/products/<Campaign>", "--output-se=KM3-DISK-1",
                    "--failover-se=KM3-DISK-2"]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, env=_env("0"),
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "no value for ['Campaign']" in output, output
    assert not marker.exists() and not list(workdir.glob("*.root"))

    # a scope nobody created: named before the payload, not found by the registration after it
    command[5] = "--output-path=/km3net/nosuchscope/products"
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=300, env=_env("0"),
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "scope nosuchscope does not exist in Rucio" in output, output
    assert not marker.exists()


def test_hung_rucio_defers_registration_within_the_call_bound(dirac_cs, raw_run, rucio_server, rucio_client,
                                                               tmp_path):
    """Rucio stops answering (process stopped, port open) while the payload runs: with Timeout 2 s and 2 attempts
    the job leaves its registration to the RMS within seconds instead of waiting rucio-clients' 600 s."""
    from DIRAC.RequestManagementSystem.Client.Request import Request

    from KM3DIRAC.RequestManagementSystem.Agent.RequestOperations.KM3RegisterOutputs import KM3RegisterOutputs

    scope, run = raw_run
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(_bounded_cfg(dirac_cs, timeout=2, attempts=2, delay=1))
    workdir = tmp_path / "job"
    workdir.mkdir()
    go = tmp_path / "go"
    job = subprocess.Popen(_job_command(cfg, scope, run, "--wait-for", str(go)), cwd=workdir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env("0"))
    stopped = False
    try:
        deadline = time.monotonic() + 120
        while len(list(workdir.glob("*.root"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(list(workdir.glob("*.root"))) == 2, "inputs never arrived"
        os.killpg(rucio_server.process.pid, signal.SIGSTOP)
        stopped = True
        go.touch()
        started = time.monotonic()
        output, _ = job.communicate(timeout=120)
        took = time.monotonic() - started
    finally:
        if job.poll() is None:
            job.kill()
        if stopped:
            os.killpg(rucio_server.process.pid, signal.SIGCONT)
    assert job.returncode == 0, output
    assert "Registration pending" in output and "timed out" in output, output
    # payload (~3 s) + one registration call: 2 tries of 2 s and a 1 s pause, with room for a loaded machine
    assert took < 45, f"{took:.0f} s"
    request = Request(json.loads((workdir / "km3dirac_outputs_request.json").read_text()))
    (operation,) = list(request)
    assert KM3RegisterOutputs(operation)()["OK"]
    products = f"/km3net/{scope}/products/run11291"
    assert len(list(rucio_client.list_dids(scope, [{"name": f"{products}/*"}], did_type="file"))) == 2

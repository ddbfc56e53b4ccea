"""Jobs on the local sandbox (real DIRAC services, real JobWrapper) moving their data through Rucio: a user job
submitted with dirac-wms-job-submit from KM3DIRAC's JDL template reads a real KM3NeT file fetched from Rucio and
registers its product, with ApplicationStatus and provenance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "payloads" / "count_events.py"
JOB_TIMEOUT = 240


def _wait_for_done(sandbox: RunningSandbox, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    attributes = {}
    while time.monotonic() < deadline:
        attributes = sandbox.dirac_client("job-attributes", job_id)
        if attributes["status"] in ("Done", "Failed", "Killed"):
            return attributes
        time.sleep(2)
    pytest.fail(f"job {job_id} not finished after {JOB_TIMEOUT} s: {attributes}")


@pytest.mark.sandbox
def test_user_job_from_the_template_reads_rucio_data_and_registers_its_product(
        local_sandbox: RunningSandbox, tmp_path: Path):
    from km3net_testdata import data_path

    scope = f"u{uuid.uuid4().hex[:10]}"
    run = f"/km3net/{scope}/offline/KM3NeT_00000049/run11291"
    source = tmp_path / "KM3NeT_00000049_00011291.offline.root"
    shutil.copy(data_path("offline/km3net_offline.root"), source)
    local_sandbox.dirac_client("upload-km3net-file", scope, f"{run}/{source.name}", str(source), "KM3-DISK-1",
                               json.dumps({"run_number": 11291, "DetectorID": 49}))
    shutil.copy(PAYLOAD, tmp_path / "count_events.py")
    products = f"/km3net/{scope}/products/run11291"
    rendered = local_sandbox.run(
        "dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=count", "-p", "Command=python count_events.py",
        "-p", "InputSandbox=count_events.py", "-p", f"InputData={run}", "-p", "OutputPatterns=summary_*.json",
        "-p", f"OutputPath={products}", "-p", "OutputSE=KM3-DISK-2", "-p", "CPUTime=600", "--output=job.jdl",
        cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr

    submitted = local_sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"JobID = (\d+)", submitted.stdout).group(1)
    attributes = _wait_for_done(local_sandbox, job_id)
    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    log = "\n".join(p.read_text() for p in (tmp_path / "out" / job_id).glob("std.*")) if fetched.returncode == 0 \
        else fetched.stdout
    assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), (attributes, log)

    found = local_sandbox.dirac_client("rucio-files", scope, f"{products}/*", json.dumps({"JobID": int(job_id)}))
    (name, meta), = found["files"].items()
    assert name == f"{products}/summary_KM3NeT_00000049_00011291.offline.json"
    assert (meta["run_number"], meta["DetectorID"], meta["Step"], meta["Analysis"]) == ("11291", "49", "analysis",
                                                                                        "count")
    assert meta["Parents"] == run


@pytest.mark.sandbox
def test_job_input_data_from_a_hash_path_rse_uploaded_by_plain_rucio(local_sandbox: RunningSandbox, tmp_path: Path):
    """A flat-name file put by ``rucio upload`` on an RSE with Rucio's default (hash) path algorithm, given as the
    job's DIRAC InputData: the JobWrapper's input-data resolution (policy RucioInputData) downloads it."""
    from KM3DIRAC.core.checksums import adler32_of_file

    scope = f"CORSIKA_t{uuid.uuid4().hex[:8]}"
    local_sandbox.dirac_client("add-scope", scope)
    source = tmp_path / f"KM3NeT_00000049_00011291.corsika.{uuid.uuid4().hex[:4]}.root"
    source.write_bytes(uuid.uuid4().bytes * 4096)
    uploaded = local_sandbox.run("rucio", "upload", "--rse", "KM3-HASH-1", "--scope", scope, str(source))
    assert uploaded.returncode == 0, uploaded.stdout + uploaded.stderr
    assert not (local_sandbox.paths.storage_dir("KM3-HASH-1") / source.name).exists()  # a hash path, not flat
    (tmp_path / "check.sh").write_text(f"#!/bin/sh\npython3 -c \"import zlib; print('adler32', '%08x' % "
                                       f"zlib.adler32(open('{source.name}', 'rb').read()))\"\n")
    (tmp_path / "job.jdl").write_text(f"""[
  JobName = "hash-rse-input";
  Executable = "/bin/sh";
  Arguments = "check.sh";
  InputSandbox = {{"check.sh"}};
  InputData = {{"LFN:/km3net/{scope}:{source.name}"}};
  StdOutput = "std.out";
  StdError = "std.err";
  OutputSandbox = {{"std.out", "std.err"}};
  CPUTime = 600;
]
""")
    submitted = local_sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"JobID = (\d+)", submitted.stdout).group(1)
    attributes = _wait_for_done(local_sandbox, job_id)
    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    out = (tmp_path / "out" / job_id / "std.out").read_text() if fetched.returncode == 0 else fetched.stdout
    assert attributes["status"] == "Done", (attributes, out)
    assert f"adler32 {adler32_of_file(source)}" in out, out


@pytest.mark.sandbox
def test_a_job_with_a_bad_output_se_fails_before_its_payload_and_says_why(local_sandbox: RunningSandbox,
                                                                          tmp_path: Path):
    """The output RSE does not exist: the job fails without running its payload (no CPU spent on it), and its
    ApplicationStatus names the parameter and the RSE instead of staying Running/Unknown."""
    rendered = local_sandbox.run(
        "dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=bad-se", "-p", "Command=touch payload-ran",
        "-p", "InputSandbox=", "-p", "InputData=", "-p", "OutputPatterns=payload-ran",
        "-p", f"OutputPath=/km3net/u{uuid.uuid4().hex[:10]}/products", "-p", "OutputSE=NO-SUCH-RSE",
        "-p", "CPUTime=600", "--output=job.jdl", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    submitted = local_sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"JobID = (\d+)", submitted.stdout).group(1)
    attributes = _wait_for_done(local_sandbox, job_id)
    assert attributes["status"] == "Failed", attributes
    assert attributes["application_status"] == \
        "Failed before the payload: KM3OutputSE NO-SUCH-RSE: no such RSE in Rucio", attributes
    # the payload never started: the job's ApplicationStatus history has no "Running"
    answer = subprocess.run([sys.executable, str(ROOT / "tests" / "sandbox_clients.py"), "application-history", job_id],
                            env=local_sandbox.user_env(), capture_output=True, text=True, timeout=120, check=False)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    history = json.loads(answer.stdout.strip().splitlines()[-1])["application_status"]
    assert "Running" not in history and attributes["application_status"] in history, history


DEFERRED_DONE_TIMEOUT = 300


@pytest.mark.sandbox
def test_registration_deferred_while_rucio_was_down_completes_soon_after_and_the_job_reaches_done(
        local_sandbox: RunningSandbox, tmp_path: Path):
    """Rucio stops while the payload runs: the outputs stay stored and an RMS request is left; Rucio comes back:
    within FailoverRequestDelay (1 min in the sandbox) and a few agent cycles the RequestExecutingAgent registers
    them, finalizeRequest sets the job Done (job parameters are kept without OpenSearch), and the user reads the
    output DIDs back as the job parameter KM3OutputDIDs."""
    from km3net_testdata import data_path

    from KM3DIRAC.sandbox.local_sandbox import Sandbox

    scope = f"u{uuid.uuid4().hex[:10]}"
    run = f"/km3net/{scope}/offline/KM3NeT_00000049/run11291"
    source = tmp_path / "KM3NeT_00000049_00011291.offline.root"
    shutil.copy(data_path("offline/km3net_offline.root"), source)
    local_sandbox.dirac_client("upload-km3net-file", scope, f"{run}/{source.name}", str(source), "KM3-DISK-1",
                               json.dumps({"run_number": 11291, "DetectorID": 49}))
    shutil.copy(PAYLOAD, tmp_path / "count_events.py")
    marker = tmp_path / "rucio-is-down"
    products = f"/km3net/{scope}/products/run11291"
    rendered = local_sandbox.run(
        "dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=deferred",
        "-p", f"Command=python count_events.py --wait-for {marker}", "-p", "InputSandbox=count_events.py",
        "-p", f"InputData={run}", "-p", "OutputPatterns=summary_*.json", "-p", f"OutputPath={products}",
        "-p", "OutputSE=KM3-DISK-2", "-p", "CPUTime=600", "--output=job.jdl", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    submitted = local_sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = re.search(r"JobID = (\d+)", submitted.stdout).group(1)

    sandbox = Sandbox(local_sandbox.directory)
    deadline = time.monotonic() + JOB_TIMEOUT
    attributes = {}
    while time.monotonic() < deadline:  # the payload runs (inputs are downloaded): Rucio goes down now
        attributes = local_sandbox.dirac_client("job-attributes", job_id)
        if attributes["application_status"] == "Running" or attributes["status"] in ("Done", "Failed"):
            break
        time.sleep(1)
    assert attributes["application_status"] == "Running", attributes
    sandbox.stop_rucio_server()
    try:
        marker.touch()
        while time.monotonic() < deadline:
            attributes = local_sandbox.dirac_client("job-attributes", job_id)
            if attributes["status"] in ("Completed", "Done", "Failed"):
                break
            time.sleep(1)
        assert (attributes["status"], attributes["application_status"]) == ("Completed", "Registration pending"), \
            attributes
    finally:
        sandbox.start_rucio_server()
    rucio_back = time.monotonic()
    while time.monotonic() < rucio_back + DEFERRED_DONE_TIMEOUT:
        attributes = local_sandbox.dirac_client("job-attributes", job_id)
        if attributes["status"] in ("Done", "Failed"):
            break
        time.sleep(3)
    waited = time.monotonic() - rucio_back
    assert attributes["status"] == "Done", (attributes, f"{waited:.0f} s after Rucio came back")
    print(f"deferred registration: job {job_id} Done {waited:.0f} s after Rucio answered again")

    found = local_sandbox.dirac_client("rucio-files", scope, f"{products}/*", json.dumps({"JobID": int(job_id)}))
    expected = f"{products}/summary_KM3NeT_00000049_00011291.offline.json"
    assert list(found["files"]) == [expected]
    parameters = local_sandbox.run("dirac-wms-job-parameters", job_id)
    assert parameters.returncode == 0, parameters.stdout + parameters.stderr
    assert re.search(rf"'KM3OutputDIDs': '{re.escape(expected)}'", parameters.stdout), parameters.stdout
    assert "'PendingRequest'" in parameters.stdout  # written by finalizeRequest, which used to fail here

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
from sandbox_clients import (
    OFFLINE_RUN_FILE,
    run_job_through_rucio_outage,
    submit_jdl,
    submit_user_analysis_job,
    upload_offline_run_file,
    wait_for_job,
)
from sandbox_fixtures import RunningSandbox

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "payloads" / "count_events.py"


@pytest.mark.sandbox
def test_user_job_from_the_template_reads_rucio_data_and_registers_its_product(
        local_sandbox: RunningSandbox, tmp_path: Path):
    scope, run = upload_offline_run_file(local_sandbox, tmp_path)
    shutil.copy(PAYLOAD, tmp_path / "count_events.py")
    products = f"/km3net/{scope}/products/run11291"
    job_id = submit_user_analysis_job(
        local_sandbox, tmp_path, Name="count", Command="python count_events.py", InputSandbox="count_events.py",
        InputData=run, OutputPatterns="summary_*.json", OutputPath=products, OutputSE="KM3-DISK-2")
    attributes = wait_for_job(local_sandbox, job_id)
    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    log = "\n".join(p.read_text() for p in (tmp_path / "out" / job_id).glob("std.*")) if fetched.returncode == 0 \
        else fetched.stdout
    assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), (attributes, log)

    found = local_sandbox.dirac_client("rucio-files", scope, f"{products}/*", json.dumps({"JobID": int(job_id)}))
    (name, meta), = found["files"].items()
    assert name == f"{products}/summary_{OFFLINE_RUN_FILE.removesuffix('.root')}.json"
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
    job_id = submit_jdl(local_sandbox, tmp_path)
    attributes = wait_for_job(local_sandbox, job_id)
    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    out = (tmp_path / "out" / job_id / "std.out").read_text() if fetched.returncode == 0 else fetched.stdout
    assert attributes["status"] == "Done", (attributes, out)
    assert f"adler32 {adler32_of_file(source)}" in out, out


@pytest.mark.sandbox
def test_a_job_with_a_bad_output_se_fails_before_its_payload_and_says_why(local_sandbox: RunningSandbox,
                                                                          tmp_path: Path):
    """The output RSE does not exist: the job fails without running its payload (no CPU spent on it), and its
    ApplicationStatus names the parameter and the RSE instead of staying Running/Unknown."""
    job_id = submit_user_analysis_job(
        local_sandbox, tmp_path, Name="bad-se", Command="touch payload-ran", InputSandbox="", InputData="",
        OutputPatterns="payload-ran", OutputPath=f"/km3net/u{uuid.uuid4().hex[:10]}/products",
        OutputSE="NO-SUCH-RSE")
    attributes = wait_for_job(local_sandbox, job_id)
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
    them and make the job's ApplicationStatus "Registered", finalizeRequest sets the job Done (job parameters are kept
    without OpenSearch), and the user reads the output DIDs back as the job parameter KM3OutputDIDs."""
    scope, run = upload_offline_run_file(local_sandbox, tmp_path)
    shutil.copy(PAYLOAD, tmp_path / "count_events.py")
    products = f"/km3net/{scope}/products/run11291"
    job_id, _ = run_job_through_rucio_outage(local_sandbox, tmp_path, "deferred", run, products)
    rucio_back = time.monotonic()
    attributes = wait_for_job(local_sandbox, job_id, timeout=DEFERRED_DONE_TIMEOUT, poll=3)
    waited = time.monotonic() - rucio_back
    assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), (
        attributes, f"{waited:.0f} s after Rucio came back")
    print(f"deferred registration: job {job_id} Done {waited:.0f} s after Rucio answered again")

    found = local_sandbox.dirac_client("rucio-files", scope, f"{products}/*", json.dumps({"JobID": int(job_id)}))
    expected = f"{products}/summary_{OFFLINE_RUN_FILE.removesuffix('.root')}.json"
    assert list(found["files"]) == [expected]
    parameters = local_sandbox.run("dirac-wms-job-parameters", job_id)
    assert parameters.returncode == 0, parameters.stdout + parameters.stderr
    assert re.search(rf"'KM3OutputDIDs': '{re.escape(expected)}'", parameters.stdout), parameters.stdout
    assert "'PendingRequest'" in parameters.stdout  # written by finalizeRequest, which used to fail here

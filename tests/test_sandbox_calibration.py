"""Calibrations in real jobs on the local sandbox (issue 14): calibration files registered with `dirac-km3-calib`,
two user jobs submitted with dirac-wms-job-submit asking for `KM3Calibration`: the one whose run is covered gets the
file (environment variable, km3_calibration.json) and records its DID in its output's provenance; the other fails
before its payload, its ApplicationStatus naming the kind, the version and the run."""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "payloads" / "show_calibration.py"
JOB_TIMEOUT = 240
BASE = "/km3net/calibration"  # the default BasePath: the sandbox's CS does not set one


def _wait(sandbox: RunningSandbox, job_ids: list[str]) -> dict[str, dict]:
    deadline = time.monotonic() + JOB_TIMEOUT
    attributes: dict[str, dict] = {}
    while time.monotonic() < deadline:
        attributes = {job_id: sandbox.dirac_client("job-attributes", job_id) for job_id in job_ids}
        if all(a["status"] in ("Done", "Failed", "Killed") for a in attributes.values()):
            return attributes
        time.sleep(3)
    pytest.fail(f"jobs not finished after {JOB_TIMEOUT} s: {attributes}")


def _submit(sandbox: RunningSandbox, workdir: Path, scope: str, run_dataset: str, calibration: str) -> str:
    workdir.mkdir()
    shutil.copy(PAYLOAD, workdir / PAYLOAD.name)
    rendered = sandbox.run(
        "dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=calib", "-p", f"Command=python {PAYLOAD.name}",
        "-p", f"InputSandbox={PAYLOAD.name}", "-p", f"InputData={run_dataset}", "-p",
        "OutputPatterns=seen_calibration.json", "-p", f"OutputPath=/km3net/{scope}/products/{workdir.name}",
        "-p", "OutputSE=KM3-DISK-2", "-p", "CPUTime=600", "--output=job.jdl", cwd=workdir)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    jdl = (workdir / "job.jdl").read_text().rstrip()
    assert jdl.endswith("]")
    (workdir / "job.jdl").write_text(f'{jdl[:-1]}  KM3Calibration = {{"{calibration}"}};\n]\n')
    submitted = sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=workdir)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return re.search(r"JobID = (\d+)", submitted.stdout).group(1)


@pytest.mark.sandbox
def test_sandbox_jobs_get_their_runs_calibration_or_fail_before_the_payload(local_sandbox: RunningSandbox,
                                                                             tmp_path: Path):
    import subprocess

    detector = random.randint(100_000, 99_999_999)  # a detector of this test alone: no overlap with the demo's
    scope = f"c{uuid.uuid4().hex[:10]}"
    add_scope = ("from rucio.client import Client\nfrom rucio.common.exception import Duplicate\nclient = Client()\n"
                 f"for scope in ('calibration', {scope!r}):\n"
                 "    try:\n        client.add_scope(client.account, scope)\n    except Duplicate:\n        pass\n")
    created = subprocess.run([sys.executable, "-c", add_scope], env=local_sandbox.user_env(), capture_output=True,
                             text=True, timeout=120, check=False)
    assert created.returncode == 0, created.stderr
    name = f"KM3NeT_{detector:08d}_D_1.0.0_00000100_00000199_1.t0.txt"
    (tmp_path / name).write_text(f"t0 of detector {detector} runs 100..199\n")
    registered = local_sandbox.run("dirac-km3-calib", "register", name, cwd=tmp_path)
    assert registered.returncode == 0, registered.stdout + registered.stderr
    runs = {}
    for run in (199, 200):  # the last run of the period, and the first after it
        source = tmp_path / f"KM3NeT_{detector:08d}_{run:08d}.root"
        source.write_bytes(uuid.uuid4().bytes * 64)
        runs[run] = f"/km3net/{scope}/raw/run{run}"
        local_sandbox.dirac_client("upload-km3net-file", scope, f"{runs[run]}/{source.name}", str(source),
                                   "KM3-DISK-1", json.dumps({"run_number": run, "DetectorID": detector}))
    covered = _submit(local_sandbox, tmp_path / "covered", scope, runs[199], "t0:1.0.0")
    uncovered = _submit(local_sandbox, tmp_path / "uncovered", scope, runs[200], "t0:1.0.0")
    attributes = _wait(local_sandbox, [covered, uncovered])

    assert (attributes[covered]["status"], attributes[covered]["application_status"]) == ("Done", "Registered"), \
        attributes
    did = f"calibration:{BASE}/t0/1.0.0/{name}"
    found = local_sandbox.dirac_client("rucio-files", scope, f"/km3net/{scope}/products/covered/*")
    ((output, meta),) = found["files"].items()
    assert output.endswith("seen_calibration.json") and meta["Calibrations"] == did, meta
    fetched = local_sandbox.run("dirac-dms-get-file", output, cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    seen = json.loads((tmp_path / "seen_calibration.json").read_text())
    assert seen["contents"]["KM3_CALIB_T0"] == f"t0 of detector {detector} runs 100..199\n"
    assert seen["file"]["run"] == 199 and seen["file"]["calibrations"]["t0"]["did"] == did

    assert attributes[uncovered]["status"] == "Failed", attributes
    status = attributes[uncovered]["application_status"]
    # the wrappers' failure status (issue 11): why, before the payload, naming the kind, the version and the run
    assert status.startswith("Failed before the payload: no calibration") and "t0:1.0.0" in status \
        and "run 200" in status, attributes
    assert not local_sandbox.dirac_client("rucio-files", scope, f"/km3net/{scope}/products/uncovered/*")["files"]

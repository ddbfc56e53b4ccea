"""KM3DIRAC jobs through a real DiracX 0.7 beside the sandbox's DIRAC 9.1 (``dirac-km3-sandbox up --diracx``).

DiracX shares DIRAC's JobDB, JobLoggingDB, TaskQueueDB and SandboxMetadataDB: a job DiracX accepts is optimised,
matched and run by DIRAC's optimizers and JobAgent; the job wrappers' status updates and parameters go back through
DiracX (DIRAC's FutureClient for JobStateUpdate). Two submission paths, as a user takes them: diracx-cli's
``dirac jobs submit`` and KM3DIRAC's ``dirac-km3-jdl-render --submit-diracx`` (diracx-client with the proxy's token).
"""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

pytestmark = pytest.mark.diracx

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "payloads" / "count_events.py"
JOB_TIMEOUT = 300
INPUT_NAME = "KM3NeT_00000049_00011291.offline.root"
#: the ApplicationStatus stages KM3DIRAC's wrapper reports for a job with one input and one output
KM3_STAGES = ["Downloading inputs 0/1", "Downloading inputs 1/1", "Running", "Uploading outputs 1/1", "Registered"]


@dataclass(frozen=True)
class SubmittedJob:
    job_id: int
    products: str
    scope: str


def _render(sandbox: RunningSandbox, work: Path, run: str, products: str, name: str, *extra: str):
    return sandbox.run("dirac-km3-jdl-render", "user-analysis.jdl", "-p", f"Name={name}",
                       "-p", f"InputData={run}", "-p", "OutputPatterns=summary_*.json", "-p", f"OutputPath={products}",
                       "-p", "OutputSE=KM3-DISK-2", "-p", "CPUTime=600", *extra, cwd=work)


@pytest.fixture(scope="module")
def diracx_jobs(diracx_sandbox: RunningSandbox, tmp_path_factory) -> dict[str, SubmittedJob]:
    """One input file in Rucio; a job on it submitted each way, both at once (they run side by side)."""
    from km3net_testdata import data_path

    work = tmp_path_factory.mktemp("diracx-jobs")
    scope = f"u{uuid.uuid4().hex[:10]}"
    run = f"/km3net/{scope}/offline/KM3NeT_00000049/run11291"
    shutil.copy(data_path("offline/km3net_offline.root"), work / INPUT_NAME)
    shutil.copy(PAYLOAD, work / PAYLOAD.name)
    diracx_sandbox.dirac_client("upload-km3net-file", scope, f"{run}/{INPUT_NAME}", str(work / INPUT_NAME),
                                "KM3-DISK-1", json.dumps({"run_number": 11291, "DetectorID": 49}))
    jobs = {}

    # diracx-cli uploads no input sandbox: the payload is read where it lies (the JobAgent runs on this machine)
    products = f"/km3net/{scope}/products-cli/run11291"
    rendered = _render(diracx_sandbox, work, run, products, "cli", "-p", f"Command=python {work / PAYLOAD.name}",
                       "--output=job.jdl")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    submitted = diracx_sandbox.run("dirac", "jobs", "submit", "job.jdl", cwd=work)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    jobs["dirac jobs submit"] = SubmittedJob(int(re.search(r"ids: (\d+)", submitted.stdout).group(1)), products,
                                             scope)

    # KM3DIRAC's path uploads the input sandbox to DiracX's store; DIRAC's SandboxStore hands it to the JobWrapper
    products = f"/km3net/{scope}/products-km3/run11291"
    submitted = _render(diracx_sandbox, work, run, products, "km3", "-p", f"Command=python {PAYLOAD.name}",
                        "-p", f"InputSandbox={PAYLOAD.name}", "--submit-diracx")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    jobs["dirac-km3-jdl-render --submit-diracx"] = SubmittedJob(
        int(re.search(r"JobID = (\d+)", submitted.stdout).group(1)), products, scope)
    return jobs


def _search(sandbox: RunningSandbox, job_id: int, *parameters: str) -> dict:
    """``dirac jobs search`` (diracx-cli) for one job, as its JSON."""
    options = [option for parameter in ("JobID", *parameters) for option in ("--parameter", parameter)]
    found = sandbox.run("dirac", "jobs", "search", *options, "--condition", f"JobID eq {job_id}")
    assert found.returncode == 0, found.stdout + found.stderr
    (job,) = json.loads(found.stdout)
    return job


def _wait_for_final(sandbox: RunningSandbox, job_id: int) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    job = {}
    while time.monotonic() < deadline:
        job = _search(sandbox, job_id, "Status", "MinorStatus", "ApplicationStatus")
        if job["Status"] in ("Done", "Failed", "Killed"):
            return job
        time.sleep(3)
    pytest.fail(f"job {job_id} not finished after {JOB_TIMEOUT} s: {job}")


def test_dirac_proxy_init_embeds_a_diracx_token_that_diracx_accepts(diracx_sandbox: RunningSandbox,
                                                                     tmp_path: Path):
    certificates = diracx_sandbox.paths.certificates
    proxy = tmp_path / "proxy.pem"
    made = diracx_sandbox.run("dirac-proxy-init", "-C", str(certificates.user_cert), "-K", str(certificates.user_key),
                              "-g", "km3net_user", "-u", str(proxy), "-N")
    assert made.returncode == 0, made.stdout + made.stderr
    assert "-----BEGIN DIRACX-----" in proxy.read_text()
    env = {**diracx_sandbox.user_env(), "X509_USER_PROXY": str(proxy)}
    import subprocess
    import sys

    whoami = subprocess.run([str(Path(sys.executable).parent / "dirac-diracx-whoami")], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert whoami.returncode == 0, whoami.stdout + whoami.stderr
    user = json.loads(whoami.stdout[whoami.stdout.index("{"):])
    assert (user["preferred_username"], user["dirac_group"], user["vo"]) == ("km3user", "km3net_user", "km3net")


@pytest.mark.parametrize("path", ["dirac jobs submit", "dirac-km3-jdl-render --submit-diracx"])
def test_job_submitted_through_diracx_runs_to_done_with_its_output_in_rucio(
        diracx_sandbox: RunningSandbox, diracx_jobs: dict[str, SubmittedJob], path: str):
    job = diracx_jobs[path]
    final = _wait_for_final(diracx_sandbox, job.job_id)
    assert (final["Status"], final["MinorStatus"], final["ApplicationStatus"]) == (
        "Done", "Execution Complete", "Registered"), final

    # the stages of KM3DIRAC's wrapper, in order, in DiracX's view of the job's logging records
    history = _search(diracx_sandbox, job.job_id, "LoggingInfo")["LoggingInfo"]
    stages = [record["ApplicationStatus"] for record in history if record["Source"] == "KM3DIRAC"]
    assert stages == KM3_STAGES, history
    statuses = [record["Status"] for record in history]
    assert statuses[0] == "Received" and "Running" in statuses and statuses[-1] == "Done", statuses

    found = diracx_sandbox.dirac_client("rucio-files", job.scope, f"{job.products}/*",
                                        json.dumps({"JobID": job.job_id}))
    expected = f"{job.products}/summary_{INPUT_NAME.removesuffix('.root')}.json"
    assert list(found["files"]) == [expected]

    # KM3OutputDIDs went through DiracX (PATCH /api/jobs/metadata) into the job parameters DIRAC reads too
    parameters = diracx_sandbox.run("dirac-wms-job-parameters", str(job.job_id))
    assert parameters.returncode == 0, parameters.stdout + parameters.stderr
    assert re.search(rf"'KM3OutputDIDs': '{re.escape(expected)}'", parameters.stdout), parameters.stdout


KM3_PATH = "dirac-km3-jdl-render --submit-diracx"
#: the single-job route, through diracx-client's own pipeline (the identity's token from DIRACX_CREDENTIALS_PATH,
#: refreshed as diracx-cli refreshes it): status code and JSON body
GET_ONE_JOB = """
import json, sys
from azure.core.rest import HttpRequest
from diracx.client.sync import SyncDiracClient
from km3diracx.api import job_parameters_path
with SyncDiracClient() as api:
    response = api.send_request(HttpRequest("GET", job_parameters_path(int(sys.argv[1]))))
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


def _parameters_through(sandbox: RunningSandbox, *arguments: str, as_identity: str = "user"):
    """``dirac-km3-job-parameters`` as ``as_identity``: (exit code, its JSON, stderr)."""
    read = sandbox.run("dirac-km3-job-parameters", *arguments, as_identity=as_identity)
    # DIRAC's start-up may print a notice first ("Running without remote configuration", gLogger on stdout)
    assert "{" in read.stdout, read.stdout + read.stderr
    document, end = json.JSONDecoder().raw_decode(read.stdout, read.stdout.index("{"))
    assert not read.stdout[end:].strip(), read.stdout
    return read.returncode, document, read.stderr + read.stdout


def _get_one_job(sandbox: RunningSandbox, job_id: int, as_identity: str) -> dict:
    import subprocess
    import sys

    got = subprocess.run([sys.executable, "-c", GET_ONE_JOB, str(job_id)], env=sandbox.user_env(as_identity),
                         capture_output=True, text=True, timeout=120, check=False)
    assert got.returncode == 0, got.stdout + got.stderr
    return json.loads(got.stdout.strip().splitlines()[-1])


def test_km3outputdids_read_through_diracx_are_what_rucio_and_dirac_hold(diracx_sandbox: RunningSandbox,
                                                                         diracx_jobs: dict[str, SubmittedJob]):
    """KM3DIRAC's DiracX extension route (POST /api/km3dirac/jobs/parameters), through ``dirac-km3-job-parameters
    --diracx`` and diracx-cli's ``dirac km3 job-parameters``: the owner and the production manager read them."""
    job = diracx_jobs[KM3_PATH]
    assert _wait_for_final(diracx_sandbox, job.job_id)["Status"] == "Done"
    returncode, through_diracx, output = _parameters_through(diracx_sandbox, "--diracx", str(job.job_id))
    assert returncode == 0, output
    parameters = through_diracx[str(job.job_id)]
    in_rucio = diracx_sandbox.dirac_client("rucio-files", job.scope, f"{job.products}/*",
                                           json.dumps({"JobID": job.job_id}))["files"]
    assert in_rucio and sorted(parameters["KM3OutputDIDs"].split(",")) == sorted(in_rucio), (parameters, in_rucio)

    # the same parameters, all of them, as DIRAC's JobMonitoring has them
    returncode, through_dirac, output = _parameters_through(diracx_sandbox, str(job.job_id))
    assert returncode == 0, output
    assert through_dirac == through_diracx

    cli = diracx_sandbox.run("dirac", "km3", "job-parameters", "--parameter", "KM3OutputDIDs", str(job.job_id))
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert json.loads(cli.stdout) == {str(job.job_id): {"KM3OutputDIDs": parameters["KM3OutputDIDs"]}}

    # the production manager (another person, JobAdministrator) reads anyone's job
    returncode, by_manager, output = _parameters_through(diracx_sandbox, "--diracx", "-p", "KM3OutputDIDs",
                                                         str(job.job_id), as_identity="km3prodmgr")
    assert (returncode, by_manager) == (0, {str(job.job_id): {"KM3OutputDIDs": parameters["KM3OutputDIDs"]}}), \
        output


def _submitted_and_killed(sandbox: RunningSandbox, work: Path, as_identity: str) -> list[int]:
    """A job of ``as_identity`` in JobDB (submitted through DiracX), killed at once so that it takes no JobAgent
    time (DIRAC's JobManager: no DiracX route kills in 0.7's CLI)."""
    jdl = work / f"{as_identity}.jdl"
    jdl.write_text(f'[ Executable = "/bin/true"; JobName = "{as_identity}-owned"; ]')
    submitted = sandbox.run("dirac", "jobs", "submit", str(jdl), as_identity=as_identity)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_ids = [int(job_id) for job_id in re.search(r"ids: ([\d, ]+)", submitted.stdout).group(1).split(",")]
    killed = sandbox.run("dirac-wms-job-kill", *map(str, job_ids), as_identity=as_identity)
    assert killed.returncode == 0, killed.stdout + killed.stderr
    return job_ids


def test_job_parameters_through_diracx_are_refused_to_another_user_and_name_unknown_jobs(
        diracx_sandbox: RunningSandbox, diracx_jobs: dict[str, SubmittedJob], tmp_path: Path):
    job = diracx_jobs[KM3_PATH]
    unknown = job.job_id + 10**6
    returncode, by_alice, output = _parameters_through(diracx_sandbox, "--diracx", str(job.job_id),
                                                       as_identity="alice")
    assert (returncode, by_alice) == (1, {}), output
    assert f"alice (group km3net_user) may not read job {job.job_id}: it belongs to another user" in output
    assert "KM3OutputDIDs" not in output

    # a bulk read: the unknown job is named, the good one beside it is read
    returncode, mixed, output = _parameters_through(diracx_sandbox, "--diracx", "-p", "KM3OutputDIDs",
                                                    str(job.job_id), str(unknown))
    assert returncode == 1 and list(mixed) == [str(job.job_id)] and "KM3OutputDIDs" in mixed[str(job.job_id)], \
        output
    assert f"job {unknown} not found in VO km3net" in output

    # the single-job route answers with DiracX's HTTP statuses
    assert _get_one_job(diracx_sandbox, job.job_id, "alice") == {"status": 403, "body": {"detail": (
        f"alice (group km3net_user) may not read job {job.job_id}: it belongs to another user (a user reads the "
        "parameters of their own jobs, a JobAdministrator all)")}}
    assert _get_one_job(diracx_sandbox, unknown, "user") == {
        "status": 404, "body": {"detail": f"job {unknown} not found in VO km3net"}}
    own = _get_one_job(diracx_sandbox, job.job_id, "user")
    assert own["status"] == 200 and own["body"]["JobID"] == job.job_id, own
    assert own["body"]["Parameters"]["KM3OutputDIDs"] == mixed[str(job.job_id)]["KM3OutputDIDs"]

    # a bulk read of the caller's job and someone else's: the own one is read, the other named
    (job_of_alice,) = _submitted_and_killed(diracx_sandbox, tmp_path, "alice")
    returncode, own_of_two, output = _parameters_through(diracx_sandbox, "--diracx", "-p", "KM3OutputDIDs",
                                                         str(job.job_id), str(job_of_alice))
    assert (returncode, list(own_of_two)) == (1, [str(job.job_id)]), output
    assert f"km3user (group km3net_user) may not read job {job_of_alice}: it belongs to another user" in output

    refused = diracx_sandbox.run("dirac-km3-job-parameters", "--diracx", "12x")
    assert refused.returncode == 2 and "not job IDs (whole numbers): 12x" in refused.stdout + refused.stderr


def test_status_updates_and_parameters_of_the_wrappers_go_through_diracx(diracx_sandbox: RunningSandbox,
                                                                           diracx_jobs: dict[str, SubmittedJob]):
    """DIRAC's JobStateUpdate FutureClient: the JobAgent's and JobWrapper's calls are DiracX requests (its access
    log), not DISET calls to DIRAC's JobStateUpdate service (its log has no job's status call)."""
    for job in diracx_jobs.values():
        _wait_for_final(diracx_sandbox, job.job_id)
    diracx_log = diracx_sandbox.paths.log("DiracX/uvicorn").read_text()
    for request in ("PATCH /api/jobs/status", "PATCH /api/jobs/metadata", "PATCH /api/jobs/heartbeat"):
        assert request in diracx_log, request
    # the KM3DIRAC path's input sandbox: uploaded to DiracX, fetched back by DIRAC's SandboxStore for the JobWrapper
    assert "POST /api/jobs/sandbox " in diracx_log and "GET /api/jobs/sandbox?pfn=%2FS3%2F" in diracx_log
    legacy_log = diracx_sandbox.paths.log("WorkloadManagement/JobStateUpdate").read_text()
    assert not re.search(r"Executing action .* RPC/(setJobStatusBulk|setJobParameters|setJobApplicationStatus)",
                         legacy_log), "a wrapper called DIRAC's JobStateUpdate service directly"


def test_a_missing_input_sandbox_file_is_refused_before_anything_is_submitted(diracx_sandbox: RunningSandbox,
                                                                               tmp_path: Path):
    refused = diracx_sandbox.run("dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=sandboxed",
                                 "-p", "Command=python absent.py", "-p", "InputSandbox=absent.py",
                                 "-p", "InputData=/km3net/none/x", "-p", "OutputPatterns=*.json",
                                 "-p", "OutputPath=/km3net/none/y", "-p", "OutputSE=KM3-DISK-2", "--submit-diracx",
                                 cwd=tmp_path)
    assert refused.returncode == 1
    assert "absent.py" in refused.stdout + refused.stderr
    assert "JobID" not in refused.stdout


def test_status_lists_diracx_and_its_s3_store_healthy(diracx_sandbox: RunningSandbox):
    status = diracx_sandbox.sandbox_command("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for component in ("DiracX/uvicorn", "DiracX/S3"):
        assert re.search(rf"^{re.escape(component)}\s+diracx\s+\d+\s+\d+\s+ok$", status.stdout, re.MULTILINE), \
            status.stdout
    url = re.search(r"DIRACX_URL=(\S+)", status.stdout).group(1)
    assert url == diracx_sandbox.user_env()["DIRACX_URL"]

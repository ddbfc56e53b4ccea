"""The local sandbox with real DIRAC services: a user's job goes through DIRAC's commands from submission to Done
and its output sandbox comes back; ``status`` and ``up`` report what runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sandbox_fixtures import BIN, RunningSandbox

from KM3DIRAC.sandbox.local_sandbox import Sandbox
from KM3DIRAC.sandbox.sockets import is_loopback, listening_sockets
from KM3DIRAC.sandbox.state import ComponentRecord, SandboxState

JOB_DONE_TIMEOUT = 180
REQUEST_DONE_TIMEOUT = 120
TASKS_SUBMITTED_TIMEOUT = 150
FINAL_STATUSES = ("Done", "Failed", "Killed", "Deleted")


def _job_status(sandbox: RunningSandbox, job_id: str) -> str:
    result = sandbox.run("dirac-wms-job-status", job_id)
    assert result.returncode == 0, result.stdout + result.stderr
    match = re.search(r"\bStatus=(\w+);", result.stdout)
    assert match, result.stdout
    return match.group(1)


def _wait_for_final_status(sandbox: RunningSandbox, job_id: str) -> str:
    deadline = time.monotonic() + JOB_DONE_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        status = _job_status(sandbox, job_id)
        if status in FINAL_STATUSES:
            return status
        time.sleep(2)
    pytest.fail(f"job {job_id} still {status} after {JOB_DONE_TIMEOUT} s")


@pytest.mark.sandbox
def test_status_reports_every_component_healthy(local_sandbox: RunningSandbox):
    result = local_sandbox.sandbox_command("status", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for component in ("MariaDB", "Rucio server", "WorkloadManagement/JobManager", "WorkloadManagement/Matcher",
                      "Transformation/TransformationManager", "WorkloadManagement/Optimizers",
                      "WorkloadManagement/JobAgent", "RequestManagement/RequestExecutingAgent"):
        assert re.search(rf"^{re.escape(component)}\s.*\sok$", result.stdout, re.MULTILINE), result.stdout


@pytest.mark.sandbox
def test_up_when_already_up_says_so(local_sandbox: RunningSandbox):
    result = local_sandbox.sandbox_command("up", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already up" in result.stdout


@pytest.mark.sandbox
def test_user_job_runs_to_done_and_returns_its_output_sandbox(local_sandbox: RunningSandbox,
                                                               tmp_path: Path):
    script = tmp_path / "hello.sh"
    script.write_text('#!/bin/sh\necho "hello from job $1 on $(hostname)"\n')
    jdl = tmp_path / "hello.jdl"
    jdl.write_text("""JobName = "km3dirac-sandbox-hello";
Executable = "hello.sh";
Arguments = "km3-sandbox-test";
InputSandbox = {"hello.sh"};
StdOutput = "std.out";
StdError = "std.err";
OutputSandbox = {"std.out", "std.err"};
CPUTime = 1000;
""")
    submitted = local_sandbox.run("dirac-wms-job-submit", str(jdl), cwd=tmp_path)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    match = re.search(r"JobID = (\d+)", submitted.stdout)
    assert match, submitted.stdout
    job_id = match.group(1)

    assert _wait_for_final_status(local_sandbox, job_id) == "Done"

    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    stdout = (tmp_path / "out" / job_id / "std.out").read_text()
    assert stdout.startswith("hello from job km3-sandbox-test on "), stdout


def _submitted(task: dict) -> bool:
    """A task the WorkflowTaskAgent handed to the WMS: it has a job, and its status follows the job's from then on."""
    return int(task["job_id"] or 0) > 0 and task["status"] not in ("Created", "Reserved")


@pytest.mark.sandbox
def test_workflow_task_agent_submits_the_tasks_of_a_transformation(local_sandbox: RunningSandbox,
                                                                   tmp_path: Path):
    """A transformation made with DIRAC's Transformation client: the real WorkflowTaskAgent submits each task as a
    job (with the author's proxy from the ProxyManager), the jobs run to Done and their output comes back."""
    message = "task of a KM3DIRAC sandbox transformation"
    created = local_sandbox.dirac_client("workflow-transformation", message, "2")
    assert len(created["task_ids"]) == 2
    transformation_id = str(created["transformation_id"])
    # the TransformationManager hands out tasks only 30 s after their creation (its guard against races)
    deadline = time.monotonic() + TASKS_SUBMITTED_TIMEOUT
    tasks: list[dict] = []
    while time.monotonic() < deadline:
        tasks = local_sandbox.dirac_client("transformation-tasks", transformation_id)["tasks"]
        if tasks and all(_submitted(task) for task in tasks):
            break
        time.sleep(3)
    assert len(tasks) == 2 and all(_submitted(task) for task in tasks), tasks
    for task in tasks:
        job_id = str(task["job_id"])
        assert _wait_for_final_status(local_sandbox, job_id) == "Done"
        fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        job_log = (tmp_path / "out" / job_id / "std.out").read_text()
        assert f"/bin/echo {message} execution completed with status 0" in job_log, job_log


@pytest.mark.sandbox
def test_transformation_agent_makes_one_task_per_file(local_sandbox: RunningSandbox, tmp_path: Path):
    """Files uploaded to the sandbox's Rucio and added to a transformation: the real TransformationAgent finds their
    replicas through the FileCatalog and its Standard plugin makes one task per file (GroupSize 1)."""
    created = local_sandbox.dirac_client("files-transformation", str(tmp_path), "2")
    assert created["added"]["Failed"] == {}
    transformation_id = str(created["transformation_id"])
    deadline = time.monotonic() + TASKS_SUBMITTED_TIMEOUT
    files: list[dict] = []
    while time.monotonic() < deadline:
        files = local_sandbox.dirac_client("transformation-files", transformation_id)["files"]
        if files and all(file["status"] == "Assigned" for file in files):
            break
        time.sleep(3)
    assert sorted(file["lfn"] for file in files) == sorted(created["lfns"])
    assert [file["status"] for file in files] == ["Assigned", "Assigned"], files
    assert len({file["task_id"] for file in files}) == 2, files
    tasks = local_sandbox.dirac_client("transformation-tasks", transformation_id)["tasks"]
    assert sorted(task["task_id"] for task in tasks) == sorted(file["task_id"] for file in files)


@pytest.mark.sandbox
def test_request_executing_agent_executes_a_request(local_sandbox: RunningSandbox):
    """An RMS request (one ForwardDISET operation: set a transformation's Description) is executed by the real
    RequestExecutingAgent with the owner's proxy from the ProxyManager, and the call's effect is visible."""
    put = local_sandbox.dirac_client("forward-diset-request", "set by the RMS")
    deadline = time.monotonic() + REQUEST_DONE_TIMEOUT
    status = ""
    while time.monotonic() < deadline:
        status = local_sandbox.dirac_client("request-status", str(put["request_id"]))["status"]
        if status in ("Done", "Failed", "Canceled"):
            break
        time.sleep(2)
    assert status == "Done"
    parameter = local_sandbox.dirac_client("transformation-parameter", str(put["transformation_id"]), "Description")
    assert parameter["value"] == "set by the RMS"


def test_status_reports_a_crashed_component(tmp_path: Path):
    """A recorded process that is gone is reported as CRASHED and ``status`` exits non-zero."""
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    state = SandboxState(str(tmp_path), ready=True,
                         components=[ComponentRecord("WorkloadManagement/JobManager", "service", dead.pid, 1,
                                                     str(tmp_path / "jobmanager.log"), port=1)])
    state.save()
    result = subprocess.run([str(BIN / "dirac-km3-sandbox"), "status", "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"^WorkloadManagement/JobManager\s.*CRASHED$", result.stdout, re.MULTILINE), result.stdout


def _fresh_login_environment() -> dict[str, str]:
    """A user's login shell: the machine's CA bundle variables set, none of the sandbox's, no venv on PATH."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DIRACSYSCONFIG", "X509_USER_PROXY", "X509_CERT_DIR", "RUCIO_CONFIG", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["REQUESTS_CA_BUNDLE"] = env["CURL_CA_BUNDLE"] = "/etc/ssl/certs/ca-certificates.crt"
    return env


def _bash(script: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], env=_fresh_login_environment(), capture_output=True, text=True,
                          timeout=timeout, check=False, cwd=BIN.parent.parent)


@pytest.mark.sandbox
def test_env_puts_a_plain_shell_into_the_sandbox_for_dirac_and_rucio(local_sandbox: RunningSandbox):
    result = _bash(f'eval "$({BIN}/dirac-km3-sandbox env --dir {local_sandbox.directory})" && '
                   'echo "unset:${REQUESTS_CA_BUNDLE-none}:${CURL_CA_BUNDLE-none}" && command -v dirac-proxy-info && '
                   'rucio whoami && dirac-proxy-info && dirac-wms-select-jobs --Status=Done')
    assert result.returncode == 0, result.stdout + result.stderr
    assert "unset:none:none" in result.stdout
    assert f"{BIN}/dirac-proxy-info" in result.stdout  # the project's commands first on PATH
    assert re.search(r"^account\s*: root$", result.stdout, re.MULTILINE), result.stdout  # RUCIO_CONFIG is set
    assert re.search(r"^DIRAC group\s*: km3net_user$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"(Selected \d+ jobs|No jobs were selected) with conditions: Status = Done", result.stdout), \
        result.stdout

    manager = _bash(f'eval "$({BIN}/dirac-km3-sandbox env --as prodmanager --dir {local_sandbox.directory})" && '
                    'dirac-proxy-info')
    assert manager.returncode == 0, manager.stdout + manager.stderr
    assert re.search(r"^DIRAC group\s*: km3net_prod$", manager.stdout, re.MULTILINE), manager.stdout
    assert re.search(r"ProductionManagement", manager.stdout), manager.stdout

    unknown = _bash(f"{BIN}/dirac-km3-sandbox env --as nobody --dir {local_sandbox.directory}")
    assert unknown.returncode == 1 and "no identity 'nobody'" in unknown.stderr


@pytest.mark.sandbox
def test_shell_runs_a_command_or_an_interactive_shell_in_the_sandbox(local_sandbox: RunningSandbox):
    command = subprocess.run([str(BIN / "dirac-km3-sandbox"), "shell", "--dir", str(local_sandbox.directory), "--",
                              "rucio", "whoami"], env=_fresh_login_environment(), capture_output=True, text=True,
                             timeout=120, check=False)
    assert command.returncode == 0, command.stdout + command.stderr
    assert re.search(r"^account\s*: root$", command.stdout, re.MULTILINE), command.stdout

    interactive = subprocess.run([str(BIN / "dirac-km3-sandbox"), "shell", "--dir", str(local_sandbox.directory)],
                                 input='echo "in:$KM3DIRAC_SANDBOX:$RUCIO_CONFIG:${REQUESTS_CA_BUNDLE-none}"\nexit\n',
                                 env={**_fresh_login_environment(), "SHELL": "/bin/bash"}, capture_output=True,
                                 text=True, timeout=120, check=False)
    assert interactive.returncode == 0, interactive.stdout + interactive.stderr
    assert f"in:{local_sandbox.directory}:{local_sandbox.paths.rucio_client_cfg}:none" in interactive.stdout
    assert f"(km3-sandbox {local_sandbox.directory.name} as user)" in interactive.stderr  # the prompt


@pytest.mark.sandbox
def test_status_points_at_env_and_shell(local_sandbox: RunningSandbox):
    result = local_sandbox.sandbox_command("status", timeout=60)
    assert f'dirac-km3-sandbox env --dir {local_sandbox.directory})"' in result.stdout, result.stdout
    assert "dirac-km3-sandbox shell --dir" in result.stdout and "RUCIO_CONFIG=" in result.stdout


@pytest.mark.sandbox
def test_every_process_of_the_sandbox_listens_on_loopback_only(local_sandbox: RunningSandbox):
    sandbox = Sandbox(local_sandbox.directory)
    listeners = {(pid, address, port) for pid in sandbox.process_ids() for address, port in listening_sockets(pid)}
    ports = {port for _pid, _address, port in listeners}
    recorded = {record.port for record in sandbox.state.components if record.port}
    assert recorded <= ports, f"every recorded port is listened on: {recorded - ports} missing"
    assert sandbox.state.postgres["port"] in ports  # PostgreSQL's processes are among those looked at
    wide = [listener for listener in listeners if not is_loopback(listener[1])]
    assert not wide, f"listening beyond loopback: {wide}"


SOURCE_ROOT = Path(__file__).resolve().parent.parent
README_CHECKS = {
    "dirac-proxy-info": r"DIRAC group\s*: km3net_user",
    "rucio whoami": r"account\s*: root",
    "dirac-wms-job-submit": r"JobID = \d+",
    "dirac-wms-job-status": r"Status=Done;",
    "dirac-wms-job-parameters": r"'PayloadPID'",
    "dirac-wms-job-get-output": r"Files retrieved and extracted in",
}


def readme_sandbox_commands() -> list[str]:
    """The commands of the first ``sh`` block of README's "Local sandbox" section, as printed there."""
    section = SOURCE_ROOT.joinpath("README.md").read_text().split("\n## Local sandbox\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.mark.sandbox
def test_every_command_readme_suggests_for_the_sandbox_works_as_printed(local_sandbox: RunningSandbox):
    """The README block runs line by line in a plain shell, from the source tree; only the sandbox directory
    (README's is the default one) and the job ID the submission printed are filled in."""
    commands = readme_sandbox_commands()
    assert commands[0] == 'eval "$(.venv/bin/dirac-km3-sandbox env)"', commands
    enter = commands[0].replace("sandbox env)", f"sandbox env --dir {local_sandbox.directory})")
    checked = set()
    job_id = ""
    for command in commands[1:]:
        program = next(name for name in README_CHECKS if command.startswith(name))
        command = command.replace("<JobID>", job_id)
        deadline = time.monotonic() + JOB_DONE_TIMEOUT
        while True:  # the status is asked again until the job is Done, as a user would
            result = _bash(f"{enter} && {command}")
            if program != "dirac-wms-job-status" or "Status=Done;" in result.stdout or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        assert re.search(README_CHECKS[program], result.stdout), f"{command}:\n{result.stdout}"
        if program == "dirac-wms-job-submit":
            job_id = re.search(r"JobID = (\d+)", result.stdout).group(1)
        checked.add(program)
    assert checked == set(README_CHECKS)
    shutil.rmtree(SOURCE_ROOT / ".work" / "outputs" / job_id, ignore_errors=True)

"""The main job in small, on the local sandbox: real KM3NeT files ingested as raw runs, the demo train created in
DIRAC's TransformationManager, its first step's chunks run by DIRAC's agents and JobWrapper (km3io reads every
event), their registered outputs feeding the per-run merge step with no one in between. Then the sandbox is
restarted (``down``/``up``): files, rules, transformations and jobs are all still there, every file that records a
port is rewritten, and a second run ends with the same summary and duplicates nothing. Every command the summary
suggests is run as printed, in the environment ``dirac-km3-sandbox env`` gives a plain shell."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.sandbox.local_sandbox import Sandbox

TRAIN_TIMEOUT = 480
JOB_AFTER_RESTART_TIMEOUT = 180
SOURCE_ROOT = Path(__file__).resolve().parent.parent
SUMMARY_CHECKS = {
    "dirac-dms-find-lfns": r"^/km3net/km3demo/merged/run00011291\.merged\.json$",
    "rucio did list": r"km3demo:/km3net/km3demo/raw/KM3NeT_00000049/run11292/\S+\.offline\.root",
    "dirac-km3-train status": r"^merge\s+\d+\s+Active\s+Processed 6\s+Done 2",
}


def _demo(sandbox: RunningSandbox) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "KM3DIRAC.demo.run_demo", "--inside", "--dir", str(sandbox.directory),
               "--runs", "2", "--new-runs", "0", "--files-per-run", "3", "--timeout", str(TRAIN_TIMEOUT)]
    return subprocess.run(command, env=sandbox.user_env(), capture_output=True, text=True,
                          timeout=TRAIN_TIMEOUT + 120, check=False, cwd=SOURCE_ROOT)


def _summary(stdout: str) -> list[str]:
    """The summary's lines that must not change from one run to the next (not the wall time)."""
    block = stdout.split("KM3DIRAC demo ", 1)[1].split("  wall time", 1)[0]
    return block.splitlines()


def _suggested_commands(stdout: str) -> list[str]:
    block = stdout.split("  look at the results", 1)[1].split("\n=", 1)[0]
    return [line.strip() for line in block.splitlines()[1:] if line.strip()]


def _plain_shell(script: str) -> subprocess.CompletedProcess:
    """``script`` in bash from the source tree, with the machine's CA variables set and no venv on PATH."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("DIRACSYSCONFIG", "X509_USER_PROXY", "X509_CERT_DIR", "RUCIO_CONFIG", "VIRTUAL_ENV")}
    env.update(PATH="/usr/local/bin:/usr/bin:/bin", REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt")
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=180, check=False,
                          cwd=SOURCE_ROOT)


def _snapshot(sandbox: RunningSandbox, enter: str, transformation_ids: list[str]) -> dict:
    """What a restart must keep: Rucio's files and rules, the train's tasks and their jobs."""
    tasks = {tid: sorted((t["task_id"], t["job_id"], t["status"])
                         for t in sandbox.dirac_client("transformation-tasks", tid)["tasks"])
             for tid in transformation_ids}
    job_ids = " ".join(str(job_id) for tid in transformation_ids for _task, job_id, _status in tasks[tid])
    listing = _plain_shell(f"{enter} && rucio did list 'km3demo:/km3net/km3demo/*' --filter type=file && "
                           f"rucio rule list --account root && dirac-wms-job-status {job_ids}")
    assert listing.returncode == 0, listing.stdout + listing.stderr
    jobs = dict(re.findall(r"JobID=(\d+) .*?\bStatus=(\w+);", listing.stdout))
    lines = sorted(line for line in listing.stdout.splitlines() if "km3demo:" in line)
    return {"rucio": lines, "tasks": tasks, "jobs": jobs}


@pytest.mark.sandbox
def test_demo_train_runs_end_to_end_survives_a_restart_and_a_second_run_duplicates_nothing(
        local_sandbox: RunningSandbox):
    first = _demo(local_sandbox)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-4000:]
    assert "step process: transformation" in first.stdout and "(created)" in first.stdout
    # 2 runs x 3 files: ByRunFiles(2) gives 2 tasks per run, each writes one summary per input file
    assert re.search(r"outputs registered : 6 summaries, 2 merged run products \(60 events counted by km3io\)",
                     first.stdout), first.stdout[-3000:]
    assert re.search(r"step merge\s+: transformation \d+, Active; files Processed 6;", first.stdout), first.stdout
    # the process step asks for the newest orientations covering each run: run 11292 falls in version 1.1.0's period
    assert re.search(r"calibrations used  : run 11291 calibration:/km3net/calibration/orientations/1\.0\.0/\S+; "
                     r"run 11292 calibration:/km3net/calibration/orientations/1\.1\.0/\S+", first.stdout), \
        first.stdout[-3000:]

    # every command the summary suggests, as printed, in a plain shell: the first line enters the sandbox
    commands = _suggested_commands(first.stdout)
    enter = commands[0]
    assert enter.startswith('eval "$(') and "dirac-km3-sandbox env" in enter, commands
    assert [next(name for name in SUMMARY_CHECKS if command.startswith(name)) for command in commands[1:]] \
        == list(SUMMARY_CHECKS), commands
    for command, expected in zip(commands[1:], SUMMARY_CHECKS.values(), strict=True):
        result = _plain_shell(f"{enter} && {command}")
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
        assert re.search(expected, result.stdout, re.MULTILINE), f"{command}:\n{result.stdout}"

    transformation_ids = re.findall(r"step \w+: transformation (\d+) \(created\)", first.stdout)
    before = _snapshot(local_sandbox, enter, transformation_ids)
    assert len(before["rucio"]) >= 6 + 6 + 2 and len(before["jobs"]) == 6, before
    assert set(before["jobs"].values()) == {"Done"}, before

    stopped = local_sandbox.sandbox_command("down")
    assert stopped.returncode == 0 and "state is kept" in stopped.stdout, stopped.stdout + stopped.stderr
    started = local_sandbox.sandbox_command("up")
    assert started.returncode == 0, started.stdout + started.stderr
    state = Sandbox(local_sandbox.directory).state
    dirac_cfg = local_sandbox.paths.layout.dirac_cfg.read_text()
    rucio_port = next(record.port for record in state.components if record.name == "Rucio server")
    assert f"rucio_host = http://127.0.0.1:{rucio_port}" in local_sandbox.paths.rucio_client_cfg.read_text()
    assert f"RucioHost = http://127.0.0.1:{rucio_port}" in dirac_cfg
    for record in state.components:
        if record.kind == "service":
            assert f"dips://localhost:{record.port}/{record.name}" in dirac_cfg, record.name
    last_ports = json.loads((local_sandbox.directory / "last-ports.json").read_text())
    assert last_ports["PostgreSQL"] == state.postgres["port"]
    server_cfg = (local_sandbox.paths.rucio_dir / "rucio-server.cfg").read_text()
    assert f"127.0.0.1:{state.postgres['port']}/rucio" in server_cfg
    assert _snapshot(local_sandbox, enter, transformation_ids) == before
    # and the restarted sandbox runs new jobs (its SandboxSE and services on their new ports)
    submitted = _plain_shell(f"{enter} && dirac-wms-job-submit KM3DIRAC/demo/hello.jdl")
    job_id = re.search(r"JobID = (\d+)", submitted.stdout)
    assert job_id, submitted.stdout + submitted.stderr
    deadline = time.monotonic() + JOB_AFTER_RESTART_TIMEOUT
    status = ""
    while time.monotonic() < deadline and "Status=Done;" not in status:
        time.sleep(3)
        status = _plain_shell(f"{enter} && dirac-wms-job-status {job_id.group(1)}").stdout
    assert "Status=Done;" in status, status

    second = _demo(local_sandbox)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert second.stdout.count("(exists already)") == 2 and "(created)" not in second.stdout
    # the DAQ stand-in writes nothing again, and the ingestion finds every file in Rucio already
    assert second.stdout.count("in Rucio already (an earlier demo), not written again") == 2, second.stdout
    assert "this pass: 2 runs seen, 0 files registered" in second.stdout and "6 already in Rucio" in second.stdout
    assert _summary(second.stdout) == _summary(first.stdout)
    assert _snapshot(local_sandbox, enter, transformation_ids) == before  # nothing new, nothing duplicated

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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.sandbox.local_sandbox import Sandbox, user_environment

TRAIN_TIMEOUT = 480
#: the demo's replication step waits up to 600 s for its copies (dirac-km3-replicate apply --wait 600)
REPLICATION_TIMEOUT = 600
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
                          timeout=TRAIN_TIMEOUT + REPLICATION_TIMEOUT + 120, check=False, cwd=SOURCE_ROOT)


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
@pytest.mark.timeout(1800)  # two demos (ingestion, replication, the train) and a restart: ~10-15 min on 2 cores
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

    # the nightly cycle's replication step: KM3NeT's policy (2 disk copies, 1 tape copy) on both run datasets, the
    # copies made by DIRAC's RequestExecutingAgent, verified, the shore copies released; Rucio's reaper deletes them
    assert "rules: 4 created, 0 already there, 0 failed" in first.stdout, first.stdout[-4000:]
    assert "every rule of the policy is OK" in first.stdout
    assert re.search(r"source copies released: 2 datasets \(6 files", first.stdout), first.stdout[-4000:]
    policy = local_sandbox.directory / "replication-demo.yaml"
    deadline = time.monotonic() + 120
    while True:
        replication = _plain_shell(f"{enter} && dirac-km3-replicate status {policy}")
        assert replication.returncode == 0, replication.stdout + replication.stderr
        if replication.stdout.count("source: gone") == 2 or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert replication.stdout.count("source: gone") == 2, replication.stdout
    raw_files = _plain_shell(f"{enter} && dirac-dms-find-lfns Path=/km3net/km3demo/raw datatype=raw")
    raw_lfn = next(line.strip() for line in raw_files.stdout.splitlines() if line.strip().endswith(".offline.root"))
    replicas = _plain_shell(f"{enter} && dirac-dms-lfn-replicas {raw_lfn}")
    assert replicas.returncode == 0, replicas.stdout + replicas.stderr
    # the StorageElement column (each URL names its SE's storage directory too)
    storage_elements = set(re.findall(r"\b(KM3-[A-Z]+-\d) +file:", replicas.stdout))
    assert storage_elements == {"KM3-DISK-1", "KM3-DISK-2", "KM3-TAPE-1"}, replicas.stdout
    assert "KM3-SHORE" not in replicas.stdout, replicas.stdout

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
    # the shore copies are gone (replicated, verified, deleted through Rucio): the ingestion registers nothing again
    assert re.search(r"this pass: \d+ runs seen, 0 files registered", second.stdout), second.stdout[-4000:]
    assert "rules: 0 created, 4 already there, 0 failed" in second.stdout, second.stdout[-4000:]
    assert re.search(r"source copies released: 0 datasets", second.stdout), second.stdout[-4000:]
    assert _summary(second.stdout) == _summary(first.stdout)
    assert _snapshot(local_sandbox, enter, transformation_ids) == before  # nothing new, nothing duplicated


# ------------------------------------------------------------------------------------------- the TrainAgent
AGENT_TIMEOUT = 420
DETECTOR = 49
TRAIN_YAML = """name: {name}
detector: 49
steps:
  - name: process
    input:
      query: {{datatype: raw}}
      path: /km3net/{scope}/raw
    plugin: ByRunFiles
    plugin_parameters: {{GroupSize: 2}}
    jdl_template: user-analysis.jdl
    jdl_parameters: {{Name: agent-process, Command: km3dirac-demo-process, CPUTime: 600,
                     OutputPatterns: "*.summary.json", OutputPath: /km3net/{scope}/summaries, OutputSE: KM3-DISK-1}}
    output:
      path: /km3net/{scope}/summaries/run<run_number>
      se: KM3-DISK-1
      patterns: ["*.summary.json"]
      metadata: {{datatype: summary}}
  - name: merge
    input: {{step: process}}
    plugin: ByRun
    jdl_template: user-analysis.jdl
    jdl_parameters: {{Name: agent-merge, Command: km3dirac-demo-merge, CPUTime: 600,
                     OutputPatterns: "*.merged.json", OutputPath: /km3net/{scope}/merged, OutputSE: KM3-DISK-1}}
    output:
      path: /km3net/{scope}/merged
      se: KM3-DISK-1
      patterns: ["*.merged.json"]
      metadata: {{datatype: merged}}
"""


class AgentTrain:
    """A train of its own scope on the session sandbox, driven only by the sandbox's agents; the production manager's
    commands typed as ``dirac-km3-train <command> <train file> ...``."""

    def __init__(self, sandbox: RunningSandbox, directory: Path) -> None:
        from km3net_testdata import data_path

        self.sandbox = sandbox
        self.directory = directory
        self.scope = f"km3agent{os.getpid() % 100000}{int(time.time()) % 1000}"
        self.train_file = directory / "agent-train.yaml"
        self.train_file.write_text(TRAIN_YAML.format(name=f"agent-{self.scope}", scope=self.scope))
        self.good = Path(data_path(SAMPLE))
        self.bad = directory / "broken.root"
        self.bad.write_text("not a ROOT file: km3io fails on it, and so does every job given it\n")

    def lfn(self, run: int, part: int) -> str:
        return f"/km3net/{self.scope}/raw/run{run}/KM3NeT_{DETECTOR:08d}_{run:08d}.{part}.offline.root"

    def upload(self, run: int, parts: int, path: Path | None = None, close: bool = True) -> list[str]:
        lfns = [self.lfn(run, part) for part in range(parts)]
        for lfn in lfns:
            local = self.directory / lfn.rsplit("/", 1)[1]
            shutil.copy(path or self.good, local)
            metadata = json.dumps({"datatype": "raw", "DetectorID": DETECTOR, "run_number": run})
            self.sandbox.dirac_client("upload-km3net-file", self.scope, lfn, str(local), "KM3-DISK-1", metadata)
        if close:
            self.sandbox.dirac_client("close-dataset", self.scope, lfns[0].rsplit("/", 1)[0])
        return lfns

    def command(self, *arguments: str, as_identity: str = "prodmanager") -> subprocess.CompletedProcess:
        env = user_environment(self.sandbox.paths, as_identity)
        return subprocess.run([str(Path(sys.executable).parent / "dirac-km3-train"), arguments[0],
                               str(self.train_file), *arguments[1:]], env=env, capture_output=True, text=True,
                              timeout=180, check=False, cwd=SOURCE_ROOT)

    def ok(self, *arguments: str, as_identity: str = "prodmanager") -> str:
        result = self.command(*arguments, as_identity=as_identity)
        assert result.returncode == 0, f"dirac-km3-train {' '.join(arguments)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def files(self, transformation_id: str) -> dict[str, dict]:
        return {f["lfn"]: f for f in self.sandbox.dirac_client("transformation-files", transformation_id)["files"]}

    def wait(self, what: str, condition, timeout: float = AGENT_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(5)
        raise AssertionError(f"{what}: not after {timeout:.0f} s; status:\n{self.ok('status')}")


SAMPLE = "offline/km3net_offline.root"


@pytest.mark.sandbox
@pytest.mark.timeout(AGENT_TIMEOUT * 4)  # a few jobs one after the other: ~14 min on a loaded 2-core machine
def test_train_agent_moves_a_train_retries_failures_and_obeys_the_production_manager(local_sandbox: RunningSandbox,
                                                                                       tmp_path: Path):
    """Nobody runs ``advance``: the TrainAgent closes each run's outputs once the run is processed and the merge
    step follows; a file every job fails on is retried once (the sandbox's MaxRetries) and then Problematic, named by
    ``status``; ``reprocess`` sends a run through both steps again with its new outputs in pass2 next to the first
    ones, ``stop`` makes no new task meanwhile, ``flush`` makes the held-back task of an open run."""
    train = AgentTrain(local_sandbox, tmp_path)
    good_run, bad_run, open_run = 21001, 21002, 21003
    good = train.upload(good_run, 2)
    bad = train.upload(bad_run, 1, path=train.bad)
    held = train.upload(open_run, 1, close=False)  # an open run: its one file waits for more (or a flush)
    # created by the user: the sandbox's JobAgent runs with the user's proxy and matches the user's jobs only
    created = train.ok("create", as_identity="user")
    process_id, merge_id = re.findall(r"^(?:process|merge)\s+(\d+)\s+created$", created, re.MULTILINE)

    merged_first = f"/km3net/{train.scope}/merged/run{good_run:08d}.merged.json"
    train.wait("run 21001 merged", lambda: _statuses(train.files(merge_id)) == ["Processed", "Processed"])
    problem = train.wait("the broken file Problematic",
                         lambda: train.files(process_id).get(bad[0], {}).get("status") == "Problematic")
    assert problem
    process_files = train.files(process_id)
    assert process_files[bad[0]]["error_count"] == 2  # failed, retried once, failed again
    failed_jobs = [t for t in local_sandbox.dirac_client("transformation-tasks", process_id)["tasks"]
                   if t["status"] == "Failed"]
    assert len(failed_jobs) == 2, failed_jobs
    assert {process_files[lfn]["status"] for lfn in good} == {"Processed"}
    assert process_files[held[0]]["status"] == "Unused"  # its run is open: held back

    status = train.ok("status")
    assert re.search(rf"^process\s+{process_id}\s+Active\s+.*Problematic 1", status, re.MULTILINE), status
    assert re.search(rf"^process\s+{re.escape(bad[0])}\s+2$", status, re.MULTILINE), status  # named, 2 failures
    assert re.search(rf"^{good_run}\s+process\s+Processed 2\s+Done 1$", status, re.MULTILINE), status
    assert re.search(rf"^{good_run}\s+merge\s+Processed 2\s+Done 1$", status, re.MULTILINE), status
    assert re.search(rf"^{bad_run}\s+process\s+Problematic 1\s+Failed 2$", status, re.MULTILINE), status
    assert re.search(rf"^{open_run}\s+process\s+Unused 1\s+-$", status, re.MULTILINE), status

    # bad run lists are refused by name, before anything changes
    refused = train.command("reprocess", "21001x")
    assert refused.returncode == 1 and "not run numbers: 21001x" in refused.stdout + refused.stderr
    refused = train.command("reprocess", "29999")
    assert refused.returncode == 1 and "run 29999 has no file in step process" in refused.stdout + refused.stderr

    # stopped, a run given back by reprocess gets no task; pass 2 writes next to pass 1
    assert re.search(r"^process\s+\d+\s+Stopped$", train.ok("stop"), re.MULTILINE)
    reprocessed = train.ok("reprocess", str(good_run))
    assert f"runs {good_run} reprocessed as pass 2" in reprocessed, reprocessed
    assert re.search(rf"^process\s+2\s+/km3net/{train.scope}/summaries/pass2/run<run_number>$", reprocessed,
                     re.MULTILINE), reprocessed
    time.sleep(20)  # ten cycles of DIRAC's agents
    assert {train.files(process_id)[lfn]["status"] for lfn in [*good, *held]} == {"Unused"}
    assert re.search(r"^process\s+\d+\s+Stopped", train.ok("status"), re.MULTILINE)

    # flush: the open run's held-back file makes a task too; every step is Active again
    assert re.search(r"^process\s+\d+\s+Flush$", train.ok("flush"), re.MULTILINE)
    train.wait("the steps Active again after the flush", lambda: len(re.findall(
        r"^(?:process|merge)\s+\d+\s+Active", train.ok("status"), re.MULTILINE)) == 2, timeout=120)
    merged_again = f"/km3net/{train.scope}/merged/pass2/run{good_run:08d}.merged.json"
    train.wait("run 21001 merged again, in pass2", lambda: _exists(local_sandbox, train.scope, merged_again))
    assert train.files(process_id)[held[0]]["status"] in ("Assigned", "Processed")
    names = local_sandbox.dirac_client("rucio-files", train.scope, f"/km3net/{train.scope}/merged/*")["files"]
    assert {merged_first, merged_again} <= set(names), names  # versioned: the first pass's product is kept
    summaries = local_sandbox.dirac_client("rucio-files", train.scope,
                                           f"/km3net/{train.scope}/summaries/pass2/run{good_run}/*")["files"]
    assert len(summaries) == 2, summaries


def _statuses(files: dict[str, dict]) -> list[str]:
    return sorted(f["status"] for f in files.values())


def _exists(sandbox: RunningSandbox, scope: str, lfn: str) -> bool:
    return lfn in sandbox.dirac_client("rucio-files", scope, lfn)["files"]

"""Fault injection on a sandbox of its own (real DIRAC services, real Rucio, real MariaDB): ``dirac-km3-job-run``
jobs submitted with ``dirac-wms-job-submit`` meet a fault while they run, three trials (jobs) per fault at once.

Each trial counts the files its payload produced (the payload's own ledger), registered (in Rucio with an available
replica whose bytes are on that RSE), on storage only (bytes on an RSE, not registered) and lost (neither), and
asserts that nothing is lost and every job ends in a final state. The table is printed at the end of the session
and written to ``.work/test-results/faults.txt``. Run alone with ``pytest -m faults``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from fault_harness import (
    TRIALS,
    TrialCounts,
    catalog_options_for_new_jobs,
    fault_client,
    hung_component,
    kill_job_agent,
    stopped_component,
)
from sandbox_fixtures import RunningSandbox

pytestmark = [pytest.mark.faults, pytest.mark.sandbox]

PAYLOAD = Path(__file__).parent / "payloads" / "fault_payload.py"
TRIALS_PER_FAULT = 3
READY_TIMEOUT = 240
#: the sandbox's FailoverRequestDelay (1 min) and a few RequestExecutingAgent cycles
DEFERRED_TIMEOUT = 150
#: a request stays Assigned this long at the most while a live RequestExecutingAgent holds it (its KM3RegisterOutputs
#: time-out, 30 s + 2 s a file): the agent is killed before
ASSIGNED_KILL_WITHIN = 20
FINAL_TIMEOUT = 300
OUTAGE_SECONDS = 6
STATUS_CHECK_SECONDS = 10


class Trials:
    """Three jobs of one fault: submitted, held at the start of their payload until :meth:`release`."""

    def __init__(self, sandbox: RunningSandbox, work: Path, fault: str, scope: str,
                 inputs: list[str] | None = None, hold: bool = True) -> None:
        self.sandbox, self.work, self.fault, self.scope = sandbox, work, fault, scope
        self.ledger = work / "ledger.jsonl"
        self.go = work / "go"
        self.tags = [f"{fault.replace('_', '')}{n}" for n in range(1, TRIALS_PER_FAULT + 1)]
        shutil.copy(PAYLOAD, work / PAYLOAD.name)
        fault_client(sandbox, "add-scope", scope)
        if not hold:
            self.go.touch()
        jdls = []
        for number, tag in enumerate(self.tags, 1):
            inputs_line = f'  KM3InputData = "{inputs[number - 1]}";\n' if inputs else ""
            jdl = work / f"{tag}.jdl"
            jdl.write_text(f"""[
  JobName = "fault-{tag}";
  Executable = "dirac-km3-job-run";
  Arguments = "-- python {PAYLOAD.name} --ledger {self.ledger} --tag {tag} --wait-for {self.go}";
  InputSandbox = {{"{PAYLOAD.name}"}};
  StdOutput = "std.out";
  StdError = "std.err";
  OutputSandbox = {{"std.out", "std.err"}};
  CPUTime = 600;
{inputs_line}  KM3OutputData = "out_*.dat";
  KM3OutputPath = "{self.output_path(number)}";
  KM3OutputSE = "KM3-DISK-1";
  KM3FailoverSEs = "KM3-DISK-2";
]
""")
            jdls.append(jdl.name)
        submitted = sandbox.run("dirac-wms-job-submit", *jdls, cwd=work, timeout=180)
        self.job_ids = re.findall(r"JobID = (\d+)", submitted.stdout)
        assert len(self.job_ids) == TRIALS_PER_FAULT, submitted.stdout + submitted.stderr

    def output_path(self, number: int) -> str:
        return f"/km3net/{self.scope}/faults/{self.fault}/trial{number}"

    def wait_until_ready(self) -> None:
        """Every job is in its payload (downloads and checks done), waiting for the go file."""
        deadline = time.monotonic() + READY_TIMEOUT
        next_status_check = time.monotonic() + STATUS_CHECK_SECONDS
        while time.monotonic() < deadline:
            if all((self.work / f"ready-{tag}").exists() for tag in self.tags):
                return
            if time.monotonic() > next_status_check:  # each check starts a DIRAC client: not too often
                statuses = self.statuses()
                finished = [job for job, row in statuses.items() if row["status"] in ("Done", "Failed", "Killed")]
                assert not finished, f"jobs ended before their payload: {statuses}"
                next_status_check = time.monotonic() + STATUS_CHECK_SECONDS
            time.sleep(0.5)
        pytest.fail(f"{self.fault}: payloads not started after {READY_TIMEOUT} s: {self.statuses()}")

    def release(self) -> None:
        self.go.touch()

    def statuses(self) -> dict[str, dict]:
        answer = fault_client(self.sandbox, "jobs", *self.job_ids)
        return answer.get("jobs", {})

    def wait_until_final(self, timeout: float = FINAL_TIMEOUT) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        statuses: dict[str, dict] = {}
        while time.monotonic() < deadline:
            with contextlib.suppress(AssertionError):  # a service restarting: ask again
                statuses = self.statuses()
            if len(statuses) == len(self.job_ids) and all(row["status"] in ("Done", "Failed", "Killed")
                                                          for row in statuses.values()):
                return statuses
            time.sleep(4)
        return statuses  # not all final: counted as stuck, the assertion below fails

    def job_log(self, job_id: str) -> str:
        """The job's std.out and std.err (its output sandbox)."""
        target = self.work / "out"
        fetched = self.sandbox.run("dirac-wms-job-get-output", "-D", str(target), job_id, timeout=120)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        return "\n".join(path.read_text() for path in sorted((target / job_id).glob("std.*")))

    def count(self, statuses: dict[str, dict]) -> list[TrialCounts]:
        produced: dict[str, list[dict]] = {tag: [] for tag in self.tags}
        if self.ledger.exists():
            for line in self.ledger.read_text().splitlines():
                entry = json.loads(line)
                produced[entry["tag"]].append(entry)
        lfns = {f"{self.output_path(number)}/{entry['name']}": entry
                for number, tag in enumerate(self.tags, 1) for entry in produced[tag]}
        replicas = fault_client(self.sandbox, "replicas", self.scope, json.dumps(sorted(lfns)))["replicas"]
        counts = []
        for number, (tag, job_id) in enumerate(zip(self.tags, self.job_ids, strict=True), 1):
            row = statuses.get(job_id, {})
            trial = TrialCounts(self.fault, number, job_id, row.get("status", "?"), row.get("minor_status", "?"),
                                row.get("application_status", ""), produced=len(produced[tag]))
            for entry in produced[tag]:
                lfn = f"{self.output_path(number)}/{entry['name']}"
                where = self._stored_at(lfn, entry)
                replica = replicas.get(lfn)
                available = {rse for rse, state in (replica or {}).get("states", {}).items() if state == "AVAILABLE"}
                if replica and replica["adler32"] == entry["adler32"] and available & where:
                    trial.registered += 1
                elif where:
                    trial.storage_only += 1
                    trial.notes.append(f"{lfn} only on storage at {sorted(where)}")
                else:
                    trial.lost += 1
                    trial.notes.append(f"{lfn} lost (Rucio: {replica})")
            counts.append(trial)
        TRIALS.extend(counts)
        return counts

    def _stored_at(self, lfn: str, entry: dict) -> set[str]:
        """The RSEs whose directory holds the file's bytes (right size and adler32) at its LFN's place."""
        found = set()
        for rse in ("KM3-DISK-1", "KM3-DISK-2"):
            path = self.sandbox.paths.storage_dir(rse) / lfn.lstrip("/")
            if path.is_file() and path.stat().st_size == entry["bytes"] and \
                    f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}" == entry["adler32"]:
                found.add(rse)
        return found


def _assert_nothing_lost_and_all_final(counts: list[TrialCounts], statuses: dict[str, dict]) -> None:
    problems = [f"job {t.job_id}: {t.notes}" for t in counts if t.lost]
    stuck = [f"job {t.job_id}: {statuses.get(t.job_id)}" for t in counts if not t.final]
    assert not problems and not stuck, f"lost: {problems}; not in a final state: {stuck}"


def _run_fault(sandbox: RunningSandbox, work: Path, fault: str, during: Callable[[Trials], None],
               inputs: list[str] | None = None, scope: str | None = None) -> tuple[list[TrialCounts], Trials]:
    trials = Trials(sandbox, work, fault, scope or f"f{uuid.uuid4().hex[:10]}", inputs=inputs)
    trials.wait_until_ready()
    during(trials)
    trials.release()  # idempotent: most faults release the payloads while the fault lasts
    statuses = trials.wait_until_final()
    counts = trials.count(statuses)
    _assert_nothing_lost_and_all_final(counts, statuses)
    return counts, trials


@pytest.fixture
def work(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    return tmp_path


def test_rucio_killed_while_jobs_register(fault_sandbox, work):
    """Rucio's server is killed (SIGKILL) as the payloads end and started again after a few seconds: the jobs'
    bounded retries with back-off register every output."""
    def during(trials: Trials) -> None:
        with stopped_component(fault_sandbox, "Rucio server", signal.SIGKILL):
            trials.release()
            time.sleep(OUTAGE_SECONDS)

    counts, trials = _run_fault(fault_sandbox, work, "rucio_killed", during)
    assert all(t.registered == t.produced == 2 for t in counts), counts
    log = trials.job_log(counts[0].job_id)  # the job met the outage: its calls were tried again
    assert re.search(r"Rucio \w+: .*; try 2 of 8", log), log


def test_rucio_hung_while_jobs_register(fault_sandbox, work):
    """Rucio's server stops answering (SIGSTOP: the port stays open) as the payloads end: each call times out after
    3 s and is tried again; once it answers again (SIGCONT) the outputs are registered."""
    def during(trials: Trials) -> None:
        with hung_component(fault_sandbox, "Rucio server"):
            trials.release()
            time.sleep(OUTAGE_SECONDS)

    counts, trials = _run_fault(fault_sandbox, work, "rucio_hung", during)
    assert all(t.registered == t.produced == 2 for t in counts), counts
    log = trials.job_log(counts[0].job_id)  # the job met the silent server: a call timed out and was tried again
    assert re.search(r"Rucio \w+: .*timed out.*; try 2 of 8", log), log


def _requests(sandbox: RunningSandbox, trials: Trials) -> dict[str, dict]:
    return fault_client(sandbox, "job-requests", *trials.job_ids)["requests"]


def _poll(what: str, timeout: float, check: Callable[[], bool], pause: float = 1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(pause)
    pytest.fail(f"{what} after {timeout} s")


def test_rucio_out_beyond_the_retry_window_then_request_agent_killed_mid_request(fault_sandbox, work):
    """Rucio stops answering (SIGSTOP) for longer than the jobs' retry window (Timeout 3 s, Attempts 2 for these
    jobs) as the payloads end: the outputs stay on storage and each job leaves a KM3RegisterOutputs request
    (Completed / Registration pending). Still without Rucio, the RequestExecutingAgent takes the requests after
    FailoverRequestDelay (Assigned) and is killed (SIGKILL) mid-request, then started again; Rucio answers again.
    KM3CleanReqDBAgent puts the requests it left Assigned back after KickGraceMinutes (1 min in the sandbox), the
    agent registers the outputs and the jobs reach Done."""
    left_assigned: dict[str, dict] = {}

    def during(trials: Trials) -> None:
        with hung_component(fault_sandbox, "Rucio server"):
            trials.release()
            _poll("jobs not deferred (Completed / Registration pending)", DEFERRED_TIMEOUT, lambda: all(
                (row["status"], row["application_status"]) == ("Completed", "Registration pending")
                for row in trials.statuses().values()), pause=3)
            requests = _requests(fault_sandbox, trials)
            assert sorted(requests) == sorted(trials.job_ids), requests  # one request a job
            first_assigned: list[float] = []

            def assigned() -> bool:
                taken = {job: row for job, row in _requests(fault_sandbox, trials).items()
                         if row["status"] == "Assigned"}
                if taken and not first_assigned:
                    first_assigned.append(time.monotonic())
                left_assigned.clear()
                left_assigned.update(taken)
                return len(taken) == len(trials.job_ids) or \
                    (bool(first_assigned) and time.monotonic() - first_assigned[0] > ASSIGNED_KILL_WITHIN)

            _poll("no request taken (Assigned) by the RequestExecutingAgent", DEFERRED_TIMEOUT, assigned)
            with stopped_component(fault_sandbox, "RequestManagement/RequestExecutingAgent", signal.SIGKILL):
                pass
        after_restart = _requests(fault_sandbox, trials)
        assert all(after_restart[job]["status"] == "Assigned" for job in left_assigned), after_restart

    with catalog_options_for_new_jobs(fault_sandbox, Attempts="2"):
        trials = Trials(fault_sandbox, work, "rucio_out_rea_killed", f"f{uuid.uuid4().hex[:10]}")
        trials.wait_until_ready()
    during(trials)
    statuses = trials.wait_until_final()
    counts = trials.count(statuses)
    _assert_nothing_lost_and_all_final(counts, statuses)
    assert left_assigned, "the RequestExecutingAgent was killed holding no request: the trial proved nothing"
    assert all(t.registered == t.produced == 2 and t.status == "Done" for t in counts), counts
    final = _requests(fault_sandbox, trials)
    assert all(final[job]["status"] == "Done" for job in left_assigned), final
    kicked = fault_sandbox.paths.log("RequestManagement/KM3CleanReqDBAgent").read_text()
    for row in left_assigned.values():  # put back by KM3CleanReqDBAgent, not by anything else
        assert f"kick assigned request ({row['request_id']}/" in kicked, kicked[-3000:]
    print(f"rucio_out_rea_killed: {len(left_assigned)} requests left Assigned by the killed agent, put back and done")
    history = fault_client(fault_sandbox, "application-history", counts[0].job_id)["application_status"]
    assert "Registration pending" in history, history


def test_mariadb_restarted_while_jobs_run(fault_sandbox, work):
    """DIRAC's MariaDB is restarted while the payloads end and report (status updates go to JobDB)."""
    def during(trials: Trials) -> None:
        with stopped_component(fault_sandbox, "MariaDB", signal.SIGTERM):
            trials.release()
            time.sleep(2)

    counts, _ = _run_fault(fault_sandbox, work, "mariadb_restarted", during)
    assert all(t.registered == t.produced == 2 for t in counts), counts


def test_job_agent_killed_mid_cycle(fault_sandbox, work):
    """The JobAgent running the jobs is killed (SIGKILL) while their payloads run; the pilot loop starts another."""
    def during(trials: Trials) -> None:
        assert kill_job_agent(fault_sandbox), "no JobAgent running"
        trials.release()

    counts, _ = _run_fault(fault_sandbox, work, "job_agent_killed", during)
    assert all(t.registered == t.produced == 2 for t in counts), counts


def test_output_storage_full(fault_sandbox, work):
    """The output RSE's directory for these jobs is a full 64 KiB tmpfs: uploads fail with ENOSPC and the outputs go
    to the failover RSE, registered there."""
    scope = f"f{uuid.uuid4().hex[:10]}"
    full = fault_sandbox.paths.storage_dir("KM3-DISK-1") / "km3net" / scope / "faults" / "storage_full"
    full.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        with contextlib.suppress(OSError), open(full / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
        counts, _ = _run_fault(fault_sandbox, work, "storage_full", lambda trials: None, scope=scope)
    finally:
        subprocess.run(["umount", "--lazy", str(full)], check=False)
    assert all(t.registered == t.produced == 2 for t in counts), counts
    replicas = fault_client(fault_sandbox, "replicas", scope, json.dumps(
        [f"/km3net/{scope}/faults/storage_full/trial1/out_storagefull1_0.dat"]))["replicas"]
    assert [set(r["states"]) for r in replicas.values()] == [{"KM3-DISK-2"}], replicas


def test_corrupted_input_replica(fault_sandbox, work):
    """Each job's input has a corrupted copy at the RSE it tries first: the job declares it suspicious to Rucio,
    names it in its ApplicationStatus history, and goes on with the good copy."""
    scope = f"f{uuid.uuid4().hex[:10]}"
    prepared = fault_client(fault_sandbox, "inputs-with-two-replicas", scope, f"/km3net/{scope}/faults/inputs",
                            str(TRIALS_PER_FAULT), str(fault_sandbox.paths.storage_dir("KM3-DISK-1")),
                            str(fault_sandbox.paths.storage_dir("KM3-DISK-2")))["files"]
    for where in prepared.values():
        first = Path(where["first"])
        first.write_bytes(bytes(reversed(first.read_bytes())))  # same size, other bytes
    lfns = sorted(prepared)
    counts, _ = _run_fault(fault_sandbox, work, "replica_corrupted", lambda trials: None, inputs=lfns, scope=scope)
    assert all(t.registered == t.produced == 2 and t.status == "Done" for t in counts), counts
    declared = fault_client(fault_sandbox, "suspicious", "KM3-DISK-1")["suspicious"]
    assert set(lfns) <= set(declared), declared
    history = fault_client(fault_sandbox, "application-history", counts[0].job_id)["application_status"]
    assert any(status.startswith(f"Bad replica of {scope}:{lfns[0]} at KM3-DISK-1") for status in history), history

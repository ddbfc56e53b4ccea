"""The fault suite's harness (a pytest plugin listed in conftest.py): its own sandbox, ways to break and restore the
sandbox's real processes, and the table of counts printed at the end of the session and written to
``.work/test-results/faults.txt``.

The fault suite stops and restarts shared services (Rucio, MariaDB, the JobAgent), so it gets a sandbox of its own
(module scope), not the session's. Its CS is the sandbox's with what a site would set for quick reactions: short
Rucio call bounds (Timeout 3 s, 8 attempts, back-off 2-8 s) and three job slots, so the trials of a fault run
concurrently.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.sandbox.processes import start_process
from KM3DIRAC.sandbox.state import ComponentRecord, SandboxState, is_alive, process_start_time, record_process

ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = ROOT / ".work" / "test-results" / "faults.txt"
FINAL_STATES = ("Done", "Failed", "Killed")
#: what a site sets in its CS for jobs to ride out short outages (ConfigTemplate.cfg documents the options)
#: (worst case of one call: 8 x 3 s + 2 + 4 + 5 x 8 s = 70 s: a restarted Rucio server needs ~20 s to answer here)
RUCIO_CALL_OPTIONS = {"Timeout": "3", "Attempts": "8", "RetryDelay": "2", "MaxRetryDelay": "8"}
JOB_SLOTS = 3


@dataclass
class TrialCounts:
    fault: str
    trial: int
    job_id: str
    status: str = ""
    minor_status: str = ""
    application_status: str = ""
    produced: int = 0
    registered: int = 0
    storage_only: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATES


TRIALS: list[TrialCounts] = []


def fault_table(trials: list[TrialCounts]) -> str:
    header = f"{'fault':<22} {'trial':>5} {'job':>6} {'final status':<28} {'produced':>8} {'registered':>10} " \
             f"{'storage only':>12} {'lost':>4}"
    lines = [header, "-" * len(header)]
    for t in trials:
        final = f"{t.status}/{t.minor_status}"[:28]
        lines.append(f"{t.fault:<22} {t.trial:>5} {t.job_id:>6} {final:<28} {t.produced:>8} "
                     f"{t.registered:>10} {t.storage_only:>12} {t.lost:>4}")
    totals = {key: sum(getattr(t, key) for t in trials) for key in ("produced", "registered", "storage_only", "lost")}
    stuck = sum(1 for t in trials if not t.final)
    lines.append("-" * len(header))
    lines.append(f"{'total':<22} {len(trials):>5} {'':>6} {f'{stuck} not final':<28} {totals['produced']:>8} "
                 f"{totals['registered']:>10} {totals['storage_only']:>12} {totals['lost']:>4}")
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not TRIALS:
        return
    table = fault_table(TRIALS)
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(table + "\n")
    terminalreporter.write_sep("=", "fault injection: files per trial")
    terminalreporter.write_line(table)
    terminalreporter.write_line(f"(also in {RESULTS_FILE})")


# -- the fault suite's own sandbox ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fault_sandbox():
    sandbox = RunningSandbox(Path(tempfile.mkdtemp(prefix="km3dirac-faults-")))
    try:
        started = sandbox.sandbox_command("up")
        assert started.returncode == 0, f"dirac-km3-sandbox up failed:\n{started.stdout}\n{started.stderr}"
        _site_settings(sandbox)
        yield sandbox
    finally:
        stopped = sandbox.sandbox_command("down")
        if not os.environ.get("KM3DIRAC_KEEP_TEST_DIR"):
            import shutil

            shutil.rmtree(sandbox.directory, ignore_errors=True)
        assert stopped.returncode == 0, f"dirac-km3-sandbox down failed:\n{stopped.stdout}\n{stopped.stderr}"


def _site_settings(sandbox: RunningSandbox) -> None:
    """Short Rucio call bounds and three job slots in the sandbox's dirac.cfg (jobs read it when they start; the
    JobAgent when the pilot loop starts it again, which the suite makes happen now)."""
    from diraccfg import CFG

    cfg_file = sandbox.paths.layout.dirac_cfg
    cfg = CFG().loadFromFile(str(cfg_file))
    for option, value in RUCIO_CALL_OPTIONS.items():
        cfg.setOption(f"/Resources/FileCatalogs/RucioFileCatalog/{option}", value)
    cfg.setOption("/LocalSite/NumberOfProcessors", str(JOB_SLOTS))
    sites = cfg["Resources"]["Sites"]["DIRAC"]
    for site in sites.listSections():
        for ce in sites[site]["CEs"].listSections():
            cfg.setOption(f"/Resources/Sites/DIRAC/{site}/CEs/{ce}/NumberOfProcessors", str(JOB_SLOTS))
    cfg.writeToFile(str(cfg_file))
    kill_job_agent(sandbox)


@contextlib.contextmanager
def catalog_options_for_new_jobs(sandbox: RunningSandbox, **options: str):
    """Catalog options (``Attempts="2"`` ...) in the sandbox's dirac.cfg for the jobs that start meanwhile (each
    reads it as it starts); the suite's own values again on leaving."""
    from diraccfg import CFG

    cfg_file = sandbox.paths.layout.dirac_cfg
    before = cfg_file.read_text()
    cfg = CFG().loadFromBuffer(before)
    for option, value in options.items():
        cfg.setOption(f"/Resources/FileCatalogs/RucioFileCatalog/{option}", value)
    cfg.writeToFile(str(cfg_file))
    try:
        yield
    finally:
        cfg_file.write_text(before)


# -- the sandbox's processes ----------------------------------------------------------------------------------------
def component(sandbox: RunningSandbox, name: str) -> ComponentRecord:
    state = SandboxState.load(sandbox.directory)
    (record,) = [r for r in state.components if r.name == name]
    return record


def _launch_info(pid: int) -> tuple[list[str], dict[str, str], str]:
    command = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    environ = Path(f"/proc/{pid}/environ").read_bytes().rstrip(b"\0").split(b"\0")
    env = dict(item.decode().split("=", 1) for item in environ if b"=" in item)
    return [part.decode() for part in command], env, os.readlink(f"/proc/{pid}/cwd")


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_start_time(pid) is None, f"process {pid} still there after {timeout} s"


@contextlib.contextmanager
def stopped_component(sandbox: RunningSandbox, name: str, sig: int = signal.SIGKILL):
    """Kill the process group of component ``name`` with ``sig``; on leaving, start it again with the same command,
    environment and directory and record it in the sandbox's state (so ``down`` still stops it)."""
    record = component(sandbox, name)
    assert is_alive(record), f"{name} is not running before the fault"
    command, env, cwd = _launch_info(record.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, sig)
    _wait_gone(record.pid)
    try:
        yield
    finally:
        process = start_process(command, log_file=Path(record.log), env=env, cwd=Path(cwd))
        state = SandboxState.load(sandbox.directory)
        state.components = [record_process(r.name, r.kind, process.pid, Path(r.log), r.port) if r.name == name else r
                            for r in state.components]
        state.save()
        wait_for_port(record.port, name)
        if record.kind == "rucio":  # answering, not only listening: its workers import Rucio first
            from KM3DIRAC.sandbox.processes import http_get_ok

            deadline = time.monotonic() + 120
            while not http_get_ok(f"http://127.0.0.1:{record.port}/ping") and time.monotonic() < deadline:
                time.sleep(0.5)


@contextlib.contextmanager
def hung_component(sandbox: RunningSandbox, name: str):
    """SIGSTOP the process group of ``name`` (its port stays open, nothing answers), SIGCONT on leaving."""
    record = component(sandbox, name)
    os.killpg(record.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(record.pid, signal.SIGCONT)


def wait_for_port(port: int | None, what: str, timeout: float = 90) -> None:
    from KM3DIRAC.sandbox.state import port_answers

    if port is None:
        return
    deadline = time.monotonic() + timeout
    while not port_answers(port) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert port_answers(port), f"{what} does not answer on port {port} after {timeout} s"


def job_agent_pids(sandbox: RunningSandbox) -> list[int]:
    """The JobAgent processes (``dirac-agent WorkloadManagement/JobAgent``) the sandbox's pilot loop runs now."""
    loop = component(sandbox, "WorkloadManagement/JobAgent").pid
    children = Path(f"/proc/{loop}/task/{loop}/children").read_text().split()
    return [int(pid) for pid in children if b"JobAgent" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def kill_job_agent(sandbox: RunningSandbox) -> list[int]:
    """SIGKILL the running JobAgent (the pilot loop starts a new one a second later)."""
    pids = job_agent_pids(sandbox)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


# -- Rucio and DIRAC as the sandbox's user ---------------------------------------------------------------------------
def fault_client(sandbox: RunningSandbox, action: str, *arguments: str, timeout: float = 180) -> dict:
    """An action of ``sandbox_clients.py`` as the sandbox's user (what every sandbox test uses)."""
    return sandbox.dirac_client(action, *arguments, timeout=timeout)

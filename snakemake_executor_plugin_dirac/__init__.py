"""snakemake executor plugin ``dirac``: every snakemake job is a DIRAC job, its data in Rucio.

    snakemake --executor dirac --default-storage-provider km3dirac \\
        --default-storage-prefix /km3net/user/j/jdoe/wf --dirac-output-se KM3-DISK-1 --jobs 100

Paths of the Snakefile are LFNs below the storage prefix (the ``km3dirac`` storage plugin of this repository tells
snakemake whether they exist in Rucio and when they were made). Each job runs the rule's shell command through
``dirac-km3-job-run``: inputs downloaded from Rucio, outputs uploaded to ``--dirac-output-se`` and registered with
provenance (JobID, Parents). Resources: ``runtime`` (minutes) is the CPUTime, ``threads`` NumberOfProcessors,
``mem_mb`` MaxRAM, ``site`` / ``tags`` / ``software`` (a KM3NeT version on CVMFS, run with km3-cvmfs-run) per rule.

DIRAC is reached through its commands (``dirac-wms-job-submit`` with all ready jobs in one call,
``dirac-wms-job-status`` with all running jobs in one call per status check, ``dirac-wms-job-kill`` on cancel,
``dirac-wms-job-get-output`` for a failed job's log), found on PATH or in this repository's ``.venv/bin``: snakemake
lives in ``.venv-snakemake`` (tools/bootstrap.sh), apart from DIRAC, because their dependencies clash.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase

from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.snakemake_jobs import (
    FINAL_STATES,
    JOB_SCRIPT,
    SnakemakeJobSpec,
    StagedFile,
    job_jdl,
    job_script,
    log_tail,
    parse_status,
    parse_submitted,
    spec_problems,
)

STORAGE_PROVIDER = "km3dirac"
REPOSITORY_BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"
COMMAND_TIMEOUT = 600
#: a file the executor writes its DIRAC calls' counts and durations to at the end (bench/snakemake_bench.py)
STATS_VARIABLE = "KM3DIRAC_SNAKEMAKE_STATS"


@dataclass
class ExecutorSettings(ExecutorSettingsBase):
    output_se: Optional[str] = field(default=None, metadata={
        "help": "Rucio RSE the jobs' outputs are uploaded to (KM3OutputSE)", "required": True})
    failover_ses: Optional[str] = field(default=None, metadata={
        "help": "comma-separated RSEs tried when the output SE fails (KM3FailoverSEs)"})
    site: Optional[str] = field(default=None, metadata={
        "help": "DIRAC site of every job (a rule's resources.site wins)"})
    tags: Optional[str] = field(default=None, metadata={
        "help": "comma-separated DIRAC Tags of every job (added to a rule's resources.tags)"})
    software: Optional[str] = field(default=None, metadata={
        "help": "KM3NeT software version on CVMFS the commands run in (km3-cvmfs-run); resources.software wins"})
    cpu_time: int = field(default=3600, metadata={
        "help": "CPUTime in seconds of a rule without resources.runtime"})
    job_group: Optional[str] = field(default=None, metadata={
        "help": "DIRAC JobGroup of the jobs (default snakemake-<rule name>)"})
    dirac_bin: Optional[str] = field(default=None, metadata={
        "help": "directory of DIRAC's commands (default: on PATH, else this repository's .venv/bin)"})
    log_lines: int = field(default=30, metadata={"help": "lines of a failed job's log shown in snakemake's output"})


common_settings = CommonSettings(
    non_local_exec=True,
    implies_no_shared_fs=True,  # data are in Rucio: --default-storage-provider km3dirac is required
    job_deploy_sources=False,  # the job runs the rule's command, not snakemake: no sources on the worker node
    pass_default_storage_provider_args=False,
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=5,
)


def dirac_command_dir(setting: str | None) -> Path:
    if setting:
        directory = Path(setting)
    elif found := shutil.which("dirac-wms-job-submit"):
        directory = Path(found).parent
    else:
        directory = REPOSITORY_BIN
    if not (directory / "dirac-wms-job-submit").exists():
        raise WorkflowError(f"DIRAC's commands are not in {directory}: set up DIRAC (source its bashrc, or "
                            "make install in the KM3DIRAC repository) or give --dirac-dirac-bin")
    return directory


class Executor(RemoteExecutor):
    def __post_init__(self) -> None:
        self.settings: ExecutorSettings = self.workflow.executor_settings
        self.bin = dirac_command_dir(self.settings.dirac_bin)
        self.run_id = uuid.uuid4().hex[:8]
        self.work = Path(".snakemake") / "dirac" / self.run_id
        self.work.mkdir(parents=True, exist_ok=True)
        self.status_calls = 0  # one dirac-wms-job-status call per status check, whatever the number of jobs
        self.call_stats: dict[str, dict[str, float]] = {}  # per DIRAC command: calls, seconds, job ids passed
        # DIRAC jobs submitted and not yet seen final: what a cancel kills. (snakemake's own active_jobs list is
        # empty while a status check runs, and a status call takes seconds: a Ctrl-C then would kill nothing.)
        self.unfinished: set[str] = set()
        self._check_at_start()

    # ---- checks before anything is submitted
    def _check_at_start(self) -> None:
        storage = self.workflow.storage_settings
        if storage.default_storage_provider != STORAGE_PROVIDER:
            raise WorkflowError(f"the DIRAC executor needs --default-storage-provider {STORAGE_PROVIDER} and "
                                "--default-storage-prefix /km3net/<scope>/<path> (the LFN directory of the "
                                f"workflow's files), not {storage.default_storage_provider!r}")
        if not self.settings.output_se:
            raise WorkflowError("--dirac-output-se is required: the RSE the jobs' outputs are uploaded to")
        problems = self._proxy_problems() + self._rse_problems()
        for job in self._jobs_to_run():
            problems += self._job_problems(job)
        if problems:
            raise WorkflowError("the DIRAC executor cannot run this workflow:\n  " + "\n  ".join(problems))

    def _proxy_problems(self) -> list[str]:
        """dirac-proxy-info (not --checkvalid: that also asks for a DiracX token, which a DIRAC-only set-up lacks)."""
        answer = self._dirac("dirac-proxy-info", timeout=120)
        left = re.search(r"^timeleft\s*:\s*(\d+):(\d+):(\d+)", answer.stdout, re.MULTILINE)
        seconds = int(left.group(1)) * 3600 + int(left.group(2)) * 60 + int(left.group(3)) if left else 0
        if answer.returncode != 0 or seconds <= 0:
            why = log_tail(answer.stdout + answer.stderr, 2).replace("\n", " ")
            return [f"no valid grid proxy ({why}): run dirac-proxy-init -g <group> first"]
        return []

    def _rse_problems(self) -> list[str]:
        from rucio.client import Client
        from rucio.common.exception import RSENotFound

        names = [self.settings.output_se, *_items(self.settings.failover_ses)]
        client = Client()
        problems = []
        for name in names:
            try:
                client.get_rse(name)
            except RSENotFound:
                problems.append(f"--dirac-output-se/--dirac-failover-ses {name}: no such RSE in Rucio")
        return problems

    def _jobs_to_run(self) -> list:
        dag = getattr(self.workflow, "dag", None)
        return [job for job in (dag.needrun_jobs() if dag is not None else []) if not job.is_local]

    def _job_problems(self, job) -> list[str]:
        if job.is_group():
            return [f"group {job.groupid}: job groups are not supported by the DIRAC executor (one rule, one job)"]
        try:
            return spec_problems(self._spec(job, check=True))
        except (ConfigurationError, WorkflowError) as error:
            return [str(error)]

    # ---- one snakemake job as a DIRAC job
    def _spec(self, job: JobExecutorInterface, check: bool = False) -> SnakemakeJobSpec:
        resources = job.resources
        runtime = resources.get("runtime")  # minutes in snakemake
        tags = [*_items(self.settings.tags), *_items(resources.get("tags"))]
        wildcards = "-".join(str(value) for value in job.wildcards_dict.values())
        rule = job.rule
        command = job.shellcmd if rule.shellcmd else ""
        if rule.is_run or getattr(rule, "script", None) or getattr(rule, "wrapper", None) \
                or getattr(rule, "notebook", None):
            command = ""
        return SnakemakeJobSpec(
            name=f"smk-{job.name}-{wildcards}".rstrip("-")[:100],
            rule=job.name,
            command=command or "",
            inputs=[self._staged(f, "input") for f in job.input],
            outputs=[self._staged(f, "output") for f in job.output],
            output_se=self.settings.output_se or "",
            failover_ses=_items(self.settings.failover_ses),
            cpu_time=int(runtime) * 60 if runtime else self.settings.cpu_time,
            processors=int(job.threads or 1),
            max_ram_mb=int(resources["mem_mb"]) if resources.get("mem_mb") else None,
            site=resources.get("site") or self.settings.site,
            tags=tags,
            software=resources.get("software") or self.settings.software,
            job_group=self.settings.job_group or f"snakemake-{job.name}",
            metadata={key: str(value) for key, value in job.wildcards_dict.items() if _metadata_key(key)},
        )

    def _staged(self, file, kind: str) -> StagedFile:
        provider = getattr(file.storage_object, "provider", None) if file.is_storage else None
        if type(provider).__module__ != f"snakemake_storage_plugin_{STORAGE_PROVIDER}":
            raise WorkflowError(f"{kind} {file}: not a file of the {STORAGE_PROVIDER} storage (a local file cannot "
                                "reach a DIRAC job: put it in Rucio below the storage prefix)")
        return StagedFile(lfn=file.storage_object.query, local_path=str(file))

    def _prepare(self, job: JobExecutorInterface) -> Path:
        spec = self._spec(job)
        problems = spec_problems(spec)
        if problems:
            raise WorkflowError("; ".join(problems))
        directory = Path(tempfile.mkdtemp(prefix=f"{job.name}-", dir=self.work))
        script = directory / JOB_SCRIPT
        script.write_text(job_script(spec))
        jdl = directory / "job.jdl"
        jdl.write_text(job_jdl(spec, script.resolve()))
        return jdl

    def run_job(self, job: JobExecutorInterface) -> None:
        self._submit([job])

    def run_jobs(self, jobs: list[JobExecutorInterface]) -> None:
        """All jobs ready now in one ``dirac-wms-job-submit`` call."""
        for job in jobs:
            self.run_job_pre(job)
        self._submit(list(jobs))

    def _submit(self, jobs: list[JobExecutorInterface]) -> None:
        prepared: dict[str, JobExecutorInterface] = {}
        for job in jobs:
            try:
                prepared[str(self._prepare(job))] = job
            except (WorkflowError, ConfigurationError) as error:
                self.report_job_error(SubmittedJobInfo(job), msg=f"not submitted to DIRAC: {error}\n")
        if not prepared:
            return
        answer = self._dirac("dirac-wms-job-submit", *prepared)
        try:
            accepted, refused = parse_submitted(answer.stdout, list(prepared))
        except ConfigurationError as error:
            accepted, refused = {}, dict.fromkeys(prepared, f"{error} {answer.stderr.strip()[-300:]}")
        for path, job in prepared.items():
            if path in accepted:
                self.logger.info(f"rule {job.name} ({job.jobid}): DIRAC job {accepted[path]}")
                self.unfinished.add(str(accepted[path]))
                self.report_job_submission(SubmittedJobInfo(job, external_jobid=str(accepted[path]),
                                                            aux={"jdl": path}))
            else:
                self.report_job_error(SubmittedJobInfo(job), msg=f"DIRAC refused the job ({path}): "
                                      f"{refused.get(path, 'no answer')}\n")

    # ---- status, failure, cancel
    async def check_active_jobs(self, active_jobs: list[SubmittedJobInfo]) -> AsyncGenerator[SubmittedJobInfo, None]:
        if not active_jobs:
            return
        async with self.status_rate_limiter:
            self.status_calls += 1
            answer = self._dirac("dirac-wms-job-status", *[info.external_jobid for info in active_jobs])
        states = parse_status(answer.stdout)
        for info in active_jobs:
            state = states.get(int(info.external_jobid))
            status = (state or {}).get("Status", "")
            if status not in FINAL_STATES:
                yield info  # not final, or not answered this time: asked again at the next check
            elif FINAL_STATES[status]:
                self.unfinished.discard(info.external_jobid)
                self.report_job_success(info)
            else:
                self.unfinished.discard(info.external_jobid)
                self.report_job_error(info, msg=self._failure_message(info, state))

    def _failure_message(self, info: SubmittedJobInfo, state: dict[str, str]) -> str:
        job_id = info.external_jobid
        where = Path(info.aux["jdl"]).parent if info.aux else self.work
        fetched = self._dirac("dirac-wms-job-get-output", "-D", str(where), job_id, timeout=180)
        logs = []
        for name in ("std.out", "std.err"):
            path = where / job_id / name
            if path.is_file() and path.read_text().strip():
                logs.append(f"--- {name} (last lines) ---\n{log_tail(path.read_text(), self.settings.log_lines)}")
        if not logs:
            logs.append(f"(no output sandbox: {log_tail(fetched.stdout + fetched.stderr, 3)})")
        status = "; ".join(f"{key}={value}" for key, value in state.items())
        return (f"DIRAC job {job_id} {state.get('Status')}: {status}\n" + "\n".join(logs) +
                f"\n(dirac-wms-job-logging-info {job_id} for its history)\n")

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        ids = sorted({info.external_jobid for info in active_jobs if info.external_jobid} | self.unfinished, key=int)
        if ids:
            answer = self._dirac("dirac-wms-job-kill", *ids, timeout=300)
            self.logger.info(f"killed DIRAC jobs {' '.join(ids)}: {log_tail(answer.stdout + answer.stderr, 5)}")

    def shutdown(self) -> None:
        super().shutdown()
        if stats_file := os.environ.get(STATS_VARIABLE):  # bench/snakemake_bench.py reads what the DIRAC calls cost
            Path(stats_file).write_text(json.dumps({"calls": self.call_stats, "status_checks": self.status_calls}))

    def _dirac(self, command: str, *arguments: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME",
                                                                              "VIRTUAL_ENV")}
        start = time.monotonic()
        try:
            return subprocess.run([str(self.bin / command), *arguments], capture_output=True, text=True,
                                  timeout=timeout, check=False, env=env)
        except subprocess.TimeoutExpired as error:
            return subprocess.CompletedProcess(error.cmd, 124, "", f"{command} timed out after {timeout} s")
        finally:
            stats = self.call_stats.setdefault(command, {"calls": 0, "seconds": 0.0, "arguments": 0})
            stats["calls"] += 1
            stats["seconds"] += time.monotonic() - start
            stats["arguments"] += len(arguments)


def _items(value) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(item).strip() for item in value if str(item).strip()]
    return [item.strip() for item in str(value).split(",") if item.strip()]


def _metadata_key(key: str) -> bool:
    return re.fullmatch(r"[A-Za-z_]\w{0,49}", key) is not None

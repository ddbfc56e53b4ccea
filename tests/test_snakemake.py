"""snakemake's DIRAC executor against the sandbox: a real snakemake (pinned, .venv-snakemake) runs the example
Snakefile (examples/snakemake) and the failing rules of tests/snakemake/Snakefile; every rule is a real DIRAC job
through the JobAgent, running its command through dirac-km3-job-run, with inputs from and outputs into Rucio.

The two workflows run side by side (the sandbox's site runs two jobs at a time) from a module fixture; each test
reads the run it needs. Bad settings are refused before anything is submitted."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.core.errors import ConfigurationError
from KM3DIRAC.core.snakemake_jobs import (
    SnakemakeJobSpec,
    StagedFile,
    job_jdl,
    job_script,
    parse_status,
    parse_submitted,
    spec_problems,
)

ROOT = Path(__file__).resolve().parent.parent
SNAKEMAKE = ROOT / ".venv-snakemake" / "bin" / "snakemake"
EXAMPLE = ROOT / "examples" / "snakemake"
FAILING = ROOT / "tests" / "snakemake" / "Snakefile"
RUN_TIMEOUT = 480
DETECTOR, RUN, PARTS = "D0133", 14001, 2
DIRAC_JOB = re.compile(r"^rule (\w+) \(\d+\): DIRAC job (\d+)$", re.MULTILINE)


@dataclass
class Workflow:
    directory: Path
    prefix: str
    scope: str
    process: subprocess.Popen | None = None
    log: Path | None = None

    def start(self, sandbox: RunningSandbox, *arguments: str) -> None:
        self.log = self.directory / f"snakemake-{time.monotonic_ns()}.log"
        with self.log.open("w") as out:
            self.process = subprocess.Popen([str(SNAKEMAKE), *snakemake_options(self.prefix), *arguments],
                                            cwd=self.directory, env=sandbox.user_env(), stdout=out,
                                            stderr=subprocess.STDOUT, text=True)

    def wait(self) -> tuple[int, str]:
        try:
            code = self.process.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            pytest.fail(f"snakemake still running after {RUN_TIMEOUT} s:\n{self.log.read_text()[-3000:]}")
        return code, self.log.read_text()

    def run(self, sandbox: RunningSandbox, *arguments: str) -> tuple[int, str]:
        self.start(sandbox, *arguments)
        return self.wait()


def snakemake_options(prefix: str, output_se: str = "KM3-DISK-2") -> list[str]:
    return ["--executor", "dirac", "--default-storage-provider", "km3dirac", "--default-storage-prefix", prefix,
            "--dirac-output-se", output_se, "--jobs", "10", "--seconds-between-status-checks", "2",
            "--latency-wait", "5"]


def _new_workflow(sandbox: RunningSandbox, tmp: Path, source: Path, name: str) -> Workflow:
    scope = f"u{uuid.uuid4().hex[:10]}"
    directory = tmp / name
    directory.mkdir()
    shutil.copy(source / "Snakefile" if source.is_dir() else source, directory / "Snakefile")
    if source.is_dir():
        (directory / "config.yaml").write_text(f"detectors:\n  {DETECTOR}: [{RUN}]\nfiles_per_run: {PARTS}\n")
    sandbox.dirac_client("add-scope", scope)
    return Workflow(directory, f"/km3net/{scope}/wf", scope)


@pytest.fixture(scope="module")
def workflows(local_sandbox: RunningSandbox, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Workflow]:
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: make install creates .venv-snakemake")
    tmp = tmp_path_factory.mktemp("snakemake")
    example = _new_workflow(local_sandbox, tmp, EXAMPLE, "example")
    raw = tmp / "raw"
    raw.mkdir()
    for part in range(PARTS):  # the raw files of one run, in Rucio below the workflow's prefix
        name = f"{DETECTOR}_{RUN}_{part}.dat"
        (raw / name).write_bytes(uuid.uuid4().bytes * (100 + part))
        local_sandbox.dirac_client("upload-km3net-file", example.scope,
                                   f"{example.prefix}/raw/{DETECTOR}/run{RUN}/{name}", str(raw / name), "KM3-DISK-1",
                                   json.dumps({"run_number": RUN}))
    failing = _new_workflow(local_sandbox, tmp, FAILING, "failing")
    example.start(local_sandbox)
    failing.start(local_sandbox, "--keep-going")
    return {"example": example, "failing": failing}


def _rucio_files(sandbox: RunningSandbox, workflow: Workflow, pattern: str) -> dict[str, dict]:
    return sandbox.dirac_client("rucio-files", workflow.scope, f"{workflow.prefix}/{pattern}")["files"]


@pytest.mark.sandbox
@pytest.mark.snakemake
def test_every_rule_is_a_dirac_job_with_outputs_in_rucio_and_a_second_run_does_nothing(
        local_sandbox: RunningSandbox, workflows: dict[str, Workflow]):
    example = workflows["example"]
    code, log = example.wait()
    assert code == 0, log[-4000:]
    jobs = DIRAC_JOB.findall(log)
    assert sorted(rule for rule, _ in jobs) == ["reconstruct"] * PARTS + ["summarise"], log[-4000:]
    job_ids = {int(job_id) for _, job_id in jobs}
    for job_id in job_ids:  # real DIRAC jobs, run by the JobAgent, through KM3DIRAC's wrapper
        attributes = local_sandbox.dirac_client("job-attributes", str(job_id))
        assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), attributes

    reco = _rucio_files(local_sandbox, example, f"reco/{DETECTOR}/run{RUN}/*")
    raw_lfns = [f"{example.prefix}/raw/{DETECTOR}/run{RUN}/{DETECTOR}_{RUN}_{part}.dat" for part in range(PARTS)]
    assert sorted(reco) == [lfn.replace("/raw/", "/reco/").replace(".dat", ".reco.txt") for lfn in raw_lfns]
    for lfn, meta in reco.items():  # provenance: the DIRAC job that made it and the file it was made from
        assert int(meta["JobID"]) in job_ids and meta["Step"] == "reconstruct", meta
        assert meta["Parents"] == lfn.replace("/reco/", "/raw/").replace(".reco.txt", ".dat"), meta
        assert (meta["detector"], meta["run"]) == (DETECTOR, str(RUN)), meta
    (summary_lfn, summary), = _rucio_files(local_sandbox, example, f"summary/{DETECTOR}/*").items()
    assert summary_lfn == f"{example.prefix}/summary/{DETECTOR}/run{RUN}.summary.txt"
    assert summary["Parents"] == ",".join(sorted(reco)) and summary["Step"] == "summarise", summary
    assert int(summary["JobID"]) in job_ids and summary["run_number"] == str(RUN), summary  # run inherited

    fetched = local_sandbox.run("dirac-dms-get-file", summary_lfn, cwd=example.directory)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    lines = (example.directory / f"run{RUN}.summary.txt").read_text().splitlines()
    assert lines == [f"reconstructed {100 * 16 + 16 * part} bytes of {DETECTOR}_{RUN}_{part}.dat"
                     for part in range(PARTS)], lines

    code, log = example.run(local_sandbox)
    assert code == 0, log[-3000:]
    assert "Nothing to be done" in log and not DIRAC_JOB.search(log), log[-3000:]


@pytest.mark.sandbox
@pytest.mark.snakemake
def test_a_rule_failing_once_is_retried_and_one_always_failing_is_reported_with_its_job_id(
        local_sandbox: RunningSandbox, workflows: dict[str, Workflow]):
    failing = workflows["failing"]
    code, log = failing.wait()
    assert code != 0, log[-4000:]
    jobs = DIRAC_JOB.findall(log)
    flaky = [int(job_id) for rule, job_id in jobs if rule == "flaky"]
    broken = [int(job_id) for rule, job_id in jobs if rule == "broken"]
    assert len(flaky) == 2 and len(broken) == 1, jobs  # flaky: retries: 1; broken: none
    first, second = flaky
    assert f"DIRAC job {first} Failed" in log and "flaky: the first attempt fails on purpose" in log, log[-4000:]
    assert local_sandbox.dirac_client("job-attributes", str(second))["status"] == "Done"
    (_, ok_meta), = _rucio_files(local_sandbox, failing, "flaky/*").items()
    assert int(ok_meta["JobID"]) == second, ok_meta
    # the always failing rule: its DIRAC job id, its status and the tail of its log in snakemake's output
    assert re.search(rf"Error in rule broken:\n\s+message: DIRAC job {broken[0]} Failed: "
                     r"ApplicationStatus=Payload failed with exit code 7", log), log[-4000:]
    assert "broken: this rule always fails" in log and f"external_jobid: {broken[0]}" in log, log[-4000:]
    assert _rucio_files(local_sandbox, failing, "broken/*") == {}


@pytest.mark.sandbox
@pytest.mark.snakemake
def test_bad_settings_are_refused_before_anything_is_submitted(local_sandbox: RunningSandbox, tmp_path: Path):
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: make install creates .venv-snakemake")
    shutil.copy(FAILING, tmp_path / "Snakefile")
    prefix = f"/km3net/u{uuid.uuid4().hex[:10]}/wf"

    def refused(*options: str, env_update: dict | None = None) -> str:
        env = {**local_sandbox.user_env(), **(env_update or {})}
        answer = subprocess.run([str(SNAKEMAKE), *options], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=300, check=False)
        assert answer.returncode != 0, answer.stdout + answer.stderr
        assert "DIRAC job" not in answer.stdout + answer.stderr
        return answer.stdout + answer.stderr

    # no proxy and an unknown output SE: both named at once
    out = refused(*snakemake_options(prefix, output_se="NO-SUCH-SE"), "flaky",
                  env_update={"X509_USER_PROXY": str(tmp_path / "no-proxy.pem")})
    assert "no valid grid proxy" in out and "dirac-proxy-init" in out, out[-2000:]
    assert "NO-SUCH-SE: no such RSE in Rucio" in out, out[-2000:]
    # a rule without declared outputs
    out = refused(*snakemake_options(prefix), "no_output")
    assert "rule no_output: no declared output" in out, out[-2000:]


@pytest.mark.sandbox
@pytest.mark.snakemake
def test_ctrl_c_kills_the_running_dirac_jobs(local_sandbox: RunningSandbox, tmp_path: Path):
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: make install creates .venv-snakemake")
    workflow = _new_workflow(local_sandbox, tmp_path, FAILING, "cancel")
    workflow.start(local_sandbox, "slow")
    deadline = time.monotonic() + RUN_TIMEOUT
    job_id = None
    while time.monotonic() < deadline and job_id is None and workflow.process.poll() is None:
        time.sleep(1)
        found = DIRAC_JOB.search(workflow.log.read_text())
        job_id = found.group(2) if found else None
    assert job_id, workflow.log.read_text()[-3000:]
    workflow.process.send_signal(signal.SIGINT)
    code, log = workflow.wait()
    assert code != 0, log[-3000:]
    assert f"killed DIRAC jobs {job_id}" in log, log[-3000:]
    attributes = {"status": ""}
    while time.monotonic() < deadline and attributes["status"] not in ("Killed", "Failed"):
        attributes = local_sandbox.dirac_client("job-attributes", job_id)
        time.sleep(1)
    # DIRAC 9.1: a job killed while Waiting is Killed; one killed while its payload runs ends Failed with
    # "Received Kill signal" (the JobWrapper's report)
    assert attributes["status"] == "Killed" or (attributes["status"], attributes["minor_status"]) == \
        ("Failed", "Received Kill signal"), attributes


# ---- the job description, without DIRAC or snakemake

def _spec(**changes) -> SnakemakeJobSpec:
    values = dict(name="smk-reco-D0133-1", rule="reco", command="wc -c in/a.dat > out/a.txt",
                  inputs=[StagedFile("/km3net/u1/wf/in/a.dat", "in/a.dat")],
                  outputs=[StagedFile("/km3net/u1/wf/out/a.txt", "out/a.txt")], output_se="KM3-DISK-1",
                  cpu_time=600, processors=4, max_ram_mb=2000, site="DIRAC.Sandbox.local", tags=["GPU"],
                  software="v19")
    values.update(changes)
    return SnakemakeJobSpec(**values)


def test_resources_go_into_the_jdl_and_dirac_accepts_it(tmp_path: Path):
    from DIRAC.Core.Utilities.ClassAd.ClassAdLight import ClassAd
    from DIRAC.Core.Utilities.JDL import jdlToBaseJobDescriptionModel

    script = tmp_path / "snakemake-job.sh"
    script.write_text(job_script(_spec()))
    jdl = ClassAd(job_jdl(_spec(), script))
    assert jdl.isOK()
    # DIRAC's job model (a Site is checked against the CS, which this test has not: without one)
    assert jdlToBaseJobDescriptionModel(ClassAd(job_jdl(_spec(site=None), script)))["OK"]
    assert (jdl.getAttributeInt("CPUTime"), jdl.getAttributeInt("NumberOfProcessors"),
            jdl.getAttributeInt("MaxRAM")) == (600, 4, 2000)
    assert jdl.getAttributeString("Site") == "DIRAC.Sandbox.local" and jdl.getListFromExpression("Tags") == ["GPU"]
    assert jdl.getListFromExpression("KM3InputData") == ["/km3net/u1/wf/in/a.dat"]
    assert jdl.getAttributeString("KM3OutputPath") == "/km3net/u1/wf/out"
    text = script.read_text()  # the input linked where the command names it; the command in the CVMFS software
    assert 'ln -sf "$PWD"/a.dat in/a.dat' in text and "mkdir -p out" in text
    assert "km3-cvmfs-run v19 bash -c" in text


def test_unsubmittable_jobs_are_named():
    problems = spec_problems(_spec(outputs=[], command=""))
    assert any("no declared output" in p for p in problems) and any("no shell command" in p for p in problems)
    two_dirs = [StagedFile("/km3net/u1/wf/a/x.txt", "a/x.txt"), StagedFile("/km3net/u1/wf/b/y.txt", "b/y.txt")]
    assert any("2 directories" in p for p in spec_problems(_spec(outputs=two_dirs)))


def test_dirac_answers_are_read():
    accepted, refused = parse_submitted("JobID = 11\nERROR b.jdl: no proxy\nJobID = 12\n", ["a.jdl", "b.jdl", "c.jdl"])
    assert accepted == {"a.jdl": 11, "c.jdl": 12} and refused == {"b.jdl": "no proxy"}
    with pytest.raises(ConfigurationError):
        parse_submitted("nothing\n", ["a.jdl"])
    states = parse_status("JobID=11 Status=Done; MinorStatus=Execution Complete; Site=X; \n"
                          "JobID=12 Status=Failed; MinorStatus=Application Finished With Errors; \n")
    assert states[11]["Status"] == "Done" and states[12]["MinorStatus"] == "Application Finished With Errors"

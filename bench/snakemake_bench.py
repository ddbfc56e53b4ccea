"""snakemake's DIRAC executor against plain DIRAC submission, on the local sandbox (issue 15's benchmark).

The same N jobs (default 20: each writes one small file, uploaded and registered in Rucio by dirac-km3-job-run) are
run twice to the end: submitted by hand with one ``dirac-wms-job-submit`` of their N JDLs and polled with one
``dirac-wms-job-status`` of all N ids per cycle (the baseline), and by ``snakemake --executor dirac`` with
bench/snakemake/Snakefile. Printed side by side: wall time until all jobs are done, time spent in submission and in
status polling per job, and their ratio; then the cost of one ``dirac-wms-job-status`` call against the number of job
ids in it (the executor makes one such call per status check, whatever the number of running jobs).

Usage: ``make bench-snakemake`` (BENCH_ARGS="--jobs 10 --sandbox DIR"). Without --sandbox a fresh sandbox is brought
up (a few minutes) and reset afterwards. The sandbox's site runs two jobs at a time: the wall times are dominated by
the JobAgent, the submission and polling times are the overhead the executor adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from KM3DIRAC.core.snakemake_jobs import (
    FINAL_STATES,
    JOB_SCRIPT,
    SnakemakeJobSpec,
    StagedFile,
    job_jdl,
    job_script,
    parse_status,
    parse_submitted,
)
from KM3DIRAC.sandbox.local_sandbox import SandboxPaths, user_environment

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SNAKEMAKE = ROOT / ".venv-snakemake" / "bin" / "snakemake"
SNAKEFILE = ROOT / "bench" / "snakemake" / "Snakefile"
OUTPUT_SE = "KM3-DISK-2"
TIMEOUT = 3600


def _dirac(env: dict, *command: str, cwd: Path | None = None) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    answer = subprocess.run([str(BIN / command[0]), *command[1:]], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=600, check=False)
    return answer, time.monotonic() - start


def _add_scope(env: dict, scope: str) -> None:
    code = f"from rucio.client import Client; c = Client(); c.add_scope(c.account, {scope!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, timeout=120)


def plain(env: dict, work: Path, jobs: int, interval: float) -> dict:
    """The same jobs as the snakemake run, by hand: one submit call of N JDLs, one status call per cycle."""
    scope = f"b{uuid.uuid4().hex[:10]}"
    _add_scope(env, scope)
    prefix = f"/km3net/{scope}/plain"
    jdls = []
    for i in range(jobs):
        spec = SnakemakeJobSpec(name=f"plain-one-{i}", rule="one", command=f"echo job {i} > out/job{i}.txt",
                                outputs=[StagedFile(f"{prefix}/out/job{i}.txt", f"out/job{i}.txt")],
                                output_se=OUTPUT_SE, cpu_time=600, job_group="bench-plain")
        directory = work / "plain" / str(i)
        directory.mkdir(parents=True)
        (directory / JOB_SCRIPT).write_text(job_script(spec))
        (directory / "job.jdl").write_text(job_jdl(spec, directory / JOB_SCRIPT))
        jdls.append(str(directory / "job.jdl"))
    start = time.monotonic()
    answer, submit_seconds = _dirac(env, "dirac-wms-job-submit", *jdls)
    accepted, refused = parse_submitted(answer.stdout, jdls)
    if refused:
        raise SystemExit(f"plain submission refused: {refused}")
    ids = [str(job_id) for job_id in accepted.values()]
    status_seconds, status_calls, states = 0.0, 0, {}
    while time.monotonic() - start < TIMEOUT:
        time.sleep(interval)
        answer, seconds = _dirac(env, "dirac-wms-job-status", *ids)
        status_seconds += seconds
        status_calls += 1
        states = parse_status(answer.stdout)
        if len(states) == len(ids) and all(s.get("Status") in FINAL_STATES for s in states.values()):
            break
    failed = [job_id for job_id, s in states.items() if not FINAL_STATES.get(s.get("Status"), False)]
    if failed:
        raise SystemExit(f"plain jobs not Done: {failed}")
    return {"wall": time.monotonic() - start, "submit": submit_seconds, "status": status_seconds,
            "status_calls": status_calls, "ids": ids}


def with_snakemake(env: dict, work: Path, jobs: int, interval: float) -> dict:
    scope = f"b{uuid.uuid4().hex[:10]}"
    _add_scope(env, scope)
    directory = work / "snakemake"
    directory.mkdir()
    stats_file = directory / "executor-stats.json"
    command = [str(SNAKEMAKE), "--snakefile", str(SNAKEFILE), "--config", f"jobs={jobs}", "--executor", "dirac",
               "--default-storage-provider", "km3dirac", "--default-storage-prefix", f"/km3net/{scope}/smk",
               "--dirac-output-se", OUTPUT_SE, "--jobs", str(jobs), "--seconds-between-status-checks",
               str(int(interval)), "--latency-wait", "5"]
    start = time.monotonic()
    answer = subprocess.run(command, cwd=directory, env={**env, "KM3DIRAC_SNAKEMAKE_STATS": str(stats_file)},
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)
    wall = time.monotonic() - start
    if answer.returncode != 0:
        raise SystemExit(f"snakemake failed:\n{answer.stdout[-3000:]}\n{answer.stderr[-3000:]}")
    stats = json.loads(stats_file.read_text())
    calls = stats["calls"]
    submit = calls.get("dirac-wms-job-submit", {})
    status = calls.get("dirac-wms-job-status", {})
    return {"wall": wall, "submit": submit.get("seconds", 0.0), "submit_calls": submit.get("calls", 0),
            "status": status.get("seconds", 0.0), "status_calls": status.get("calls", 0),
            "status_ids": status.get("arguments", 0), "startup_checks": calls.get("dirac-proxy-info", {}).get(
                "seconds", 0.0)}


def polling_cost(env: dict, ids: list[str], repeats: int) -> dict[int, float]:
    """Median seconds of one dirac-wms-job-status call with n job ids."""
    costs = {}
    for n in sorted({1, 5, 10, len(ids)}):
        if n > len(ids):
            continue
        costs[n] = statistics.median(_dirac(env, "dirac-wms-job-status", *ids[:n])[1] for _ in range(repeats))
    return costs


def report(jobs: int, baseline: dict, smk: dict, costs: dict[int, float]) -> None:
    def per_job(result: dict) -> float:
        return (result["submit"] + result["status"]) / jobs

    rows = [
        ("wall time until all done (s)", baseline["wall"], smk["wall"]),
        ("submission (s per job)", baseline["submit"] / jobs, smk["submit"] / jobs),
        ("status polling (s per job)", baseline["status"] / jobs, smk["status"] / jobs),
        ("submission + polling (s per job)", per_job(baseline), per_job(smk)),
    ]
    print(f"{jobs} jobs, sandbox (loaded shared machine: compare ratios, not seconds)")
    print(f"{'':36}{'plain DIRAC':>14}{'snakemake':>14}{'ratio':>9}")
    for name, plain_value, smk_value in rows:
        ratio = smk_value / plain_value if plain_value else float("nan")
        print(f"{name:36}{plain_value:14.3f}{smk_value:14.3f}{ratio:9.2f}")
    print(f"{'submit calls':36}{1:14d}{smk['submit_calls']:14d}")
    per_cycle = smk["status_ids"] / smk["status_calls"] if smk["status_calls"] else 0
    print(f"{'status calls (job ids per call)':36}{baseline['status_calls']:14d}"
          f"{smk['status_calls']:9d} ({per_cycle:.1f})")
    print(f"snakemake start-up checks (proxy): {smk['startup_checks']:.2f} s")
    print("one dirac-wms-job-status call against the number of job ids in it:")
    base = costs[min(costs)]
    for n, seconds in costs.items():
        print(f"  {n:4d} ids: {seconds:.3f} s  ({seconds / base:.2f}x the 1-id call)")
    print(json.dumps({"jobs": jobs, "plain": {k: v for k, v in baseline.items() if k != "ids"}, "snakemake": smk,
                      "status_call_seconds_by_ids": costs}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=3, help="seconds between status checks (both runs)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each status-call measurement")
    parser.add_argument("--sandbox", type=Path, help="a sandbox that is up (default: a fresh one, reset after)")
    args = parser.parse_args(argv)
    if not SNAKEMAKE.exists():
        raise SystemExit(f"{SNAKEMAKE} is missing: make install")
    own = args.sandbox is None
    directory = Path(tempfile.mkdtemp(prefix="km3dirac-bench-smk-")) if own else args.sandbox.resolve()
    sandbox_command = [str(BIN / "dirac-km3-sandbox")]
    try:
        if own:
            subprocess.run([*sandbox_command, "up", "--dir", str(directory)], check=True, capture_output=True)
        env = user_environment(SandboxPaths(directory))
        with tempfile.TemporaryDirectory(prefix="km3dirac-bench-smk-work-") as work:
            baseline = plain(env, Path(work), args.jobs, args.interval)
            smk = with_snakemake(env, Path(work), args.jobs, args.interval)
            report(args.jobs, baseline, smk, polling_cost(env, baseline["ids"], args.repeats))
    finally:
        if own:
            subprocess.run([*sandbox_command, "reset", "--dir", str(directory)], check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

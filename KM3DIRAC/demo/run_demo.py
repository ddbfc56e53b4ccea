"""The main job, end to end, on the local sandbox (``make demo``):

1. bring up the local sandbox (real DIRAC services and agents, Rucio, MariaDB) unless it runs already;
2. night 1: a DAQ stand-in writes raw runs of detector 49 (copies of a real KM3NeT sample file, km3net-testdata)
   into the shore station's DAQ directory (the storage of the RSE ``KM3-SHORE``), each file as ``<name>.part``
   renamed when complete, then the run's end-of-run marker; ``dirac-km3-ingest`` registers them where they lie (one
   Rucio dataset per run with run metadata and events, closed once the run is complete); ``dirac-km3-replicate`` with
   policies/replication.yaml: two disk copies and one tape copy of each run, then the shore copies released;
3. create the two-step train of trains/demo.yaml: ``process`` (chunks of each run; km3io reads every event) and
   ``merge`` (one task per run), fed by ``process``'s registered outputs through its input meta query;
4. follow it until night 1's runs are merged while KM3DIRAC's TrainAgent moves it (nobody runs
   ``dirac-km3-train advance``: the agent closes each run's ``process`` output dataset once the run is processed
   there);
5. night 2: new runs are written and ingested (only they: the first night's files are in Rucio already), and the
   agent has the train process them; a summary with the commands to look at the results.

Running it again does not duplicate anything: ingestion skips what Rucio has, the train's transformations exist.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import KM3DIRAC

SOURCE_ROOT = Path(KM3DIRAC.__file__).resolve().parent.parent
TRAIN_FILE = SOURCE_ROOT / "trains" / "demo.yaml"
TEMPLATES = SOURCE_ROOT / "jdl_templates"
#: KM3NeT's replication policy; the demo applies it to its own scope (README "Replication and deletion ...")
POLICY_FILE = SOURCE_ROOT / "policies" / "replication.yaml"
SCOPE = "km3demo"
DETECTOR = 49
FIRST_RUN = 11291
SAMPLE = "offline/km3net_offline.root"
#: the run datasets of the demo (dirac-km3-ingest --layout; the train's input path is /km3net/km3demo/raw)
DATASET_LAYOUT = "/{vo}/{scope}/raw/KM3NeT_{detector:08d}/run{run}"


@dataclass
class Timings:
    stages: dict[str, float] = field(default_factory=dict)

    def stage(self, name: str, start: float) -> None:
        self.stages[name] = time.monotonic() - start
        print(f"[demo] {name}: {self.stages[name]:.1f} s", flush=True)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


# ---------------------------------------------------------------------------------------------- outside DIRAC
def ensure_sandbox(directory: Path) -> None:
    """Use the sandbox in ``directory`` as it is: start it (with the state it kept) when it is down, restart it
    when it is partly up. Nothing is thrown away: a second demo finds what the first one made."""
    from KM3DIRAC.sandbox.local_sandbox import Sandbox

    sandbox = Sandbox(directory)
    healthy, _report = sandbox.status() if (directory / "state.json").exists() else (False, "")
    if healthy:
        say(f"sandbox already up in {directory}")
        return
    if sandbox.state.components:
        say(f"sandbox in {directory} is partly up: restarting it (its state is kept)")
        sandbox.down()
        sandbox = Sandbox(directory)
    print(sandbox.up(), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=SOURCE_ROOT / ".work" / "demo-sandbox")
    parser.add_argument("--runs", type=int, default=3, help="runs of the first night (default 3)")
    parser.add_argument("--new-runs", type=int, default=2, help="runs of the second night (default 2)")
    parser.add_argument("--files-per-run", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for the train (default 900)")
    parser.add_argument("--down", action="store_true", help="stop the sandbox at the end")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        return inside(args)
    start = time.monotonic()
    ensure_sandbox(args.dir.resolve())
    sandbox_seconds = time.monotonic() - start
    say(f"sandbox ready: {sandbox_seconds:.1f} s")
    from KM3DIRAC.sandbox.local_sandbox import SandboxPaths, user_environment

    env = user_environment(SandboxPaths(args.dir.resolve()))
    command = [sys.executable, "-m", "KM3DIRAC.demo.run_demo", "--inside", "--dir", str(args.dir),
               "--runs", str(args.runs), "--new-runs", str(args.new_runs), "--files-per-run",
               str(args.files_per_run), "--timeout", str(args.timeout)]
    code = subprocess.run(command, env={**env, "KM3DIRAC_DEMO_SANDBOX_SECONDS": f"{sandbox_seconds:.1f}"},
                          check=False).returncode
    from KM3DIRAC.sandbox.local_sandbox import Sandbox, enter_command

    sandbox = Sandbox(args.dir.resolve())
    if args.down:
        print(sandbox.down())
        print(f"start it again (its state is kept): {enter_command(args.dir.resolve(), 'up')}")
    elif url := sandbox.portal_url():
        say("the demo's jobs, train steps, requests and files in DIRAC's web portal (Job Monitor, Transformation "
            "Monitor, Request Monitor, File Catalog in the menu), logged in as the sandbox user:")
        print(f"    {url}", flush=True)
    print(f"enter the sandbox: {enter_command(args.dir.resolve())}")
    return code


# ---------------------------------------------------------------------------------------------- inside DIRAC
def inside(args: argparse.Namespace) -> int:
    sys.argv = sys.argv[:1]
    from DIRAC.Core.Base.Script import Script

    Script.parseCommandLine(ignoreErrors=True)
    from KM3DIRAC.core.trains import load_train
    from KM3DIRAC.demo.calibrations import register_demo_calibrations
    from KM3DIRAC.TransformationSystem.Client.Trains import TrainManager
    from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

    timings = Timings()
    if os.environ.get("KM3DIRAC_DEMO_SANDBOX_SECONDS"):
        timings.stages["sandbox up"] = float(os.environ["KM3DIRAC_DEMO_SANDBOX_SECONDS"])
    from KM3DIRAC.sandbox.local_sandbox import SHORE_RSE, SandboxPaths

    catalog = catalog_from_cs()
    # The DAQ stand-in writes each run where DIRAC's StorageElement KM3-SHORE finds it by LFN (<storage>/<LFN>): the
    # sandbox's mover (DIRAC's RMS ReplicateAndRegister) reads the source copy through it. Rucio's own transfers
    # (production) read each replica at its PFN, whatever the DAQ's layout.
    shore = SandboxPaths(args.dir.resolve()).storage_dir(SHORE_RSE)
    nights = [[FIRST_RUN + index for index in range(args.runs)],
              [FIRST_RUN + args.runs + index for index in range(args.new_runs)]]
    ingested: list[list[str]] = []
    start = time.monotonic()
    policy = demo_policy(args.dir.resolve())
    ingested.append(night(catalog, 1, nights[0], args.files_per_run, shore, policy))
    register_demo_calibrations(catalog, args.dir.resolve() / "demo-calibration", say)
    timings.stage("night 1 ingestion", start)

    start = time.monotonic()
    train = load_train(TRAIN_FILE, TEMPLATES)
    manager = TrainManager(train, TEMPLATES)
    for state in manager.create():
        say(f"step {state.step}: transformation {state.transformation_id} "
            f"({'created' if state.created else 'exists already'})")
    timings.stage("train created", start)

    start = time.monotonic()
    finished = follow(manager, catalog, nights[0], args.timeout)
    timings.stage("night 1 train run", start)
    runs = nights[0]
    if finished and nights[1]:
        start = time.monotonic()
        ingested.append(night(catalog, 2, nights[1], args.files_per_run, shore, policy))
        timings.stage("night 2 ingestion", start)
        start = time.monotonic()
        runs = nights[0] + nights[1]
        finished = follow(manager, catalog, runs, args.timeout)
        timings.stage("night 2 train run", start)
    summary(manager, catalog, runs, timings, finished, args.dir.resolve(), ingested)
    return 0 if finished else 1


def night(catalog, number: int, runs: list[int], files_per_run: int, shore: Path, policy: Path) -> list[str]:
    """One night at the shore station: the DAQ writes its runs, the ingestion registers them, the replication step
    copies them to the computing centres and releases the shore copies. Returns the summary lines of both."""
    from rucio.common.exception import Duplicate

    try:
        catalog.client.add_scope(catalog.client.account, SCOPE)
    except Duplicate:
        pass
    daq = shore / "km3net" / SCOPE / "raw"  # the runs' directories below it: see write_runs
    say(f"night {number}: the DAQ writes runs {', '.join(map(str, runs))} into {daq}")
    write_runs(catalog, runs, files_per_run, shore)
    lines = ingest(daq)
    return lines + replicate(policy)


def write_runs(catalog, runs: list[int], files_per_run: int, shore: Path) -> None:
    """The DAQ stand-in: each file written as ``<name>.part`` and renamed when complete, then the run's end-of-run
    marker, in the run's directory below the shore station's storage ``shore``. Runs the catalog has already (an
    earlier demo) are not written again."""
    from km3net_testdata import data_path

    known = catalog.exists({dataset_of_run(run): True for run in runs}).successful
    for run in runs:
        if known.get(dataset_of_run(run)):
            say(f"run {run}: in Rucio already (an earlier demo), not written again")
            continue
        directory = shore / dataset_of_run(run).lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for part in range(files_per_run):
            name = f"KM3NeT_{DETECTOR:08d}_{run:08d}.{part}.offline.root"
            if not (directory / name).exists():
                shutil.copy(data_path(SAMPLE), directory / f"{name}.part")
                (directory / f"{name}.part").rename(directory / name)
        (directory / f"KM3NeT_{DETECTOR:08d}_{run:08d}.end").write_text("")


def dataset_of_run(run: int) -> str:
    return DATASET_LAYOUT.format(vo="km3net", scope=SCOPE, detector=DETECTOR, run=run)


def ingest(daq: Path) -> list[str]:
    """``dirac-km3-ingest`` as cron would run it: the DAQ directory at the shore RSE, runs closed by their
    end-of-run markers. Its output is shown; its summary lines are returned."""
    command = [str(Path(sys.executable).parent / "dirac-km3-ingest"), f"--directory={daq}", "--rse=KM3-SHORE",
               f"--scope={SCOPE}", f"--layout={DATASET_LAYOUT}", "--settle=0", "--close-by=marker"]
    say("$ dirac-km3-ingest " + " ".join(command[1:]))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.strip() and "remote configuration" not in line]
    for line in lines:
        print(f"    {line}", flush=True)
    if result.returncode != 0:
        raise SystemExit(f"dirac-km3-ingest failed ({result.returncode}): {result.stderr.strip()}")
    return [line for line in lines if line.startswith(("night ", "this pass", "runs closed"))]


def demo_policy(directory: Path) -> Path:
    """KM3NeT's policy file (two disk copies, one tape copy, then the shore copy goes) for the demo's scope."""
    import yaml

    policy = yaml.safe_load(POLICY_FILE.read_text())
    for entry in policy["policies"]:
        entry["scopes"] = [SCOPE]
    path = directory / "replication-demo.yaml"
    path.write_text(f"# {POLICY_FILE} with the demo's scope\n" + yaml.safe_dump(policy, sort_keys=False))
    return path


def replicate(policy: Path) -> list[str]:
    """The replication step as cron would run it: ``dirac-km3-replicate apply`` (Rucio rules; in the sandbox DIRAC's
    RequestExecutingAgent makes the copies the rules wait for), then ``clean-source`` (the shore copies of verified
    runs released: Rucio's reaper deletes them). Its output is shown; its summary lines are returned."""
    lines = []
    for action in (["apply", "--wait", "600"], ["clean-source"]):
        command = [str(Path(sys.executable).parent / "dirac-km3-replicate"), *action, str(policy)]
        say("$ dirac-km3-replicate " + " ".join(command[1:]))
        output = []
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
            for line in process.stdout:  # shown as it comes: the copies take a few minutes
                if line.strip() and "remote configuration" not in line:
                    output.append(line.rstrip())
                    print(f"    {output[-1]}", flush=True)
        if process.returncode != 0:
            raise SystemExit(f"dirac-km3-replicate {action[0]} failed ({process.returncode}): see its output above")
        lines += [f"replication {action[0]}: {output[-1]}"] if output else []
    return lines


def follow(manager, catalog, runs: list[int], timeout: float) -> bool:
    """Watch the train until every run is merged: DIRAC's agents and KM3DIRAC's TrainAgent move it."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        states = manager.status()
        line = " | ".join(f"{s.step}: files {_counts(s.files)}; tasks {_counts(s.tasks)}" for s in states)
        if line != last:
            say(line)
            last = line
        merged = catalog.find_files({"datatype": "merged", "TrainName": manager.train.name},
                                    f"/km3net/{SCOPE}/merged")
        if len(merged) >= len(runs) and all(_all_processed(s.files) for s in states):
            return True
        time.sleep(5)
    say(f"train not finished after {timeout:.0f} s")
    return False


def _counts(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v and k != "Total") or "-"


def _all_processed(files: dict) -> bool:
    total = files.get("Total", 0)
    return bool(total) and files.get("Processed", 0) == total


def summary(manager, catalog, runs: list[int], timings: Timings, finished: bool, directory: Path,
            ingested: list[list[str]]) -> None:
    from KM3DIRAC.demo.calibrations import calibrations_used
    from KM3DIRAC.sandbox.local_sandbox import enter_command

    states = manager.status()
    summaries = catalog.find_files({"datatype": "summary", "TrainName": manager.train.name}, f"/km3net/{SCOPE}")
    merged = catalog.find_files({"datatype": "merged", "TrainName": manager.train.name}, f"/km3net/{SCOPE}")
    events = 0
    for lfn in merged:
        replica = next(iter(catalog.replicas({lfn: True}).successful.get(lfn, {}).values()), "")
        path = Path(replica.removeprefix("file://localhost"))
        if path.is_file():
            events += json.loads(path.read_text()).get("events", 0)
    print()
    print("=" * 100)
    print(f"KM3DIRAC demo {'finished' if finished else 'NOT finished'}: train {manager.train.name}")
    print(f"  runs ingested      : {len(runs)} ({', '.join(map(str, runs))}) of detector {DETECTOR}, at KM3-SHORE")
    for state in states:
        print(f"  step {state.step:<8}       : transformation {state.transformation_id}, {state.status}; "
              f"files {_counts(state.files)}; tasks/jobs {_counts(state.tasks)}")
    print(f"  outputs registered : {len(summaries)} summaries, {len(merged)} merged run products "
          f"({events} events counted by km3io)")
    print("  calibrations used  : " + "; ".join(f"run {run} {', '.join(sorted(dids))}" for run, dids in
                                             sorted(calibrations_used(catalog, summaries).items())))
    print("  wall time          : " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.stages.items()))
    for number, lines in enumerate(ingested, 1):  # after the wall time: what changes from one demo to the next
        for line in lines:
            print(f"  ingestion night {number}  : {line}")
    print("  look at the results: enter the sandbox (first line), then run the others:")
    print(f"    {enter_command(directory)}")
    print(f"    dirac-dms-find-lfns Path=/km3net/{SCOPE} datatype=merged")
    print(f"    rucio did list '{SCOPE}:/km3net/{SCOPE}/*' --filter 'type=file,run_number>={runs[0]}'")
    print(f"    dirac-km3-train status {TRAIN_FILE.relative_to(SOURCE_ROOT)}")
    print("=" * 100)


if __name__ == "__main__":
    sys.exit(main())

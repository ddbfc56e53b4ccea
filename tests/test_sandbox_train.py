"""The main job in small, on the local sandbox: real KM3NeT files ingested as raw runs, the demo train created in
DIRAC's TransformationManager, its first step's chunks run by DIRAC's agents and JobWrapper (km3io reads every
event), their registered outputs feeding the per-run merge step with no one in between; run twice, nothing is
duplicated."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from sandbox_fixtures import RunningSandbox

TRAIN_TIMEOUT = 480


def _demo(sandbox: RunningSandbox) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "KM3DIRAC.demo.run_demo", "--inside", "--dir", str(sandbox.directory),
               "--runs", "2", "--files-per-run", "3", "--timeout", str(TRAIN_TIMEOUT)]
    return subprocess.run(command, env=sandbox.user_env(), capture_output=True, text=True,
                          timeout=TRAIN_TIMEOUT + 120, check=False)


@pytest.mark.sandbox
def test_demo_train_runs_end_to_end_and_a_second_run_duplicates_nothing(local_sandbox: RunningSandbox):
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

    second = _demo(local_sandbox)
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-4000:]
    assert second.stdout.count("(exists already)") == 2 and "(created)" not in second.stdout
    assert second.stdout.count("(0 uploaded now)") == 2
    assert "outputs registered : 6 summaries, 2 merged run products" in second.stdout

"""A pilot factory in miniature: run DIRAC's JobAgent again and again on the sandbox's site.

The JobAgent backs off after every unmatched request (its sleep grows with the number of failed matches) and stops
after ``StopAfterFailedMatches`` of them, like a real pilot. Restarting it keeps the time from submission to
execution short without a busy loop. Usage: ``python -m KM3DIRAC.sandbox.pilot_loop <work dir>``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

JOB_AGENT_OPTIONS = {
    "PollingTime": "1",
    "FillingModeFlag": "true",
    "StopAfterFailedMatches": "3",
    "MaxCycles": "0",
    # the JobAgent writes /LocalSite/CPUTimeLeft into this file of its working directory (else <rootPath>/etc/dirac.cfg)
    "/AgentJobRequirements/ExtraOptions": "pilot.cfg",
}
PAUSE_BETWEEN_PILOTS_SECONDS = 1.0


def job_agent_command() -> list[str]:
    command = [str(Path(sys.executable).parent / "dirac-agent"), "WorkloadManagement/JobAgent"]
    for option, value in JOB_AGENT_OPTIONS.items():
        command += ["-o", f"{option}={value}"]
    return command


def run_pilots_forever(work_dir: Path) -> None:
    work_dir.mkdir(parents=True, exist_ok=True)
    # the JobAgent reads a pilot.cfg in its working directory when there is one: an empty one says "no pilot"
    (work_dir / "pilot.cfg").touch()
    while True:
        subprocess.run(job_agent_command(), cwd=work_dir, check=False)
        time.sleep(PAUSE_BETWEEN_PILOTS_SECONDS)


if __name__ == "__main__":
    run_pilots_forever(Path(sys.argv[1]))

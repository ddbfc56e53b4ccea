"""What the local sandbox costs: time of ``dirac-km3-sandbox up`` cold (new directory: CA, MariaDB datadir and
schemas made) and warm (after ``down``, same directory, with the state it kept), and the resident memory of all
its processes.

Usage: ``.venv/bin/python bench/sandbox_costs.py [--dir DIR]`` (default: a fresh temporary directory, removed
afterwards). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from KM3DIRAC.sandbox.state import SandboxState

SANDBOX_COMMAND = str(Path(sys.executable).parent / "dirac-km3-sandbox")


def _run(action: str, directory: Path) -> float:
    start = time.monotonic()
    result = subprocess.run([SANDBOX_COMMAND, action, "--dir", str(directory)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise SystemExit(f"dirac-km3-sandbox {action} failed:\n{result.stdout}\n{result.stderr}")
    return time.monotonic() - start


def _processes() -> dict[int, tuple[int, int, int]]:
    """pid -> (parent pid, process group, resident kB) of every live process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            status = (stat.parent / "status").read_text()
        except OSError:
            continue
        rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[2]), rss)
    return table


def sandbox_resident_mib(directory: Path) -> float:
    """Sum of RSS over the recorded processes, their process groups, and PostgreSQL's postmaster with children."""
    state = SandboxState.load(directory)
    assert state is not None
    table = _processes()
    roots = {record.pid for record in state.components}
    postmaster_pid_file = Path(state.postgres["base_dir"]) / "data" / "postmaster.pid"
    if postmaster_pid_file.exists():
        roots.add(int(postmaster_pid_file.read_text().split()[0]))
    members = {pid for pid, (_, group, _) in table.items() if group in roots} | roots
    changed = True
    while changed:  # descendants that made their own group (PostgreSQL backends)
        children = {pid for pid, (parent, _, _) in table.items() if parent in members} - members
        members |= children
        changed = bool(children)
    return sum(table[pid][2] for pid in members if pid in table) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None)
    arguments = parser.parse_args()
    directory = arguments.dir or Path(tempfile.mkdtemp(prefix="km3dirac-bench-sandbox-"))
    try:
        cold = _run("up", directory)
        time.sleep(20)  # let every agent finish its first cycles
        resident = sandbox_resident_mib(directory)
        _run("down", directory)
        warm = _run("up", directory)
        down = _run("down", directory)
    finally:
        # reset also removes Rucio's database where it lives outside a 0700 temporary directory (below /tmp)
        subprocess.run([SANDBOX_COMMAND, "down" if arguments.dir else "reset", "--dir", str(directory)],
                       capture_output=True, check=False)
        if arguments.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps({"up_cold_s": round(cold, 1), "up_warm_s": round(warm, 1), "down_s": round(down, 1),
                      "resident_MiB": round(resident)}))


if __name__ == "__main__":
    main()

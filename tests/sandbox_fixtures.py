"""The local sandbox as a session fixture: ``dirac-km3-sandbox up`` once, in a fresh directory with free ports, and
always ``reset`` (stop and remove everything) at the end. Test modules import the fixtures they use from here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from KM3DIRAC.sandbox.local_sandbox import SandboxPaths, user_environment

BIN = Path(sys.executable).parent
UP_TIMEOUT = 600
CLIENTS_SCRIPT = Path(__file__).with_name("sandbox_clients.py")


@dataclass(frozen=True)
class RunningSandbox:
    directory: Path

    @property
    def paths(self) -> SandboxPaths:
        return SandboxPaths(self.directory)

    def user_env(self, as_identity: str = "user") -> dict[str, str]:
        """The environment of ``dirac-km3-sandbox env --as <as_identity>`` (default: the sandbox's user)."""
        return user_environment(self.paths, as_identity)

    def run(self, *command: str, timeout: float = 120, cwd: Path | None = None,
            as_identity: str = "user") -> subprocess.CompletedProcess:
        """Run an installed command (``dirac-wms-job-submit`` ...) as the sandbox's user (or ``as_identity``)."""
        return subprocess.run([str(BIN / command[0]), *command[1:]], env=self.user_env(as_identity), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def dirac_client(self, action: str, *arguments: str, timeout: float = 120, as_identity: str = "user") -> dict:
        """Run an action of ``sandbox_clients.py`` (DIRAC's Python clients) as the user; its JSON result."""
        command = [sys.executable, str(CLIENTS_SCRIPT), action, *arguments]
        result = subprocess.run(command, env=self.user_env(as_identity), capture_output=True, text=True,
                                timeout=timeout, check=False)
        assert result.returncode == 0, f"{action} failed:\n{result.stdout}\n{result.stderr}"
        return json.loads(result.stdout.strip().splitlines()[-1])

    def sandbox_command(self, action: str, timeout: float = UP_TIMEOUT, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dirac-km3-sandbox"), action, "--dir", str(self.directory), *options],
                              capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="session")
def local_sandbox() -> Iterator[RunningSandbox]:
    if os.environ.get("KM3DIRAC_TEST_SANDBOX"):  # a sandbox that is up already (developing tests): used, kept up
        yield RunningSandbox(Path(os.environ["KM3DIRAC_TEST_SANDBOX"]).resolve())
        return
    sandbox = RunningSandbox(Path(tempfile.mkdtemp(prefix="km3dirac-sandbox-")))
    try:
        started = sandbox.sandbox_command("up")
        assert started.returncode == 0, f"dirac-km3-sandbox up failed:\n{started.stdout}\n{started.stderr}"
        yield sandbox
    finally:
        # reset also removes Rucio's database where it lives outside the directory (below /tmp: the postgres user
        # cannot reach a 0700 temporary directory)
        keep = os.environ.get("KM3DIRAC_KEEP_TEST_DIR")
        stopped = sandbox.sandbox_command("down" if keep else "reset")
        if not keep:
            shutil.rmtree(sandbox.directory, ignore_errors=True)
        assert stopped.returncode == 0, f"dirac-km3-sandbox down failed:\n{stopped.stdout}\n{stopped.stderr}"


#: the DiracX sandbox started in the background as soon as the session knows it will need it (pytest_collection_finish)
_diracx_start: dict = {}


def pytest_collection_finish(session) -> None:
    """Start ``up --diracx`` right after collection when a selected test needs it: its two minutes pass while the
    tests before it run."""
    if os.environ.get("KM3DIRAC_TEST_DIRACX_SANDBOX") or session.config.option.collectonly:
        return
    if not any(item.get_closest_marker("diracx") for item in session.items):
        return
    directory = Path(tempfile.mkdtemp(prefix="km3dirac-diracx-sandbox-"))
    log_path = directory.with_name(f"{directory.name}-up.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(BIN / "dirac-km3-sandbox"), "up", "--dir", str(directory), "--diracx"],
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _diracx_start.update(sandbox=RunningSandbox(directory), process=process, log=log_path, used=False)


def pytest_sessionfinish(session) -> None:
    """Stop and remove a background DiracX sandbox no test used (the fixture removes the ones it used)."""
    if not _diracx_start or _diracx_start["used"]:
        return
    process: subprocess.Popen = _diracx_start["process"]
    if process.poll() is None:
        process.terminate()  # `up` stops what it started when interrupted (Sandbox.up's down on failure)
        process.wait(timeout=120)
    _stop(_diracx_start["sandbox"])
    _diracx_start["log"].unlink(missing_ok=True)


def _stop(sandbox: RunningSandbox) -> subprocess.CompletedProcess:
    stopped = sandbox.sandbox_command("down" if os.environ.get("KM3DIRAC_KEEP_TEST_DIR") else "reset")
    if not os.environ.get("KM3DIRAC_KEEP_TEST_DIR"):
        shutil.rmtree(sandbox.directory, ignore_errors=True)
    return stopped


@pytest.fixture(scope="session")
def diracx_sandbox() -> Iterator[RunningSandbox]:
    """A sandbox of its own started with ``up --diracx`` (DiracX routes DIRAC's JobStateUpdate calls: the session's
    sandbox stays without it), started in the background after collection. ``KM3DIRAC_TEST_DIRACX_SANDBOX`` names
    one that is up already (used and kept up)."""
    if os.environ.get("KM3DIRAC_TEST_DIRACX_SANDBOX"):
        yield RunningSandbox(Path(os.environ["KM3DIRAC_TEST_DIRACX_SANDBOX"]).resolve())
        return
    assert _diracx_start, "the DiracX sandbox was not started after collection (pytest_collection_finish)"
    _diracx_start["used"] = True
    sandbox: RunningSandbox = _diracx_start["sandbox"]
    try:
        returncode = _diracx_start["process"].wait(timeout=UP_TIMEOUT)
        output = _diracx_start["log"].read_text(errors="replace")
        assert returncode == 0, f"dirac-km3-sandbox up --diracx failed:\n{output}"
        yield sandbox
    finally:
        stopped = _stop(sandbox)
        _diracx_start["log"].unlink(missing_ok=True)
        assert stopped.returncode == 0, f"dirac-km3-sandbox down failed:\n{stopped.stdout}\n{stopped.stderr}"

"""Small helpers shared by the launchers of local services: free loopback ports, waiting, stopping process groups."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """A local service did not come up; the message names it and quotes the end of its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(check: Callable[[], bool], *, what: str, timeout: float, log_file: Path | None = None,
               process: subprocess.Popen | None = None) -> None:
    """Poll ``check`` until it is true; raise :class:`ServiceStartError` naming ``what`` on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if process is not None and process.poll() is not None:
            tail = log_tail(log_file) if log_file else ""
            raise ServiceStartError(f"{what} exited with code {process.returncode} while starting:\n{tail}")
        time.sleep(0.1)
    tail = log_tail(log_file) if log_file else ""
    raise ServiceStartError(f"{what} did not become ready within {timeout:.0f} s:\n{tail}")


def http_get_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_process(command: Sequence[str], *, log_file: Path, env: dict[str, str] | None = None,
                  cwd: Path | None = None) -> subprocess.Popen:
    """Start ``command`` in its own process group with stdout and stderr appended to ``log_file``."""
    with open(log_file, "ab") as log:
        return subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
            start_new_session=True,
        )


def stop_process_group(process: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM the process group of ``process``, then SIGKILL it if it is still there after ``timeout``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)

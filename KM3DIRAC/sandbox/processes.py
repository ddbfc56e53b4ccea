"""Small helpers shared by the launchers of local services: loopback ports reserved machine-wide, waiting,
stopping process groups.

Ports: a port chosen free is bound later by another process (a service starting seconds afterwards), so two
sandboxes or test sessions choosing at the same moment could pick the same one. :func:`reserve_port` therefore
chooses under a machine-wide lock, from below the kernel's ephemeral range (outgoing connections never take those
ports), skips ports reserved by a live process, and records its reservation (pid and start time) in
``/tmp/km3dirac-ports`` (``KM3DIRAC_PORT_REGISTRY``). A reservation lapses when its process exits: by then the port
is bound by the service it was meant for, and a bound port is never chosen.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
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


PORT_REGISTRY_VARIABLE = "KM3DIRAC_PORT_REGISTRY"
DEFAULT_PORT_REGISTRY = Path("/tmp/km3dirac-ports")
#: a reservation older than this is ignored even if its process still runs (a forgotten long-lived process)
RESERVATION_MAX_AGE_SECONDS = 6 * 3600
LOWEST_PORT = 10000
CANDIDATES_PER_ATTEMPT = 500


def port_registry() -> Path:
    return Path(os.environ.get(PORT_REGISTRY_VARIABLE, DEFAULT_PORT_REGISTRY))


def _port_range() -> range:
    """Ports below the kernel's ephemeral range (or above it when too little is left below)."""
    try:
        low, high = (int(value) for value in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - LOWEST_PORT >= 2000:
        return range(LOWEST_PORT, low)
    return range(high + 1, 65536)


def _start_time(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _reserved_by_a_live_process(entry: Path) -> bool:
    try:
        reservation = json.loads(entry.read_text())
    except (OSError, ValueError):
        return False
    if time.time() - reservation.get("time", 0) > RESERVATION_MAX_AGE_SECONDS:
        return False
    return _start_time(reservation.get("pid", -1)) == reservation.get("start_time")


def port_is_bindable(port: int, reuse_address: bool = False) -> bool:
    """Nothing is bound to ``port`` on any address. Without ``reuse_address`` also no connection of an earlier
    server lingers on it (TIME_WAIT): any program can bind it. With it, the test a server setting SO_REUSEADDR
    (DISET, PostgreSQL, MariaDB, gunicorn) would pass: how a restarted sandbox gets its own ports back."""
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((address, port))
            return True
        except OSError as error:
            if family == socket.AF_INET6 and error.errno in (97, 99):  # no IPv6 here: test IPv4 alone
                continue
            return False
    return False


def reserve_port(preferred: int | None = None, owner: str = "") -> int:
    """A TCP port nothing is bound to and no live process has reserved, now reserved for this process.

    ``preferred`` (a port used before, e.g. by a sandbox being restarted) is taken when it is still free (for a
    server setting SO_REUSEADDR, as the sandbox's all do); other ports only when nothing at all holds them.
    """
    registry = port_registry()
    registry.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        registry.chmod(0o1777)
    ports = _port_range()
    with open(registry / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for entry in registry.glob("[0-9]*"):  # lapsed reservations: their ports are bound by now, or free
                if not _reserved_by_a_live_process(entry):
                    entry.unlink(missing_ok=True)
            candidates = random.sample(ports, min(CANDIDATES_PER_ATTEMPT, len(ports)))
            if preferred:
                candidates.insert(0, preferred)
            for port in candidates:
                entry = registry / str(port)
                if entry.exists():  # reserved by a live process (lapsed ones were removed above)
                    continue
                if not port_is_bindable(port, reuse_address=port == preferred):
                    continue
                pid = os.getpid()
                entry.write_text(json.dumps({"pid": pid, "start_time": _start_time(pid), "time": time.time(),
                                             "owner": owner}))
                return port
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    raise ServiceStartError(f"no free loopback port found in {ports.start}-{ports.stop - 1} "
                            f"({CANDIDATES_PER_ATTEMPT} tried; reservations in {registry})")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on and that no other KM3DIRAC process will take
    (:func:`reserve_port`)."""
    return reserve_port()


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

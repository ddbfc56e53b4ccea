"""The sandbox's state file (JSON): which processes ``up`` started, with their pid, start time and port.

A pid alone could be reused by another process after a crash: the start time (``/proc/<pid>/stat`` field 22)
recorded with it makes sure ``status`` and ``down`` only ever look at, and signal, the processes ``up`` started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from KM3DIRAC.sandbox.processes import LOOPBACK

STATE_FILE_NAME = "state.json"


@dataclass
class ComponentRecord:
    name: str
    kind: str
    pid: int
    start_time: int
    log: str
    port: int | None = None


@dataclass
class SandboxState:
    directory: str
    components: list[ComponentRecord] = field(default_factory=list)
    postgres: dict = field(default_factory=dict)
    ready: bool = False

    @staticmethod
    def path(directory: Path) -> Path:
        return directory / STATE_FILE_NAME

    @classmethod
    def load(cls, directory: Path) -> SandboxState | None:
        path = cls.path(directory)
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        components = [ComponentRecord(**record) for record in data.pop("components")]
        return cls(components=components, **data)

    def save(self) -> None:
        path = self.path(Path(self.directory))
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=2))
        temporary.replace(path)


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when there is no such live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited: only its exit status is left
        return None
    return int(fields[19])


def record_process(name: str, kind: str, pid: int, log: Path, port: int | None = None) -> ComponentRecord:
    start_time = process_start_time(pid)
    return ComponentRecord(name, kind, pid, start_time or 0, str(log), port)


def is_alive(record: ComponentRecord) -> bool:
    return process_start_time(record.pid) == record.start_time


def port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex((LOOPBACK, port)) == 0


def is_healthy(record: ComponentRecord) -> bool:
    return is_alive(record) and (record.port is None or port_answers(record.port))


def stop_component(record: ComponentRecord, timeout: float = 15) -> None:
    """SIGTERM the process group ``up`` started for ``record``, then SIGKILL what is left after ``timeout``."""
    if not is_alive(record):
        _kill_group(record.pid, signal.SIGKILL)  # children of a crashed leader may still be there
        return
    _kill_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (is_alive(record) or _group_has_members(record.pid)):
        time.sleep(0.1)
    _kill_group(record.pid, signal.SIGKILL)


def _kill_group(process_group: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process_group, signal_number)


def _group_has_members(process_group: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == process_group and fields[0] not in ("Z", "X"):
                return True
    return False

"""A private PostgreSQL instance on loopback, in a directory of its own, for the local Rucio server.

PostgreSQL refuses to run as root, so when we are root every server command runs as the ``postgres`` system user
(created by Debian's postgresql package), in a directory below ``/tmp`` that this user can reach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, log_tail, reserve_port

POSTGRES_BIN_CANDIDATES = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
SUPERUSER = "postgres"
#: The planner's cost of a random page read as PostgreSQL's documentation advises for SSDs and for data cached in
#: memory (its default, 4, is for spinning disks). With 4, Rucio's per-dataset replica count
#: (``list_dataset_replicas(deep=True)``: contents joined to replicas) is planned as a sequential scan of the whole
#: replicas table on a table of the catalog benchmark's size: 217 ms for a 10k-file dataset among 1M replicas,
#: 38 ms through the replicas' primary key (measured here; ``make bench-catalog ... --breakdown`` prints both). On a
#: larger table the default cost takes the index too: the setting matters near that size.
PLANNER_SETTINGS = ("random_page_cost=1.1",)
# Durability is not wanted for throw-away test data; these settings make schema creation several times faster.
FAST_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=200",
                 *PLANNER_SETTINGS)
DURABLE_SETTINGS = ("synchronous_commit=off", "max_connections=200", *PLANNER_SETTINGS)


def postgres_bin_dir() -> Path:
    for candidate in POSTGRES_BIN_CANDIDATES:
        if (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise ServiceStartError("PostgreSQL server binaries not found: apt-get install postgresql (see README.md)")


@dataclass
class PostgresInstance:
    """A running private PostgreSQL server; :meth:`stop` removes it and its directory (unless ``persistent``)."""

    base_dir: Path
    port: int
    bin_dir: Path
    run_as_postgres_user: bool
    databases: list[str] = field(default_factory=list)
    #: the data directory outlives :meth:`stop` (the local sandbox keeps Rucio's database across down/up)
    persistent: bool = False

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    def dsn(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = list(args)
        if self.run_as_postgres_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServiceStartError(
                f"PostgreSQL command {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr}\n"
                f"{log_tail(self.log_file)}"
            )
        return result

    def create_database(self, name: str) -> str:
        self._run(str(self.bin_dir / "createdb"), "-h", LOOPBACK, "-p", str(self.port), "-U", SUPERUSER, name)
        self.databases.append(name)
        return self.dsn(name)

    def is_running(self) -> bool:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"]
        if self.run_as_postgres_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, check=False).returncode == 0

    def has_data(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def stop(self) -> None:
        if self.data_dir.exists() and self.is_running():
            # a kept database is shut down cleanly (no recovery at the next start); a throw-away one at once
            mode = "fast" if self.persistent else "immediate"
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop")
        if not self.persistent:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def reachable_by_postgres_user(directory: Path) -> bool:
    """Whether the ``postgres`` system user can reach ``directory`` (every parent searchable by others)."""
    return all(parent.stat().st_mode & 0o001 for parent in [directory, *directory.parents] if parent.exists())


def start_postgres(parent_dir: Path | None = None, base_dir: Path | None = None,
                   preferred_port: int | None = None) -> PostgresInstance:
    """Start a PostgreSQL server on a free loopback port; trust authentication for local connections.

    Without ``base_dir``: initdb in a new directory below ``parent_dir`` (default /tmp), removed by ``stop``. With
    ``base_dir``: a persistent instance there, initialised the first time and started on its data afterwards.
    """
    bin_dir = postgres_bin_dir()
    run_as_postgres_user = os.geteuid() == 0
    persistent = base_dir is not None
    if base_dir is None:
        # Not below a 0700 root-owned directory (pytest's tmp_path): the postgres user must be able to reach it.
        base_dir = Path(tempfile.mkdtemp(prefix="km3dirac-pg-", dir=str(parent_dir) if parent_dir else "/tmp"))
    base_dir.mkdir(parents=True, exist_ok=True)
    base_dir.chmod(0o755)
    if run_as_postgres_user:
        shutil.chown(base_dir, user="postgres", group="postgres")
    instance = PostgresInstance(base_dir, reserve_port(preferred_port, owner=str(base_dir)), bin_dir,
                                run_as_postgres_user, persistent=persistent)
    socket_dir = base_dir / "socket"
    try:
        if not instance.has_data():
            instance._run(str(bin_dir / "initdb"), "-D", str(instance.data_dir), "-U", SUPERUSER, "--auth=trust",
                          "--encoding=UTF8", "--no-sync")
        instance._run("mkdir", "-p", str(socket_dir))
        # a kept instance keeps fsync and full page writes (its data must survive a crash of this machine); only
        # the last commits before a crash may be lost (synchronous_commit off)
        settings = DURABLE_SETTINGS if persistent else FAST_SETTINGS
        options = " ".join(
            [f"-c listen_addresses={LOOPBACK}", f"-p {instance.port}", f"-k {socket_dir}"]
            + [f"-c {setting}" for setting in settings]
        )
        instance._run(str(bin_dir / "pg_ctl"), "-D", str(instance.data_dir), "-o", options,
                      "-l", str(instance.log_file), "-w", "-t", "60", "start")
    except BaseException:
        instance.stop()
        raise
    return instance

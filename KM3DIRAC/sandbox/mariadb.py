"""A private MariaDB server on loopback (Debian's mariadbd), with the DIRAC databases the sandbox's services use.

The server has its own datadir, socket and port, listens on 127.0.0.1 only and never resolves names. DIRAC's
schemas are the ``.sql`` files shipped in the DIRAC wheel; databases whose tables DIRAC creates itself
(SQLAlchemy-based ones such as ReqDB and ResourceStatusDB) are only created empty.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, log_tail, start_process, wait_until

DIRAC_DB_USER = "Dirac"
DIRAC_DB_PASSWORD = "km3dirac-sandbox-db"
SCHEMA_DATABASES_WITHOUT_TABLES = ("ReqDB", "ResourceStatusDB")


@dataclass(frozen=True)
class MariaDBPaths:
    base_dir: Path

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket(self) -> Path:
        return self.base_dir / "mariadb.sock"

    @property
    def config_file(self) -> Path:
        return self.base_dir / "my.cnf"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "mariadb.log"


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if not found:
        raise ServiceStartError(f"MariaDB: {name} not found: apt-get install mariadb-server-core mariadb-client-core "
                                "(tools/bootstrap.sh does it)")
    return found


def _config_text(paths: MariaDBPaths, port: int) -> str:
    return f"""[mariadbd]
datadir = {paths.data_dir}
socket = {paths.socket}
port = {port}
bind-address = {LOOPBACK}
skip-name-resolve
user = root
pid-file = {paths.base_dir / "mariadb.pid"}
log-error = {paths.log_file}
innodb_buffer_pool_size = 64M
innodb_log_file_size = 16M
innodb_flush_log_at_trx_commit = 0
performance_schema = off
max_connections = 300
"""


def start_mariadb(base_dir: Path, port: int) -> subprocess.Popen:
    """Initialise (first time) and start mariadbd; return its process once it accepts connections."""
    paths = MariaDBPaths(base_dir)
    base_dir.mkdir(parents=True, exist_ok=True)
    paths.config_file.write_text(_config_text(paths, port))
    if not (paths.data_dir / "mysql").exists():
        result = subprocess.run(
            [_binary("mariadb-install-db"), f"--defaults-file={paths.config_file}",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise ServiceStartError(f"MariaDB: mariadb-install-db failed ({result.returncode}):\n"
                                    f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    process = start_process([_binary("mariadbd"), f"--defaults-file={paths.config_file}"],
                            log_file=base_dir / "mariadbd.out")
    wait_until(lambda: _accepts_connections(paths), what="MariaDB", timeout=60, log_file=paths.log_file,
               process=process)
    return process


def _client(paths: MariaDBPaths, sql: str | None = None, sql_file: Path | None = None) -> None:
    command = [_binary("mariadb"), f"--socket={paths.socket}", "--user=root"]
    stdin = sql_file.read_text() if sql_file else sql
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        what = sql_file.name if sql_file else (sql or "")[:80]
        raise ServiceStartError(f"MariaDB: loading {what} failed:\n{result.stderr}\n{log_tail(paths.log_file)}")


def _accepts_connections(paths: MariaDBPaths) -> bool:
    if not paths.socket.exists():
        return False
    command = [_binary("mariadb"), f"--socket={paths.socket}", "--user=root", "-e", "SELECT 1"]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def dirac_schema_file(database: str) -> Path | None:
    """The ``.sql`` file the DIRAC wheel ships for ``database`` (None for databases DIRAC creates itself)."""
    import DIRAC

    found = sorted(Path(DIRAC.__file__).parent.glob(f"*System/DB/{database}.sql"))
    return found[0] if found and database not in SCHEMA_DATABASES_WITHOUT_TABLES else None


def create_dirac_databases(base_dir: Path, databases: list[str]) -> None:
    """Create ``databases`` (first time) with DIRAC's schemas, and the ``Dirac`` user with its grants."""
    paths = MariaDBPaths(base_dir)
    statements = [f"CREATE USER IF NOT EXISTS '{DIRAC_DB_USER}'@'{LOOPBACK}' IDENTIFIED BY '{DIRAC_DB_PASSWORD}';"]
    missing = [database for database in databases if not (paths.data_dir / database).exists()]
    for database in databases:
        statements.append(f"CREATE DATABASE IF NOT EXISTS `{database}`;")
        statements.append(f"GRANT ALL PRIVILEGES ON `{database}`.* TO '{DIRAC_DB_USER}'@'{LOOPBACK}';")
    statements.append("FLUSH PRIVILEGES;")
    _client(paths, sql="\n".join(statements))
    for database in missing:
        schema = dirac_schema_file(database)
        if schema is not None:
            _client(paths, sql_file=schema)

"""A real Rucio server (PyPI ``rucio``, gunicorn, private PostgreSQL) on loopback, for tests and the local sandbox.

The server runs from its own virtual environment (it pins urllib3/requests versions that clash with
rucio-clients): ``.venv-rucio-server`` beside the source tree, made by ``tools/bootstrap.sh``, or the one named by
``KM3DIRAC_RUCIO_SERVER_VENV``. Nothing here imports the ``rucio`` package: the server side is driven through
subprocesses, the client side lives in :mod:`KM3DIRAC.sandbox.rucio_setup`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import KM3DIRAC
from KM3DIRAC.sandbox.postgres import PostgresInstance, start_postgres
from KM3DIRAC.sandbox.processes import (
    LOOPBACK,
    ServiceStartError,
    http_get_ok,
    reserve_port,
    start_process,
    stop_process_group,
    wait_until,
)

SOURCE_ROOT = Path(KM3DIRAC.__file__).resolve().parent.parent
ROOT_ACCOUNT = "root"
ROOT_USERNAME = "km3dirac-root"
ROOT_PASSWORD = "km3dirac-root-secret"
POLICY_MODULE = "KM3DIRAC.core.rucio_policy"
PFN2LFN_ALGORITHM = "km3dirac"
#: KM3NeT's permission policy (scope owners manage their files): :mod:`KM3DIRAC.RucioPolicy`
POLICY_PACKAGE = "KM3DIRAC.RucioPolicy"

# alembic's env.py of Rucio configures logging from the ini file: it needs these sections
ALEMBIC_LOGGING = """
[loggers]
keys = root
[handlers]
keys = console
[formatters]
keys = generic
[logger_root]
level = WARN
handlers = console
[handler_console]
class = StreamHandler
args = (sys.stderr,)
formatter = generic
[formatter_generic]
format = %(levelname)s %(name)s %(message)s
"""

BOOTSTRAP_SCRIPT = """
from rucio.db.sqla.util import build_database, create_base_vo, create_root_account
build_database()
create_base_vo()
create_root_account()
"""


def server_venv() -> Path:
    venv = Path(os.environ.get("KM3DIRAC_RUCIO_SERVER_VENV", SOURCE_ROOT / ".venv-rucio-server"))
    if not (venv / "bin" / "gunicorn").exists():
        raise ServiceStartError(
            f"Rucio server virtual environment not found at {venv}: run `make install` (tools/bootstrap.sh) first"
        )
    return venv


def _site_packages(venv: Path) -> Path:
    candidates = sorted((venv / "lib").glob("python3*/site-packages"))
    if not candidates:
        raise ServiceStartError(f"no site-packages in {venv}")
    return candidates[0]


def server_config_text(database_dsn: str, alembic_ini: Path) -> str:
    return textwrap.dedent(f"""\
        [common]
        loglevel = WARNING
        # Rucio's DIRAC endpoint (used by DIRAC core's catalog) maps /<vo>/<scope>/... LFNs like KM3DIRAC does
        extract_scope = dirac
        [database]
        default = {database_dsn}
        pool_size = 10
        max_overflow = 20
        [alembic]
        cfg = {alembic_ini}
        [bootstrap]
        userpass_identity = {ROOT_USERNAME}
        userpass_pwd = {ROOT_PASSWORD}
        [cache]
        # nothing listens here: the server runs without memcached, so it never serves stale state
        url = {LOOPBACK}:1
        [policy]
        package = {POLICY_PACKAGE}
        permission = generic
        schema = generic
        lfn2pfn_algorithm_default = hash
        lfn2pfn_module = {POLICY_MODULE}
        # PFN -> DID the other way round (declaring suspicious or bad replicas by PFN)
        pfn2lfn = {PFN2LFN_ALGORITHM}
        support = none
        support_rucio = none
        [core]
        geoip_ignore_error = true
        [conveyor]
        scheme = file
        transfertool = mock
        """)


def client_config_text(url: str, account: str = ROOT_ACCOUNT, username: str = ROOT_USERNAME,
                       password: str = ROOT_PASSWORD) -> str:
    """A rucio.cfg for the rucio CLI and rucio-clients talking to the local server with userpass."""
    return textwrap.dedent(f"""\
        [client]
        rucio_host = {url}
        auth_host = {url}
        auth_type = userpass
        username = {username}
        password = {password}
        account = {account}
        request_retries = 2
        [policy]
        lfn2pfn_module = {POLICY_MODULE}
        """)


@dataclass
class RucioServer:
    """A running Rucio server; :meth:`stop` stops gunicorn and PostgreSQL and removes their files."""

    work_dir: Path
    port: int
    postgres: PostgresInstance
    process: subprocess.Popen
    config_file: Path
    venv: Path

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "rucio-server.log"

    def server_env(self) -> dict[str, str]:
        return _server_env(self.config_file)

    def is_alive(self) -> bool:
        return self.process.poll() is None and http_get_ok(f"{self.url}/ping")

    def stop(self) -> None:
        stop_process_group(self.process)
        self.postgres.stop()

    def restart(self) -> None:
        """Start gunicorn again on the same port and database (after :meth:`stop_http_only`)."""
        self.process = _start_gunicorn(self.venv, self.port, self.config_file, self.log_file)
        _wait_ready(self)

    def stop_http_only(self) -> None:
        """Stop the HTTP server but keep the database: Rucio is 'down' for clients, its content is kept."""
        stop_process_group(self.process)


def server_environment(config_file: Path) -> dict[str, str]:
    """The environment of the Rucio server and its daemons (``RUCIO_CONFIG`` = the server's configuration)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("RUCIO_", "VIRTUAL_ENV"))}
    env["RUCIO_CONFIG"] = str(config_file)
    # the server imports KM3DIRAC.core.rucio_policy (the lfn2pfn algorithm) and KM3DIRAC.RucioPolicy (permissions)
    # from this source tree
    env["PYTHONPATH"] = str(SOURCE_ROOT)
    return env


_server_env = server_environment


def _start_gunicorn(venv: Path, port: int, config_file: Path, log_file: Path,
                    access_log: Path | None = None) -> subprocess.Popen:
    command = [
        str(venv / "bin" / "gunicorn"), "--bind", f"{LOOPBACK}:{port}", "--workers", "2", "--threads", "4",
        "--timeout", "120", "--no-control-socket", "rucio.web.rest.flaskapi.v1.main:application",
    ]
    if access_log is not None:  # one line per HTTP request: what the benchmarks count
        command[1:1] = ["--access-logfile", str(access_log)]
    return start_process(command, log_file=log_file, env=_server_env(config_file), cwd=config_file.parent)


def serve_again(work_dir: Path, port: int) -> subprocess.Popen:
    """Start gunicorn again for the server whose files are in ``work_dir`` (its database still running), on
    ``port``; return once it answers."""
    config_file = work_dir / "rucio-server.cfg"
    log_file = work_dir / "rucio-server.log"
    process = _start_gunicorn(server_venv(), port, config_file, log_file)
    wait_until(lambda: http_get_ok(f"http://{LOOPBACK}:{port}/ping"), what="Rucio server", timeout=60,
               log_file=log_file, process=process)
    return process


def _wait_ready(server: RucioServer) -> None:
    wait_until(lambda: http_get_ok(f"{server.url}/ping"), what="Rucio server", timeout=60,
               log_file=server.log_file, process=server.process)


BOOTSTRAPPED_MARKER = "database-bootstrapped"


def start_rucio_server(work_dir: Path, port: int | None = None, access_log: Path | None = None,
                       postgres_dir: Path | None = None, postgres_port: int | None = None) -> RucioServer:
    """Start PostgreSQL, build Rucio's schema with a root account, and serve Rucio on ``port`` (default: a free one).

    With ``postgres_dir`` the database is kept there: the first start builds it, later starts serve what it holds
    (``port`` and ``postgres_port`` are then preferred ports; the configuration files are rewritten for the ports
    actually taken).
    """
    venv = server_venv()
    work_dir.mkdir(parents=True, exist_ok=True)
    marker = work_dir / BOOTSTRAPPED_MARKER
    if postgres_dir is not None and not marker.exists():
        shutil.rmtree(postgres_dir, ignore_errors=True)  # a first start that did not finish: begin again
    postgres = start_postgres(base_dir=postgres_dir, preferred_port=postgres_port)
    try:
        bootstrapped = postgres_dir is not None and marker.exists()
        dsn = postgres.dsn("rucio") if bootstrapped else postgres.create_database("rucio")
        alembic_ini = work_dir / "alembic.ini"
        alembic_ini.write_text(
            f"[alembic]\nscript_location = {_site_packages(venv) / 'rucio/db/sqla/migrate_repo'}\n"
            f"sqlalchemy.url = {dsn}\n{ALEMBIC_LOGGING}"
        )
        config_file = work_dir / "rucio-server.cfg"
        config_file.write_text(server_config_text(dsn, alembic_ini))
        if not bootstrapped:
            bootstrap = subprocess.run(
                [str(venv / "bin" / "python"), "-c", BOOTSTRAP_SCRIPT], env=_server_env(config_file),
                capture_output=True, text=True, check=False, cwd=work_dir,
            )
            if bootstrap.returncode != 0:
                raise ServiceStartError(f"Rucio schema bootstrap failed:\n{bootstrap.stderr[-3000:]}")
            if postgres_dir is not None:
                marker.write_text(f"Rucio's database in {postgres_dir}\n")
        port = port if port and postgres_dir is None else reserve_port(port, owner=str(work_dir))
        log_file = work_dir / "rucio-server.log"
        process = _start_gunicorn(venv, port, config_file, log_file, access_log)
        server = RucioServer(work_dir, port, postgres, process, config_file, venv)
        try:
            _wait_ready(server)
        except BaseException:
            stop_process_group(process)
            raise
    except BaseException:
        postgres.stop()
        raise
    return server


def rucio_cli() -> str:
    """Path of the ``rucio`` command of the client environment running this process."""
    found = shutil.which("rucio", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if not found:
        raise ServiceStartError("the rucio command (rucio-clients) is not installed in this environment")
    return found

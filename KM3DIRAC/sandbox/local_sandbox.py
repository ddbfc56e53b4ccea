"""The local KM3DIRAC sandbox: real DIRAC services, agents and a Rucio server on loopback, in one directory.

``up`` starts, in this order: a private MariaDB with the DIRAC databases, an own CA with host and user
certificates and a user proxy, the Rucio server (private PostgreSQL) with one RSE per StorageElement, the shared
``dirac.cfg``, the DISET services, the resource status entries, the optimizers (one ``dirac-executor``), the agents,
a JobAgent loop on a Pool computing element and DIRAC's web portal behind a loopback front
(:mod:`KM3DIRAC.sandbox.web_portal`). Every process is recorded in the state file as soon as it is started, so
``down`` stops exactly those, also after a failed ``up``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC.sandbox.certificates import SandboxCertificates, make_certificates, user_subject
from KM3DIRAC.sandbox.dirac_components import (
    AGENTS,
    EXECUTORS,
    SERVICES,
    USER_NAME,
    DiracService,
    SandboxLayout,
    all_databases,
    render_sandbox_cfg,
    start_waves,
)
from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig, LocalStorage, RucioCatalogSettings
from KM3DIRAC.sandbox.mariadb import MariaDBPaths, create_dirac_databases, start_mariadb
from KM3DIRAC.sandbox.portal_front import login_url, portal_health, write_token
from KM3DIRAC.sandbox.postgres import PostgresInstance
from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, free_port, log_tail, start_process, wait_until
from KM3DIRAC.sandbox.rucio_server import (
    ROOT_ACCOUNT,
    ROOT_PASSWORD,
    ROOT_USERNAME,
    SOURCE_ROOT,
    client_config_text,
    start_rucio_server,
)
from KM3DIRAC.sandbox.state import ComponentRecord, SandboxState, is_alive, is_healthy, record_process, stop_component
from KM3DIRAC.sandbox.web_portal import portal_environment

DEFAULT_DIRECTORY = SOURCE_ROOT / ".work" / "sandbox"
RSE_NAMES = ("KM3-DISK-1", "KM3-DISK-2")
PROXY_LIFETIME_SECONDS = 7 * 24 * 3600
SERVICE_START_TIMEOUT = 180
WEB_PORTAL = "WebApp/WebAppDIRAC"
PORTAL_FRONT = "WebApp/front"
#: services, optimizers and agents authenticate with the host certificate; the JobAgent runs with the user proxy
AS_HOST = "/DIRAC/Security/UseServerCertificate=yes"
# set by the sandbox for its processes; REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE are dropped: they point DIRAC's https
# clients at one CA bundle instead of its CA directory (CERTIFICATE_VERIFY_FAILED)
ENVIRONMENT_VARIABLES_BREAKING_DIRAC = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "X509_USER_PROXY", "X509_CERT_DIR",
                                        "DIRACSYSCONFIG", "RUCIO_CONFIG")


class SandboxError(RuntimeError):
    """The sandbox cannot do what was asked; the message says why."""


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @property
    def layout(self) -> SandboxLayout:
        return SandboxLayout(self.root)

    @property
    def certificates(self) -> SandboxCertificates:
        return SandboxCertificates(self.root / "certs")

    @property
    def rucio_client_cfg(self) -> Path:
        return self.root / "etc" / "rucio.cfg"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    def storage_dir(self, rse: str) -> Path:
        return self.root / "storage" / rse

    @property
    def portal_socket(self) -> Path:
        """The web portal's only listener (KM3DIRAC.sandbox.web_portal): reached through the front alone."""
        return self.root / "run" / "portal.sock"

    @property
    def portal_token(self) -> Path:
        return self.root / "etc" / "portal-token"

    def log(self, name: str) -> Path:
        return self.layout.logs_dir / f"{name.replace('/', '-')}.log"


def user_environment(paths: SandboxPaths) -> dict[str, str]:
    """The environment in which DIRAC's commands (``dirac-wms-job-submit`` ...) talk to the sandbox as its user."""
    env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT_VARIABLES_BREAKING_DIRAC}
    env["DIRACSYSCONFIG"] = str(paths.layout.dirac_cfg)
    env["X509_CERT_DIR"] = str(paths.certificates.ca_dir)
    env["X509_USER_PROXY"] = str(paths.certificates.user_proxy)
    env["RUCIO_CONFIG"] = str(paths.rucio_client_cfg)
    env["TMPDIR"] = str(paths.tmp_dir)
    return env


def _server_environment(paths: SandboxPaths) -> dict[str, str]:
    env = user_environment(paths)
    del env["X509_USER_PROXY"]
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Sandbox:
    """One sandbox directory; every method re-reads what it needs from the state file."""

    def __init__(self, directory: Path) -> None:
        self.paths = SandboxPaths(directory.resolve())
        self.state = SandboxState.load(self.paths.root) or SandboxState(str(self.paths.root))

    # -- up ---------------------------------------------------------------------------------------------------
    def up(self, with_catalog: bool = True) -> str:
        if self.state.components:
            crashed = [record.name for record in self.state.components if not is_healthy(record)]
            if not crashed and self.state.ready:
                return f"sandbox already up in {self.paths.root}"
            raise SandboxError(f"sandbox in {self.paths.root} is partly up (not healthy: {', '.join(crashed)}): "
                               "run `dirac-km3-sandbox down` first")
        for directory in (self.paths.layout.logs_dir, self.paths.tmp_dir, self.paths.layout.dirac_cfg.parent,
                          self.paths.layout.instance_dir, self.paths.layout.sandboxes_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.state = SandboxState(str(self.paths.root))
        self.state.save()
        try:
            self._start_everything(with_catalog)
        except BaseException:
            self.down()
            raise
        self.state.ready = True
        self.state.save()
        return f"sandbox up in {self.paths.root}"

    def _start_everything(self, with_catalog: bool) -> None:
        mariadb_port = self._start_mariadb()
        certificates = make_certificates(self.paths.certificates.directory, USER_NAME)
        rucio_url = self._start_rucio()
        ports = {service.full_name: free_port() for service in SERVICES}
        self._write_dirac_cfg(ports, mariadb_port, rucio_url, with_catalog)
        self._make_user_proxy(certificates)
        self._start_services(ports)
        self._run_step("set-resource-status")
        self._run_step("upload-user-proxy", as_user=True)
        self._start_process("WorkloadManagement/Optimizers", "executor",
                            [_bin("dirac-executor"), *(f"WorkloadManagement/{name}" for name in EXECUTORS),
                             "-o", AS_HOST])
        for agent in AGENTS:
            self._start_process(agent.full_name, "agent",
                                [_bin("dirac-agent"), agent.full_name, "-o", AS_HOST])
        self._start_job_agent_loop()
        self._start_web_portal()
        time.sleep(1)
        crashed = [record for record in self.state.components if not is_alive(record)]
        if crashed:
            raise ServiceStartError(_crash_report(crashed))

    def _add(self, record: ComponentRecord) -> None:
        self.state.components.append(record)
        self.state.save()

    def _start_mariadb(self) -> int:
        port = free_port()
        base_dir = self.paths.root / "mariadb"
        process = start_mariadb(base_dir, port)
        self._add(record_process("MariaDB", "database", process.pid, MariaDBPaths(base_dir).log_file, port))
        create_dirac_databases(base_dir, all_databases())
        return port

    def _start_rucio(self) -> str:
        server = start_rucio_server(self.paths.root / "rucio")
        postgres = server.postgres
        self.state.postgres = {"base_dir": str(postgres.base_dir), "port": postgres.port,
                               "bin_dir": str(postgres.bin_dir), "run_as_postgres_user": postgres.run_as_postgres_user}
        self._add(record_process("Rucio server", "rucio", server.process.pid, server.log_file, server.port))
        self.paths.rucio_client_cfg.parent.mkdir(parents=True, exist_ok=True)
        self.paths.rucio_client_cfg.write_text(client_config_text(server.url))
        # Rucio's database is new at every `up`: files left in the RSE directories would be unknown to it
        shutil.rmtree(self.paths.root / "storage", ignore_errors=True)
        self._run_step("make-rses")
        return server.url

    def _write_dirac_cfg(self, ports: dict[str, int], mariadb_port: int, rucio_url: str, with_catalog: bool) -> None:
        catalog = RucioCatalogSettings(rucio_host=rucio_url, auth_host=rucio_url, account=ROOT_ACCOUNT,
                                       username=ROOT_USERNAME, password=ROOT_PASSWORD)
        storages = [LocalStorage(rse, self.paths.storage_dir(rse)) for rse in RSE_NAMES]
        base = LocalDiracConfig(catalog=catalog, storages=storages, user_name=USER_NAME,
                                user_dn=user_subject(USER_NAME), list_catalog=with_catalog)
        text = render_sandbox_cfg(base, self.paths.layout, ports, mariadb_port, self.paths.certificates.directory)
        self.paths.layout.dirac_cfg.write_text(text)

    def _make_user_proxy(self, certificates: SandboxCertificates) -> None:
        self._run_step("make-user-proxy")
        if not certificates.user_proxy.exists():
            raise ServiceStartError(f"user proxy: {certificates.user_proxy} was not written")

    def _run_step(self, step: str, as_user: bool = False) -> None:
        """Run a set-up step of :mod:`KM3DIRAC.sandbox.setup_steps` in a DIRAC process of its own."""
        log = self.paths.log(f"setup-{step}")
        command = [sys.executable, "-m", "KM3DIRAC.sandbox.setup_steps", step, str(self.paths.root)]
        with open(log, "ab") as output:
            result = subprocess.run(command, stdout=output, stderr=subprocess.STDOUT, check=False, timeout=300,
                                    env=user_environment(self.paths) if as_user else _server_environment(self.paths))
        if result.returncode != 0:
            raise ServiceStartError(f"set-up step {step} failed ({result.returncode}); {log}:\n{log_tail(log)}")

    def _start_process(self, name: str, kind: str, command: list[str], port: int | None = None,
                       env: dict[str, str] | None = None, cwd: Path | None = None) -> ComponentRecord:
        log = self.paths.log(name)
        process = start_process(command, log_file=log, env=env or _server_environment(self.paths), cwd=cwd)
        record = record_process(name, kind, process.pid, log, port)
        self._add(record)
        return record

    def _start_services(self, ports: dict[str, int]) -> None:
        for wave in start_waves():
            self._start_service_wave(wave, ports)

    def _start_service_wave(self, services: list[DiracService], ports: dict[str, int]) -> None:
        records = [
            self._start_process(service.full_name, "service",
                                [_bin("dirac-service"), service.full_name, "-o", AS_HOST],
                                port=ports[service.full_name])
            for service in services
        ]
        for record in records:
            wait_until(lambda record=record: is_healthy(record), what=f"DIRAC service {record.name}",
                       timeout=SERVICE_START_TIMEOUT, log_file=Path(record.log),
                       process=_PidProcess(record))

    def _start_job_agent_loop(self) -> None:
        env = user_environment(self.paths)
        # DIRAC starts the JobWrapper with realpath(sys.executable), outside the venv: it must still import DIRAC
        env["PYTHONPATH"] = os.pathsep.join([sysconfig.get_paths()["purelib"], str(SOURCE_ROOT)])
        # transformation jobs run `dirac-jobexec`: DIRAC's commands must be on the PATH of the payload
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        self._start_process("WorkloadManagement/JobAgent", "pilot",
                            [sys.executable, "-m", "KM3DIRAC.sandbox.pilot_loop", str(self.paths.root / "pilot")],
                            env=env, cwd=self.paths.root)

    def _start_web_portal(self) -> None:
        """WebAppDIRAC on a Unix socket, and the sandbox's loopback front before it (KM3DIRAC.sandbox.web_portal)."""
        socket_path = self.paths.portal_socket
        socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        portal = self._start_process(WEB_PORTAL, "portal", [sys.executable, "-m", "KM3DIRAC.sandbox.web_portal",
                                                            str(socket_path)],
                                     env=portal_environment(_server_environment(self.paths)))
        wait_until(socket_path.exists, what=WEB_PORTAL, timeout=SERVICE_START_TIMEOUT, log_file=Path(portal.log),
                   process=_PidProcess(portal))
        token = write_token(self.paths.portal_token)
        port = free_port()
        front = self._start_process(PORTAL_FRONT, "portal", [
            sys.executable, "-m", "KM3DIRAC.sandbox.portal_front", str(port), str(socket_path),
            str(self.paths.portal_token), str(self.paths.certificates.user_cert)], port=port)
        wait_until(lambda: portal_health(port, token).startswith("ok"), what=f"{PORTAL_FRONT} on port {port}",
                   timeout=SERVICE_START_TIMEOUT, log_file=Path(portal.log), process=_PidProcess(front))

    def portal_url(self) -> str | None:
        """The URL that logs a browser into the portal as the sandbox user, None when the portal is not up."""
        front = next((record for record in self.state.components if record.name == PORTAL_FRONT), None)
        if front is None or front.port is None or not self.paths.portal_token.exists():
            return None
        return login_url(front.port, self.paths.portal_token.read_text().strip())

    # -- status -----------------------------------------------------------------------------------------------
    def status(self) -> tuple[bool, str]:
        """(all healthy, a table of the components) for the recorded processes."""
        if not self.state.components:
            return False, f"sandbox in {self.paths.root} is down"
        rows = [("component", "kind", "pid", "port", "health")]
        healthy = True
        for record in self.state.components:
            health = _health(record)
            healthy = healthy and health == "ok"
            rows.append((record.name, record.kind, str(record.pid), str(record.port or "-"), health))
        widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                 for row in rows]
        for record in self.state.components:
            if _health(record) != "ok":
                lines.append(f"\n{record.name}: end of {record.log}:\n{log_tail(Path(record.log), lines=10)}")
        if not self.state.ready:
            healthy = False
            lines.append("`up` did not finish")
        url = self.portal_url()
        if url is not None:
            front = next(record for record in self.state.components if record.name == PORTAL_FRONT)
            health = portal_health(front.port, self.paths.portal_token.read_text().strip())
            healthy = healthy and health.startswith("ok")
            lines.append(f"web portal:    {url}  {health}")
        lines.append(f"configuration: DIRACSYSCONFIG={self.paths.layout.dirac_cfg}")
        lines.append(f"user proxy:    X509_USER_PROXY={self.paths.certificates.user_proxy}")
        lines.append(f"CA directory:  X509_CERT_DIR={self.paths.certificates.ca_dir}")
        return healthy, "\n".join(lines)

    # -- down -------------------------------------------------------------------------------------------------
    def down(self) -> str:
        if not self.state.components and not self.state.postgres:
            SandboxState.path(self.paths.root).unlink(missing_ok=True)
            return f"sandbox in {self.paths.root} is down"
        for record in reversed(self.state.components):
            stop_component(record)
        if self.state.postgres:
            postgres = self.state.postgres
            PostgresInstance(Path(postgres["base_dir"]), postgres["port"], Path(postgres["bin_dir"]),
                             postgres["run_as_postgres_user"]).stop()
        left = [record.name for record in self.state.components if is_alive(record)]
        if left:
            raise SandboxError(f"could not stop: {', '.join(left)}")
        stopped = len(self.state.components)
        self.state = SandboxState(str(self.paths.root))
        SandboxState.path(self.paths.root).unlink(missing_ok=True)
        return f"sandbox in {self.paths.root} stopped ({stopped} processes)"


class _PidProcess:
    """The little of ``subprocess.Popen`` that :func:`wait_until` uses, for a recorded process."""

    def __init__(self, record: ComponentRecord) -> None:
        self.record = record
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if not is_alive(self.record):
            self.returncode = -1
        return self.returncode


def _health(record: ComponentRecord) -> str:
    if not is_alive(record):
        return "CRASHED"
    if not is_healthy(record):
        return f"NOT ANSWERING on {LOOPBACK}:{record.port}"
    return "ok"


def _crash_report(records: list[ComponentRecord]) -> str:
    return "\n".join(f"{record.name} exited while starting; {record.log}:\n{log_tail(Path(record.log))}"
                     for record in records)

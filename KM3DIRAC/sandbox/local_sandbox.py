"""The local KM3DIRAC sandbox: real DIRAC services, agents and a Rucio server on loopback, in one directory.

``up`` starts, in this order: a private MariaDB with the DIRAC databases, an own CA with host and user
certificates and a user proxy, the Rucio server (private PostgreSQL) with one RSE per StorageElement, the shared
``dirac.cfg``, the DISET services, the resource status entries, the optimizers (one ``dirac-executor``), the agents,
a JobAgent loop on a Pool computing element and DIRAC's web portal behind a loopback front
(:mod:`KM3DIRAC.sandbox.web_portal`). Every process is recorded in the state file as soon as it is
started, so ``down`` stops exactly those, also after a failed ``up``.

State is kept across ``down``/``up``: MariaDB's datadir, Rucio's PostgreSQL database, the RSE directories, the
certificates and proxies stay in the directory; ``up`` prefers the ports used last time and rewrites every file
that records a port (``dirac.cfg``, ``rucio.cfg``, Rucio's server configuration) for the ports it actually gets.
``reset`` (or ``up --fresh``) stops the sandbox and removes all of it, Rucio and DIRAC side at once. Every DIRAC
process is started through :mod:`KM3DIRAC.sandbox.loopback`, so that DISET's listeners bind loopback only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from diraccfg import CFG

from KM3DIRAC.sandbox.accounts import PEOPLE, accounts_cfg_text, ensure_credentials
from KM3DIRAC.sandbox.certificates import (
    SandboxCertificates,
    make_certificates,
    make_user_certificate,
    user_subject,
)
from KM3DIRAC.sandbox.dirac_components import (
    AGENTS,
    EXECUTORS,
    PRODUCTION_GROUP,
    SERVICES,
    USER_GROUP,
    USER_NAME,
    DiracService,
    SandboxLayout,
    all_databases,
    render_sandbox_cfg,
    start_waves,
)
from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig, LocalStorage, RucioCatalogSettings
from KM3DIRAC.sandbox.diracx_launcher import DiracXLauncher
from KM3DIRAC.sandbox.diracx_server import DiracXPaths
from KM3DIRAC.sandbox.loopback import loopback_command
from KM3DIRAC.sandbox.mariadb import MariaDBPaths, create_dirac_databases, start_mariadb
from KM3DIRAC.sandbox.portal_front import login_url, portal_health, write_token
from KM3DIRAC.sandbox.postgres import PostgresInstance, reachable_by_postgres_user
from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, log_tail, reserve_port, start_process, wait_until
from KM3DIRAC.sandbox.rucio_server import (
    ROOT_ACCOUNT,
    ROOT_PASSWORD,
    ROOT_USERNAME,
    SOURCE_ROOT,
    client_config_text,
    serve_again,
    server_environment,
    server_venv,
    start_rucio_server,
)
from KM3DIRAC.sandbox.state import ComponentRecord, SandboxState, is_alive, is_healthy, record_process, stop_component
from KM3DIRAC.sandbox.web_portal import portal_environment

DEFAULT_DIRECTORY = SOURCE_ROOT / ".work" / "sandbox"
RSE_NAMES = ("KM3-DISK-1", "KM3-DISK-2")
# an RSE as most Rucio instances run them: Rucio's default path algorithm (hash), read by KM3DIRAC's RucioInputData
HASH_RSE_NAMES = ("KM3-HASH-1",)
# the shore station (README "Nightly ingestion"): a non-deterministic RSE whose storage holds the directory the DAQ
# writes into; dirac-km3-ingest registers the DAQ's files there where they lie, each replica with its own PFN
SHORE_RSE = "KM3-SHORE"
DAQ_DIRECTORY = "daq"
# a computing centre's tape (Rucio rse_type TAPE, attribute istape=True), bytes in a local directory: the tape copy
# of KM3NeT's replication policy (policies/replication.yaml)
TAPE_RSE_NAMES = ("KM3-TAPE-1",)
# Rucio's transmogrifier, judge-evaluator, judge-cleaner and reaper (KM3DIRAC.sandbox.rucio_daemons): seconds
# between passes
RUCIO_DAEMONS_INTERVAL = 3
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
#: dropped from the environment of the sandbox's users (``env`` prints ``unset`` for them)
VARIABLES_TO_UNSET = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
#: set for the user's environment; KM3DIRAC_SANDBOX names the sandbox (the prompt of ``shell`` shows it)
SANDBOX_VARIABLE = "KM3DIRAC_SANDBOX"
IDENTITY_VARIABLE = "KM3DIRAC_SANDBOX_IDENTITY"
LAST_PORTS_FILE = "last-ports.json"
POSTGRES_LOCATION_FILE = "postgres-location"


@dataclass(frozen=True)
class Identity:
    """Who the user is in the sandbox: a DIRAC user in a group, with a proxy of that group."""

    name: str
    user: str
    group: str
    proxy_file: str
    what: str
    #: the Rucio account the identity acts as (the catalog's UserAccounts; its own rucio.cfg for the rucio CLI)
    rucio_account: str = ROOT_ACCOUNT


IDENTITIES = (
    Identity("user", USER_NAME, USER_GROUP, "user-proxy.pem", "the sandbox's user (Rucio's administrator root)"),
    Identity("prodmanager", USER_NAME, PRODUCTION_GROUP, "prodmanager-proxy.pem",
             "the same person as production manager (ProductionManagement, JobAdministrator)"),
    # people of their own, each with own certificate, proxy and Rucio account (KM3DIRAC.sandbox.accounts)
    *(Identity(p.user, p.user, p.group, f"{p.user}-proxy.pem", p.what, p.account) for p in PEOPLE),
)


def identity(name: str) -> Identity:
    for candidate in IDENTITIES:
        if candidate.name == name:
            return candidate
    raise SandboxError(f"no identity {name!r} in the sandbox: choose one of {', '.join(i.name for i in IDENTITIES)}")


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

    def rucio_client_cfg_of(self, account: str) -> Path:
        """The rucio.cfg acting as ``account``: ``rucio.cfg`` for root, ``rucio-<account>.cfg`` for the others."""
        return self.rucio_client_cfg if account == ROOT_ACCOUNT else self.root / "etc" / f"rucio-{account}.cfg"

    @property
    def rucio_credentials_dir(self) -> Path:
        """Each Rucio account's userpass credentials, ``<account>.json`` (the catalog's UserpassCredentials)."""
        return self.root / "etc" / "rucio-accounts"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def rucio_dir(self) -> Path:
        return self.root / "rucio"

    def proxy(self, name: str = "user") -> Path:
        return self.certificates.directory / identity(name).proxy_file

    def storage_dir(self, rse: str) -> Path:
        return self.root / "storage" / rse

    @property
    def daq_dir(self) -> Path:
        """The directory the shore station's DAQ writes into, inside the storage of :data:`SHORE_RSE`."""
        return self.storage_dir(SHORE_RSE) / DAQ_DIRECTORY

    @property
    def portal_socket(self) -> Path:
        """The web portal's only listener (KM3DIRAC.sandbox.web_portal): reached through the front alone."""
        return self.root / "run" / "portal.sock"

    @property
    def portal_token(self) -> Path:
        return self.root / "etc" / "portal-token"

    def log(self, name: str) -> Path:
        return self.layout.logs_dir / f"{name.replace('/', '-')}.log"

    @property
    def diracx(self) -> DiracXPaths:
        return DiracXPaths(self.root)

    @property
    def diracx_client_file(self) -> Path:
        """Written by ``up --diracx`` (removed by ``down``): DiracX's URL, for the users' environment."""
        return self.diracx.directory / "client.json"

    def diracx_credentials(self, name: str = "user") -> Path:
        """The DiracX token of an identity's proxy, as diracx-cli reads it (``DIRACX_CREDENTIALS_PATH``)."""
        return self.diracx.directory / f"credentials-{name}.json"


def sandbox_variables(paths: SandboxPaths, as_identity: str = "user") -> dict[str, str]:
    """What a user's environment needs to talk to the sandbox: DIRAC (configuration, proxy, CA directory), Rucio
    (its client configuration and a private TMPDIR for its token files) and the project's commands on PATH."""
    chosen = identity(as_identity)
    bin_dir = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {
        "DIRACSYSCONFIG": str(paths.layout.dirac_cfg),
        "X509_CERT_DIR": str(paths.certificates.ca_dir),
        "X509_USER_PROXY": str(paths.proxy(chosen.name)),
        "RUCIO_CONFIG": str(paths.rucio_client_cfg_of(chosen.rucio_account)),
        "TMPDIR": str(paths.tmp_dir),
        "PATH": path if path.split(os.pathsep)[0] == bin_dir else os.pathsep.join([bin_dir, path]),
        SANDBOX_VARIABLE: str(paths.root),
        IDENTITY_VARIABLE: f"{chosen.user}/{chosen.group}",
        **_diracx_variables(paths, chosen.name),
    }


def _diracx_variables(paths: SandboxPaths, identity_name: str) -> dict[str, str]:
    """DiracX's client settings (diracx-cli ``dirac jobs ...``, diracx-client) when the sandbox runs DiracX."""
    try:
        url = json.loads(paths.diracx_client_file.read_text())["url"]
    except (OSError, ValueError, KeyError):
        return {}
    return {"DIRACX_URL": url, "DIRACX_CREDENTIALS_PATH": str(paths.diracx_credentials(identity_name))}


def user_environment(paths: SandboxPaths, as_identity: str = "user") -> dict[str, str]:
    """The environment in which DIRAC's commands (``dirac-wms-job-submit`` ...) talk to the sandbox as its user."""
    env = {key: value for key, value in os.environ.items() if key not in ENVIRONMENT_VARIABLES_BREAKING_DIRAC}
    env.update(sandbox_variables(paths, as_identity))
    return env


def environment_script(paths: SandboxPaths, as_identity: str = "user") -> str:
    """Shell lines for ``eval "$(dirac-km3-sandbox env)"``."""
    lines = [f"unset {' '.join(VARIABLES_TO_UNSET)}"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sandbox_variables(paths, as_identity).items()]
    return "\n".join(lines)


def _server_environment(paths: SandboxPaths) -> dict[str, str]:
    env = user_environment(paths)
    for variable in ("X509_USER_PROXY", SANDBOX_VARIABLE, IDENTITY_VARIABLE):
        del env[variable]
    return env


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


class Sandbox:
    """One sandbox directory; every method re-reads what it needs from the state file."""

    def __init__(self, directory: Path) -> None:
        self.paths = SandboxPaths(directory.resolve())
        self.state = SandboxState.load(self.paths.root) or SandboxState(str(self.paths.root))

    # -- up ---------------------------------------------------------------------------------------------------
    def up(self, with_catalog: bool = True, fresh: bool = False, with_diracx: bool = False) -> str:
        if fresh:
            self.reset()
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
            self._start_everything(with_catalog, with_diracx)
        except BaseException:
            self.down()
            raise
        self.state.ready = True
        self.state.save()
        return f"sandbox up in {self.paths.root}"

    def _last_ports(self) -> dict[str, int]:
        try:
            return json.loads((self.paths.root / LAST_PORTS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _reserve_port(self, name: str) -> int:
        """A port for ``name``: the one it had last time when still free, else another free one."""
        port = reserve_port(self._last_ports().get(name), owner=f"{self.paths.root} {name}")
        self._record_port(name, port)
        return port

    def _record_port(self, name: str, port: int) -> None:
        ports = self._last_ports()
        ports[name] = port
        (self.paths.root / LAST_PORTS_FILE).write_text(json.dumps(ports, indent=2, sort_keys=True))

    def postgres_dir(self) -> Path:
        """Where Rucio's PostgreSQL keeps its data: in the sandbox when the ``postgres`` user (which runs it when
        we are root) can reach it, else in /tmp under a name derived from the sandbox's path; chosen once."""
        location_file = self.paths.rucio_dir / POSTGRES_LOCATION_FILE
        if location_file.exists():
            return Path(location_file.read_text().strip())
        inside = self.paths.rucio_dir / "postgres"
        if os.geteuid() == 0 and not reachable_by_postgres_user(self.paths.root):
            digest = hashlib.sha256(str(self.paths.root).encode()).hexdigest()[:16]
            inside = Path("/tmp") / f"km3dirac-sandbox-pg-{digest}"
        self.paths.rucio_dir.mkdir(parents=True, exist_ok=True)
        location_file.write_text(f"{inside}\n")
        return inside

    def _start_everything(self, with_catalog: bool, with_diracx: bool = False) -> None:
        restarted = MariaDBPaths(self.paths.root / "mariadb").data_dir.exists()
        self.paths.diracx_client_file.unlink(missing_ok=True)
        mariadb_port = self._start_mariadb()
        certificates = make_certificates(self.paths.certificates.directory, USER_NAME)
        for someone in PEOPLE:
            make_user_certificate(certificates, someone.user)
        rucio_url = self._start_rucio()
        self._make_accounts(rucio_url)
        ports = {service.full_name: self._reserve_port(service.full_name) for service in SERVICES}
        diracx = DiracXLauncher(self, mariadb_port) if with_diracx else None
        self._write_dirac_cfg(ports, mariadb_port, rucio_url, with_catalog, diracx)
        self._make_user_proxy(certificates)
        self._start_services(ports)
        if diracx is not None:
            diracx.start()
        self._run_step("set-resource-status")
        self._run_step("upload-user-proxy", as_user=True)
        if diracx is not None:
            diracx.add_tokens()
        self._start_process("WorkloadManagement/Optimizers", "executor",
                            loopback_command([_bin("dirac-executor"),
                                              *(f"WorkloadManagement/{name}" for name in EXECUTORS), "-o", AS_HOST]))
        for agent in AGENTS:
            self._start_process(agent.full_name, "agent",
                                loopback_command([_bin("dirac-agent"), agent.full_name, "-o", AS_HOST]))
        if restarted:
            self._run_step("reschedule-orphaned-jobs")
        self._start_job_agent_loop()
        self._start_rucio_daemons()
        self._start_web_portal()
        time.sleep(1)
        crashed = [record for record in self.state.components if not is_alive(record)]
        if crashed:
            raise ServiceStartError(_crash_report(crashed))

    def _add(self, record: ComponentRecord) -> None:
        self.state.components.append(record)
        self.state.save()

    def _start_mariadb(self) -> int:
        port = self._reserve_port("MariaDB")
        base_dir = self.paths.root / "mariadb"
        process = start_mariadb(base_dir, port)
        self._add(record_process("MariaDB", "database", process.pid, MariaDBPaths(base_dir).log_file, port))
        create_dirac_databases(base_dir, all_databases())
        return port

    def _start_rucio(self) -> str:
        last = self._last_ports()
        server = start_rucio_server(self.paths.rucio_dir, port=last.get("Rucio server"),
                                    postgres_dir=self.postgres_dir(), postgres_port=last.get("PostgreSQL"))
        postgres = server.postgres
        self.state.postgres = {"base_dir": str(postgres.base_dir), "port": postgres.port,
                               "bin_dir": str(postgres.bin_dir), "run_as_postgres_user": postgres.run_as_postgres_user,
                               "persistent": postgres.persistent}
        self.state.save()
        self._record_port("PostgreSQL", postgres.port)
        self._record_port("Rucio server", server.port)
        self._add(record_process("Rucio server", "rucio", server.process.pid, server.log_file, server.port))
        self.paths.rucio_client_cfg.parent.mkdir(parents=True, exist_ok=True)
        self.paths.rucio_client_cfg.write_text(client_config_text(server.url))
        # idempotent: RSEs, protocols (no port: file scheme on local directories), distances, limits
        self._run_step("make-rses")
        return server.url

    def _make_accounts(self, rucio_url: str) -> None:
        """The people's Rucio accounts (KM3DIRAC.sandbox.accounts): credentials files, a rucio.cfg each, accounts."""
        credentials_dir = self.paths.rucio_credentials_dir
        ensure_credentials(credentials_dir, ROOT_ACCOUNT, ROOT_USERNAME, ROOT_PASSWORD)
        for someone in PEOPLE:
            credentials = ensure_credentials(credentials_dir, someone.account)
            config = self.paths.rucio_client_cfg_of(someone.account)
            config.touch(mode=0o600)
            config.write_text(client_config_text(rucio_url, someone.account, credentials["username"],
                                                 credentials["password"]))
        self._run_step("make-accounts")

    def _write_dirac_cfg(self, ports: dict[str, int], mariadb_port: int, rucio_url: str, with_catalog: bool,
                         diracx: DiracXLauncher | None = None) -> None:
        catalog = RucioCatalogSettings(rucio_host=rucio_url, auth_host=rucio_url, account=ROOT_ACCOUNT,
                                       username=ROOT_USERNAME, password=ROOT_PASSWORD)
        storages = [LocalStorage(rse, self.paths.storage_dir(rse))
                    for rse in (*RSE_NAMES, *HASH_RSE_NAMES, *TAPE_RSE_NAMES, SHORE_RSE)]
        base = LocalDiracConfig(catalog=catalog, storages=storages, user_name=USER_NAME,
                                user_dn=user_subject(USER_NAME), list_catalog=with_catalog)
        text = render_sandbox_cfg(base, self.paths.layout, ports, mariadb_port, self.paths.certificates.directory)
        dns = {someone.user: user_subject(someone.user) for someone in PEOPLE}
        accounts = accounts_cfg_text(USER_NAME, user_subject(USER_NAME), dns, self.paths.rucio_credentials_dir)
        text = str(CFG().loadFromBuffer(text).mergeWith(CFG().loadFromBuffer(accounts)))
        if diracx is not None:
            text = diracx.dirac_cfg(text)
        self.paths.layout.dirac_cfg.write_text(text)

    def _make_user_proxy(self, certificates: SandboxCertificates) -> None:
        self._run_step("make-user-proxy")
        for chosen in IDENTITIES:
            if not self.paths.proxy(chosen.name).exists():
                raise ServiceStartError(f"proxy of {chosen.name}: {self.paths.proxy(chosen.name)} was not written")

    def run_step(self, step: str, as_user: bool = False) -> None:
        self._run_step(step, as_user)

    def start_process(self, name: str, kind: str, command: list[str], port: int | None = None,
                      env: dict[str, str] | None = None) -> ComponentRecord:
        """Start and record a component of the sandbox (stopped by ``down``)."""
        return self._start_process(name, kind, command, port=port, env=env)

    def reserve_named_port(self, name: str) -> int:
        return self._reserve_port(name)

    def server_environment(self) -> dict[str, str]:
        return _server_environment(self.paths)

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
                                loopback_command([_bin("dirac-service"), service.full_name, "-o", AS_HOST]),
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

    def _start_rucio_daemons(self) -> None:
        """Rucio's transmogrifier (subscriptions make rules for new run datasets), judge-evaluator (rules of open
        run datasets get the files attached later), judge-cleaner and reaper (expired rules go, unlocked replicas
        with a tombstone are deleted, bytes included: what releases the shore station's copies), as on a
        production Rucio."""
        venv = server_venv()
        self._start_process("Rucio/transmogrifier+judge+reaper", "rucio-daemons",
                            [str(venv / "bin" / "python"), "-m", "KM3DIRAC.sandbox.rucio_daemons",
                             str(RUCIO_DAEMONS_INTERVAL)],
                            env=server_environment(self.paths.rucio_dir / "rucio-server.cfg"), cwd=self.paths.rucio_dir)

    # -- Rucio outages (fault trials) ------------------------------------------------------------------------
    def stop_rucio_server(self) -> None:
        """Stop Rucio's HTTP server only (its database keeps running): Rucio is down for every client."""
        record = self._component("Rucio server")
        stop_component(record)

    def start_rucio_server(self) -> None:
        """Serve Rucio again on the port it had (after :meth:`stop_rucio_server`)."""
        record = self._component("Rucio server")
        if is_alive(record):
            return
        process = serve_again(self.paths.rucio_dir, record.port)
        self.state.components[self.state.components.index(record)] = record_process(
            record.name, record.kind, process.pid, Path(record.log), record.port)
        self.state.save()

    def _component(self, name: str) -> ComponentRecord:
        for record in self.state.components:
            if record.name == name:
                return record
        raise SandboxError(f"sandbox in {self.paths.root} has no running component {name!r}")

    def process_ids(self) -> list[int]:
        """Every live process of the sandbox: the members of each recorded process group and PostgreSQL's."""
        groups = {record.pid for record in self.state.components if is_alive(record)}
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[2]) in groups:
                    pids.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        if self.state.postgres:
            postmaster = Path(self.state.postgres["base_dir"]) / "data" / "postmaster.pid"
            try:
                leader = int(postmaster.read_text().split()[0])
            except (OSError, IndexError, ValueError):
                leader = 0
            for stat in Path("/proc").glob("[0-9]*/stat"):
                try:
                    fields = stat.read_text().rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
                if leader and (int(stat.parent.name) == leader or int(fields[1]) == leader):
                    pids.append(int(stat.parent.name))
        return sorted(set(pids))

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
        port = reserve_port()
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
        diracx = _diracx_variables(self.paths, "user")
        if diracx:
            started = json.loads(self.paths.diracx_client_file.read_text()).get("startup_seconds")
            lines.append(f"DiracX:        DIRACX_URL={diracx['DIRACX_URL']}  (ready {started} s after its start)")
        lines.append(f"configuration: DIRACSYSCONFIG={self.paths.layout.dirac_cfg}")
        lines.append(f"user proxy:    X509_USER_PROXY={self.paths.certificates.user_proxy}")
        lines.append(f"CA directory:  X509_CERT_DIR={self.paths.certificates.ca_dir}")
        lines.append(f"Rucio client:  RUCIO_CONFIG={self.paths.rucio_client_cfg}")
        lines.append(f"enter it:      {enter_command(self.paths.root)}")
        lines.append(f"           or: {enter_command(self.paths.root, 'shell')}")
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
                             postgres["run_as_postgres_user"], persistent=postgres.get("persistent", False)).stop()
        left = [record.name for record in self.state.components if is_alive(record)]
        if left:
            raise SandboxError(f"could not stop: {', '.join(left)}")
        stopped = len(self.state.components)
        self.paths.diracx_client_file.unlink(missing_ok=True)
        self.state = SandboxState(str(self.paths.root))
        SandboxState.path(self.paths.root).unlink(missing_ok=True)
        return f"sandbox in {self.paths.root} stopped ({stopped} processes); its state is kept for the next `up`"

    # -- reset ------------------------------------------------------------------------------------------------
    def reset(self) -> str:
        """Stop the sandbox and remove everything it holds (DIRAC's databases, Rucio's database and storage,
        certificates, proxies, logs): the next ``up`` starts empty."""
        self.down()
        if not self.paths.root.exists():
            return f"sandbox in {self.paths.root} is empty"
        location_file = self.paths.rucio_dir / POSTGRES_LOCATION_FILE
        if location_file.exists():
            shutil.rmtree(location_file.read_text().strip(), ignore_errors=True)
        for entry in self.paths.root.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        self.state = SandboxState(str(self.paths.root))
        return f"sandbox in {self.paths.root} reset: stopped and emptied"


def enter_command(root: Path, how: str = "env", as_identity: str = "user") -> str:
    """The one line that puts a user's shell into the sandbox at ``root`` (``how``: ``env`` or ``shell``), or another
    ``dirac-km3-sandbox`` command for it (``how``: ``up``, ``status`` ...)."""
    command = str(Path(sys.executable).parent / "dirac-km3-sandbox")
    with_dir = "" if root.resolve() == DEFAULT_DIRECTORY.resolve() else f" --dir {shlex.quote(_relative(str(root)))}"
    with_identity = "" if as_identity == "user" or how not in ("env", "shell") else f" --as {as_identity}"
    line = f"{_relative(command)} {how}{with_dir}{with_identity}"
    return f'eval "$({line})"' if how == "env" else line


def _relative(path: str) -> str:
    """``path`` relative to the current directory when it is below it (``.venv/bin/...`` from the source tree)."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


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

"""A real DiracX server beside the sandbox's DIRAC (``dirac-km3-sandbox up --diracx``), sharing its job databases.

What runs: uvicorn serving DiracX's routers on loopback (:mod:`KM3DIRAC.sandbox.diracx_app`) and moto's S3 server for
DiracX's sandbox store. What is shared with DIRAC: the MariaDB databases JobDB, JobLoggingDB, TaskQueueDB and
SandboxMetadataDB (DIRAC's optimizers, Matcher and JobAgent run the jobs DiracX receives) and, instead of OpenSearch,
KM3DIRAC's MySQL JobParametersDB table (:mod:`KM3DIRAC.sandbox.diracx_job_parameters`). DiracX's own databases
(AuthDB, PilotAgentsDB, TaskDB, TransformationDB, ResourceStatusDB) are SQLite files in the sandbox.

DiracX's configuration is DIRAC's ``dirac.cfg`` converted by ``dirac internal legacy cs-sync`` (what DIRAC sites run
to keep DiracX's CS in step), committed to a git repository in the sandbox at every ``up``. DIRAC talks to DiracX
through ``/DiracX/URL`` and the legacy exchange key (``/DiracX/LegacyExchangeApiKey``); DiracX holds its sha256.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from KM3DIRAC import VO
from KM3DIRAC.sandbox.dirac_components import SANDBOX_SE as DIRAC_SANDBOX_SE
from KM3DIRAC.sandbox.mariadb import DIRAC_DB_PASSWORD, DIRAC_DB_USER
from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, log_tail

#: every diracx-* package is pinned to this version (setup.cfg, extra ``diracx``)
DIRACX_VERSION = "0.7.0"
#: DIRAC's databases DiracX reads and writes as DIRAC does
SHARED_DATABASES = ("JobDB", "JobLoggingDB", "TaskQueueDB", "SandboxMetadataDB")
#: DiracX's own SQL databases, as SQLite files (none of them is shared with DIRAC)
OWN_DATABASES = ("AuthDB", "PilotAgentsDB", "TaskDB", "TransformationDB", "ResourceStatusDB")
#: the StorageElement name DiracX records its sandboxes under: DIRAC's SandboxStore SE, since DIRAC 9.1's SandboxStore
#: serves a ``/S3/...`` PFN by fetching it from DiracX (so DIRAC's JobWrapper gets DiracX's input sandboxes)
SANDBOX_SE = DIRAC_SANDBOX_SE
SANDBOX_BUCKET = "km3dirac-sandboxes"
S3_ACCESS_KEY = "km3dirac-sandbox"  # moto accepts any credentials
#: the identity provider is never contacted (tokens come from the legacy exchange only); DiracX's CS needs one
IDP_URL = "https://idp.km3dirac-sandbox.invalid"
IDP_CLIENT_ID = "km3dirac-sandbox"
#: DIRAC clients whose calls go to DiracX (/DiracX/FutureClientEnabled): the only one DIRAC 9.1 ships
FUTURE_CLIENTS = ("WorkloadManagement/JobStateUpdate",)
READY_TIMEOUT = 120
REFRESH_TOKEN_MINUTES = 7 * 24 * 60


def user_subject(user_name: str) -> str:
    """The DiracX subject (``sub``) of a DIRAC user of the sandbox: stable, derived from the name."""
    return f"km3dirac-sandbox-{hashlib.sha256(user_name.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class DiracXPaths:
    root: Path

    @property
    def directory(self) -> Path:
        return self.root / "diracx"

    @property
    def keystore(self) -> Path:
        return self.directory / "keystore" / "jwks.json"

    @property
    def config_repo(self) -> Path:
        return self.directory / "cs"

    @property
    def secrets_file(self) -> Path:
        return self.directory / "secrets.json"

    def sqlite_file(self, database: str) -> Path:
        return self.directory / "db" / f"{database}.sqlite"


@dataclass(frozen=True)
class DiracXSecrets:
    legacy_exchange_key: str  # diracx:legacy:<urlsafe base64 of the raw key>, in DIRAC's CS
    hashed_key: str  # sha256 of the raw key, given to DiracX
    state_key: str  # DiracX's Fernet key for its authorization flows


def load_secrets(paths: DiracXPaths) -> DiracXSecrets:
    """The sandbox's legacy exchange key and state key: made once, kept (0600) across ``down``/``up``."""
    if paths.secrets_file.exists():
        return DiracXSecrets(**json.loads(paths.secrets_file.read_text()))
    raw = secrets.token_bytes(32)
    made = DiracXSecrets(legacy_exchange_key="diracx:legacy:" + base64.urlsafe_b64encode(raw).decode(),
                         hashed_key=hashlib.sha256(raw).hexdigest(),
                         state_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    paths.secrets_file.parent.mkdir(parents=True, exist_ok=True)
    paths.secrets_file.touch(mode=0o600)
    paths.secrets_file.write_text(json.dumps(made.__dict__))
    return made


def dirac_cfg_text(url: str, legacy_exchange_key: str, default_group: str, users: tuple[str, ...]) -> str:
    """The ``/DiracX`` section of DIRAC's CS: where DiracX is, the legacy exchange key, the future clients, and
    what ``cs-sync`` needs to convert the Registry (the VO's default group and IdP, each user's subject)."""
    future_clients = "\n".join(f"      {client.split('/')[1]} = True" for client in FUTURE_CLIENTS)
    subjects = "\n".join(f"          {user} = {user_subject(user)}" for user in users)
    return f"""DiracX
{{
  URL = {url}
  LegacyExchangeApiKey = {legacy_exchange_key}
  FutureClientEnabled
  {{
    WorkloadManagement
    {{
{future_clients}
    }}
  }}
  CsSync
  {{
    VOs
    {{
      {VO}
      {{
        DefaultGroup = {default_group}
        IdP
        {{
          URL = {IDP_URL}
          ClientID = {IDP_CLIENT_ID}
        }}
        UserSubjects
        {{
{subjects}
        }}
      }}
    }}
  }}
}}
"""


def _run(command: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=300)
    if result.returncode != 0:
        raise ServiceStartError(f"DiracX: {what} failed ({result.returncode}):\n{result.stdout[-3000:]}"
                                f"{result.stderr[-3000:]}")
    return result.stdout


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def make_keystore(paths: DiracXPaths) -> None:
    """DiracX's token signing keys (``python -m diracx.logic rotate-jwk``), made once."""
    if paths.keystore.exists():
        return
    paths.keystore.parent.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "diracx.logic", "rotate-jwk", "--jwks-path", str(paths.keystore)],
         "making the token signing keys")


def sync_configuration(paths: DiracXPaths, dirac_cfg: Path) -> bool:
    """DiracX's CS from DIRAC's: ``dirac internal legacy cs-sync`` into the git repository DiracX reads, committed
    when it changed. True when a new revision was committed."""
    repo = paths.config_repo
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        _run(["git", "init", "-q", "-b", "master", str(repo)], "creating the configuration repository")
    env = {**os.environ, "DIRAC_COMPAT_ENABLE_CS_CONVERSION": "1"}
    convertible = without_extension_operations(dirac_cfg, repo.parent / "dirac-for-cs-sync.cfg")
    _run([_bin("dirac"), "internal", "legacy", "cs-sync", str(convertible), str(repo / "default.yml")],
         f"converting {dirac_cfg} (dirac internal legacy cs-sync)", env=env)
    git = ["git", "-C", str(repo), "-c", "user.name=KM3DIRAC sandbox", "-c", "user.email=sandbox@km3dirac.invalid"]
    _run([*git, "add", "default.yml"], "staging the configuration")
    if subprocess.run([*git, "diff", "--cached", "--quiet"], check=False).returncode == 0:
        return False
    _run([*git, "commit", "-q", "-m", f"cs-sync from {dirac_cfg}"], "committing the configuration")
    return True


def without_extension_operations(dirac_cfg: Path, copy: Path) -> Path:
    """``dirac_cfg`` written to ``copy`` without the ``/Operations/<setup>/KM3DIRAC`` sections: DiracX 0.7's
    configuration model forbids keys it does not declare under Operations (cs-sync fails with "Operations.Defaults.
    KM3DIRAC: Extra inputs are not permitted"), and no DiracX route reads KM3DIRAC's options."""
    from diraccfg import CFG

    cfg = CFG().loadFromFile(str(dirac_cfg))
    if cfg.isSection("Operations"):
        for setup in cfg["Operations"].listSections():
            if cfg.isSection(f"Operations/{setup}/KM3DIRAC"):
                cfg.deleteKey(f"Operations/{setup}/KM3DIRAC")
    cfg.writeToFile(str(copy))
    return copy


def server_environment(paths: DiracXPaths, base_env: dict[str, str], url: str, mariadb_port: int, s3_port: int,
                       hashed_key: str, state_key: str) -> dict[str, str]:
    """The environment DiracX's settings are read from (``DIRACX_*``)."""
    env = dict(base_env)
    for database in SHARED_DATABASES:
        env[f"DIRACX_DB_URL_{database.upper()}"] = (
            f"mysql+aiomysql://{DIRAC_DB_USER}:{DIRAC_DB_PASSWORD}@{LOOPBACK}:{mariadb_port}/{database}")
    paths.sqlite_file("x").parent.mkdir(parents=True, exist_ok=True)
    for database in OWN_DATABASES:
        env[f"DIRACX_DB_URL_{database.upper()}"] = f"sqlite+aiosqlite:///{paths.sqlite_file(database)}"
    env["DIRACX_OS_DB_JOBPARAMETERSDB"] = json.dumps({"sqlalchemy_dsn": (
        f"mysql+aiomysql://{DIRAC_DB_USER}:{DIRAC_DB_PASSWORD}@{LOOPBACK}:{mariadb_port}/JobParametersDB")})
    env.update({
        "DIRACX_CONFIG_BACKEND_URL": f"git+file://{paths.config_repo}",
        "DIRACX_LEGACY_EXCHANGE_HASHED_API_KEY": hashed_key,
        "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": url,
        "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{paths.keystore}",
        "DIRACX_SERVICE_AUTH_STATE_KEY": state_key,
        "DIRACX_SERVICE_AUTH_ALLOWED_REDIRECTS": "[]",
        # the sandbox's proxies live a week; their DiracX refresh tokens as long (DiracX's default: 60 minutes)
        "DIRACX_SERVICE_AUTH_REFRESH_TOKEN_EXPIRE_MINUTES": str(REFRESH_TOKEN_MINUTES),
        "DIRACX_SANDBOX_STORE_BUCKET_NAME": SANDBOX_BUCKET,
        "DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET": "true",
        "DIRACX_SANDBOX_STORE_SE_NAME": SANDBOX_SE,
        "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": json.dumps({
            "endpoint_url": f"http://{LOOPBACK}:{s3_port}", "aws_access_key_id": S3_ACCESS_KEY,
            "aws_secret_access_key": S3_ACCESS_KEY}),
        # KM3DIRAC's DiracX extension (km3diracx, entry points of setup.cfg): its routes under /api/km3dirac. DiracX
        # enables every installed service; said here so that the sandbox does not depend on that default
        "DIRACX_SERVICE_KM3DIRAC_ENABLED": "true",
        # the tasks broker (redis) is not run: nothing in the routers the sandbox uses needs it
        "DIRACX_TASKS_REDIS_URL": "redis://127.0.0.1:1",
    })
    return env


def s3_command(port: int) -> list[str]:
    return [_bin("moto_server"), "-H", LOOPBACK, "-p", str(port)]


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--factory", "KM3DIRAC.sandbox.diracx_app:create_app",
            "--host", LOOPBACK, "--port", str(port), "--no-access-log"]


def init_databases(env: dict[str, str], log: Path) -> None:
    """The tables of DiracX's own databases (``python -m diracx.db init-sql``). Not for the shared ones: their
    schema is DIRAC's, and DiracX 0.7's init-sql fails on DIRAC 9.1's JobDB (it adds ``JobParameters``, which DIRAC
    9.1 no longer has, with a foreign key ``INTEGER`` -> ``Jobs.JobID INT UNSIGNED``: MariaDB errno 150)."""
    own_only = {key: value for key, value in env.items()
                if key not in {f"DIRACX_DB_URL_{database.upper()}" for database in SHARED_DATABASES}}
    with open(log, "ab") as output:
        result = subprocess.run([sys.executable, "-m", "diracx.db", "init-sql"], stdout=output,
                                stderr=subprocess.STDOUT, env=own_only, check=False, timeout=300)
    if result.returncode != 0:
        raise ServiceStartError(f"DiracX: python -m diracx.db init-sql failed; {log}:\n{log_tail(log)}")

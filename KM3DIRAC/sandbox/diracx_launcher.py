"""Starting DiracX as part of the sandbox's ``up --diracx`` (:mod:`KM3DIRAC.sandbox.diracx_server` has the what,
this module the when): ports are reserved and ``/DiracX`` written into ``dirac.cfg`` before DIRAC's services start
(the ProxyManager reads ``/DiracX/URL`` for the legacy exchange), DiracX itself once DIRAC's services have created
their tables, and the proxies get their DiracX tokens (as ``dirac-proxy-init`` embeds them) once both answer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from diraccfg import CFG

from KM3DIRAC.sandbox import diracx_server
from KM3DIRAC.sandbox.accounts import PEOPLE
from KM3DIRAC.sandbox.dirac_components import USER_GROUP, USER_NAME
from KM3DIRAC.sandbox.processes import LOOPBACK, ServiceStartError, http_get_ok, log_tail
from KM3DIRAC.sandbox.state import ComponentRecord, is_alive

if TYPE_CHECKING:
    from KM3DIRAC.sandbox.local_sandbox import Sandbox

DIRACX_SERVER = "DiracX/uvicorn"
DIRACX_S3 = "DiracX/S3"
OPTIMIZER_LOAD_PERIOD_SECONDS = 5


class DiracXLauncher:
    def __init__(self, sandbox: Sandbox, mariadb_port: int) -> None:
        self.sandbox = sandbox
        self.paths = sandbox.paths.diracx
        self.mariadb_port = mariadb_port
        self.port = sandbox.reserve_named_port(DIRACX_SERVER)
        self.s3_port = sandbox.reserve_named_port(DIRACX_S3)
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.secrets = diracx_server.load_secrets(self.paths)
        self.startup_seconds: float | None = None

    def dirac_cfg(self, text: str) -> str:
        """DIRAC's ``dirac.cfg`` with ``/DiracX`` pointing at this server (and the VO no longer disabled)."""
        # every person of the sandbox (KM3DIRAC.sandbox.accounts) has a proxy that gets a DiracX token: each needs
        # a subject for cs-sync
        users = (USER_NAME, *(someone.user for someone in PEOPLE))
        section = diracx_server.dirac_cfg_text(self.url, self.secrets.legacy_exchange_key, USER_GROUP, users)
        cfg = CFG().loadFromBuffer(text).mergeWith(CFG().loadFromBuffer(section))
        cfg["DiracX"].deleteKey("DisabledVOs")
        # DIRAC's OptimizationMind picks up jobs it was not told about (DiracX inserts them into JobDB directly)
        # once a minute at most; KM3OptimizationMindHandler (the sandbox's) looks this often
        optimization_mind = cfg["Systems"]["WorkloadManagement"]["Services"]["OptimizationMind"]
        optimization_mind.setOption("ReceivedJobsLoadPeriod", str(OPTIMIZER_LOAD_PERIOD_SECONDS))
        # DiracX 0.7's default SoftwareDistModule is "LocalSoftwareDist", a module DIRAC 9.1 does not have (its own
        # default is none): DiracX writes it into every JDL it accepts and DIRAC's JobAgent then reschedules the job
        # ("Failed to import library ( 1001 : No module LocalSoftwareDist found)"). Empty, as DIRAC's default.
        cfg["Operations"]["Defaults"].setOption("SoftwareDistModule", "")
        return str(cfg)

    def start(self) -> None:
        started = time.monotonic()
        diracx_server.make_keystore(self.paths)
        diracx_server.sync_configuration(self.paths, self.sandbox.paths.layout.dirac_cfg)
        env = diracx_server.server_environment(self.paths, self.sandbox.server_environment(), self.url,
                                               self.mariadb_port, self.s3_port, self.secrets.hashed_key,
                                               self.secrets.state_key)
        diracx_server.init_databases(env, self.sandbox.paths.log("setup-diracx-init-sql"))
        s3 = self.sandbox.start_process(DIRACX_S3, "diracx", diracx_server.s3_command(self.s3_port), port=self.s3_port,
                                        env=env)
        server = self.sandbox.start_process(DIRACX_SERVER, "diracx", diracx_server.server_command(self.port),
                                            port=self.port, env=env)
        deadline = time.monotonic() + diracx_server.READY_TIMEOUT
        while not http_get_ok(f"{self.url}/api/health/ready"):
            for record in (s3, server):
                if not is_alive(record):
                    raise ServiceStartError(f"{record.name} exited while starting; {record.log}:\n"
                                            f"{log_tail(Path(record.log))}")
            if time.monotonic() > deadline:
                raise ServiceStartError(f"{DIRACX_SERVER} not ready after {diracx_server.READY_TIMEOUT} s; "
                                        f"{server.log}:\n{log_tail(Path(server.log))}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - started
        self.sandbox.paths.diracx_client_file.write_text(json.dumps(
            {"url": self.url, "startup_seconds": round(self.startup_seconds, 1)}))

    def add_tokens(self) -> None:
        """Each identity's proxy with its DiracX token (DIRAC's ``addTokenToPEM``), and the token as diracx-cli's
        credentials file."""
        self.sandbox.run_step("add-diracx-tokens", as_user=True)


def server_record(records: list[ComponentRecord]) -> ComponentRecord | None:
    return next((record for record in records if record.name == DIRACX_SERVER), None)

"""The DIRAC components of the local sandbox and the ``dirac.cfg`` they share (no Configuration Server).

The configuration is :class:`KM3DIRAC.sandbox.dirac_config.LocalDiracConfig` (VO, Registry, Rucio catalog,
StorageElements) merged with what real services need: the sections of each component from DIRAC's own
``ConfigTemplate.cfg`` files (as ``dirac-install-component`` would copy them), ports and URLs, the MariaDB
connection, certificates, a site with a Pool computing element, and ``/LocalSite`` for the JobAgent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from diraccfg import CFG

from KM3DIRAC import VO
from KM3DIRAC.sandbox.certificates import HOST_SUBJECT
from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig
from KM3DIRAC.sandbox.mariadb import DIRAC_DB_PASSWORD, DIRAC_DB_USER
from KM3DIRAC.sandbox.processes import LOOPBACK
from KM3DIRAC.sandbox.web_portal import portal_cfg_text
from KM3DIRAC.TransformationSystem import allowed_plugins_option

SITE = "DIRAC.Sandbox.local"
COMPUTING_ELEMENT = "sandbox-pool"
QUEUE = "default"
SANDBOX_SE = "SandboxSE"
HOST_NAME = "localhost"
USER_NAME = "km3user"
USER_GROUP = f"{VO}_user"  # the group LocalDiracConfig's Registry defines
PRODUCTION_GROUP = f"{VO}_prod"  # the user as production manager (dirac-km3-sandbox env --as prodmanager)
#: JobAdministrator: a production manager reads and manages every job of the VO (DIRAC's JobPolicy; DiracX's
#: WMSAccessPolicy, hence the parameters of anyone's job through KM3DIRAC's DiracX route /api/km3dirac)
PRODUCTION_GROUP_PROPERTIES = ("NormalUser", "ProductionManagement", "JobAdministrator")
#: minutes DIRAC's JobWrapper holds back a job's failover request (DIRAC's default 45): a registration deferred while
#: Rucio was down is retried this soon after the job ends, then at every RequestExecutingAgent cycle
FAILOVER_REQUEST_DELAY_MINUTES = 1
#: KM3RegisterOutputs' time-out in the RequestExecutingAgent, and the grace after which KM3CleanReqDBAgent puts back
#: a request still Assigned (its agent was killed): the grace must exceed the longest a live agent holds a request
REGISTER_OUTPUTS_TIMEOUT_SECONDS = 30
KICK_GRACE_MINUTES = 1
JOB_MONITORING_HANDLER = "KM3DIRAC/WorkloadManagementSystem/Service/KM3JobMonitoringHandler.py"
#: DIRAC 9.1.22's OptimizationMind with the race of its first messages avoided (see the handler's docstring)
OPTIMIZATION_MIND_HANDLER = "KM3DIRAC/WorkloadManagementSystem/Service/KM3OptimizationMindHandler.py"
HOST_PROPERTIES = ("TrustedHost", "Operator", "FullDelegation", "ProxyManagement", "ServiceAdministrator",
                   "JobAdministrator", "CSAdministrator", "ProductionManagement", "SiteManager")


@dataclass(frozen=True)
class DiracService:
    system: str
    name: str
    databases: tuple[str, ...] = ()

    @property
    def full_name(self) -> str:
        return f"{self.system}/{self.name}"


@dataclass(frozen=True)
class DiracAgent:
    system: str
    name: str
    options: tuple[tuple[str, str], ...] = ()
    km3dirac: bool = False  # KM3DIRAC's own agent: its section comes from KM3DIRAC's ConfigTemplate.cfg

    @property
    def full_name(self) -> str:
        return f"{self.system}/{self.name}"


WMS_DATABASES = ("JobDB", "JobLoggingDB", "TaskQueueDB", "PilotAgentsDB")
SERVICES = (
    DiracService("ResourceStatus", "ResourceStatus", ("ResourceStatusDB",)),
    # agents acting for a user (RequestExecutingAgent, WorkflowTaskAgent) download the owner's proxy from here
    DiracService("Framework", "ProxyManager", ("ProxyDB",)),
    DiracService("WorkloadManagement", "JobManager", WMS_DATABASES),
    # job parameters: KM3DIRAC's MySQL JobParametersDB (no OpenSearch here), read by KM3JobMonitoringHandler
    DiracService("WorkloadManagement", "JobMonitoring", (*WMS_DATABASES, "JobParametersDB")),
    DiracService("WorkloadManagement", "JobStateUpdate", (*WMS_DATABASES, "JobParametersDB")),
    DiracService("WorkloadManagement", "SandboxStore", ("SandboxMetadataDB",)),
    DiracService("WorkloadManagement", "Matcher", WMS_DATABASES),
    DiracService("WorkloadManagement", "OptimizationMind", WMS_DATABASES),
    DiracService("RequestManagement", "ReqManager", ("ReqDB",)),
    DiracService("Transformation", "TransformationManager", ("TransformationDB", "SandboxMetadataDB")),
    # what the web portal's monitoring pages read through (KM3DIRAC.sandbox.web_portal): Job, Pilot and
    # Transformation Monitor, and every page's saved state
    DiracService("Monitoring", "WebApp", ("JobDB", "PilotAgentsDB", "TransformationDB")),
    DiracService("Framework", "UserProfileManager", ("UserProfileDB",)),
)
DATABASE_SYSTEMS = {
    "ProxyDB": "Framework",
    "UserProfileDB": "Framework",
    "ResourceStatusDB": "ResourceStatus",
    "JobDB": "WorkloadManagement",
    "JobLoggingDB": "WorkloadManagement",
    "TaskQueueDB": "WorkloadManagement",
    "PilotAgentsDB": "WorkloadManagement",
    "SandboxMetadataDB": "WorkloadManagement",
    "JobParametersDB": "WorkloadManagement",
    "ReqDB": "RequestManagement",
    "TransformationDB": "Transformation",
}
EXECUTORS = ("JobPath", "JobSanity", "InputData", "JobScheduling")
# MaxCycles 0: the sandbox's agents run until `down` (DIRAC's default stops an agent after 500 cycles)
FAST_AGENT_OPTIONS = (("PollingTime", "2"), ("MaxCycles", "0"))
#: the sandbox TrainAgent's MaxRetries (production default: KM3DIRAC/ConfigTemplate.cfg)
SANDBOX_TRAIN_RETRIES = 1
AGENTS = (
    # KM3DIRAC's run-aware plugins (KM3DIRAC.TransformationSystem.PLUGIN_LOCATION)
    DiracAgent("Transformation", "TransformationAgent",
               (*FAST_AGENT_OPTIONS, ("PluginLocation", "KM3DIRAC.TransformationSystem.Agent.TransformationPlugin"))),
    # MonitorTasks/MonitorFiles: task status follows the jobs and files become Processed (a train's next step and
    # run completeness depend on it); DIRAC leaves both off unless the option exists
    DiracAgent("Transformation", "WorkflowTaskAgent",
               (*FAST_AGENT_OPTIONS, ("ShifterCredentials", ""), ("MonitorTasks", "yes"), ("MonitorFiles", "yes"),
                ("CheckReserved", "yes"))),
    DiracAgent("Transformation", "InputDataAgent", FAST_AGENT_OPTIONS),
    # KM3DIRAC's: moves every running train (task status, retries, runs' output datasets closed); one retry keeps
    # the sandbox's tests of a failing step short
    DiracAgent("Transformation", "TrainAgent", (*FAST_AGENT_OPTIONS, ("MaxRetries", str(SANDBOX_TRAIN_RETRIES))),
               km3dirac=True),
    # DIRAC's template runs 50 worker processes (~4 GB resident): two are plenty on one machine
    DiracAgent("RequestManagement", "RequestExecutingAgent",
               (*FAST_AGENT_OPTIONS, ("MinProcess", "1"), ("MaxProcess", "2"), ("ProcessPoolQueueSize", "10"),
                # KM3DIRAC's handler for job outputs whose registration waited for Rucio
                ("OperationHandlers/KM3RegisterOutputs/Location",
                 "KM3DIRAC/RequestManagementSystem/Agent/RequestOperations/KM3RegisterOutputs"),
                # the longest it holds a request (30 s + 2 s a file), below the kick grace of KM3CleanReqDBAgent
                ("OperationHandlers/KM3RegisterOutputs/TimeOut", str(REGISTER_OUTPUTS_TIMEOUT_SECONDS)),
                ("OperationHandlers/KM3RegisterOutputs/TimeOutPerFile", "2"))),
    # puts back requests a killed RequestExecutingAgent left Assigned, after KickGraceMinutes (DIRAC's: 1 hour)
    DiracAgent("RequestManagement", "KM3CleanReqDBAgent",
               (("PollingTime", "15"), ("MaxCycles", "0"), ("KickGraceMinutes", str(KICK_GRACE_MINUTES)))),
)


def start_waves(services: tuple[DiracService, ...] = SERVICES) -> list[list[DiracService]]:
    """Services grouped so that no two in one wave are the first to use the same database: DIRAC's DB classes
    create missing tables when instantiated (TaskQueueDB, ReqDB ...), and two services doing that at once fail with
    "table already exists". Once a wave is up, its databases are complete and any number of services may share them.
    """
    waves: list[list[DiracService]] = []
    initialised: set[str] = set()
    remaining = list(services)
    while remaining:
        wave: list[DiracService] = []
        claimed: set[str] = set()
        for service in remaining:
            new_databases = set(service.databases) - initialised
            if not new_databases & claimed:
                wave.append(service)
                claimed |= new_databases
        remaining = [service for service in remaining if service not in wave]
        initialised |= claimed
        waves.append(wave)
    return waves


def all_databases() -> list[str]:
    return sorted({database for service in SERVICES for database in service.databases})


@dataclass(frozen=True)
class SandboxLayout:
    """Where the sandbox keeps its DIRAC files, below its directory."""

    root: Path

    @property
    def dirac_cfg(self) -> Path:
        return self.root / "etc" / "dirac.cfg"

    @property
    def instance_dir(self) -> Path:
        return self.root / "instance"

    @property
    def sandboxes_dir(self) -> Path:
        return self.root / "sandboxes"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"


def _dirac_template(system: str) -> CFG:
    import DIRAC

    return CFG().loadFromFile(str(Path(DIRAC.__file__).parent / f"{system}System" / "ConfigTemplate.cfg"))


def _km3dirac_template(system: str) -> CFG:
    """KM3DIRAC's ConfigTemplate.cfg's ``Systems/<system>`` section."""
    import KM3DIRAC

    return CFG().loadFromFile(str(Path(KM3DIRAC.__file__).parent / "ConfigTemplate.cfg"))["Systems"][system]


def _section(cfg: CFG, path: str) -> CFG:
    """The section at ``path`` (``/A/B/C``), created level by level (diraccfg creates only one level at a time)."""
    node = cfg
    for part in path.strip("/").split("/"):
        if not node.isSection(part):
            node.createNewSection(part)
        node = node[part]
    return node


def _set_option(cfg: CFG, path: str, value: str) -> None:
    parent, option = path.rsplit("/", 1)
    _section(cfg, parent).setOption(option, value)


def _set_section(cfg: CFG, path: str, contents: CFG) -> None:
    parent, name = path.rsplit("/", 1)
    _section(cfg, parent).createNewSection(name, contents=contents)


def _component_sections(ports: dict[str, int]) -> CFG:
    cfg = CFG()
    templates: dict[str, CFG] = {}
    for component in [*SERVICES, *AGENTS]:
        category = "Services" if isinstance(component, DiracService) else "Agents"
        if getattr(component, "km3dirac", False):
            section = _km3dirac_template(component.system).getAsCFG(f"{category}/{component.name}")
        else:
            templates.setdefault(component.system, _dirac_template(component.system))
            section = templates[component.system].getAsCFG(f"{category}/{component.name}")
        path = f"/Systems/{component.system}/{category}/{component.name}"
        _set_section(cfg, path, section)
        if isinstance(component, DiracService):
            port = ports[component.full_name]
            _set_option(cfg, f"{path}/Port", str(port))
            _set_option(cfg, f"{path}/Protocol", "dips")
            _set_option(cfg, f"/Systems/{component.system}/URLs/{component.name}",
                          f"dips://{HOST_NAME}:{port}/{component.full_name}")
        else:
            for option, value in component.options:
                _set_option(cfg, f"{path}/{option}", value)
    for database, system in DATABASE_SYSTEMS.items():
        _set_option(cfg, f"/Systems/{system}/Databases/{database}/DBName", database)
    wms = templates.setdefault("WorkloadManagement", _dirac_template("WorkloadManagement"))
    _set_section(cfg, "/Systems/WorkloadManagement/Executors", contents=wms.getAsCFG("Executors"))
    _set_section(cfg, "/Systems/WorkloadManagement/JobWrapper", contents=wms.getAsCFG("JobWrapper"))
    _set_section(cfg, "/Systems/WorkloadManagement/Agents/JobAgent",
                         contents=wms.getAsCFG("Agents/JobAgent"))
    return cfg


def _sandbox_cfg_text(layout: SandboxLayout, mariadb_port: int, certificates_dir: Path, sandbox_store_port: int,
                      storage_element_names: list[str]) -> str:
    return f"""DIRAC
{{
  Security
  {{
    CALocation = {certificates_dir / "certificates"}
    CertFile = {certificates_dir / "hostcert.pem"}
    KeyFile = {certificates_dir / "hostkey.pem"}
  }}
}}
DiracX
{{
  DisabledVOs = {VO}
}}
LocalSite
{{
  Site = {SITE}
  GridCE = {COMPUTING_ELEMENT}
  CEQueue = {QUEUE}
  LocalCE = Pool
  CPUTimeLeft = 1000000
  CPUNormalizationFactor = 10
  DisableAccounting = yes
  InstancePath = {layout.instance_dir}
}}
Systems
{{
  Databases
  {{
    User = {DIRAC_DB_USER}
    Password = {DIRAC_DB_PASSWORD}
    Host = {LOOPBACK}
    Port = {mariadb_port}
  }}
  NoSQLDatabases
  {{
    # the sandbox runs no OpenSearch (DIRAC 9.1's JobParametersDB is OpenSearch-only): nothing listens here; job
    # parameters are kept by KM3DIRAC's MySQL JobParametersDB instead (Databases/JobParametersDB/Backend below)
    Host = {LOOPBACK}
    Port = 1
    User = none
    Password = none
  }}
  WorkloadManagement
  {{
    Services
    {{
      SandboxStore
      {{
        BasePath = {layout.sandboxes_dir}
        LocalSE = {SANDBOX_SE}
      }}
      JobMonitoring
      {{
        HandlerPath = {JOB_MONITORING_HANDLER}
      }}
      OptimizationMind
      {{
        HandlerPath = {OPTIMIZATION_MIND_HANDLER}
      }}
    }}
    Databases
    {{
      JobParametersDB
      {{
        Backend = MySQL
      }}
    }}
    JobWrapper
    {{
      FailoverRequestDelay = {FAILOVER_REQUEST_DELAY_MINUTES}
    }}
  }}
}}
Registry
{{
  Hosts
  {{
    {HOST_NAME}
    {{
      DN = {HOST_SUBJECT}
      Properties = {", ".join(HOST_PROPERTIES)}
    }}
  }}
  Groups
  {{
    {USER_GROUP}
    {{
      Properties = NormalUser, ProductionManagement
    }}
    {PRODUCTION_GROUP}
    {{
      Users = {USER_NAME}
      Properties = {", ".join(PRODUCTION_GROUP_PROPERTIES)}
      VO = {VO}
    }}
  }}
}}
Resources
{{
  FileCatalogs
  {{
    RucioFileCatalog
    {{
      # DIRAC core's RucioFileCatalogClient (used until KM3DIRAC's plugin is installed) takes the scope from the
      # LFN with this algorithm: /km3net/<scope>/... -> <scope>, the KM3DIRAC DID convention
      DiracScopeAlg = dirac
    }}
  }}
  StorageElements
  {{
    # the sandboxes' StorageElement is the SandboxStore service itself (DIP plugin over dips://)
    {SANDBOX_SE}
    {{
      BackendType = DISET
      DIP
      {{
        Host = {HOST_NAME}
        Port = {sandbox_store_port}
        PluginName = DIP
        Protocol = dips
        Path = /WorkloadManagement/SandboxStore
        Access = remote
      }}
    }}
  }}
  Sites
  {{
    DIRAC
    {{
      {SITE}
      {{
        Name = {SITE}
        # jobs with input data are scheduled to the site whose SEs hold replicas
        SE = {", ".join(storage_element_names)}
        CE = {COMPUTING_ELEMENT}
        CEs
        {{
          {COMPUTING_ELEMENT}
          {{
            CEType = Pool
            NumberOfProcessors = 2
            Queues
            {{
              {QUEUE}
              {{
                maxCPUTime = 100000
                VO = {VO}
              }}
            }}
          }}
        }}
      }}
    }}
  }}
}}
Operations
{{
  Defaults
  {{
    DataManagement
    {{
      AccessProtocols = file, dips
      WriteProtocols = file, dips
    }}
    # agents that need a proxy of their own (TransformationAgent, RequestExecutingAgent's managers) act as the user
    Shifter
    {{
      ProductionManager
      {{
        User = {USER_NAME}
        Group = {USER_GROUP}
      }}
      DataManager
      {{
        User = {USER_NAME}
        Group = {USER_GROUP}
      }}
    }}
    Pilot
    {{
      CheckVersion = False
    }}
    Transformations
    {{
      AllowedPlugins = {allowed_plugins_option()}
      # the types the TransformationAgent, InputDataAgent and WorkflowTaskAgent process (KM3DIRAC trains make
      # DataReconstruction transformations)
      DataProcessing = MCSimulation, Merge, DataReconstruction
    }}
    # jobs' InputData is downloaded into the job directory by KM3DIRAC's module: through rucio-clients, from the
    # replicas' own URLs (any RSE path algorithm); DIRAC's DownloadInputData reads only km3dirac-path RSEs
    InputDataPolicy
    {{
      Default = KM3DIRAC.WorkloadManagementSystem.Client.RucioInputData
      Download = KM3DIRAC.WorkloadManagementSystem.Client.RucioInputData
    }}
    # dirac-km3-replicate: no FTS here, so the copies Rucio's rules ask for are made by DIRAC's RMS
    # (ReplicateAndRegister run by the RequestExecutingAgent); the shore station's copy is released at once (the
    # sandbox's Rucio judge-cleaner and reaper delete it), not after Rucio's one-hour grace
    KM3DIRAC
    {{
      Replication
      {{
        Mover = DIRAC-RMS
        SourceGraceSeconds = 0
      }}
    }}
  }}
}}
"""


def render_sandbox_cfg(base: LocalDiracConfig, layout: SandboxLayout, ports: dict[str, int], mariadb_port: int,
                       certificates_dir: Path) -> str:
    """The complete ``dirac.cfg`` of the sandbox, shared by every component and by the user's commands."""
    cfg = CFG().loadFromBuffer(base.render())
    cfg = cfg.mergeWith(_component_sections(ports))
    cfg = cfg.mergeWith(CFG().loadFromBuffer(_sandbox_cfg_text(layout, mariadb_port, certificates_dir,
                                                               ports["WorkloadManagement/SandboxStore"],
                                                               [storage.name for storage in base.storages])))
    cfg = cfg.mergeWith(CFG().loadFromBuffer(portal_cfg_text(base.user_name)))
    return str(cfg)

"""DIRAC configuration (cfg text) for a local KM3DIRAC set-up: the Rucio catalog as only catalog, one File-plugin
StorageElement per RSE (same directory, same paths), the km3net VO.

Used in-process by the tests (``DIRAC.tests.Utilities.utils.generateDIRACConfig``) and as the base of the local
sandbox's ``dirac.cfg``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from KM3DIRAC import VO

CATALOG_NAME = "RucioFileCatalog"


@dataclass(frozen=True)
class RucioCatalogSettings:
    """The options of ``/Resources/FileCatalogs/RucioFileCatalog`` (documented in ConfigTemplate.cfg)."""

    rucio_host: str
    auth_host: str
    account: str
    username: str
    password: str
    auth_type: str = "userpass"
    vo: str = VO


@dataclass(frozen=True)
class LocalStorage:
    """A DIRAC StorageElement of the File plugin whose base path is the directory of the RSE of the same name."""

    name: str
    directory: Path


@dataclass
class LocalDiracConfig:
    catalog: RucioCatalogSettings | None
    storages: list[LocalStorage] = field(default_factory=list)
    user_name: str = "km3user"
    user_dn: str = "/O=KM3DIRAC/CN=km3user"
    extra_cfg: str = ""
    #: False leaves ``CatalogList`` empty while keeping the catalog's section (components that must start without it)
    list_catalog: bool = True

    def render(self) -> str:
        return "\n".join([self._dirac(), self._registry(), self._resources(), self._operations(), self.extra_cfg])

    def _dirac(self) -> str:
        return f"DIRAC\n{{\n  VirtualOrganization = {VO}\n  Security\n  {{\n    UseServerCertificate = no\n  }}\n}}"

    def _registry(self) -> str:
        return f"""Registry
{{
  DefaultGroup = {VO}_user
  VO
  {{
    {VO}
    {{
      VOAdmin = {self.user_name}
    }}
  }}
  Users
  {{
    {self.user_name}
    {{
      DN = {self.user_dn}
    }}
  }}
  Groups
  {{
    {VO}_user
    {{
      Users = {self.user_name}
      Properties = NormalUser
      VO = {VO}
    }}
  }}
}}"""

    def _resources(self) -> str:
        catalog = ""
        if self.catalog is not None:
            c = self.catalog
            catalog = f"""  FileCatalogs
  {{
    {CATALOG_NAME}
    {{
      CatalogType = {CATALOG_NAME}
      RucioHost = {c.rucio_host}
      AuthHost = {c.auth_host}
      Account = {c.account}
      AuthType = {c.auth_type}
      Username = {c.username}
      Password = {c.password}
      VO = {c.vo}
    }}
  }}"""
        storages = "\n".join(self._storage_element(storage) for storage in self.storages)
        return f"Resources\n{{\n{catalog}\n  StorageElements\n  {{\n{storages}\n  }}\n}}"

    @staticmethod
    def _storage_element(storage: LocalStorage) -> str:
        return f"""    {storage.name}
    {{
      BackendType = local
      RucioRSE = {storage.name}
      File
      {{
        Host =
        PluginName = File
        Protocol = file
        Path = {storage.directory.resolve()}
        Access = remote
      }}
    }}"""

    def _operations(self) -> str:
        catalog_list = CATALOG_NAME if self.catalog is not None and self.list_catalog else ""
        return f"""Operations
{{
  Defaults
  {{
    DataManagement
    {{
      # local StorageElements speak only the File plugin's protocol
      AccessProtocols = file
      WriteProtocols = file
      RegistrationProtocols = file
      ThirdPartyProtocols = file
    }}
    Services
    {{
      Catalogs
      {{
        CatalogList = {catalog_list}
        {CATALOG_NAME}
        {{
          AccessType = Read-Write
          Status = Active
          Master = True
        }}
      }}
    }}
  }}
}}"""

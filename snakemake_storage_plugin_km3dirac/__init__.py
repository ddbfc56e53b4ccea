"""snakemake storage plugin ``km3dirac``: a workflow's files as KM3DIRAC LFNs in Rucio, read-only.

Used with the DIRAC executor (``snakemake_executor_plugin_dirac``) as the default storage provider:

    snakemake --executor dirac --default-storage-provider km3dirac \\
        --default-storage-prefix /km3net/user/j/jdoe/wf ...

A Snakefile path ``raw/D133/run1.root`` is then the LFN ``/km3net/user/j/jdoe/wf/raw/D133/run1.root``, the DID
``user.jdoe:/km3net/user/j/jdoe/wf/raw/D133/run1.root`` (KM3DIRAC's mapping, :mod:`KM3DIRAC.core.lfn`; snakemake's
``rucio`` plugin strips the leading ``/`` of DID names and cannot name these). This plugin only answers what snakemake
asks on the submitting machine (exists, modification time, size): the data itself moves only inside DIRAC jobs,
through ``dirac-km3-job-run`` (download from Rucio, upload and registration with provenance), so the data path is
single. Retrieving, storing or deleting from here is refused with a message saying so.

The Rucio client is configured as Rucio's own commands are (``RUCIO_CONFIG``, ``X509_USER_PROXY``).
"""

from dataclasses import dataclass, field
from typing import Any, Optional

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_storage_plugins.io import IOCacheStorageInterface, Mtime
from snakemake_interface_storage_plugins.settings import StorageProviderSettingsBase
from snakemake_interface_storage_plugins.storage_object import StorageObjectRead, StorageObjectWrite
from snakemake_interface_storage_plugins.storage_provider import (
    ExampleQuery,
    Operation,
    QueryType,
    StorageProviderBase,
    StorageQueryValidationResult,
)

from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID, LFNMapper

MAPPER = LFNMapper()
READ_ONLY = ("the km3dirac storage is read-only on the submitting machine: files move only inside DIRAC jobs "
             "(dirac-km3-job-run), so rules must run through --executor dirac (not as localrules)")


@dataclass
class StorageProviderSettings(StorageProviderSettingsBase):
    vo: Optional[str] = field(default=None, metadata={"help": "the VO of the LFN namespace (default km3net)"})


def lfn_problem(query: str) -> str | None:
    """Why ``query`` is not a KM3DIRAC LFN, or None."""
    if "{" in query:  # a pattern with wildcards: resolved before use
        return None
    try:
        MAPPER.to_did(query)
    except InvalidLFNError as error:
        return str(error)
    return None if query.startswith("/") else f"{query}: not an absolute LFN"


class StorageProvider(StorageProviderBase):
    def __post_init__(self) -> None:
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from rucio.client import Client

            self._client = Client()
        return self._client

    @classmethod
    def example_queries(cls) -> list[ExampleQuery]:
        return [ExampleQuery(query="/km3net/user/j/jdoe/wf/raw/D133/run1.root", type=QueryType.ANY,
                             description="a KM3DIRAC LFN (DID user.jdoe:/km3net/user/j/jdoe/wf/raw/D133/run1.root)")]

    def rate_limiter_key(self, query: str, operation: Operation) -> Any:
        return "rucio"

    def default_max_requests_per_second(self) -> float:
        return 100

    def use_rate_limiter(self) -> bool:
        return False

    @classmethod
    def is_valid_query(cls, query: str) -> StorageQueryValidationResult:
        problem = lfn_problem(query)
        return StorageQueryValidationResult(query=query, valid=problem is None, reason=problem)


class StorageObject(StorageObjectRead, StorageObjectWrite):
    def __post_init__(self) -> None:
        self._did: DID | None = None

    @property
    def lfn(self) -> str:
        return self.query

    @property
    def did(self) -> DID:
        if self._did is None:
            self._did = MAPPER.to_did(self.query)
        return self._did

    def _metadata(self) -> dict | None:
        from rucio.common.exception import DataIdentifierNotFound

        try:
            return self.provider.client.get_metadata(self.did.scope, self.did.name)
        except DataIdentifierNotFound:
            return None

    async def inventory(self, cache: IOCacheStorageInterface) -> None:
        """One Rucio call gives existence, creation time and size."""
        meta = self._metadata()
        key = self.cache_key()
        cache.exists_in_storage[key] = meta is not None
        if meta is not None:
            cache.mtime[key] = Mtime(storage=meta["created_at"].timestamp())
            cache.size[key] = int(meta.get("bytes") or 0)

    def get_inventory_parent(self) -> str | None:
        return None

    def local_suffix(self) -> str:
        return self.query.lstrip("/")

    def cleanup(self) -> None:
        pass

    def exists(self) -> bool:
        return self._metadata() is not None

    def mtime(self) -> float:
        meta = self._metadata()
        if meta is None:
            raise WorkflowError(f"{self.query}: no such file in Rucio ({self.did})")
        return meta["created_at"].timestamp()

    def size(self) -> int:
        meta = self._metadata()
        return int(meta.get("bytes") or 0) if meta else 0

    def retrieve_object(self) -> None:
        raise WorkflowError(f"{self.query}: not retrieved: {READ_ONLY}")

    def store_object(self) -> None:
        raise WorkflowError(f"{self.query}: not stored: {READ_ONLY}")

    def remove(self) -> None:
        raise WorkflowError(f"{self.query}: snakemake wanted to delete it from Rucio before re-running its rule; "
                            f"KM3DIRAC never deletes registered data for you: remove it with dirac-dms-remove-files "
                            f"{self.query} if it is really to be replaced")

"""Client-side set-up of a local Rucio server: RSEs on local directories, scopes, account limits, distances.

RSEs made here use KM3DIRAC's ``lfn2pfn`` algorithm (:mod:`KM3DIRAC.core.rucio_policy`), so an RSE and a DIRAC
StorageElement of the File plugin with the same base directory hold every LFN at the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from KM3DIRAC.core.rucio_policy import ALGORITHM_NAME

if TYPE_CHECKING:
    from rucio.client import Client

POSIX_PROTOCOL_IMPL = "rucio.rse.protocols.posix.Default"


def _file_protocol(directory: Path) -> dict:
    operations = {"read": 1, "write": 1, "delete": 1, "third_party_copy_read": 1, "third_party_copy_write": 1}
    return {
        "scheme": "file",
        "hostname": "localhost",
        "port": 0,
        "prefix": f"{directory.resolve()}/",
        "impl": POSIX_PROTOCOL_IMPL,
        "domains": {"lan": operations, "wan": operations},
    }


def add_directory_rse(client: Client, name: str, directory: Path, account: str = "root",
                      lfn2pfn_algorithm: str | None = ALGORITHM_NAME, deterministic: bool = True,
                      rse_type: str = "DISK") -> None:
    """Create the RSE ``name`` storing files under ``directory`` (created if missing). ``lfn2pfn_algorithm=None``
    leaves Rucio's default (``hash`` on these servers), as most Rucio instances run; ``deterministic=False``
    makes an RSE where every replica's path is given at upload; ``rse_type="TAPE"`` an RSE Rucio treats as tape
    (attribute ``istape``), its bytes still in a local directory."""
    from rucio.common.exception import Duplicate

    directory.mkdir(parents=True, exist_ok=True)
    try:
        client.add_rse(name, deterministic=deterministic, rse_type=rse_type)
    except Duplicate:
        pass
    try:
        client.add_protocol(name, _file_protocol(directory))
    except Duplicate:
        pass
    if lfn2pfn_algorithm and deterministic:
        client.add_rse_attribute(name, "lfn2pfn_algorithm", lfn2pfn_algorithm)
    client.add_rse_attribute(name, "fts", "mock")
    client.set_local_account_limit(account, name, -1)


def connect_rses(client: Client, names: list[str]) -> None:
    """Declare every pair of ``names`` at distance 1, so replication rules between them can be transferred."""
    from rucio.common.exception import Duplicate

    for source in names:
        for destination in names:
            if source != destination:
                try:
                    client.add_distance(source, destination, {"distance": 1})
                except Duplicate:
                    pass


def ensure_scope(client: Client, scope: str, account: str = "root") -> None:
    from rucio.common.exception import Duplicate

    try:
        client.add_scope(account, scope)
    except Duplicate:
        pass

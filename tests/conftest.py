"""The test harness: real services, session-scoped, on free loopback ports, removed at the end of the session.

- ``rucio_server``: a real Rucio server (own virtual environment, gunicorn, private PostgreSQL) with two RSEs backed
  by local directories, a ``km3net``-style scope and unlimited account limits.
- ``rucio_client``: an authenticated rucio-clients ``Client`` for the root account.
- ``dirac_cs``: DIRAC's configuration, loaded in-process from cfg text, with one File-plugin StorageElement per RSE
  (same directory, same paths: :mod:`KM3DIRAC.core.rucio_policy`).
- ``scope_factory`` / ``dataset_factory``: fresh scopes and datasets per test.

Every session works in its own temporary directory with its own ports, so two sessions can run at once.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from KM3DIRAC.sandbox.dirac_config import LocalDiracConfig, LocalStorage, RucioCatalogSettings
from KM3DIRAC.sandbox.processes import free_port
from KM3DIRAC.sandbox.rucio_server import (
    LOOPBACK,
    ROOT_ACCOUNT,
    ROOT_PASSWORD,
    ROOT_USERNAME,
    RucioServer,
    client_config_text,
    start_rucio_server,
)

# the local sandbox fixture (one per session, shared by every test module that uses it); the fault suite's harness
pytest_plugins = ("sandbox_fixtures", "fault_harness")

RSE_NAMES = ("KM3-DISK-1", "KM3-DISK-2")
# a Rucio as KM3NeT runs it today: Rucio's default deterministic path algorithm (hash), and a non-deterministic RSE
HASH_RSE, NONDETERMINISTIC_RSE = "KM3-HASH-1", "KM3-NONDET-1"
DEFAULT_SCOPE = "km3test"


class Session:
    """Paths and ports of this test session, fixed before any test module imports rucio."""

    def __init__(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="km3dirac-test-"))
        self.rucio_port = free_port()
        self.tmp_dir = self.work_dir / "tmp"
        self.tmp_dir.mkdir()
        self.rucio_client_config = self.work_dir / "rucio-client.cfg"
        self.rucio_client_config.write_text(client_config_text(f"http://{LOOPBACK}:{self.rucio_port}"))

    def storage_dir(self, rse: str) -> Path:
        return self.work_dir / "storage" / rse


SESSION: Session | None = None


def pytest_configure(config: pytest.Config) -> None:
    global SESSION
    SESSION = Session()
    # rucio-clients reads RUCIO_CONFIG once and keeps token files below $TMPDIR: both must be private to this
    # session and set before rucio is first imported (test modules import it at collection time).
    os.environ["RUCIO_CONFIG"] = str(SESSION.rucio_client_config)
    os.environ["TMPDIR"] = str(SESSION.tmp_dir)
    tempfile.tempdir = None
    for variable in ("X509_USER_PROXY", "RUCIO_ACCOUNT", "RUCIO_HOME"):
        os.environ.pop(variable, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    if SESSION is not None and not os.environ.get("KM3DIRAC_KEEP_TEST_DIR"):
        shutil.rmtree(SESSION.work_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def session_paths() -> Session:
    assert SESSION is not None
    return SESSION


@pytest.fixture(scope="session")
def rucio_server(session_paths: Session) -> Iterator[RucioServer]:
    server = start_rucio_server(session_paths.work_dir / "rucio", port=session_paths.rucio_port)
    try:
        _populate(server, session_paths)
        yield server
    finally:
        server.stop()


def _populate(server: RucioServer, session: Session) -> None:
    from rucio.client import Client

    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, connect_rses, ensure_scope

    client = Client()
    for rse in RSE_NAMES:
        add_directory_rse(client, rse, session.storage_dir(rse))
    add_directory_rse(client, HASH_RSE, session.storage_dir(HASH_RSE), lfn2pfn_algorithm=None)
    add_directory_rse(client, NONDETERMINISTIC_RSE, session.storage_dir(NONDETERMINISTIC_RSE), deterministic=False)
    connect_rses(client, [*RSE_NAMES, HASH_RSE, NONDETERMINISTIC_RSE])
    ensure_scope(client, DEFAULT_SCOPE)


@pytest.fixture(scope="session")
def rucio_client(rucio_server: RucioServer):
    from rucio.client import Client

    return Client()


@pytest.fixture
def scope_factory(rucio_client):
    """Make fresh scopes (``t<hex>``, within Rucio's 25 characters) owned by root."""
    from KM3DIRAC.sandbox.rucio_setup import ensure_scope

    def make() -> str:
        scope = f"t{uuid.uuid4().hex[:12]}"
        ensure_scope(rucio_client, scope)
        return scope

    return make


@pytest.fixture
def dataset_factory(rucio_client, scope_factory):
    """Make fresh, open datasets named like KM3DIRAC directories (``/km3net/<scope>/...``); erased after the test."""
    created: list[tuple[str, str]] = []

    def make(scope: str | None = None, leaf: str = "dataset") -> tuple[str, str]:
        scope = scope or scope_factory()
        name = f"/km3net/{scope}/{leaf}-{uuid.uuid4().hex[:8]}"
        rucio_client.add_dataset(scope, name)
        created.append((scope, name))
        return scope, name

    yield make
    for scope, name in created:
        # the session's server is thrown away at the end; still, leave no open dataset behind a test
        rucio_client.set_metadata(scope, name, "lifetime", 1)


@pytest.fixture(scope="session")
def dirac_storages(session_paths: Session) -> list[LocalStorage]:
    """A DIRAC StorageElement per RSE, same directory; on the hash and non-deterministic RSEs DIRAC's
    ``<base path><LFN>`` is not where Rucio put the files."""
    return [LocalStorage(rse, session_paths.storage_dir(rse))
            for rse in (*RSE_NAMES, HASH_RSE, NONDETERMINISTIC_RSE)]


@pytest.fixture(scope="session")
def dirac_cs(session_paths: Session, dirac_storages: list[LocalStorage], rucio_server: RucioServer) -> Iterator[str]:
    """DIRAC's configuration loaded in-process: the km3net VO, a File-plugin StorageElement per RSE, and
    KM3DIRAC's Rucio catalog (pointing at the session's Rucio server) as the only catalog."""
    from DIRAC.tests.Utilities.utils import generateDIRACConfig

    from KM3DIRAC.sandbox.dirac_inprocess import answer_resource_status_in_process

    catalog = RucioCatalogSettings(rucio_host=rucio_server.url, auth_host=rucio_server.url, account=ROOT_ACCOUNT,
                                   username=ROOT_USERNAME, password=ROOT_PASSWORD)
    cfg_text = LocalDiracConfig(catalog=catalog, storages=dirac_storages).render()
    with generateDIRACConfig(cfg_text, f"km3dirac-{uuid.uuid4().hex}.cfg"):
        answer_resource_status_in_process(storage.name for storage in dirac_storages)
        yield cfg_text


@pytest.fixture
def fc(dirac_cs):
    """DIRAC's own ``FileCatalog()`` on the session's configuration (KM3DIRAC's Rucio catalog its only catalog)."""
    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog

    return FileCatalog()


@pytest.fixture
def dm(dirac_cs):
    """DIRAC's own ``DataManager()`` on the session's configuration."""
    from DIRAC.DataManagementSystem.Client.DataManager import DataManager

    return DataManager()


@pytest.fixture
def local_file(tmp_path: Path):
    """Write a file of ``size`` pseudo-random bytes and return its path."""

    def make(size: int = 4096, name: str | None = None) -> Path:
        path = tmp_path / (name or f"f-{uuid.uuid4().hex[:8]}.dat")
        path.write_bytes(os.urandom(size))
        return path

    return make

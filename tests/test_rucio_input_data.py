"""Data of a Rucio as KM3NeT runs it today, read by DIRAC jobs and the TransformationSystem.

The session's Rucio server also has ``KM3-HASH-1`` (Rucio's default deterministic ``hash`` path algorithm, no
``km3dirac`` attribute) and ``KM3-NONDET-1`` (non-deterministic). Files are put there by the plain ``rucio upload``
command under flat names (DID ``CORSIKA_...:<name>``, LFN ``/km3net/CORSIKA_...:<name>``), as KM3NeT's users
do. DIRAC's own input-data module looks for ``<SE base path><LFN>`` and does not find them; KM3DIRAC's
``RucioInputData`` policy module downloads them from the replicas' own URLs, through DIRAC's
``InputDataResolution`` (what the JobWrapper runs).
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import HASH_RSE, NONDETERMINISTIC_RSE
from test_transformation_plugins import run_plugin

from KM3DIRAC.core.checksums import adler32_of_file
from KM3DIRAC.sandbox.rucio_server import rucio_cli

pytestmark = pytest.mark.rucio

KM3_POLICY = "KM3DIRAC.WorkloadManagementSystem.Client.RucioInputData"
DIRAC_POLICY = "DIRAC.WorkloadManagementSystem.Client.DownloadInputData"


@pytest.fixture
def corsika_scope(rucio_client):
    """A scope named like KM3NeT's ``CORSIKA_testing``."""
    from KM3DIRAC.sandbox.rucio_setup import ensure_scope

    scope = f"CORSIKA_t{uuid.uuid4().hex[:8]}"
    ensure_scope(rucio_client, scope)
    return scope


def _ok(result):
    assert result["OK"], result
    return result["Value"]


def rucio_upload(*arguments: str) -> None:
    """The plain ``rucio upload`` command, configured by the harness's rucio.cfg."""
    done = subprocess.run([rucio_cli(), "upload", *arguments], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def resolve_input_data(fc, lfns: list[str], job_dir: Path, policy: str, local_ses: list[str] | None = None):
    """DIRAC's JobWrapper.resolveInputData: catalog replicas + file metadata, then InputDataResolution with the
    job's InputDataPolicy."""
    from DIRAC.WorkloadManagementSystem.Client.InputDataResolution import InputDataResolution

    metadata = _ok(fc.getFileMetadata(lfns))
    replicas = _ok(fc.getReplicas(lfns))
    assert not metadata["Failed"] and not replicas["Failed"], (metadata, replicas)
    for lfn, ses in replicas["Successful"].items():
        metadata["Successful"][lfn].update(ses)
    arguments = {"FileCatalog": {"OK": True, "Value": metadata},
                 "Configuration": {"JobID": 0, "JobIDPath": str(job_dir), "LocalSEList": local_ses or [],
                                   "DiskSEList": [], "TapeSEList": []},
                 "InputData": [f"LFN:{lfn}" for lfn in lfns], "Job": {"InputDataPolicy": policy}}
    job_dir.mkdir(parents=True, exist_ok=True)
    return InputDataResolution(arguments).execute()


def test_flat_name_on_hash_rse_is_downloaded_by_km3dirac_policy(fc, corsika_scope, local_file, session_paths,
                                                                tmp_path):
    source = local_file(size=50_000, name=f"corsika_{uuid.uuid4().hex[:6]}.root")
    rucio_upload("--rse", HASH_RSE, "--scope", corsika_scope, str(source))
    lfn = f"/km3net/{corsika_scope}:{source.name}"  # how the catalog presents a flat-name DID
    stored = list((session_paths.storage_dir(HASH_RSE) / corsika_scope).rglob(source.name))
    assert len(stored) == 1 and stored[0].parent.parent.parent.name == corsika_scope  # <scope>/<md5 a>/<md5 b>/
    assert _ok(fc.exists(lfn))["Successful"][lfn] == lfn
    did_form = f"{corsika_scope}:{source.name}"  # the DID as Rucio names it is accepted too, keyed as given
    assert _ok(fc.exists(did_form))["Successful"][did_form] == did_form
    assert set(_ok(fc.getReplicas(lfn))["Successful"][lfn]) == {HASH_RSE}

    # DIRAC's module looks for <base path><LFN> on the StorageElement: not there
    dirac = resolve_input_data(fc, [lfn], tmp_path / "dirac-job", DIRAC_POLICY)
    assert not dirac["OK"], dirac

    resolved = _ok(resolve_input_data(fc, [lfn], tmp_path / "km3-job", KM3_POLICY))
    entry = resolved["Successful"][lfn]
    assert entry["se"] == HASH_RSE and entry["pfn"].endswith(str(stored[0]))
    assert Path(entry["path"]) == tmp_path / "km3-job" / source.name
    assert Path(entry["path"]).read_bytes() == source.read_bytes()
    assert entry["guid"] == _ok(fc.getFileMetadata(lfn))["Successful"][lfn]["GUID"]


def test_non_deterministic_rse_and_corrupt_replica_fall_back(fc, rucio_client, corsika_scope, local_file,
                                                             session_paths, tmp_path):
    """The closest replica (the job's site) is corrupt: the next one, at a path only Rucio knows, is used."""
    source = local_file(size=40_000, name=f"corsika_{uuid.uuid4().hex[:6]}.root")
    where = session_paths.storage_dir(NONDETERMINISTIC_RSE) / "daq" / "2026" / source.name
    rucio_upload("--rse", NONDETERMINISTIC_RSE, "--scope", corsika_scope, "--pfn", f"file://localhost{where}",
                 str(source))
    assert where.read_bytes() == source.read_bytes()
    rucio_upload("--rse", HASH_RSE, "--scope", corsika_scope, str(source))
    hashed, = (session_paths.storage_dir(HASH_RSE) / corsika_scope).rglob(source.name)
    hashed.write_bytes(b"x" * source.stat().st_size)  # same size, wrong bytes
    lfn = f"/km3net/{corsika_scope}:{source.name}"
    resolved = _ok(resolve_input_data(fc, [lfn], tmp_path / "job", KM3_POLICY, local_ses=[HASH_RSE]))
    entry = resolved["Successful"][lfn]
    assert entry["se"] == NONDETERMINISTIC_RSE
    assert adler32_of_file(Path(entry["path"])) == rucio_client.get_metadata(corsika_scope, source.name)["adler32"]


def test_one_missing_input_is_failed_by_name_and_the_others_downloaded(fc, corsika_scope, local_file, tmp_path):
    source = local_file(size=1000, name=f"corsika_{uuid.uuid4().hex[:6]}.root")
    rucio_upload("--rse", HASH_RSE, "--scope", corsika_scope, str(source))
    good = f"/km3net/{corsika_scope}:{source.name}"
    from KM3DIRAC.core.job_inputs import download_per_lfn
    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    catalog = catalog_from_cs()
    missing = f"/km3net/{corsika_scope}:never-uploaded.root"
    downloaded, failed = download_per_lfn(catalog.client, [good, missing], tmp_path / "job", catalog.mapper)
    assert set(downloaded) == {good} and set(failed) == {missing}
    assert missing in failed[missing] and "not found" in failed[missing]


def test_transformation_system_sees_flat_name_files_on_hash_rses(fc, corsika_scope, local_file):
    """The TransformationAgent's replica question (getReplicas without URLs) and KM3DIRAC's ByRunFiles plugin on
    flat-name files of two runs uploaded by plain ``rucio upload``; runs come from the KM3NeT file names."""
    from DIRAC.DataManagementSystem.Client.DataManager import DataManager

    lfns = []
    for run in (11291, 11292):
        for part in range(3):
            source = local_file(size=100, name=f"KM3NeT_00000049_{run:08d}.corsika.{part:04d}.root")
            rucio_upload("--rse", HASH_RSE, "--scope", corsika_scope, str(source))
            lfns.append(f"/km3net/{corsika_scope}:{source.name}")
    replicas = _ok(DataManager().getReplicas(lfns, allStatus=False, getUrl=False, active=True))
    assert replicas["Successful"] == {lfn: {HASH_RSE: True} for lfn in lfns} and not replicas["Failed"]
    tasks = _ok(run_plugin("ByRunFiles", fc, {lfn: list(ses) for lfn, ses in replicas["Successful"].items()},
                           status="Flush", GroupSize=10))
    assert sorted((se, sorted(files)) for se, files in tasks) == [(HASH_RSE, lfns[:3]), (HASH_RSE, lfns[3:])]

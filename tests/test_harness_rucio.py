"""The harness is real: files go through the session's Rucio server and its storage and come back intact."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from KM3DIRAC.core.checksums import adler32_of_file
from KM3DIRAC.sandbox.rucio_server import rucio_cli, start_rucio_server

pytestmark = pytest.mark.rucio


def test_upload_then_download_verifies_adler32(rucio_client, scope_factory, local_file, session_paths, tmp_path):
    from rucio.client.downloadclient import DownloadClient
    from rucio.client.uploadclient import UploadClient

    scope = scope_factory()
    source = local_file(size=300_000)
    lfn = f"/km3net/{scope}/harness/{source.name}"
    UploadClient(rucio_client).upload(
        [{"path": str(source), "rse": "KM3-DISK-1", "did_scope": scope, "did_name": lfn}]
    )

    did = rucio_client.get_metadata(scope, lfn)
    assert did["adler32"] == adler32_of_file(source)
    assert did["bytes"] == source.stat().st_size
    # KM3DIRAC's lfn2pfn: the file sits at <RSE directory><LFN>, where a DIRAC StorageElement would put it
    assert (session_paths.storage_dir("KM3-DISK-1") / lfn.lstrip("/")).read_bytes() == source.read_bytes()

    # rucio-clients 41.5.1 downloads a hierarchical file DID to <base>/<scope>/<name without leading "/"> but does
    # not create that path's parent directories (the posix get then fails with "Access to local destination
    # denied"): make them, as KM3DIRAC's own download code does.
    (tmp_path / "dl" / scope / lfn.lstrip("/")).parent.mkdir(parents=True)
    results = DownloadClient(rucio_client).download_dids([{"did": f"{scope}:{lfn}", "base_dir": str(tmp_path / "dl")}])
    assert results[0]["clientState"] in ("DONE", "ALREADY_DONE")
    downloaded = next((tmp_path / "dl").rglob(source.name))
    assert adler32_of_file(downloaded) == did["adler32"]
    assert downloaded.read_bytes() == source.read_bytes()


def test_rucio_cli_lists_the_uploaded_did(rucio_client, scope_factory, local_file):
    """The plain ``rucio`` command, configured by the harness's rucio.cfg, sees the same server."""
    from rucio.client.uploadclient import UploadClient

    scope = scope_factory()
    source = local_file()
    lfn = f"/km3net/{scope}/cli/{source.name}"
    UploadClient(rucio_client).upload([{"path": str(source), "rse": "KM3-DISK-2", "did_scope": scope,
                                        "did_name": lfn}])
    listed = subprocess.run([rucio_cli(), "did", "list", f"{scope}:/km3net/{scope}/cli/*", "--filter", "type=file"],
                            capture_output=True, text=True, check=True)
    assert lfn in listed.stdout


def test_a_second_server_runs_beside_the_session_one(rucio_server, tmp_path):
    """Two harnesses at once: separate ports, separate databases, both answering."""
    second = start_rucio_server(tmp_path / f"second-{uuid.uuid4().hex[:6]}")
    try:
        assert second.port != rucio_server.port
        assert second.postgres.port != rucio_server.postgres.port
        assert second.is_alive() and rucio_server.is_alive()
    finally:
        second.stop()
    assert not second.is_alive()
    assert not Path(second.postgres.base_dir).exists()
    assert rucio_server.is_alive()

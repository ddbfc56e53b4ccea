"""The DIRAC side of the harness: a real DIRAC StorageElement (File plugin) over the same directory as an RSE.

A file put by DIRAC is readable by Rucio once registered, and a file uploaded by Rucio is read by DIRAC: the paths
agree because of KM3DIRAC's lfn2pfn algorithm (KM3DIRAC.core.rucio_policy).
"""

from __future__ import annotations

import pytest

from KM3DIRAC.core.checksums import adler32_of_file, normalise_adler32

pytestmark = pytest.mark.rucio


def test_dirac_storage_element_put_is_readable_through_rucio(dirac_cs, rucio_client, scope_factory, local_file,
                                                             tmp_path):
    from DIRAC.Resources.Storage.StorageElement import StorageElement
    from rucio.client.downloadclient import DownloadClient

    scope = scope_factory()
    source = local_file(size=100_000)
    lfn = f"/km3net/{scope}/dirac-put/{source.name}"
    storage = StorageElement("KM3-DISK-1")
    assert storage.isValid()["OK"]
    put = storage.putFile({lfn: str(source)})
    assert put["OK"], put
    assert lfn in put["Value"]["Successful"], put["Value"]
    dirac_checksum = storage.getFileMetadata(lfn)["Value"]["Successful"][lfn]["Checksum"]
    assert normalise_adler32(dirac_checksum) == adler32_of_file(source)

    # register the replica in Rucio without a PFN: Rucio computes the path itself, and must find DIRAC's file there
    rucio_client.add_replicas("KM3-DISK-1", [{"scope": scope, "name": lfn, "bytes": source.stat().st_size,
                                              "adler32": adler32_of_file(source)}])
    (tmp_path / "dl" / scope / lfn.lstrip("/")).parent.mkdir(parents=True)
    DownloadClient(rucio_client).download_dids([{"did": f"{scope}:{lfn}", "base_dir": str(tmp_path / "dl")}])
    assert (tmp_path / "dl" / scope / lfn.lstrip("/")).read_bytes() == source.read_bytes()


def test_rucio_upload_is_readable_through_dirac(dirac_cs, rucio_client, scope_factory, local_file, tmp_path):
    from DIRAC.Resources.Storage.StorageElement import StorageElement
    from rucio.client.uploadclient import UploadClient

    scope = scope_factory()
    source = local_file(size=50_000)
    lfn = f"/km3net/{scope}/rucio-upload/{source.name}"
    UploadClient(rucio_client).upload([{"path": str(source), "rse": "KM3-DISK-2", "did_scope": scope,
                                        "did_name": lfn}])

    (tmp_path / "got").mkdir()
    got = StorageElement("KM3-DISK-2").getFile(lfn, localPath=str(tmp_path / "got"))
    assert got["OK"], got
    assert lfn in got["Value"]["Successful"], got["Value"]
    assert (tmp_path / "got" / source.name).read_bytes() == source.read_bytes()

"""Run metadata of many files from KM3DIRAC's Rucio catalog, in bulk.

``run_number``, ``events`` and the size are Rucio DID columns: one ``get_metadata_bulk`` per 1000 files gives
them (:meth:`KM3DIRAC.core.catalog_reads.CatalogReads.did_metadata`), with no per-file call. The run datasets (the
files' parent directories) come the same way, with their ``is_open`` flag.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.catalog_directories import CatalogDirectories
from KM3DIRAC.core.catalog_reads import FILE, NO_SUCH_FILE
from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.runs import EVENTS_KEY, RUN_KEY, SIZE_KEY, dataset_of

RUN_METADATA_KEYS = (SIZE_KEY, RUN_KEY, EVENTS_KEY)


@dataclass
class RunMetadata:
    """``files``: lfn -> {bytes, run_number, events} (None when unset); ``closed_datasets``: run datasets that are
    closed; ``failed``: lfn -> reason."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    closed_datasets: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


def fetch_run_metadata(catalog: CatalogDirectories, lfns: Iterable[str]) -> RunMetadata:
    result = RunMetadata()
    dids = {}
    for lfn in lfns:
        try:
            dids[lfn] = catalog.mapper.to_did(lfn)
        except InvalidLFNError as error:
            result.failed[lfn] = str(error)
    columns = catalog.did_metadata(dids.values())
    for lfn, did in dids.items():
        row = columns.get(did)
        if row is None:
            result.failed[lfn] = f"{lfn}: {NO_SUCH_FILE}"
        elif row.get("did_type") != FILE:
            result.failed[lfn] = f"{lfn}: not a file ({row.get('did_type')})"
        else:
            result.files[lfn] = {key: row.get(key) for key in RUN_METADATA_KEYS}
    result.closed_datasets = closed_datasets(catalog, {dataset_of(lfn) for lfn in result.files})
    return result


def closed_datasets(catalog: CatalogDirectories, datasets: Iterable[str]) -> set[str]:
    """The given directories whose files' dataset exists and is closed (``is_open`` False); a directory that also
    holds sub-directories keeps its files in its companion dataset (:mod:`KM3DIRAC.core.catalog_directories`)."""
    return {lfn for lfn, is_open in catalog.directory_open_states(datasets).items() if not is_open}
